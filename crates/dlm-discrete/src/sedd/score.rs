//! [`ConcreteScore`]: what SEDD's loss and sampler need from a model, and the network
//! parameterisation that turns a [`Denoiser`]'s output into it.

use burn::tensor::{Device, Int, Tensor};
use dlm_core::backbone::{Denoiser, DenoiserInput};
use dlm_sched::NoiseSchedule;

use super::Graph;

/// A model of the concrete score `s_θ(x_t, t)_y ≈ p_t(x_t with position i set to y) / p_t(x_t)`
/// (Lou et al. 2024, §3.1; Meng et al. 2022), one ratio per position and id, given as logs.
pub trait ConcreteScore {
    /// `log s_θ(x_t, t)`, with `0` at each position's own id (the ratio of `x_t` to itself).
    ///
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, seq_len, vocab_size]`
    fn log_score(&self, x_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3>;

    /// The ids the model reads and scores, `0..vocab_size`.
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model reads, `None` where any length works.
    fn max_seq_len(&self) -> Option<usize>;

    /// The device the model computes on.
    fn device(&self) -> Device;
}

/// A [`Denoiser`] read as a log-score network, as SEDD's reference model (`model/transformer.py`,
/// `SEDD.forward`): the output `o` (time-conditioned on `t`; the reference conditions on `σ(t)`,
/// the same information) is the log-score, except that for the absorbing graph it is shifted by
/// `− ln(e^{σ(t)} − 1) − ln(V − 1)` (`scale_by_sigma`), so that a network with zero output
/// starts at scores that sum to the true `1/(e^σ − 1)` at a masked position; the own id's entry
/// is then set to 0.
#[derive(Debug, Clone, Copy)]
pub struct ScoreNetwork<'a, S> {
    /// The network.
    pub model: &'a Denoiser,
    /// The graph the scores are of.
    pub graph: Graph,
    /// The schedule giving `σ(t)`.
    pub schedule: &'a S,
}

impl<S: NoiseSchedule> ConcreteScore for ScoreNetwork<'_, S> {
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, seq_len, vocab_size]`
    fn log_score(&self, x_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let batch = x_t.dims()[0];
        let input = DenoiserInput::tokens(x_t.clone()).with_time(t.clone());
        let output = self.model.forward(input).output;
        let vocab_size = output.dims()[2];
        let output = match self.graph {
            Graph::Absorbing { .. } => {
                // ln(e^σ − 1) = σ + ln(1 − e^{−σ}), without overflow for large σ.
                let sigma = self.schedule.sigma_tensor(t);
                let log_expm1 = sigma.clone() + sigma.neg().exp().neg().add_scalar(1.0).log();
                output - log_expm1.reshape([batch, 1, 1]) - ((vocab_size as f64 - 1.0).ln() as f32)
            }
            Graph::Uniform => output,
        };
        let own = x_t.one_hot::<3>(vocab_size).bool();
        output.mask_fill(own, 0.0)
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size().unwrap_or(0)
    }

    fn max_seq_len(&self) -> Option<usize> {
        Some(self.model.max_seq_len())
    }

    fn device(&self) -> Device {
        self.model.device()
    }
}
