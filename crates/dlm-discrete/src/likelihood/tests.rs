use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::backbone::DenoiserConfig;
use dlm_core::data::{MarkovSource, MarkovSourceConfig};
use dlm_core::testing::randomised;
use dlm_core::tokenizer::SpecialTokens;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::{MarkovBayes, Subs};

const LEN: usize = 14;

fn source() -> MarkovSource {
    MarkovSource::new(MarkovSourceConfig { n_symbols: 5, order: 2, branching: 3, seed: 3 }).unwrap()
}

fn bayes(source: &MarkovSource) -> MarkovBayes<'_> {
    MarkovBayes { source, mask_id: SpecialTokens::reserved().mask, device: Device::flex() }
}

fn sample(source: &MarkovSource, seed: u64) -> Vec<u32> {
    source.sample(LEN, &mut StdRng::seed_from_u64(seed))
}

#[test]
fn the_chain_of_the_exact_denoiser_is_the_exact_log_probability_of_every_suffix() {
    // With the exact posterior, `log p(x_i | x_<i)` summed from any split point `c` is
    // `ln p(x) − ln p(x_<c)`; reading the prediction one position off, or with the token itself
    // visible, breaks it. Padding to whole blocks (masks past the end) marginalises them.
    let source = source();
    let model = bayes(&source);
    let x = sample(&source, 1);
    for block_size in [None, Some(4), Some(5)] {
        let scorer = TokenLikelihoods::new(block_size, 5, 3).unwrap();
        let chain = scorer
            .score(&model, &x, LikelihoodSplit::Chain { from: 0 }, &mut StdRng::seed_from_u64(0))
            .unwrap();
        assert_eq!((chain.rows, chain.calls), (LEN, 3));
        for c in 0..LEN {
            let suffix: f64 = chain.logprobs[c..].iter().map(|l| l.unwrap()).sum();
            let exact = source.log_prob(&x) - source.log_prob(&x[..c]);
            assert!((suffix - exact).abs() < 1e-4, "{block_size:?}, c = {c}: {suffix} vs {exact}");
        }
        // Each position's alternatives are the model's distribution there: they sum to 1 over
        // the vocabulary, the best first, the scored token's value among them when it is best.
        let all = TokenLikelihoods::new(block_size, 16, 1000).unwrap();
        let full = all.score(
            &model,
            &x,
            LikelihoodSplit::Chain { from: 0 },
            &mut StdRng::seed_from_u64(0),
        );
        for (i, top) in full.unwrap().top.iter().enumerate() {
            let mass: f64 = top.iter().map(|(_, l)| l.exp()).sum();
            assert!((mass - 1.0).abs() < 1e-4, "position {i}: mass {mass}");
            assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
            let own = top.iter().find(|(t, _)| *t == x[i]).unwrap().1;
            assert!((own - chain_value(&chain, i)).abs() < 1e-6);
        }
    }
}

fn chain_value(chain: &TokenLikelihood, i: usize) -> f64 {
    chain.logprobs[i].unwrap()
}

#[test]
fn the_nelbo_of_the_exact_denoiser_is_unbiased_for_the_conditional_log_probability() {
    // For the exact posterior the bound is tight: E[(L/l) Σ_{i∈M} log p(x_i | x∖M)] is
    // `ln p(x_c.. | x_<c)` (the any-order chain rule averaged over orders). A weight of `l/L`
    // instead of `L/l`, an `l` drawn from `0..L` or a mask that leaks the context moves the mean
    // by far more than the 4 standard errors allowed (about 0.3 nats of 10).
    let source = source();
    let model = bayes(&source);
    let x = sample(&source, 2);
    let context = 4;
    let exact = source.log_prob(&x) - source.log_prob(&x[..context]);
    for block_size in [None, Some(4)] {
        let scorer = TokenLikelihoods::new(block_size, 64, 0).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let estimates: Vec<f64> = (0..300)
            .map(|_| {
                let split = LikelihoodSplit::Nelbo { context, samples: 4 };
                let nelbo = scorer.score(&model, &x, split, &mut rng).unwrap();
                assert!(nelbo.logprobs[..context].iter().all(Option::is_none));
                assert!(nelbo.logprobs[context..].iter().all(Option::is_some));
                nelbo.total()
            })
            .collect();
        let n = estimates.len() as f64;
        let mean = estimates.iter().sum::<f64>() / n;
        let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let se = (var / n).sqrt();
        assert!(
            (mean - exact).abs() < 4.0 * se + 1e-3,
            "{block_size:?}: mean {mean} ± {se}, exact {exact}"
        );
        // The draws are not all the same number: the test sees the masks' noise.
        assert!(se > 1e-3, "{block_size:?}: standard error {se}");
    }
}

#[test]
fn a_one_token_continuation_is_scored_exactly_by_both_splits() {
    // With one token to score every mask is that token: the NELBO is `log p(x_last | x_<last)`,
    // the chain's last term, whatever the draw.
    let source = source();
    let model = bayes(&source);
    let x = sample(&source, 3);
    let scorer = TokenLikelihoods::new(None, 8, 2).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let chain = scorer.score(&model, &x, LikelihoodSplit::Chain { from: 0 }, &mut rng).unwrap();
    let split = LikelihoodSplit::Nelbo { context: LEN - 1, samples: 1 };
    let nelbo = scorer.score(&model, &x, split, &mut rng).unwrap();
    let (a, b) = (chain_value(&chain, LEN - 1), nelbo.logprobs[LEN - 1].unwrap());
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    assert_eq!(chain.top[LEN - 1], nelbo.top[LEN - 1]);
}

#[test]
fn stratified_counts_lie_in_range_and_their_windows_cover_every_position() {
    for len in 1..=80 {
        for samples in 1..=8 {
            for k in 1..=len {
                let counts = stratified_mask_counts(k, len, samples);
                assert!(counts.iter().all(|&l| (1..=len).contains(&l)), "{k} {len} {samples}");
                if samples >= len.min(3) {
                    assert!(counts.iter().sum::<usize>() >= len, "{k} {len} {samples}: {counts:?}");
                }
            }
        }
    }
    // `samples = len` draws every count once.
    let mut counts = stratified_mask_counts(3, 7, 7);
    counts.sort_unstable();
    assert_eq!(counts, (1..=7).collect::<Vec<_>>());
}

#[test]
fn subs_reads_the_same_rows_as_its_full_log_probabilities() {
    let device = Device::flex();
    let model = randomised(
        DenoiserConfig::tokens(9, 8)
            .with_d_model(16)
            .with_n_heads(2)
            .with_n_layers(1)
            .init(&device)
            .unwrap(),
        &device,
    );
    let subs = Subs { model: &model, mask_id: 8 };
    let z_t = Tensor::<2, Int>::from_ints([[1, 8, 3, 8], [8, 8, 2, 5]], &device);
    let t = Tensor::<1>::from_floats([0.5, 0.5], &device);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 3, 4, 5], [4]), &device);
    let fast: Vec<f32> =
        subs.row_log_probs(z_t.clone(), t.clone(), rows.clone()).into_data().iter().collect();
    let full = subs.log_probs(z_t, t).reshape([8, 9]).select(0, rows);
    let full: Vec<f32> = full.into_data().iter().collect();
    assert!(fast.iter().zip(&full).all(|(a, b)| (a - b).abs() < 1e-5));
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let source = source();
    let model = bayes(&source);
    let x = sample(&source, 4);
    let scorer = TokenLikelihoods::new(None, 4, 1).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let field = |result: Result<TokenLikelihood, DiscreteError>| match result {
        Err(DiscreteError::Invalid(invalid)) => invalid.name,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(scorer.score(&model, &[], LikelihoodSplit::Chain { from: 0 }, &mut rng)),
        "tokens"
    );
    let mut masked = x.clone();
    masked[2] = model.mask_id;
    assert_eq!(
        field(scorer.score(&model, &masked, LikelihoodSplit::Chain { from: 0 }, &mut rng)),
        "tokens"
    );
    let mut foreign = x.clone();
    foreign[0] = 10_000;
    assert_eq!(
        field(scorer.score(&model, &foreign, LikelihoodSplit::Chain { from: 0 }, &mut rng)),
        "tokens"
    );
    let all_context = LikelihoodSplit::Nelbo { context: LEN, samples: 8 };
    assert_eq!(field(scorer.score(&model, &x, all_context, &mut rng)), "context");
    let too_few = LikelihoodSplit::Nelbo { context: 0, samples: 2 };
    assert_eq!(field(scorer.score(&model, &x, too_few, &mut rng)), "samples");
    assert!(TokenLikelihoods::new(Some(0), 4, 1).is_err());
    assert!(TokenLikelihoods::new(None, 0, 1).is_err());
}

#[test]
fn the_chain_from_a_position_scores_only_from_there_and_batches_bound_their_picks() {
    let source = source();
    let model = bayes(&source);
    let x = sample(&source, 6);
    let scorer = TokenLikelihoods::new(None, 4, 2).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let all = scorer.score(&model, &x, LikelihoodSplit::Chain { from: 0 }, &mut rng).unwrap();
    let tail = scorer.score(&model, &x, LikelihoodSplit::Chain { from: 5 }, &mut rng).unwrap();
    assert_eq!(tail.rows, LEN - 5);
    assert!(tail.logprobs[..5].iter().all(Option::is_none));
    assert_eq!(tail.logprobs[5..], all.logprobs[5..]);
    // Rows of 300, 300, 10, 600 and 1 scored positions, at most 512 per call unless one row has
    // more: four calls.
    let row = |picks: usize| Row { tokens: vec![], scored: vec![(0, 1.0); picks] };
    let rows: Vec<Row> = [300, 300, 10, 600, 1].into_iter().map(row).collect();
    let sizes: Vec<usize> = batches(&rows, 16, 512).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, vec![1, 2, 1, 1]);
    let sizes: Vec<usize> = batches(&rows, 1, 10_000).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, vec![1; 5]);
}
