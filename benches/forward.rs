//! One forward pass of the denoiser (full attention, no autodiff) on every compared backend:
//! the reference configuration (`d_model` 256, 4 layers, `seq_len` 128, batch 16, vocabulary
//! 4096) always, and with `DLM_BENCH_LARGE=1` a GPU-sized one (`d_model` 768, 12 layers, 12
//! heads, `seq_len` 1024, batch 4). Throughput is in tokens per second.
//!
//! ```text
//! cargo bench --bench forward --features ndarray                  # flex and ndarray
//! DLM_BENCH_LARGE=1 BURN_DEVICE=wgpu cargo bench --bench forward --features wgpu
//! ```

use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::core::backbone::{AttentionMask, DenoiserInput};
use dlm::device::{bench_backends, parse_device};

#[path = "common/configs.rs"]
mod configs;

use configs::{VOCAB, configurations};

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        for (name, batch, config) in configurations() {
            let seq_len = config.max_seq_len;
            group.throughput(Throughput::Elements((batch * seq_len) as u64));
            let model = config.init(&device).expect("valid config");
            let tokens: Tensor<2, Int> = Tensor::<2>::random(
                [batch, seq_len],
                Distribution::Uniform(4.0, VOCAB as f64),
                &device,
            )
            .int();
            group.bench_function(format!("{backend}/{name}"), |b| {
                b.iter(|| {
                    let input =
                        DenoiserInput::tokens(tokens.clone()).with_mask(AttentionMask::Full);
                    // Reading one number back synchronises the device.
                    model.forward(input).output.sum().into_scalar::<f32>()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
