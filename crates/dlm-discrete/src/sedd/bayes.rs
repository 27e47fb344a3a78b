//! The exact concrete score of a [`MarkovSource`] under either graph: the reference point of a
//! learned score, as [`crate::MarkovBayes`] is for a masked denoiser.

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::data::MarkovSource;
use dlm_core::host::int_values;
use dlm_sched::NoiseSchedule;

use super::{ConcreteScore, Graph};
use crate::denoiser::NEG_INFINITY;

/// `log s(x_t, t)_y` of the source exactly. The concrete score of the noised marginal at
/// position `i` is the posterior expectation of the transition ratio (the identity behind
/// denoising score entropy, Lou et al. 2024, §3.2):
///
/// `p_t(x_t with x_i ← y) / p_t(x_t) = Σ_a p(x0_i = a | x_t) · P_σ(y | a) / P_σ(x_{t,i} | a)`,
///
/// with the posterior of the clean token given the whole noisy sequence computed by
/// forward–backward over the chain with the graph's transition as the evidence
/// ([`MarkovSource::posterior_with_likelihoods`]). For the absorbing graph at a masked position
/// this is `p(x0_i = y | visible)/(e^σ − 1)`: MDLM's exact posterior, rescaled. No score can have
/// a lower DWDSE: in expectation over the noise its bound is the sequence entropy.
///
/// Runs on the host in `f64`, one row at a time. A row the source cannot produce (a visible
/// special token) gets [`NEG_INFINITY`] everywhere except the own entries.
#[derive(Debug, Clone)]
pub struct MarkovBayesScore<'a, S> {
    /// The source the data comes from.
    pub source: &'a MarkovSource,
    /// The graph the data is noised on.
    pub graph: Graph,
    /// The schedule giving `σ(t)`.
    pub schedule: &'a S,
    /// The ids scored, `0..vocab_size` (the source's tokens, and the mask for the absorbing
    /// graph).
    pub vocab_size: usize,
    /// Where the scores are returned.
    pub device: Device,
}

impl<S: NoiseSchedule> ConcreteScore for MarkovBayesScore<'_, S> {
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, seq_len, vocab_size]`
    fn log_score(&self, x_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let [batch, seq_len] = x_t.dims();
        let (vocab, symbols) = (self.vocab_size, self.source.vocab_size());
        let tokens: Vec<i64> = int_values(x_t);
        let times: Vec<f64> = t.into_data().iter::<f64>().collect();
        let mut out = Vec::with_capacity(batch * seq_len * vocab);
        for (row, &time) in tokens.chunks(seq_len.max(1)).zip(&times) {
            let sigma = self.schedule.sigma(time);
            let p = |from: usize, to: i64| {
                self.graph.transition_probability(sigma, from as u32, to as u32, vocab)
            };
            let likelihoods: Vec<Vec<f64>> =
                row.iter().map(|&x| (0..symbols).map(|a| p(a, x)).collect()).collect();
            let posterior = self.source.posterior_with_likelihoods(&likelihoods).ok();
            for (i, &x) in row.iter().enumerate() {
                for y in 0..vocab {
                    let log_score = match &posterior {
                        _ if y as i64 == x => 0.0,
                        None => NEG_INFINITY,
                        Some(posterior) => {
                            let ratio: f64 = (0..symbols)
                                .filter(|&a| posterior[i][a] > 0.0)
                                .map(|a| posterior[i][a] * p(a, y as i64) / p(a, x))
                                .sum();
                            ratio.ln().max(NEG_INFINITY)
                        }
                    };
                    out.push(log_score as f32);
                }
            }
        }
        Tensor::from_data(TensorData::new(out, [batch, seq_len, vocab]), &self.device)
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn max_seq_len(&self) -> Option<usize> {
        None
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}
