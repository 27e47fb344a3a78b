//! Nearest-neighbour rounding of vectors to token embeddings, and the clamping trick.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// How "nearest" is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// Euclidean distance (Diffusion-LM's `rounding_func`, `dist='l2'`).
    L2,
    /// Cosine similarity.
    Cosine,
}

/// The token whose embedding is nearest to each vector, in one matrix product
/// (`‖x − e‖² = ‖x‖² − 2x·e + ‖e‖²`; `‖x‖²` does not change the argmin).
///
/// # Shapes
/// - `x`: `[batch, seq_len, dim]`, `embeddings`: `[vocab_size, dim]` → `[batch, seq_len]`
pub fn round_to_tokens(x: Tensor<3>, embeddings: Tensor<2>, distance: Distance) -> Tensor<2, Int> {
    let [batch, seq_len, dim] = x.dims();
    let vocab_size = embeddings.dims()[0];
    let flat = x.reshape([batch * seq_len, dim]);
    let scores = match distance {
        Distance::L2 => {
            let squared_norms =
                embeddings.clone().powi_scalar(2).sum_dim(1).reshape([1, vocab_size]);
            flat.matmul(embeddings.transpose()).mul_scalar(2.0) - squared_norms
        }
        Distance::Cosine => {
            let norms = embeddings.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
            let unit = embeddings / norms;
            flat.matmul(unit.transpose())
        }
    };
    scores.argmax(1).reshape([batch, seq_len])
}

/// The clamping trick (Diffusion-LM, Li et al. 2022, §4.2): replace each vector by its nearest
/// token embedding. Idempotent.
///
/// # Shapes
/// - `x`: `[batch, seq_len, dim]`, `embeddings`: `[vocab_size, dim]` → `[batch, seq_len, dim]`
pub fn clamp_to_embeddings(x: Tensor<3>, embeddings: Tensor<2>, distance: Distance) -> Tensor<3> {
    let [batch, seq_len, dim] = x.dims();
    let tokens = round_to_tokens(x, embeddings.clone(), distance);
    embeddings.select(0, tokens.reshape([batch * seq_len])).reshape([batch, seq_len, dim])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    #[test]
    fn rounding_picks_the_true_nearest_neighbour() {
        let device = Device::flex();
        let embeddings = Tensor::<2>::random([13, 5], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<3>::random([2, 7, 5], Distribution::Normal(0.0, 1.0), &device);
        let e: Vec<f64> = embeddings.clone().into_data().iter::<f64>().collect();
        let xs: Vec<f64> = x.clone().into_data().iter::<f64>().collect();
        for distance in [Distance::L2, Distance::Cosine] {
            let got: Vec<i64> = round_to_tokens(x.clone(), embeddings.clone(), distance)
                .into_data()
                .iter::<i64>()
                .collect();
            for (i, &token) in got.iter().enumerate() {
                let v = &xs[i * 5..(i + 1) * 5];
                let score = |k: usize| {
                    let ek = &e[k * 5..(k + 1) * 5];
                    match distance {
                        Distance::L2 => {
                            -v.iter().zip(ek).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
                        }
                        Distance::Cosine => {
                            let dot: f64 = v.iter().zip(ek).map(|(a, b)| a * b).sum();
                            dot / ek.iter().map(|b| b * b).sum::<f64>().sqrt()
                        }
                    }
                };
                let best = (0..13).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap();
                assert_eq!(token as usize, best, "{distance:?} position {i}");
            }
        }
    }

    #[test]
    fn clamping_is_idempotent() {
        let device = Device::flex();
        let embeddings = Tensor::<2>::random([9, 4], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<3>::random([1, 6, 4], Distribution::Normal(0.0, 2.0), &device);
        let once = clamp_to_embeddings(x, embeddings.clone(), Distance::L2);
        let twice = clamp_to_embeddings(once.clone(), embeddings, Distance::L2);
        assert_eq!(once.into_data(), twice.into_data());
    }
}
