#!/usr/bin/env python3
"""Writes a synthetic LLaMA-family checkpoint (random weights, Qwen3 layout) with a word-level
`tokenizer.json`, for measurements that need a realistically sized model but not a trained one:
the load-memory measurement (`examples/load_memory.rs`, about 1 B parameters by default) and the
speed of `dlm generate` (docs/benchmarks.md). Run by hand:

    python scripts/synthetic_checkpoint.py /tmp/synthetic-1b                    # 0.98 B, bf16
    python scripts/synthetic_checkpoint.py /tmp/tiny-sdar --model-type sdar \\
        --hidden 256 --layers 4 --ff 768 --heads 4 --kv-heads 2 --head-dim 64 --vocab 4096 --dtype float32

`--model-type a2d-qwen3` is full attention (as Tiny-A2D), `sdar` block-causal with blocks of 4.
The values are N(0, 0.02²); only the shapes matter.
"""

import argparse
import json
import pathlib

import tokenizers
import torch
from safetensors.torch import save_file

parser = argparse.ArgumentParser()
parser.add_argument("out", type=pathlib.Path)
parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
parser.add_argument("--model-type", default="a2d-qwen3", choices=["a2d-qwen3", "sdar"])
parser.add_argument("--hidden", type=int, default=2048)
parser.add_argument("--ff", type=int, default=5632)
parser.add_argument("--layers", type=int, default=18)
parser.add_argument("--heads", type=int, default=16)
parser.add_argument("--kv-heads", type=int, default=8)
parser.add_argument("--head-dim", type=int, default=128)
parser.add_argument("--vocab", type=int, default=32000)
args = parser.parse_args()
dtype = getattr(torch, args.dtype)
args.out.mkdir(parents=True, exist_ok=True)
mask_id = args.vocab - 1
config = {
    "model_type": args.model_type, "hidden_size": args.hidden, "intermediate_size": args.ff,
    "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
    "num_key_value_heads": args.kv_heads, "head_dim": args.head_dim, "vocab_size": args.vocab,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
    "tie_word_embeddings": False, "attention_bias": False, "mask_token_id": mask_id,
    "torch_dtype": args.dtype,
}
if args.model_type == "sdar":
    config["block_size"] = 4
(args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

vocab = {f"w{i}": i for i in range(args.vocab - 1)}
vocab["<|mask|>"] = mask_id
tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
tokenizer.decoder = tokenizers.decoders.WordPiece(prefix="##")
tokenizer.add_special_tokens(["<|mask|>"])
tokenizer.save(str(args.out / "tokenizer.json"))


def tensor(*shape):
    return (torch.randn(*shape, dtype=torch.float32) * 0.02).to(dtype)


h, q, kv = args.hidden, args.heads * args.head_dim, args.kv_heads * args.head_dim
tensors = {"model.embed_tokens.weight": tensor(args.vocab, h), "model.norm.weight": tensor(h),
           "lm_head.weight": tensor(args.vocab, h)}
for i in range(args.layers):
    p = f"model.layers.{i}."
    tensors.update({
        p + "input_layernorm.weight": tensor(h),
        p + "self_attn.q_proj.weight": tensor(q, h),
        p + "self_attn.k_proj.weight": tensor(kv, h),
        p + "self_attn.v_proj.weight": tensor(kv, h),
        p + "self_attn.o_proj.weight": tensor(h, q),
        p + "self_attn.q_norm.weight": tensor(args.head_dim),
        p + "self_attn.k_norm.weight": tensor(args.head_dim),
        p + "post_attention_layernorm.weight": tensor(h),
        p + "mlp.gate_proj.weight": tensor(args.ff, h),
        p + "mlp.up_proj.weight": tensor(args.ff, h),
        p + "mlp.down_proj.weight": tensor(h, args.ff),
    })
params = sum(t.numel() for t in tensors.values())
save_file(tensors, args.out / "model.safetensors")
print(f"{params / 1e9:.3f} B parameters, {args.dtype}, {args.model_type}, written to {args.out}")
