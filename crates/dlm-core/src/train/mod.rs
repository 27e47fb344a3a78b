//! The training harness: an [`Objective`], AdamW with warmup and decay, global-norm clipping,
//! gradient accumulation, EMA, evaluation, atomic checkpoints with exact resume, and a loop with
//! progress bar, metrics CSV and loss plot.

mod config;
mod ema;
mod grad_clip;
mod lr;
mod objective;
mod optimizer_state;
#[cfg(feature = "plot")]
pub(crate) mod plot;
mod run;
mod trainer;

pub use config::TrainConfig;
pub use ema::update_ema;
pub use grad_clip::{clip_factor, clip_global_norm, global_norm, scale_gradients};
pub use lr::{LrDecay, learning_rate};
pub use objective::{LossSum, Objective};
#[cfg(feature = "plot")]
pub use plot::plot_losses;
pub use run::{MetricsRow, RunOptions, run};
pub use trainer::{StepReport, TrainState, Trainer, evaluate};

#[cfg(test)]
mod tests;
