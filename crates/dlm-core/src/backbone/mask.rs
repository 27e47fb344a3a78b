//! [`AttentionMask`]: which keys each query may attend to.

use std::sync::Arc;

use burn::tensor::{Bool, Device, Int, Tensor};

use crate::error::{CoreError, ensure_size};

/// An attention rule on absolute indices that a method defines for itself: which keys each
/// query may attend to, where its tokens sit for the rotary embedding, and which chunks it can
/// serve. The backbone applies it like its own masks, with or without a KV cache.
pub trait MaskRule: std::fmt::Debug + Send + Sync {
    /// The `[n_queries, n_keys]` mask (`true` = blocked) of queries at
    /// `[query_offset, query_offset + n_queries)` against keys at `[0, n_keys)`.
    ///
    /// # Shapes
    /// - returns `[n_queries, n_keys]`
    fn blocked(
        &self,
        query_offset: usize,
        n_queries: usize,
        n_keys: usize,
        device: &Device,
    ) -> Tensor<2, Bool>;

    /// The rotary positions of the queries, `[n_queries]` (default: the indices themselves).
    fn positions(&self, query_offset: usize, n_queries: usize, device: &Device) -> Tensor<1, Int> {
        Tensor::<1, Int>::arange(query_offset as i64..(query_offset + n_queries) as i64, device)
    }

    /// Why the rule cannot serve these queries, if it cannot (default: it serves any chunk).
    fn problem(&self, _query_offset: usize, _n_queries: usize) -> Option<String> {
        None
    }
}

/// Which keys a query may attend to, as a rule on absolute indices, so that the same mask serves
/// a full forward and a chunk run against a KV cache (queries at indices `[offset, offset + n)`,
/// keys at `[0, offset + n)`).
///
/// Materialised masks follow burn's convention: **`true` means blocked**.
#[derive(Debug, Clone)]
pub enum AttentionMask {
    /// Every query sees every key (bidirectional; MDLM, LLaDA).
    Full,
    /// Query `i` sees keys `j ≤ i` (autoregressive).
    Causal,
    /// Query `i` sees keys `j` with `⌊j/b⌋ ≤ ⌊i/b⌋`: bidirectional within a block, causal across
    /// blocks (BD3LM's sampling mask, Arriola et al. 2025, §3.2).
    BlockCausal {
        /// Block size `b`.
        block_size: usize,
    },
    /// A rule defined outside the backbone, where its method lives (BD3LM's `x_t ⊕ x0` training
    /// mask is `dlm-block`'s); build it with [`AttentionMask::rule`].
    Rule(Arc<dyn MaskRule>),
    /// An arbitrary mask, `[batch, n_queries, n_keys]`, `true` = blocked; with a KV cache it
    /// covers the cached keys too. Build it with [`AttentionMask::custom`].
    Custom(Box<Tensor<3, Bool>>),
}

impl AttentionMask {
    /// An arbitrary mask, `[batch, n_queries, n_keys]`, `true` = blocked.
    pub fn custom(blocked: Tensor<3, Bool>) -> Self {
        Self::Custom(Box::new(blocked))
    }

    /// [`AttentionMask::BlockCausal`], validated.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `block_size == 0`.
    pub fn block_causal(block_size: usize) -> Result<Self, CoreError> {
        ensure_size(block_size > 0, "attention mask", "block_size", block_size, "at least 1")?;
        Ok(Self::BlockCausal { block_size })
    }

    /// A mask from a method's own rule.
    pub fn rule(rule: impl MaskRule + 'static) -> Self {
        Self::Rule(Arc::new(rule))
    }

    /// Why this mask cannot serve queries `[query_offset, query_offset + n_queries)`, if it
    /// cannot: a zero block size, or what a rule says.
    pub(crate) fn problem(&self, query_offset: usize, n_queries: usize) -> Option<String> {
        match self {
            Self::BlockCausal { block_size: 0 } => Some("block_size 0".into()),
            Self::Rule(rule) => rule.problem(query_offset, n_queries),
            _ => None,
        }
    }

    /// The default rotary positions of queries `[query_offset, query_offset + n_queries)`: the
    /// indices themselves, or where a rule puts them.
    pub(crate) fn default_positions(
        &self,
        query_offset: usize,
        n_queries: usize,
        device: &Device,
    ) -> Tensor<1, Int> {
        match self {
            Self::Rule(rule) => rule.positions(query_offset, n_queries, device),
            _ => Tensor::<1, Int>::arange(
                query_offset as i64..(query_offset + n_queries) as i64,
                device,
            ),
        }
    }

    /// The `[batch, n_queries, n_keys]` boolean mask (`true` = blocked) for queries at
    /// `[query_offset, query_offset + n_queries)` and keys at `[0, n_keys)`, or `None` for
    /// [`AttentionMask::Full`].
    ///
    /// # Shapes
    /// - returns `[batch, n_queries, n_keys]`
    ///
    /// # Panics
    /// If a custom mask does not have this shape, or a block size is 0 (the denoiser checks
    /// masks before calling this).
    pub fn blocked(
        &self,
        batch: usize,
        query_offset: usize,
        n_queries: usize,
        n_keys: usize,
        device: &Device,
    ) -> Option<Tensor<3, Bool>> {
        let q = || {
            Tensor::<1, Int>::arange(query_offset as i64..(query_offset + n_queries) as i64, device)
                .reshape([n_queries, 1])
        };
        let k = || Tensor::<1, Int>::arange(0..n_keys as i64, device).reshape([1, n_keys]);
        let blocked: Tensor<2, Bool> = match self {
            Self::Full => return None,
            Self::Custom(mask) => {
                assert_eq!(mask.dims(), [batch, n_queries, n_keys], "custom attention mask shape");
                return Some(mask.as_ref().clone());
            }
            Self::Causal => k().greater(q()),
            Self::BlockCausal { block_size } => {
                let b = *block_size as i64;
                k().div_scalar(b).greater(q().div_scalar(b))
            }
            Self::Rule(rule) => rule.blocked(query_offset, n_queries, n_keys, device),
        };
        Some(blocked.unsqueeze_dim::<3>(0).expand([batch, n_queries, n_keys]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(mask: &AttentionMask, n_queries: usize, n_keys: usize, offset: usize) -> Vec<String> {
        let device = Device::flex();
        let blocked: Vec<bool> = mask
            .blocked(1, offset, n_queries, n_keys, &device)
            .unwrap()
            .into_data()
            .iter::<bool>()
            .collect();
        blocked
            .chunks(n_keys)
            .map(|row| row.iter().map(|&b| if b { '.' } else { '1' }).collect())
            .collect()
    }

    #[test]
    fn causal_and_block_causal() {
        assert_eq!(grid(&AttentionMask::Causal, 3, 3, 0), ["1..", "11.", "111"]);
        let block = AttentionMask::BlockCausal { block_size: 2 };
        assert_eq!(grid(&block, 4, 4, 0), ["11..", "11..", "1111", "1111"]);
        // A chunk at offset 2 against 4 keys: the rows of the full mask.
        assert_eq!(grid(&block, 2, 4, 2), ["1111", "1111"]);
        assert_eq!(grid(&AttentionMask::Causal, 1, 3, 2), ["111"]);
        assert!(AttentionMask::Full.blocked(1, 0, 3, 3, &Device::flex()).is_none());
    }

    /// Query `i` sees keys `i − 1` and `i`, and sits at rotary position `2i`; it refuses chunks
    /// longer than 4.
    #[derive(Debug)]
    struct Window;

    impl MaskRule for Window {
        fn blocked(
            &self,
            offset: usize,
            n_queries: usize,
            n_keys: usize,
            device: &Device,
        ) -> Tensor<2, Bool> {
            let q = Tensor::<1, Int>::arange(offset as i64..(offset + n_queries) as i64, device)
                .reshape([n_queries, 1]);
            let k = Tensor::<1, Int>::arange(0..n_keys as i64, device).reshape([1, n_keys]);
            k.clone().greater(q.clone()).bool_or(k.add_scalar(1).lower(q))
        }
        fn positions(&self, offset: usize, n_queries: usize, device: &Device) -> Tensor<1, Int> {
            Tensor::<1, Int>::arange(offset as i64..(offset + n_queries) as i64, device)
                .mul_scalar(2)
        }
        fn problem(&self, _offset: usize, n_queries: usize) -> Option<String> {
            (n_queries > 4).then(|| format!("{n_queries} queries"))
        }
    }

    #[test]
    fn a_rule_serves_full_passes_and_cached_chunks_with_its_positions() {
        let mask = AttentionMask::rule(Window);
        assert_eq!(grid(&mask, 3, 3, 0), ["1..", "11.", ".11"]);
        // The chunk at offset 2 against 4 keys: the last rows of the full mask.
        assert_eq!(grid(&mask, 2, 4, 2), [".11.", "..11"]);
        let positions = mask.default_positions(1, 3, &Device::flex());
        assert_eq!(positions.into_data().iter::<i64>().collect::<Vec<_>>(), [2, 4, 6]);
        assert_eq!(mask.problem(0, 5).as_deref(), Some("5 queries"));
        assert!(mask.problem(0, 4).is_none());
        assert!(AttentionMask::Causal.problem(0, 100).is_none());
    }
}
