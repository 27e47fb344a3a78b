//! The foundation every diffusion family in `dlm` builds on.
//!
//! # Module map
//!
//! | module | what | status |
//! |---|---|---|
//! | [`sampling`] | token sampling cores that take their noise: argmax, temperature, top-k, top-p, float64 Gumbel-max, confidence measures | done |
//! | [`backbone`] | the transformer denoiser: token embedding or continuous-input projection, RoPE at explicit positions, pre-norm blocks, optional adaLN-zero time conditioning, tied or untied head; attention masks (full, causal, block-causal, arbitrary, and rules a method defines such as BD3LM's `x_t ⊕ x0` in `dlm-block`); a KV cache; dLLM-Cache's per-layer feature cache | done |
//! | [`bert`] | BERT masked LMs (post-norm, learned positions, tied or untied MLM head) and the import of Hugging Face checkpoints (`.bin`, `.safetensors`) | done |
//! | [`tokenizer`] | HF `tokenizers` (load `tokenizer.json`, train byte-level BPE offline), character and byte level, with the project's special tokens | done |
//! | [`data`] | synthetic sources with a known entropy rate (sparse Markov chain, correlated pairs), sequence datasets, text corpora with token ids cached on disk and deterministic splits, wrapped and padded batching, seeded resumable batch order | done |
//! | [`train`] | the training harness: objectives, AdamW, warmup + constant/cosine LR, global-norm clipping, EMA, accumulation, evaluation, progress bar, metrics CSV, loss plot | done |
//! | [`checkpoint`] | atomic checkpoint files with typed errors for foreign, truncated and corrupted files; the trainer stores model, optimiser, EMA, state and config in them | done |
//! | [`eval`] | the one evaluation loop of every likelihood bound ([`eval::evaluate_bound`]), unigram entropy of samples, the token a collapsed sample repeats | done |
//! | [`lexicon`] | the words of a text, and the share of a sample's words it knows (does a character model spell?) | done |
//! | [`host`] | host ↔ tensor conversions (floats, ids, sample rows) | done |
//! | [`ar`] | the autoregressive baseline every diffusion result is compared against: causal objective, exact NLL, cached generation | done |
//! | [`scaling`] | how a cost grows with a size: the exponent of a power law fitted on log–log axes, and the curves of several methods on one log–log figure | done |
//! | [`diffusion_gemma`] | DiffusionGemma: the causal encoder with its KV cache, the canvas decoder with self-conditioning, sliding and global Gemma 4 layers, the mixture of experts; import of its Hugging Face checkpoints | done |

pub mod ar;
pub mod backbone;
pub mod bert;
pub mod checkpoint;
pub mod data;
mod device;
pub mod diffusion_gemma;
mod error;
pub mod eval;
pub mod front;
pub mod hf;
pub mod host;
pub mod lexicon;
pub mod llama;
pub mod sampling;
pub mod scaling;
pub mod tokenizer;
pub mod train;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use device::module_device;
pub use error::CoreError;
