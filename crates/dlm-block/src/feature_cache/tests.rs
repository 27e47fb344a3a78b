use burn::tensor::Distribution;
use dlm_core::backbone::{Denoiser, DenoiserConfig};
use dlm_core::host::int_values;
use dlm_core::sampling::{Confidence, TokenSampler};
use dlm_core::testing::randomised;
use dlm_discrete::sampler::Unmasking;
use rand::SeedableRng;

use super::*;

const MASK: u32 = 3;
const VOCAB: usize = 11;

fn model(device: &Device) -> Denoiser {
    randomised(
        DenoiserConfig::tokens(VOCAB, 32)
            .with_d_model(32)
            .with_n_heads(2)
            .with_n_layers(2)
            .init(device)
            .unwrap(),
        device,
    )
}

fn top1(steps: usize) -> MaskedSampler {
    MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, steps)
        .unwrap()
        .with_proposal(TokenSampler::new(1.0).unwrap())
}

#[test]
fn calls_follow_the_refresh_rule() {
    let settings = FeatureCacheSettings::new(3, 2, 0.25).unwrap();
    let (recompute, reuse) = (SegmentUpdate::Recompute, SegmentUpdate::Reuse);
    let verify = SegmentUpdate::Verify { rows: 2 }; // ⌊0.25 · 9⌋
    let expected = [
        (recompute, recompute), // call 1: everything
        (reuse, verify),
        (reuse, recompute),  // (3 − 1) mod 2 = 0
        (recompute, verify), // (4 − 1) mod 3 = 0
        (reuse, recompute),
        (reuse, verify),
        (recompute, recompute),
    ];
    for (step, (prompt, response)) in expected.into_iter().enumerate() {
        assert_eq!(
            settings.pass(step + 1, 9),
            FeaturePass { prompt, response },
            "call {}",
            step + 1
        );
    }
    // ρ = 0 reuses the response in between; ρ = 1 verifies all of it.
    let no_transfer = FeatureCacheSettings::new(3, 2, 0.0).unwrap();
    assert_eq!(no_transfer.pass(2, 9).response, reuse);
    let all = FeatureCacheSettings::new(3, 2, 1.0).unwrap();
    assert_eq!(all.pass(2, 9).response, SegmentUpdate::Verify { rows: 9 });
    // No caching recomputes everything at every call.
    for step in 1..10 {
        assert_eq!(FeatureCacheSettings::NONE.pass(step, 9), FeaturePass::FULL);
    }
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let message =
        |result: Result<FeatureCacheSettings, BlockError>| result.unwrap_err().to_string();
    assert!(message(FeatureCacheSettings::new(0, 1, 0.0)).contains("prompt_interval"));
    assert!(message(FeatureCacheSettings::new(1, 0, 0.0)).contains("response_interval"));
    for ratio in [-0.1, 1.5, f64::NAN] {
        assert!(message(FeatureCacheSettings::new(1, 1, ratio)).contains("transfer_ratio"));
    }
    let parsed: FeatureCacheSettings = serde_json::from_str(
        r#"{"prompt_interval": 100, "response_interval": 7, "transfer_ratio": 0.25}"#,
    )
    .unwrap();
    assert_eq!(parsed, FeatureCacheSettings::PAPER);
    let bad = serde_json::from_str::<FeatureCacheSettings>(
        r#"{"prompt_interval": 100, "response_interval": 7, "transfer_ratio": 2.0}"#,
    );
    assert!(bad.unwrap_err().to_string().contains("transfer_ratio"));
    let unknown = serde_json::from_str::<FeatureCacheSettings>(
        r#"{"prompt_interval": 1, "response_interval": 1, "transfer_ratio": 0.0, "rho": 1}"#,
    );
    assert!(unknown.unwrap_err().to_string().contains("rho"));
}

#[test]
fn without_caching_the_decoder_is_the_masked_sampler() {
    let device = Device::flex();
    device.seed(2);
    let model = model(&device);
    let denoiser = Subs { model: &model, mask_id: MASK };
    let prompt = Tensor::<2>::random([2, 4], Distribution::Uniform(4.0, 11.0), &device).int();
    // The head runs on the 12 generated rows, or on the 4 of the current block.
    for (sampler, head_rows) in [(top1(12), 12), (top1(6).with_block_length(4).unwrap(), 4)] {
        let decoder =
            FeatureCachedDecoder::new(sampler.clone(), FeatureCacheSettings::NONE).unwrap();
        let cached =
            decoder.decode(&denoiser, prompt.clone(), 12, &mut StdRng::seed_from_u64(9)).unwrap();
        let state = SamplerState::with_prompt(&denoiser, prompt.clone(), 12).unwrap();
        let plain = sampler.sample(&denoiser, state, &mut StdRng::seed_from_u64(9)).unwrap();
        assert_eq!(int_values(cached.tokens), int_values(plain.tokens));
        assert_eq!(cached.nfe, plain.nfe);
        // Every call is a full pass of 2 × 16 positions (two layers) plus the head on the rows
        // the policy reads.
        let (d, d_ff, len) = (32u64, 128u64, 16u64);
        let layer = 2 * 2 * len * (4 * d * d + 2 * d * d_ff + len * 2 * d);
        let head = 2 * 2 * head_rows * d * VOCAB as u64;
        assert_eq!(cached.flops, cached.nfe as u64 * (2 * layer + head));
    }
}

#[test]
fn caching_saves_arithmetic_and_still_decodes_every_position() {
    let device = Device::flex();
    device.seed(4);
    let model = model(&device);
    let denoiser = Subs { model: &model, mask_id: MASK };
    let prompt = Tensor::<2>::random([2, 8], Distribution::Uniform(4.0, 11.0), &device).int();
    let decode = |settings| {
        FeatureCachedDecoder::new(top1(16), settings)
            .unwrap()
            .decode(&denoiser, prompt.clone(), 16, &mut StdRng::seed_from_u64(1))
            .unwrap()
    };
    let reference = decode(FeatureCacheSettings::NONE);
    let paper = decode(FeatureCacheSettings::PAPER);
    let reuse_only = decode(FeatureCacheSettings::new(100, 4, 0.0).unwrap());
    for run in [&reference, &paper, &reuse_only] {
        assert_eq!(run.nfe, 16);
        let tokens = int_values(run.tokens.clone());
        assert!(tokens.iter().all(|&t| t != i64::from(MASK)));
        assert_eq!(tokens[..8], int_values(prompt.clone())[..8]);
    }
    assert!(paper.flops < reference.flops / 2, "{} vs {}", paper.flops, reference.flops);
    assert!(reuse_only.flops < paper.flops, "{} vs {}", reuse_only.flops, paper.flops);
}

#[test]
fn a_zero_length_generation_is_refused() {
    let device = Device::flex();
    let model = model(&device);
    let decoder = FeatureCachedDecoder::new(top1(4), FeatureCacheSettings::PAPER).unwrap();
    let prompt = Tensor::<2, Int>::zeros([1, 4], &device).add_scalar(5);
    let err = decoder
        .decode(&Subs { model: &model, mask_id: MASK }, prompt, 0, &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    assert!(err.to_string().contains("gen_len"), "{err}");
}
