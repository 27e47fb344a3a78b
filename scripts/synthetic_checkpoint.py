#!/usr/bin/env python3
"""Writes a synthetic LLaMA-family checkpoint of about 1 B parameters (random bf16 weights,
Qwen3 layout, `model_type: a2d-qwen3`) for the load-memory measurement of
`examples/load_memory.rs`. Run by hand:

    /path/to/venv/bin/python scripts/synthetic_checkpoint.py /tmp/synthetic-1b [--dtype bfloat16|float32]

Only the shapes matter; the values are N(0, 0.02²).
"""

import argparse
import json
import pathlib

import torch
from safetensors.torch import save_file

HIDDEN, FF, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 2048, 5632, 18, 16, 8, 128, 32000

parser = argparse.ArgumentParser()
parser.add_argument("out", type=pathlib.Path)
parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
args = parser.parse_args()
dtype = getattr(torch, args.dtype)
args.out.mkdir(parents=True, exist_ok=True)
config = {
    "model_type": "a2d-qwen3", "hidden_size": HIDDEN, "intermediate_size": FF,
    "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM, "vocab_size": VOCAB, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": False,
    "attention_bias": False, "mask_token_id": VOCAB - 1, "torch_dtype": args.dtype,
}
(args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def tensor(*shape):
    return (torch.randn(*shape, dtype=torch.float32) * 0.02).to(dtype)


tensors = {"model.embed_tokens.weight": tensor(VOCAB, HIDDEN), "model.norm.weight": tensor(HIDDEN),
           "lm_head.weight": tensor(VOCAB, HIDDEN)}
for i in range(LAYERS):
    p = f"model.layers.{i}."
    tensors.update({
        p + "input_layernorm.weight": tensor(HIDDEN),
        p + "self_attn.q_proj.weight": tensor(HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.k_proj.weight": tensor(KV_HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.v_proj.weight": tensor(KV_HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.o_proj.weight": tensor(HIDDEN, HEADS * HEAD_DIM),
        p + "self_attn.q_norm.weight": tensor(HEAD_DIM),
        p + "self_attn.k_norm.weight": tensor(HEAD_DIM),
        p + "post_attention_layernorm.weight": tensor(HIDDEN),
        p + "mlp.gate_proj.weight": tensor(FF, HIDDEN),
        p + "mlp.up_proj.weight": tensor(FF, HIDDEN),
        p + "mlp.down_proj.weight": tensor(HIDDEN, FF),
    })
params = sum(t.numel() for t in tensors.values())
save_file(tensors, args.out / "model.safetensors")
print(f"{params / 1e9:.3f} B parameters, {args.dtype}, written to {args.out}")
