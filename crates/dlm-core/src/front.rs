//! Speed–quality fronts: of a set of decoders measured by cost (model calls) and quality, the
//! ones no other beats on both, as indices and as an SVG figure (the `plot` feature).

/// The indices of the points on the Pareto front of `(cost, quality)` pairs, lower cost and higher
/// quality being better: the points that no other point matches on both and beats on one (of
/// equal points the first is kept), sorted by cost. A point with a non-finite coordinate is never
/// on the front.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let finite = |&(cost, quality): &(f64, f64)| cost.is_finite() && quality.is_finite();
    let dominates =
        |a: (f64, f64), b: (f64, f64)| a.0 <= b.0 && a.1 >= b.1 && (a.0 < b.0 || a.1 > b.1);
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| finite(&points[i]))
        .filter(|&i| {
            !points.iter().enumerate().any(|(j, &other)| {
                finite(&other) && (dominates(other, points[i]) || (j < i && other == points[i]))
            })
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    front
}

/// Every point of `labelled` (`(label, cost, quality)`) on a log-scaled cost axis, the Pareto
/// front joined by a line and labelled, as SVG; `axes` names the cost and the quality.
///
/// # Errors
/// [`crate::CoreError::Io`] if the file cannot be written.
#[cfg(feature = "plot")]
pub fn plot_front(
    path: &std::path::Path,
    caption: &str,
    axes: [&str; 2],
    labelled: &[(String, f64, f64)],
) -> Result<(), crate::CoreError> {
    use plotters::prelude::*;

    use crate::train::plot::{create_parent, svg_error};

    let io = |e: &dyn std::fmt::Display| svg_error(path, e);
    create_parent(path)?;
    let points: Vec<(f64, f64)> = labelled.iter().map(|&(_, cost, q)| (cost, q)).collect();
    let drawn: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(c, q)| c.is_finite() && c > 0.0 && q.is_finite())
        .collect();
    let (mut cost_lo, mut cost_hi) = drawn
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(c, _)| (lo.min(c), hi.max(c)));
    let (mut quality_lo, mut quality_hi) = drawn
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, q)| (lo.min(q), hi.max(q)));
    if drawn.is_empty() {
        (cost_lo, cost_hi, quality_lo, quality_hi) = (1.0, 10.0, 0.0, 1.0);
    }
    let margin = 0.08 * (quality_hi - quality_lo).max(1e-3);
    let front = pareto_front(&points);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                ((cost_lo / 1.5)..(cost_hi * 1.5)).log_scale(),
                (quality_lo - margin)..(quality_hi + margin),
            )?;
        chart.configure_mesh().x_desc(axes[0]).y_desc(axes[1]).draw()?;
        chart.draw_series(drawn.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
        chart
            .draw_series(LineSeries::new(front.iter().map(|&i| points[i]), RED.stroke_width(2)))?;
        chart.draw_series(front.iter().map(|&i| {
            let font = ("sans-serif", 13).into_font().color(&BLACK);
            Text::new(labelled[i].0.clone(), points[i], font)
        }))?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| io(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_what_nothing_beats_on_both_axes() {
        // (calls, quality): 1 is beaten by 0 (fewer calls, better); 3 ties 2 on calls and is
        // worse; 4 is a repeat of 0; 5 is not finite.
        let points = [
            (8.0, 0.9),
            (16.0, 0.85),
            (32.0, 0.99),
            (32.0, 0.95),
            (8.0, 0.9),
            (f64::NAN, 1.0),
            (4.0, 0.5),
        ];
        assert_eq!(pareto_front(&points), [6, 0, 2]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
        assert_eq!(pareto_front(&[(1.0, 0.0)]), [0]);
    }

    #[cfg(feature = "plot")]
    #[test]
    fn the_front_plots_even_when_degenerate() {
        let dir = std::env::temp_dir().join(format!("dlm-front-{}", std::process::id()));
        let point = |label: &str, cost, quality| (label.to_string(), cost, quality);
        let points = [point("a", 1.0, 0.5), point("b", 4.0, 0.9), point("c", 2.0, 0.2)];
        let path = dir.join("front.svg");
        plot_front(&path, "t", ["calls", "q"], &points).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let has_text = |text: &str| svg.lines().any(|line| line.trim() == text);
        assert!(has_text("a") && has_text("b"), "the front's labels are drawn");
        assert!(!has_text("c"), "a point off the front is not labelled");
        plot_front(&path, "t", ["calls", "q"], &[point("a", f64::NAN, 0.5)]).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
