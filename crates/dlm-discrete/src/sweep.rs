//! Speed–quality sweeps: several masked samplers on the same model, starts and seed, each
//! measured by its model calls, tokens per call, wall time and a caller's quality score, with the
//! Pareto front of calls against quality.

use std::time::Instant;

use dlm_core::front::pareto_front;
use dlm_core::host::int_values;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size};
use crate::sampler::{MaskedSampler, SamplerState};

/// One sampler's measurement in a [`sweep`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// The sampler's name.
    pub label: String,
    /// Model calls per run, averaged over the runs (a call decodes every row of a run's start
    /// together, so with several rows the rules' count is the slowest row's).
    pub calls: f64,
    /// Free positions of a row decoded per model call.
    pub tokens_per_call: f64,
    /// The caller's score of the samples (higher is better).
    pub quality: f64,
    /// Wall time of all the runs' decoding, in seconds.
    pub seconds: f64,
    /// Whether no other sampler of the sweep needs as few calls or fewer for a quality as good or
    /// better ([`pareto_front`]).
    pub on_front: bool,
}

/// Runs every sampler of `samplers` on `model` `runs` times, each from a fresh `start()` with the
/// host RNG seeded `seed + run` (the same draws for every sampler), and scores all the decoded
/// rows together with `quality`. A start of one row makes the calls those of one sequence. Rows
/// on the Pareto front of calls against quality are marked.
///
/// # Errors
/// The first sampler's or start's error; [`DiscreteError::Invalid`] for `runs == 0`.
pub fn sweep<M: MaskedDenoiser>(
    model: &M,
    samplers: &[(String, MaskedSampler)],
    start: &dyn Fn() -> Result<SamplerState, DiscreteError>,
    runs: usize,
    seed: u64,
    quality: &dyn Fn(&[Vec<i64>]) -> f64,
) -> Result<Vec<SweepRow>, DiscreteError> {
    ensure_size(runs > 0, "sweep", "runs", runs, "at least 1")?;
    let mut rows = Vec::with_capacity(samplers.len());
    for (label, sampler) in samplers {
        let (mut decoded, mut calls, mut free, mut seconds) = (Vec::new(), 0, 0, 0.0);
        for run in 0..runs {
            let state = start()?;
            let len = state.tokens.dims()[1];
            free += state.fixed.clone().into_data().iter::<bool>().filter(|&f| !f).count();
            let started = Instant::now();
            let mut rng = StdRng::seed_from_u64(seed + run as u64);
            let out = sampler.sample(model, state, &mut rng)?;
            seconds += started.elapsed().as_secs_f64();
            calls += out.nfe;
            decoded.extend(int_values(out.tokens).chunks(len).map(<[i64]>::to_vec));
        }
        let calls_per_run = calls as f64 / runs as f64;
        let free_per_row = free as f64 / decoded.len().max(1) as f64;
        rows.push(SweepRow {
            label: label.clone(),
            calls: calls_per_run,
            tokens_per_call: free_per_row / calls_per_run.max(1.0),
            quality: quality(&decoded),
            seconds,
            on_front: false,
        });
    }
    let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.calls, r.quality)).collect();
    for i in pareto_front(&points) {
        rows[i].on_front = true;
    }
    Ok(rows)
}

/// The rows as CSV, with a header: `label,calls,tokens_per_call,quality,seconds,on_front` (labels
/// quoted, inner quotes doubled).
pub fn sweep_csv(rows: &[SweepRow]) -> String {
    let mut out = String::from("label,calls,tokens_per_call,quality,seconds,on_front\n");
    for row in rows {
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{}\n",
            row.label.replace('"', "\"\""),
            row.calls,
            row.tokens_per_call,
            row.quality,
            row.seconds,
            row.on_front
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use dlm_core::backbone::DenoiserConfig;
    use dlm_core::sampling::Confidence;
    use dlm_core::testing::randomised;

    use super::*;
    use crate::denoiser::Subs;
    use crate::sampler::Unmasking;

    #[test]
    fn a_sweep_counts_calls_and_marks_the_front() {
        let device = Device::flex();
        let model = randomised(
            DenoiserConfig::tokens(10, 8).with_d_model(16).init(&device).unwrap(),
            &device,
        );
        let subs = Subs { model: &model, mask_id: 3 };
        let top_k = |steps| {
            MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, steps)
                .unwrap()
        };
        let samplers = [("k = 1".to_string(), top_k(8)), ("k = \"4\"".to_string(), top_k(2))];
        let start = || SamplerState::all_masked(&subs, 3, 8);
        // Quality: the fraction of even tokens, whatever they are; the point is the bookkeeping.
        let quality = |rows: &[Vec<i64>]| {
            let all: Vec<i64> = rows.concat();
            all.iter().filter(|&&t| t % 2 == 0).count() as f64 / all.len() as f64
        };
        let rows = sweep(&subs, &samplers, &start, 2, 0, &quality).unwrap();
        assert_eq!((rows[0].calls, rows[1].calls), (8.0, 2.0));
        assert_eq!((rows[0].tokens_per_call, rows[1].tokens_per_call), (1.0, 4.0));
        assert!(sweep(&subs, &samplers, &start, 0, 0, &quality).is_err());
        // Two calls are fewer than eight: the cheap sampler is on the front whatever its quality,
        // the dear one only if it is strictly better.
        assert!(rows[1].on_front);
        assert_eq!(rows[0].on_front, rows[0].quality > rows[1].quality);
        let csv = sweep_csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().nth(2).unwrap().starts_with("\"k = \"\"4\"\"\",2,4,"), "{csv}");
    }
}
