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
    let io = |e: &dyn std::fmt::Display| svg_error(path, e);
    create_parent(path)?;
    let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    // Only finite losses are drawn: a diverged value would stretch the axis without end.
    let finite = |loss: &f64| loss.is_finite();
    let losses = rows.iter().flat_map(|r| std::iter::once(r.train_loss).chain(r.valid_loss));
    let (lo, hi) = losses
        .filter(finite)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let (lo, hi) = match (lo.is_finite(), hi - lo > 1e-9 * hi.abs().max(1.0)) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)),
        (true, false) => (lo - 0.5, hi + 0.5),
    };
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
                rows.iter().map(|r| (r.step as f64, r.train_loss)).filter(|(_, l)| finite(l)),
                &BLUE,
            ))?
            .label("train")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE));
        let valid: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.valid_loss.map(|v| (r.step as f64, v)))
            .filter(|(_, l)| finite(l))
            .collect();
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

/// The error of an SVG figure that cannot be drawn or written to `path`.
pub(crate) fn svg_error(path: &Path, error: &dyn std::fmt::Display) -> CoreError {
    CoreError::Io { path: path.to_path_buf(), source: std::io::Error::other(error.to_string()) }
}

/// Creates the folder a figure goes to.
pub(crate) fn create_parent(path: &Path) -> Result<(), CoreError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::create_dir_all(parent).map_err(|e| svg_error(path, &e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverged_and_constant_losses_still_plot() {
        let row = |step, train_loss, valid_loss| MetricsRow {
            step,
            learning_rate: 1e-3,
            train_loss,
            valid_loss,
            tokens_per_second: 1.0,
            elapsed_seconds: 1.0,
        };
        let dir = std::env::temp_dir().join(format!("dlm-plot-{}", std::process::id()));
        for rows in [
            vec![row(1, 2.0, None), row(2, f64::INFINITY, Some(f64::NAN)), row(3, 1.5, None)],
            vec![row(1, f64::NAN, None), row(2, f64::NEG_INFINITY, None)],
            vec![row(0, 3.0, Some(3.0))],
            vec![],
        ] {
            let path = dir.join(format!("{}.svg", rows.len()));
            plot_losses(&rows, &path).unwrap();
            assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
        }
    }
}
