//! The deterministic pieces of DiffusionGemma's denoising loop: the temperature schedule and the
//! entropy-bound acceptance of a canvas (the stopping rule, which the masked samplers share, is
//! [`dlm_discrete::sampler::StableAndConfident`]).

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
