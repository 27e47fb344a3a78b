//! The training loop: progress bar, periodic evaluation and checkpoints, a metrics CSV and a
//! loss-curve picture.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use indicatif::{ProgressBar, ProgressStyle};

use super::objective::Objective;
use super::trainer::Trainer;
use crate::data::SequenceDataset;
use crate::error::CoreError;

/// What [`run`] does besides training.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Evaluate on the validation set every this many steps (and at the end).
    pub eval_every: usize,
    /// Evaluate on at most this many validation batches.
    pub eval_batches: Option<usize>,
    /// Record a metrics row every this many steps.
    pub log_every: usize,
    /// Write a checkpoint here every `checkpoint_every` steps and at the end.
    pub checkpoint: Option<PathBuf>,
    /// See `checkpoint`.
    pub checkpoint_every: usize,
    /// Stored in checkpoints beside the state (the model config, typically).
    pub checkpoint_extra: serde_json::Value,
    /// Append metrics rows to this CSV file.
    pub metrics_csv: Option<PathBuf>,
    /// Write an SVG plot of the loss curves here at the end (needs the `plot` feature).
    pub loss_plot: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub show_progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            eval_every: 500,
            eval_batches: Some(20),
            log_every: 50,
            checkpoint: None,
            checkpoint_every: 1000,
            checkpoint_extra: serde_json::Value::Null,
            metrics_csv: None,
            loss_plot: None,
            show_progress: true,
        }
    }
}

/// One row of the metrics log.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Steps taken.
    pub step: usize,
    /// Learning rate of the last step.
    pub learning_rate: f64,
    /// Mean training loss since the previous row.
    pub train_loss: f64,
    /// Validation loss, when evaluated at this step.
    pub valid_loss: Option<f64>,
    /// Training throughput since the previous row.
    pub tokens_per_second: f64,
    /// Seconds since the start of this call.
    pub elapsed_seconds: f64,
}

const CSV_HEADER: &str =
    "step,learning_rate,train_loss,valid_loss,tokens_per_second,elapsed_seconds";

/// Trains until the configured number of steps, evaluating on `valid`, logging and
/// checkpointing as `options` say. Returns the metrics rows of this call.
///
/// # Errors
/// Data, I/O and checkpoint errors ([`CoreError`]); [`CoreError::Unsupported`] for a
/// `loss_plot` when dlm-core is built without its `plot` feature (before any step).
pub fn run<M: Module, O: Objective<M> + Sync + std::fmt::Debug>(
    trainer: &mut Trainer<M, O>,
    train: &SequenceDataset,
    valid: &SequenceDataset,
    options: &RunOptions,
) -> Result<Vec<MetricsRow>, CoreError> {
    // Refused before training, not after: nothing is lost.
    if let (false, Some(path)) = (cfg!(feature = "plot"), &options.loss_plot) {
        return Err(CoreError::Unsupported {
            context: "run options",
            name: "loss_plot",
            value: path.display().to_string(),
            supported: "None: dlm-core was built without its `plot` feature",
        });
    }
    let total = trainer.config().steps;
    let progress = if options.show_progress {
        let bar = ProgressBar::new(total as u64).with_position(trainer.state().step as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}<{eta}]")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut csv = match &options.metrics_csv {
        Some(path) => Some(open_csv(path)?),
        None => None,
    };
    let start = Instant::now();
    let (mut window_loss, mut window_tokens, mut window_start) = (0.0, 0usize, Instant::now());
    let mut rows = Vec::new();
    while !trainer.is_done() {
        let report = trainer.step(train)?;
        window_loss += report.loss * report.tokens as f64;
        window_tokens += report.tokens;
        progress.inc(1);
        let last = trainer.is_done();
        let evaluate = report.step.is_multiple_of(options.eval_every.max(1)) || last;
        if report.step.is_multiple_of(options.log_every.max(1)) || evaluate {
            let valid_loss =
                evaluate.then(|| trainer.evaluate(valid, options.eval_batches)).transpose()?;
            let seconds = window_start.elapsed().as_secs_f64();
            let row = MetricsRow {
                step: report.step,
                learning_rate: report.learning_rate,
                train_loss: window_loss / window_tokens.max(1) as f64,
                valid_loss,
                tokens_per_second: window_tokens as f64 / seconds.max(1e-9),
                elapsed_seconds: start.elapsed().as_secs_f64(),
            };
            progress.set_message(format!(
                "loss {:.4}{} | {:.0} tok/s",
                row.train_loss,
                valid_loss.map(|v| format!(" valid {v:.4}")).unwrap_or_default(),
                row.tokens_per_second
            ));
            if let Some((path, file)) = &mut csv {
                writeln!(
                    file,
                    "{},{},{},{},{},{}",
                    row.step,
                    row.learning_rate,
                    row.train_loss,
                    row.valid_loss.map(|v| v.to_string()).unwrap_or_default(),
                    row.tokens_per_second,
                    row.elapsed_seconds
                )
                .map_err(|source| CoreError::Io { path: path.clone(), source })?;
            }
            rows.push(row);
            (window_loss, window_tokens, window_start) = (0.0, 0, Instant::now());
        }
        if let Some(path) = &options.checkpoint
            && (report.step.is_multiple_of(options.checkpoint_every.max(1)) || last)
        {
            trainer.save_checkpoint(path, options.checkpoint_extra.clone())?;
        }
    }
    progress.finish();
    #[cfg(feature = "plot")]
    if let Some(path) = &options.loss_plot {
        super::plot::plot_losses(&rows, path)?;
    }
    Ok(rows)
}

fn open_csv(path: &Path) -> Result<(PathBuf, fs::File), CoreError> {
    let io = |source| CoreError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let fresh = !path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    if fresh {
        writeln!(file, "{CSV_HEADER}").map_err(io)?;
    }
    Ok((path.to_path_buf(), file))
}
