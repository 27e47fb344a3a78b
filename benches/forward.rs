//! Inference on every compared backend, no autodiff, with the time-conditioned DiT of MDLM
//! (`cond_dim` 128): one forward pass of the denoiser at half the positions masked, and one step
//! of a masked sampler (the forward pass read through SUBS, float64 Gumbel-max proposals at every
//! position, their confidence, and the commit of the most confident masked position of each
//! sequence). The reference configuration (`d_model` 256, 4 layers, `seq_len` 128, batch 16,
//! vocabulary 4096) always, and with `DLM_BENCH_LARGE=1` a GPU-sized one (`d_model` 768, 12
//! layers, 12 heads, `seq_len` 1024, batch 4). Throughput is in tokens per second;
//! `scripts/bench_torch.py` measures the same in PyTorch.
//!
//! ```text
//! cargo bench --bench forward --features ndarray                  # flex and ndarray
//! DLM_BENCH_LARGE=1 BURN_DEVICE=wgpu cargo bench --bench forward --features wgpu
//! ```

use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::core::backbone::{Denoiser, DenoiserInput};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::device::{bench_backends, parse_device};
use dlm::discrete::sampler::{MaskedSampler, RowMemory, StepRegion, Tick, Unmasking};
use dlm::discrete::{MaskedDenoiser, Subs};
use dlm_support::bench_configs::{COND_DIM, VOCAB, configurations};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The mask token.
const MASK_ID: u32 = 0;

/// `z_t` with about half the positions masked, and `t = 0.5` for every sequence.
fn half_masked(batch: usize, seq_len: usize, device: &Device) -> (Tensor<2, Int>, Tensor<1>) {
    let x0: Tensor<2, Int> =
        Tensor::<2>::random([batch, seq_len], Distribution::Uniform(4.0, VOCAB as f64), device)
            .int();
    let is_masked: Tensor<2, Bool> =
        Tensor::<2>::random([batch, seq_len], Distribution::Default, device).lower_elem(0.5);
    (x0.mask_fill(is_masked, MASK_ID as i64), Tensor::full([batch], 0.5, device))
}

/// The compared backends and configurations, with a time-conditioned model on each.
fn cases() -> Vec<(String, usize, usize, Denoiser, Device)> {
    let mut cases = Vec::new();
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        for (name, batch, config) in configurations() {
            let seq_len = config.max_seq_len;
            let model = config.with_cond_dim(Some(COND_DIM)).init(&device).expect("valid config");
            cases.push((format!("{backend}/{name}"), batch, seq_len, model, device.clone()));
        }
    }
    cases
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for (label, batch, seq_len, model, device) in cases() {
        group.throughput(Throughput::Elements((batch * seq_len) as u64));
        let (z_t, t) = half_masked(batch, seq_len, &device);
        group.bench_function(label, |b| {
            b.iter(|| {
                let input = DenoiserInput::tokens(z_t.clone()).with_time(t.clone());
                // Reading one number back synchronises the device.
                model.forward(input).output.sum().into_scalar::<f32>()
            })
        });
    }
    group.finish();
}

fn sampler_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("sampler_step");
    group.sample_size(10);
    let sampler =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, 128)
            .expect("valid sampler")
            .with_proposal(TokenSampler::new(1.0).expect("valid temperature"));
    for (label, batch, seq_len, model, device) in cases() {
        group.throughput(Throughput::Elements((batch * seq_len) as u64));
        let subs = Subs { model: &model, mask_id: MASK_ID };
        let (z_t, t) = half_masked(batch, seq_len, &device);
        let tokens: Vec<i64> = z_t.clone().into_data().iter::<i64>().collect();
        let candidates: Vec<bool> = tokens.iter().map(|&v| v == i64::from(MASK_ID)).collect();
        let decoded = vec![false; batch * seq_len];
        let ticks = vec![Tick::Count(1); batch];
        let mut rng = StdRng::seed_from_u64(0);
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut next = tokens.clone();
                let region = StepRegion {
                    tokens: &mut next,
                    candidates: &candidates,
                    decoded: &decoded,
                    ticks: &ticks,
                    memories: &mut vec![RowMemory::default(); batch],
                    mask_id: MASK_ID,
                };
                // The commit reads the proposals back to the host, which synchronises the device.
                sampler.step_region(subs.log_probs(z_t.clone(), t.clone()), region, &mut rng);
                next
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward, sampler_step);
criterion_main!(benches);
