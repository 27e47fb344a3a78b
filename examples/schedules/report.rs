//! The schedule table and plot shared by the `schedules` and `quickstart` examples.

use std::path::Path;

use dlm::sched::{NoiseSchedule, ScheduleKind};
use plotters::prelude::*;

/// Times at which the table evaluates every schedule.
const TABLE_TIMES: [f64; 6] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9];

/// Prints `α`, `1 − α`, `σ`, log-SNR and the masked-ELBO weight of every preset at a few times.
pub(crate) fn print_table(schedules: &[ScheduleKind]) {
    println!(
        "| {:<26} | {:>5} | {:>10} | {:>10} | {:>10} | {:>10} | {:>10} |",
        "schedule", "t", "alpha", "1 - alpha", "sigma", "log-SNR", "weight"
    );
    println!(
        "|{:-<28}|{:-<7}|{:-<12}|{:-<12}|{:-<12}|{:-<12}|{:-<12}|",
        "", "", "", "", "", "", ""
    );
    for schedule in schedules {
        for t in TABLE_TIMES {
            println!(
                "| {:<26} | {:>5.2} | {:>10.4e} | {:>10.4e} | {:>10.4e} | {:>10.3} | {:>10.4e} |",
                schedule.label(),
                t,
                schedule.alpha(t),
                schedule.one_minus_alpha(t),
                schedule.sigma(t),
                schedule.log_snr(t),
                schedule.masked_elbo_weight(t),
            );
        }
    }
}

/// Writes an SVG plot of `α(t)` for every schedule.
pub(crate) fn plot_alpha(schedules: &[ScheduleKind], path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("signal level α(t) of every schedule", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    chart.configure_mesh().x_desc("t").y_desc("α(t)").draw()?;
    let times: Vec<f64> = (0..=400).map(|k| k as f64 / 400.0).collect();
    for (index, schedule) in schedules.iter().enumerate() {
        let color = Palette99::pick(index).stroke_width(2);
        chart
            .draw_series(LineSeries::new(times.iter().map(|&t| (t, schedule.alpha(t))), color))?
            .label(schedule.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
