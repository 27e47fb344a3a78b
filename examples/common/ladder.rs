//! What the likelihood-ladder examples share: their data (the Markov source, or Shakespeare at
//! the character level), equal-budget training and the result table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::{Device, Int, Tensor};
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{Denoiser, DenoiserConfig};
use dlm::core::data::{
    MarkovSource, MarkovSourceConfig, SequenceDataset, read_documents, split_corpus,
    tokenize_documents,
};
use dlm::core::eval::EvalBatches;
use dlm::core::tokenizer::{CharTokenizer, Tokenizer};
use dlm::core::train::{LrDecay, Objective, RunOptions, TrainConfig, Trainer, evaluate, run};
use dlm::discrete::{MarkovBayes, MaskedDenoiser, MaskingProcess, Mdlm, Subs};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// The data a ladder runs on.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Source {
    /// A sparse order-2 Markov chain over 16 symbols: every bound has an exact reference.
    Markov,
    /// The 42 Shakespeare texts of `scripts/fetch-data.sh`, character level.
    Shakespeare,
}

impl Source {
    /// The name used on the command line and in output folders.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Markov => "markov",
            Self::Shakespeare => "shakespeare",
        }
    }

    /// The output folder, created: `explicit`, or `out/<example>-<source>`.
    pub(crate) fn out_dir(
        self,
        example: &str,
        explicit: Option<PathBuf>,
    ) -> anyhow::Result<PathBuf> {
        let out =
            explicit.unwrap_or_else(|| PathBuf::from(format!("out/{example}-{}", self.name())));
        std::fs::create_dir_all(&out)?;
        Ok(out)
    }
}

/// The Markov source of the ladders and its train/valid/test sets.
pub(crate) struct MarkovData {
    pub(crate) source: MarkovSource,
    pub(crate) train: SequenceDataset,
    pub(crate) valid: SequenceDataset,
    pub(crate) test: SequenceDataset,
}

pub(crate) fn markov_data(seq_len: usize) -> anyhow::Result<MarkovData> {
    let source =
        MarkovSource::new(MarkovSourceConfig { n_symbols: 16, order: 2, branching: 4, seed: 0 })?;
    let vocab = source.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| source.sample(len, rng);
    let train = SequenceDataset::generate(16_384, seq_len, vocab, 1, sample)?;
    let valid = SequenceDataset::generate(256, seq_len, vocab, 2, sample)?;
    let test = SequenceDataset::generate(512, seq_len, vocab, 3, sample)?;
    Ok(MarkovData { source, train, valid, test })
}

/// Shakespeare, character level, wrapped into sequences of `seq_len`: the first 98 % of the
/// sequences train, the next 1 % validate, the last 1 % test.
pub(crate) struct ShakespeareData {
    pub(crate) tokenizer: Tokenizer,
    pub(crate) train: SequenceDataset,
    pub(crate) valid: SequenceDataset,
    pub(crate) test: SequenceDataset,
}

/// The Shakespeare texts fetched by `scripts/fetch-data.sh shakespeare`, in name order.
pub(crate) fn shakespeare_files() -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("data/shakespeare")
        .context("data/shakespeare is missing: run scripts/fetch-data.sh shakespeare")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    Ok(files)
}

pub(crate) fn shakespeare_data(seq_len: usize) -> anyhow::Result<ShakespeareData> {
    let documents = read_documents(&shakespeare_files()?)?;
    let tokenizer =
        Tokenizer::Char(CharTokenizer::from_texts(documents.iter().map(String::as_str))?);
    let ids = tokenize_documents(&documents, &tokenizer, Some(Path::new("data/cache")))?;
    let splits = split_corpus(&ids, &tokenizer, seq_len, 0.01, 0.01)?;
    println!(
        "Shakespeare, characters ({} symbols): {} train / {} valid / {} test sequences of {seq_len}",
        tokenizer.vocab_size(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len()
    );
    Ok(ShakespeareData { tokenizer, train: splits.train, valid: splits.valid, test: splits.test })
}

/// A ladder's data, with the source when its entropies are known exactly.
pub(crate) struct LadderData {
    pub(crate) vocab_size: usize,
    pub(crate) train: SequenceDataset,
    pub(crate) valid: SequenceDataset,
    pub(crate) test: SequenceDataset,
    /// The Markov source (exact entropies, exact scores of samples); `None` for natural text.
    pub(crate) markov: Option<MarkovSource>,
    /// The tokenizer of natural text, to print samples.
    #[allow(dead_code)] // Only the examples that sample read it.
    pub(crate) tokenizer: Option<Tokenizer>,
}

impl LadderData {
    pub(crate) fn load(source: Source, seq_len: usize) -> anyhow::Result<Self> {
        Ok(match source {
            Source::Markov => {
                let data = markov_data(seq_len)?;
                let this = Self {
                    vocab_size: data.source.vocab_size(),
                    train: data.train,
                    valid: data.valid,
                    test: data.test,
                    markov: Some(data.source),
                    tokenizer: None,
                };
                let (sequence, conditional) = this.exact().expect("a Markov source");
                println!(
                    "exact entropy: {sequence:.4} nats/token over a whole sequence, {conditional:.4} over positions 2..L"
                );
                this
            }
            Source::Shakespeare => {
                let data = shakespeare_data(seq_len)?;
                Self {
                    vocab_size: data.tokenizer.vocab_size(),
                    train: data.train,
                    valid: data.valid,
                    test: data.test,
                    markov: None,
                    tokenizer: Some(data.tokenizer),
                }
            }
        })
    }

    /// Exact entropies per token: over a whole sequence, and over positions 2..L (what an AR
    /// model is scored on); `None` for natural text.
    pub(crate) fn exact(&self) -> Option<(f64, f64)> {
        let source = self.markov.as_ref()?;
        let seq_len = self.train.seq_len();
        let whole = source.sequence_entropy(seq_len);
        let conditional = (whole - source.sequence_entropy(1)) / (seq_len - 1) as f64;
        Some((whole / seq_len as f64, conditional))
    }

    /// What an AR figure is compared with: the exact entropy of positions 2..L, or nothing.
    pub(crate) fn ar_reference(&self) -> Option<Reference> {
        self.exact().map(|(_, conditional)| Reference::exact(conditional))
    }

    /// What a whole-sequence bound is compared with: the exact entropy of a whole sequence, or
    /// the AR model's NLL (when there is one) if the entropy is unknown.
    pub(crate) fn bound_reference(&self, ar_nll: Option<f64>) -> Option<Reference> {
        match self.exact() {
            Some((sequence, _)) => Some(Reference::exact(sequence)),
            None => ar_nll.map(|nats| Reference { nats, what: "AR NLL" }),
        }
    }
}

/// The figure a row is divided by.
#[derive(Clone, Copy)]
pub(crate) struct Reference {
    pub(crate) nats: f64,
    pub(crate) what: &'static str,
}

impl Reference {
    fn exact(nats: f64) -> Self {
        Self { nats, what: "exact entropy" }
    }
}

/// Trains one model with the ladder's common budget: `steps` AdamW steps of batch 32, lr 1e-3
/// with 100 warmup steps and cosine decay, checkpointed to `out/<name>.ckpt` every 1000 steps
/// (with `resume`, a run continues from that checkpoint when there is one); returns the
/// evaluation model and the seconds taken (in this process).
#[allow(clippy::too_many_arguments)]
pub(crate) fn train<O: Objective<Denoiser> + Sync>(
    name: &str,
    objective: O,
    config: &DenoiserConfig,
    steps: usize,
    device: &Device,
    train: &SequenceDataset,
    valid: &SequenceDataset,
    out: &Path,
    resume: bool,
) -> anyhow::Result<(Denoiser, f64)> {
    let train_config = TrainConfig::new(steps, 32)
        .with_learning_rate(1e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 });
    device.seed(0);
    let model = config.init(&device.clone().autodiff())?;
    let checkpoint = out.join(format!("{name}.ckpt"));
    let mut trainer = if resume && checkpoint.exists() {
        let trainer = Trainer::resume(&checkpoint, model, objective)?;
        anyhow::ensure!(
            trainer.config() == &train_config,
            "{}: saved for another run ({:?}), not this one's {train_config:?}",
            checkpoint.display(),
            trainer.config()
        );
        println!("{name}: resuming at step {} of {steps}", trainer.state().step);
        trainer
    } else {
        Trainer::new(train_config, model, objective)?
    };
    let started = std::time::Instant::now();
    let options = RunOptions {
        eval_every: 500,
        metrics_csv: Some(out.join(format!("{name}.csv"))),
        checkpoint: Some(checkpoint),
        checkpoint_extra: serde_json::to_value(config)?,
        ..RunOptions::default()
    };
    run(&mut trainer, train, valid, &options)?;
    Ok((trainer.eval_model(), started.elapsed().as_secs_f64()))
}

/// A ladder run: its data, the common budget, where it writes, and its rows.
pub(crate) struct Ladder {
    pub(crate) data: LadderData,
    pub(crate) steps: usize,
    pub(crate) device: Device,
    pub(crate) out: PathBuf,
    /// Continue every rung from its checkpoint in `out` when there is one.
    pub(crate) resume: bool,
    pub(crate) table: Table,
    /// The MDLM rung's NELBO integrand against the exact posterior's (Markov source only).
    pub(crate) integrand: Vec<Value>,
}

impl Ladder {
    pub(crate) fn new(data: LadderData, steps: usize, device: Device, out: PathBuf) -> Self {
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

    /// Trains one rung with the common budget (see [`train`]).
    pub(crate) fn train<O: Objective<Denoiser> + Sync>(
        &self,
        name: &str,
        objective: O,
        config: &DenoiserConfig,
    ) -> anyhow::Result<(Denoiser, f64)> {
        let data = &self.data;
        train(
            name,
            objective,
            config,
            self.steps,
            &self.device,
            &data.train,
            &data.valid,
            &self.out,
            self.resume,
        )
    }

    /// The AR rung: trained, scored by its exact NLL of positions 2..L on the test set; returns
    /// that NLL.
    pub(crate) fn ar(&mut self, config: &DenoiserConfig) -> anyhow::Result<f64> {
        let (model, seconds) = self.train("ar", ArObjective::default(), config)?;
        let batches = EvalBatches { batch_size: 64, max_batches: None, seed: 0 };
        let nll = evaluate(&ArObjective::default(), &model, &self.data.test, batches)?;
        let reference = self.data.ar_reference();
        self.table.add("AR", nll, reference, seconds, "exact NLL, positions 2..L");
        Ok(nll)
    }

    /// The MDLM rung (log-linear schedule, SUBS, `t ∈ [1e-3, 1]`): trained, scored by its NELBO
    /// on the test set with 8 time samples per sequence; on the Markov source also the Bayes
    /// denoiser's NELBO with the same estimator and noise.
    pub(crate) fn mdlm(
        &mut self,
        config: &DenoiserConfig,
        mask_id: u32,
        ar_nll: Option<f64>,
    ) -> anyhow::Result<()> {
        let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
        let (model, seconds) = self.train("mdlm", mdlm.clone(), config)?;
        let trained = Subs { model: &model, mask_id };
        let nelbo = mdlm.evaluate(&trained, &self.data.test, 64, 8, 0)?;
        self.add_bound("MDLM", nelbo.nats_per_token, ar_nll, seconds, "NELBO");
        if let Some(source) = &self.data.markov {
            // The same estimator, test set and noise with the exact posterior: the floor a
            // trained denoiser can reach, and a check that the estimator is unbiased there.
            let bayes = MarkovBayes { source, mask_id, device: self.device.clone() };
            let floor = mdlm.evaluate(&bayes, &self.data.test, 64, 8, 0)?;
            self.integrand = integrand(&mdlm, &trained, &bayes, &self.data.test);
            let kind = "NELBO of the exact posterior";
            let reference = self.data.bound_reference(ar_nll);
            self.table.add("MDLM, Bayes", floor.nats_per_token, reference, 0.0, kind);
        }
        Ok(())
    }

    /// Adds the row of a whole-sequence bound.
    pub(crate) fn add_bound(
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

/// Where a masked-diffusion bound loses: the NELBO's integrand `E[w(t)·Σ_masked −log p(x0_i |
/// z_t)]/L` at fixed times, for `model` and for the Bayes-optimal denoiser, on the first 256
/// sequences of `data` with the same masks (the NELBO is its mean over `t ~ U[ε, 1]`; for the
/// log-linear schedule it is the NLL per masked token).
fn integrand(
    mdlm: &Mdlm<LogLinear>,
    model: &impl MaskedDenoiser,
    bayes: &MarkovBayes<'_>,
    data: &SequenceDataset,
) -> Vec<Value> {
    let indices: Vec<usize> = (0..data.len().min(256)).collect();
    let x0 = data.batch(&indices, &bayes.device);
    let mut rows = Vec::new();
    println!("NELBO integrand at fixed t (nats/token): model, exact posterior, gap");
    for t in [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
        let trained = integrand_at(mdlm, model, x0.clone(), t);
        let exact = integrand_at(mdlm, bayes, x0.clone(), t);
        println!("  t = {t:.2}: {trained:.4} {exact:.4} {:+.4}", trained - exact);
        rows.push(json!({"t": t, "model": trained, "exact_posterior": exact}));
    }
    rows
}

/// One integrand value: every sequence of `x0` at time `t`, masks drawn with a fixed seed.
///
/// # Shapes
/// - `x0`: `[batch, seq_len]`
fn integrand_at(
    mdlm: &Mdlm<LogLinear>,
    model: &impl MaskedDenoiser,
    x0: Tensor<2, Int>,
    t: f64,
) -> f64 {
    let times = vec![t; x0.dims()[0]];
    let loss = mdlm.loss_at(model, x0, &times, &mut StdRng::seed_from_u64(9));
    loss.sum.into_scalar::<f64>() / loss.count as f64
}

/// Rows of a ladder: each figure against its reference.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<Value>,
}

impl Table {
    pub(crate) fn add(
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

    pub(crate) fn into_rows(self) -> Vec<Value> {
        self.rows
    }
}
