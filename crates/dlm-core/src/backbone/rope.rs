//! Rotary position embeddings at arbitrary position ids.

use burn::tensor::{Int, Tensor};

/// The `cos`/`sin` tables of rotary position embeddings (RoPE; Su et al. 2021, RoFormer,
/// §3.4.2) for given position ids: `θ_i = base^{−2i/d_head}`, angle `p·θ_i` for position `p`.
///
/// Positions are explicit, not `0..L`, because BD3LM's vectorised input `x_t ⊕ x0` gives token
/// `i` of both halves position `i`, and a chunk run against a KV cache starts at the cache length.
/// The tables are computed per forward pass (`L·d_head/2` angles), so there is no maximum length.
#[derive(Debug, Clone)]
pub struct RotaryTables {
    /// `cos(p·θ_i)`, shape `[1, 1, L, d_head/2]` (or `[batch, 1, L, d_head/2]`, positions per
    /// sequence).
    cos: Tensor<4>,
    /// `sin(p·θ_i)`, the shape of `cos`.
    sin: Tensor<4>,
}

impl RotaryTables {
    /// Tables for `positions` and heads of size `head_dim` (even).
    ///
    /// # Shapes
    /// - `positions`: `[L]`
    pub fn new(positions: Tensor<1, Int>, head_dim: usize, base: f64) -> Self {
        let device = positions.device();
        let half = head_dim / 2;
        let inv_freq = Tensor::<1, Int>::arange(0..half as i64, &device)
            .float()
            .mul_scalar(-2.0 * base.ln() / head_dim as f64)
            .exp();
        Self::from_inverse_frequencies(positions, inv_freq)
    }

    /// Tables for `positions` and the given frequencies `θ_i` (one per rotated pair; a
    /// frequency of 0 leaves its pair unrotated, as partial rotary embeddings do).
    ///
    /// # Shapes
    /// - `positions`: `[L]`; `inv_freq`: `[d_head/2]`
    pub fn from_inverse_frequencies(positions: Tensor<1, Int>, inv_freq: Tensor<1>) -> Self {
        let [half] = inv_freq.dims();
        let len = positions.dims()[0];
        let angles = positions.float().reshape([len, 1]) * inv_freq.reshape([1, half]);
        let to_4d = |t: Tensor<2>| t.reshape([1, 1, len, half]);
        Self { cos: to_4d(angles.clone().cos()), sin: to_4d(angles.sin()) }
    }

    /// The tables at chosen rows of `self`'s positions, a different choice per sequence: what the
    /// queries of a few recomputed rows need (a feature cache's partial pass).
    ///
    /// # Shapes
    /// - `self`: tables of `L` positions; `rows`: `[batch, m]` in `0..L` → tables of shape
    ///   `[batch, 1, m, d_head/2]`, for heads `[batch, n_heads, m, d_head]`
    pub(crate) fn rows(&self, rows: Tensor<2, Int>) -> Self {
        let [batch, m] = rows.dims();
        let [_, _, len, half] = self.cos.dims();
        let flat = rows.reshape([batch * m]);
        let pick = |table: &Tensor<4>| {
            table.clone().reshape([len, half]).select(0, flat.clone()).reshape([batch, 1, m, half])
        };
        Self { cos: pick(&self.cos), sin: pick(&self.sin) }
    }

    /// Rotates each head vector, pairing dimension `i` with `i + d_head/2` ("rotate half"):
    /// `[x₁, x₂] ↦ [x₁·cos − x₂·sin, x₂·cos + x₁·sin]`.
    ///
    /// # Shapes
    /// - `x`: `[batch, n_heads, L, d_head]` → same
    pub fn rotate(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, _, head_dim] = x.dims();
        let half = head_dim / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let first = x1.clone() * self.cos.clone() - x2.clone() * self.sin.clone();
        let second = x2 * self.cos.clone() + x1 * self.sin.clone();
        Tensor::cat(vec![first, second], 3)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    #[test]
    fn scores_depend_only_on_relative_position() {
        // ⟨R_p q, R_k k⟩ = ⟨R_{p+s} q, R_{k+s} k⟩: the defining property of RoPE.
        let device = Device::flex();
        let q = Tensor::<4>::random([1, 1, 1, 8], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([1, 1, 1, 8], Distribution::Normal(0.0, 1.0), &device);
        let score = |p: i64, j: i64| {
            let at = |pos: i64| RotaryTables::new(Tensor::from_ints([pos], &device), 8, 10_000.0);
            (at(p).rotate(q.clone()) * at(j).rotate(k.clone())).sum().into_scalar::<f64>()
        };
        assert!((score(3, 1) - score(10, 8)).abs() < 1e-4);
        assert!((score(3, 1) - score(1, 3)).abs() > 1e-3, "not symmetric in general");
        // Position 0 is the identity, and rotations keep the norm.
        let at0 = RotaryTables::new(Tensor::from_ints([0], &device), 8, 10_000.0);
        assert!((at0.rotate(q.clone()) - q.clone()).abs().max().into_scalar::<f64>() < 1e-7);
        let at5 = RotaryTables::new(Tensor::from_ints([5], &device), 8, 10_000.0);
        let norm = |x: Tensor<4>| x.powi_scalar(2).sum().into_scalar::<f64>();
        assert!((norm(at5.rotate(q.clone())) - norm(q)).abs() < 1e-4);
    }
}
