//! BD3LM's vectorised training mask over `x_t ⊕ x0`, a [`MaskRule`] of the backbone.

use burn::tensor::{Bool, Device, Int, Tensor};
use dlm_core::backbone::{AttentionMask, MaskRule};

use crate::error::{BlockError, ensure_size};

/// BD3LM's training mask over `x_t ⊕ x0` of length `2L` (Arriola et al. 2025, §3.3, and the
/// `block_diff_mask` of their code): with `n = L`, indices `< n` are `x_t`, `≥ n` are `x0`, and
/// `b(i)` the block of `i` within its half,
///
/// ```text
/// [ M_BD   M_OBC ]   M_BD : x_t → x_t, same block            b(j) = b(i)
/// [ 0      M_BC  ]   M_OBC: x_t → x0, earlier blocks only     b(j) < b(i)
///                    M_BC : x0 → x0, block-causal             b(j) ≤ b(i)
/// ```
///
/// `x0` never attends to `x_t`. Token `i` of both halves sits at rotary position `i` (their
/// `i mod L`), and the mask serves exactly one pass over the `2L` positions, without a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bd3lmMask {
    pub(super) block_size: usize,
    pub(super) seq_len: usize,
}

impl Bd3lmMask {
    /// The mask of sequences of `seq_len` in blocks of `block_size`.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] if `block_size` is 0 or does not divide `seq_len`.
    pub fn new(block_size: usize, seq_len: usize) -> Result<Self, BlockError> {
        ensure_size(
            block_size > 0 && seq_len > 0 && seq_len.is_multiple_of(block_size),
            "BD3LM training mask",
            "block_size",
            block_size,
            format!("a divisor of seq_len = {seq_len}"),
        )?;
        Ok(Self { block_size, seq_len })
    }

    /// The mask for [`dlm_core::backbone::DenoiserInput::with_mask`].
    pub fn attention(self) -> AttentionMask {
        AttentionMask::rule(self)
    }
}

impl MaskRule for Bd3lmMask {
    fn blocked(
        &self,
        query_offset: usize,
        n_queries: usize,
        n_keys: usize,
        device: &Device,
    ) -> Tensor<2, Bool> {
        let (b, n) = (self.block_size as i64, self.seq_len as i64);
        let q = Tensor::<1, Int>::arange(
            query_offset as i64..(query_offset + n_queries) as i64,
            device,
        )
        .reshape([n_queries, 1]);
        let k = Tensor::<1, Int>::arange(0..n_keys as i64, device).reshape([1, n_keys]);
        let q_is_x0 = q.clone().greater_equal_elem(n);
        let k_is_x0 = k.clone().greater_equal_elem(n);
        let q_block = q.remainder_scalar(n).div_scalar(b);
        let k_block = k.remainder_scalar(n).div_scalar(b);
        let same_half = q_is_x0.clone().equal(k_is_x0.clone());
        let block_diagonal = q_block.clone().equal(k_block.clone()).bool_and(same_half);
        let offset_block_causal = q_block
            .clone()
            .greater(k_block.clone())
            .bool_and(k_is_x0.clone())
            .bool_and(q_is_x0.clone().bool_not());
        let block_causal = q_block.greater_equal(k_block).bool_and(k_is_x0).bool_and(q_is_x0);
        block_diagonal.bool_or(offset_block_causal).bool_or(block_causal).bool_not()
    }

    fn positions(&self, query_offset: usize, n_queries: usize, device: &Device) -> Tensor<1, Int> {
        Tensor::<1, Int>::arange(query_offset as i64..(query_offset + n_queries) as i64, device)
            .remainder_scalar(self.seq_len as i64)
    }

    fn problem(&self, query_offset: usize, n_queries: usize) -> Option<String> {
        (query_offset != 0 || n_queries != 2 * self.seq_len).then(|| {
            format!(
                "the BD3LM training mask needs the {} positions of x_t ⊕ x0 without a cache, got \
                 {n_queries} at offset {query_offset}",
                2 * self.seq_len
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use dlm_core::backbone::{Denoiser, DenoiserConfig, DenoiserInput};
    use dlm_core::testing::randomised;

    use super::*;

    /// The mask as rows of `1` (attend) and `0` (blocked).
    fn grid(mask: Bd3lmMask) -> Vec<String> {
        let n = 2 * mask.seq_len;
        let blocked: Vec<bool> =
            mask.blocked(0, n, n, &Device::flex()).into_data().iter::<bool>().collect();
        blocked
            .chunks(n)
            .map(|row| row.iter().map(|&b| if b { '0' } else { '1' }).collect())
            .collect()
    }

    #[test]
    fn the_mask_matches_the_paper_example() {
        // n = 6, block size 2: the example of the BD3LM reference (1 = attend).
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
        assert_eq!(grid(Bd3lmMask::new(2, 6).unwrap()), expected);
    }

    #[test]
    fn the_mask_equals_its_definition_for_several_sizes() {
        for (seq_len, block_size) in [(4, 1), (8, 2), (8, 4), (12, 3), (16, 16)] {
            let rows = grid(Bd3lmMask::new(block_size, seq_len).unwrap());
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

    #[test]
    fn sizes_and_chunks_are_validated() {
        assert!(Bd3lmMask::new(3, 8).is_err());
        assert!(Bd3lmMask::new(0, 8).is_err());
        let mask = Bd3lmMask::new(4, 8).unwrap();
        assert!(mask.problem(0, 16).is_none());
        assert!(mask.problem(0, 8).is_some(), "only x_t, not x_t ⊕ x0");
        assert!(mask.problem(16, 16).is_some(), "with a cache");
        let positions = mask.positions(0, 16, &Device::flex());
        let expected: Vec<i64> = (0..16).map(|i| i % 8).collect();
        assert_eq!(positions.into_data().iter::<i64>().collect::<Vec<_>>(), expected);
    }

    fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f64 {
        (a - b).abs().max().into_scalar::<f64>()
    }

    #[test]
    fn the_vectorised_pass_equals_block_by_block_passes() {
        // x_t ⊕ x0 with the mask in one pass gives, for each x_t block, the output of that block
        // run after the clean blocks before it (block-causal), and for x0 its block-causal pass.
        let device = Device::flex();
        let model: Denoiser = randomised(
            DenoiserConfig::tokens(13, 32)
                .with_d_model(32)
                .with_n_heads(2)
                .with_n_layers(2)
                .init(&device)
                .unwrap(),
            &device,
        );
        let (seq_len, block) = (8, 2);
        let tokens =
            || Tensor::<2>::random([2, seq_len], Distribution::Uniform(0.0, 13.0), &device).int();
        let (x0, x_t) = (tokens(), tokens());
        let both = Tensor::cat(vec![x_t.clone(), x0.clone()], 1);
        let mask = Bd3lmMask::new(block, seq_len).unwrap().attention();
        let vectorised = model.forward(DenoiserInput::tokens(both).with_mask(mask)).output;

        let block_causal = AttentionMask::block_causal(block).unwrap();
        let clean =
            model.forward(DenoiserInput::tokens(x0.clone()).with_mask(block_causal.clone())).output;
        let diff = max_abs_diff(vectorised.clone().narrow(1, seq_len, seq_len), clean);
        assert!(diff < 1e-5, "x0 half: {diff}");
        for b in 0..seq_len / block {
            let noisy = x_t.clone().narrow(1, b * block, block);
            let input = match b {
                0 => noisy,
                _ => Tensor::cat(vec![x0.clone().narrow(1, 0, b * block), noisy], 1),
            };
            let out =
                model.forward(DenoiserInput::tokens(input).with_mask(block_causal.clone())).output;
            let expected = out.narrow(1, b * block, block);
            let diff = max_abs_diff(vectorised.clone().narrow(1, b * block, block), expected);
            assert!(diff < 1e-5, "x_t block {b}: {diff}");
        }
    }

    #[test]
    #[should_panic(expected = "attention mask")]
    fn the_mask_on_the_wrong_length_panics_with_a_message() {
        let device = Device::flex();
        let model =
            DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&device).unwrap();
        let tokens = Tensor::<2, Int>::zeros([1, 6], &device);
        let mask = Bd3lmMask::new(2, 4).unwrap().attention();
        model.forward(DenoiserInput::tokens(tokens).with_mask(mask));
    }
}
