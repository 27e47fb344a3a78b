//! Unmasking policies: which masked positions a sampler step commits (and, for ReMDM, which
//! decoded ones it masks again).

use dlm_core::sampling::Confidence;
use dlm_sched::TimeGrid;
use dlm_sched::{NoiseSchedule, ScheduleKind};
use serde::{Deserialize, Serialize};

use super::remdm::ReMdm;
use super::slow_fast::{SlowFast, SubCycle, confident_or_best};
use crate::error::{DiscreteError, ensure_value};
use crate::masking::MaskingProcess;

/// Which masked positions a step commits to their proposed token.
///
/// Build the policies with settings through [`Unmasking::threshold`] and [`Unmasking::factor`];
/// a literal is checked when it enters a [`crate::sampler::MaskedSampler`], and deserialising
/// runs the same checks ([`Unmasking::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "policy", rename_all = "snake_case")]
pub enum Unmasking {
    /// MDLM's ancestral step from `t` to `s` (Sahoo et al. 2024, eq. 6 with SUBS, their `ddpm`
    /// sampler): each masked position unmasks with probability `(α_s − α_t)/(1 − α_t)`.
    Ancestral {
        /// The schedule the model was trained with.
        schedule: ScheduleKind,
    },
    /// ReMDM (Wang et al. 2025): ancestral steps that also remask decoded tokens.
    ReMdm(ReMdm),
    /// LLaDA's low-confidence remasking (Nie et al. 2025): `k` positions per step, the most
    /// confident, with the block's masked positions split evenly over the steps.
    TopK {
        /// How confidence is measured.
        confidence: Confidence,
    },
    /// LLaDA's random remasking: `k` uniformly chosen positions per step, `k` as for `TopK`.
    Random,
    /// Fast-dLLM's parallel decoding (Wu et al. 2025): every position with confidence `≥ τ`,
    /// and always the most confident one, so a step never stalls.
    Threshold {
        /// How confidence is measured.
        confidence: Confidence,
        /// The threshold `τ` (Fast-dLLM: 0.9).
        tau: f64,
    },
    /// Fast-dLLM's factor rule: with confidences sorted `c_(1) ≥ c_(2) ≥ …`, the longest prefix
    /// with `(k + 1)(1 − c_(k)) ≤ f` — their Theorem 1's `(n + 1)ε ≤ 1` relaxed by `f` — and at
    /// least one position.
    Factor {
        /// How confidence is measured.
        confidence: Confidence,
        /// The factor `f`.
        factor: f64,
    },
    /// The EB-sampler (Ben-Hamu et al. 2025, arXiv 2505.24857): with the masked positions
    /// sorted by the entropy `H_(1) ≤ H_(2) ≤ …` of the distribution their tokens are drawn
    /// from, the largest prefix `U` with `Σ_{i∈U} H_i − max_{i∈U} H_i ≤ γ`, and at least one
    /// position. The left side bounds the mutual information among the tokens of `U`, the error
    /// of drawing them independently in one step instead of jointly.
    EntropyBound {
        /// The bound `γ` (DiffusionGemma's default: 0.1).
        gamma: f64,
    },
    /// SlowFast sampling (Wei et al. 2025): sub-cycles of a slow phase that estimates the span
    /// the model is sure of and a fast phase that fills it ([`SlowFast`]).
    SlowFast(SlowFast),
}

dlm_sched::serde_validated!(Unmasking);

impl Unmasking {
    /// The checks of the validating constructors, for a policy written as a literal or read
    /// from a config.
    ///
    /// # Errors
    /// As [`Unmasking::threshold`], [`Unmasking::factor`] and [`ReMdm::new`].
    pub fn validate(&self) -> Result<(), DiscreteError> {
        match self {
            Self::Threshold { confidence, tau } => Self::threshold(*confidence, *tau).map(drop),
            Self::Factor { confidence, factor } => Self::factor(*confidence, *factor).map(drop),
            Self::ReMdm(remdm) => remdm.validate(),
            Self::EntropyBound { gamma } => Self::entropy_bound(*gamma).map(drop),
            Self::SlowFast(slow_fast) => slow_fast.validate(),
            Self::Ancestral { .. } | Self::TopK { .. } | Self::Random => Ok(()),
        }
    }

    /// [`Unmasking::Ancestral`] with the schedule of the process the model was trained on
    /// (MDLM's ancestral sampler reverses exactly that forward process).
    ///
    /// # Errors
    /// [`DiscreteError::Unsupported`] for a process with a [`crate::Spindle`]: its keep
    /// probabilities depend on the token, and the ancestral step of one shared schedule would
    /// reverse another process.
    pub fn ancestral<S: NoiseSchedule + Clone + Into<ScheduleKind>>(
        process: &MaskingProcess<S>,
    ) -> Result<Self, DiscreteError> {
        if process.has_spindle() {
            return Err(DiscreteError::Unsupported {
                what: "the ancestral sampler of a spindle process (token-dependent schedules)",
            });
        }
        Ok(Self::Ancestral { schedule: process.schedule().clone().into() })
    }

    /// [`Unmasking::Threshold`], validated.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `0 < τ ≤ 1`;
    /// [`DiscreteError::ConfidenceNotAProbability`] for [`Confidence::NegativeEntropy`].
    pub fn threshold(confidence: Confidence, tau: f64) -> Result<Self, DiscreteError> {
        ensure_probability(confidence, "threshold unmasking")?;
        ensure_value(
            tau > 0.0 && tau <= 1.0,
            "threshold unmasking",
            "tau",
            tau,
            "a value in (0, 1]",
        )?;
        Ok(Self::Threshold { confidence, tau })
    }

    /// [`Unmasking::Factor`], validated.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `f` is finite and `> 0`;
    /// [`DiscreteError::ConfidenceNotAProbability`] for [`Confidence::NegativeEntropy`].
    pub fn factor(confidence: Confidence, factor: f64) -> Result<Self, DiscreteError> {
        ensure_probability(confidence, "factor unmasking")?;
        ensure_value(
            factor > 0.0 && factor.is_finite(),
            "factor unmasking",
            "factor",
            factor,
            "a finite value > 0",
        )?;
        Ok(Self::Factor { confidence, factor })
    }

    /// [`Unmasking::EntropyBound`], validated.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `γ` is finite and `≥ 0`.
    pub fn entropy_bound(gamma: f64) -> Result<Self, DiscreteError> {
        ensure_value(
            gamma >= 0.0 && gamma.is_finite(),
            "entropy-bound unmasking",
            "gamma",
            gamma,
            "a finite value >= 0",
        )?;
        Ok(Self::EntropyBound { gamma })
    }

    /// The confidence measure the policy ranks by, if any (the entropy bound ranks by negative
    /// entropy).
    pub fn confidence(&self) -> Option<Confidence> {
        match self {
            Self::TopK { confidence }
            | Self::Threshold { confidence, .. }
            | Self::Factor { confidence, .. } => Some(*confidence),
            Self::EntropyBound { .. } => Some(Confidence::NegativeEntropy),
            Self::SlowFast(_) => Some(Confidence::TokenProbability),
            _ => None,
        }
    }

    /// Whether the confidence must be read from the distribution the tokens are drawn from
    /// (after temperature and top-k/top-p) rather than the model's: the entropy bound's
    /// guarantee is about the tokens actually drawn.
    pub fn scores_the_sampling_distribution(&self) -> bool {
        matches!(self, Self::EntropyBound { .. })
    }

    /// Whether the policy walks a time grid (ancestral, ReMDM); else it counts tokens or
    /// applies a rule to the confidences.
    pub fn walks_time(&self) -> bool {
        matches!(self, Self::Ancestral { .. } | Self::ReMdm(_))
    }

    /// Whether the policy may mask decoded positions again (ReMDM).
    pub fn remasks(&self) -> bool {
        matches!(self, Self::ReMdm(_))
    }

    /// The policy's clock for `steps` steps per block: a uniform time grid (ancestral, ReMDM),
    /// even shares of the block (top-k, random), or as many steps as the rule needs (threshold,
    /// factor, entropy bound).
    pub fn clock(&self, steps: usize) -> Clock {
        match self {
            Self::Ancestral { .. } | Self::ReMdm(_) => {
                let grid = TimeGrid::uniform(steps.max(1), 0.0).expect("at least one step");
                Clock::Grid(grid.pairs().collect())
            }
            Self::TopK { .. } | Self::Random => Clock::Shares { steps: steps.max(1) },
            Self::Threshold { .. }
            | Self::Factor { .. }
            | Self::EntropyBound { .. }
            | Self::SlowFast(_) => Clock::UntilDone,
        }
    }
}

/// How a policy paces the steps of a block ([`Unmasking::clock`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Clock {
    /// Steps `(t, s)` of a uniform grid from `t = 1` to `s = 0`.
    Grid(Vec<(f64, f64)>),
    /// The block's masked positions split evenly over `steps` steps (LLaDA).
    Shares {
        /// Steps per block.
        steps: usize,
    },
    /// Steps until the block is decoded; each commits at least one position, so a block of `n`
    /// positions takes at most `n`.
    UntilDone,
}

impl Clock {
    /// The most steps a block of `len` positions takes.
    pub fn max_steps(&self, len: usize) -> usize {
        match self {
            Self::Grid(pairs) => pairs.len(),
            Self::Shares { steps } => *steps,
            Self::UntilDone => len,
        }
    }

    /// Step `step` of a block that had `masked` masked positions when it started.
    ///
    /// # Panics
    /// If `step` is past the end of a grid.
    pub fn tick(&self, step: usize, masked: usize) -> Tick {
        match self {
            Self::Grid(pairs) => {
                let (t, s) = pairs[step];
                Tick::Time { t, s }
            }
            Self::Shares { steps } => Tick::Count(tokens_per_step(masked, *steps, step)),
            Self::UntilDone => Tick::Rule,
        }
    }
}

/// One step on a policy's [`Clock`]: what the policy needs to choose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tick {
    /// From time `t` to `s < t` (grid policies).
    Time {
        /// Current time.
        t: f64,
        /// Next time.
        s: f64,
    },
    /// Commit this many positions (count policies).
    Count(usize),
    /// Commit what the policy's rule accepts (threshold, factor, entropy bound, SlowFast).
    Rule,
    /// A step after the block's last mask, which only edits ([`super::TokenEditing`]): the
    /// policy is not asked.
    Post,
}

impl Tick {
    /// The time a grid step starts from, which is what a time-conditioned model is given.
    pub fn time(&self) -> Option<f64> {
        match self {
            Self::Time { t, .. } => Some(*t),
            Self::Count(_) | Self::Rule | Self::Post => None,
        }
    }

    /// `(t, s)` of a grid step; a policy steps on the clock it made ([`Unmasking::clock`]), so
    /// a grid policy always gets one.
    fn interval(&self) -> (f64, f64) {
        match self {
            Self::Time { t, s } => (*t, *s),
            Self::Count(_) | Self::Rule | Self::Post => {
                unreachable!("a grid policy steps on its grid")
            }
        }
    }

    /// The count of a count step (as [`Tick::interval`]).
    fn count(&self) -> usize {
        match self {
            Self::Count(k) => *k,
            Self::Time { .. } | Self::Rule | Self::Post => {
                unreachable!("a count policy steps on its shares")
            }
        }
    }
}

/// Threshold and factor rules read confidences as probabilities of being right: token
/// probability and margin lie in `[0, 1]`; negative entropy is `≤ 0` and would never pass.
fn ensure_probability(confidence: Confidence, policy: &'static str) -> Result<(), DiscreteError> {
    match confidence {
        Confidence::TokenProbability | Confidence::Margin => Ok(()),
        Confidence::NegativeEntropy => {
            Err(DiscreteError::ConfidenceNotAProbability { policy, confidence })
        }
    }
}

/// One row's view of a step, on the host.
pub(crate) struct RowStep<'a> {
    /// Masked positions of the current block that may be decoded.
    pub(crate) candidates: &'a [bool],
    /// Decoded, non-fixed positions (ReMDM may remask them).
    pub(crate) decoded: &'a [bool],
    /// Confidence of each position's proposal.
    pub(crate) confidence: &'a [f32],
    /// Uniforms in `[0, 1)`, two per position.
    pub(crate) uniforms: &'a [f64],
    /// The step on the policy's clock.
    pub(crate) tick: Tick,
}

/// What a policy carries from one step of a block to the next, per row (SlowFast's sub-cycle;
/// the other policies keep nothing). Every block starts with the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowMemory {
    sub_cycle: SubCycle,
}

/// What a step does to one row: positions to commit and positions to mask again.
pub(crate) struct RowSelection {
    pub(crate) commit: Vec<bool>,
    pub(crate) remask: Vec<bool>,
}

impl Unmasking {
    pub(crate) fn select(&self, row: &RowStep<'_>, memory: &mut RowMemory) -> RowSelection {
        let n = row.candidates.len();
        let mut commit = vec![false; n];
        let mut remask = vec![false; n];
        let candidates: Vec<usize> = (0..n).filter(|&i| row.candidates[i]).collect();
        let by_confidence = || {
            let mut order = candidates.clone();
            order.sort_by(|&a, &b| row.confidence[b].total_cmp(&row.confidence[a]));
            order
        };
        match self {
            Self::Ancestral { schedule } => {
                let (t, s) = row.tick.interval();
                let p = unmask_probability(schedule, t, s);
                for &i in &candidates {
                    commit[i] = row.uniforms[2 * i] < p;
                }
            }
            Self::ReMdm(remdm) => {
                let (t, s) = row.tick.interval();
                let (p_unmask, p_remask) = remdm.probabilities(t, s);
                for &i in &candidates {
                    commit[i] = row.uniforms[2 * i] < p_unmask;
                }
                for i in (0..n).filter(|&i| row.decoded[i]) {
                    remask[i] = row.uniforms[2 * i + 1] < p_remask;
                }
            }
            Self::TopK { .. } => {
                for &i in by_confidence().iter().take(row.tick.count()) {
                    commit[i] = true;
                }
            }
            Self::Random => {
                let mut order = candidates.clone();
                order.sort_by(|&a, &b| row.uniforms[2 * a].total_cmp(&row.uniforms[2 * b]));
                for &i in order.iter().take(row.tick.count()) {
                    commit[i] = true;
                }
            }
            Self::Threshold { tau, .. } => {
                commit = confident_or_best(row.candidates, row.confidence, 0..n, *tau);
            }
            Self::SlowFast(slow_fast) => {
                commit = slow_fast.select(row.candidates, row.confidence, &mut memory.sub_cycle);
            }
            Self::Factor { factor, .. } => {
                for (rank, &i) in by_confidence().iter().enumerate() {
                    let k = (rank + 1) as f64;
                    let passes = (k + 1.0) * (1.0 - f64::from(row.confidence[i])) <= *factor;
                    if rank > 0 && !passes {
                        break;
                    }
                    commit[i] = true;
                }
            }
            Self::EntropyBound { gamma } => {
                // Descending negative entropy is ascending entropy.
                let order = by_confidence();
                let entropies = order.iter().map(|&i| -f64::from(row.confidence[i]));
                for &i in order.iter().take(entropy_bound_count(entropies, *gamma)) {
                    commit[i] = true;
                }
            }
        }
        RowSelection { commit, remask }
    }
}

/// The EB-sampler's rule (Ben-Hamu et al. 2025, arXiv 2505.24857, §3): for entropies sorted
/// ascending, `H_(1) ≤ H_(2) ≤ …`, how many to accept — the largest `k` with
/// `Σ_{i≤k} H_(i) − H_(k) ≤ γ` (the running maximum is the current entropy), and at least one.
/// The masked samplers ([`Unmasking::EntropyBound`]) and DiffusionGemma's canvas sampler
/// (`dlm_block::canvas`) both accept by it.
pub fn entropy_bound_count(ascending: impl IntoIterator<Item = f64>, gamma: f64) -> usize {
    let mut sum = 0.0;
    let mut count = 0;
    for entropy in ascending {
        sum += entropy;
        if count > 0 && sum - entropy > gamma {
            break;
        }
        count += 1;
    }
    count
}

/// `(α_s − α_t)/(1 − α_t)`, the probability that a masked token is unmasked between `t` and
/// `s < t` (MDLM eq. 6); 1 when `α_t = 1`.
pub(crate) fn unmask_probability(schedule: &impl NoiseSchedule, t: f64, s: f64) -> f64 {
    let one_minus_alpha_t = schedule.one_minus_alpha(t);
    if one_minus_alpha_t <= 0.0 {
        return 1.0;
    }
    ((schedule.alpha(s) - schedule.alpha(t)) / one_minus_alpha_t).clamp(0.0, 1.0)
}

/// LLaDA's `get_num_transfer_tokens`: `n` tokens over `steps` steps, `⌊n/steps⌋` each and one
/// more in the first `n mod steps` steps; this is the count of step `step`.
pub fn tokens_per_step(n: usize, steps: usize, step: usize) -> usize {
    let steps = steps.max(1);
    n / steps + usize::from(step < n % steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step at the start of a block.
    trait SelectFresh {
        fn select_fresh(&self, row: &RowStep<'_>) -> RowSelection;
    }

    impl SelectFresh for Unmasking {
        fn select_fresh(&self, row: &RowStep<'_>) -> RowSelection {
            self.select(row, &mut RowMemory::default())
        }
    }

    fn row<'a>(
        candidates: &'a [bool],
        confidence: &'a [f32],
        uniforms: &'a [f64],
        tick: Tick,
    ) -> RowStep<'a> {
        RowStep { candidates, decoded: &[], confidence, uniforms, tick }
    }

    #[test]
    fn the_ancestral_policy_takes_the_schedule_of_the_training_process() {
        let cosine = dlm_sched::Cosine::default();
        let process = MaskingProcess::new(cosine, 3);
        assert_eq!(
            Unmasking::ancestral(&process).unwrap(),
            Unmasking::Ancestral { schedule: ScheduleKind::Cosine(cosine) }
        );
        // A spindle makes the schedule token-dependent: one shared ancestral step would
        // reverse another process.
        let linear = dlm_sched::Polynomial::new(1.0).unwrap();
        let counts = [0.0, 0.0, 0.0, 0.0, 5.0, 1.0, 3.0];
        let spindle = crate::Spindle::new(0.05, &counts, &linear).unwrap();
        let spindled = MaskingProcess::new(linear, 3).with_spindle(spindle).unwrap();
        let err = Unmasking::ancestral(&spindled).unwrap_err();
        assert!(matches!(err, DiscreteError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn the_entropy_bound_takes_the_largest_prefix_within_gamma() {
        // Entropies 0.5, 0.01, (fixed 0.0), 1.0, 0.02; candidates sorted: 0.01, 0.02, 0.5, 1.0.
        // Σ H − max H over the prefixes: 0, 0.01, 0.03, 0.53.
        let candidates = [true, true, false, true, true];
        let negative_entropy = [-0.5, -0.01, 0.0, -1.0, -0.02];
        let uniforms = [0.0; 10];
        let select = |gamma: f64| {
            let policy = Unmasking::entropy_bound(gamma).unwrap();
            policy.select_fresh(&row(&candidates, &negative_entropy, &uniforms, Tick::Rule)).commit
        };
        assert_eq!(select(0.05), [true, true, false, false, true], "three within 0.05");
        assert_eq!(select(0.02), [false, true, false, false, true], "0.03 > 0.02: two");
        assert_eq!(select(0.0), [false, true, false, false, false], "γ = 0: the surest one");
        assert_eq!(select(10.0), [true, true, false, true, true], "everything");
        assert!(Unmasking::entropy_bound(-0.1).is_err());
        assert!(Unmasking::entropy_bound(f64::NAN).is_err());
        assert!(
            serde_json::from_str::<Unmasking>(r#"{"policy": "entropy_bound", "gamma": -1}"#)
                .is_err()
        );
        let eb = Unmasking::entropy_bound(0.1).unwrap();
        assert_eq!(eb.confidence(), Some(Confidence::NegativeEntropy));
        assert!(eb.clock(4) == Clock::UntilDone && eb.scores_the_sampling_distribution());
    }

    #[test]
    fn every_policy_steps_on_its_own_clock() {
        let ancestral =
            Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(Default::default()) };
        let grid = ancestral.clock(4);
        assert_eq!(grid.max_steps(100), 4);
        assert_eq!(grid.tick(0, 9), Tick::Time { t: 1.0, s: 0.75 });
        assert_eq!(grid.tick(3, 9), Tick::Time { t: 0.25, s: 0.0 });
        assert_eq!(grid.tick(3, 9).time(), Some(0.25));
        let shares = Unmasking::Random.clock(4);
        assert_eq!((shares.max_steps(100), shares.tick(1, 10)), (4, Tick::Count(3)));
        assert_eq!(shares.tick(1, 10).time(), None);
        let rule = Unmasking::threshold(Confidence::Margin, 0.9).unwrap().clock(4);
        assert_eq!((rule.max_steps(7), rule.tick(5, 10)), (7, Tick::Rule));
    }

    #[test]
    fn count_split_matches_llada() {
        let per_step: Vec<usize> = (0..4).map(|i| tokens_per_step(10, 4, i)).collect();
        assert_eq!(per_step, [3, 3, 2, 2]);
        assert_eq!((0..4).map(|i| tokens_per_step(10, 4, i)).sum::<usize>(), 10);
    }

    #[test]
    fn confidence_policies_pick_what_their_rules_say() {
        let candidates = [true, true, false, true, true];
        let confidence = [0.95, 0.5, 0.99, 0.92, 0.7];
        let uniforms = [0.0; 10];
        let top2 = Unmasking::TopK { confidence: Confidence::TokenProbability }.select_fresh(&row(
            &candidates,
            &confidence,
            &uniforms,
            Tick::Count(2),
        ));
        assert_eq!(top2.commit, [true, false, false, true, false]);
        let threshold = Unmasking::threshold(Confidence::TokenProbability, 0.9).unwrap();
        assert_eq!(
            threshold.select_fresh(&row(&candidates, &confidence, &uniforms, Tick::Rule)).commit,
            [true, false, false, true, false]
        );
        // Nothing passes τ = 0.999: the top-1 still goes.
        let strict = Unmasking::threshold(Confidence::TokenProbability, 0.999).unwrap();
        assert_eq!(
            strict.select_fresh(&row(&candidates, &confidence, &uniforms, Tick::Rule)).commit,
            [true, false, false, false, false]
        );
        // Factor f = 0.3: 2·0.05 = 0.10 ≤ 0.3, 3·0.08 = 0.24 ≤ 0.3, 4·0.3 = 1.2 > 0.3.
        let factor = Unmasking::factor(Confidence::TokenProbability, 0.3).unwrap();
        assert_eq!(
            factor.select_fresh(&row(&candidates, &confidence, &uniforms, Tick::Rule)).commit,
            [true, false, false, true, false]
        );
    }

    #[test]
    fn ancestral_unmasking_probability_follows_the_posterior() {
        let schedule = ScheduleKind::LogLinear(dlm_sched::LogLinear::new(1e-9).unwrap());
        // α = 1 − t: (α_s − α_t)/(1 − α_t) = (t − s)/t.
        assert!((unmask_probability(&schedule, 0.5, 0.25) - 0.5).abs() < 1e-6);
        assert!((unmask_probability(&schedule, 0.1, 0.0) - 1.0).abs() < 1e-6);
        let candidates = [true; 4];
        let uniforms = [0.1, 0.0, 0.6, 0.0, 0.49, 0.0, 0.51, 0.0];
        let step = Unmasking::Ancestral { schedule }.select_fresh(&row(
            &candidates,
            &[0.0; 4],
            &uniforms,
            Tick::Time { t: 0.5, s: 0.25 },
        ));
        assert_eq!(step.commit, [true, false, true, false]);
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Unmasking::threshold(Confidence::Margin, 0.0).is_err());
        assert!(Unmasking::threshold(Confidence::Margin, 1.5).is_err());
        assert!(Unmasking::factor(Confidence::Margin, f64::NAN).is_err());
        assert!(Unmasking::factor(Confidence::Margin, -1.0).is_err());
        assert!(matches!(
            Unmasking::threshold(Confidence::NegativeEntropy, 0.9),
            Err(DiscreteError::ConfidenceNotAProbability { .. })
        ));
        assert!(Unmasking::factor(Confidence::NegativeEntropy, 1.0).is_err());
    }
}
