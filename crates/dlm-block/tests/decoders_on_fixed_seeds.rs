//! The decoders' tokens and model calls on fixed seeds, recorded before they were rewritten as
//! one driver (`MaskedSampler`'s step loop) composed with views of the model: the rewrite must
//! not change what a seed gives where the draws are the same (the Fast-dLLM decoder in every
//! cache mode, the BD3LM sampler on whole blocks, the whole-sequence sampler without a prompt).
//!
//! The values are the flex backend's and hold with and without its SIMD kernels (the workspace
//! build and this crate's alone). The entropy bound is left out: its choice sums entropies and
//! flips between those two builds.

use burn::tensor::{Device, Int, Tensor};
use dlm_block::{BlockSampler, BlockwiseDecoder, CacheMode, Prefix};
use dlm_core::backbone::{Denoiser, DenoiserConfig};
use dlm_core::host::int_values;
use dlm_core::sampling::{Confidence, TokenSampler};
use dlm_core::testing::randomised;
use dlm_discrete::Subs;
use dlm_discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm_sched::{LogLinear, ScheduleKind};
use rand::SeedableRng;
use rand::rngs::StdRng;

const VOCAB: usize = 11;
const MASK: u32 = 3;

fn model(device: &Device) -> Denoiser {
    let config =
        DenoiserConfig::tokens(VOCAB, 32).with_d_model(32).with_n_heads(2).with_n_layers(2);
    randomised(config.init(device).unwrap(), device)
}

fn policies() -> Vec<(&'static str, MaskedSampler)> {
    let hot = TokenSampler::new(1.0).unwrap();
    let ancestral =
        Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(LogLinear::default()) };
    vec![
        ("ancestral", MaskedSampler::new(ancestral, 5).unwrap()),
        (
            "top-k",
            MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 2).unwrap(),
        ),
        ("random", MaskedSampler::new(Unmasking::Random, 3).unwrap()),
        (
            "threshold",
            MaskedSampler::new(Unmasking::threshold(Confidence::TokenProbability, 0.3).unwrap(), 1)
                .unwrap(),
        ),
    ]
    .into_iter()
    .map(|(name, sampler)| (name, sampler.with_proposal(hot)))
    .collect()
}

/// What [`record`] gave before the rewrite (flex backend).
const RECORDED: &[&str] = &[
    "whole ancestral: [6, 7, 1, 9, 6, 4, 5, 7, 5, 8, 10, 2, 7, 7, 5, 2] nfe 5",
    "bd3lm ancestral Cached { window: None }: [10, 7, 5, 4, 7, 5, 8, 8, 2, 5, 8, 8, 7, 7, 0, 4] nfe 12",
    "bd3lm ancestral Recomputed: [10, 7, 5, 4, 7, 5, 8, 8, 2, 5, 8, 8, 7, 7, 0, 4] nfe 10",
    "whole top-k: [4, 2, 9, 1, 0, 10, 0, 10, 0, 6, 8, 0, 9, 6, 10, 4] nfe 2",
    "bd3lm top-k Cached { window: None }: [2, 8, 5, 10, 6, 9, 4, 4, 5, 1, 7, 4, 1, 5, 9, 2] nfe 6",
    "bd3lm top-k Recomputed: [2, 8, 5, 10, 6, 9, 4, 4, 5, 1, 7, 4, 1, 5, 9, 2] nfe 4",
    "fast-dllm top-k None: [5, 9, 4, 6, 9, 9, 0, 9, 5, 7, 1, 7, 7, 10, 9, 10, 8, 10, 6, 8, 7, 6] nfe 4 positions 88",
    "fast-dllm top-k Prefix: [5, 9, 4, 6, 9, 9, 0, 9, 5, 7, 1, 7, 7, 10, 9, 10, 8, 10, 6, 8, 7, 6] nfe 4 positions 68",
    "fast-dllm top-k Dual: [5, 9, 4, 6, 9, 9, 0, 9, 5, 7, 1, 7, 7, 10, 9, 10, 8, 10, 6, 8, 7, 6] nfe 4 positions 60",
    "whole random: [6, 7, 1, 0, 0, 2, 5, 7, 0, 8, 1, 7, 0, 5, 5, 2] nfe 3",
    "bd3lm random Cached { window: None }: [2, 9, 5, 8, 10, 8, 8, 4, 4, 5, 9, 8, 8, 5, 8, 8] nfe 8",
    "bd3lm random Recomputed: [2, 9, 5, 8, 10, 8, 8, 4, 4, 5, 9, 8, 8, 5, 8, 8] nfe 6",
    "fast-dllm random None: [5, 9, 4, 6, 5, 5, 5, 1, 0, 7, 1, 7, 7, 10, 5, 10, 9, 6, 5, 8, 10, 1] nfe 6 positions 132",
    "fast-dllm random Prefix: [5, 9, 4, 6, 5, 10, 5, 1, 0, 7, 1, 7, 7, 10, 5, 10, 9, 6, 5, 8, 10, 1] nfe 6 positions 92",
    "fast-dllm random Dual: [5, 9, 4, 6, 5, 10, 5, 1, 0, 7, 1, 7, 7, 10, 5, 10, 9, 6, 5, 8, 10, 1] nfe 6 positions 76",
    "whole threshold: [6, 8, 5, 7, 6, 4, 2, 6, 6, 8, 8, 5, 5, 8, 5, 5] nfe 8",
    "bd3lm threshold Cached { window: None }: [10, 8, 5, 5, 5, 10, 8, 8, 4, 5, 8, 8, 8, 10, 6, 8] nfe 10",
    "bd3lm threshold Recomputed: [10, 8, 5, 5, 5, 10, 8, 8, 4, 5, 8, 8, 8, 10, 6, 8] nfe 8",
    "fast-dllm threshold None: [5, 9, 4, 5, 5, 7, 5, 6, 8, 5, 5, 7, 7, 10, 6, 10, 8, 1, 5, 5, 5, 0] nfe 8 positions 176",
    "fast-dllm threshold Prefix: [5, 9, 4, 5, 5, 7, 5, 6, 8, 5, 5, 7, 7, 10, 6, 10, 8, 1, 5, 5, 5, 0] nfe 8 positions 116",
    "fast-dllm threshold Dual: [5, 9, 4, 5, 5, 7, 5, 6, 8, 5, 5, 7, 7, 10, 0, 10, 8, 6, 5, 7, 5, 5] nfe 8 positions 92",
];

/// One line per decoder and policy: tokens and model calls.
fn record() -> Vec<String> {
    let device = Device::flex();
    device.seed(21);
    let model = model(&device);
    let subs = Subs { model: &model, mask_id: MASK };
    let prompt = Tensor::<2, Int>::from_ints([[5, 9, 4], [7, 7, 10]], &device);
    let mut lines = Vec::new();
    for (name, sampler) in policies() {
        let state = SamplerState::all_masked(&subs, 2, 8).unwrap();
        let out = sampler.sample(&subs, state, &mut StdRng::seed_from_u64(11)).unwrap();
        lines.push(format!("whole {name}: {:?} nfe {}", int_values(out.tokens), out.nfe));
        let block = BlockSampler::new(sampler.clone(), 4, MASK).unwrap();
        for prefix in [Prefix::Cached { window: None }, Prefix::Recomputed] {
            let out = block
                .generate(&model, None, 2, 2, None, prefix, &mut StdRng::seed_from_u64(12))
                .unwrap();
            lines.push(format!(
                "bd3lm {name} {prefix:?}: {:?} nfe {}",
                int_values(out.tokens),
                out.nfe
            ));
        }
        if sampler.unmasking().walks_time() {
            continue;
        }
        let decoder = BlockwiseDecoder::new(sampler, 4).unwrap();
        for mode in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
            let out = decoder
                .decode(&subs, prompt.clone(), 8, mode, &mut StdRng::seed_from_u64(13))
                .unwrap();
            lines.push(format!(
                "fast-dllm {name} {mode:?}: {:?} nfe {} positions {}",
                int_values(out.tokens),
                out.nfe,
                out.positions_processed
            ));
        }
    }
    lines
}

#[test]
fn decoders_give_the_recorded_tokens() {
    let lines = record();
    assert_eq!(lines.len(), RECORDED.len());
    for (line, recorded) in lines.iter().zip(RECORDED) {
        assert_eq!(line, recorded);
    }
}
