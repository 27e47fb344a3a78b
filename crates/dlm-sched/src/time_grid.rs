//! [`TimeGrid`]: the decreasing times a sampler walks from noise to data.

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::error::{ScheduleError, ensure_size, ensure_value};
use crate::invalid::{MAX_STEPS, ensure_steps};

const CONTEXT: &str = "time grid";

/// A strictly decreasing sequence of times `1 ≥ t_0 > t_1 > … > t_K ≥ 0` that a reverse-process
/// sampler walks, one step per pair `(t, s) = (t_k, t_{k+1})`, `s < t`.
///
/// [`TimeGrid::uniform`] is MDLM's grid `linspace(1, t_min, K + 1)` (Sahoo et al. 2024, §4 and
/// their `_sample`); a discrete-time model with `T` steps is sampled on `uniform(T, 0.0)`, and with
/// step skipping (DDIM-style, Song et al. 2021a, §4.2) on `uniform(K, 0.0)` with `K` dividing `T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct TimeGrid {
    times: Vec<f64>,
}

impl TryFrom<Vec<f64>> for TimeGrid {
    type Error = ScheduleError;
    fn try_from(times: Vec<f64>) -> Result<Self, Self::Error> {
        Self::from_times(times)
    }
}

impl From<TimeGrid> for Vec<f64> {
    fn from(grid: TimeGrid) -> Self {
        grid.times
    }
}

impl TimeGrid {
    /// `steps` equal steps from `t = 1` down to `t_min`: `t_k = 1 − k·(1 − t_min)/steps`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] if `steps == 0`, or unless
    /// `0 ≤ t_min < 1`.
    pub fn uniform(steps: usize, t_min: f64) -> Result<Self, ScheduleError> {
        ensure_steps(CONTEXT, "steps", steps)?;
        ensure_value((0.0..1.0).contains(&t_min), CONTEXT, "t_min", t_min, "a value in [0, 1)")?;
        let dt = (1.0 - t_min) / steps as f64;
        let mut times: Vec<f64> = (0..steps).map(|k| 1.0 - k as f64 * dt).collect();
        times.push(t_min);
        Ok(Self { times })
    }

    /// A grid from explicit times.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] with fewer than two times;
    /// [`ScheduleError::Invalid`] for a time outside `[0, 1]` or one that is not strictly
    /// below its predecessor.
    pub fn from_times(times: Vec<f64>) -> Result<Self, ScheduleError> {
        ensure_size(
            times.len() >= 2 && times.len() <= MAX_STEPS + 1,
            CONTEXT,
            "times.len()",
            times.len(),
            format!("between 2 and MAX_STEPS + 1 = {}", MAX_STEPS + 1),
        )?;
        for (index, &value) in times.iter().enumerate() {
            let in_range = (0.0..=1.0).contains(&value);
            let decreasing = index == 0 || value < times[index - 1];
            if !(in_range && decreasing) {
                return Err(ScheduleError::Invalid(InvalidInput::element(
                    CONTEXT,
                    "times",
                    index,
                    value,
                    "a value in [0, 1] strictly below the previous time",
                )));
            }
        }
        Ok(Self { times })
    }

    /// Number of steps `K` (one fewer than the number of times).
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// The times `t_0 > … > t_K`.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// The steps `(t, s)` with `s < t`, from noise to data.
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (f64, f64)> + '_ {
        self.times.windows(2).map(|w| (w[0], w[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn uniform_grid_is_mdlm_linspace() {
        let g = TimeGrid::uniform(4, 0.2).unwrap();
        let expected = [1.0, 0.8, 0.6, 0.4, 0.2];
        for (a, b) in g.times().iter().zip(expected) {
            assert!((a - b).abs() < 1e-15);
        }
        assert_eq!(g.steps(), 4);
        let pairs: Vec<_> = g.pairs().collect();
        assert_eq!(pairs.len(), 4);
        assert!(pairs.iter().all(|(t, s)| s < t));
        assert_eq!(pairs[0].0, 1.0);
        assert_eq!(pairs[3].1, 0.2);
    }

    #[test]
    fn skipping_grid_lands_on_the_discrete_grid() {
        // 250 steps over a T = 1000 model visit multiples of 4/1000.
        let g = TimeGrid::uniform(250, 0.0).unwrap();
        for &t in g.times() {
            let i = t * 1000.0;
            assert!((i - i.round()).abs() < 1e-9 && (i.round() as i64) % 4 == 0);
        }
    }

    #[test]
    fn rejects_bad_grids() {
        assert!(matches!(
            TimeGrid::uniform(0, 0.0),
            Err(ScheduleError::Invalid(InvalidInput { .. }))
        ));
        assert!(matches!(
            TimeGrid::uniform(10, 1.0),
            Err(ScheduleError::Invalid(InvalidInput { name: "t_min", .. }))
        ));
        assert!(matches!(
            TimeGrid::uniform(10, f64::NAN),
            Err(ScheduleError::Invalid(InvalidInput { name: "t_min", .. }))
        ));
        assert!(matches!(
            TimeGrid::from_times(vec![1.0, 0.5, 0.5]),
            Err(ScheduleError::Invalid(InvalidInput { index: Some(2), .. }))
        ));
        assert!(matches!(
            TimeGrid::from_times(vec![1.5, 0.5]),
            Err(ScheduleError::Invalid(InvalidInput { index: Some(0), .. }))
        ));
        assert!(matches!(
            TimeGrid::from_times(vec![1.0]),
            Err(ScheduleError::Invalid(InvalidInput { .. }))
        ));
        assert!(serde_json::from_str::<TimeGrid>("[1.0, 0.2, 0.4]").is_err());
    }
}
