//! The `[objective]` section of a recipe: the family and its settings, and what each family's
//! trained model is scored and sampled with.

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_block::{Bd3lm, Prefix};
use dlm_core::ar::{self, ArObjective};
use dlm_core::backbone::Denoiser;
use dlm_core::eval::{BoundReport, EvalBatches};
use dlm_core::host::token_rows;
use dlm_core::sampling::TokenSampler;
use dlm_core::tokenizer::SpecialTokens;
use dlm_core::train::evaluate;
use dlm_discrete::d3pm::{D3pm, Transition, mutual_information_schedule};
use dlm_discrete::sampler::{MaskedSampler, Observer, SamplerState, Unmasking};
use dlm_discrete::{MaskingProcess, Mdlm};
use dlm_sched::{LogLinear, ScheduleKind, TimeSampler};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::RecipeError;
use super::data::RecipeData;

/// The family of diffusion LM (or the autoregressive baseline) and its settings.
///
/// ```toml
/// [objective]
/// family = "mdlm"                                   # MDLM (Sahoo et al. 2024)
/// schedule = { kind = "log_linear", eps = 1e-3 }    # any dlm-sched schedule (default)
/// t_min = 1e-3                                      # training times in [t_min, 1]
/// complementary = false                             # complementary masking pairs
/// ```
///
/// `family = "ar"` (no settings); `family = "d3pm"` with `transition = "absorbing"` or
/// `"uniform"`, `steps` (1000) and `hybrid_lambda` (0.01 absorbing, 0 uniform) under the mutual-
/// information schedule; `family = "bd3lm"` with `block_size`, `schedule` and `times` (a time
/// sampler, default `{ low = 1e-3, high = 1.0, stratification = "antithetic" }`; BD3LM's clipped
/// schedules are other ranges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case", deny_unknown_fields)]
pub enum Family {
    /// Next-token prediction with a causal mask: the exact-likelihood baseline (no settings:
    /// written as a struct variant so that a stray key is refused, as everywhere else).
    Ar {},
    /// Masked diffusion with the SUBS parameterisation and the continuous-time NELBO (Sahoo et
    /// al. 2024, eq. 10).
    Mdlm {
        /// The masking schedule `α(t)`.
        #[serde(default = "log_linear")]
        schedule: ScheduleKind,
        /// Training times are drawn from `[t_min, 1]`.
        #[serde(default = "default_t_min")]
        t_min: f64,
        /// Each sequence is trained with a mask and its complement.
        #[serde(default)]
        complementary: bool,
    },
    /// D3PM (Austin et al. 2021): `steps` discrete steps, the hybrid loss (eq. 5), the mutual-
    /// information schedule of the training data (their App. A.2); the network reads the time.
    D3pm {
        /// Where noise takes a token.
        transition: TransitionSpec,
        /// Discrete steps `T`.
        #[serde(default = "default_d3pm_steps")]
        steps: usize,
        /// Weight `λ` of the auxiliary cross-entropy (default 0.01 absorbing, 0 uniform).
        #[serde(default)]
        hybrid_lambda: Option<f64>,
    },
    /// Block diffusion (Arriola et al. 2025): MDLM within blocks, autoregressive across them.
    Bd3lm {
        /// Tokens per block `L′` (a divisor of the sequence length).
        block_size: usize,
        /// The masking schedule of every block.
        #[serde(default = "log_linear")]
        schedule: ScheduleKind,
        /// Training times of the blocks.
        #[serde(default = "default_times")]
        times: TimeSampler,
    },
}

/// D3PM's forward noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionSpec {
    /// To the mask token.
    Absorbing,
    /// To a uniformly random token.
    Uniform,
}

fn log_linear() -> ScheduleKind {
    LogLinear::default().into()
}
fn default_t_min() -> f64 {
    1e-3
}
fn default_d3pm_steps() -> usize {
    1000
}
fn default_times() -> TimeSampler {
    TimeSampler::antithetic(1e-3).expect("1e-3 is a valid lower bound")
}

/// A family's objective, built for its data.
#[derive(Debug, Clone)]
pub enum Objective {
    /// [`Family::Ar`].
    Ar(ArObjective),
    /// [`Family::Mdlm`].
    Mdlm(Mdlm<ScheduleKind>),
    /// [`Family::D3pm`].
    D3pm(D3pm),
    /// [`Family::Bd3lm`].
    Bd3lm(Bd3lm<ScheduleKind>),
}

/// Runs `$body` with `$o` bound to the objective inside (owned), whichever family it is.
macro_rules! with_objective {
    ($objective:expr, $o:ident => $body:expr) => {
        match $objective {
            $crate::recipe::family::Objective::Ar($o) => $body,
            $crate::recipe::family::Objective::Mdlm($o) => $body,
            $crate::recipe::family::Objective::D3pm($o) => $body,
            $crate::recipe::family::Objective::Bd3lm($o) => $body,
        }
    };
}
pub(super) use with_objective;

impl Family {
    /// Whether the network reads the diffusion time (D3PM's does; MDLM's SUBS and BD3LM's are
    /// time-independent, as in their papers' text experiments).
    pub fn reads_time(&self) -> bool {
        matches!(self, Self::D3pm { .. })
    }

    /// Checks the family's constraints on the sequence length: an AR model needs two positions
    /// (one to predict from), BD3LM whole blocks.
    ///
    /// # Errors
    /// [`RecipeError::Invalid`] naming `data.seq_len` or `objective.block_size`.
    pub fn check_seq_len(&self, seq_len: usize) -> Result<(), RecipeError> {
        match self {
            Self::Ar {} if seq_len < 2 => {
                Err(RecipeError::invalid("data.seq_len", seq_len, "at least 2 for an AR model"))
            }
            Self::Bd3lm { block_size, .. }
                if *block_size == 0 || !seq_len.is_multiple_of(*block_size) =>
            {
                Err(RecipeError::invalid(
                    "objective.block_size",
                    block_size,
                    format!("a divisor of data.seq_len = {seq_len}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The model calls of one [`Objective::sample`] with `steps` steps, when the sampler's
    /// steps are fixed (the ancestral samplers: MDLM, BD3LM with a cache update per block,
    /// D3PM's `T`, AR's one call per new token).
    pub fn sampling_calls(&self, seq_len: usize, steps: usize) -> usize {
        match self {
            Self::Ar {} => seq_len.saturating_sub(1),
            Self::Mdlm { .. } => steps,
            Self::D3pm { steps: t, .. } => *t,
            Self::Bd3lm { block_size, .. } => (seq_len / block_size.max(&1)) * (steps + 1),
        }
    }

    /// The default steps of [`Objective::sample`]: one per position (per block position for
    /// BD3LM).
    pub fn default_steps(&self, seq_len: usize) -> usize {
        match self {
            Self::Bd3lm { block_size, .. } => *block_size,
            _ => seq_len,
        }
    }

    /// Whether the family's sampler reports its steps to an observer (the masked families).
    pub fn observes_steps(&self) -> bool {
        matches!(self, Self::Mdlm { .. } | Self::Bd3lm { .. })
    }

    /// The objective for `data`.
    ///
    /// # Errors
    /// [`RecipeError::Invalid`] for a `t_min` outside `(0, 1)`; the families' own checks: zero
    /// `steps` or `block_size`, a negative `hybrid_lambda`.
    pub fn objective(&self, data: &RecipeData) -> Result<Objective, RecipeError> {
        let mask_id = SpecialTokens::reserved().mask;
        Ok(match self {
            Self::Ar {} => Objective::Ar(ArObjective::default()),
            Self::Mdlm { schedule, t_min, complementary } => {
                if !(*t_min > 0.0 && *t_min < 1.0) {
                    return Err(RecipeError::invalid(
                        "objective.t_min",
                        t_min,
                        "a value in (0, 1)",
                    ));
                }
                let mdlm = Mdlm::new(MaskingProcess::new(schedule.clone(), mask_id), *t_min)?;
                Objective::Mdlm(if *complementary {
                    mdlm.with_complementary_masking()?
                } else {
                    mdlm
                })
            }
            Self::D3pm { transition, steps, hybrid_lambda } => {
                let (transition, lambda) = match transition {
                    TransitionSpec::Absorbing => (Transition::Absorbing { mask_id }, 0.01),
                    TransitionSpec::Uniform => (Transition::Uniform, 0.0),
                };
                let frequencies = data.train.token_frequencies();
                let schedule = mutual_information_schedule(transition, &frequencies, *steps)?;
                let lambda = hybrid_lambda.unwrap_or(lambda);
                Objective::D3pm(D3pm::new(transition, schedule, data.vocab_size, lambda)?)
            }
            Self::Bd3lm { block_size, schedule, times } => {
                Objective::Bd3lm(Bd3lm::new(schedule.clone(), mask_id, *block_size, *times)?)
            }
        })
    }
}

/// What [`Objective::bound`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Nats per token.
    pub report: BoundReport,
    /// What the number is: an exact NLL or an upper bound.
    pub kind: &'static str,
}

impl Objective {
    /// The family's likelihood figure of `model` on `data`: the exact NLL of positions `2..L`
    /// (AR), or the NELBO with `time_samples` draws per sequence (MDLM's eq. 10, D3PM's `L_vb`
    /// over `T` steps, BD3LM's eq. 8).
    ///
    /// # Errors
    /// The evaluations' own: data the model cannot read, zero sizes.
    pub fn bound(
        &self,
        model: &Denoiser,
        data: &dlm_core::data::SequenceDataset,
        batch_size: usize,
        time_samples: usize,
        seed: u64,
    ) -> Result<Bound, RecipeError> {
        Ok(match self {
            Self::Ar(objective) => {
                let batches = EvalBatches { batch_size, max_batches: None, seed };
                let nats = evaluate(objective, model, data, batches)?;
                let tokens = data.len() * (data.seq_len() - 1);
                let report = BoundReport {
                    nats_per_token: nats,
                    bits_per_token: nats / std::f64::consts::LN_2,
                    perplexity_bound: nats.exp(),
                    tokens,
                };
                Bound { report, kind: "exact NLL, positions 2..L" }
            }
            Self::Mdlm(mdlm) => Bound {
                report: mdlm.evaluate(
                    &mdlm.denoiser(model),
                    data,
                    batch_size,
                    time_samples,
                    seed,
                )?,
                kind: "NELBO",
            },
            Self::D3pm(d3pm) => Bound {
                report: d3pm.evaluate(model, data, batch_size, time_samples, seed)?,
                kind: "NELBO",
            },
            Self::Bd3lm(bd3lm) => Bound {
                report: bd3lm.evaluate(model, data, batch_size, time_samples, seed)?,
                kind: "NELBO",
            },
        })
    }

    /// `rows` samples of `seq_len` tokens drawn with the family's own sampler: ancestral
    /// sampling of the reverse process with `steps` steps (MDLM; per block for BD3LM, with its
    /// exact KV cache; D3PM always takes its `T`), or left to right (AR, from the first token of
    /// a test sequence per row, which is kept). `observer` sees every step of the masked
    /// families. Returns the rows and the model calls.
    ///
    /// # Errors
    /// The samplers' own: zero `steps` or `rows`, a `seq_len` the model cannot take.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        model: &Denoiser,
        data: &RecipeData,
        rows: usize,
        steps: usize,
        temperature: f64,
        seed: u64,
        observer: &mut dyn Observer,
    ) -> Result<(Vec<Vec<u32>>, usize), RecipeError> {
        let proposal = TokenSampler::new(temperature)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let seq_len = data.train.seq_len();
        let device: Device = model.device();
        device.seed(seed);
        if rows == 0 {
            return Err(RecipeError::invalid("rows", "0", "at least 1"));
        }
        Ok(match self {
            Self::Ar(_) => {
                let first: Vec<i64> = (0..rows)
                    .map(|i| i64::from(data.test.sequence(i % data.test.len())[0]))
                    .collect();
                let prompt =
                    Tensor::<2, Int>::from_data(TensorData::new(first, [rows, 1]), &device);
                let tokens = ar::generate(model, prompt, seq_len - 1, &proposal);
                (token_rows(tokens), seq_len - 1)
            }
            Self::Mdlm(mdlm) => {
                let sampler = MaskedSampler::new(Unmasking::ancestral(mdlm.process())?, steps)?
                    .with_proposal(proposal);
                let subs = mdlm.denoiser(model);
                let state = SamplerState::all_masked(&subs, rows, seq_len)?;
                let out = sampler.sample_observed(&subs, state, &mut rng, observer)?;
                (token_rows(out.tokens), out.nfe)
            }
            Self::D3pm(d3pm) => {
                let tokens = d3pm.sample(model, rows, seq_len, &proposal, &mut rng);
                (token_rows(tokens), d3pm.steps())
            }
            Self::Bd3lm(bd3lm) => {
                let inner = MaskedSampler::new(Unmasking::ancestral(bd3lm.process())?, steps)?
                    .with_proposal(proposal);
                let blocks = seq_len / bd3lm.block_size();
                let out = bd3lm.sampler(inner).generate_observed(
                    model,
                    None,
                    rows,
                    blocks,
                    None,
                    Prefix::Cached { window: None },
                    &mut rng,
                    observer,
                )?;
                (token_rows(out.tokens), out.nfe)
            }
        })
    }
}
