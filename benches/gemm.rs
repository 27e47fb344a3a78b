//! A large matrix product on every compiled backend: the backend's own GEMM rate, against which
//! `docs/benchmarks.md` states the training step's share. Throughput is in FLOP/s
//! (`2·n³` per product).
//!
//! ```text
//! cargo bench --bench gemm --features ndarray
//! ```

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::device::{bench_backends, parse_device};

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    for n in [512usize, 1024] {
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
            let device = parse_device(&backend).expect("a compiled backend");
            let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
            let b = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
            group.bench_function(format!("{backend}/{n}"), |bench| {
                bench.iter(|| {
                    let product = a.clone().matmul(b.clone());
                    device.sync().expect("device synchronisation");
                    product
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
