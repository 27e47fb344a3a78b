//! Diffusion-LM sampling throughput: DDPM against DDIM at several step counts (one model call
//! per step either way), on every compiled backend. Speed does not depend on the weights, so an
//! untrained model is used.
//!
//! ```text
//! cargo bench --bench gaussian_sampling --features ndarray
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::continuous::{DiffusionLmConfig, GaussianSampler, Update};
use dlm::device::{bench_backends, parse_device};
use dlm::sched::{SquareRoot, TimeGrid};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BATCH: usize = 16;
const SEQ_LEN: usize = 64;

fn sampling(c: &mut Criterion) {
    let mut group = c.benchmark_group("gaussian_sampling");
    group.throughput(Throughput::Elements((BATCH * SEQ_LEN) as u64));
    group.sample_size(10);
    let schedule = SquareRoot::default();
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        let model = DiffusionLmConfig::new(64, SEQ_LEN)
            .with_embed_dim(16)
            .with_d_model(128)
            .with_n_layers(2)
            .init(&device)
            .expect("valid config");
        for steps in [10, 50, 200] {
            for update in [Update::Ddpm, Update::Ddim { eta: 0.0 }] {
                let sampler =
                    GaussianSampler::new(update, TimeGrid::uniform(steps, 0.0).expect("steps > 0"))
                        .expect("valid");
                let name = match update {
                    Update::Ddpm => "ddpm",
                    Update::Ddim { .. } => "ddim",
                };
                group.bench_function(format!("{backend}/{name}/{steps}"), |b| {
                    b.iter(|| {
                        sampler.sample(
                            &model,
                            &schedule,
                            BATCH,
                            SEQ_LEN,
                            None,
                            &mut StdRng::seed_from_u64(0),
                        )
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
