//! The conformance suite every [`NoiseSchedule`] must pass; exported with the `testing` feature
//! so that a user's own schedule can run it in its tests:
//!
//! ```ignore
//! dlm_sched::conformance::Conformance::default().assert(&my_schedule, Some(&Device::flex()));
//! ```

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::NoiseSchedule;

/// Tolerances and evaluation points of the conformance suite.
///
/// Checks (each failure is reported with the time and both values):
/// 1. `α(t)` is finite and in `[0, 1]`, and non-increasing, on a grid of 1001 points in `[0, 1]`;
/// 2. endpoints: `α(0) ≥ 1 − endpoint_tol` and `α(1) ≤ endpoint_tol`;
/// 3. `α′(t)` matches a central finite difference with step `fd_step` within `rel_tol`
///    (relative, with an absolute floor of `1e-9`) at every point of `times`;
/// 4. the provided quantities agree with their definitions at `times`: `1 − α`, `σ = −ln α`,
///    `σ′ = −α′/α ≥ 0`, `log-SNR = ln(α/(1 − α))`, the weight `−α′/(1 − α) ≥ 0`, and
///    `α(time_of_alpha(α(t))) = α(t)`;
/// 5. (with a device) the tensor path, run in `tensor_dtype`, agrees with the `f64` path at
///    `times` and at both endpoints within `tensor_tol`, as `|a − b| ≤ tensor_tol·max(1, |b|)`.
///    The default dtype is `f64`, so that the check tests the formulas rather than `f32`
///    rounding; a schedule whose parameters are `f32` tensors (a learned one) is checked in `f32`.
///
/// `times` avoid the knots of tabulated schedules with `T` dividing 2000 or 1000 by far more than
/// `fd_step`; pass other times for schedules with kinks elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Conformance {
    /// Interior times for the derivative, consistency and tensor checks.
    pub times: Vec<f64>,
    /// Step of the central finite difference.
    pub fd_step: f64,
    /// Relative tolerance of the derivative and consistency checks.
    pub rel_tol: f64,
    /// How far from 1 and 0 the endpoints `α(0)` and `α(1)` may be.
    pub endpoint_tol: f64,
    /// Tolerance of the tensor path against the `f64` path.
    pub tensor_tol: f64,
    /// Float type of the times given to the tensor path.
    pub tensor_dtype: DType,
}

impl Default for Conformance {
    fn default() -> Self {
        Self {
            times: vec![
                0.0131, 0.0977, 0.1733, 0.2519, 0.3347, 0.4181, 0.5009, 0.5861, 0.6693, 0.7537,
                0.8369, 0.9173, 0.9521,
            ],
            fd_step: 1e-6,
            rel_tol: 1e-6,
            endpoint_tol: 0.02,
            tensor_tol: 1e-6,
            tensor_dtype: DType::F64,
        }
    }
}

/// `|a − b| ≤ max(rel·|b|, abs_floor)`, or both the same infinity.
fn close(a: f64, b: f64, rel: f64, abs_floor: f64) -> bool {
    (a - b).abs() <= (rel * b.abs()).max(abs_floor) || (a.is_infinite() && a == b)
}

impl Conformance {
    /// Runs checks 1–4 on the `f64` path; returns one line per failure.
    pub fn check<S: NoiseSchedule + ?Sized>(&self, schedule: &S) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fail = |msg: String| failures.push(msg);

        let grid: Vec<f64> = (0..=1000).map(|k| k as f64 / 1000.0).collect();
        let mut previous = f64::INFINITY;
        for &t in &grid {
            let a = schedule.alpha(t);
            if !(0.0..=1.0).contains(&a) {
                fail(format!("alpha({t}) = {a} is not in [0, 1]"));
            }
            if a > previous {
                fail(format!("alpha increases at t = {t}: {previous} -> {a}"));
            }
            previous = a;
        }
        let (a0, a1) = (schedule.alpha(0.0), schedule.alpha(1.0));
        if !(1.0 - self.endpoint_tol..).contains(&a0) {
            fail(format!("alpha(0) = {a0} is below 1 - {}", self.endpoint_tol));
        }
        if !(..=self.endpoint_tol).contains(&a1) {
            fail(format!("alpha(1) = {a1} is above {}", self.endpoint_tol));
        }

        for &t in &self.times {
            let (a, da) = (schedule.alpha(t), schedule.alpha_prime(t));
            let h = self.fd_step;
            let fd = (schedule.alpha(t + h) - schedule.alpha(t - h)) / (2.0 * h);
            if !close(da, fd, self.rel_tol, 1e-9) {
                fail(format!("alpha_prime({t}) = {da}, central difference gives {fd}"));
            }
            // Definitions, written with the schedule's own `1 − α` where the naive one would
            // cancel; `1 − α` itself is checked against the naive difference in absolute terms.
            let one_minus_alpha = schedule.one_minus_alpha(t);
            if !(..=1e-14).contains(&(one_minus_alpha - (1.0 - a)).abs()) {
                fail(format!(
                    "one_minus_alpha({t}) = {one_minus_alpha}, but 1 - alpha = {}",
                    1.0 - a
                ));
            }
            let checks = [
                ("sigma", schedule.sigma(t), -a.ln(), 1e-12),
                ("sigma_prime", schedule.sigma_prime(t), -da / a, 0.0),
                ("log_snr", schedule.log_snr(t), a.ln() - one_minus_alpha.ln(), 1e-12),
                ("masked_elbo_weight", schedule.masked_elbo_weight(t), -da / one_minus_alpha, 0.0),
                // The inverse, where α is strictly decreasing (compared through α itself).
                ("time_of_alpha", schedule.alpha(schedule.time_of_alpha(a)), a, 1e-12),
            ];
            for (name, value, definition, abs_floor) in checks {
                if !close(value, definition, self.rel_tol, abs_floor) {
                    fail(format!("{name}({t}) = {value}, its definition gives {definition}"));
                }
            }
            for (name, value) in [
                ("sigma_prime", schedule.sigma_prime(t)),
                ("masked_elbo_weight", schedule.masked_elbo_weight(t)),
            ] {
                if !(0.0..).contains(&value) {
                    fail(format!("{name}({t}) = {value} is negative"));
                }
            }
        }
        failures
    }

    /// Runs check 5: the tensor path on `device` against the `f64` path.
    pub fn check_tensor<S: NoiseSchedule + ?Sized>(
        &self,
        schedule: &S,
        device: &Device,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let interior = self.times.clone();
        let with_endpoints: Vec<f64> =
            [0.0].into_iter().chain(interior.iter().copied()).chain([1.0]).collect();
        let tensor = |ts: &[f64]| {
            Tensor::<1>::from_data(
                TensorData::new(ts.to_vec(), [ts.len()]),
                (device, self.tensor_dtype),
            )
        };
        type TensorFn<'a> = Box<dyn Fn(Tensor<1>) -> Tensor<1> + 'a>;
        type HostFn<'a> = Box<dyn Fn(f64) -> f64 + 'a>;
        let quantities: Vec<(&str, &[f64], TensorFn<'_>, HostFn<'_>)> = vec![
            (
                "alpha",
                &with_endpoints,
                Box::new(|t| schedule.alpha_tensor(t)),
                Box::new(|t| schedule.alpha(t)),
            ),
            (
                "alpha_prime",
                &interior,
                Box::new(|t| schedule.alpha_prime_tensor(t)),
                Box::new(|t| schedule.alpha_prime(t)),
            ),
            (
                "one_minus_alpha",
                &with_endpoints,
                Box::new(|t| schedule.one_minus_alpha_tensor(t)),
                Box::new(|t| schedule.one_minus_alpha(t)),
            ),
            (
                "sigma",
                &interior,
                Box::new(|t| schedule.sigma_tensor(t)),
                Box::new(|t| schedule.sigma(t)),
            ),
            (
                "sigma_prime",
                &interior,
                Box::new(|t| schedule.sigma_prime_tensor(t)),
                Box::new(|t| schedule.sigma_prime(t)),
            ),
            (
                "log_snr",
                &interior,
                Box::new(|t| schedule.log_snr_tensor(t)),
                Box::new(|t| schedule.log_snr(t)),
            ),
            (
                "masked_elbo_weight",
                &interior,
                Box::new(|t| schedule.masked_elbo_weight_tensor(t)),
                Box::new(|t| schedule.masked_elbo_weight(t)),
            ),
        ];
        for (name, times, on_device, on_host) in quantities {
            let values: Vec<f64> = on_device(tensor(times)).into_data().iter::<f64>().collect();
            for (&t, value) in times.iter().zip(values) {
                // Compare at the time the device saw (rounded to its dtype).
                let t = if self.tensor_dtype == DType::F64 { t } else { f64::from(t as f32) };
                let expected = on_host(t);
                if !close(value, expected, self.tensor_tol, self.tensor_tol) {
                    failures.push(format!(
                        "{name}_tensor({t}) = {value}, the f64 path gives {expected}"
                    ));
                }
            }
        }
        failures
    }

    /// Runs every check (the tensor checks when a device is given) and panics with the list of
    /// failures, if any.
    ///
    /// # Panics
    /// When the schedule fails a check: this is an assertion for tests.
    pub fn assert<S: NoiseSchedule + ?Sized>(&self, schedule: &S, device: Option<&Device>) {
        let mut failures = self.check(schedule);
        if let Some(device) = device {
            failures.extend(self.check_tensor(schedule, device));
        }
        assert!(failures.is_empty(), "schedule fails conformance:\n{}", failures.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        Cosine, DiscreteSchedule, Geometric, LearnedLinearLogSnrConfig, LinearBeta, LogLinear,
        Polynomial, ScheduleKind, SquareRoot,
    };

    #[test]
    fn every_preset_conforms_on_both_paths() {
        let device = Device::flex();
        for kind in ScheduleKind::presets().unwrap() {
            let failures: Vec<String> = Conformance::default()
                .check(&kind)
                .into_iter()
                .chain(Conformance::default().check_tensor(&kind, &device))
                .collect();
            assert!(failures.is_empty(), "{}:\n{}", kind.label(), failures.join("\n"));
        }
    }

    #[test]
    fn every_preset_keeps_f32_precision_on_device() {
        // Training runs the tensor path in f32: the careful forms (series for 1 − e^{−σ}, exact
        // 1 − t) keep every quantity within a few f32 ulps, amplified at most by 1/α near t = 1.
        let suite =
            Conformance { tensor_dtype: DType::F32, tensor_tol: 3e-6, ..Conformance::default() };
        let device = Device::flex();
        for kind in ScheduleKind::presets().unwrap() {
            let failures = suite.check_tensor(&kind, &device);
            assert!(failures.is_empty(), "{}:\n{}", kind.label(), failures.join("\n"));
        }
    }

    #[test]
    fn the_learned_schedule_conforms() {
        let device = Device::flex();
        let learned = LearnedLinearLogSnrConfig::new().init(&device).unwrap();
        // Its α(0) = sigmoid(3) ≈ 0.95: VDM-style schedules do not start clean.
        let suite =
            Conformance { endpoint_tol: 0.05, tensor_dtype: DType::F32, ..Conformance::default() };
        suite.assert(&learned, Some(&device));
    }

    #[test]
    fn the_suite_catches_broken_schedules() {
        /// Correct α, but α′ with the wrong sign and σ off by a factor 2.
        struct Broken;
        impl NoiseSchedule for Broken {
            fn alpha(&self, t: f64) -> f64 {
                1.0 - t
            }
            fn alpha_prime(&self, _t: f64) -> f64 {
                1.0
            }
            fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
                t.neg().add_scalar(1.0)
            }
            fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
                t.ones_like()
            }
            fn sigma(&self, t: f64) -> f64 {
                -2.0 * (1.0 - t).ln()
            }
        }
        let failures = Conformance::default().check(&Broken);
        assert!(failures.iter().any(|f| f.starts_with("alpha_prime")));
        assert!(failures.iter().any(|f| f.starts_with("sigma(")));
        assert!(failures.iter().any(|f| f.contains("is negative")));
        // And the tensor path catches a device formula that differs from the host one.
        let failures = Conformance::default().check_tensor(&Broken, &Device::flex());
        assert!(failures.iter().any(|f| f.starts_with("sigma_tensor")), "{failures:?}");
    }

    fn conforms<S: NoiseSchedule>(schedule: &S, with_tensor: bool) -> Result<(), TestCaseError> {
        let suite = Conformance::default();
        let mut failures = suite.check(schedule);
        if with_tensor {
            failures.extend(suite.check_tensor(schedule, &Device::flex()));
        }
        prop_assert!(failures.is_empty(), "{}", failures.join("\n"));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn linear_beta_conforms(beta_min in 0.0..1.0f64, extra in 8.0..40.0f64) {
            // σ(1) = (β_min + β_max)/2 ≥ 4 keeps α(1) below the endpoint tolerance.
            let s = LinearBeta::new(beta_min, beta_min + extra).unwrap();
            conforms(&s, true)?;
        }

        #[test]
        fn cosine_conforms(s in 0.0..0.05f64) {
            conforms(&Cosine::new(s).unwrap(), true)?;
        }

        #[test]
        fn log_linear_conforms(eps in 1e-6..0.02f64) {
            conforms(&LogLinear::new(eps).unwrap(), true)?;
        }

        #[test]
        fn square_root_conforms(s in 0.0..4e-4f64) {
            // α(0) = 1 − √s stays within the endpoint tolerance.
            conforms(&SquareRoot::new(s).unwrap(), true)?;
        }

        #[test]
        fn polynomial_conforms(n in 0.5..6.0f64) {
            conforms(&Polynomial::new(n).unwrap(), true)?;
        }

        #[test]
        fn geometric_conforms(log_min in -6.0..-2.0f64, log_max in 0.7..1.5f64) {
            let s = Geometric::new(10f64.powf(log_min), 10f64.powf(log_max)).unwrap();
            conforms(&s, true)?;
        }

        #[test]
        fn discrete_square_root_conforms(steps in prop::sample::select(vec![100usize, 500, 1000, 2000])) {
            conforms(&DiscreteSchedule::square_root(steps, 1e-4).unwrap(), false)?;
        }
    }
}
