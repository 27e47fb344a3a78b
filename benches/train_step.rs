//! One training step (forward + backward + gradient clipping + AdamW, the trainer's defaults) on
//! every compiled backend, for two objectives: MDLM (log-linear schedule, stratified times, the
//! DiT time-conditioned with `cond_dim` 128, as the MDLM reference trains) and the causal AR
//! objective (no time conditioning); MDLM also with the batch split across two model replicas
//! in two threads (`TrainConfig::replicas`). The reference configuration (`d_model` 256, 4 layers, 4
//! heads, `seq_len` 128, batch 16, vocabulary 4096) always, and with `DLM_BENCH_LARGE=1` a
//! GPU-sized one (`d_model` 768, 12 layers, 12 heads, `seq_len` 1024, batch 4). Throughput is in
//! tokens per second; `scripts/bench_torch.py` measures the same steps in PyTorch.
//!
//! ```text
//! cargo bench --bench train_step --features ndarray   # flex and ndarray in one run
//! DLM_BENCH_LARGE=1 BURN_DEVICE=wgpu cargo bench --bench train_step --features wgpu
//! ```

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{Denoiser, DenoiserConfig};
use dlm::core::data::SequenceDataset;
use dlm::core::train::{Objective, TrainConfig, Trainer};
use dlm::device::{bench_backends, parse_device};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::LogLinear;
use dlm_support::bench_configs::{COND_DIM, VOCAB, configurations};

/// The mask token of the MDLM objective.
const MASK_ID: u32 = 0;

/// Four batches of uniformly random tokens.
fn random_data(batch: usize, seq_len: usize, device: &Device) -> SequenceDataset {
    let tokens =
        Tensor::<2>::random([batch * 4, seq_len], Distribution::Uniform(4.0, VOCAB as f64), device)
            .int()
            .into_data()
            .iter::<i64>()
            .map(|t| t as u32)
            .collect();
    SequenceDataset::new(seq_len, VOCAB, tokens).expect("valid tokens")
}

/// Times `trainer.step` on `data`.
fn bench_trainer<O: Objective<Denoiser> + Sync>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: String,
    mut trainer: Trainer<Denoiser, O>,
    data: &SequenceDataset,
) {
    group.bench_function(label, |b| {
        // `step` reads the loss back to the host, which synchronises the device.
        b.iter(|| trainer.step(data).expect("enough data"))
    });
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        for (name, batch, config) in configurations() {
            let seq_len = config.max_seq_len;
            let data = random_data(batch, seq_len, &device);
            let train_config = TrainConfig::new(1_000_000, batch).with_learning_rate(1e-4);
            let init = |config: DenoiserConfig| {
                config.init(&device.clone().autodiff()).expect("valid config")
            };
            group.throughput(Throughput::Elements((batch * seq_len) as u64));
            for replicas in [1, 2] {
                let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK_ID), 1e-3)
                    .expect("valid objective");
                let model = init(config.clone().with_cond_dim(Some(COND_DIM)));
                let train_config = train_config.clone().with_replicas(replicas);
                let trainer = Trainer::new(train_config, model, mdlm).expect("valid config");
                let label = match replicas {
                    1 => format!("mdlm/{backend}/{name}"),
                    _ => format!("mdlm-{replicas}-replicas/{backend}/{name}"),
                };
                bench_trainer(&mut group, label, trainer, &data);
            }
            let model = init(config);
            let trainer =
                Trainer::new(train_config, model, ArObjective::default()).expect("valid config");
            bench_trainer(&mut group, format!("ar/{backend}/{name}"), trainer, &data);
        }
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
