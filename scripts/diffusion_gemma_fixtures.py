#!/usr/bin/env python3
"""Reference outputs for the DiffusionGemma parity tests (tests/diffusion_gemma_parity.rs).

Run by hand, not by `cargo test`: it needs PyTorch and transformers, which the project does not
depend on. What it writes is committed under crates/dlm-core/tests/fixtures/diffusion_gemma/.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.9.0 transformers==5.24.0 safetensors
    /tmp/torchenv/bin/python scripts/diffusion_gemma_fixtures.py

Measured with torch 2.9.0 and transformers 5.24.0 from PyPI.

One tiny random-initialised `DiffusionGemmaForBlockDiffusion` (the reference class of
`transformers/models/diffusion_gemma/`), saved with `save_pretrained` in two safetensors shards,
as the released checkpoint is: sliding and global attention layers with their own head sizes,
key-value head counts and rotary settings (the global layers' "proportional" RoPE rotating a
quarter of the head), the mixture of experts beside the dense MLP, self-conditioning, the final
soft-cap. Every norm weight, the router scales and the per-layer scalars are perturbed away from
their initial 1 (the encoder's and the decoder's layer scalars differently: they are not tied),
so that a tensor mapped to the wrong place shows. float32, eager attention. A word-level
tokenizer and a chat template over the tiny vocabulary go beside it, for the command line.

What is recorded (`reference.json`):

- `encoder`: the encoder's last hidden state (after its final norm) for a prompt of two rows.
- `decoder`: decoder logits (soft-capped) for a canvas read against the prompt's cache, without
  self-conditioning (the first denoising step) and with the previous step's tempered logits as
  the self-conditioning signal.
- `next_canvas`: the first canvas encoded into the cache (the sliding layers keep only the last
  `sliding_window - 1` keys), then decoder logits for a second canvas.
- `generations`: `model.generate` traced with the noise it drew. `torch.randint` (the canvas
  initialisation and every renoising) is recorded as drawn; `torch.multinomial` is replaced by
  an inverse-CDF draw from recorded uniforms (an exact categorical sampler: the first index
  whose cumulative probability reaches `u`), so that a reimplementation fed the same uniforms
  draws the same tokens. Per step: the temperature, the accepted positions, the argmax canvas
  and whether each row stopped; per run: the sequences and tokens per forward pass.
"""

import json
import pathlib

import tokenizers
import torch
from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion
from transformers.models.diffusion_gemma import generation_diffusion_gemma as generation

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "dlm-core" / "tests" / "fixtures" / "diffusion_gemma"
VOCAB, HIDDEN, CANVAS, WINDOW = 64, 16, 4, 4
EOS = 1
PROMPT = [[2, 17, 33, 9, 41, 5, 28], [2, 50, 12, 61, 7, 30, 44]]


def build():
    torch.manual_seed(0)
    text = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=24,
        num_hidden_layers=3,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        num_global_key_value_heads=1,
        head_dim=8,
        global_head_dim=16,
        sliding_window=WINDOW,
        max_position_embeddings=128,
        num_experts=4,
        top_k_experts=2,
        moe_intermediate_size=8,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {
                "rope_type": "proportional",
                "partial_rotary_factor": 0.25,
                "rope_theta": 1_000_000.0,
            },
        },
        use_bidirectional_attention="vision",
        pad_token_id=0,
        eos_token_id=EOS,
        bos_token_id=2,
    )
    vision = dict(
        model_type="gemma4_vision",
        hidden_size=8,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=4,
        patch_size=4,
        position_embedding_size=16,
    )
    config = DiffusionGemmaConfig(
        text_config=text,
        vision_config=vision,
        canvas_length=CANVAS,
        image_token_id=60,
        boi_token_id=58,
        eoi_token_id=59,
        eos_token_id=EOS,
    )
    config._attn_implementation = "eager"
    model = DiffusionGemmaForBlockDiffusion(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "embed_tokens" in name:
                param.normal_(0.0, 1.0)  # peaked enough that entropies spread out
            elif "norm" in name or name.endswith(".scale") or "per_expert_scale" in name:
                param.add_(0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.3)
        for name, buffer in model.named_buffers():
            if name.endswith("layer_scalar"):
                buffer.copy_(1.0 + 0.2 * torch.randn_like(buffer))
    return model


def rows(t):
    return t.detach().to(torch.float32).tolist()


def forward_cases(model):
    from transformers import DynamicCache

    prompt = torch.tensor(PROMPT)
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    encoded = model.model.encoder(input_ids=prompt, cache=cache)
    canvas = torch.tensor([[3, 40, 22, 11], [63, 8, 19, 47]])
    first = model(cache=cache, decoder_input_ids=canvas).logits
    tempered = first / 0.8
    second = model(cache=cache, decoder_input_ids=canvas, self_conditioning_logits=tempered).logits
    # The first canvas joins the cache; a second canvas is read against it.
    model.model.encoder(input_ids=canvas, cache=cache)
    canvas_2 = torch.tensor([[5, 6, 7, 8], [60, 61, 62, 63]])
    next_logits = model(cache=cache, decoder_input_ids=canvas_2).logits
    return {
        "prompt": PROMPT,
        "encoder": {"hidden": rows(encoded.last_hidden_state)},
        "decoder": {
            "canvas": canvas.tolist(),
            "logits": rows(first),
            "self_conditioning_temperature": 0.8,
            "logits_self_conditioned": rows(second),
        },
        "next_canvas": {"canvas": canvas_2.tolist(), "logits": rows(next_logits)},
    }


class Recorder:
    """Records the noise `generate` draws, and the sampler's decisions per step."""

    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)
        self.randint, self.uniforms, self.steps = [], [], []

    def install(self):
        real_randint, recorder = torch.randint, self

        def randint(*args, **kwargs):
            kwargs.pop("generator", None)
            drawn = real_randint(*args, generator=recorder.generator, **kwargs)
            recorder.randint.append(drawn.tolist())
            return drawn

        def multinomial(probs, num_samples, **kwargs):
            assert num_samples == 1
            u = torch.rand(probs.shape[0], generator=recorder.generator)
            recorder.uniforms.append(u.tolist())
            cumulative = probs.cumsum(-1)
            index = (cumulative < u[:, None]).sum(-1).clamp(max=probs.shape[-1] - 1)
            return index[:, None]

        real_accept = generation.EntropyBoundSampler.accept_canvas
        real_temperature = generation.LinearTemperatureScheduleLogitsProcessor.__call__
        real_stop = generation.StableAndConfidentStoppingCriteria.__call__

        def accept(sampler, current, denoiser, logits, cur_step):
            out = real_accept(sampler, current, denoiser, logits, cur_step)
            recorder.steps.append(
                {"step": int(cur_step), "accepted": sampler.accepted_token_mask.tolist()}
            )
            return out

        def temperature(processor, input_ids, scores, cur_step):
            n = int(cur_step)
            t = processor.t_min + (processor.t_max - processor.t_min) * (n / processor.max_denoising_steps)
            recorder.pending_temperature = t
            return real_temperature(processor, input_ids, scores, cur_step)

        def stop(criteria, argmax_canvas, logits, **kwargs):
            out = real_stop(criteria, argmax_canvas, logits, **kwargs)
            recorder.steps[-1].update(
                temperature=recorder.pending_temperature,
                argmax=argmax_canvas.tolist(),
                stopped=out.tolist(),
            )
            return out

        self.saved = (torch.randint, torch.multinomial, real_accept, real_temperature, real_stop)
        torch.randint, torch.multinomial = randint, multinomial
        generation.EntropyBoundSampler.accept_canvas = accept
        generation.LinearTemperatureScheduleLogitsProcessor.__call__ = temperature
        generation.StableAndConfidentStoppingCriteria.__call__ = stop

    def uninstall(self):
        torch.randint, torch.multinomial = self.saved[0], self.saved[1]
        generation.EntropyBoundSampler.accept_canvas = self.saved[2]
        generation.LinearTemperatureScheduleLogitsProcessor.__call__ = self.saved[3]
        generation.StableAndConfidentStoppingCriteria.__call__ = self.saved[4]


def traced_generation(model, seed, **settings):
    recorder = Recorder(seed)
    recorder.install()
    sampler = generation.EntropyBoundSamplerConfig(entropy_bound=settings["entropy_bound"])
    kwargs = {k: v for k, v in settings.items() if k != "entropy_bound"}
    try:
        out = model.generate(torch.tensor(PROMPT), sampler_config=sampler, **kwargs)
    finally:
        recorder.uninstall()
    return {
        "settings": settings,
        "sequences": out.sequences.tolist(),
        "tokens_per_forward": out.tokens_per_forward.tolist(),
        "randint": recorder.randint,
        "uniforms": recorder.uniforms,
        "steps": recorder.steps,
    }


def write_tokenizer():
    """A word-level tokenizer over the tiny vocabulary, `w0` … `w63` (what the command line's
    tests encode prompts with), and a Gemma-style chat template over it (`w3` opens a turn, `w4`
    closes it, `w5` opens the model's)."""
    vocab = {f"w{i}": i for i in range(VOCAB)}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.decoder = tokenizers.decoders.WordPiece(prefix="##")
    tokenizer.save(str(OUT / "tokenizer.json"))
    template = (
        "{{ bos_token }} {% for message in messages %}w3 {{ message['content'] | trim }} w4 "
        "{% endfor %}{% if add_generation_prompt %}w5{% endif %}"
    )
    config = {"bos_token": "w2", "eos_token": "w1", "pad_token": "w0", "chat_template": template}
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main():
    model = build()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("model*.safetensors*"):
        old.unlink()
    model.save_pretrained(OUT, max_shard_size="40KB")
    write_tokenizer()
    with torch.no_grad():
        reference = forward_cases(model)
        reference["generations"] = [
            # The released defaults (EB bound 0.1, temperatures 0.8 → 0.4), few steps.
            traced_generation(
                model,
                1,
                max_new_tokens=2 * CANVAS,
                max_denoising_steps=6,
                entropy_bound=0.1,
                t_min=0.4,
                t_max=0.8,
                stability_threshold=1,
                confidence_threshold=0.005,
            ),
            # A looser bound and a confidence threshold above every entropy: several tokens
            # accepted per step, rows stop on stability alone, at different steps; a frequent
            # token as the end of text, so that rows finish in different canvases.
            traced_generation(
                model,
                2,
                max_new_tokens=3 * CANVAS,
                max_denoising_steps=10,
                entropy_bound=1.5,
                t_min=0.1,
                t_max=0.5,
                stability_threshold=1,
                confidence_threshold=10.0,
                eos_token_id=32,
                pad_token_id=0,
            ),
        ]
    (OUT / "reference.json").write_text(json.dumps(reference) + "\n")
    for g in reference["generations"]:
        accepted = [sum(map(sum, s["accepted"])) for s in g["steps"]]
        print("steps", len(g["steps"]), "accepted per step", accepted, "stopped", [s["stopped"] for s in g["steps"]])
        print("sequences", g["sequences"], "tokens/forward", g["tokens_per_forward"])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
