//! One training step (forward + backward + AdamW) of the reference configuration — `d_model`
//! 256, 4 layers, 4 heads, `seq_len` 128, batch 16, vocabulary 4096, causal objective — on every
//! compiled backend. Throughput is in tokens per second.
//!
//! ```text
//! cargo bench --bench train_step --features ndarray   # flex and ndarray in one run
//! ```

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::data::SequenceDataset;
use dlm::core::train::{TrainConfig, Trainer};
use dlm::device::{bench_backends, parse_device};

const BATCH: usize = 16;
const SEQ_LEN: usize = 128;
const VOCAB: usize = 4096;

fn reference_config() -> DenoiserConfig {
    DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: false }, SEQ_LEN)
        .with_d_model(256)
        .with_n_heads(4)
        .with_n_layers(4)
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements((BATCH * SEQ_LEN) as u64));
    group.sample_size(10);
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        let data = {
            let tokens = Tensor::<2>::random(
                [BATCH * 4, SEQ_LEN],
                Distribution::Uniform(4.0, VOCAB as f64),
                &device,
            )
            .int()
            .into_data()
            .iter::<i64>()
            .map(|t| t as u32)
            .collect();
            SequenceDataset::new(SEQ_LEN, VOCAB, tokens).expect("valid tokens")
        };
        let model = reference_config().init(&device.clone().autodiff()).expect("valid config");
        let steps = 1_000_000;
        let config = TrainConfig::new(steps, BATCH).with_learning_rate(1e-4);
        let mut trainer =
            Trainer::new(config, model, ArObjective::default()).expect("valid config");
        group.bench_function(backend, |b| {
            b.iter(|| {
                // `step` reads the loss back to the host, which synchronises the device.
                trainer.step(&data).expect("enough data")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
