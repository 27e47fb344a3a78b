//! The foundation every diffusion family in `dlm` builds on.
//!
//! **Status: planned, not implemented yet** (issue "dlm-core: denoiser backbone, data, training
//! harness"). Nothing in this crate works yet; the map below is the agreed shape.
//!
//! # Module map (planned)
//!
//! | module | what |
//! |---|---|
//! | `backbone` | one transformer denoiser: token embedding or continuous-input projection, RoPE, pre-norm blocks, optional adaLN-zero time conditioning, tied or untied output head |
//! | `attention` | attention masks (full, causal, block-causal, BD3LM's `x_t ⊕ x0`, arbitrary) and the fused attention call |
//! | `kv_cache` | run a chunk of positions against cached keys/values of a prefix |
//! | `sampling` | token sampling cores that take their noise: argmax, temperature, top-k, top-p, float64 Gumbel-max, confidence measures |
//! | `tokenizer` | HF `tokenizers` (load `tokenizer.json`, train BPE offline), character and byte level, reserved special tokens |
//! | `data` | corpora to cached token ids, splits, wrapped and padded batching, synthetic sources with a known entropy rate |
//! | `train` | the training harness: objectives, AdamW, LR schedules, clipping, EMA, accumulation, validation |
//! | `checkpoint` | atomic checkpoints of model, optimiser, EMA, RNG state and config |
//! | `ar` | the autoregressive baseline every diffusion result is compared against |
