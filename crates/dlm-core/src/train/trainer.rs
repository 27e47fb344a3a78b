//! [`Trainer`]: one optimiser step at a time, evaluation, checkpoints, resume.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::ema::update_ema;
use super::grad_clip::{clip_factor, global_norm, scale_gradients};
use super::lr::learning_rate;
use super::objective::{LossSum, Objective};
use super::optimizer_state::{check_restored, check_saved_state};
use crate::checkpoint::{read_sections, write_sections};
use crate::data::{BatchCursor, SequenceDataset};
use crate::error::CoreError;
use crate::eval::{EvalBatches, evaluate_bound};

/// Where a run is: the step and the position in the data. Together with the model, the
/// optimiser, the EMA and the config (which holds the seed) this is everything a checkpoint must
/// hold for an exact resume: every random draw of step `s` comes from an RNG seeded with
/// `(seed, s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps taken.
    pub step: usize,
    /// Position in the shuffled training data.
    pub cursor: BatchCursor,
    /// Number of training sequences, fixed at the first step (the batch order depends on it).
    pub train_sequences: Option<usize>,
    /// [`SequenceDataset::fingerprint`] of the training data, fixed at the first step (absent
    /// in checkpoints written before it was stored).
    #[serde(default)]
    pub train_fingerprint: Option<u64>,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The step just taken (1-based).
    pub step: usize,
    /// Mean training loss over the step's tokens.
    pub loss: f64,
    /// Tokens the loss covered.
    pub tokens: usize,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Global norm of the mean-loss gradient, before clipping.
    pub grad_norm: f64,
}

/// The checkpoint's metadata section.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    state: TrainState,
    config: TrainConfig,
    /// The objective, as `Debug` prints it (its type and settings); empty in checkpoints
    /// written before it was stored.
    #[serde(default)]
    objective: String,
    /// Whatever the caller stores beside (the model config, typically).
    extra: serde_json::Value,
}

/// Trains a model with an [`Objective`].
///
/// The model lives on an autodiff device; the EMA copy (if configured) on the same device
/// without autodiff.
pub struct Trainer<M: Module, O: Objective<M>> {
    config: TrainConfig,
    objective: O,
    model: M,
    ema: Option<M>,
    optimizer: ModuleOptimizer,
    state: TrainState,
    device: Device,
    /// The fingerprint of the data [`Objective::check_data`] last accepted (not saved: a resumed
    /// run checks again).
    checked_data: Option<u64>,
}

/// Mean loss per token of `model` under `objective` over `data`, in consecutive batches: the
/// one evaluation loop ([`evaluate_bound`]) with one sample of the objective's noise per batch.
///
/// # Errors
/// As [`Objective::check_data`] and [`evaluate_bound`].
///
/// # Panics
/// If the model has no parameter (no device to run on).
pub fn evaluate<M: Module, O: Objective<M>>(
    objective: &O,
    model: &M,
    data: &SequenceDataset,
    batches: EvalBatches,
) -> Result<f64, CoreError> {
    objective.check_data(model, data)?;
    let device = crate::module_device(model);
    device.seed(batches.seed);
    let report =
        evaluate_bound(data, &device, batches, 1, |x0, rng| objective.loss(model, x0, rng))?;
    Ok(report.nats_per_token)
}

/// The loss sum of `batch`, the gradients of that sum (registered under `model`'s parameter ids)
/// and its token count.
fn loss_and_gradients<M: Module, O: Objective<M>>(
    objective: &O,
    model: &M,
    batch: Tensor<2, Int>,
    rng: &mut StdRng,
) -> (GradientsParams, f64, usize) {
    let LossSum { sum, count } = objective.loss(model, batch, rng);
    let grads = GradientsParams::from_grads(sum.backward(), model);
    (grads, sum.into_scalar::<f64>(), count)
}

/// `(seed, step)` → one 64-bit seed (SplitMix64's finaliser).
fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn record_error(what: &str) -> impl FnOnce(burn::store::RecordError) -> CoreError + '_ {
    move |e| CoreError::Record { what: what.into(), message: e.to_string() }
}

impl<M: Module, O: Objective<M>> Trainer<M, O> {
    /// Starts a run at step 0.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`].
    ///
    /// # Panics
    /// If the model has no parameter (no device to train on).
    pub fn new(config: TrainConfig, model: M, objective: O) -> Result<Self, CoreError> {
        config.validate()?;
        let device = crate::module_device(&model);
        let cursor = BatchCursor::new(config.seed, config.batch_size)?;
        let optimizer = Self::optimizer(&config);
        let ema = config.ema_decay.map(|_| model.valid());
        Ok(Self {
            config,
            objective,
            model,
            ema,
            optimizer,
            state: TrainState { step: 0, cursor, train_sequences: None, train_fingerprint: None },
            device,
            checked_data: None,
        })
    }

    fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
        AdamWConfig::new()
            .with_beta_1(config.beta_1 as f32)
            .with_beta_2(config.beta_2 as f32)
            .with_epsilon(config.epsilon as f32)
            .with_weight_decay(config.weight_decay as f32)
            .init()
    }

    /// The model being trained.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The EMA of the weights, if configured.
    pub fn ema(&self) -> Option<&M> {
        self.ema.as_ref()
    }

    /// The weights to evaluate: the EMA if configured, else the model, without autodiff.
    pub fn eval_model(&self) -> M {
        self.ema.clone().unwrap_or_else(|| self.model.valid())
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Where the run is.
    pub fn state(&self) -> TrainState {
        self.state
    }

    /// Whether every configured step has been taken.
    pub fn is_done(&self) -> bool {
        self.state.step >= self.config.steps
    }

    /// Takes one optimiser step on `train`, accumulating `grad_accumulation` micro-batches (each
    /// split across `replicas` threads); the gradient is that of the mean loss over all their
    /// tokens.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `train` has fewer sequences than one batch, data the objective
    /// refuses for this model ([`Objective::check_data`]: sequences longer than its context,
    /// another vocabulary, a mask token inside), or another number of sequences than the run was started on (the
    /// batch order depends on it); [`CoreError::Diverged`] if the loss or the gradient norm is
    /// not finite, in which case nothing changes (no update, the data position restored), so no
    /// checkpoint is ever written with the weights of a diverged step.
    pub fn step(&mut self, train: &SequenceDataset) -> Result<StepReport, CoreError>
    where
        O: Sync,
    {
        if self.checked_data != Some(train.fingerprint()) {
            self.objective.check_data(&self.model, train)?;
            self.checked_data = Some(train.fingerprint());
        }
        let expected = *self.state.train_sequences.get_or_insert(train.len());
        crate::error::ensure_size(
            train.len() == expected,
            "trainer",
            "training sequences",
            train.len(),
            format!("{expected}, the size of the training set the run started on"),
        )?;
        let saved = *self.state.train_fingerprint.get_or_insert(train.fingerprint());
        if saved != train.fingerprint() {
            return Err(CoreError::TrainingDataChanged { saved, given: train.fingerprint() });
        }
        let step = self.state.step;
        let seed = step_seed(self.config.seed, step);
        self.device.seed(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let cursor_before = self.state.cursor;
        let mut accumulator = GradientsAccumulator::<M>::new();
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for micro_batch in 0..self.config.grad_accumulation {
            let indices = self.state.cursor.next_batch(train)?;
            let batch = train.batch(&indices, &self.device);
            let replicas = self.config.replicas;
            let results = if replicas == 1 {
                vec![loss_and_gradients(&self.objective, &self.model, batch, &mut rng)]
            } else {
                let seeds = (0..replicas).map(|r| step_seed(seed, micro_batch * replicas + r));
                self.replicated_losses(batch, seeds)
            };
            // Gradients of the sums; divided by the total count below.
            for (grads, loss, count) in results {
                accumulator.accumulate(&self.model, grads);
                loss_sum += loss;
                tokens += count;
            }
        }
        let mut grads = accumulator.grads();
        // The mean over tokens and the clipping are one scaling of the summed gradients:
        // ‖g/n‖ = ‖g‖/n.
        let mean = 1.0 / tokens.max(1) as f64;
        let loss = loss_sum * mean;
        let norm = global_norm(&self.model, &grads) * mean;
        for (what, value) in [("loss", loss), ("gradient norm", norm)] {
            if !value.is_finite() {
                self.state.cursor = cursor_before;
                return Err(CoreError::Diverged { step, what, value });
            }
        }
        let clip = self.config.grad_clip_norm.map_or(1.0, |max_norm| clip_factor(norm, max_norm));
        scale_gradients(&self.model, &mut grads, mean * clip);
        let lr = learning_rate(
            step,
            self.config.steps,
            self.config.learning_rate,
            self.config.warmup_steps,
            self.config.decay,
        );
        self.model = self.optimizer.step(lr, self.model.clone(), grads);
        if let (Some(ema), Some(decay)) = (self.ema.take(), self.config.ema_decay) {
            self.ema = Some(update_ema(ema, &self.model, decay));
        }
        self.state.step += 1;
        Ok(StepReport { step: self.state.step, loss, tokens, learning_rate: lr, grad_norm: norm })
    }

    /// The loss sums and gradients of `batch` split into one shard per seed, each computed by a
    /// replica of the model (the same parameters, a leaf of its own for autodiff) in a thread
    /// of its own with its own seeded noise.
    fn replicated_losses(
        &self,
        batch: Tensor<2, Int>,
        seeds: impl Iterator<Item = u64>,
    ) -> Vec<(GradientsParams, f64, usize)>
    where
        O: Sync,
    {
        let seeds: Vec<u64> = seeds.collect();
        let shard_len = batch.dims()[0] / seeds.len();
        std::thread::scope(|scope| {
            let shards: Vec<_> = seeds
                .iter()
                .enumerate()
                .map(|(r, &seed)| {
                    let shard = batch.clone().narrow(0, r * shard_len, shard_len);
                    let replica = self.model.clone().fork(&self.device);
                    let objective = &self.objective;
                    scope.spawn(move || {
                        let mut rng = StdRng::seed_from_u64(seed);
                        loss_and_gradients(objective, &replica, shard, &mut rng)
                    })
                })
                .collect();
            shards
                .into_iter()
                .map(|shard| shard.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    }

    /// Mean loss per token of the evaluation model over `data` (see [`evaluate`]), with the
    /// training batch size and a fixed seed, so evaluations are comparable across steps.
    ///
    /// # Errors
    /// As [`evaluate`].
    pub fn evaluate(
        &self,
        data: &SequenceDataset,
        max_batches: Option<usize>,
    ) -> Result<f64, CoreError> {
        let seed = step_seed(self.config.seed, usize::MAX);
        let batches = EvalBatches { batch_size: self.config.batch_size, max_batches, seed };
        evaluate(&self.objective, &self.eval_model(), data, batches)
    }

    /// Writes an atomic checkpoint: model, optimiser, EMA, state (with the training data's
    /// fingerprint), config and objective, plus `extra` (the model config, say) in the metadata.
    ///
    /// # Errors
    /// [`CoreError::Io`] or [`CoreError::Record`].
    pub fn save_checkpoint(&self, path: &Path, extra: serde_json::Value) -> Result<(), CoreError>
    where
        O: std::fmt::Debug,
    {
        let objective = format!("{:?}", self.objective);
        let meta = Meta { state: self.state, config: self.config.clone(), objective, extra };
        let meta = serde_json::to_vec_pretty(&meta)
            .map_err(|source| CoreError::Json { what: "checkpoint metadata".into(), source })?;
        let model = self.model.clone().into_record().into_bytes().map_err(record_error("model"))?;
        let optimizer = self.optimizer.into_bytes().map_err(record_error("optimizer"))?;
        let ema = match &self.ema {
            Some(ema) => Some(ema.clone().into_record().into_bytes().map_err(record_error("ema"))?),
            None => None,
        };
        let mut sections: Vec<(&str, &[u8])> =
            vec![("meta", &meta), ("model", &model), ("optimizer", &optimizer)];
        if let Some(ema) = &ema {
            sections.push(("ema", ema));
        }
        write_sections(path, &sections)
    }

    /// Continues a run from a checkpoint. `model` must have the checkpoint's architecture (build
    /// it from the config stored in [`Trainer::checkpoint_extra`]) on an autodiff device.
    ///
    /// The checkpoint must have been saved with this objective (its type and settings, as
    /// `Debug` prints them); the training data is checked against the saved fingerprint at the
    /// next [`Trainer::step`].
    ///
    /// # Errors
    /// Any checkpoint error of [`crate::checkpoint::read_sections`]; [`CoreError::Json`] for
    /// bad metadata; [`CoreError::ResumeMismatch`] for a checkpoint of another objective;
    /// [`CoreError::Record`] when the saved tensors do not fit `model`.
    pub fn resume(path: &Path, model: M, objective: O) -> Result<Self, CoreError>
    where
        O: std::fmt::Debug,
    {
        let sections = read_sections(path)?;
        let meta: Meta = serde_json::from_slice(sections.get("meta")?).map_err(|source| {
            CoreError::Json { what: format!("{}: metadata", path.display()), source }
        })?;
        let requested = format!("{objective:?}");
        if !meta.objective.is_empty() && meta.objective != requested {
            return Err(CoreError::ResumeMismatch {
                path: path.to_path_buf(),
                saved: meta.objective,
                requested,
            });
        }
        let load = |model: M, name: &str| -> Result<M, CoreError> {
            let bytes = Bytes::from_bytes_vec(sections.get(name)?.to_vec());
            let what = format!("{}: {name}", path.display());
            let record = ModuleRecord::from_bytes(bytes).map_err(record_error(&what))?;
            model.try_load_record(record).map_err(record_error(&what))
        };
        let ema = match meta.config.ema_decay {
            Some(_) => Some(load(model.valid(), "ema")?),
            None => None,
        };
        let model = load(model, "model")?;
        let mut trainer = Self::new(meta.config, model, objective)?;
        let what = format!("{}: optimizer", path.display());
        let mismatch = |message| CoreError::Record { what: what.clone(), message };
        let saved = sections.get("optimizer")?;
        check_saved_state(saved, &trainer.model, meta.state.step).map_err(mismatch)?;
        trainer.optimizer = trainer
            .optimizer
            .from_bytes(Bytes::from_bytes_vec(saved.to_vec()))
            .map_err(record_error(&what))?;
        let restored = trainer.optimizer.into_bytes().map_err(record_error(&what))?;
        check_restored(saved, &restored).map_err(mismatch)?;
        trainer.ema = ema;
        trainer.state = meta.state;
        Ok(trainer)
    }

    /// Continues the run saved at `path` when there is a checkpoint there, or starts `config`
    /// afresh when there is none: what a long run that may be cut short does at every start.
    /// When the latest checkpoint does not read (a save cut short), the run continues from the
    /// previous one kept beside it ([`crate::checkpoint::latest_readable`]). The saved run must
    /// be this one: a checkpoint of another configuration is an error, not a silent switch to
    /// its settings.
    ///
    /// # Errors
    /// [`CoreError::ResumeMismatch`] when the checkpoint was saved with another
    /// [`TrainConfig`] or objective; as [`Trainer::resume`] for a checkpoint that cannot be
    /// read, and as [`Trainer::new`] for a bad `config`.
    pub fn resume_or_new(
        path: &Path,
        config: TrainConfig,
        model: M,
        objective: O,
    ) -> Result<Self, CoreError>
    where
        O: std::fmt::Debug,
    {
        if !path.exists() && !crate::checkpoint::previous_path(path).exists() {
            return Self::new(config, model, objective);
        }
        // With neither readable, the error is the latest file's.
        let latest = crate::checkpoint::latest_readable(path).unwrap_or_else(|| path.to_path_buf());
        let trainer = Self::resume(&latest, model, objective)?;
        if trainer.config != config {
            return Err(CoreError::ResumeMismatch {
                path: path.to_path_buf(),
                saved: format!("{:?}", trainer.config),
                requested: format!("{config:?}"),
            });
        }
        Ok(trainer)
    }

    /// The `extra` value stored in a checkpoint (e.g. the model config needed to rebuild the
    /// model before [`Trainer::resume`]).
    ///
    /// # Errors
    /// As [`Trainer::resume`].
    pub fn checkpoint_extra(path: &Path) -> Result<serde_json::Value, CoreError> {
        let sections = read_sections(path)?;
        let meta: Meta = serde_json::from_slice(sections.get("meta")?).map_err(|source| {
            CoreError::Json { what: format!("{}: metadata", path.display()), source }
        })?;
        Ok(meta.extra)
    }
}
