//! One pre-norm transformer block with optional adaLN-zero time conditioning.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{gelu, gelu_approximate, silu};
use burn::tensor::{Bool, Device, Tensor};

use super::attention::{SelfAttention, SelfAttentionConfig, attend};
use super::feature_cache::{LayerParts, LayerWidths};
use super::kv_cache::LayerKv;
use super::rope::RotaryTables;

/// Configuration of [`Block`].
#[derive(Config, Debug)]
pub(crate) struct BlockConfig {
    pub(crate) d_model: usize,
    pub(crate) n_heads: usize,
    pub(crate) d_ff: usize,
    pub(crate) dropout: f64,
    /// Size of the conditioning vector; `None` for a model without time conditioning.
    pub(crate) cond_dim: Option<usize>,
    #[config(default = false)]
    pub(crate) gelu_tanh: bool,
}

impl BlockConfig {
    pub(crate) fn init(&self, device: &Device) -> Block {
        let norm = || LayerNormConfig::new(self.d_model).init(device);
        Block {
            attention_norm: norm(),
            attention: SelfAttentionConfig::new(self.d_model, self.n_heads).init(device),
            mlp_norm: norm(),
            mlp_in: LinearConfig::new(self.d_model, self.d_ff).init(device),
            mlp_out: LinearConfig::new(self.d_ff, self.d_model).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            modulation: self
                .cond_dim
                .map(|cond_dim| zero_linear(cond_dim, 6 * self.d_model, device)),
            gelu_tanh: self.gelu_tanh,
        }
    }
}

/// A linear layer initialised to zero (adaLN-zero, Peebles & Xie 2023, §3.2).
pub(crate) fn zero_linear(d_input: usize, d_output: usize, device: &Device) -> Linear {
    LinearConfig::new(d_input, d_output).with_initializer(Initializer::Zeros).init(device)
}

/// `x·(1 + scale) + shift`, with per-sequence `shift`, `scale` of shape `[batch, d_model]`.
pub(crate) fn modulate(x: Tensor<3>, shift: Tensor<2>, scale: Tensor<2>) -> Tensor<3> {
    x * scale.unsqueeze_dim::<3>(1).add_scalar(1.0) + shift.unsqueeze_dim::<3>(1)
}

/// Pre-norm transformer block (Xiong et al. 2020): `x + Attn(LN(x))`, then `x + MLP(LN(x))`
/// with a GELU MLP. With conditioning `c` it is DiT's adaLN-zero block (Peebles & Xie 2023,
/// §3.2): `(shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = W·SiLU(c)` with `W` initialised to
/// zero, `x + gate₁·Attn(modulate(LN(x)))`, `x + gate₂·MLP(modulate(LN(x)))`, so every block
/// starts as the identity.
#[derive(Module, Debug)]
pub(crate) struct Block {
    attention_norm: LayerNorm,
    attention: SelfAttention,
    mlp_norm: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
    dropout: Dropout,
    modulation: Option<Linear>,
    gelu_tanh: bool,
}

impl Block {
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`
    /// - `cond`: `[batch, cond_dim]` (required iff the block is conditioned)
    /// - `blocked`: `[batch, n, cached + n]`
    /// - returns `[batch, n, d_model]` and the layer's keys/values
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        cond: Option<&Tensor<2>>,
        rotary: &RotaryTables,
        blocked: Option<Tensor<3, Bool>>,
        cache: Option<&LayerKv>,
    ) -> (Tensor<3>, LayerKv) {
        let c = self.conditioning(cond);
        let (q, key, value) = self.project(self.attention_input(x.clone(), &c), rotary);
        let (context, kv) = attend(q, key, value, blocked, cache);
        let y = x + self.attention_output(context, &c);
        let z = y.clone() + self.feed_forward(y, &c);
        (z, kv)
    }
}

/// adaLN-zero's `(shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = W·SiLU(c)`, each
/// `[batch, d_model]`; `None` for a block without conditioning.
pub(crate) type Modulation = Option<[Tensor<2>; 6]>;

impl LayerParts for Block {
    type Conditioning = Modulation;

    /// # Panics
    /// If a conditioned block gets no conditioning vector.
    fn conditioning(&self, cond: Option<&Tensor<2>>) -> Modulation {
        match (&self.modulation, cond) {
            (Some(modulation), Some(cond)) => {
                let m: Vec<Tensor<2>> = modulation.forward(silu(cond.clone())).chunk(6, 1);
                Some(m.try_into().expect("six chunks"))
            }
            (None, _) => None,
            (Some(_), None) => panic!("a time-conditioned block needs the conditioning vector"),
        }
    }

    fn attention_input(&self, x: Tensor<3>, m: &Modulation) -> Tensor<3> {
        let h = self.attention_norm.forward(x);
        match m {
            Some(m) => modulate(h, m[0].clone(), m[1].clone()),
            None => h,
        }
    }

    fn project(&self, h: Tensor<3>, rotary: &RotaryTables) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        self.attention.project(h, rotary)
    }

    fn values(&self, h: Tensor<3>) -> Tensor<4> {
        self.attention.values(h)
    }

    fn attention_output(&self, context: Tensor<4>, m: &Modulation) -> Tensor<3> {
        let attended = self.attention.output(context);
        self.dropout.forward(match m {
            Some(m) => gate(&m[2], attended),
            None => attended,
        })
    }

    fn feed_forward(&self, y: Tensor<3>, m: &Modulation) -> Tensor<3> {
        let h = self.mlp_norm.forward(y);
        let h = match m {
            Some(m) => modulate(h, m[3].clone(), m[4].clone()),
            None => h,
        };
        let h = self.mlp_in.forward(h);
        let h = if self.gelu_tanh { gelu_approximate(h) } else { gelu(h) };
        let out = self.mlp_out.forward(h);
        self.dropout.forward(match m {
            Some(m) => gate(&m[5], out),
            None => out,
        })
    }

    fn widths(&self) -> LayerWidths {
        let [d_model, d_ff] = self.mlp_in.weight.dims();
        LayerWidths {
            model: d_model,
            query: d_model,
            key_value: d_model,
            feed_forward_macs: 2 * d_model * d_ff,
        }
    }
}

/// adaLN-zero's gate, `g ⊙ h` with a per-sequence `g` of shape `[batch, d_model]`.
fn gate(g: &Tensor<2>, h: Tensor<3>) -> Tensor<3> {
    g.clone().unsqueeze_dim::<3>(1) * h
}
