//! The transformer denoiser every family wraps: [`Denoiser`], its attention masks and KV cache.

mod attention;
mod block;
mod denoiser;
mod dit_checkpoint;
mod feature_cache;
mod kv_cache;
mod mask;
mod rope;
mod time_embedding;
mod token_model;

pub(crate) use attention::{attend, attend_scaled};
pub(crate) use denoiser::InputParts;
pub use denoiser::{
    Denoiser, DenoiserConfig, DenoiserInput, DenoiserIo, DenoiserOutput, DenoiserValues,
    MAX_LAYERS, MAX_SEQ_LEN, MAX_VOCAB_SIZE, MAX_WIDTH, check_fits,
};
pub use dit_checkpoint::{DitCheckpoint, DitFamily};
pub use feature_cache::{FeatureCache, FeatureCachedModel, FeaturePass, SegmentUpdate};
pub(crate) use feature_cache::{LayerParts, LayerWidths, check_pass, run_cached_layers};
pub use kv_cache::KvCache;
pub(crate) use kv_cache::LayerKv;
pub use mask::{AttentionMask, MaskRule};
pub use rope::RotaryTables;
pub use time_embedding::sinusoidal_features;
pub use token_model::TokenModel;

#[cfg(test)]
mod tests;
