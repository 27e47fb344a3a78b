//! SlowFast sampling (Wei et al. 2025, "Accelerating Diffusion Large Language Models with
//! SlowFast Sampling", arXiv 2506.10848): inside each block, sub-cycles of a slow exploratory
//! phase that estimates how far the model is already sure, then a fast phase that fills that span.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{DiscreteError, ensure_size, ensure_value};

/// The settings of SlowFast sampling; [`Default`] is the paper's (and its code's).
///
/// A block is decoded in *sub-cycles*, each covering a span `[start, end)` of the block that
/// begins where the previous span ended (the first at the block's start; every position before
/// `start` is decoded):
///
/// 1. **Slow phase**, `exploration_steps` model calls. Each call estimates the span's end as one
///    past the farthest masked position of `[start, block end)` whose proposal has confidence
///    `≥ span_confidence` (`start + 1` if none), clipped to `[1, block length]`; once the last
///    `stability_window` estimates have a (population) standard deviation below
///    `stability_std`, the end is fixed at the latest estimate; otherwise it is the floor of their
///    mean, fixed after the last exploration call. Each call also commits in `[start, block
///    end)` every masked position with confidence `≥ high_confidence` when there are at least
///    two, and otherwise the most confident one.
/// 2. **Fast phase**, until the span has no masked position: each call commits in `[start, end)`
///    by the same rule.
///
/// Confidence is the model's probability of the proposed token ([`Confidence::TokenProbability`]
/// on the model's distribution, as the reference's `softmax(logits)[x̂]`).
///
/// Two departures from the reference code, neither changing a committed token for one row: a
/// block with no masked position left takes no further call (the reference's slow phase always
/// makes its `exploration_steps` calls), and rows step through their sub-cycles independently
/// (the reference waits, at the end of a fast phase, for every row of the batch). The reference
/// runs the fast phase's later calls on the sequence truncated after the span, reusing the first
/// call's logits beyond it — an approximation that changes the logits inside the span; this
/// sampler always runs the model it is given, and the saving comes instead from composing the
/// policy with the block caches (`dlm-block`'s prefix and dual caches).
///
/// [`Confidence::TokenProbability`]: dlm_core::sampling::Confidence::TokenProbability
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct SlowFast {
    exploration_steps: usize,
    span_confidence: f64,
    stability_window: usize,
    stability_std: f64,
    high_confidence: f64,
}

dlm_sched::serde_validated!(SlowFast);

impl Default for SlowFast {
    /// The paper's settings: 6 exploration calls, span confidence 0.3, a window of 2 estimates,
    /// standard deviation 1.0, high confidence 0.9.
    fn default() -> Self {
        Self {
            exploration_steps: 6,
            span_confidence: 0.3,
            stability_window: 2,
            stability_std: 1.0,
            high_confidence: 0.9,
        }
    }
}

impl SlowFast {
    /// SlowFast sampling with these settings (see the type's documentation).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `exploration_steps ≥ 1`, `stability_window ≥ 1`,
    /// `span_confidence` and `high_confidence` lie in `[0, 1]`, and `stability_std` is finite and
    /// `> 0`.
    pub fn new(
        exploration_steps: usize,
        span_confidence: f64,
        stability_window: usize,
        stability_std: f64,
        high_confidence: f64,
    ) -> Result<Self, DiscreteError> {
        const CONTEXT: &str = "SlowFast sampling";
        ensure_size(
            exploration_steps >= 1,
            CONTEXT,
            "exploration_steps",
            exploration_steps,
            "at least 1",
        )?;
        ensure_size(
            stability_window >= 1,
            CONTEXT,
            "stability_window",
            stability_window,
            "at least 1",
        )?;
        let probability = "a value in [0, 1]";
        ensure_value(
            (0.0..=1.0).contains(&span_confidence),
            CONTEXT,
            "span_confidence",
            span_confidence,
            probability,
        )?;
        ensure_value(
            (0.0..=1.0).contains(&high_confidence),
            CONTEXT,
            "high_confidence",
            high_confidence,
            probability,
        )?;
        ensure_value(
            stability_std > 0.0 && stability_std.is_finite(),
            CONTEXT,
            "stability_std",
            stability_std,
            "a finite value > 0",
        )?;
        Ok(Self {
            exploration_steps,
            span_confidence,
            stability_window,
            stability_std,
            high_confidence,
        })
    }

    /// Slow-phase calls per sub-cycle.
    pub fn exploration_steps(&self) -> usize {
        self.exploration_steps
    }

    /// Confidence at which a masked position counts toward the span's end.
    pub fn span_confidence(&self) -> f64 {
        self.span_confidence
    }

    /// Estimates compared for stability.
    pub fn stability_window(&self) -> usize {
        self.stability_window
    }

    /// Standard deviation below which the estimates are stable.
    pub fn stability_std(&self) -> f64 {
        self.stability_std
    }

    /// Confidence at which both phases commit every passing position.
    pub fn high_confidence(&self) -> f64 {
        self.high_confidence
    }

    /// The checks of [`SlowFast::new`], for a value read from a config.
    pub(crate) fn validate(&self) -> Result<(), DiscreteError> {
        Self::new(
            self.exploration_steps,
            self.span_confidence,
            self.stability_window,
            self.stability_std,
            self.high_confidence,
        )
        .map(drop)
    }

    /// One step of one row: which of the block's `candidates` (masked, free positions) to commit,
    /// given the confidence of each position's proposal, advancing the row's sub-cycle.
    pub(crate) fn select(
        &self,
        candidates: &[bool],
        confidence: &[f32],
        cycle: &mut SubCycle,
    ) -> Vec<bool> {
        let n = candidates.len();
        if cycle.explored == self.exploration_steps {
            let span = cycle.start..cycle.end.min(n);
            if span.clone().any(|i| candidates[i]) {
                return confident_or_best(candidates, confidence, span, self.high_confidence);
            }
            // The span is filled: this call starts the next sub-cycle.
            *cycle = SubCycle { start: cycle.end, ..SubCycle::default() };
        }
        if !cycle.fixed {
            self.estimate_span_end(candidates, confidence, cycle);
        }
        let commit =
            confident_or_best(candidates, confidence, cycle.start..n, self.high_confidence);
        cycle.explored += 1;
        if cycle.explored == self.exploration_steps && !cycle.fixed {
            cycle.end = floor_mean(&cycle.history).clamp(1, n);
            cycle.fixed = true;
        }
        commit
    }

    /// A slow-phase call's estimate of the span's end, and what it fixes.
    fn estimate_span_end(&self, candidates: &[bool], confidence: &[f32], cycle: &mut SubCycle) {
        let n = candidates.len();
        let estimate = (cycle.start..n)
            .rev()
            .find(|&i| candidates[i] && confidence[i] >= self.span_confidence as f32)
            .map_or(cycle.start + 1, |i| i + 1)
            .clamp(1, n);
        if cycle.history.len() == self.stability_window {
            cycle.history.pop_front();
        }
        cycle.history.push_back(estimate);
        if cycle.history.len() < self.stability_window {
            return;
        }
        if population_std(&cycle.history) < self.stability_std {
            cycle.end = estimate;
            cycle.fixed = true;
        } else {
            cycle.end = floor_mean(&cycle.history).clamp(1, n);
            cycle.fixed = cycle.explored + 1 == self.exploration_steps;
        }
    }
}

/// Where a row stands in the current sub-cycle of its block (block-relative positions); a block
/// starts with [`SubCycle::default`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SubCycle {
    /// The span's start: where the previous span ended.
    start: usize,
    /// The span's end, as estimated so far.
    end: usize,
    /// Whether `end` is final.
    fixed: bool,
    /// The latest estimates of the end, at most the stability window.
    history: VecDeque<usize>,
    /// Slow-phase calls made in this sub-cycle.
    explored: usize,
}

/// Commits, among the `candidates` in `range`, every one with confidence `≥ tau` when at least
/// two pass, and otherwise the most confident one (Fast-dLLM's threshold rule, which SlowFast's
/// phases also use: with one passing position that position is the most confident). The
/// comparison is in `f32`, the confidences' precision, as the reference's `conf >= 0.9` on a
/// float32 tensor: a confidence of `0.9f32` passes `τ = 0.9`.
pub(crate) fn confident_or_best(
    candidates: &[bool],
    confidence: &[f32],
    range: std::ops::Range<usize>,
    tau: f64,
) -> Vec<bool> {
    let mut commit = vec![false; candidates.len()];
    let mut order: Vec<usize> = range.filter(|&i| candidates[i]).collect();
    order.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    for (rank, &i) in order.iter().enumerate() {
        commit[i] = rank == 0 || confidence[i] >= tau as f32;
    }
    commit
}

fn floor_mean(values: &VecDeque<usize>) -> usize {
    values.iter().sum::<usize>() / values.len().max(1)
}

fn population_std(values: &VecDeque<usize>) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's candidates from a token string: `m` masked, anything else decoded.
    fn masked(row: &str) -> Vec<bool> {
        row.chars().map(|c| c == 'm').collect()
    }

    fn positions(commit: &[bool]) -> Vec<usize> {
        (0..commit.len()).filter(|&i| commit[i]).collect()
    }

    #[test]
    fn the_slow_phase_estimates_the_span_and_fixes_it_once_stable() {
        // Two exploration calls; the defaults otherwise.
        let policy = SlowFast::new(2, 0.3, 2, 1.0, 0.9).unwrap();
        let mut cycle = SubCycle::default();
        // Call 1: masked positions 0..8; confidences ≥ 0.3 farthest at 4 → estimate 5. One
        // estimate is not yet a window: the end is not fixed. Nothing ≥ 0.9 twice: top-1 (0.8 at 1).
        let mut candidates = masked("mmmmmmmm");
        let confidence = [0.2, 0.8, 0.1, 0.1, 0.35, 0.29, 0.1, 0.1];
        let commit = policy.select(&candidates, &confidence, &mut cycle);
        assert_eq!(positions(&commit), [1]);
        assert_eq!((cycle.end, cycle.fixed, cycle.explored), (0, false, 1));
        candidates[1] = false;
        // Call 2: farthest ≥ 0.3 is 5 → estimate 6; window [5, 6], std 0.5 < 1: fixed at 6.
        // Two positions ≥ 0.9 (2 and 5): both commit.
        let confidence = [0.2, 0.0, 0.95, 0.1, 0.1, 0.91, 0.1, 0.29];
        let commit = policy.select(&candidates, &confidence, &mut cycle);
        assert_eq!(positions(&commit), [2, 5]);
        assert_eq!((cycle.end, cycle.fixed, cycle.explored), (6, true, 2));
        candidates[2] = false;
        candidates[5] = false;
        // Fast phase: inside [0, 6) only; position 6 (0.99) is outside the span.
        let confidence = [0.5, 0.0, 0.0, 0.6, 0.4, 0.3, 0.99, 0.0];
        let commit = policy.select(&candidates, &confidence, &mut cycle);
        assert_eq!(positions(&commit), [3], "the span's most confident, not position 6");
        for i in [0, 3, 4, 5] {
            candidates[i] = false;
        }
        // The span is filled: this call explores [6, 8) as a new sub-cycle from 6.
        let confidence = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0];
        let commit = policy.select(&candidates, &confidence, &mut cycle);
        assert_eq!(positions(&commit), [6]);
        assert_eq!((cycle.start, cycle.explored, cycle.history.len()), (6, 1, 1));
        assert_eq!(cycle.history[0], 7, "nothing ≥ 0.3: the estimate is start + 1");
    }

    #[test]
    fn unstable_estimates_take_the_floor_of_their_mean() {
        // Estimates 8 then 3 (std 2.5 ≥ 1): the end is ⌊5.5⌋ = 5, not fixed until the last
        // exploration call; with three exploration calls the third estimate decides.
        let policy = SlowFast::new(3, 0.3, 2, 1.0, 0.9).unwrap();
        let mut cycle = SubCycle::default();
        let mut candidates = masked("mmmmmmmm");
        let far = [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5];
        policy.select(&candidates, &far, &mut cycle);
        candidates[7] = false;
        let near = [0.1, 0.1, 0.5, 0.1, 0.1, 0.1, 0.1, 0.0];
        policy.select(&candidates, &near, &mut cycle);
        assert_eq!((cycle.end, cycle.fixed), (5, false));
        candidates[2] = false;
        // Estimate 5 (position 4 at 0.4): window [3, 5], std 1.0 is not < 1: ⌊4⌋, fixed as the
        // exploration ends.
        let last = [0.1, 0.1, 0.0, 0.1, 0.4, 0.1, 0.1, 0.0];
        policy.select(&candidates, &last, &mut cycle);
        assert_eq!((cycle.end, cycle.fixed, cycle.explored), (4, true, 3));
    }

    #[test]
    fn a_window_longer_than_the_exploration_falls_back_to_the_mean() {
        let policy = SlowFast::new(2, 0.3, 5, 1.0, 0.9).unwrap();
        let mut cycle = SubCycle::default();
        let candidates = masked("mmmmmm");
        policy.select(&candidates, &[0.1, 0.1, 0.1, 0.5, 0.1, 0.1], &mut cycle);
        policy.select(&candidates, &[0.1, 0.1, 0.1, 0.1, 0.1, 0.6], &mut cycle);
        // Estimates 4 and 6, never a full window: ⌊5⌋ after the last exploration call.
        assert_eq!((cycle.end, cycle.fixed), (5, true));
    }

    #[test]
    fn the_commit_rule_needs_two_confident_positions() {
        let candidates = masked("mmmxm");
        let one = confident_or_best(&candidates, &[0.95, 0.5, 0.6, 1.0, 0.2], 0..5, 0.9);
        assert_eq!(positions(&one), [0], "one passes: it is the most confident");
        let two = confident_or_best(&candidates, &[0.95, 0.5, 0.9, 1.0, 0.2], 0..5, 0.9);
        assert_eq!(positions(&two), [0, 2], "0.9f32 is below 0.9f64 but passes, as in f32");
        let none = confident_or_best(&candidates, &[0.1, 0.5, 0.6, 1.0, 0.2], 1..5, 0.9);
        assert_eq!(positions(&none), [2], "the decoded position 3 never commits");
    }

    #[test]
    fn bad_settings_are_rejected_naming_the_field() {
        let err = SlowFast::new(0, 0.3, 2, 1.0, 0.9).unwrap_err().to_string();
        assert!(err.contains("exploration_steps"), "{err}");
        assert!(SlowFast::new(6, 1.3, 2, 1.0, 0.9).is_err());
        assert!(SlowFast::new(6, 0.3, 0, 1.0, 0.9).is_err());
        assert!(SlowFast::new(6, 0.3, 2, 0.0, 0.9).is_err());
        assert!(SlowFast::new(6, 0.3, 2, 1.0, f64::NAN).is_err());
        let read: Result<SlowFast, _> = serde_json::from_str(
            r#"{"exploration_steps": 6, "span_confidence": 0.3, "stability_window": 2,
                "stability_std": -1, "high_confidence": 0.9}"#,
        );
        assert!(read.unwrap_err().to_string().contains("stability_std"));
    }
}
