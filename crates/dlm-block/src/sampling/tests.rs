//! BD3LM sampling tests: the cache is exact, eos stops, windows go past the context.

use burn::tensor::{Device, Distribution};
use dlm_core::backbone::DenoiserConfig;
use dlm_core::sampling::{Confidence, TokenSampler};
use dlm_core::testing::randomised;
use dlm_discrete::sampler::Unmasking;
use dlm_sched::{LogLinear, ScheduleKind};
use rand::SeedableRng;

use super::*;

const VOCAB: usize = 11;
const MASK: u32 = 3;
const BS: usize = 4;

fn model(device: &Device) -> Denoiser {
    let config =
        DenoiserConfig::tokens(VOCAB, 32).with_d_model(32).with_n_heads(2).with_n_layers(2);
    randomised(config.init(device).unwrap(), device)
}

fn samplers() -> Vec<BlockSampler> {
    let proposal = TokenSampler::new(1.0).unwrap();
    let ancestral =
        Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(LogLinear::default()) };
    let top_k = Unmasking::TopK { confidence: Confidence::TokenProbability };
    [MaskedSampler::new(ancestral, 6).unwrap(), MaskedSampler::new(top_k, 2).unwrap()]
        .into_iter()
        .map(|inner| BlockSampler::new(inner.with_proposal(proposal), BS, MASK).unwrap())
        .collect()
}

fn values(t: Tensor<2, Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

#[test]
fn the_cached_prefix_gives_the_logits_and_tokens_of_recomputation() {
    let device = Device::flex();
    device.seed(3);
    let model = model(&device);
    // Logits of one partly masked block after a clean prefix of three blocks.
    let prefix =
        Tensor::<2>::random([2, 3 * BS], Distribution::Uniform(4.0, VOCAB as f64), &device).int();
    let block = Tensor::<2, Int>::from_ints([[5, 3, 3, 7], [3, 3, 9, 3]], &device);
    let sampler = &samplers()[1];
    let cache = sampler.extend(&model, None, prefix.clone(), 0, None);
    let cached = CachedBlock {
        model: &model,
        cache: Some(&cache),
        start: 3 * BS,
        block_size: BS,
        mask_id: MASK,
    };
    let recomputed =
        RecomputedBlock { model: &model, prefix: Some(&prefix), block_size: BS, mask_id: MASK };
    let t = Tensor::<1>::from_floats([0.5, 0.5], &device);
    let diff = (cached.log_probs(block.clone(), t.clone()) - recomputed.log_probs(block, t))
        .abs()
        .max()
        .into_scalar::<f64>();
    assert!(diff < 1e-4, "{diff}");

    for sampler in samplers() {
        let prompt =
            Tensor::<2>::random([2, BS], Distribution::Uniform(4.0, VOCAB as f64), &device).int();
        let run = |prefix: Prefix| {
            sampler
                .generate(
                    &model,
                    Some(prompt.clone()),
                    2,
                    5,
                    None,
                    prefix,
                    &mut StdRng::seed_from_u64(9),
                )
                .unwrap()
        };
        let (with_cache, without) = (run(Prefix::Cached { window: None }), run(Prefix::Recomputed));
        assert_eq!(values(with_cache.tokens.clone()), values(without.tokens));
        assert_eq!(with_cache.tokens.dims(), [2, 6 * BS]);
        assert_eq!(values(with_cache.tokens.clone().narrow(1, 0, BS)), values(prompt));
        assert!(values(with_cache.tokens).iter().all(|&t| t != i64::from(MASK)));
        // The cache costs one pass for the prompt and one per block.
        assert_eq!(with_cache.nfe, without.nfe + 1 + 5);
    }
}

#[test]
fn the_objective_hands_its_sampler_its_block_size_and_mask() {
    // The sampler built from a BD3LM objective masks with the objective's token in blocks of
    // its size: it generates what the sampler written out by hand generates.
    let device = Device::flex();
    let model = model(&device);
    let bd3lm = crate::Bd3lm::new(
        LogLinear::default(),
        MASK,
        BS,
        dlm_sched::TimeSampler::uniform(1e-3).unwrap(),
    )
    .unwrap();
    let inner = MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 2).unwrap();
    let by_hand = BlockSampler::new(inner.clone(), BS, MASK).unwrap();
    let from_objective = bd3lm.sampler(inner);
    let run = |sampler: &BlockSampler| {
        let out = sampler
            .generate(&model, None, 2, 3, None, Prefix::Recomputed, &mut StdRng::seed_from_u64(4))
            .unwrap();
        (values(out.tokens), out.nfe, out.blocks)
    };
    let (tokens, nfe, blocks) = run(&from_objective);
    assert_eq!((tokens.clone(), nfe, blocks), run(&by_hand));
    assert_eq!((tokens.len(), blocks, nfe), (2 * 3 * BS, 3, 3 * 2));
    assert!(tokens.iter().all(|&t| t != i64::from(MASK)));
}

#[test]
fn generation_stops_at_eos_and_pads_after_it() {
    let device = Device::flex();
    let model = model(&device);
    let sampler = &samplers()[1];
    let free = sampler
        .generate(&model, None, 1, 4, None, Prefix::Recomputed, &mut StdRng::seed_from_u64(1))
        .unwrap();
    let tokens = values(free.tokens);
    // Take a token of the second block as the end of sequence.
    let eos = tokens[BS + 1] as u32;
    let first = tokens.iter().position(|&t| t == i64::from(eos)).unwrap();
    let stopped = sampler
        .generate(&model, None, 1, 4, Some(eos), Prefix::Recomputed, &mut StdRng::seed_from_u64(1))
        .unwrap();
    assert_eq!(stopped.blocks, first / BS + 1);
    let got = values(stopped.tokens);
    assert_eq!(&got[..first], &tokens[..first]);
    assert!(got[first..].iter().all(|&t| t == i64::from(eos)));
}

#[test]
fn an_eos_in_the_prompt_ends_nothing() {
    let device = Device::flex();
    let eos = 9;
    let tokens =
        Tensor::<2, Int>::from_ints([[4, 9, 5, 6, 7, 9, 8, 5], [4, 5, 6, 7, 8, 5, 6, 7]], &device);
    let padded = values(pad_after_eos(tokens, eos, BS));
    assert_eq!(padded, vec![4, 9, 5, 6, 7, 9, 9, 9, 4, 5, 6, 7, 8, 5, 6, 7]);
}

#[test]
fn a_sliding_window_generates_past_the_context() {
    let device = Device::flex();
    let model = model(&device); // trained context: 32 positions
    let sampler = &samplers()[1];
    let out = sampler
        .generate(
            &model,
            None,
            1,
            16,
            None,
            Prefix::Cached { window: Some(16) },
            &mut StdRng::seed_from_u64(2),
        )
        .unwrap();
    assert_eq!(out.tokens.dims(), [1, 64]);
    assert!(values(out.tokens).iter().all(|&t| t != i64::from(MASK)));
}

#[test]
fn bad_requests_are_rejected() {
    let device = Device::flex();
    let model = model(&device);
    let sampler = &samplers()[1];
    let mut rng = StdRng::seed_from_u64(0);
    let two_rows = Tensor::<2, Int>::from_ints([[5, 6, 7], [5, 6, 7]], &device);
    assert!(
        sampler.generate(&model, Some(two_rows), 1, 2, None, Prefix::Recomputed, &mut rng).is_err()
    );
    assert!(
        sampler
            .generate(&model, None, 1, 2, None, Prefix::Cached { window: Some(6) }, &mut rng)
            .is_err()
    );
    assert!(sampler.generate(&model, None, 1, 0, None, Prefix::Recomputed, &mut rng).is_err());
    let timed = DenoiserConfig::tokens(VOCAB, 16)
        .with_d_model(16)
        .with_n_layers(1)
        .with_cond_dim(Some(16))
        .init(&device)
        .unwrap();
    assert!(matches!(
        sampler.generate(&timed, None, 1, 1, None, Prefix::Recomputed, &mut rng),
        Err(BlockError::TimeConditionedModel { .. })
    ));
    assert!(BlockSampler::new(MaskedSampler::new(Unmasking::Random, 1).unwrap(), 0, MASK).is_err());
}
