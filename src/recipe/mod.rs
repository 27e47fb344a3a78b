//! Training runs described by one TOML file (`dlm train`, `dlm eval`, `dlm sample`): the data,
//! the network, the family and its objective, the optimiser and the bookkeeping.
//!
//! ```toml
//! [data]
//! source = "corpus"
//! files = ["assets/alice29.txt"]
//! tokenizer = "char"
//! seq_len = 64
//!
//! [model]                  # the denoiser backbone (defaults: 256 wide, 4 heads, 4 layers)
//! d_model = 64
//! n_heads = 2
//! n_layers = 2
//!
//! [objective]
//! family = "mdlm"          # "ar", "mdlm", "d3pm", "bd3lm"
//!
//! [train]                  # AdamW, warmup, decay, clipping, EMA, replicas
//! steps = 1500
//! batch_size = 64
//! learning_rate = 2e-3
//! warmup_steps = 100
//! decay = { kind = "cosine", min_ratio = 0.1 }
//! ema_decay = 0.99
//!
//! [run]                    # where it writes, how often it evaluates and checkpoints
//! out = "out/quickstart-recipe"
//! ```
//!
//! Every section and key is in [`Recipe`] and the types it holds; an unknown key or a value out
//! of range is an error naming it. A run writes its recipe (`recipe.toml`), checkpoint
//! (`model.ckpt`, atomic, resumed when the run is started again), metrics (`metrics.csv`), loss
//! plot (`loss.svg`) and final test figure (`result.json`) to `run.out`; `dlm eval` and
//! `dlm sample` read that folder. The configs of the examples are in `configs/`.

mod data;
pub(crate) mod family;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use dlm_core::CoreError;
use dlm_core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm_core::data::SequenceDataset;
use dlm_core::eval::BoundReport;
use dlm_core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm_discrete::sampler::{Observer, TrajectoryStep};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

pub use data::{DataSpec, RecipeData, SyntheticSource, TokenizerSpec};
use family::with_objective;
pub use family::{Bound, Family, Objective, TransitionSpec};

/// What can go wrong reading or running a recipe.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file is not a recipe: TOML syntax, an unknown key, a wrong type (the message names
    /// the key and the line).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said.
        message: String,
    },
    /// A value out of its range.
    #[error("`{key}` = {value}: expected {expected}")]
    Invalid {
        /// The key, with its section (`data.seq_len`).
        key: &'static str,
        /// The value.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The output folder holds the checkpoint of another recipe.
    #[error(
        "{} holds a run of another recipe ({}); choose another `run.out` or remove the folder",
        out.display(),
        out.join("recipe.toml").display()
    )]
    OtherRun {
        /// The folder.
        out: PathBuf,
    },
    /// `dlm eval` or `dlm sample` on a folder without a trained run.
    #[error("{} holds no run: expected recipe.toml and model.ckpt written by `dlm train`", dir.display())]
    NoRun {
        /// The folder.
        dir: PathBuf,
    },
    /// The data, model, trainer or checkpoint layer refused.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A masked family refused its settings.
    #[error(transparent)]
    Discrete(#[from] dlm_discrete::DiscreteError),
    /// BD3LM refused its settings.
    #[error(transparent)]
    Block(#[from] dlm_block::BlockError),
    /// A schedule or time sampler refused its settings.
    #[error(transparent)]
    Schedule(#[from] dlm_sched::ScheduleError),
}

impl RecipeError {
    pub(crate) fn invalid(
        key: &'static str,
        value: impl ToString,
        expected: impl ToString,
    ) -> Self {
        Self::Invalid { key, value: value.to_string(), expected: expected.to_string() }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RecipeError + '_ {
    move |source| RecipeError::Io { path: path.to_path_buf(), source }
}

/// The denoiser backbone ([`DenoiserConfig`]; the vocabulary and context come from the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Width.
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Attention heads.
    #[serde(default = "default_four")]
    pub n_heads: usize,
    /// Transformer blocks.
    #[serde(default = "default_four")]
    pub n_layers: usize,
    /// MLP width over `d_model`.
    #[serde(default = "default_four")]
    pub mlp_ratio: usize,
    /// Dropout.
    #[serde(default)]
    pub dropout: f64,
    /// Tie the output head to the token embedding.
    #[serde(default)]
    pub tie_embeddings: bool,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            d_model: default_d_model(),
            n_heads: 4,
            n_layers: 4,
            mlp_ratio: 4,
            dropout: 0.0,
            tie_embeddings: false,
        }
    }
}

fn default_d_model() -> usize {
    256
}
fn default_four() -> usize {
    4
}

/// The optimiser and schedule ([`TrainConfig`]'s fields and defaults: AdamW with MDLM's
/// settings, clipping at 1, no EMA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per step.
    #[serde(default = "default_one")]
    pub grad_accumulation: usize,
    /// Model replicas computing each micro-batch in parallel threads.
    #[serde(default = "default_one")]
    pub replicas: usize,
    /// Peak learning rate.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Linear warmup steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// After warmup: `{ kind = "constant" }` or `{ kind = "cosine", min_ratio = 0.1 }`.
    #[serde(default = "default_decay")]
    pub decay: LrDecay,
    /// Decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value.
    #[serde(default = "default_clip")]
    pub grad_clip_norm: f64,
    /// Keep an exponential moving average of the weights with this decay (evaluated and
    /// sampled instead of the weights).
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Seed of the initialisation, the batch order and every step's noise.
    #[serde(default)]
    pub seed: u64,
}

fn default_one() -> usize {
    1
}
fn default_learning_rate() -> f64 {
    3e-4
}
fn default_decay() -> LrDecay {
    LrDecay::Constant
}
fn default_clip() -> f64 {
    1.0
}

impl TrainSpec {
    /// The trainer's config.
    pub fn config(&self) -> TrainConfig {
        TrainConfig::new(self.steps, self.batch_size)
            .with_grad_accumulation(self.grad_accumulation)
            .with_replicas(self.replicas)
            .with_learning_rate(self.learning_rate)
            .with_warmup_steps(self.warmup_steps)
            .with_decay(self.decay)
            .with_weight_decay(self.weight_decay)
            .with_grad_clip_norm(Some(self.grad_clip_norm))
            .with_ema_decay(self.ema_decay)
            .with_seed(self.seed)
    }
}

/// Where a run writes and how often it reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The output folder (default `out/<recipe file stem>`).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Score the validation split every this many steps (and at the end).
    #[serde(default = "default_every")]
    pub eval_every: usize,
    /// Validation batches scored each time.
    #[serde(default = "default_eval_batches")]
    pub eval_batches: usize,
    /// A metrics row every this many steps.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Checkpoint every this many steps (and at the end).
    #[serde(default = "default_every")]
    pub checkpoint_every: usize,
    /// Sequences per batch of the test evaluation.
    #[serde(default = "default_test_batch")]
    pub test_batch_size: usize,
    /// Time draws per test sequence of a diffusion bound.
    #[serde(default = "default_time_samples")]
    pub time_samples: usize,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            out: None,
            eval_every: default_every(),
            eval_batches: default_eval_batches(),
            log_every: default_log_every(),
            checkpoint_every: default_every(),
            test_batch_size: default_test_batch(),
            time_samples: default_time_samples(),
        }
    }
}

fn default_every() -> usize {
    500
}
fn default_eval_batches() -> usize {
    4
}
fn default_log_every() -> usize {
    20
}
fn default_test_batch() -> usize {
    64
}
fn default_time_samples() -> usize {
    8
}

/// A training run (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The sequences.
    pub data: DataSpec,
    /// The network.
    #[serde(default)]
    pub model: ModelSpec,
    /// The family and its objective.
    pub objective: Family,
    /// The optimiser.
    pub train: TrainSpec,
    /// The bookkeeping.
    #[serde(default)]
    pub run: RunSpec,
}

/// The file names of a run folder.
const RECIPE_FILE: &str = "recipe.toml";
const CHECKPOINT_FILE: &str = "model.ckpt";

impl Recipe {
    /// Reads a recipe file; without `run.out`, the run goes to `out/<file stem>`.
    ///
    /// # Errors
    /// [`RecipeError::Io`] for an unreadable file, [`RecipeError::Parse`] naming the key of an
    /// unknown key, a wrong type or a value its type refuses (a schedule's parameter, say).
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let mut recipe = Self::parse(&text, path)?;
        if recipe.run.out.is_none() {
            let stem = path.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
            recipe.run.out = Some(Path::new("out").join(stem));
        }
        Ok(recipe)
    }

    /// Parses recipe text (`path` names it in errors).
    ///
    /// # Errors
    /// As [`Recipe::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, RecipeError> {
        toml::from_str(text)
            .map_err(|e| RecipeError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Whether `other` describes the same run: every setting equal but the output folder (which
    /// a recipe may leave to its file name or to `dlm train --out`).
    pub fn same_run(&self, other: &Recipe) -> bool {
        let without_out = |recipe: &Recipe| Recipe {
            run: RunSpec { out: None, ..recipe.run.clone() },
            ..recipe.clone()
        };
        without_out(self) == without_out(other)
    }

    /// The output folder.
    pub fn out(&self) -> PathBuf {
        self.run.out.clone().unwrap_or_else(|| PathBuf::from("out/run"))
    }

    /// The backbone for `data`: time-conditioned for the families whose network reads the time.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for sizes the backbone refuses (heads not dividing the width, …).
    pub fn model_config(&self, data: &RecipeData) -> Result<DenoiserConfig, RecipeError> {
        let m = &self.model;
        let config = DenoiserConfig::new(
            DenoiserIo::Tokens { vocab_size: data.vocab_size, tie_embeddings: m.tie_embeddings },
            data.train.seq_len(),
        )
        .with_d_model(m.d_model)
        .with_n_heads(m.n_heads)
        .with_n_layers(m.n_layers)
        .with_mlp_ratio(m.mlp_ratio)
        .with_dropout(m.dropout)
        .with_cond_dim(self.objective.reads_time().then_some(m.d_model));
        config.validate()?;
        Ok(config)
    }

    /// Checks every value the types alone do not: the run's sizes, the trainer's settings, the
    /// model's, the objective's (with its data).
    ///
    /// # Errors
    /// [`RecipeError`] naming the first key out of range.
    pub fn validate(&self, data: &RecipeData) -> Result<(), RecipeError> {
        for (key, value) in [
            ("run.eval_every", self.run.eval_every),
            ("run.eval_batches", self.run.eval_batches),
            ("run.log_every", self.run.log_every),
            ("run.checkpoint_every", self.run.checkpoint_every),
            ("run.test_batch_size", self.run.test_batch_size),
            ("run.time_samples", self.run.time_samples),
        ] {
            if value == 0 {
                return Err(RecipeError::invalid(key, 0, "at least 1"));
            }
        }
        self.objective.check_seq_len(data.train.seq_len())?;
        self.train.config().validate()?;
        self.model_config(data)?;
        self.objective.objective(data)?;
        Ok(())
    }
}

/// A finished `dlm train`.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The output folder.
    pub out: PathBuf,
    /// The test figure.
    pub test: Bound,
    /// Seconds this process trained.
    pub seconds: f64,
}

/// Trains `recipe` (continuing its checkpoint in `run.out` when there is one), with a progress
/// bar when `progress`; then scores the test split and writes `result.json`.
///
/// # Errors
/// [`RecipeError::OtherRun`] when `run.out` holds the checkpoint of another recipe; the
/// recipe's checks ([`Recipe::validate`]); the trainer's (I/O, checkpoints).
pub fn train(
    recipe: &Recipe,
    recipe_text: &str,
    device: &Device,
    progress: bool,
) -> Result<Trained, RecipeError> {
    let out = recipe.out();
    let data = recipe.data.load()?;
    recipe.validate(&data)?;
    let checkpoint = out.join(CHECKPOINT_FILE);
    let saved = out.join(RECIPE_FILE);
    if checkpoint.exists() {
        // A checkpoint without a recipe beside it was not written by `dlm train`.
        let previous = std::fs::read_to_string(&saved).ok();
        let same = match previous {
            Some(previous) => Recipe::parse(&previous, &saved)?.same_run(recipe),
            None => false,
        };
        if !same {
            return Err(RecipeError::OtherRun { out });
        }
    }
    std::fs::create_dir_all(&out).map_err(io_error(&out))?;
    std::fs::write(&saved, recipe_text).map_err(io_error(&saved))?;
    let model_config = recipe.model_config(&data)?;
    let objective = recipe.objective.objective(&data)?;
    let options = RunOptions {
        eval_every: recipe.run.eval_every,
        eval_batches: Some(recipe.run.eval_batches),
        log_every: recipe.run.log_every,
        checkpoint: Some(checkpoint.clone()),
        checkpoint_every: recipe.run.checkpoint_every,
        checkpoint_extra: serde_json::to_value(&model_config)
            .map_err(|source| CoreError::Json { what: "the model config".into(), source })?,
        metrics_csv: Some(out.join("metrics.csv")),
        loss_plot: Some(out.join("loss.svg")),
        show_progress: progress,
    };
    let started = std::time::Instant::now();
    let model = with_objective!(objective.clone(), o => {
        device.seed(recipe.train.seed);
        let init = model_config.init(&device.clone().autodiff())?;
        let mut trainer =
            Trainer::resume_or_new(&checkpoint, recipe.train.config(), init, o)?;
        run(&mut trainer, &data.train, &data.valid, &options)?;
        trainer.eval_model()
    });
    let seconds = started.elapsed().as_secs_f64();
    let test = score(recipe, &objective, &model, &data.test, progress)?;
    let result = serde_json::json!({
        "test_nats_per_token": test.report.nats_per_token,
        "test_bits_per_token": test.report.bits_per_token,
        "kind": test.kind,
        "test_tokens": test.report.tokens,
        "train_seconds_this_process": seconds,
        "exact_reference": exact_reference(&recipe.objective, &data),
    });
    let path = out.join("result.json");
    std::fs::write(&path, format!("{result:#}\n")).map_err(io_error(&path))?;
    Ok(Trained { out, test, seconds })
}

/// The exact entropy per token of a synthetic source that the family's figure is compared
/// with: over positions `2..L` for an AR NLL, over whole sequences for a NELBO; `None` for text.
pub fn exact_reference(family: &Family, data: &RecipeData) -> Option<f64> {
    let source = data.synthetic.as_ref()?;
    let seq_len = data.train.seq_len();
    Some(match family {
        Family::Ar {} => source.conditional_entropy_per_token(seq_len),
        _ => source.entropy_per_token(seq_len),
    })
}

/// A trained run read back from its folder.
pub struct Run {
    /// Its recipe.
    pub recipe: Recipe,
    /// Its data (read or drawn again from the recipe).
    pub data: RecipeData,
    /// Its objective.
    pub objective: Objective,
    /// The evaluation model (the EMA weights when the run kept them).
    pub model: Denoiser,
}

impl Run {
    /// Reads the run `dlm train` wrote to `dir`.
    ///
    /// # Errors
    /// [`RecipeError::NoRun`] without `recipe.toml` and `model.ckpt`; the recipe's and the
    /// checkpoint's errors.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, RecipeError> {
        let (saved, checkpoint) = (dir.join(RECIPE_FILE), dir.join(CHECKPOINT_FILE));
        if !saved.is_file() || !checkpoint.is_file() {
            return Err(RecipeError::NoRun { dir: dir.to_path_buf() });
        }
        let text = std::fs::read_to_string(&saved).map_err(io_error(&saved))?;
        let recipe = Recipe::parse(&text, &saved)?;
        let data = recipe.data.load()?;
        let model_config = recipe.model_config(&data)?;
        let objective = recipe.objective.objective(&data)?;
        let model = with_objective!(objective.clone(), o => {
            let init = model_config.init(&device.clone().autodiff())?;
            Trainer::resume(&checkpoint, init, o)?.eval_model()
        });
        Ok(Self { recipe, data, objective, model })
    }

    /// The family's figure on the test split ([`Objective::bound`]) with the recipe's batch size
    /// and time draws, with a progress bar when `progress`.
    ///
    /// # Errors
    /// As [`Objective::bound`].
    pub fn test(&self, progress: bool) -> Result<Bound, RecipeError> {
        score(&self.recipe, &self.objective, &self.model, &self.data.test, progress)
    }
}

/// The figure of `model` on `data`, scored in about ten chunks so that a progress bar can follow
/// (each chunk with its own seed; the chunks' sums are pooled over their tokens).
fn score(
    recipe: &Recipe,
    objective: &Objective,
    model: &Denoiser,
    data: &SequenceDataset,
    progress: bool,
) -> Result<Bound, RecipeError> {
    let batch = recipe.run.test_batch_size;
    let per_chunk = data.len().div_ceil(10).div_ceil(batch) * batch;
    let sizes = vec![per_chunk; data.len().saturating_sub(1) / per_chunk.max(1)];
    let chunks = data.split(&sizes)?;
    let bar = bar(progress, chunks.len() as u64, "scoring the test split");
    let (mut nats, mut tokens, mut kind) = (0.0, 0, "");
    for (i, chunk) in chunks.iter().enumerate() {
        let bound = objective.bound(model, chunk, batch, recipe.run.time_samples, i as u64)?;
        nats += bound.report.nats_per_token * bound.report.tokens as f64;
        tokens += bound.report.tokens;
        kind = bound.kind;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let nats_per_token = nats / tokens.max(1) as f64;
    let report = BoundReport {
        nats_per_token,
        bits_per_token: nats_per_token / std::f64::consts::LN_2,
        perplexity_bound: nats_per_token.exp(),
        tokens,
    };
    Ok(Bound { report, kind })
}

/// A progress bar of `len` steps (hidden unless `show`).
pub fn bar(show: bool, len: u64, message: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}<{eta}]")
            .expect("a valid template"),
    );
    bar
}

/// An [`Observer`] that sets a progress bar to the model calls so far.
pub struct StepBar(pub ProgressBar);

impl Observer for StepBar {
    fn step_done(&mut self, step: &TrajectoryStep) {
        self.0.set_position(step.nfe as u64);
    }
}
