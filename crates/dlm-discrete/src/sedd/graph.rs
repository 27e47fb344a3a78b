//! SEDD's two transition graphs in closed form: the forward transition, the denoising score
//! entropy, the staggered score and the transposed transition of Tweedie τ-leaping.

use burn::tensor::{Int, Tensor, TensorData};
use dlm_core::host::int_values;
use rand::{Rng, RngExt};

/// The rate matrix `Q` of the forward chain `dp_t/dt = σ′(t)·Q·p_t` (Lou et al. 2024, §2, eq. 2;
/// §3.3), over the `V` ids a model reads. No `V × V` matrix is built: both graphs have closed
/// forms for the transition `P_σ(y | x) = [exp(σQ)]_{yx}` after total noise `σ`:
///
/// - absorbing (`Q = e_m 1ᵀ − I` on the non-mask columns): `x` stays with probability `e^{−σ}`
///   and becomes the mask `m` otherwise; the mask stays;
/// - uniform (`Q = 11ᵀ/V − I`): `x` stays with probability `e^{−σ}` and is resampled uniformly
///   from all `V` ids otherwise (so it keeps its value with `e^{−σ} + (1 − e^{−σ})/V`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graph {
    /// Every token decays into the mask token, which is absorbing.
    Absorbing {
        /// The mask token.
        mask_id: u32,
    },
    /// Every token jumps to any token at rate `1/V`.
    Uniform,
}

/// `e^σ − 1` without cancellation for small `σ` (the reference code switches to `expm1` below
/// `σ = 0.5`; `f64::exp_m1` is accurate everywhere).
fn expm1(sigma: f64) -> f64 {
    sigma.exp_m1()
}

impl Graph {
    /// `P_σ(y | x)`: the probability that `x` is `y` after total noise `σ`.
    pub fn transition_probability(&self, sigma: f64, from: u32, to: u32, vocab_size: usize) -> f64 {
        let keep = (-sigma).exp();
        match *self {
            Graph::Absorbing { mask_id } => match (from == mask_id, to == mask_id, from == to) {
                (true, true, _) => 1.0,
                (true, false, _) => 0.0,
                (false, _, true) => keep,
                (false, true, false) => 1.0 - keep,
                (false, false, false) => 0.0,
            },
            Graph::Uniform => {
                let jump = -(-sigma).exp_m1() / vocab_size as f64;
                if from == to { keep + jump } else { jump }
            }
        }
    }

    /// `x_t ~ P_σ(· | x0)` per token, with `σ` per row; the uniforms come from `rng` on the
    /// host (one per token, and one more per resampled token of the uniform graph).
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`, `sigmas.len() == batch` → `[batch, seq_len]`
    pub fn perturb<R: Rng + ?Sized>(
        &self,
        x0: Tensor<2, Int>,
        sigmas: &[f64],
        vocab_size: usize,
        rng: &mut R,
    ) -> Tensor<2, Int> {
        let [batch, seq_len] = x0.dims();
        let tokens: Vec<i64> = int_values(x0.clone());
        let noisy: Vec<i64> = tokens
            .iter()
            .enumerate()
            .map(|(i, &token)| {
                if rng.random::<f64>() < (-sigmas[i / seq_len.max(1)]).exp() {
                    return token;
                }
                match *self {
                    Graph::Absorbing { mask_id } => i64::from(mask_id),
                    Graph::Uniform => rng.random_range(0..vocab_size as i64),
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(noisy, [batch, seq_len]), &x0.device())
    }

    /// The denoising score entropy of every position (Lou et al. 2024, §3.2, eq. 8, with the
    /// weights `Q(x_t, y)` of the DWDSE, Thm 3.6): for log-scores `s` of `x_t` (the own entry
    /// ignored),
    ///
    /// `ℓ = Σ_{y≠x_t} Q(x_t, y) [ e^{s_y} − r_y s_y + K(r_y) ]`, `r_y = P_σ(y|x0)/P_σ(x_t|x0)`,
    /// `K(a) = a(ln a − 1)`,
    ///
    /// in the closed forms of the reference code (`graph_lib.py`, `score_entropy`):
    ///
    /// - absorbing: only masked positions count (nothing jumps into a visible token); every
    ///   `y ≠ m` has weight 1 and every ratio is 0 except `r_{x0} = 1/(e^σ − 1)`:
    ///   `ℓ = Σ_{y≠m} e^{s_y} − r s_{x0} + r(ln r − 1)`;
    /// - uniform: weights `1/V`; with `E = e^σ − 1`, `r = E/(E + V)`,
    ///   `S⁺ = (1/V) Σ_{y≠x_t} e^{s_y}` and `S = (1/V) Σ_{y≠x_t} s_y`:
    ///   if `x_t = x0` every ratio is `r` and `ℓ = S⁺ − r S + ((V−1)/V) r(ln r − 1)`; otherwise
    ///   `r_{x0} = 1/r`, the other ratios are 1 (`K(1) = −1`) and
    ///   `ℓ = S⁺ − S − s_{x0}/E + (1/V)[(−ln r − 1)/r − (V − 2)]`.
    ///
    /// `ℓ ≥ 0`, and `ℓ = 0` exactly at `s_y = ln r_y`. The constants are computed per row in
    /// `f64`.
    ///
    /// # Shapes
    /// - `log_score`: `[batch, seq_len, vocab_size]`, `x_t`, `x0`: `[batch, seq_len]`,
    ///   `sigmas.len() == batch` → `[batch, seq_len]`
    pub fn score_entropy(
        &self,
        log_score: Tensor<3>,
        x_t: Tensor<2, Int>,
        x0: Tensor<2, Int>,
        sigmas: &[f64],
    ) -> Tensor<2> {
        let [batch, seq_len, vocab_size] = log_score.dims();
        let device = log_score.device();
        let v = vocab_size as f64;
        let per_row = |f: &dyn Fn(f64) -> f64| {
            let values: Vec<f32> = sigmas.iter().map(|&s| f(s) as f32).collect();
            Tensor::<2>::from_data(TensorData::new(values, [batch, 1]), &device)
        };
        let at_x0 = log_score.clone().gather(2, x0.clone().unsqueeze_dim(2)).squeeze_dim::<2>(2);
        match *self {
            Graph::Absorbing { mask_id } => {
                let masked = x_t.equal_elem(mask_id as i64);
                // Visible rows contribute nothing; their scores are zeroed before `exp` so that
                // no value of theirs can overflow into the sum or its gradient.
                let visible = masked
                    .clone()
                    .bool_not()
                    .unsqueeze_dim::<3>(2)
                    .expand([batch, seq_len, vocab_size]);
                let log_score = log_score.mask_fill(visible, 0.0);
                let not_mask = Tensor::<1, Int>::arange(0..vocab_size as i64, &device)
                    .not_equal_elem(mask_id as i64)
                    .float()
                    .reshape([1, 1, vocab_size]);
                let positive = (log_score.exp() * not_mask).sum_dim(2).squeeze_dim::<2>(2);
                let r = per_row(&|s| 1.0 / expm1(s));
                let constant = per_row(&|s| {
                    let r = 1.0 / expm1(s);
                    r * (r.ln() - 1.0)
                });
                let entropy = positive - at_x0 * r + constant;
                entropy * masked.float()
            }
            Graph::Uniform => {
                let not_own = x_t.clone().one_hot::<3>(vocab_size).float().neg().add_scalar(1.0);
                let positive =
                    (log_score.clone().exp() * not_own.clone()).sum_dim(2).squeeze_dim::<2>(2) / v;
                let mean = (log_score * not_own).sum_dim(2).squeeze_dim::<2>(2) / v;
                let ratio = |s: f64| expm1(s) / (expm1(s) + v);
                let same = positive.clone() - mean.clone() * per_row(&|s| ratio(s))
                    + per_row(&|s| (v - 1.0) / v * ratio(s) * (ratio(s).ln() - 1.0));
                let moved = positive - mean - at_x0 * per_row(&|s| 1.0 / expm1(s))
                    + per_row(&|s| ((-ratio(s).ln() - 1.0) / ratio(s) - (v - 2.0)) / v);
                moved.mask_where(x_t.equal(x0), same)
            }
        }
    }

    /// `KL(P_{σ_max}(· | x0) ‖ p_base)` per token, the prior term of the bound (Lou et al. 2024,
    /// Thm 3.6): for the uniform graph against the uniform base,
    /// `p ln(pV) + (V − 1) q ln(qV)` with `p = e^{−σ} + q`, `q = (1 − e^{−σ})/V`. For the
    /// absorbing graph 0: its base is the all-mask sequence, which the reference code samples from
    /// and MDLM's bound (and [`crate::Mdlm`]'s) also leaves out, the term being infinite in
    /// principle while a schedule keeps `e^{−σ_max} > 0` (MDLM's `α(1) = ε`).
    pub fn prior_kl(&self, sigma_max: f64, vocab_size: usize) -> f64 {
        match self {
            Graph::Absorbing { .. } => 0.0,
            Graph::Uniform => {
                let v = vocab_size as f64;
                let q = -(-sigma_max).exp_m1() / v;
                let p = (-sigma_max).exp() + q;
                p * (p * v).ln() + (v - 1.0) * q * (q * v).ln()
            }
        }
    }

    /// The staggered score `exp(−Δσ Q)·s` of Tweedie τ-leaping (Lou et al. 2024, Thm 4.2;
    /// `staggered_score` in `graph_lib.py`), for scores `s` (not logs, own entry 1):
    ///
    /// - absorbing: `s′_y = e^{Δσ} s_y` for `y ≠ m` and `s′_m = s_m + (1 − e^{Δσ}) Σ_{y≠m} s_y`;
    /// - uniform: `s′_y = e^{Δσ} s_y + ((e^{−Δσ} − 1)/(V e^{−Δσ})) Σ_z s_z`.
    ///
    /// # Shapes
    /// - `score`: `[batch, seq_len, vocab_size]` → same
    pub fn staggered_score(&self, score: Tensor<3>, delta_sigma: f64) -> Tensor<3> {
        let [_, _, vocab_size] = score.dims();
        let total = score.clone().sum_dim(2);
        let grow = delta_sigma.exp();
        match *self {
            Graph::Absorbing { mask_id } => {
                let e_m = Tensor::<1, Int>::arange(0..vocab_size as i64, &score.device())
                    .equal_elem(mask_id as i64)
                    .float()
                    .reshape([1, 1, vocab_size]);
                // s_m·e^{Δσ} + (1 − e^{Δσ})(s_m + Σ_{y≠m} s_y) = s_m + (1 − e^{Δσ}) Σ_{y≠m} s_y.
                score.mul_scalar(grow) + e_m * total.mul_scalar(1.0 - grow)
            }
            Graph::Uniform => {
                let shrink = (-delta_sigma).exp();
                score.mul_scalar(grow)
                    + total.mul_scalar((shrink - 1.0) / (vocab_size as f64 * shrink))
            }
        }
    }

    /// The transposed transition row `y ↦ P_{Δσ}(x_t | y)` of every position (`transp_transition`
    /// in `graph_lib.py`): absorbing, `e^{−Δσ}` at `y = x_t`, plus `1 − e^{−Δσ}` at every `y`
    /// where `x_t` is the mask (so the mask's own entry is 1); uniform, `(1 − e^{−Δσ})/V` plus
    /// `e^{−Δσ}` at `y = x_t`.
    ///
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]` → `[batch, seq_len, vocab_size]`
    pub fn transposed_transition(
        &self,
        x_t: Tensor<2, Int>,
        delta_sigma: f64,
        vocab_size: usize,
    ) -> Tensor<3> {
        let keep = (-delta_sigma).exp();
        let own = x_t.clone().one_hot::<3>(vocab_size).float().mul_scalar(keep);
        match *self {
            Graph::Absorbing { mask_id } => {
                let is_mask = x_t.equal_elem(mask_id as i64).float().unsqueeze_dim::<3>(2);
                own + is_mask.mul_scalar(1.0 - keep)
            }
            Graph::Uniform => own.add_scalar((1.0 - keep) / vocab_size as f64),
        }
    }

    /// The base distribution's draw: all mask, or uniform ids.
    pub(crate) fn sample_base<R: Rng + ?Sized>(
        &self,
        batch: usize,
        seq_len: usize,
        vocab_size: usize,
        device: &burn::tensor::Device,
        rng: &mut R,
    ) -> Tensor<2, Int> {
        let tokens: Vec<i64> = (0..batch * seq_len)
            .map(|_| match *self {
                Graph::Absorbing { mask_id } => i64::from(mask_id),
                Graph::Uniform => rng.random_range(0..vocab_size as i64),
            })
            .collect();
        Tensor::from_data(TensorData::new(tokens, [batch, seq_len]), device)
    }
}
