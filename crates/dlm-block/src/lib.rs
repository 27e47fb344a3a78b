//! Block diffusion: BD3LM (Arriola et al. 2025) with exact KV-cached sampling and arbitrary-length
//! generation, and Fast-dLLM's approximate caches for full-attention models.
//!
//! **Status: planned, not implemented yet** (issue "dlm-block: BD3LM block diffusion"). Nothing in
//! this crate works yet; the map below is the agreed shape.
//!
//! # Module map (planned)
//!
//! | module | what |
//! |---|---|
//! | `training` | vectorised training on `x_t ⊕ x0` with the block mask, per-block `t`, clipped schedules and their variance-minimising search |
//! | `sampling` | block-by-block sampling with an exact KV cache of clean blocks, variable length |
//! | `approximate_cache` | block-wise decoding with prefix and dual caches (Fast-dLLM) |
