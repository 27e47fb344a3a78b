//! `dlm`: diffusion language models on burn — continuous (Gaussian diffusion over embeddings),
//! discrete (D3PM, MDLM) and block diffusion (BD3LM) on one set of noise schedules, one denoiser
//! backbone and one sampler interface.
//!
//! This crate is a facade: it re-exports the workspace crates and owns the examples, the
//! benchmarks and the backend features.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`sched`] | `dlm-sched` | noise schedules, time grids, training-time samplers |
//! | [`core`] | `dlm-core` | backbone, token sampling, data, training harness |
//! | [`continuous`] | `dlm-continuous` | Diffusion-LM |
//! | [`discrete`] | `dlm-discrete` | D3PM and MDLM |
//! | [`block`] | `dlm-block` | BD3LM and approximate caches |
//! | [`device`] | this crate | choose a burn device from a CLI value or `BURN_DEVICE` |
//! | [`diffusion_gemma`] | this crate | generate with a DiffusionGemma checkpoint (`dlm generate` on one) |
//! | [`generate`] | this crate | generate and score with an imported checkpoint (`dlm generate`, `dlm score`) |
//! | [`recipe`] | this crate | training runs from one TOML file (`dlm train`, `dlm eval`, `dlm sample`) |
//! | [`serve`] | this crate | the OpenAI-compatible HTTP server (`dlm serve`, feature `serve`) |
//! | [`watch`] | this crate | a live terminal view of a decoding (`dlm generate --watch`, the quickstart) |
//!
//! # Backends
//!
//! The library crates enable no burn backend; this crate's cargo features do: `flex` (default,
//! pure-Rust CPU, with `x86-v4` AVX-512 GEMM kernels by default), `ndarray`, `tch` (libtorch from
//! the PyPI torch wheel: PyTorch's CPU kernels and CUDA), `wgpu` (GPU through Vulkan/Metal/DX12)
//! and `cuda` (whose build needs internet access). See [`device::parse_device`].

pub mod device;
pub mod diffusion_gemma;
pub mod generate;
pub mod recipe;
#[cfg(feature = "serve")]
pub mod serve;
pub mod watch;

pub use dlm_block as block;
pub use dlm_continuous as continuous;
pub use dlm_core as core;
pub use dlm_discrete as discrete;
pub use dlm_sched as sched;

/// The README's code, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
