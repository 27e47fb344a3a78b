//! Host ↔ tensor conversions, written once: the samplers and objectives draw their randomness on
//! the host (one seeded generator, reproducible on every backend) and read token ids back there.
//! Floats go to the device as `f32`, the precision of every float tensor of this library; ids
//! travel as `i64`, burn's integer element.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A `[n]` float tensor of `values` (rounded to `f32`).
pub fn floats(values: &[f64], device: &Device) -> Tensor<1> {
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// A `[rows, cols]` integer tensor of the row-major `values`.
///
/// # Panics
/// If `values.len() != rows · cols` (a caller's bug: every caller sizes `values` from the shape).
pub fn ints(values: Vec<i64>, [rows, cols]: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// The values of an integer tensor, row-major.
pub fn int_values<const D: usize>(tensor: Tensor<D, Int>) -> Vec<i64> {
    tensor.into_data().iter::<i64>().collect()
}

/// The token ids of `[batch, seq_len]` sequences, one `Vec` per sequence (to decode, print or
/// score samples). Ids are non-negative by construction (they index the vocabulary).
///
/// # Shapes
/// - `tokens`: `[batch, seq_len]`
pub fn token_rows(tokens: Tensor<2, Int>) -> Vec<Vec<u32>> {
    let [_, seq_len] = tokens.dims();
    let values: Vec<u32> = int_values(tokens).into_iter().map(|t| t as u32).collect();
    if seq_len == 0 {
        return Vec::new();
    }
    values.chunks(seq_len).map(<[u32]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keep_values_and_row_order() {
        let device = Device::flex();
        let t = ints(vec![1, 2, 3, 4, 5, 6], [2, 3], &device);
        assert_eq!(t.dims(), [2, 3]);
        assert_eq!(int_values(t.clone()), [1, 2, 3, 4, 5, 6]);
        assert_eq!(token_rows(t), [vec![1, 2, 3], vec![4, 5, 6]]);
        let f = floats(&[0.25, -1.5], &device);
        assert_eq!(f.into_data().iter::<f32>().collect::<Vec<_>>(), [0.25, -1.5]);
        assert!(token_rows(ints(vec![], [2, 0], &device)).is_empty());
    }
}
