//! Learning-rate schedules: linear warmup, then constant or cosine decay.

use serde::{Deserialize, Serialize};

/// What the learning rate does after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrDecay {
    /// Stay at the peak (MDLM, SEDD).
    Constant,
    /// Cosine decay from the peak to `min_ratio · peak` at the last step (Loshchilov & Hutter
    /// 2017, eq. 5 without restarts).
    Cosine {
        /// Final learning rate as a fraction of the peak.
        min_ratio: f64,
    },
}

/// `lr(step)` for `step = 0, 1, …, total − 1`: linear warmup from `peak/warmup` to `peak` over
/// the first `warmup` steps, then [`LrDecay`]. A pure function of the step, so a resumed run
/// needs no scheduler state.
pub fn learning_rate(step: usize, total: usize, peak: f64, warmup: usize, decay: LrDecay) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    match decay {
        LrDecay::Constant => peak,
        LrDecay::Cosine { min_ratio } => {
            let span = total.saturating_sub(warmup).saturating_sub(1).max(1);
            let progress = ((step - warmup) as f64 / span as f64).min(1.0);
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            peak * (min_ratio + (1.0 - min_ratio) * cosine)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let cosine = LrDecay::Cosine { min_ratio: 0.1 };
        assert!((learning_rate(0, 110, 1.0, 10, cosine) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 110, 1.0, 10, cosine) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 110, 1.0, 10, cosine) - 1.0).abs() < 1e-12);
        // Half-way through the decay: (1 + 0.1)/2.
        let mid = learning_rate(10 + 99 / 2, 110, 1.0, 10, cosine);
        assert!((mid - 0.55).abs() < 0.02, "{mid}");
        assert!((learning_rate(109, 110, 1.0, 10, cosine) - 0.1).abs() < 1e-12);
        assert_eq!(learning_rate(50, 110, 2.0, 0, LrDecay::Constant), 2.0);
    }
}
