//! Sampler tests on a small randomised denoiser.

use burn::tensor::{Device, Distribution, Int, Tensor};
use dlm_core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm_core::sampling::{Confidence, TokenSampler};
use dlm_core::testing::randomised;
use dlm_sched::{LogLinear, ScheduleKind, SquareRoot};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::denoiser::Subs;

const VOCAB: usize = 12;
const MASK: u32 = 3;

fn model(device: &Device, cond_dim: Option<usize>) -> Denoiser {
    let config =
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: false }, 32)
            .with_d_model(32)
            .with_n_heads(2)
            .with_n_layers(2)
            .with_cond_dim(cond_dim);
    randomised(config.init(device).unwrap(), device)
}

fn policies() -> Vec<(&'static str, MaskedSampler)> {
    let schedule = ScheduleKind::LogLinear(LogLinear::default());
    let remdm = ReMdm::new(schedule.clone(), ReMdmStrategy::Rescale { eta: 0.5 }).unwrap();
    let sqrt = ScheduleKind::SquareRoot(SquareRoot::default());
    vec![
        ("ancestral", MaskedSampler::new(Unmasking::Ancestral { schedule }, 8).unwrap()),
        ("ancestral sqrt", MaskedSampler::new(Unmasking::Ancestral { schedule: sqrt }, 3).unwrap()),
        ("remdm", MaskedSampler::new(Unmasking::ReMdm(remdm), 8).unwrap()),
        (
            "top-k",
            MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 5).unwrap(),
        ),
        ("random", MaskedSampler::new(Unmasking::Random, 4).unwrap()),
        (
            "threshold",
            MaskedSampler::new(Unmasking::threshold(Confidence::TokenProbability, 0.5).unwrap(), 1)
                .unwrap(),
        ),
        (
            "factor",
            MaskedSampler::new(Unmasking::factor(Confidence::Margin, 1.0).unwrap(), 1)
                .unwrap()
                .with_block_length(4)
                .unwrap(),
        ),
        (
            "slow-fast",
            MaskedSampler::new(Unmasking::SlowFast(SlowFast::new(2, 0.1, 2, 1.0, 0.3).unwrap()), 1)
                .unwrap()
                .with_block_length(5)
                .unwrap(),
        ),
    ]
}

fn subs(model: &Denoiser) -> Subs<'_> {
    Subs { model, mask_id: MASK }
}

fn run(sampler: &MaskedSampler, model: &Denoiser, state: SamplerState, seed: u64) -> SamplerState {
    sampler.sample(&subs(model), state, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn values(tokens: Tensor<2, Int>) -> Vec<i64> {
    tokens.into_data().iter::<i64>().collect()
}

#[test]
fn every_sampler_is_deterministic_decodes_everything_and_keeps_the_prompt() {
    let device = Device::flex();
    let model = model(&device, None);
    let prompt =
        Tensor::<2>::random([2, 3], Distribution::Uniform(4.0, VOCAB as f64), &device).int();
    let sampling = TokenSampler::new(1.0).unwrap();
    for (name, sampler) in policies() {
        let sampler = sampler.with_proposal(sampling);
        let start = || SamplerState::with_prompt(&subs(&model), prompt.clone(), 10).unwrap();
        let a = run(&sampler, &model, start(), 7);
        let b = run(&sampler, &model, start(), 7);
        let tokens = values(a.tokens.clone());
        assert_eq!(tokens, values(b.tokens), "{name}: not deterministic");
        assert!(tokens.iter().all(|&t| t != i64::from(MASK)), "{name}: a mask is left: {tokens:?}");
        assert_eq!(
            values(a.tokens.narrow(1, 0, 3)),
            values(prompt.clone()),
            "{name}: prompt changed"
        );
        assert!(a.nfe > 0, "{name}");
    }
}

#[test]
fn threshold_one_equals_top1_one_token_per_step() {
    let device = Device::flex();
    let model = model(&device, None);
    let start = || SamplerState::all_masked(&subs(&model), 3, 8).unwrap();
    let strict =
        MaskedSampler::new(Unmasking::threshold(Confidence::TokenProbability, 1.0).unwrap(), 1)
            .unwrap();
    let top1 = MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, 8)
        .unwrap();
    let (a, b) = (run(&strict, &model, start(), 1), run(&top1, &model, start(), 1));
    assert_eq!(values(a.tokens), values(b.tokens));
    assert_eq!((a.nfe, b.nfe), (8, 8));
    // A lower threshold commits several tokens per step: fewer model calls.
    let loose =
        MaskedSampler::new(Unmasking::threshold(Confidence::TokenProbability, 0.05).unwrap(), 1)
            .unwrap();
    assert!(run(&loose, &model, start(), 1).nfe < 8);
}

#[test]
fn slow_fast_spans_and_thresholds_set_the_model_calls() {
    let device = Device::flex();
    let model = model(&device, None);
    let start = || SamplerState::all_masked(&subs(&model), 3, 8).unwrap();
    let slow_fast = |exploration, high| {
        let policy = SlowFast::new(exploration, 0.3, 2, 1.0, high).unwrap();
        MaskedSampler::new(Unmasking::SlowFast(policy), 1).unwrap()
    };
    // A slow phase longer than the block, with a threshold nothing reaches: one most confident
    // token of the whole block per call, which is LLaDA's top-1 decoding.
    let top1 = MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, 8)
        .unwrap();
    let (a, b) = (run(&slow_fast(8, 1.0), &model, start(), 2), run(&top1, &model, start(), 2));
    assert_eq!(values(a.tokens), values(b.tokens));
    assert_eq!((a.nfe, b.nfe), (8, 8));
    // A threshold everything reaches: the whole block in the first call.
    assert_eq!(run(&slow_fast(6, 0.0), &model, start(), 2).nfe, 1);
    // With a short slow phase the fast phase works inside the span only, still one or more
    // tokens a call: the block is done in at most 8 calls, with no noise removal.
    let short = run(&slow_fast(1, 1.0), &model, start(), 2);
    assert_eq!(short.nfe, 8);
    assert!(values(short.tokens).iter().all(|&t| t != i64::from(MASK)));
}

#[test]
fn blocks_and_steps_set_the_number_of_model_calls() {
    let device = Device::flex();
    let model = model(&device, None);
    let start = || SamplerState::all_masked(&subs(&model), 2, 12).unwrap();
    let topk = |steps| {
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, steps).unwrap()
    };
    assert_eq!(run(&topk(6), &model, start(), 0).nfe, 6);
    let blocks = topk(2).with_block_length(4).unwrap();
    assert_eq!(run(&blocks, &model, start(), 0).nfe, 3 * 2);
    // Blocks tile the positions after a 3-token prompt: [3, 7) and [7, 11), two calls each.
    // (Blocks from position 0 would make three blocks, the first with one free position.)
    let prompt = Tensor::<2, Int>::from_ints([[5, 6, 7], [8, 9, 10]], &device);
    let prompted = SamplerState::with_prompt(&subs(&model), prompt, 8).unwrap();
    assert_eq!(run(&blocks, &model, prompted, 0).nfe, 2 * 2);
}

/// A SUBS denoiser that records every `z_t` it is asked about.
struct Recording<'a> {
    subs: Subs<'a>,
    inputs: std::cell::RefCell<Vec<Vec<i64>>>,
}

impl MaskedDenoiser for Recording<'_> {
    fn log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        self.inputs.borrow_mut().push(values(z_t.clone()));
        self.subs.log_probs(z_t, t)
    }
    fn is_time_conditioned(&self) -> bool {
        self.subs.is_time_conditioned()
    }
    fn mask_id(&self) -> u32 {
        MASK
    }
    fn vocab_size(&self) -> usize {
        self.subs.vocab_size()
    }
    fn max_seq_len(&self) -> Option<usize> {
        self.subs.max_seq_len()
    }
    fn device(&self) -> Device {
        self.subs.device()
    }
}

#[test]
fn remdm_in_blocks_never_remasks_a_finished_block() {
    let device = Device::flex();
    let model = model(&device, None);
    let recording =
        Recording { subs: Subs { model: &model, mask_id: MASK }, inputs: Default::default() };
    let schedule = ScheduleKind::LogLinear(LogLinear::default());
    // Remask as much as allowed, so that without the restriction the first block would be hit.
    let remdm = ReMdm::new(schedule, ReMdmStrategy::Rescale { eta: 1.0 }).unwrap();
    let sampler = MaskedSampler::new(Unmasking::ReMdm(remdm), 16)
        .unwrap()
        .with_block_length(4)
        .unwrap()
        .with_proposal(TokenSampler::new(1.0).unwrap());
    let state = SamplerState::all_masked(&recording, 4, 8).unwrap();
    sampler.sample(&recording, state, &mut StdRng::seed_from_u64(5)).unwrap();
    let inputs = recording.inputs.into_inner();
    let second_block: Vec<&Vec<i64>> = inputs
        .iter()
        .filter(|z| z.chunks(8).any(|row| row[4..].iter().any(|&t| t != i64::from(MASK))))
        .collect();
    assert!(!second_block.is_empty());
    // Once the second block has started, every row's first block is fully decoded and stays so.
    let first_blocks = |z: &Vec<i64>| z.chunks(8).map(|row| row[..4].to_vec()).collect::<Vec<_>>();
    let finished = first_blocks(second_block[0]);
    assert!(finished.iter().flatten().all(|&t| t != i64::from(MASK)));
    for z in &second_block {
        assert_eq!(first_blocks(z), finished);
    }
}

#[test]
fn the_cached_sampler_reuses_predictions_and_matches_the_uncached_one() {
    let device = Device::flex();
    let model = model(&device, None);
    let subs = Subs { model: &model, mask_id: MASK };
    let sampler = MaskedSampler::new(
        Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(LogLinear::default()) },
        64,
    )
    .unwrap()
    .with_proposal(TokenSampler::new(1.0).unwrap());
    let start = || SamplerState::all_masked(&subs, 1, 6).unwrap();
    let plain = sampler.sample(&subs, start(), &mut StdRng::seed_from_u64(3)).unwrap();
    let cached = sampler
        .sample_reusing(&TimeAgnostic::new(subs).unwrap(), start(), &mut StdRng::seed_from_u64(3))
        .unwrap();
    assert_eq!(values(plain.tokens), values(cached.tokens));
    // The plain sampler calls the model at every step until the last position is decoded.
    assert!(plain.nfe > 20 && plain.nfe <= 64, "{}", plain.nfe);
    assert!(cached.nfe <= 6 + 1, "at most one call per decoded position: {}", cached.nfe);
    // A time-conditioned model cannot be used that way.
    let conditioned = model_with_time(&device);
    let err = TimeAgnostic::new(Subs { model: &conditioned, mask_id: MASK }).unwrap_err();
    assert!(matches!(err, DiscreteError::TimeConditionedModel { .. }));
}

fn model_with_time(device: &Device) -> Denoiser {
    model(device, Some(16))
}

#[test]
fn infilling_keeps_the_context() {
    let device = Device::flex();
    let model = model(&device, Some(16));
    let tokens = Tensor::<2, Int>::from_ints([[5, 3, 3, 6, 3, 7]], &device);
    let state = SamplerState::infill(&subs(&model), tokens).unwrap();
    let sampler =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, 3)
            .unwrap();
    let out = values(run(&sampler, &model, state, 2).tokens);
    assert_eq!((out[0], out[3], out[5]), (5, 6, 7));
    assert!(out.iter().all(|&t| t != i64::from(MASK)));
    let nothing_masked = Tensor::<2, Int>::from_ints([[5, 6]], &device);
    assert!(SamplerState::infill(&subs(&model), nothing_masked).is_err());
}

#[test]
fn bad_settings_are_rejected() {
    let policy = Unmasking::Random;
    assert!(MaskedSampler::new(policy.clone(), 0).is_err());
    assert!(MaskedSampler::new(policy, 4).unwrap().with_block_length(0).is_err());
}

#[test]
fn configs_and_literals_get_the_constructors_checks() {
    let threshold = Unmasking::threshold(Confidence::TokenProbability, 0.9).unwrap();
    let good = MaskedSampler::new(threshold, 8).unwrap().with_block_length(4).unwrap();
    let json = serde_json::to_value(&good).unwrap();
    assert_eq!(serde_json::from_value::<MaskedSampler>(json.clone()).unwrap(), good);
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = json.clone();
        edit(&mut value);
        serde_json::from_value::<MaskedSampler>(value).unwrap_err().to_string()
    };
    // The case of the issue: `"steps": 0` is refused when read, not a panic inside `sample`.
    assert!(with(&|v| v["steps"] = 0.into()).contains("`steps` = 0"));
    assert!(with(&|v| v["block_length"] = 0.into()).contains("`block_length` = 0"));
    assert!(with(&|v| v["unmasking"]["tau"] = 1.5.into()).contains("`tau` = 1.5"));
    assert!(
        with(&|v| v["unmasking"]["confidence"] = "negative_entropy".into()).contains("not one")
    );
    assert!(with(&|v| v["proposal"]["temperature"] = (-1.0).into()).contains("`temperature`"));
    let remdm = serde_json::json!({
        "schedule": {"kind": "log_linear"},
        "strategy": {"strategy": "rescale", "eta": 2.0}
    });
    let err = serde_json::from_value::<ReMdm>(remdm).unwrap_err().to_string();
    assert!(err.contains("`eta` = 2"), "{err}");
    let factor = serde_json::json!({"policy": "factor", "confidence": "margin", "factor": -1.0});
    assert!(serde_json::from_value::<Unmasking>(factor).is_err());
    // A policy written as a literal is checked when it enters a sampler.
    let literal = Unmasking::Threshold { confidence: Confidence::Margin, tau: 5.0 };
    assert!(MaskedSampler::new(literal, 4).is_err());
}

#[test]
fn the_entropy_bound_trades_model_calls_for_gamma() {
    let device = Device::flex();
    let model = model(&device, None);
    let decode = |gamma: f64| {
        let sampler = MaskedSampler::new(Unmasking::entropy_bound(gamma).unwrap(), 1)
            .unwrap()
            .with_proposal(TokenSampler::greedy());
        run(&sampler, &model, SamplerState::all_masked(&subs(&model), 2, 8).unwrap(), 0)
    };
    // γ = 0 admits only the surest position: one per row and step, eight calls.
    let cautious = decode(0.0);
    assert_eq!(cautious.nfe, 8);
    // An unbounded γ commits every position at once.
    let bold = decode(1e9);
    assert_eq!(bold.nfe, 1);
    for out in [cautious, bold] {
        assert!(values(out.tokens).iter().all(|&t| t != i64::from(MASK)));
    }
}

#[test]
fn the_entropy_bound_reads_the_entropies_of_the_tempered_distribution() {
    // Position 0 is peaked (logits 5, 0, 0, 0): entropy ≈ 0.12 at T = 1, ≈ 1.0 at T = 3.
    // Position 1 is uniform: ln 4 at any temperature. With γ = 0.3 the bound `Σ H − max H`
    // is the smaller entropy: both positions commit at T = 1, only the peaked one at T = 3.
    let device = Device::flex();
    let logits = Tensor::<3>::from_floats([[[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], &device);
    let committed = |temperature: f64| {
        let sampler = MaskedSampler::new(Unmasking::entropy_bound(0.3).unwrap(), 1)
            .unwrap()
            .with_proposal(TokenSampler::new(temperature).unwrap());
        let mut tokens = vec![9, 9];
        let region = StepRegion {
            tokens: &mut tokens,
            candidates: &[true, true],
            decoded: &[false, false],
            ticks: &[Tick::Rule],
            memories: &mut [RowMemory::default()],
            mask_id: 9,
        };
        sampler.step_region(logits.clone(), region, &mut StdRng::seed_from_u64(0));
        tokens.iter().map(|&t| t != 9).collect::<Vec<_>>()
    };
    assert_eq!(committed(1.0), [true, true]);
    assert_eq!(committed(3.0), [true, false]);
}

/// Every free position after a row's first stop token set to `stops[0]`: the rule
/// [`MaskedSampler::with_stop_tokens`] promises, written out.
fn padded(tokens: &[i64], fixed: &[bool], len: usize, stops: &[i64]) -> Vec<i64> {
    let mut out = tokens.to_vec();
    for (row, fixed) in out.chunks_mut(len).zip(fixed.chunks(len)) {
        if let Some(at) = (0..len).find(|&i| !fixed[i] && stops.contains(&row[i])) {
            for i in at + 1..len {
                if !fixed[i] {
                    row[i] = stops[0];
                }
            }
        }
    }
    out
}

#[test]
fn stop_tokens_end_decoding_early_and_give_the_full_run_padded() {
    let device = Device::flex();
    device.seed(7);
    let model = model(&device, None);
    let prompt = Tensor::<2, Int>::from_ints([[5, 6, 7], [8, 9, 10]], &device);
    let start = || SamplerState::with_prompt(&subs(&model), prompt.clone(), 13).unwrap();
    let fixed: Vec<bool> = start().fixed.into_data().iter::<bool>().collect();
    let hot = TokenSampler::new(1.0).unwrap();
    let mut saved = 0;
    for (name, sampler) in policies() {
        let sampler = sampler.with_proposal(hot);
        let full = run(&sampler, &model, start(), 9);
        let full_tokens = values(full.tokens.clone());
        // Each row's first generated token is a stop token: both rows end with their first
        // generated position, wherever the sampler decodes it.
        let stops = vec![full_tokens[3] as u32, full_tokens[16 + 3] as u32];
        let stopping = sampler.clone().with_stop_tokens(stops.clone());
        let stopped = run(&stopping, &model, start(), 9);
        let stops: Vec<i64> = stops.iter().map(|&s| i64::from(s)).collect();
        assert_eq!(values(stopped.tokens), padded(&full_tokens, &fixed, 16, &stops), "{name}");
        assert!(stopped.nfe <= full.nfe, "{name}: {} > {}", stopped.nfe, full.nfe);
        saved += full.nfe - stopped.nfe;
    }
    assert!(saved > 0, "no policy stopped early");
    // A stop token the model cannot produce is refused, naming the field.
    let bad = policies()[3].1.clone().with_stop_tokens(vec![VOCAB as u32]);
    let err = bad.sample(&subs(&model), start(), &mut StdRng::seed_from_u64(0)).unwrap_err();
    assert!(err.to_string().contains("stop_tokens"), "{err}");
}

#[test]
fn every_sampler_records_a_trajectory_that_replays_to_its_tokens() {
    let device = Device::flex();
    device.seed(3);
    let model = model(&device, None);
    let prompt = Tensor::<2, Int>::from_ints([[5, 6, 7], [8, 9, 10]], &device);
    let start = || SamplerState::with_prompt(&subs(&model), prompt.clone(), 13).unwrap();
    let hot = TokenSampler::new(1.0).unwrap();
    for (name, sampler) in policies() {
        for stops in [vec![], vec![4, 5]] {
            let sampler = sampler.clone().with_proposal(hot).with_stop_tokens(stops.clone());
            let plain = run(&sampler, &model, start(), 4);
            let mut trajectory = Trajectory::default();
            let recorded = sampler
                .sample_observed(
                    &subs(&model),
                    start(),
                    &mut StdRng::seed_from_u64(4),
                    &mut trajectory,
                )
                .unwrap();
            let tokens = values(recorded.tokens);
            assert_eq!(tokens, values(plain.tokens), "{name}: recording changes nothing");
            assert_eq!(trajectory.initial(), values(start().tokens), "{name}");
            assert_eq!(trajectory.replay(), tokens, "{name} {stops:?}");
            assert_eq!(trajectory.nfe(), recorded.nfe, "{name}");
            assert_eq!(Trajectory::from_jsonl(&trajectory.to_jsonl()).unwrap(), trajectory);
            let denoising = || trajectory.steps.iter().filter(|s| s.kind == StepKind::Denoise);
            for step in denoising() {
                let [start, end] = step.block;
                for row in &step.rows {
                    assert!(row.committed.iter().all(|c| (start..end).contains(&c.position)));
                    // Confidences are recorded exactly for the policies that rank by one.
                    let ranked = sampler.unmasking().confidence().is_some();
                    assert!(row.committed.iter().all(|c| c.confidence.is_some() == ranked));
                }
            }
            let remasks =
                denoising().flat_map(|s| &s.rows).map(|r| r.remasked.len()).sum::<usize>();
            assert_eq!(remasks > 0, name == "remdm", "{name}: {remasks} remasks");
        }
    }
}

/// A model sure of one sequence: probability `sure` on `target[i]` at every position, the rest
/// spread evenly over the other non-mask tokens; its predictions at decoded positions are those
/// too (SUBS carries the token over instead).
struct SureOf {
    target: Vec<i64>,
    sure: f32,
    predicts_decoded: bool,
}

impl SureOf {
    /// `[batch, region.len(), VOCAB]`, zero-masked.
    fn predictions(&self, batch: usize, region: Range<usize>) -> Tensor<3> {
        let rest = (1.0 - self.sure) / (VOCAB - 2) as f32;
        let mut values = Vec::new();
        for _ in 0..batch {
            for i in region.clone() {
                for v in 0..VOCAB as i64 {
                    let p = match v {
                        v if v == i64::from(MASK) => 0.0,
                        v if v == self.target[i] => self.sure,
                        _ => rest,
                    };
                    values.push(p.max(1e-30).ln());
                }
            }
        }
        let shape = [batch, region.len(), VOCAB];
        Tensor::from_data(burn::tensor::TensorData::new(values, shape), &Device::flex())
    }
}

impl MaskedDenoiser for SureOf {
    fn log_probs(&self, z_t: Tensor<2, Int>, _t: Tensor<1>) -> Tensor<3> {
        let [batch, len] = z_t.dims();
        crate::subs_log_probs(self.predictions(batch, 0..len), z_t, MASK)
    }
    fn region_predictions(
        &self,
        z_t: Tensor<2, Int>,
        _t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        self.predicts_decoded.then(|| self.predictions(z_t.dims()[0], region))
    }
    fn is_time_conditioned(&self) -> bool {
        false
    }
    fn mask_id(&self) -> u32 {
        MASK
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn max_seq_len(&self) -> Option<usize> {
        None
    }
    fn device(&self) -> Device {
        Device::flex()
    }
}

#[test]
fn token_editing_replaces_decoded_tokens_the_model_now_rejects() {
    let device = Device::flex();
    let model = SureOf { target: vec![5, 6, 7, 8, 9, 10], sure: 0.97, predicts_decoded: true };
    // Position 0 is a fixed prompt; position 1 holds a wrong token, decoded but free.
    let mask = i64::from(MASK);
    let start = || SamplerState {
        tokens: ints(vec![5, 4, mask, mask, mask, mask], [1, 6], &device),
        fixed: Tensor::<2, Int>::from_ints([[1, 0, 0, 0, 0, 0]], &device).equal_elem(1),
        nfe: 0,
    };
    let threshold = Unmasking::threshold(Confidence::TokenProbability, 0.5).unwrap();
    let plain = MaskedSampler::new(threshold, 1).unwrap();
    let sample = |sampler: &MaskedSampler, model: &SureOf| {
        let mut trajectory = Trajectory::default();
        let mut rng = StdRng::seed_from_u64(0);
        let out = sampler.sample_observed(model, start(), &mut rng, &mut trajectory);
        out.map(|out| (values(out.tokens), out.nfe, trajectory))
    };
    // Without editing, the wrong token stays: one call fills the four masks.
    let (tokens, nfe, _) = sample(&plain, &model).unwrap();
    assert_eq!((tokens, nfe), (vec![5, 4, 7, 8, 9, 10], 1));
    // With editing at 0.9 (0.97 > 0.9), the first call also edits position 1, which was decoded
    // when the step began; one post call then finds nothing to change and ends the block.
    let editing = plain.clone().with_editing(TokenEditing::new(0.9, 16).unwrap()).unwrap();
    let (tokens, nfe, trajectory) = sample(&editing, &model).unwrap();
    assert_eq!((tokens.clone(), nfe), (vec![5, 6, 7, 8, 9, 10], 2));
    let first = &trajectory.steps[0].rows[0];
    assert_eq!(first.committed.len(), 4);
    assert_eq!(first.edited.len(), 1);
    assert_eq!((first.edited[0].position, first.edited[0].token), (1, 6));
    assert!((first.edited[0].confidence.unwrap() - 0.97).abs() < 1e-5);
    assert_eq!(trajectory.replay(), tokens, "edits replay");
    // Above the model's probability nothing is edited (and the post call changes nothing).
    let strict = plain.clone().with_editing(TokenEditing::new(0.98, 16).unwrap()).unwrap();
    assert_eq!(sample(&strict, &model).unwrap().0, [5, 4, 7, 8, 9, 10]);
    // No post steps: the edit in the filling step remains, no extra call.
    let no_post = plain.clone().with_editing(TokenEditing::new(0.9, 0).unwrap()).unwrap();
    let (tokens, nfe, _) = sample(&no_post, &model).unwrap();
    assert_eq!((tokens, nfe), (vec![5, 6, 7, 8, 9, 10], 1));
    // A model without predictions at decoded positions cannot edit: a typed error.
    let subs_only = SureOf { predicts_decoded: false, ..model };
    let err = sample(&editing, &subs_only).unwrap_err();
    assert!(matches!(err, DiscreteError::Unsupported { .. }), "{err}");
    // ReMDM rewrites decoded tokens itself.
    let remdm =
        ReMdm::new(ScheduleKind::LogLinear(LogLinear::default()), ReMdmStrategy::Cap { eta: 0.01 })
            .unwrap();
    let remasking = MaskedSampler::new(Unmasking::ReMdm(remdm), 4).unwrap();
    assert!(remasking.with_editing(TokenEditing::default()).is_err());
}

#[test]
fn edits_keep_going_after_the_last_mask_until_nothing_changes() {
    // A block already decoded, all wrong: the first post steps edit, and stop when a call changes
    // nothing; with the whole block decoded at the start, no call is made at all.
    let device = Device::flex();
    let model = SureOf { target: vec![5, 6, 7], sure: 0.97, predicts_decoded: true };
    let decoded = SamplerState {
        tokens: ints(vec![4, 4, 4], [1, 3], &device),
        fixed: Tensor::<2, Int>::zeros([1, 3], &device).equal_elem(1),
        nfe: 0,
    };
    let editing = MaskedSampler::new(Unmasking::Random, 2)
        .unwrap()
        .with_editing(TokenEditing::default())
        .unwrap();
    let out = editing.sample(&model, decoded, &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!((values(out.tokens), out.nfe), (vec![4, 4, 4], 0), "nothing changed last");
    // One mask: the call that fills it edits the rest, the next changes nothing.
    let mask = i64::from(MASK);
    let one_mask = SamplerState {
        tokens: ints(vec![4, mask, 4], [1, 3], &device),
        fixed: Tensor::<2, Int>::zeros([1, 3], &device).equal_elem(1),
        nfe: 0,
    };
    let out = editing.sample(&model, one_mask, &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!((values(out.tokens), out.nfe), (vec![5, 6, 7], 2));
}

/// A denoiser whose prediction ignores its input: fixed log-probabilities per position, `[len,
/// vocab]` for every row or `[batch, len, vocab]` per row (the mask column at −∞, as SUBS gives
/// it).
struct Fixed {
    log_probs: Tensor<3>,
}

impl Fixed {
    /// From logits `[rows, len, vocab]`, the mask column set to −∞.
    fn from_logits(logits: Tensor<3>) -> Self {
        let dims = logits.dims();
        let column = Tensor::<1, Int>::arange(0..VOCAB as i64, &logits.device())
            .equal_elem(i64::from(MASK))
            .unsqueeze::<3>()
            .expand(dims);
        let logits = logits.mask_fill(column, f32::NEG_INFINITY);
        Self { log_probs: burn::tensor::activation::log_softmax(logits, 2) }
    }
}

impl MaskedDenoiser for Fixed {
    fn log_probs(&self, z_t: Tensor<2, Int>, _t: Tensor<1>) -> Tensor<3> {
        let [batch, len] = z_t.dims();
        self.log_probs.clone().narrow(1, 0, len).expand([batch, len, VOCAB])
    }
    fn is_time_conditioned(&self) -> bool {
        false
    }
    fn mask_id(&self) -> u32 {
        MASK
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn max_seq_len(&self) -> Option<usize> {
        Some(32)
    }
    fn device(&self) -> Device {
        self.log_probs.device()
    }
}

#[test]
fn adaptive_stopping_ends_a_block_once_its_prediction_is_stable_and_confident() {
    let device = Device::flex();
    let logits = Tensor::<3>::random([1, 8, VOCAB], Distribution::Normal(0.0, 3.0), &device);
    let model = Fixed::from_logits(logits);
    let argmax = values(model.log_probs.clone().argmax(2).reshape([1, 8]));
    let sampler =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, 8)
            .unwrap();
    let decode = |stopping: Option<AdaptiveStopping>| {
        let sampler = match stopping {
            Some(s) => sampler.clone().with_adaptive_stopping(s).unwrap(),
            None => sampler.clone(),
        };
        let state = SamplerState::all_masked(&model, 1, 8).unwrap();
        sampler.sample(&model, state, &mut StdRng::seed_from_u64(0)).unwrap()
    };
    let full = decode(None);
    assert_eq!(full.nfe, 8);
    // The prediction never changes: stable at the second step, so two calls, then the argmax
    // everywhere — the tokens greedy top-k reaches in eight.
    let stop = |stability_threshold, confidence_threshold| {
        decode(Some(AdaptiveStopping { stability_threshold, confidence_threshold }))
    };
    let early = stop(1, 100.0);
    assert_eq!(early.nfe, 2);
    assert_eq!(values(early.tokens), argmax);
    assert_eq!(values(full.tokens), argmax);
    // Without stability required, the first step stops; never confident enough, never.
    assert_eq!(stop(0, 100.0).nfe, 1);
    assert_eq!(stop(1, 1e-9).nfe, 8);
    let bad = AdaptiveStopping { stability_threshold: 1, confidence_threshold: 0.0 };
    assert!(sampler.with_adaptive_stopping(bad).is_err());
}

#[test]
fn a_stopped_row_stays_frozen_while_the_others_denoise_even_under_remasking() {
    // Row 0 is sure of every position, row 1 unsure: with a confidence threshold between their
    // entropies, row 0 stops at the second step and must keep its argmax while ReMDM goes on
    // remasking and redrawing row 1; the trajectory replays to the result.
    let device = Device::flex();
    let peaked = Tensor::<3>::random([1, 8, VOCAB], Distribution::Normal(0.0, 1.0), &device) * 30.0;
    let flat = Tensor::<3>::random([1, 8, VOCAB], Distribution::Normal(0.0, 0.1), &device);
    let model = Fixed::from_logits(Tensor::cat(vec![peaked, flat], 0));
    let argmax = values(model.log_probs.clone().argmax(2).reshape([2, 8]));
    let schedule = ScheduleKind::LogLinear(LogLinear::default());
    let remdm = ReMdm::new(schedule, ReMdmStrategy::Rescale { eta: 0.9 }).unwrap();
    let stopping = AdaptiveStopping { stability_threshold: 1, confidence_threshold: 1.0 };
    let sampler = MaskedSampler::new(Unmasking::ReMdm(remdm), 16)
        .unwrap()
        .with_proposal(TokenSampler::new(1.0).unwrap())
        .with_adaptive_stopping(stopping)
        .unwrap();
    let mut trajectory = Trajectory::default();
    let state = SamplerState::all_masked(&model, 2, 8).unwrap();
    let out = sampler
        .sample_observed(&model, state, &mut StdRng::seed_from_u64(2), &mut trajectory)
        .unwrap();
    let tokens = values(out.tokens);
    assert_eq!(tokens[..8], argmax[..8], "the stopped row holds its argmax");
    assert_eq!(trajectory.replay(), tokens);
    // Row 0 changes only at the first two steps; row 1 keeps being remasked after that.
    let steps: Vec<_> = trajectory.steps.iter().filter(|s| s.kind == StepKind::Denoise).collect();
    assert!(steps[2..].iter().all(|s| s.rows[0] == RowChanges::default()));
    assert!(steps[2..].iter().any(|s| !s.rows[1].remasked.is_empty()));
}
