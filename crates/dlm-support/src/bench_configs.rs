//! The benchmarked denoiser configurations, shared by the forward and training-step benches.

use dlm_core::backbone::{DenoiserConfig, DenoiserIo};

/// Vocabulary of both configurations.
pub const VOCAB: usize = 4096;

/// Size of the time-conditioning vector of the time-conditioned configurations (MDLM's DiT).
pub const COND_DIM: usize = 128;

/// `(name, batch, config)`: the reference configuration (`d_model` 256, 4 layers, 4 heads,
/// `seq_len` 128, batch 16) always, and with `DLM_BENCH_LARGE=1` a GPU-sized one (`d_model` 768,
/// 12 layers, 12 heads, `seq_len` 1024, batch 4). Without time conditioning; the MDLM benches add
/// it with [`COND_DIM`].
pub fn configurations() -> Vec<(&'static str, usize, DenoiserConfig)> {
    let tokens = || DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: false };
    let mut configs = vec![(
        "reference",
        16,
        DenoiserConfig::new(tokens(), 128).with_d_model(256).with_n_heads(4).with_n_layers(4),
    )];
    if std::env::var("DLM_BENCH_LARGE").is_ok_and(|v| v == "1") {
        configs.push((
            "large",
            4,
            DenoiserConfig::new(tokens(), 1024)
                .with_d_model(768)
                .with_n_heads(12)
                .with_n_layers(12),
        ));
    }
    configs
}
