//! The training loop: progress bar, periodic evaluation and checkpoints, a metrics CSV and a
//! loss-curve picture.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;

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
    /// Write an SVG plot of the loss curves here at the end.
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
/// Data, I/O and checkpoint errors ([`CoreError`]).
pub fn run<M: Module, O: Objective<M> + Sync>(
    trainer: &mut Trainer<M, O>,
    train: &SequenceDataset,
    valid: &SequenceDataset,
    options: &RunOptions,
) -> Result<Vec<MetricsRow>, CoreError> {
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
    if let Some(path) = &options.loss_plot {
        plot_losses(&rows, path)?;
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

/// Plots training and validation loss against the step as SVG.
///
/// # Errors
/// [`CoreError::Io`] if the file cannot be written.
pub fn plot_losses(rows: &[MetricsRow], path: &Path) -> Result<(), CoreError> {
    let io = |e: &dyn std::fmt::Display| CoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| io(&e))?;
    }
    let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1) as f64;
    let losses = rows.iter().flat_map(|r| std::iter::once(r.train_loss).chain(r.valid_loss));
    let (lo, hi) =
        losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let (lo, hi) = if lo.is_finite() { (lo * 0.95, hi * 1.05) } else { (0.0, 1.0) };
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("loss", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_step, lo..hi)?;
        chart.configure_mesh().x_desc("step").y_desc("loss (nats/token)").draw()?;
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.step as f64, r.train_loss)),
                &BLUE,
            ))?
            .label("train")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE));
        let valid: Vec<(f64, f64)> =
            rows.iter().filter_map(|r| r.valid_loss.map(|v| (r.step as f64, v))).collect();
        chart
            .draw_series(LineSeries::new(valid, RED.stroke_width(2)))?
            .label("valid")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| io(&e))
}
