//! [`DiffusionLm`]: learned token embeddings, a time-conditioned vector denoiser predicting `x0`,
//! and a rounding head tied to the embeddings.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::{Device, Int, Tensor};
use dlm_core::CoreError;
use dlm_core::backbone::{Denoiser, DenoiserConfig, DenoiserInput, DenoiserIo, check_fits};
use dlm_core::data::SequenceDataset;

use crate::error::{ContinuousError, ensure_size};

/// What a Gaussian sampler needs from a model: `x̂0 = f_θ(z_t, t)` and the embeddings to round to.
pub trait X0Predictor {
    /// The predicted clean embeddings. With self-conditioning, `previous` is the prediction of
    /// the previous step (`None` at the first step).
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len, dim]`, `t`: `[batch]` → `[batch, seq_len, dim]`
    fn predict_x0(&self, z_t: Tensor<3>, t: Tensor<1>, previous: Option<Tensor<3>>) -> Tensor<3>;

    /// The token embeddings, `[vocab_size, dim]`.
    fn embeddings(&self) -> Tensor<2>;
}

/// Configuration of [`DiffusionLm`].
#[derive(Config, Debug)]
pub struct DiffusionLmConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Trained context length.
    pub max_seq_len: usize,
    /// Size of the token embeddings the diffusion runs on (Diffusion-LM: 16 for E2E, 128 for
    /// ROCStories).
    #[config(default = 16)]
    pub embed_dim: usize,
    /// Width of the denoiser.
    #[config(default = 128)]
    pub d_model: usize,
    /// Attention heads of the denoiser.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Blocks of the denoiser.
    #[config(default = 4)]
    pub n_layers: usize,
    /// Size of the time conditioning.
    #[config(default = 128)]
    pub cond_dim: usize,
    /// Feed the previous prediction of `x0` back as input (CDCD, Plaid, TESS; Chen et al. 2023,
    /// "Analog Bits", §3.2).
    #[config(default = false)]
    pub self_conditioning: bool,
}

impl DiffusionLmConfig {
    /// Builds the model: embeddings `N(0, 1)` (as `nn.Embedding` in the reference), a denoiser on
    /// vectors of `embed_dim` (twice that in with self-conditioning), rounding bias 0.
    ///
    /// # Errors
    /// [`ContinuousError::Invalid`] for `embed_dim == 0` or `vocab_size < 2`, or the
    /// denoiser's own errors.
    pub fn init(&self, device: &Device) -> Result<DiffusionLm, ContinuousError> {
        ensure_size(self.embed_dim > 0, "Diffusion-LM", "embed_dim", self.embed_dim, "at least 1")?;
        ensure_size(
            self.vocab_size >= 2,
            "Diffusion-LM",
            "vocab_size",
            self.vocab_size,
            "at least 2",
        )?;
        let input_dim = if self.self_conditioning { 2 * self.embed_dim } else { self.embed_dim };
        let backbone = DenoiserConfig::new(
            DenoiserIo::Vectors { input_dim, output_dim: self.embed_dim },
            self.max_seq_len,
        )
        .with_d_model(self.d_model)
        .with_n_heads(self.n_heads)
        .with_n_layers(self.n_layers)
        .with_cond_dim(Some(self.cond_dim))
        .init(device)?;
        Ok(DiffusionLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim)
                .with_initializer(Initializer::Normal { mean: 0.0, std: 1.0 })
                .init(device),
            backbone,
            rounding_bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
            self_conditioning: self.self_conditioning,
        })
    }
}

/// Diffusion-LM (Li et al. 2022): token embeddings trained end to end with a Gaussian diffusion
/// over them, a time-conditioned transformer predicting `x0` from `z_t`, and a rounding head
/// `p(w | x) = softmax(x·Eᵀ + b)` whose weight is the embedding matrix (`logits_mode = 1`).
#[derive(Module, Debug)]
pub struct DiffusionLm {
    embedding: Embedding,
    backbone: Denoiser,
    rounding_bias: Param<Tensor<1>>,
    self_conditioning: bool,
}

impl DiffusionLm {
    /// Checks that `data` fits: sequences within the backbone's context, ids within the
    /// embedding's vocabulary.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming `seq_len` or `vocab_size`.
    pub fn check_data(&self, data: &SequenceDataset) -> Result<(), CoreError> {
        let vocab_size = self.embedding.weight.dims()[0];
        check_fits(data, self.backbone.max_seq_len(), Some(vocab_size))
    }

    /// `Emb(w)`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq_len]` → `[batch, seq_len, embed_dim]`
    pub fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.embedding.forward(tokens)
    }

    /// The rounding head's logits `x·Eᵀ + b`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq_len, embed_dim]` → `[batch, seq_len, vocab_size]`
    pub fn rounding_logits(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq_len, dim] = x.dims();
        let weight = self.embedding.weight.val();
        let vocab_size = weight.dims()[0];
        let logits = x.reshape([batch * seq_len, dim]).matmul(weight.transpose());
        (logits + self.rounding_bias.val().reshape([1, vocab_size]))
            .reshape([batch, seq_len, vocab_size])
    }

    /// Whether the model reads its previous prediction.
    pub fn is_self_conditioned(&self) -> bool {
        self.self_conditioning
    }
}

impl X0Predictor for DiffusionLm {
    fn predict_x0(&self, z_t: Tensor<3>, t: Tensor<1>, previous: Option<Tensor<3>>) -> Tensor<3> {
        let input = if self.self_conditioning {
            let previous = previous.unwrap_or_else(|| z_t.zeros_like());
            Tensor::cat(vec![z_t, previous], 2)
        } else {
            z_t
        };
        self.backbone.forward(DenoiserInput::vectors(input).with_time(t)).output
    }

    fn embeddings(&self) -> Tensor<2> {
        self.embedding.weight.val()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use dlm_core::data::SequenceDataset;
    use dlm_core::train::{TrainConfig, Trainer};
    use dlm_sched::SquareRoot;

    use super::*;
    use crate::DiffusionLmLoss;

    fn config() -> DiffusionLmConfig {
        DiffusionLmConfig::new(10, 16)
            .with_embed_dim(8)
            .with_d_model(32)
            .with_n_heads(2)
            .with_n_layers(2)
            .with_cond_dim(16)
    }

    #[test]
    fn the_rounding_head_is_tied_to_the_embeddings() {
        let device = Device::flex();
        let model = config().init(&device).unwrap();
        let x = Tensor::<3>::random([1, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let logits = model.rounding_logits(x.clone());
        let expected = x.reshape([3, 8]).matmul(model.embeddings().transpose()).reshape([1, 3, 10]);
        assert!((logits - expected).abs().max().into_scalar::<f64>() < 1e-5);
        // The embedding of a token scores itself highly: logits of Emb(w) peak at w more often than not.
        let tokens = Tensor::<2, Int>::from_ints([[1, 2, 3, 4, 5, 6]], &device);
        let best = model.rounding_logits(model.embed(tokens.clone())).argmax(2).reshape([1, 6]);
        let hits = best.equal(tokens).int().sum().into_scalar::<i64>();
        assert!(hits >= 4, "{hits}");
    }

    #[test]
    fn self_conditioning_reads_the_previous_prediction() {
        let device = Device::flex();
        let model = dlm_core::testing::randomised(
            config().with_self_conditioning(true).init(&device).unwrap(),
            &device,
        );
        let z = Tensor::<3>::random([2, 4, 8], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([0.5, 0.5], &device);
        let first = model.predict_x0(z.clone(), t.clone(), None);
        let second = model.predict_x0(z, t, Some(first.clone()));
        assert_eq!(first.dims(), [2, 4, 8]);
        assert!((first - second).abs().max().into_scalar::<f64>() > 1e-4);
    }

    #[test]
    fn a_small_model_overfits_and_bad_configs_are_rejected() {
        let device = Device::flex().autodiff();
        let data =
            SequenceDataset::new(8, 10, (0..16 * 8).map(|i| 4 + (i % 3) as u32).collect()).unwrap();
        let loss = DiffusionLmLoss::new(SquareRoot::default(), 100).unwrap();
        let mut trainer = Trainer::new(
            TrainConfig::new(40, 16).with_learning_rate(1e-2),
            config().init(&device).unwrap(),
            loss,
        )
        .unwrap();
        let first = trainer.step(&data).unwrap().loss;
        let mut last = first;
        while !trainer.is_done() {
            last = trainer.step(&data).unwrap().loss;
        }
        assert!(last < first / 2.0, "{first} -> {last}");
        assert!(config().with_embed_dim(0).init(&Device::flex()).is_err());
        assert!(DiffusionLmConfig::new(1, 16).init(&Device::flex()).is_err());
        assert!(DiffusionLmLoss::new(SquareRoot::default(), 1).is_err());
    }
}
