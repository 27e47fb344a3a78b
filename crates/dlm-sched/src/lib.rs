//! Noise schedules, time grids and training-time samplers: the shared vocabulary of every
//! diffusion family in `dlm`.
//!
//! Time runs over `t ∈ [0, 1]` with `t = 0` clean and `t = 1` pure noise. A schedule is its
//! signal level `α(t)` — the `ᾱ` of Gaussian diffusion (`z_t = √α·x0 + √(1 − α)·ε`) and the keep
//! probability of masked diffusion — with everything else derived from it by [`NoiseSchedule`]:
//! `1 − α`, total noise `σ = −ln α`, its rate `σ′`, the log-SNR and the masked-ELBO weight
//! `−α′/(1 − α)`. Each quantity exists on `f64` (exact, host side) and on a burn `Tensor<1>`
//! (device side, differentiable).
//!
//! # Module map
//!
//! | item | what |
//! |---|---|
//! | [`NoiseSchedule`] | the trait |
//! | [`LinearBeta`], [`Cosine`], [`LogLinear`], [`SquareRoot`], [`Polynomial`], [`Geometric`] | closed-form schedules (`Copy + serde`) |
//! | [`DiscreteSchedule`] | `T`-step schedules from their `β_i`: Diffusion-LM's discretised square root, D3PM's absorbing mutual-information schedule, explicit lists |
//! | [`LearnedLinearLogSnr`] | a learnable schedule, a burn `Module` |
//! | [`ScheduleKind`] | any fixed schedule, from a config file |
//! | [`TimeGrid`] | the `(t, s)` steps of a sampler |
//! | [`TimeSampler`] | training-time draws: uniform, stratified (antithetic), clipped `U[β, ω]` |
//! | `conformance` | the suite every schedule passes (feature `testing`) |
//!
//! The formulas, their papers and the name collisions between papers are in `docs/schedules.md`.

mod cosine;
mod discrete;
mod error;
mod geometric;
mod invalid;
mod kind;
mod learned;
mod linear_beta;
mod log_linear;
mod polynomial;
mod schedule;
mod square_root;
mod tensor_math;
mod time_grid;
mod time_sampler;
mod validated;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

pub use cosine::Cosine;
pub use discrete::{DiscreteRule, DiscreteSchedule, MAX_BETA};
pub use error::ScheduleError;
pub use geometric::Geometric;
pub use invalid::{InputValue, InvalidInput, MAX_STEPS, ensure_size, ensure_steps, ensure_value};
pub use kind::ScheduleKind;
pub use learned::{LearnedLinearLogSnr, LearnedLinearLogSnrConfig};
pub use linear_beta::LinearBeta;
pub use log_linear::LogLinear;
pub use polynomial::Polynomial;
pub use schedule::NoiseSchedule;
pub use square_root::SquareRoot;
pub use time_grid::TimeGrid;
pub use time_sampler::{Stratification, TimeSampler, stratified_steps};
