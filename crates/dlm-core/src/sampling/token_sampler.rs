//! [`TokenSampler`]: temperature, top-k and top-p composed with float64 Gumbel-max.

use burn::tensor::{DType, Int, Tensor, TensorData};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::filter::{top_k, top_p};
use super::gumbel::{draw_gumbel, gumbel_from_uniforms, gumbel_max};
use crate::error::{CoreError, ensure_size, ensure_value};

const CONTEXT: &str = "token sampler";

/// Draws tokens from model logits: optional top-k, then optional top-p filtering, then a
/// float64 Gumbel-max draw at `temperature` (`0` = argmax).
///
/// The filters apply to `logits / temperature`, as in the reference samplers. The deterministic
/// core [`TokenSampler::sample_with_gumbel`] takes the noise; [`TokenSampler::sample`] draws it
/// on the logits' device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TokenSamplerParams")]
pub struct TokenSampler {
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSamplerParams {
    temperature: f64,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    top_p: Option<f64>,
}

impl TryFrom<TokenSamplerParams> for TokenSampler {
    type Error = CoreError;
    fn try_from(p: TokenSamplerParams) -> Result<Self, Self::Error> {
        let mut sampler = Self::new(p.temperature)?;
        if let Some(k) = p.top_k {
            sampler = sampler.with_top_k(k)?;
        }
        if let Some(top_p) = p.top_p {
            sampler = sampler.with_top_p(top_p)?;
        }
        Ok(sampler)
    }
}

/// The smallest positive temperature: `logits / t` of `f32` logits up to about `3·10⁸` stays
/// finite.
const MIN_TEMPERATURE: f64 = 1e-30;

impl TokenSampler {
    /// Greedy decoding: the argmax of the logits.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None }
    }

    /// Sampling at `temperature` (`0` = greedy, `1` = the model's distribution).
    ///
    /// # Errors
    /// [`CoreError::Invalid`] unless `temperature` is 0 or in `[1e-30, 1e30]`: the logits are
    /// `f32`, and `logits / temperature` overflows to infinity below that (or rounds every
    /// logit to 0 above it) — a silently wrong draw. Use 0 for greedy decoding.
    pub fn new(temperature: f64) -> Result<Self, CoreError> {
        ensure_value(
            temperature == 0.0 || (MIN_TEMPERATURE..=1.0 / MIN_TEMPERATURE).contains(&temperature),
            CONTEXT,
            "temperature",
            temperature,
            "0 (greedy) or a value in [1e-30, 1e30] (f32 logits overflow beyond)",
        )?;
        Ok(Self { temperature, top_k: None, top_p: None })
    }

    /// Restricts sampling to the `k` most probable tokens.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `k == 0`.
    pub fn with_top_k(self, k: usize) -> Result<Self, CoreError> {
        ensure_size(k > 0, CONTEXT, "top_k", k, "at least 1")?;
        Ok(Self { top_k: Some(k), ..self })
    }

    /// Restricts sampling to the nucleus of probability `p`.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] unless `0 < p ≤ 1`.
    pub fn with_top_p(self, p: f64) -> Result<Self, CoreError> {
        ensure_value(p > 0.0 && p <= 1.0, CONTEXT, "top_p", p, "a value in (0, 1]")?;
        Ok(Self { top_p: Some(p), ..self })
    }

    /// The temperature.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The logits the draw is made from: `logits / temperature` (unscaled when greedy) with the
    /// filtered tokens at `−∞`. A `top_k` larger than the vocabulary keeps every token.
    ///
    /// # Shapes
    /// - `logits`: `[batch, seq_len, vocab_size]` → same
    pub fn filtered_logits(&self, logits: Tensor<3>) -> Tensor<3> {
        let vocab_size = logits.dims()[2];
        let mut logits =
            if self.temperature > 0.0 { logits.div_scalar(self.temperature) } else { logits };
        if let Some(k) = self.top_k.filter(|&k| k < vocab_size) {
            logits = top_k(logits, k);
        }
        if let Some(p) = self.top_p.filter(|&p| p < 1.0) {
            logits = top_p(logits, p);
        }
        logits
    }

    /// Draws one token per position with the given Gumbel noise (deterministic).
    ///
    /// # Shapes
    /// - `logits`, `gumbel`: `[batch, seq_len, vocab_size]`
    /// - returns `[batch, seq_len]`
    pub fn sample_with_gumbel(&self, logits: Tensor<3>, gumbel: Tensor<3>) -> Tensor<2, Int> {
        let filtered = self.filtered_logits(logits);
        // The temperature is already applied.
        let temperature = if self.temperature > 0.0 { 1.0 } else { 0.0 };
        gumbel_max(filtered, gumbel, temperature)
    }

    /// Draws one token per position, with float64 Gumbel noise from the device's random stream.
    /// Greedy sampling draws no noise.
    ///
    /// # Shapes
    /// - `logits`: `[batch, seq_len, vocab_size]`
    /// - returns `[batch, seq_len]`
    pub fn sample(&self, logits: Tensor<3>) -> Tensor<2, Int> {
        if self.temperature == 0.0 {
            return gumbel_max(self.filtered_logits(logits.clone()), logits, 0.0);
        }
        let gumbel = draw_gumbel(logits.dims(), &logits.device());
        self.sample_with_gumbel(logits, gumbel)
    }

    /// Draws one token per position, with float64 Gumbel noise from uniforms drawn on the host
    /// from `rng`: the draw is determined by `rng` alone, whatever else uses the device's random
    /// stream, and equal across backends up to the logits' rounding. Greedy sampling draws no
    /// noise and leaves `rng` untouched.
    ///
    /// # Shapes
    /// - `logits`: `[batch, seq_len, vocab_size]`
    /// - returns `[batch, seq_len]`
    pub fn sample_with_rng<R: Rng + ?Sized>(
        &self,
        logits: Tensor<3>,
        rng: &mut R,
    ) -> Tensor<2, Int> {
        if self.temperature == 0.0 {
            return self.sample(logits);
        }
        let shape = logits.dims();
        let uniforms: Vec<f64> = (0..shape.iter().product()).map(|_| rng.random::<f64>()).collect();
        let uniforms = Tensor::<3>::from_data(
            TensorData::new(uniforms, shape),
            (&logits.device(), DType::F64),
        );
        self.sample_with_gumbel(logits, gumbel_from_uniforms(uniforms))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, Distribution, Tensor};

    use super::*;
    use crate::sampling::gumbel_from_uniforms;
    use dlm_sched::InvalidInput;

    /// `rows` copies of the same logits, as `[1, rows, vocab]`.
    fn repeated(logits: &[f32], rows: usize, device: &Device) -> Tensor<3> {
        Tensor::<1>::from_floats(logits, device).reshape([1, 1, logits.len()]).repeat_dim(1, rows)
    }

    fn counts(tokens: Tensor<2, Int>, vocab: usize) -> Vec<usize> {
        let mut counts = vec![0; vocab];
        for token in tokens.into_data().iter::<i64>() {
            counts[token as usize] += 1;
        }
        counts
    }

    /// Pearson's chi-square statistic of `counts` against `probs`.
    fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
        let n: usize = counts.iter().sum();
        counts
            .iter()
            .zip(probs)
            .filter(|(_, p)| **p > 0.0)
            .map(|(&c, &p)| {
                let expected = n as f64 * p;
                (c as f64 - expected).powi(2) / expected
            })
            .sum()
    }

    #[test]
    fn empirical_frequencies_match_the_tempered_distribution() {
        let device = Device::flex();
        device.seed(11);
        let logits = [1.0f32, 0.0, -1.0, 2.0, 0.5];
        for temperature in [1.0, 0.5, 2.0] {
            let tempered: Vec<f64> =
                logits.iter().map(|&l| (f64::from(l) / temperature).exp()).collect();
            let z: f64 = tempered.iter().sum();
            let probs: Vec<f64> = tempered.iter().map(|w| w / z).collect();
            let sampler = TokenSampler::new(temperature).unwrap();
            let counts = counts(sampler.sample(repeated(&logits, 40_000, &device)), 5);
            // 4 degrees of freedom: P(χ² > 18.47) = 0.001.
            let stat = chi_square(&counts, &probs);
            assert!(stat < 18.47, "T = {temperature}: χ² = {stat}, counts {counts:?}");
        }
    }

    #[test]
    fn filters_never_emit_excluded_tokens() {
        let device = Device::flex();
        device.seed(5);
        // Probabilities ∝ 8, 4, 2, 1, 1 (ln-weights as logits).
        let logits = [8f32.ln(), 4f32.ln(), 2f32.ln(), 0.0, 0.0];
        let draws = repeated(&logits, 20_000, &device);
        let top2 = TokenSampler::new(1.0).unwrap().with_top_k(2).unwrap();
        let c = counts(top2.sample(draws.clone()), 5);
        assert_eq!(&c[2..], &[0, 0, 0], "{c:?}");
        // Within the top 2, the renormalised distribution 2/3, 1/3.
        assert!(chi_square(&c, &[2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 0.0]) < 10.83);
        // Nucleus 0.7: 8/16 = 0.5 < 0.7 so the second token joins; 12/16 ≥ 0.7 stops.
        let nucleus = TokenSampler::new(1.0).unwrap().with_top_p(0.7).unwrap();
        let c = counts(nucleus.sample(draws), 5);
        assert_eq!(&c[2..], &[0, 0, 0], "{c:?}");
    }

    #[test]
    fn same_noise_gives_same_tokens_and_greedy_is_argmax() {
        let device = Device::flex();
        let logits = Tensor::<3>::random([2, 7, 11], Distribution::Normal(0.0, 2.0), &device);
        let uniforms =
            Tensor::<3>::random([2, 7, 11], Distribution::Default, (&device, DType::F64));
        let gumbel = gumbel_from_uniforms(uniforms);
        let sampler = TokenSampler::new(0.8).unwrap().with_top_p(0.9).unwrap();
        let a = sampler.sample_with_gumbel(logits.clone(), gumbel.clone());
        let b = sampler.sample_with_gumbel(logits.clone(), gumbel);
        assert_eq!(a.into_data(), b.into_data());
        let greedy = TokenSampler::greedy().sample(logits.clone());
        assert_eq!(greedy.into_data(), logits.argmax(2).squeeze_dim::<2>(2).into_data());
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(matches!(
            TokenSampler::new(-1.0),
            Err(CoreError::Invalid(InvalidInput { name: "temperature", .. }))
        ));
        assert!(matches!(
            TokenSampler::new(f64::NAN),
            Err(CoreError::Invalid(InvalidInput { name: "temperature", .. }))
        ));
        // Positive in f64, but f32 logits divided by it overflow (or all round to 0).
        for t in [1e-40, 1e40, f64::INFINITY] {
            assert!(TokenSampler::new(t).is_err(), "{t}");
        }
        assert!(TokenSampler::new(1e-30).is_ok() && TokenSampler::new(0.0).is_ok());
        assert!(matches!(
            TokenSampler::greedy().with_top_k(0),
            Err(CoreError::Invalid(InvalidInput { name: "top_k", .. }))
        ));
        assert!(matches!(
            TokenSampler::greedy().with_top_p(0.0),
            Err(CoreError::Invalid(InvalidInput { name: "top_p", .. }))
        ));
        assert!(matches!(
            TokenSampler::greedy().with_top_p(1.5),
            Err(CoreError::Invalid(InvalidInput { name: "top_p", .. }))
        ));
        // Configs go through the same checks.
        let ok: TokenSampler =
            serde_json::from_str(r#"{"temperature": 0.7, "top_p": 0.9}"#).unwrap();
        assert_eq!(ok, TokenSampler::new(0.7).unwrap().with_top_p(0.9).unwrap());
        for bad in [
            r#"{"temperature": -1}"#,
            r#"{"temperature": 1, "top_k": 0}"#,
            r#"{"temperature": 1, "top_p": 0}"#,
        ] {
            assert!(serde_json::from_str::<TokenSampler>(bad).is_err(), "{bad}");
        }
    }
}
