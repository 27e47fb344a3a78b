//! Logit filters: top-k and top-p (nucleus). Filtered logits become `−∞`.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// Keeps the `k` largest logits of every row and sets the others to `−∞` (Fan et al. 2018).
/// Ties with the `k`-th largest value are kept too, so a row may keep more than `k` tokens when
/// its logits tie.
///
/// # Shapes
/// - `logits`: `[batch, seq_len, vocab_size]` → same
///
/// # Panics
/// If `k == 0` or `k > vocab_size` ([`TokenSampler`](super::TokenSampler) validates `k`).
pub fn top_k(logits: Tensor<3>, k: usize) -> Tensor<3> {
    let kth_largest = logits.clone().topk(k, 2).min_dim(2);
    let below = logits.clone().lower(kth_largest);
    logits.mask_fill(below, f64::NEG_INFINITY)
}

/// Keeps the smallest set of most probable tokens whose probability reaches `p` (nucleus
/// sampling, Holtzman et al. 2020, §3.1) and sets the other logits to `−∞`. The most probable
/// token is always kept; a token is kept when the probability of the tokens ranked above it is
/// below `p`. Ties with the least probable kept token are kept too.
///
/// # Shapes
/// - `logits`: `[batch, seq_len, vocab_size]` → same
pub fn top_p(logits: Tensor<3>, p: f64) -> Tensor<3> {
    let probs = softmax(logits.clone(), 2);
    let (sorted, _) = probs.clone().sort_descending_with_indices(2);
    let mass_above = sorted.clone().cumsum(2) - sorted.clone();
    let outside = mass_above.greater_equal_elem(p);
    // The smallest kept probability; everything below it is outside the nucleus.
    let threshold = sorted.mask_fill(outside, 2.0).min_dim(2);
    let below = probs.lower(threshold);
    logits.mask_fill(below, f64::NEG_INFINITY)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;

    fn row(values: &[f32]) -> Tensor<3> {
        Tensor::<1>::from_floats(values, &Device::flex()).reshape([1, 1, values.len()])
    }

    fn kept(logits: Tensor<3>) -> Vec<bool> {
        logits.into_data().iter::<f32>().map(f32::is_finite).collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest() {
        let logits = row(&[0.1, 2.0, -1.0, 1.5, 0.3]);
        assert_eq!(kept(top_k(logits.clone(), 2)), [false, true, false, true, false]);
        assert_eq!(kept(top_k(logits.clone(), 1)), [false, true, false, false, false]);
        assert_eq!(kept(top_k(logits, 5)), [true; 5]);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (log-probabilities as logits).
        let logits = row(&[0.5f32.ln(), 0.25f32.ln(), 0.125f32.ln(), 0.125f32.ln()]);
        assert_eq!(kept(top_p(logits.clone(), 0.5)), [true, false, false, false]);
        assert_eq!(kept(top_p(logits.clone(), 0.6)), [true, true, false, false]);
        // 0.875 needs the third token; its tie with the fourth keeps both.
        assert_eq!(kept(top_p(logits.clone(), 0.8)), [true, true, true, true]);
        // Even a tiny p keeps the most probable token.
        assert_eq!(kept(top_p(logits, 1e-9)), [true, false, false, false]);
    }
}
