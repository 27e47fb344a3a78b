//! DiffusionBERT's spindle schedule: informative tokens are masked earlier.

use burn::tensor::{Int, Tensor, TensorData};
use dlm_sched::{InvalidInput, NoiseSchedule};
use serde::{Deserialize, Serialize};

use crate::error::{DiscreteError, ensure_size, ensure_value};

/// Token-dependent keep probabilities (DiffusionBERT, He et al. 2023, §4.2, eqs. 10–12), in
/// continuous time:
///
/// `α_i(t) = clip(α(t) − S(t)·(h(x_i) − h̄), 0, 1)`, `S(t) = λ·sin(πt)`,
///
/// where `h(v) = −ln p(v) / H` is the information of token `v` relative to the unigram entropy
/// `H` of the training data (1 for tokens absent from it), and `h̄` the mean of `h` over the
/// sequence. Rarer (more informative)
/// tokens are masked earlier and decoded later; the schedule is unchanged at `t = 0` and `t = 1`
/// and on average over a sequence. `λ = 0` is the plain schedule.
///
/// Every token then has its own masking process, and the loss weighs token `i` by
/// `w_i(t) = −α_i′(t)/(1 − α_i(t))` with `α_i′ = α′ − λπ·cos(πt)·(h(x_i) − h̄)` (0 where
/// clipped); [`Spindle::new`] checks that `α_i` is non-increasing for every token.
///
/// This is a weighted surrogate, not a bound: `α_i` depends on the token `x_i` (and on the
/// sequence through `h̄`), which the reverse model cannot see at a masked position, so the true
/// reverse process is not the per-token MDLM posterior the weights assume. With `λ > 0`, report
/// likelihoods with the plain schedule's NELBO ([`crate::Mdlm`]).
///
/// Read from a config, `λ` and the information table are checked; that every `α_i` decreases
/// depends on the schedule, and is checked when the spindle joins a process
/// ([`crate::MaskingProcess::with_spindle`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Spindle {
    lambda: f64,
    /// `h(v)` for every token id.
    information: Vec<f32>,
}

dlm_sched::serde_validated!(Spindle);

impl Spindle {
    /// Builds the spindle from token counts of the training data (index = token id).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if the counts are empty or all zero;
    /// [`DiscreteError::Invalid`] for `λ < 0`, or a `λ` so large that some token's keep
    /// probability would increase in time under `schedule` (checked on a grid of `t`, for the
    /// tokens present in the counts).
    pub fn new(
        lambda: f64,
        counts: &[f64],
        schedule: &impl NoiseSchedule,
    ) -> Result<Self, DiscreteError> {
        let total: f64 = counts.iter().sum();
        ensure_size(
            total > 0.0,
            "spindle",
            "counts.len()",
            counts.len(),
            "counts of at least one token",
        )?;
        ensure_value(
            lambda >= 0.0 && lambda.is_finite(),
            "spindle",
            "lambda",
            lambda,
            "a finite value >= 0",
        )?;
        let entropy: f64 =
            counts.iter().filter(|&&c| c > 0.0).map(|&c| -(c / total) * (c / total).ln()).sum();
        // Tokens absent from the data (special tokens, say) get the average information, 1.
        let information: Vec<f64> = counts
            .iter()
            .map(
                |&c| if c > 0.0 { -(c / total).ln() / entropy.max(f64::MIN_POSITIVE) } else { 1.0 },
            )
            .collect();
        let spindle =
            Self { lambda, information: information.into_iter().map(|h| h as f32).collect() };
        spindle.check_schedule(schedule)?;
        Ok(spindle)
    }

    /// Every token's keep probability `α_i(t)` decreases in time under `schedule`: the
    /// steepest `λπ·|h(x_i) − h̄|` is at most the flattest `−α′` (checked on a grid of `t`). The
    /// spread of `h` over all tokens is that over the tokens seen, since the unseen ones have the
    /// average information 1, which the seen ones straddle.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming `lambda` and its largest admissible value.
    pub fn check_schedule(&self, schedule: &impl NoiseSchedule) -> Result<(), DiscreteError> {
        let information = || self.information.iter().map(|&h| f64::from(h));
        let spread = information().fold(f64::NEG_INFINITY, f64::max)
            - information().fold(f64::INFINITY, f64::min);
        let steepest = (1..1000)
            .map(|k| -schedule.alpha_prime(k as f64 / 1000.0))
            .fold(f64::INFINITY, f64::min);
        let lambda = self.lambda;
        ensure_value(
            lambda * std::f64::consts::PI * spread <= steepest,
            "spindle",
            "lambda",
            lambda,
            format!(
                "at most {:.4} (min −α′ = {steepest:.4} over π × information spread {spread:.4}), so every α_i decreases",
                steepest / (std::f64::consts::PI * spread.max(f64::MIN_POSITIVE))
            ),
        )
        .map_err(Into::into)
    }

    /// The checks a value read from a config can have without its schedule.
    fn validate(&self) -> Result<(), DiscreteError> {
        ensure_value(
            self.lambda >= 0.0 && self.lambda.is_finite(),
            "spindle",
            "lambda",
            self.lambda,
            "a finite value >= 0",
        )?;
        ensure_size(
            !self.information.is_empty(),
            "spindle",
            "information.len()",
            0,
            "one value per token id",
        )?;
        if let Some((index, &h)) =
            self.information.iter().enumerate().find(|(_, h)| !(h.is_finite() && **h > 0.0))
        {
            let expected = "a finite information > 0";
            return Err(
                InvalidInput::element("spindle", "information", index, h.into(), expected).into()
            );
        }
        Ok(())
    }

    /// `λ`.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// `(α_i(t), α_i′(t))` for every token of `x0` at its sequence's time.
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`, `t`: `[batch]` → two `[batch, seq_len]`
    pub fn token_alphas(
        &self,
        schedule: &impl NoiseSchedule,
        x0: Tensor<2, Int>,
        t: Tensor<1>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [batch, seq_len] = x0.dims();
        let table = Tensor::<1>::from_data(
            TensorData::new(self.information.clone(), [self.information.len()]),
            &x0.device(),
        );
        let h = table.select(0, x0.reshape([batch * seq_len])).reshape([batch, seq_len]);
        let centred = h.clone() - h.mean_dim(1);
        let t_col = t.clone().reshape([batch, 1]);
        let angle = t_col.mul_scalar(std::f64::consts::PI);
        let shift = centred.clone() * angle.clone().sin().mul_scalar(self.lambda);
        let alpha = schedule.alpha_tensor(t.clone()).reshape([batch, 1]) - shift;
        let clipped = alpha.clone().lower_elem(0.0).bool_or(alpha.clone().greater_elem(1.0));
        let slope = centred * angle.cos().mul_scalar(self.lambda * std::f64::consts::PI);
        let alpha_prime =
            (schedule.alpha_prime_tensor(t).reshape([batch, 1]) - slope).mask_fill(clipped, 0.0);
        (alpha.clamp(0.0, 1.0), alpha_prime)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use dlm_sched::LogLinear;

    use super::*;

    #[test]
    fn rare_tokens_are_masked_earlier_and_the_mean_is_kept() {
        let device = Device::flex();
        let schedule = LogLinear::default();
        // Token 5 is frequent, token 6 rare.
        let counts = [0.0, 0.0, 0.0, 0.0, 0.0, 900.0, 100.0];
        let spindle = Spindle::new(0.04, &counts, &schedule).unwrap();
        let x0 = Tensor::<2, Int>::from_ints([[5, 6, 5, 6]], &device);
        let (alpha, alpha_prime) =
            spindle.token_alphas(&schedule, x0, Tensor::from_floats([0.5], &device));
        let alpha: Vec<f64> = alpha.into_data().iter::<f64>().collect();
        assert!(alpha[1] < alpha[0], "the rare token keeps less: {alpha:?}");
        let mean = alpha.iter().sum::<f64>() / 4.0;
        assert!((mean - schedule.alpha(0.5)).abs() < 1e-6);
        // At t = 1/2, cos(πt) = 0: the slope is the schedule's.
        for a in alpha_prime.into_data().iter::<f64>() {
            assert!((a - schedule.alpha_prime(0.5)).abs() < 1e-6);
        }
        // λ = 0 is the plain schedule.
        let plain = Spindle::new(0.0, &counts, &schedule).unwrap();
        let x0 = Tensor::<2, Int>::from_ints([[5, 6]], &device);
        let (alpha, _) = plain.token_alphas(&schedule, x0, Tensor::from_floats([0.3], &device));
        for a in alpha.into_data().iter::<f64>() {
            assert!((a - schedule.alpha(0.3)).abs() < 1e-6);
        }
    }

    #[test]
    fn too_large_a_lambda_is_rejected() {
        let schedule = LogLinear::default();
        let counts = [1000.0, 1.0];
        assert!(Spindle::new(10.0, &counts, &schedule).is_err());
        assert!(Spindle::new(-0.1, &counts, &schedule).is_err());
        assert!(Spindle::new(0.1, &[0.0, 0.0], &schedule).is_err());
    }

    #[test]
    fn a_spindle_read_from_a_config_is_checked_and_checked_again_against_its_schedule() {
        let schedule = dlm_sched::Polynomial::new(1.0).unwrap();
        let counts = [0.0, 0.0, 5.0, 1.0, 3.0];
        let spindle = Spindle::new(0.05, &counts, &schedule).unwrap();
        let json = serde_json::to_value(&spindle).unwrap();
        assert_eq!(serde_json::from_value::<Spindle>(json.clone()).unwrap(), spindle);
        let read = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value = json.clone();
            edit(&mut value);
            serde_json::from_value::<Spindle>(value)
        };
        assert!(
            read(&|v| v["lambda"] = (-1.0).into()).unwrap_err().to_string().contains("`lambda`")
        );
        assert!(read(&|v| v["information"] = serde_json::json!([])).is_err());
        let err = read(&|v| v["information"][1] = 0.0.into()).unwrap_err().to_string();
        assert!(err.contains("`information[1]`"), "{err}");
        // A λ too large for the schedule reads (the schedule is not in the file) but cannot
        // join the process.
        let steep = read(&|v| v["lambda"] = 10.0.into()).unwrap();
        let process = crate::MaskingProcess::new(schedule, 1);
        assert!(process.clone().with_spindle(steep).is_err());
        assert!(process.with_spindle(spindle).is_ok());
    }
}
