//! Embedding of the diffusion time for adaLN conditioning.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};

/// Sinusoidal features of `t` (Vaswani et al. 2017, §3.5, as a function of a real number):
/// `[cos(1000·t·ω_i), sin(1000·t·ω_i)]` with `ω_i = 10000^{−i/(dim/2)}`. The factor 1000 maps
/// `t ∈ [0, 1]` onto the range of DDPM's integer timesteps, where these frequencies resolve it.
///
/// # Shapes
/// - `t`: `[batch]` → `[batch, dim]` (`dim` even)
pub fn sinusoidal_features(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let batch = t.dims()[0];
    let freqs = Tensor::<1, Int>::arange(0..half as i64, &t.device())
        .float()
        .mul_scalar(-(10_000f64.ln()) / half as f64)
        .exp();
    let args = t.mul_scalar(1000.0).reshape([batch, 1]) * freqs.reshape([1, half]);
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

/// Configuration of [`TimeEmbedding`].
#[derive(Config, Debug)]
pub(crate) struct TimeEmbeddingConfig {
    /// Size of the conditioning vector.
    pub(crate) cond_dim: usize,
    /// Number of sinusoidal features.
    #[config(default = 256)]
    pub(crate) n_frequencies: usize,
}

impl TimeEmbeddingConfig {
    pub(crate) fn init(&self, device: &Device) -> TimeEmbedding {
        TimeEmbedding {
            hidden: LinearConfig::new(self.n_frequencies, self.cond_dim).init(device),
            out: LinearConfig::new(self.cond_dim, self.cond_dim).init(device),
            n_frequencies: self.n_frequencies,
        }
    }
}

/// `c = W₂·SiLU(W₁·sinusoidal(t))`: DiT's timestep embedder (Peebles & Xie 2023, §3.2), also
/// MDLM's `TimestepEmbedder`.
#[derive(Module, Debug)]
pub(crate) struct TimeEmbedding {
    hidden: Linear,
    out: Linear,
    n_frequencies: usize,
}

impl TimeEmbedding {
    /// # Shapes
    /// - `t`: `[batch]` → `[batch, cond_dim]`
    pub(crate) fn forward(&self, t: Tensor<1>) -> Tensor<2> {
        let features = sinusoidal_features(t, self.n_frequencies);
        self.out.forward(silu(self.hidden.forward(features)))
    }
}
