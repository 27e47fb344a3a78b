//! What the likelihood-ladder examples share: their data (the Markov source, or Shakespeare at
//! the character level), one equal budget for every rung, and the result table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::Module;
use burn::tensor::Device;
use dlm_core::ar::ArObjective;
use dlm_core::backbone::{Denoiser, DenoiserConfig};
use dlm_core::data::{
    MarkovSource, MarkovSourceConfig, SequenceDataset, read_documents, split_corpus, text_files,
    tokenize_documents,
};
use dlm_core::eval::EvalBatches;
use dlm_core::tokenizer::{CharTokenizer, Tokenizer};
use dlm_core::train::{LrDecay, Objective, RunOptions, TrainConfig, Trainer, evaluate, run};
use dlm_discrete::{MarkovBayes, MaskingProcess, Mdlm};
use dlm_sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// The command line every ladder example shares (flatten it into the example's own).
#[derive(Clone, Debug, clap::Args)]
pub struct LadderArgs {
    /// The data.
    #[arg(long, value_enum, default_value = "markov")]
    pub source: Source,
    /// Optimiser steps per model.
    #[arg(long, default_value_t = 1500)]
    pub steps: usize,
    /// Continue each rung from its checkpoint in the output folder when there is one (a run
    /// cut short, or one spread over several sessions).
    #[arg(long)]
    pub resume: bool,
    /// Device: flex, ndarray, wgpu, cuda, tch (or BURN_DEVICE).
    #[arg(long)]
    pub device: Option<String>,
    /// Output folder (default: out/<example>-<source>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl LadderArgs {
    /// The ladder these arguments ask for: its data in sequences of `seq_len`, its output folder
    /// (created) and the budget, on `device` (parsed by the caller from [`LadderArgs::device`]).
    ///
    /// # Errors
    /// When the folder cannot be created or the data cannot be loaded.
    pub fn ladder(&self, example: &str, seq_len: usize, device: Device) -> anyhow::Result<Ladder> {
        let out = self.source.out_dir(example, self.out.clone())?;
        let mut ladder =
            Ladder::new(LadderData::load(self.source, seq_len)?, self.steps, device, out);
        ladder.resume = self.resume;
        Ok(ladder)
    }
}

/// The data a ladder runs on.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Source {
    /// A sparse order-2 Markov chain over 16 symbols: every bound has an exact reference.
    Markov,
    /// The 42 Shakespeare texts of `scripts/fetch-data.sh`, character level.
    Shakespeare,
}

impl Source {
    /// The name used on the command line and in output folders.
    pub fn name(self) -> &'static str {
        match self {
            Self::Markov => "markov",
            Self::Shakespeare => "shakespeare",
        }
    }

    /// The output folder, created: `explicit`, or `out/<example>-<source>`.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn out_dir(self, example: &str, explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        let out =
            explicit.unwrap_or_else(|| PathBuf::from(format!("out/{example}-{}", self.name())));
        std::fs::create_dir_all(&out)?;
        Ok(out)
    }
}

/// The Markov source of the ladders and its train/valid/test sets.
pub struct MarkovData {
    /// The chain (exact entropies, exact scores of samples).
    pub source: MarkovSource,
    /// 16,384 training sequences.
    pub train: SequenceDataset,
    /// 256 validation sequences.
    pub valid: SequenceDataset,
    /// 512 test sequences.
    pub test: SequenceDataset,
}

/// The ladders' Markov source (16 symbols, order 2, branching 4, seed 0) and its splits of
/// sequences of `seq_len`, each drawn with its own seed.
///
/// # Errors
/// The library's, for a `seq_len` of 0.
pub fn markov_data(seq_len: usize) -> anyhow::Result<MarkovData> {
    let source =
        MarkovSource::new(MarkovSourceConfig { n_symbols: 16, order: 2, branching: 4, seed: 0 })?;
    let vocab = source.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| source.sample(len, rng);
    let train = SequenceDataset::generate(16_384, seq_len, vocab, 1, sample)?;
    let valid = SequenceDataset::generate(256, seq_len, vocab, 2, sample)?;
    let test = SequenceDataset::generate(512, seq_len, vocab, 3, sample)?;
    Ok(MarkovData { source, train, valid, test })
}

/// The Shakespeare texts fetched by `scripts/fetch-data.sh shakespeare`, in name order.
///
/// # Errors
/// When `data/shakespeare` is missing or empty, saying how to fetch it.
pub fn shakespeare_files() -> anyhow::Result<Vec<PathBuf>> {
    text_files(Path::new("data/shakespeare"))
        .context("the Shakespeare corpus is missing: run scripts/fetch-data.sh shakespeare")
}

/// A ladder's data, with the source when its entropies are known exactly.
pub struct LadderData {
    /// Vocabulary of every model of the ladder.
    pub vocab_size: usize,
    /// Training sequences.
    pub train: SequenceDataset,
    /// Validation sequences.
    pub valid: SequenceDataset,
    /// Test sequences: every row of the table is measured on these.
    pub test: SequenceDataset,
    /// The Markov source (exact entropies, exact scores of samples); `None` for natural text.
    pub markov: Option<MarkovSource>,
    /// The tokenizer of natural text, to print samples; `None` for the Markov source.
    pub tokenizer: Option<Tokenizer>,
}

impl LadderData {
    /// The data of `source` in sequences of `seq_len`: the Markov source's splits
    /// ([`markov_data`]), or Shakespeare at the character level with the first 98 % of the
    /// sequences for training, the next 1 % for validation and the last 1 % for testing.
    ///
    /// # Errors
    /// When the corpus is missing or cannot be tokenised.
    pub fn load(source: Source, seq_len: usize) -> anyhow::Result<Self> {
        let data = match source {
            Source::Markov => {
                let data = markov_data(seq_len)?;
                Self {
                    vocab_size: data.source.vocab_size(),
                    train: data.train,
                    valid: data.valid,
                    test: data.test,
                    markov: Some(data.source),
                    tokenizer: None,
                }
            }
            Source::Shakespeare => {
                let documents = read_documents(&shakespeare_files()?)?;
                let tokenizer = Tokenizer::Char(CharTokenizer::from_texts(
                    documents.iter().map(String::as_str),
                )?);
                let ids =
                    tokenize_documents(&documents, &tokenizer, Some(Path::new("data/cache")))?;
                let splits = split_corpus(&ids, &tokenizer, seq_len, 0.01, 0.01)?;
                Self {
                    vocab_size: tokenizer.vocab_size(),
                    train: splits.train,
                    valid: splits.valid,
                    test: splits.test,
                    markov: None,
                    tokenizer: Some(tokenizer),
                }
            }
        };
        match data.exact() {
            Some((sequence, conditional)) => println!(
                "exact entropy: {sequence:.4} nats/token over a whole sequence, {conditional:.4} over positions 2..L"
            ),
            None => println!(
                "Shakespeare, characters ({} symbols): {} train / {} valid / {} test sequences of {seq_len}",
                data.vocab_size,
                data.train.len(),
                data.valid.len(),
                data.test.len()
            ),
        }
        Ok(data)
    }

    /// Exact entropies per token: over a whole sequence, and over positions 2..L (what an AR
    /// model is scored on); `None` for natural text.
    pub fn exact(&self) -> Option<(f64, f64)> {
        let source = self.markov.as_ref()?;
        let seq_len = self.train.seq_len();
        Some((source.entropy_per_token(seq_len), source.conditional_entropy_per_token(seq_len)))
    }

    fn ar_reference(&self) -> Option<Reference> {
        self.exact().map(|(_, conditional)| Reference::exact(conditional))
    }

    /// What a whole-sequence bound is compared with: the exact entropy of a whole sequence, or
    /// the AR model's NLL (when there is one) if the entropy is unknown.
    fn bound_reference(&self, ar_nll: Option<f64>) -> Option<Reference> {
        match self.exact() {
            Some((sequence, _)) => Some(Reference::exact(sequence)),
            None => ar_nll.map(|nats| Reference { nats, what: "AR NLL" }),
        }
    }
}

/// The figure a row is divided by.
#[derive(Clone, Copy)]
struct Reference {
    nats: f64,
    what: &'static str,
}

impl Reference {
    fn exact(nats: f64) -> Self {
        Self { nats, what: "exact entropy" }
    }
}

/// What every rung of a ladder is trained with.
#[derive(Clone, Copy, Debug)]
pub struct Budget<'a> {
    /// AdamW steps.
    pub steps: usize,
    /// Training sequences.
    pub train: &'a SequenceDataset,
    /// Validation sequences, scored every 500 steps.
    pub valid: &'a SequenceDataset,
    /// Where checkpoints and metrics go.
    pub out: &'a Path,
    /// Continue from the rung's checkpoint in `out` when there is one.
    pub resume: bool,
}

impl Budget<'_> {
    /// Trains `config` under `objective` on `device`: `steps` AdamW steps of batch 32, lr 1e-3
    /// with 100 warmup steps and cosine decay to a tenth, checkpointed to `out/<name>.ckpt`
    /// every 1000 steps (with `resume`, continued from that checkpoint through
    /// [`Trainer::resume_or_new`]); returns the evaluation model and the seconds this process
    /// trained.
    ///
    /// # Errors
    /// The trainer's: a bad configuration, a checkpoint of another run, an I/O failure.
    pub fn train<O: Objective<Denoiser> + Sync + std::fmt::Debug>(
        &self,
        name: &str,
        objective: O,
        config: &DenoiserConfig,
        device: &Device,
    ) -> anyhow::Result<(Denoiser, f64)> {
        device.seed(0);
        let model = config.init(&device.clone().autodiff())?;
        self.train_model(name, objective, model, config)
    }

    /// [`Budget::train`] for any model the trainer takes (Diffusion-LM's, say): `model` is
    /// initialised on an autodiff device, `config` is stored in the checkpoint.
    ///
    /// # Errors
    /// As [`Budget::train`].
    pub fn train_model<M: Module, O: Objective<M> + Sync + std::fmt::Debug>(
        &self,
        name: &str,
        objective: O,
        model: M,
        config: &impl serde::Serialize,
    ) -> anyhow::Result<(M, f64)> {
        let train_config = TrainConfig::new(self.steps, 32)
            .with_learning_rate(1e-3)
            .with_warmup_steps(100)
            .with_decay(LrDecay::Cosine { min_ratio: 0.1 });
        let checkpoint = self.out.join(format!("{name}.ckpt"));
        let mut trainer = if self.resume {
            Trainer::resume_or_new(&checkpoint, train_config, model, objective)?
        } else {
            Trainer::new(train_config, model, objective)?
        };
        if trainer.state().step > 0 {
            println!("{name}: resuming at step {} of {}", trainer.state().step, self.steps);
        }
        let started = std::time::Instant::now();
        let options = RunOptions {
            eval_every: 500,
            metrics_csv: Some(self.out.join(format!("{name}.csv"))),
            checkpoint: Some(checkpoint),
            checkpoint_extra: serde_json::to_value(config)?,
            ..RunOptions::default()
        };
        run(&mut trainer, self.train, self.valid, &options)?;
        Ok((trainer.eval_model(), started.elapsed().as_secs_f64()))
    }
}

/// A ladder run: its data, the common budget, where it writes, and its rows.
pub struct Ladder {
    /// The data of every rung.
    pub data: LadderData,
    /// AdamW steps of every rung.
    pub steps: usize,
    /// Where every rung trains.
    pub device: Device,
    /// Checkpoints, metrics and `result.json`.
    pub out: PathBuf,
    /// Continue every rung from its checkpoint in `out` when there is one.
    pub resume: bool,
    /// The rows so far.
    pub table: Table,
    /// The MDLM rung's NELBO integrand against the exact posterior's (Markov source only).
    pub integrand: Vec<Value>,
}

impl Ladder {
    /// A ladder with no rows yet.
    pub fn new(data: LadderData, steps: usize, device: Device, out: PathBuf) -> Self {
        Self {
            data,
            steps,
            device,
            out,
            resume: false,
            table: Table::default(),
            integrand: Vec::new(),
        }
    }

    /// The common budget on the ladder's data.
    pub fn budget(&self) -> Budget<'_> {
        Budget {
            steps: self.steps,
            train: &self.data.train,
            valid: &self.data.valid,
            out: &self.out,
            resume: self.resume,
        }
    }

    /// Trains one rung with the common budget ([`Budget::train`]).
    ///
    /// # Errors
    /// As [`Budget::train`].
    pub fn train<O: Objective<Denoiser> + Sync + std::fmt::Debug>(
        &self,
        name: &str,
        objective: O,
        config: &DenoiserConfig,
    ) -> anyhow::Result<(Denoiser, f64)> {
        self.budget().train(name, objective, config, &self.device)
    }

    /// The AR rung: trained, scored by its exact NLL of positions 2..L on the test set; returns
    /// that NLL.
    ///
    /// # Errors
    /// As [`Budget::train`] and the evaluation.
    pub fn ar(&mut self, config: &DenoiserConfig) -> anyhow::Result<f64> {
        let (model, seconds) = self.train("ar", ArObjective::default(), config)?;
        let batches = EvalBatches { batch_size: 64, max_batches: None, seed: 0 };
        let nll = evaluate(&ArObjective::default(), &model, &self.data.test, batches)?;
        let reference = self.data.ar_reference();
        self.table.add("AR", nll, reference, seconds, "exact NLL, positions 2..L");
        Ok(nll)
    }

    /// The MDLM rung (log-linear schedule, SUBS, `t ∈ [1e-3, 1]`): trained, scored by its NELBO
    /// on the test set with 8 time samples per sequence; on the Markov source also the Bayes
    /// denoiser's NELBO with the same estimator and noise, and both integrands at fixed times.
    ///
    /// # Errors
    /// As [`Budget::train`] and the evaluation.
    pub fn mdlm(
        &mut self,
        config: &DenoiserConfig,
        mask_id: u32,
        ar_nll: Option<f64>,
    ) -> anyhow::Result<()> {
        let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
        let (model, seconds) = self.train("mdlm", mdlm.clone(), config)?;
        let trained = mdlm.denoiser(&model);
        let nelbo = mdlm.evaluate(&trained, &self.data.test, 64, 8, 0)?;
        self.add_bound("MDLM", nelbo.nats_per_token, ar_nll, seconds, "NELBO");
        if let Some(source) = &self.data.markov {
            // The same estimator, test set and noise with the exact posterior: the floor a
            // trained denoiser can reach, and a check that the estimator is unbiased there.
            let bayes = MarkovBayes { source, mask_id, device: self.device.clone() };
            let floor = mdlm.evaluate(&bayes, &self.data.test, 64, 8, 0)?;
            // Where the bound loses: the integrand at fixed times on the first 256 test
            // sequences, the model's and the exact posterior's with the same masks.
            let indices: Vec<usize> = (0..self.data.test.len().min(256)).collect();
            let x0 = self.data.test.batch(&indices, &self.device);
            println!("NELBO integrand at fixed t (nats/token): model, exact posterior, gap");
            for t in [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
                let model =
                    mdlm.integrand_at(&trained, x0.clone(), t, &mut StdRng::seed_from_u64(9))?;
                let exact =
                    mdlm.integrand_at(&bayes, x0.clone(), t, &mut StdRng::seed_from_u64(9))?;
                println!("  t = {t:.2}: {model:.4} {exact:.4} {:+.4}", model - exact);
                self.integrand.push(json!({"t": t, "model": model, "exact_posterior": exact}));
            }
            let kind = "NELBO of the exact posterior";
            let reference = self.data.bound_reference(ar_nll);
            self.table.add("MDLM, Bayes", floor.nats_per_token, reference, 0.0, kind);
        }
        Ok(())
    }

    /// Adds the row of a whole-sequence bound: against the exact entropy, or on natural text
    /// against the AR model's NLL when there is one.
    pub fn add_bound(
        &mut self,
        name: &str,
        nats: f64,
        ar_nll: Option<f64>,
        seconds: f64,
        kind: &str,
    ) {
        let reference = self.data.bound_reference(ar_nll);
        self.table.add(name, nats, reference, seconds, kind);
    }
}

/// Rows of a ladder: each figure against its reference, printed as added.
#[derive(Default)]
pub struct Table {
    rows: Vec<Value>,
}

impl Table {
    fn add(
        &mut self,
        name: &str,
        nats: f64,
        reference: Option<Reference>,
        seconds: f64,
        kind: &str,
    ) {
        let bits = nats / std::f64::consts::LN_2;
        match reference {
            Some(r) => println!(
                "{name:<16} {nats:.4} nats/token = {bits:.4} bits ({kind}); {} {:.4}: ratio {:.3}; {seconds:.0} s",
                r.what,
                r.nats,
                nats / r.nats
            ),
            None => println!(
                "{name:<16} {nats:.4} nats/token = {bits:.4} bits ({kind}); {seconds:.0} s"
            ),
        }
        self.rows.push(json!({
            "model": name,
            "nats_per_token": nats,
            "bits_per_token": bits,
            "kind": kind,
            "reference": reference.map(|r| r.what),
            "reference_nats": reference.map(|r| r.nats),
            "ratio": reference.map(|r| nats / r.nats),
            "train_seconds": seconds,
        }));
    }

    /// The rows, for `result.json`.
    pub fn into_rows(self) -> Vec<Value> {
        self.rows
    }
}
