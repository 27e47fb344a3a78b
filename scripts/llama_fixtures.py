#!/usr/bin/env python3
"""Reference logits for the LLaMA-family import parity tests (crates/dlm-core/tests/llama_parity.rs).

Run by hand, not by `cargo test`: it needs PyTorch and transformers, which the project does not
depend on. What it writes is committed under crates/dlm-core/tests/fixtures/llama/.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch transformers safetensors
    /tmp/torchenv/bin/python scripts/llama_fixtures.py

Measured with torch 2.9.0 and transformers 5.24.0 from PyPI.

Each checkpoint is a tiny random-initialised model of the reference classes of `transformers`,
saved in the layout of the real checkpoints of its family:

- llada: `LlamaForCausalLM` (LLaDA's blocks are LLaMA's: RMSNorm, SwiGLU, rotary, no biases),
  its tensors renamed to LLaDA's (`model.transformer.blocks.{i}.ff_proj` is the gate, the block
  `ff_out` the down projection, the model-level `ff_out` the head) and a `config.json` with
  LLaDA's field names (`d_model`, `mlp_hidden_size`, ...).
- dream: `Qwen2ForCausalLM` (q/k/v biases, grouped-query attention), `model_type: Dream`, saved as
  two safetensors shards with a `model.safetensors.index.json`.
- sdar: `Qwen3ForCausalLM` (per-head q/k RMSNorm, an explicit `head_dim` unequal to
  hidden/heads, tied embeddings as in Qwen3-0.6B), `model_type: sdar`, `block_size: 4`.

Every norm weight is perturbed away from 1 so that a norm mapped to the wrong tensor shows.
The models run in float32 with eager attention and an explicit additive 4-D mask: transformers
treats a missing mask as causal, so the full-attention cases pass a mask of zeros. Cases per
model: full attention; full attention with the last two keys of row 1 padded (blocked for every
query); and, for SDAR, block-causal attention over blocks of 4. The logits are recorded before
anything a sampler does (no shift, no SUBS).
"""

import json
import pathlib

import tokenizers
import torch
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "dlm-core" / "tests" / "fixtures" / "llama"
VOCAB, HIDDEN, FF, LAYERS, HEADS, MAX_POS = 64, 32, 48, 2, 4, 64
BATCH, LEN = 2, 8
MASK_ID = 63
# Weights drawn from N(0, 0.3²) instead of transformers' 0.02², so that the logits (and the
# tokens a generation picks) vary with the input.
INIT = 0.3


def perturb_norms(model):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))


def additive(blocked):
    """`[B, Q, K]` booleans (True = blocked) → the additive `[B, 1, Q, K]` float mask."""
    mask = torch.zeros(blocked.shape, dtype=torch.float32)
    mask[blocked] = torch.finfo(torch.float32).min
    return mask.unsqueeze(1)


def full():
    return torch.zeros(BATCH, LEN, LEN, dtype=torch.bool)


def padded():
    blocked = full()
    blocked[1, :, LEN - 2 :] = True
    return blocked


def block_causal(block):
    q = torch.arange(LEN).view(LEN, 1) // block
    k = torch.arange(LEN).view(1, LEN) // block
    return (k > q).unsqueeze(0).expand(BATCH, LEN, LEN).clone()


def cases(model, tokens, masks):
    out = []
    for name, blocked in masks:
        with torch.no_grad():
            logits = model(input_ids=tokens, attention_mask=additive(blocked)).logits
        out.append(
            {
                "name": name,
                "blocked": blocked.int().flatten().tolist(),
                "logits": [round(x, 7) for x in logits.flatten().tolist()],
            }
        )
    return out


def write_tokenizer(path):
    """A word-level tokenizer over the tiny vocabulary: `w0` … `w62`, and `<|mask|>` = 63 as a
    special token (what the command line's tests encode prompts with)."""
    vocab = {f"w{i}": i for i in range(VOCAB - 1)}
    vocab["<|mask|>"] = MASK_ID
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.decoder = tokenizers.decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(["<|mask|>"])
    tokenizer.save(str(path))


def write_fixture(name, config_json, tensors, model, masks, shards=1):
    directory = OUT / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.safetensors"):
        old.unlink()
    (directory / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    keys = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in keys}, directory / "model.safetensors")
    else:
        weight_map = {}
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = keys[s::shards]
            save_file({k: tensors[k].contiguous() for k in part}, directory / file)
            weight_map.update({k: file for k in part})
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    write_tokenizer(directory / "tokenizer.json")
    tokens = torch.randint(0, VOCAB - 1, (BATCH, LEN))
    fixture = {
        "provenance": "scripts/llama_fixtures.py, torch 2.9.0, transformers 5.24.0, float32, eager",
        "batch": BATCH,
        "len": LEN,
        "vocab": VOCAB,
        "tokens": tokens.flatten().tolist(),
        "cases": cases(model, tokens, masks),
    }
    (directory / "logits.json").write_text(json.dumps(fixture) + "\n")


def llada():
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FF, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=HEADS, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=MAX_POS, hidden_act="silu",
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        initializer_range=INIT, attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).eval()
    perturb_norms(model)
    rename = {
        "input_layernorm": "attn_norm", "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj",
        "self_attn.v_proj": "v_proj", "self_attn.o_proj": "attn_out",
        "post_attention_layernorm": "ff_norm", "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj",
        "mlp.down_proj": "ff_out",
    }
    tensors = {}
    for key, value in model.state_dict().items():
        if key == "model.embed_tokens.weight":
            new = "model.transformer.wte.weight"
        elif key == "model.norm.weight":
            new = "model.transformer.ln_f.weight"
        elif key == "lm_head.weight":
            new = "model.transformer.ff_out.weight"
        else:
            layer, rest = key.removeprefix("model.layers.").split(".", 1)
            stem, leaf = rest.rsplit(".", 1)
            new = f"model.transformer.blocks.{layer}.{rename[stem]}.{leaf}"
        tensors[new] = value
    config_json = {
        "model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": HIDDEN,
        "n_layers": LAYERS, "n_heads": HEADS, "n_kv_heads": HEADS, "mlp_hidden_size": FF,
        "vocab_size": VOCAB, "embedding_size": VOCAB, "max_sequence_length": MAX_POS,
        "rope": True, "rope_theta": 500000.0, "rope_full_precision": True, "rms_norm_eps": 1e-5,
        "layer_norm_type": "rms", "activation_type": "silu", "block_type": "llama",
        "include_bias": False, "include_qkv_bias": False, "bias_for_layer_norm": False,
        "attention_layer_norm": False, "weight_tying": False, "scale_logits": False,
        "input_emb_norm": False, "alibi": False, "mask_token_id": MASK_ID, "eos_token_id": 62,
    }
    write_fixture("llada", config_json, tensors, model, [("full", full()), ("padded", padded())])
    # An Instruct-style chat template over the tiny vocabulary (w1 opens a turn, w2 closes it,
    # w3 opens the assistant's), for the command line's `--chat`.
    template = (
        "{{ bos_token }}{% for message in messages %}w1 {{ message['content'] | trim }} w2 "
        "{% endfor %}{% if add_generation_prompt %}w3{% endif %}"
    )
    tokenizer_config = {"bos_token": "w4", "eos_token": "w62", "chat_template": template}
    (OUT / "llada" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return model


def llada_generate(model, prompt, gen_len, block_length, steps, cfg_scale=0.0):
    """LLaDA's semi-autoregressive generation with low-confidence remasking at temperature 0
    (`generate.py` of ML-GSAI/LLaDA, re-written here), with one difference: the mask token's
    logit is set to −∞ before the argmax and the softmax (SUBS's zero-masking, which this
    library's samplers apply; a trained LLaDA never predicts the mask, a random one might).

    Per block, the masks present at its start are spread over `steps / num_blocks` steps,
    ⌊n/s⌋ each and one more in the first n mod s steps; at each step every masked position of
    the block gets the argmax token and its probability, positions right of the block get −∞,
    and the `k` most confident are committed.

    With `cfg_scale > 0`, LLaDA's classifier-free guidance: the unconditional input is `x` with
    every prompt position set to the mask (`un_x[prompt_index] = mask_id`), both run as one
    batch, and `logits = un_logits + (cfg_scale + 1) * (logits - un_logits)`."""
    batch, prompt_len = prompt.shape
    x = torch.cat([prompt, torch.full((batch, gen_len), MASK_ID)], dim=1)
    num_blocks = gen_len // block_length
    steps_per_block = steps // num_blocks
    zeros = torch.zeros(batch, 1, x.shape[1], x.shape[1])
    for block in range(num_blocks):
        start = prompt_len + block * block_length
        end = start + block_length
        masked = (x[:, start:end] == MASK_ID).sum(dim=1)
        base, remainder = masked // steps_per_block, masked % steps_per_block
        for step in range(steps_per_block):
            mask_index = x == MASK_ID
            with torch.no_grad():
                if cfg_scale > 0:
                    un_x = x.clone()
                    un_x[:, :prompt_len] = MASK_ID
                    both = model(input_ids=torch.cat([x, un_x]),
                                 attention_mask=torch.cat([zeros, zeros])).logits
                    logits, un_logits = torch.chunk(both, 2, dim=0)
                    logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
                else:
                    logits = model(input_ids=x, attention_mask=zeros).logits
            logits[..., MASK_ID] = float("-inf")
            x0 = logits.argmax(dim=-1)
            p = torch.softmax(logits.double(), dim=-1)
            confidence = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
            confidence[:, end:] = float("-inf")
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, confidence, torch.tensor(float("-inf"), dtype=p.dtype))
            for row in range(batch):
                k = int(base[row] + (step < remainder[row]))
                chosen = torch.topk(confidence[row], k).indices
                x[row, chosen] = x0[row, chosen]
    return x


def llada_generations(model):
    prompt = torch.randint(0, VOCAB - 1, (BATCH, 4))
    runs = []
    settings = [(8, 4, 4, 0.0), (8, 8, 8, 0.0), (12, 4, 6, 0.0), (8, 4, 4, 0.5), (12, 4, 6, 2.0)]
    for gen_len, block_length, steps, cfg_scale in settings:
        tokens = llada_generate(model, prompt, gen_len, block_length, steps, cfg_scale)
        runs.append(
            {"gen_len": gen_len, "block_length": block_length, "steps": steps,
             "cfg_scale": cfg_scale, "tokens": tokens.flatten().tolist()}
        )
    fixture = {
        "provenance": "scripts/llama_fixtures.py llada_generate, torch 2.9.0, transformers 5.24.0",
        "batch": BATCH, "mask_id": MASK_ID, "prompt": prompt.flatten().tolist(), "runs": runs,
    }
    (OUT / "llada" / "generation.json").write_text(json.dumps(fixture) + "\n")


def dream():
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FF, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
        max_position_embeddings=MAX_POS, tie_word_embeddings=False, use_sliding_window=False,
        initializer_range=INIT, attn_implementation="eager",
    )
    model = Qwen2ForCausalLM(config).eval()
    perturb_norms(model)
    with torch.no_grad():  # transformers initialises biases at 0; make them count
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
    config_json = {
        "model_type": "Dream", "architectures": ["DreamModel"], "hidden_size": HIDDEN,
        "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "vocab_size": VOCAB, "max_position_embeddings": MAX_POS,
        "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_scaling": None,
        "tie_word_embeddings": False, "use_sliding_window": False, "hidden_act": "silu",
        "mask_token_id": MASK_ID, "pad_token_id": 62, "eos_token_id": 62,
    }
    tensors = dict(model.state_dict())
    write_fixture("dream", config_json, tensors, model, [("full", full()), ("padded", padded())], 2)


def sdar():
    head_dim = 16
    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FF, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=2, head_dim=head_dim, rms_norm_eps=1e-6,
        rope_theta=1e6, max_position_embeddings=MAX_POS, tie_word_embeddings=True,
        attention_bias=False, use_sliding_window=False, initializer_range=INIT,
        attn_implementation="eager",
    )
    model = Qwen3ForCausalLM(config).eval()
    perturb_norms(model)
    config_json = {
        "model_type": "sdar", "architectures": ["SDARForCausalLM"], "hidden_size": HIDDEN,
        "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "head_dim": head_dim, "vocab_size": VOCAB,
        "max_position_embeddings": MAX_POS, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"},
        "tie_word_embeddings": True, "attention_bias": False, "use_sliding_window": False,
        "hidden_act": "silu", "block_size": 4, "eos_token_id": [62, 61],
    }
    # Tied: the head is the embedding, stored once (as transformers saves it).
    tensors = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    masks = [("full", full()), ("padded", padded()), ("block_causal", block_causal(4))]
    write_fixture("sdar", config_json, tensors, model, masks)


if __name__ == "__main__":
    torch.manual_seed(0)
    llada_generations(llada())
    dream()
    sdar()
    print(f"wrote {OUT}")
