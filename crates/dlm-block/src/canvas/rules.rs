//! The deterministic pieces of DiffusionGemma's denoising loop: the temperature schedule, the
//! entropy-bound acceptance of a canvas and the stable-and-confident stopping rule.

use std::collections::VecDeque;

use dlm_discrete::sampler::entropy_bound_count;

/// The linear temperature schedule (transformers' `LinearTemperatureScheduleLogitsProcessor`):
/// at the step with `n` of `N` steps remaining, `T = t_min + (t_max − t_min) · n / N`, from
/// `t_max` at the first step down to `t_min + (t_max − t_min)/N` at the last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearTemperature {
    /// Temperature at `n = 0`.
    pub t_min: f64,
    /// Temperature at `n = N`.
    pub t_max: f64,
    /// `N`.
    pub steps: usize,
}

impl LinearTemperature {
    /// The temperature with `remaining` steps left (counting this one), in `f32` as the
    /// reference computes it.
    pub fn at(&self, remaining: usize) -> f32 {
        let fraction = remaining as f32 / self.steps as f32;
        self.t_min as f32 + (self.t_max - self.t_min) as f32 * fraction
    }
}

/// The positions of one canvas row the EB rule accepts: sorted by entropy (ties by position),
/// the largest prefix within the bound ([`entropy_bound_count`]). Nothing is committed for
/// good: the rule runs over every position at every step.
pub fn accept_by_entropy(entropies: &[f64], gamma: f64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..entropies.len()).collect();
    order.sort_by(|&a, &b| entropies[a].total_cmp(&entropies[b]).then(a.cmp(&b)));
    let count = entropy_bound_count(order.iter().map(|&i| entropies[i]), gamma);
    let mut accepted = vec![false; entropies.len()];
    for &i in &order[..count] {
        accepted[i] = true;
    }
    accepted
}

/// transformers' `StableAndConfidentStoppingCriteria`: a row's canvas is done when its argmax
/// canvas equals each of the last `stability` ones (none before the first step, so the earliest
/// stop with `stability = 1` is the second step) and the mean entropy of its tempered
/// distribution is below `confidence`.
#[derive(Debug, Clone)]
pub struct StableAndConfident {
    stability: usize,
    confidence: f64,
    history: VecDeque<Vec<Vec<u32>>>,
}

impl StableAndConfident {
    /// The rule with an empty history.
    pub fn new(stability: usize, confidence: f64) -> Self {
        Self { stability, confidence, history: VecDeque::with_capacity(stability + 1) }
    }

    /// Whether each row stops after this step, given its argmax canvas and the mean entropy of
    /// its positions; the argmax canvases join the history.
    pub fn observe(&mut self, argmax: &[Vec<u32>], mean_entropy: &[f64]) -> Vec<bool> {
        let stopped = (0..argmax.len())
            .map(|row| {
                let stable = self.history.len() == self.stability
                    && self.history.iter().all(|past| past[row] == argmax[row]);
                stable && mean_entropy[row] < self.confidence
            })
            .collect();
        if self.stability > 0 {
            self.history.push_back(argmax.to_vec());
            if self.history.len() > self.stability {
                self.history.pop_front();
            }
        }
        stopped
    }
}
