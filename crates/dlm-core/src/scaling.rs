//! How a cost grows with a size: the exponent `k` of `cost ≈ c · sizeᵏ` fitted on log–log axes,
//! and the curves of several methods on one log–log figure (the `plot` feature).

/// The least-squares slope of `ln cost` against `ln size` over `points` (`(size, cost)`): the
/// exponent `k` of `cost ≈ c · sizeᵏ` (1 for a cost linear in the size, 2 for a quadratic one).
/// Points with a non-positive or non-finite coordinate are left out; `None` with fewer than two
/// distinct sizes left.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let n = logs.len() as f64;
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (logs.len() >= 2 && sxx > 1e-12).then(|| sxy / sxx)
}

/// One line per `(label, points)` of `series` (`(size, cost)` points) on log–log axes, as SVG;
/// `axes` names the size and the cost. Non-positive or non-finite points are not drawn.
///
/// # Errors
/// [`crate::CoreError::Io`] if the file cannot be written.
#[cfg(feature = "plot")]
pub fn plot_scaling(
    path: &std::path::Path,
    caption: &str,
    axes: [&str; 2],
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), crate::CoreError> {
    use plotters::prelude::*;

    use crate::train::plot::{create_parent, svg_error};

    let io = |e: &dyn std::fmt::Display| svg_error(path, e);
    create_parent(path)?;
    let drawable = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0;
    let lines: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(label, points)| (label.as_str(), points.iter().copied().filter(drawable).collect()))
        .collect();
    let bounds = |pick: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(pick))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo.is_finite() { (lo / 1.3, hi * 1.3) } else { (1.0, 10.0) }
    };
    let (x_range, y_range) = (bounds(|p| p.0), bounds(|p| p.1));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (x_range.0..x_range.1).log_scale(),
                (y_range.0..y_range.1).log_scale(),
            )?;
        chart.configure_mesh().x_desc(axes[0]).y_desc(axes[1]).draw()?;
        for (i, (label, points)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).mix(0.9);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(*label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| io(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_the_exponent_of_a_power_law() {
        let power = |k: f64| -> Vec<(f64, f64)> {
            [64.0, 128.0, 256.0, 1024.0].iter().map(|&x| (x, 3.5 * f64::powf(x, k))).collect()
        };
        for k in [0.0, 0.5, 1.0, 2.0] {
            let slope = log_log_slope(&power(k)).unwrap();
            assert!((slope - k).abs() < 1e-9, "{k}: {slope}");
        }
        // Bad points are left out; one size left is no slope.
        let mut noisy = power(1.0);
        noisy.extend([(0.0, 1.0), (5.0, -1.0), (f64::NAN, 2.0)]);
        assert!((log_log_slope(&noisy).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(log_log_slope(&[(4.0, 1.0), (4.0, 9.0)]), None);
        assert_eq!(log_log_slope(&[]), None);
    }

    #[cfg(feature = "plot")]
    #[test]
    fn curves_plot_even_when_empty() {
        let dir = std::env::temp_dir().join(format!("dlm-scaling-{}", std::process::id()));
        let path = dir.join("latency.svg");
        let series = vec![
            ("linear".to_string(), vec![(64.0, 1.0), (128.0, 2.0)]),
            ("nothing drawable".to_string(), vec![(0.0, 1.0)]),
        ];
        plot_scaling(&path, "latency", ["length", "seconds"], &series).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("linear"));
        plot_scaling(&path, "latency", ["length", "seconds"], &[]).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
