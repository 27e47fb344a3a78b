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
use crate::error::DiscreteError;
use crate::sampler::{MaskedSampler, SamplerState};

/// One sampler's measurement in a [`sweep`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// The sampler's name.
    pub label: String,
    /// Model calls of the whole batch (each call decodes every row).
    pub nfe: usize,
    /// Free positions decoded per model call, averaged over the rows.
    pub tokens_per_call: f64,
    /// The caller's score of the samples (higher is better).
    pub quality: f64,
    /// Wall time of the decoding, in seconds.
    pub seconds: f64,
    /// Whether no other sampler of the sweep needs as few calls or fewer for a quality as good or
    /// better ([`pareto_front`]).
    pub on_front: bool,
}

/// Runs every sampler of `samplers` on `model` from a fresh `start()`, with the host RNG seeded
/// by `seed` for each (the same draws for every sampler), and scores the decoded rows with
/// `quality`. Rows on the Pareto front of calls against quality are marked.
///
/// # Errors
/// The first sampler's or start's error.
pub fn sweep<M: MaskedDenoiser>(
    model: &M,
    samplers: &[(String, MaskedSampler)],
    start: &dyn Fn() -> Result<SamplerState, DiscreteError>,
    seed: u64,
    quality: &dyn Fn(&[Vec<i64>]) -> f64,
) -> Result<Vec<SweepRow>, DiscreteError> {
    let mut rows = Vec::with_capacity(samplers.len());
    for (label, sampler) in samplers {
        let state = start()?;
        let [batch, len] = state.tokens.dims();
        let free: usize = state.fixed.clone().into_data().iter::<bool>().filter(|&f| !f).count();
        let started = Instant::now();
        let out = sampler.sample(model, state, &mut StdRng::seed_from_u64(seed))?;
        let seconds = started.elapsed().as_secs_f64();
        let tokens = int_values(out.tokens);
        let decoded: Vec<Vec<i64>> = tokens.chunks(len).map(<[i64]>::to_vec).collect();
        rows.push(SweepRow {
            label: label.clone(),
            nfe: out.nfe,
            tokens_per_call: free as f64 / batch as f64 / out.nfe.max(1) as f64,
            quality: quality(&decoded),
            seconds,
            on_front: false,
        });
    }
    let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.nfe as f64, r.quality)).collect();
    for i in pareto_front(&points) {
        rows[i].on_front = true;
    }
    Ok(rows)
}

/// The rows as CSV, with a header: `label,nfe,tokens_per_call,quality,seconds,on_front` (labels
/// quoted, inner quotes doubled).
pub fn sweep_csv(rows: &[SweepRow]) -> String {
    let mut out = String::from("label,nfe,tokens_per_call,quality,seconds,on_front\n");
    for row in rows {
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{}\n",
            row.label.replace('"', "\"\""),
            row.nfe,
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
        let rows = sweep(&subs, &samplers, &start, 0, &quality).unwrap();
        assert_eq!((rows[0].nfe, rows[1].nfe), (8, 2));
        assert_eq!((rows[0].tokens_per_call, rows[1].tokens_per_call), (1.0, 4.0));
        // Two calls are fewer than eight: the cheap sampler is on the front whatever its quality,
        // the dear one only if it is strictly better.
        assert!(rows[1].on_front);
        assert_eq!(rows[0].on_front, rows[0].quality > rows[1].quality);
        let csv = sweep_csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().nth(2).unwrap().starts_with("\"k = \"\"4\"\"\",2,4,"), "{csv}");
    }
}
