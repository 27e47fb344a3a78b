//! Evaluating `α(t)` over 1M times: on the host in `f64`, and as one device tensor on every
//! compiled backend.
//!
//! ```text
//! cargo bench --bench sched                      # flex
//! cargo bench --bench sched --features ndarray   # flex and ndarray
//! ```

use std::hint::black_box;

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::device::{bench_backends, parse_device};
use dlm::sched::{NoiseSchedule, ScheduleKind};

const N: usize = 1 << 20;

fn alpha_over_a_million_times(c: &mut Criterion) {
    let schedules = ScheduleKind::presets().expect("the presets are valid");
    let times: Vec<f64> = (0..N).map(|k| (k as f64 + 0.5) / N as f64).collect();

    let mut group = c.benchmark_group("alpha_1M");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    for schedule in &schedules {
        let label = schedule.label();
        group.bench_function(format!("f64/{label}"), |b| {
            b.iter(|| times.iter().map(|&t| schedule.alpha(black_box(t))).sum::<f64>())
        });
        for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
            let device = parse_device(&backend).expect("a compiled backend");
            let t = Tensor::<1>::random([N], Distribution::Default, &device);
            group.bench_function(format!("{backend}/{label}"), |b| {
                b.iter(|| {
                    let alpha = schedule.alpha_tensor(black_box(t.clone()));
                    // Wait for the device before the timer stops.
                    device.sync().expect("device synchronisation");
                    alpha
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, alpha_over_a_million_times);
criterion_main!(benches);
