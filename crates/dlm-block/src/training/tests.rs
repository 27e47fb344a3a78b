//! BD3LM training tests: vectorised = block by block, block size 1 = autoregressive, errors.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution};
use dlm_core::backbone::{DenoiserConfig, DenoiserIo};
use dlm_core::testing::randomised;
use dlm_discrete::subs_log_probs;
use dlm_sched::{LogLinear, Polynomial};
use rand::RngExt;

use super::*;
use dlm_sched::InvalidInput;

const VOCAB: usize = 11;
const MASK: u32 = 3;

fn model(device: &Device) -> Denoiser {
    let config =
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: false }, 32)
            .with_d_model(32)
            .with_n_heads(2)
            .with_n_layers(2);
    randomised(config.init(device).unwrap(), device)
}

fn tokens(batch: usize, seq_len: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<2>::random([batch, seq_len], Distribution::Uniform(4.0, VOCAB as f64), device).int()
}

/// The same loss computed block by block: block `b` runs after the clean blocks before it
/// with a block-causal mask, as at sampling time.
fn block_by_block(
    objective: &Bd3lm<LogLinear>,
    model: &Denoiser,
    x0: Tensor<2, Int>,
    block_times: &[f64],
    rng: &mut StdRng,
) -> f64 {
    let [batch, seq_len] = x0.dims();
    let device = x0.device();
    let bs = objective.block_size;
    let n_blocks = seq_len / bs;
    // Draw the masks exactly as `loss_at` does.
    let uniforms: Vec<f32> = (0..batch * seq_len).map(|_| rng.random::<f32>()).collect();
    let x0_host: Vec<i64> = x0.clone().into_data().iter::<i64>().collect();
    let schedule = LogLinear::default();
    let mut total = 0.0;
    for b in 0..batch {
        for j in 0..n_blocks {
            let t = block_times[b * n_blocks + j] as f32 as f64;
            let rate = schedule.one_minus_alpha(t);
            let weight = schedule.masked_elbo_weight(t);
            let mut z = x0_host[b * seq_len..(b + 1) * seq_len].to_vec();
            let masked: Vec<bool> = (j * bs..(j + 1) * bs)
                .map(|i| f64::from(uniforms[b * seq_len + i]) < rate)
                .collect();
            for (k, &m) in masked.iter().enumerate() {
                if m {
                    z[j * bs + k] = i64::from(MASK);
                }
            }
            let input: Vec<i64> = x0_host[b * seq_len..b * seq_len + j * bs]
                .iter()
                .chain(&z[j * bs..(j + 1) * bs])
                .copied()
                .collect();
            let len = input.len();
            let input = Tensor::<2, Int>::from_data(TensorData::new(input, [1, len]), &device);
            let mask = AttentionMask::block_causal(bs).unwrap();
            let logits = model.forward(DenoiserInput::tokens(input).with_mask(mask)).output.narrow(
                1,
                j * bs,
                bs,
            );
            let log_probs: Vec<f64> = log_softmax(
                logits.mask_fill(
                    Tensor::<1, Int>::arange(0..VOCAB as i64, &device)
                        .equal_elem(i64::from(MASK))
                        .reshape([1, 1, VOCAB])
                        .expand([1, bs, VOCAB]),
                    dlm_discrete::NEG_INFINITY,
                ),
                2,
            )
            .into_data()
            .iter::<f64>()
            .collect();
            for (k, &m) in masked.iter().enumerate() {
                if m {
                    let target = x0_host[b * seq_len + j * bs + k] as usize;
                    total += weight * -log_probs[k * VOCAB + target];
                }
            }
        }
    }
    total
}

#[test]
fn the_vectorised_loss_equals_the_block_by_block_loss() {
    let device = Device::flex();
    device.seed(2);
    let model = model(&device);
    for block_size in [1, 2, 4, 8] {
        let objective = Bd3lm::new(
            LogLinear::default(),
            MASK,
            block_size,
            TimeSampler::antithetic(1e-3).unwrap(),
        )
        .unwrap();
        let x0 = tokens(2, 8, &device);
        let times: Vec<f64> =
            (0..2 * 8 / block_size).map(|i| 0.1 + 0.8 * i as f64 / 16.0).collect();
        let vectorised =
            objective.loss_at(&model, x0.clone(), &times, &mut StdRng::seed_from_u64(5));
        let reference =
            block_by_block(&objective, &model, x0, &times, &mut StdRng::seed_from_u64(5));
        let got = vectorised.sum.into_scalar::<f64>();
        assert!(
            (got - reference).abs() < 1e-5 * reference.abs().max(1.0),
            "L′ = {block_size}: {got} vs {reference}"
        );
        assert!(reference > 0.0);
    }
}

#[test]
fn with_block_size_one_the_loss_is_the_autoregressive_nll_in_expectation() {
    // With α = 1 − t: E_t[w(t)·1{masked}] = 1 for every token, so the expected loss equals the
    // loss at t = 1 (everything masked, weight 1), the model's left-to-right NLL.
    let device = Device::flex();
    let model = model(&device);
    let schedule = Polynomial::new(1.0).unwrap();
    let objective = Bd3lm::new(schedule, MASK, 1, TimeSampler::antithetic(0.0).unwrap()).unwrap();
    let x0 = tokens(4, 8, &device);
    let mut rng = StdRng::seed_from_u64(0);
    let full = objective.loss_at(&model, x0.clone(), &[1.0; 32], &mut rng).sum.into_scalar::<f64>();
    let draws = 400;
    let mean: f64 = (0..draws)
        .map(|_| {
            let times = objective.draw_times(32, &mut rng);
            objective.loss_at(&model, x0.clone(), &times, &mut rng).sum.into_scalar::<f64>()
        })
        .sum::<f64>()
        / draws as f64;
    assert!((mean / full - 1.0).abs() < 0.05, "{mean} vs {full}");
}

#[test]
fn block_sizes_must_divide_and_models_must_not_read_time() {
    let device = Device::flex();
    let objective =
        Bd3lm::new(LogLinear::default(), MASK, 3, TimeSampler::antithetic(1e-3).unwrap()).unwrap();
    let model = model(&device);
    let data = |seq_len: usize| SequenceDataset::new(seq_len, MASK as usize, vec![1; 4 * seq_len]);
    let (eights, nines) = (data(8).unwrap(), data(9).unwrap());
    assert!(matches!(
        objective.check(&model, &eights),
        Err(BlockError::Invalid(InvalidInput { name: "seq_len", .. }))
    ));
    assert!(objective.check(&model, &nines).is_ok());
    assert!(Objective::<Denoiser>::check_data(&objective, &model, &eights).is_err());
    let timed = DenoiserConfig::tokens(VOCAB, 16)
        .with_d_model(16)
        .with_n_layers(1)
        .with_cond_dim(Some(16))
        .init(&device)
        .unwrap();
    assert!(matches!(
        objective.check(&timed, &nines),
        Err(BlockError::TimeConditionedModel { .. })
    ));
    assert!(
        Bd3lm::new(LogLinear::default(), MASK, 0, TimeSampler::antithetic(1e-3).unwrap()).is_err()
    );
}

#[test]
fn the_variance_search_ranks_candidates() {
    let device = Device::flex();
    let model = model(&device);
    let objective =
        Bd3lm::new(LogLinear::default(), MASK, 4, TimeSampler::antithetic(1e-3).unwrap()).unwrap();
    let data = dlm_core::data::SequenceDataset::new(
        8,
        VOCAB,
        tokens(16, 8, &device).into_data().iter::<i64>().map(|t| t as u32).collect(),
    )
    .unwrap();
    let ranked = objective
        .variance_search(&model, &data, &[(0.0, 1.0), (0.45, 0.95), (0.3, 0.8)], 2, 0)
        .unwrap();
    assert_eq!(ranked.len(), 3);
    assert!(ranked.windows(2).all(|w| w[0].variance <= w[1].variance));
    // U[0, 1] has the heavy 1/t tail; a clipped range is less variable.
    assert!(ranked[0].beta > 0.0, "{ranked:?}");
    assert!(objective.variance_search(&model, &data, &[(0.8, 0.3)], 1, 0).is_err());
}

#[test]
fn block_times_keep_one_per_stratum_in_a_random_order() {
    let objective =
        Bd3lm::new(LogLinear::default(), MASK, 4, TimeSampler::antithetic(0.0).unwrap()).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let n = 32;
    let mut ordered_draws = 0;
    for _ in 0..20 {
        let times = objective.draw_times(n, &mut rng);
        let mut strata: Vec<usize> = times.iter().map(|t| (t * n as f64) as usize).collect();
        ordered_draws += usize::from(strata.windows(2).all(|w| w[0] < w[1]));
        strata.sort_unstable();
        assert_eq!(strata, (0..n).collect::<Vec<_>>(), "one time per stratum");
    }
    assert_eq!(ordered_draws, 0, "times come in a random order");
}

#[test]
fn the_gradients_equal_those_of_subs_over_every_position() {
    use burn::optim::GradientsParams;
    use dlm_core::testing::{flat_gradients, max_relative_difference};
    let device = Device::flex().autodiff();
    let model = model(&device);
    let objective =
        Bd3lm::new(LogLinear::default(), MASK, 4, TimeSampler::antithetic(1e-3).unwrap()).unwrap();
    let (batch, seq_len) = (3, 16);
    let x0 = tokens(batch, seq_len, &device);
    let block_times: Vec<f64> = (0..batch * 4).map(|i| 0.1 + 0.07 * i as f64).collect();
    let fast = objective.loss_at(&model, x0.clone(), &block_times, &mut StdRng::seed_from_u64(5));
    // The same draws, scored with SUBS over every position of `x_t` and masked afterwards.
    let reference = {
        let mut rng = StdRng::seed_from_u64(5);
        let token_times: Vec<f32> = (0..batch * seq_len)
            .map(|i| block_times[(i / seq_len) * 4 + (i % seq_len) / 4] as f32)
            .collect();
        let t = Tensor::<1>::from_data(TensorData::new(token_times, [batch * seq_len]), &device);
        let schedule = LogLinear::default();
        let rate = schedule.one_minus_alpha_tensor(t.clone()).reshape([batch, seq_len]);
        let weight = schedule.masked_elbo_weight_tensor(t).reshape([batch, seq_len]);
        let uniforms: Vec<f32> = (0..batch * seq_len).map(|_| rng.random::<f32>()).collect();
        let is_masked =
            Tensor::<2>::from_data(TensorData::new(uniforms, [batch, seq_len]), &device)
                .lower(rate);
        let z_t = x0.clone().mask_fill(is_masked.clone(), MASK as i64);
        let both = Tensor::cat(vec![z_t.clone(), x0.clone()], 1);
        let mask = Bd3lmMask::new(4, seq_len).unwrap().attention();
        let logits =
            model.forward(DenoiserInput::tokens(both).with_mask(mask)).output.narrow(1, 0, seq_len);
        let nll = subs_log_probs(logits, z_t, MASK)
            .gather(2, x0.unsqueeze_dim(2))
            .squeeze_dim::<2>(2)
            .neg();
        (nll * weight).mask_fill(is_masked.bool_not(), 0.0).sum()
    };
    let (a, b) = (fast.sum.clone().into_scalar::<f64>(), reference.clone().into_scalar::<f64>());
    assert!(b > 1.0 && (a / b - 1.0).abs() < 1e-6, "loss {a} vs {b}");
    let grads = |loss: Tensor<1>| {
        flat_gradients(&model, &GradientsParams::from_grads(loss.backward(), &model))
    };
    let difference = max_relative_difference(&grads(fast.sum), &grads(reference));
    assert!(difference < 1e-5, "gradients differ by {difference}");
}
