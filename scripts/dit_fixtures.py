#!/usr/bin/env python3
"""Reference logits for the MDLM / BD3LM checkpoint import (crates/dlm-core/tests/dit_parity.rs).

Their DiT is not in `transformers`: its forward is written here from the reference repository's
model file, kuleshov-group/mdlm `models/dit.py` (commit 06dd29f), each step citing what it
mirrors, in plain PyTorch (no flash-attn: its non-causal attention is softmax(q·kᵀ/√d)·v, and
`apply_rotary_emb_qkv_` is the non-interleaved rotate-half rotation of q and k). The Hugging Face
remote code of MDLM-OWT / BD3LM-OWT (`bd3lms/models/hf/modeling_bd3lm.py`) runs the same backbone
under the tensor prefix `backbone.` with σ zeroed when `time_conditioning` is false.

Run by hand (torch 2.9.0 from PyPI):

    /path/to/venv/bin/python scripts/dit_fixtures.py

Tiny random configurations, every weight (the zero-initialised adaLN and output layers too)
drawn from N(0, 0.3²) and every norm weight from 1 + N(0, 0.1²), so that a tensor mapped to the
wrong place shows. `mdlm`: full attention; `bd3lm`: block-causal over blocks of 4 (its sampling
forward on clean blocks). Writes crates/dlm-core/tests/fixtures/dit/{mdlm,bd3lm}/.
"""

import json
import math
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates" / "dlm-core" / "tests" / "fixtures" / "dit"
VOCAB, LENGTH, HIDDEN, COND, BLOCKS, HEADS, FREQS = 33, 16, 32, 16, 2, 4, 256
BATCH = 2


def weights():
    """The checkpoint's tensors, by their names in the HF checkpoints."""
    w = {}

    def normal(*shape):
        return torch.randn(*shape) * 0.3

    def norm(dim):
        return 1.0 + 0.1 * torch.randn(dim)

    w["backbone.vocab_embed.embedding"] = normal(VOCAB, HIDDEN)  # EmbeddingLayer.embedding
    w["backbone.sigma_map.mlp.0.weight"] = normal(COND, FREQS)  # TimestepEmbedder.mlp[0]
    w["backbone.sigma_map.mlp.0.bias"] = normal(COND)
    w["backbone.sigma_map.mlp.2.weight"] = normal(COND, COND)  # TimestepEmbedder.mlp[2]
    w["backbone.sigma_map.mlp.2.bias"] = normal(COND)
    head_dim = HIDDEN // HEADS
    # Rotary.__init__: inv_freq = 1 / base^(arange(0, dim, 2) / dim), a persistent buffer.
    w["backbone.rotary_emb.inv_freq"] = 1.0 / (10_000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    for i in range(BLOCKS):
        p = f"backbone.blocks.{i}."
        w[p + "norm1.weight"] = norm(HIDDEN)  # DDiTBlock.norm1 (LayerNorm without bias)
        w[p + "attn_qkv.weight"] = normal(3 * HIDDEN, HIDDEN)  # bias=False
        w[p + "attn_out.weight"] = normal(HIDDEN, HIDDEN)  # bias=False
        w[p + "norm2.weight"] = norm(HIDDEN)
        w[p + "mlp.0.weight"] = normal(4 * HIDDEN, HIDDEN)  # mlp_ratio = 4, bias=True
        w[p + "mlp.0.bias"] = normal(4 * HIDDEN)
        w[p + "mlp.2.weight"] = normal(HIDDEN, 4 * HIDDEN)
        w[p + "mlp.2.bias"] = normal(HIDDEN)
        w[p + "adaLN_modulation.weight"] = normal(6 * HIDDEN, COND)
        w[p + "adaLN_modulation.bias"] = normal(6 * HIDDEN)
    w["backbone.output_layer.norm_final.weight"] = norm(HIDDEN)  # DDitFinalLayer.norm_final
    w["backbone.output_layer.adaLN_modulation.weight"] = normal(2 * HIDDEN, COND)
    w["backbone.output_layer.adaLN_modulation.bias"] = normal(2 * HIDDEN)
    w["backbone.output_layer.linear.weight"] = normal(VOCAB, HIDDEN)
    w["backbone.output_layer.linear.bias"] = normal(VOCAB)
    return w


def layer_norm(x, weight):
    # LayerNorm.forward: F.layer_norm(x.float(), [dim]) then × weight (no bias).
    return F.layer_norm(x.float(), [x.shape[-1]]) * weight[None, None, :]


def modulate(x, shift, scale):
    # modulate: x * (1 + scale) + shift, broadcast over positions.
    return x * (1 + scale) + shift


def timestep_embedding(sigma, dim=FREQS, max_period=10000):
    # TimestepEmbedder.timestep_embedding: half = dim // 2, freqs = exp(−ln(max_period)·j/half),
    # embedding = [cos(σ·f), sin(σ·f)].
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = sigma[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rotate_half(x):
    # rotate_half: (x1, x2) → (−x2, x1) on the two halves of the head.
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def forward(w, tokens, blocked):
    """DIT.forward(indices, sigma) with σ = 0 (time_conditioning false), eval mode."""
    batch, length = tokens.shape
    head_dim = HIDDEN // HEADS
    x = w["backbone.vocab_embed.embedding"][tokens]  # EmbeddingLayer.forward
    sigma = torch.zeros(batch)
    t = timestep_embedding(sigma)
    t = F.linear(t, w["backbone.sigma_map.mlp.0.weight"], w["backbone.sigma_map.mlp.0.bias"])
    t = F.linear(F.silu(t), w["backbone.sigma_map.mlp.2.weight"], w["backbone.sigma_map.mlp.2.bias"])
    c = F.silu(t)  # DIT.forward: c = F.silu(self.sigma_map(sigma))
    # Rotary.forward: angles t·inv_freq for positions 0..L−1, emb = cat(freqs, freqs).
    freqs = torch.einsum("i,j->ij", torch.arange(length).float(), w["backbone.rotary_emb.inv_freq"])
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    for i in range(BLOCKS):
        p = f"backbone.blocks.{i}."
        # DDiTBlock.forward: the six modulations, in this order.
        mod = F.linear(c, w[p + "adaLN_modulation.weight"], w[p + "adaLN_modulation.bias"])[:, None]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=2)
        x_skip = x
        h = modulate(layer_norm(x, w[p + "norm1.weight"]), shift_msa, scale_msa)
        qkv = F.linear(h, w[p + "attn_qkv.weight"]).view(batch, length, 3, HEADS, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # 'b s (three h d) -> b s three h d'
        q = q * cos + rotate_half(q) * sin  # v is not rotated (its cos = 1, sin = 0)
        k = k * cos + rotate_half(k) * sin
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [b, h, s, d]
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        scores = scores.masked_fill(blocked[:, None], float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, HIDDEN)
        # bias_dropout_add_scale (eval): residual + gate · out.
        x = x_skip + gate_msa * F.linear(attended, w[p + "attn_out.weight"])
        h = modulate(layer_norm(x, w[p + "norm2.weight"]), shift_mlp, scale_mlp)
        h = F.linear(h, w[p + "mlp.0.weight"], w[p + "mlp.0.bias"])
        h = F.gelu(h, approximate="tanh")  # nn.GELU(approximate='tanh')
        h = F.linear(h, w[p + "mlp.2.weight"], w[p + "mlp.2.bias"])
        x = x + gate_mlp * h
    # DDitFinalLayer.forward: shift, scale = chunk₂(adaLN(c)); linear(modulate(norm_final(x))).
    mod = F.linear(c, w["backbone.output_layer.adaLN_modulation.weight"],
                   w["backbone.output_layer.adaLN_modulation.bias"])[:, None]
    shift, scale = mod.chunk(2, dim=2)
    x = modulate(layer_norm(x, w["backbone.output_layer.norm_final.weight"]), shift, scale)
    return F.linear(x, w["backbone.output_layer.linear.weight"], w["backbone.output_layer.linear.bias"])


def write(name, model_type, block_size):
    directory = OUT / name
    directory.mkdir(parents=True, exist_ok=True)
    w = weights()
    save_file({k: v.contiguous() for k, v in w.items()}, directory / "model.safetensors")
    config = {
        "model_type": model_type, "vocab_size": VOCAB, "model_length": LENGTH,
        "hidden_dim": HIDDEN, "cond_dim": COND, "n_blocks": BLOCKS, "n_heads": HEADS,
        "dropout": 0.1, "time_conditioning": False,
    }
    if block_size:
        config["block_size"] = block_size
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokens = torch.randint(0, VOCAB, (BATCH, LENGTH))
    if block_size:
        q = torch.arange(LENGTH)[:, None] // block_size
        k = torch.arange(LENGTH)[None, :] // block_size
        blocked = (k > q)[None].expand(BATCH, LENGTH, LENGTH)
    else:
        blocked = torch.zeros(BATCH, LENGTH, LENGTH, dtype=torch.bool)
    with torch.no_grad():
        logits = forward(w, tokens, blocked)
    fixture = {
        "provenance": "scripts/dit_fixtures.py (mirrors kuleshov-group/mdlm models/dit.py @ 06dd29f), torch 2.9.0, float32",
        "batch": BATCH, "len": LENGTH, "vocab": VOCAB, "block_size": block_size,
        "tokens": tokens.flatten().tolist(),
        "logits": [round(x, 6) for x in logits.flatten().tolist()],
    }
    (directory / "logits.json").write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    torch.manual_seed(0)
    write("mdlm", "mdlm", None)
    write("bd3lm", "bd3lm", 4)
    print(f"wrote {OUT}")
