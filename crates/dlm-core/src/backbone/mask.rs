//! [`AttentionMask`]: which keys each query may attend to.

use burn::tensor::{Bool, Device, Int, Tensor};

use crate::error::{CoreError, ensure_size};

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
    /// BD3LM's vectorised training mask over `x_t ⊕ x0` of length `2L` (Arriola et al. 2025,
    /// §3.3 and their `block_diff_mask`): with `n = L`, indices `< n` are `x_t`, `≥ n` are `x0`,
    /// and `b(i)` the block of `i` within its half,
    ///
    /// ```text
    /// [ M_BD   M_OBC ]   M_BD : x_t → x_t, same block            b(j) = b(i)
    /// [ 0      M_BC  ]   M_OBC: x_t → x0, earlier blocks only     b(j) < b(i)
    ///                    M_BC : x0 → x0, block-causal             b(j) ≤ b(i)
    /// ```
    ///
    /// `x0` never attends to `x_t`.
    Bd3lmTraining {
        /// Block size `b`.
        block_size: usize,
        /// `L`, the length of one half.
        seq_len: usize,
    },
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
    /// [`CoreError::InvalidSize`] if `block_size == 0`.
    pub fn block_causal(block_size: usize) -> Result<Self, CoreError> {
        ensure_size(block_size > 0, "attention mask", "block_size", block_size, "at least 1")?;
        Ok(Self::BlockCausal { block_size })
    }

    /// [`AttentionMask::Bd3lmTraining`], validated.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`] if `block_size == 0` or does not divide `seq_len`.
    pub fn bd3lm_training(block_size: usize, seq_len: usize) -> Result<Self, CoreError> {
        ensure_size(
            block_size > 0 && seq_len > 0 && seq_len.is_multiple_of(block_size),
            "attention mask",
            "block_size",
            block_size,
            format!("a divisor of seq_len = {seq_len}"),
        )?;
        Ok(Self::Bd3lmTraining { block_size, seq_len })
    }

    /// Why this mask cannot serve queries `[query_offset, query_offset + n_queries)`, if it
    /// cannot: a zero block size, a block size that does not divide the BD3LM length, or a BD3LM
    /// mask not applied to exactly `x_t ⊕ x0`.
    pub(crate) fn problem(&self, query_offset: usize, n_queries: usize) -> Option<String> {
        match *self {
            Self::BlockCausal { block_size: 0 } => Some("block_size 0".into()),
            Self::Bd3lmTraining { block_size, seq_len } => {
                if block_size == 0 || !seq_len.is_multiple_of(block_size) {
                    Some(format!("block_size {block_size} does not divide seq_len {seq_len}"))
                } else if query_offset != 0 || n_queries != 2 * seq_len {
                    Some(format!(
                        "the BD3LM training mask needs the {} positions of x_t ⊕ x0 without a \
                         cache, got {n_queries} at offset {query_offset}",
                        2 * seq_len
                    ))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The default rotary positions of queries `[query_offset, query_offset + n_queries)`: the
    /// indices themselves, except for BD3LM's `x_t ⊕ x0`, where token `i` of both halves sits at
    /// position `i` (their `i mod L`).
    pub(crate) fn default_positions(
        &self,
        query_offset: usize,
        n_queries: usize,
        device: &Device,
    ) -> Tensor<1, Int> {
        let indices = Tensor::<1, Int>::arange(
            query_offset as i64..(query_offset + n_queries) as i64,
            device,
        );
        match self {
            Self::Bd3lmTraining { seq_len, .. } => indices.remainder_scalar(*seq_len as i64),
            _ => indices,
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
            Self::Bd3lmTraining { block_size, seq_len } => {
                let (b, n) = (*block_size as i64, *seq_len as i64);
                let (q, k) = (q(), k());
                let q_is_x0 = q.clone().greater_equal_elem(n);
                let k_is_x0 = k.clone().greater_equal_elem(n);
                let q_block = q.clone().remainder_scalar(n).div_scalar(b);
                let k_block = k.clone().remainder_scalar(n).div_scalar(b);
                let same_half = q_is_x0.clone().equal(k_is_x0.clone());
                let block_diagonal = q_block.clone().equal(k_block.clone()).bool_and(same_half);
                let offset_block_causal = q_block
                    .clone()
                    .greater(k_block.clone())
                    .bool_and(k_is_x0.clone())
                    .bool_and(q_is_x0.clone().bool_not());
                let block_causal =
                    q_block.greater_equal(k_block).bool_and(k_is_x0).bool_and(q_is_x0);
                block_diagonal.bool_or(offset_block_causal).bool_or(block_causal).bool_not()
            }
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

    #[test]
    fn bd3lm_mask_matches_the_paper_example() {
        // n = 6, block size 2: the example of the BD3LM reference (1 = attend).
        let mask = AttentionMask::Bd3lmTraining { block_size: 2, seq_len: 6 };
        let expected = [
            "110000000000",
            "110000000000",
            "001100110000",
            "001100110000",
            "000011111100",
            "000011111100",
            "000000110000",
            "000000110000",
            "000000111100",
            "000000111100",
            "000000111111",
            "000000111111",
        ];
        let got: Vec<String> = grid(&mask, 12, 12, 0).iter().map(|r| r.replace('.', "0")).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn bd3lm_mask_equals_its_definition_for_several_sizes() {
        for (seq_len, block_size) in [(4, 1), (8, 2), (8, 4), (12, 3), (16, 16)] {
            let mask = AttentionMask::Bd3lmTraining { block_size, seq_len };
            let rows = grid(&mask, 2 * seq_len, 2 * seq_len, 0);
            for (i, row) in rows.iter().enumerate() {
                for (j, c) in row.chars().enumerate() {
                    let (qx0, kx0) = (i >= seq_len, j >= seq_len);
                    let (bq, bk) = ((i % seq_len) / block_size, (j % seq_len) / block_size);
                    let attend = match (qx0, kx0) {
                        (false, false) => bq == bk,
                        (false, true) => bk < bq,
                        (true, false) => false,
                        (true, true) => bk <= bq,
                    };
                    assert_eq!(c == '1', attend, "L = {seq_len}, b = {block_size}: ({i}, {j})");
                }
            }
        }
    }
}
