#!/usr/bin/env python3
"""The PyTorch baseline of the engine benchmarks (docs/benchmarks.md), run by hand, never by CI.

The same model, objective, optimiser and sizes as `benches/train_step.rs`, `benches/forward.rs`
and `benches/sampler_step.rs`, written here in PyTorch eager:

- the denoiser: token embedding, sinusoidal time features (t * 1000, 256 frequencies, cos then
  sin) through Linear-SiLU-Linear to `cond_dim`, pre-norm blocks with adaLN-zero (shift, scale,
  gate for attention and for the MLP), rotary embeddings (rotate-half form), bias-free fused qkv
  and output projections, a GELU MLP of width 4 d_model, a modulated final norm and a linear head;
- MDLM's objective as its reference code computes it: the log-linear schedule, one time per
  sequence from the stratified sampler, SUBS over the full logits (mask logit at -1e6, carry-over
  of unmasked tokens), the true token's log-probability weighted by -alpha'/(1 - alpha) at the
  masked positions, averaged over tokens; the causal (AR) objective for comparison;
- AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay) after clipping the global gradient
  norm at 1, the trainer's defaults.

Timing: `--threads` intra-op threads (2 on the 2-core machine), `--warmup` untimed steps, then the
median of `--steps` timed steps (wall clock; CPU work is synchronous). Prints one line per
measurement as `name  median_s  tokens_per_s`.

Reference configuration: d_model 256, 4 layers, 4 heads, seq_len 128, batch 16, vocab 4096,
cond_dim 128.

    scripts/setup-torch.sh
    .venv-torch/bin/python scripts/bench_torch.py --threads 2
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG_INFINITY = -1e6


def sinusoidal_features(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10_000.0) / half))
    args = (t * 1000.0)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Rotary:
    def __init__(self, seq_len, head_dim, base=10_000.0):
        half = head_dim // 2
        inv_freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-2.0 * math.log(base) / head_dim))
        angles = torch.arange(seq_len, dtype=torch.float32)[:, None] * inv_freq[None, :]
        self.cos = angles.cos()[None, None]
        self.sin = angles.sin()[None, None]

    def rotate(self, x):
        n = x.shape[2]
        cos, sin = self.cos[:, :, :n], self.sin[:, :, :n]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def modulate(x, shift, scale):
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


def zero_linear(d_in, d_out):
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    def __init__(self, d_model, n_heads, cond_dim):
        super().__init__()
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, 4 * d_model)
        self.mlp_out = nn.Linear(4 * d_model, d_model)
        self.modulation = zero_linear(cond_dim, 6 * d_model) if cond_dim else None

    def attention(self, h, rotary, causal):
        batch, n, d_model = h.shape
        heads = lambda x: x.reshape(batch, n, self.n_heads, d_model // self.n_heads).transpose(1, 2)
        q, k, v = self.qkv(h).chunk(3, dim=2)
        q, k, v = rotary.rotate(heads(q)), rotary.rotate(heads(k)), heads(v)
        context = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(context.transpose(1, 2).reshape(batch, n, d_model))

    def forward(self, x, cond, rotary, causal):
        mlp = lambda h: self.mlp_out(F.gelu(self.mlp_in(h)))
        if self.modulation is None:
            x = x + self.attention(self.attention_norm(x), rotary, causal)
            return x + mlp(self.mlp_norm(x))
        m = self.modulation(F.silu(cond)).chunk(6, dim=1)
        h = modulate(self.attention_norm(x), m[0], m[1])
        x = x + m[2][:, None, :] * self.attention(h, rotary, causal)
        h = modulate(self.mlp_norm(x), m[3], m[4])
        return x + m[5][:, None, :] * mlp(h)


class Denoiser(nn.Module):
    def __init__(self, vocab, seq_len, d_model, n_heads, n_layers, cond_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.cond_dim = cond_dim
        if cond_dim:
            self.time_hidden = nn.Linear(256, cond_dim)
            self.time_out = nn.Linear(cond_dim, cond_dim)
            self.final_modulation = zero_linear(cond_dim, 2 * d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, cond_dim) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.head = zero_linear(d_model, vocab)
        self.rotary = Rotary(seq_len, d_model // n_heads)

    def forward(self, tokens, t=None, causal=False):
        h = self.embedding(tokens)
        cond = None
        if self.cond_dim:
            cond = self.time_out(F.silu(self.time_hidden(sinusoidal_features(t, 256))))
        for block in self.blocks:
            h = block(h, cond, self.rotary, causal)
        h = self.final_norm(h)
        if self.cond_dim:
            shift, scale = self.final_modulation(F.silu(cond)).chunk(2, dim=1)
            h = modulate(h, shift, scale)
        return self.head(h)


def subs_log_probs(logits, z_t, mask_id):
    """MDLM's SUBS over every position, as its reference code computes it."""
    logits = logits.clone()
    logits[:, :, mask_id] = NEG_INFINITY
    log_probs = torch.log_softmax(logits, dim=-1)
    unmasked = z_t != mask_id
    carried = torch.full_like(log_probs, NEG_INFINITY)
    carried.scatter_(-1, z_t[..., None], 0.0)
    return torch.where(unmasked[..., None], carried, log_probs)


def mdlm_loss(model, x0, mask_id, eps=1e-3, t_min=1e-3):
    batch, seq_len = x0.shape
    # Stratified ("antithetic") times on [t_min, 1], one per sequence.
    u = (torch.rand(1) + torch.arange(batch) / batch) % 1.0
    t = t_min + (1.0 - t_min) * u
    one_minus_alpha = (1.0 - eps) * t
    weight = (1.0 - eps) / one_minus_alpha
    is_masked = torch.rand(batch, seq_len) < one_minus_alpha[:, None]
    z_t = torch.where(is_masked, torch.full_like(x0, mask_id), x0)
    log_probs = subs_log_probs(model(z_t, t), z_t, mask_id)
    nll = -log_probs.gather(-1, x0[..., None]).squeeze(-1)
    return (nll * weight[:, None] * is_masked).sum() / (batch * seq_len)


def ar_loss(model, x0):
    logits = model(x0[:, :-1], causal=True)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x0[:, 1:].reshape(-1))


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--cond-dim", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch, seq_len, vocab, mask_id = args.batch, args.seq_len, args.vocab, 0
    tokens = batch * seq_len
    x0 = torch.randint(4, vocab, (batch, seq_len))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {batch}, seq_len {seq_len}, vocab {vocab}, d_model {args.d_model}, "
          f"{args.n_layers} layers, {args.n_heads} heads, cond_dim {args.cond_dim}")

    def report(name, seconds):
        print(f"{name:<28} {seconds:.4f} s  {tokens / seconds:>9.0f} tokens/s")

    sizes = (vocab, seq_len, args.d_model, args.n_heads, args.n_layers)
    for name, cond_dim, loss_fn in [
        ("train_step/mdlm", args.cond_dim, lambda m: mdlm_loss(m, x0, mask_id)),
        ("train_step/ar", None, lambda m: ar_loss(m, x0)),
    ]:
        model = Denoiser(*sizes, cond_dim)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999),
                                      eps=1e-8, weight_decay=0.0)

        def step():
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            return loss.item()

        report(name, timed(step, args.warmup, args.steps))

    model = Denoiser(*sizes, args.cond_dim).eval()
    t = torch.full((batch,), 0.5)
    z_t = torch.where(torch.rand(batch, seq_len) < 0.5, torch.full_like(x0, mask_id), x0)
    with torch.inference_mode():
        report("forward/time-conditioned", timed(lambda: model(z_t, t).sum().item(),
                                                 args.warmup, args.steps))

        def sampler_step():
            # One step of a masked sampler: SUBS, a float64 Gumbel-max proposal at every
            # position, the confidence of the proposal, and the commit of the most confident
            # masked position of each sequence (top-k with k = 1).
            log_probs = subs_log_probs(model(z_t, t), z_t, mask_id).double()
            gumbel = -torch.log(-torch.log(torch.rand_like(log_probs).clamp_min(1e-300)))
            proposal = (log_probs + gumbel).argmax(-1)
            confidence = log_probs.gather(-1, proposal[..., None]).squeeze(-1)
            confidence = torch.where(z_t == mask_id, confidence, torch.full_like(confidence, -math.inf))
            best = confidence.argmax(-1, keepdim=True)
            return z_t.scatter(1, best, proposal.gather(1, best)).sum().item()

        report("sampler_step/top-1", timed(sampler_step, args.warmup, args.steps))


if __name__ == "__main__":
    main()
