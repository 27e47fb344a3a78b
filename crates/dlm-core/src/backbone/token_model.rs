//! [`TokenModel`]: what samplers, objectives and caches need of a transformer over tokens.

use burn::tensor::{Device, Tensor};

use super::denoiser::{Denoiser, DenoiserInput, DenoiserOutput};

/// A transformer over token ids that reads a [`DenoiserInput`] (mask, explicit positions, KV
/// cache, and a time for the models that read one): the DiT [`Denoiser`] trained here and the
/// imported LLaMA family ([`crate::llama`]). Code written against it runs on both.
pub trait TokenModel {
    /// The output of the final norm, from which [`TokenModel::head_rows`] computes the logits.
    ///
    /// # Shapes
    /// - tokens `[batch, n]` → `[batch, n, hidden]`
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput;

    /// The output head on rows of hidden states.
    ///
    /// # Shapes
    /// - `hidden`: `[rows, hidden]` → `[rows, vocab_size]`
    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2>;

    /// Logits of every position: the head on every row of [`TokenModel::forward_hidden`].
    ///
    /// # Shapes
    /// - tokens `[batch, n]` → `[batch, n, vocab_size]`
    fn forward(&self, input: DenoiserInput) -> DenoiserOutput {
        let DenoiserOutput { output, cache } = self.forward_hidden(input);
        let [batch, n, hidden] = output.dims();
        let logits = self.head_rows(output.reshape([batch * n, hidden]));
        let vocab_size = logits.dims()[1];
        DenoiserOutput { output: logits.reshape([batch, n, vocab_size]), cache }
    }

    /// The ids the model reads and scores are `0..vocab_size`.
    fn vocab_size(&self) -> usize;

    /// The context length the model was trained for.
    fn max_seq_len(&self) -> usize;

    /// Whether the model reads the diffusion time.
    fn is_time_conditioned(&self) -> bool;

    /// The device the model computes on.
    fn device(&self) -> Device;

    /// Whether a chunk run against a KV cache gives the logits of its own positions (false for
    /// a model whose logits are shifted, as Dream's: the chunk's first prediction would come
    /// from the cached prefix).
    fn supports_kv_cache(&self) -> bool {
        true
    }
}

impl TokenModel for Denoiser {
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        Denoiser::forward_hidden(self, input)
    }

    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        Denoiser::head_rows(self, hidden)
    }

    fn forward(&self, input: DenoiserInput) -> DenoiserOutput {
        Denoiser::forward(self, input)
    }

    /// 0 for a model over vectors, which reads no token.
    fn vocab_size(&self) -> usize {
        Denoiser::vocab_size(self).unwrap_or(0)
    }

    fn max_seq_len(&self) -> usize {
        Denoiser::max_seq_len(self)
    }

    fn is_time_conditioned(&self) -> bool {
        Denoiser::is_time_conditioned(self)
    }

    fn device(&self) -> Device {
        Denoiser::device(self)
    }
}
