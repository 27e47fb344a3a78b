//! The loss curve of a run as SVG (the `plot` feature, on by default).

use std::fs;
use std::path::Path;

use plotters::prelude::*;

use super::run::MetricsRow;
use crate::error::CoreError;

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
