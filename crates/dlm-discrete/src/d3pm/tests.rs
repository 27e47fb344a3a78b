//! D3PM tests: closed forms against explicit matrices, the posterior against Bayes' rule, the MI
//! schedule, the loss and the sampler.

use burn::tensor::Device;
use dlm_core::backbone::{DenoiserConfig, DenoiserIo};
use dlm_core::testing::randomised;
use rand::SeedableRng;

use super::*;

const V: usize = 5;
const MASK: u32 = 4;

fn d3pm(transition: Transition) -> D3pm {
    let schedule = DiscreteSchedule::from_betas(vec![0.1, 0.3, 0.2, 0.5]).unwrap();
    D3pm::new(transition, schedule, V, 0.0).unwrap()
}

/// The textbook matrices: `Q_t` from `β_t` and `Q̄_t` from `ᾱ_t`, built independently.
fn q_matrix(transition: Transition, beta: f64) -> Vec<Vec<f64>> {
    (0..V)
        .map(|j| {
            (0..V)
                .map(|k| {
                    let identity = if j == k { 1.0 - beta } else { 0.0 };
                    identity
                        + match transition {
                            Transition::Uniform => beta / V as f64,
                            Transition::Absorbing { mask_id } => {
                                if k == mask_id as usize {
                                    beta
                                } else {
                                    0.0
                                }
                            }
                        }
                })
                .collect()
        })
        .collect()
}

fn matmul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..V).map(|i| (0..V).map(|k| (0..V).map(|j| a[i][j] * b[j][k]).sum()).collect()).collect()
}

fn host(t: Tensor<3>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

#[test]
fn closed_form_marginals_equal_the_product_of_transitions() {
    let device = Device::flex();
    for transition in [Transition::Uniform, Transition::Absorbing { mask_id: MASK }] {
        let d = d3pm(transition);
        let mut product = q_matrix(transition, 0.0);
        for step in 1..=d.steps() {
            product = matmul(&product, &q_matrix(transition, d.beta(step)));
            // Row j of Q̄_t from the implementation's marginal of onehot(j).
            let rows = Tensor::<1, Int>::arange(0..V as i64, &device).reshape([1, V]);
            let q_bar = host(
                d.marginal(rows.one_hot::<3>(V).float(), floats(&[d.alpha_bar(step)], &device)),
            );
            for j in 0..V {
                for k in 0..V {
                    assert!(
                        (q_bar[j * V + k] - product[j][k]).abs() < 1e-6,
                        "{transition:?} step {step}"
                    );
                }
            }
            // And Q_t's column for each x_t from the implementation's likelihood.
            let x_t = Tensor::<1, Int>::arange(0..V as i64, &device).reshape([1, V]);
            let columns = host(d.likelihood_of_x_t(x_t, floats(&[d.beta(step)], &device)));
            let q = q_matrix(transition, d.beta(step));
            for x in 0..V {
                for k in 0..V {
                    assert!((columns[x * V + k] - q[k][x]).abs() < 1e-6);
                }
            }
        }
    }
}

#[test]
fn posterior_equals_bayes_rule() {
    let device = Device::flex();
    for transition in [Transition::Uniform, Transition::Absorbing { mask_id: MASK }] {
        let d = d3pm(transition);
        for step in 2..=d.steps() {
            let q_t = q_matrix(transition, d.beta(step));
            let mut q_bar_previous = q_matrix(transition, 0.0);
            for i in 1..step {
                q_bar_previous = matmul(&q_bar_previous, &q_matrix(transition, d.beta(i)));
            }
            let q_bar = matmul(&q_bar_previous, &q_t);
            for x0 in 0..V - 1 {
                for x_t in 0..V {
                    if q_bar[x0][x_t] == 0.0 {
                        continue; // x_t impossible from x0
                    }
                    let x_t_tensor = Tensor::<2, Int>::from_data(
                        TensorData::new(vec![x_t as i64], [1, 1]),
                        &device,
                    );
                    let x0_tensor = Tensor::<2, Int>::from_data(
                        TensorData::new(vec![x0 as i64], [1, 1]),
                        &device,
                    );
                    let got = host(
                        d.reverse_log_probs(x_t_tensor, x0_tensor.one_hot::<3>(V).float(), &[step])
                            .exp(),
                    );
                    let sum: f64 = got.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5);
                    for k in 0..V {
                        let bayes = q_t[k][x_t] * q_bar_previous[x0][k] / q_bar[x0][x_t];
                        assert!(
                            (got[k] - bayes).abs() < 1e-5,
                            "{transition:?} t={step} x0={x0} x_t={x_t} k={k}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn mutual_information_schedule_reduces_to_the_absorbing_one() {
    let frequencies = [5.0, 1.0, 3.0, 0.5, 0.0];
    let mi = mutual_information_schedule(Transition::Absorbing { mask_id: MASK }, &frequencies, 10)
        .unwrap();
    let reference = DiscreteSchedule::absorbing_mutual_information(10).unwrap();
    for (a, b) in mi.grid_alphas().iter().zip(reference.grid_alphas()) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    // Uniform transitions: decreasing ᾱ, not the absorbing line.
    let uniform = mutual_information_schedule(Transition::Uniform, &frequencies, 10).unwrap();
    let alphas = uniform.grid_alphas();
    assert!(alphas.windows(2).all(|w| w[1] < w[0]));
    assert_eq!(alphas[10], 0.0);
    assert!((0..=10).any(|i| (alphas[i] - (1.0 - i as f64 / 10.0)).abs() > 0.01));
    assert!(mutual_information_schedule(Transition::Uniform, &[1.0, 0.0], 10).is_err());
    assert!(mutual_information_schedule(Transition::Uniform, &frequencies, 0).is_err());
}

#[test]
fn training_lowers_the_loss_and_sampling_leaves_no_mask() {
    let device = Device::flex().autodiff();
    let config =
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: V, tie_embeddings: false }, 8)
            .with_d_model(16)
            .with_n_heads(2)
            .with_n_layers(1)
            .with_cond_dim(Some(16));
    let model = config.init(&device).unwrap();
    let schedule = DiscreteSchedule::absorbing_mutual_information(20).unwrap();
    let d = D3pm::new(Transition::Absorbing { mask_id: MASK }, schedule, V, 0.01).unwrap();
    // Constant sequences of one token: easy to learn.
    let data = dlm_core::data::SequenceDataset::new(8, V, vec![1; 8 * 32]).unwrap();
    let train_config = dlm_core::train::TrainConfig::new(40, 16).with_learning_rate(1e-2);
    let mut trainer = dlm_core::train::Trainer::new(train_config, model, d.clone()).unwrap();
    let first = trainer.step(&data).unwrap().loss;
    let mut last = first;
    while !trainer.is_done() {
        last = trainer.step(&data).unwrap().loss;
    }
    assert!(last < first / 2.0, "{first} -> {last}");
    let model = trainer.eval_model();
    let samples =
        d.sample(&model, 3, 8, &TokenSampler::new(1.0).unwrap(), &mut StdRng::seed_from_u64(0));
    let tokens: Vec<i64> = samples.into_data().iter::<i64>().collect();
    assert!(tokens.iter().all(|&t| t != i64::from(MASK)), "{tokens:?}");
    let ones = tokens.iter().filter(|&&t| t == 1).count();
    assert!(ones > tokens.len() / 2, "{tokens:?}");
    // And a random model too leaves no mask.
    let random = randomised(config.init(&Device::flex()).unwrap(), &Device::flex());
    let tokens: Vec<i64> = d
        .sample(&random, 2, 8, &TokenSampler::new(1.0).unwrap(), &mut StdRng::seed_from_u64(1))
        .into_data()
        .iter::<i64>()
        .collect();
    assert!(tokens.iter().all(|&t| t != i64::from(MASK)));
}

#[test]
fn a_uniform_denoiser_pays_ln_v_per_token_under_the_absorbing_bound() {
    // Absorbing noise masks each token at exactly one step and ᾱ_T = 0; a denoiser with zero
    // logits predicts x0 uniformly over the V − 1 tokens that are not the mask, so the reverse
    // step that unmasks a token costs ln(V − 1) and every other step nothing: NELBO = ln(V − 1).
    let device = Device::flex();
    let config =
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: V, tie_embeddings: false }, 8)
            .with_d_model(16)
            .with_n_heads(2)
            .with_n_layers(1)
            .with_cond_dim(Some(16));
    let model = config.init(&device).unwrap();
    let schedule = DiscreteSchedule::absorbing_mutual_information(10).unwrap();
    let d = D3pm::new(Transition::Absorbing { mask_id: MASK }, schedule, V, 0.0).unwrap();
    let tokens = (0..8 * 64).map(|i| (i * 7 % 4) as u32).collect();
    let data = dlm_core::data::SequenceDataset::new(8, V, tokens).unwrap();
    let report = d.evaluate(&model, &data, 16, 4, 0).unwrap();
    let expected = ((V - 1) as f64).ln();
    assert!((report.nats_per_token / expected - 1.0).abs() < 0.05, "{report:?} vs {expected}");
    assert_eq!(report.tokens, 8 * 64);
    // The same seed draws the same steps; another vocabulary is refused.
    assert_eq!(d.evaluate(&model, &data, 16, 4, 0).unwrap(), report);
    let other = dlm_core::data::SequenceDataset::new(8, V + 1, vec![0; 8]).unwrap();
    assert!(d.evaluate(&model, &other, 16, 4, 0).is_err());
}

#[test]
fn bad_settings_are_rejected() {
    let schedule = DiscreteSchedule::absorbing_mutual_information(4).unwrap();
    assert!(D3pm::new(Transition::Uniform, schedule.clone(), 1, 0.0).is_err());
    assert!(D3pm::new(Transition::Absorbing { mask_id: 9 }, schedule.clone(), 5, 0.0).is_err());
    assert!(D3pm::new(Transition::Uniform, schedule, 5, -0.1).is_err());
}

/// The hybrid loss adds `λ·T` times the cross-entropy to the `T`-scaled `L_vb` estimate (both
/// taken at the sampled step), so with the same draws `L_λ − L_0 = λ·T·CE`.
#[test]
fn hybrid_loss_weighs_the_cross_entropy_by_lambda_times_steps() {
    let device = Device::flex();
    let config =
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: V, tie_embeddings: false }, 6)
            .with_d_model(16)
            .with_n_heads(2)
            .with_n_layers(1)
            .with_cond_dim(Some(16));
    let model = randomised(config.init(&device).unwrap(), &device);
    let x0 =
        Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 1, 0], [1, 6]), &device);
    let lambda = 0.25;
    let vb_only = d3pm(Transition::Absorbing { mask_id: MASK });
    let hybrid = D3pm::new(vb_only.transition, vb_only.schedule.clone(), V, lambda).unwrap();
    let loss = |d: &D3pm| {
        let sum = d.loss(&model, x0.clone(), &mut StdRng::seed_from_u64(7)).sum;
        sum.into_scalar::<f64>()
    };
    // The same draws as `loss`: the steps first, then the noise inside `terms`.
    let mut rng = StdRng::seed_from_u64(7);
    let steps = dlm_sched::stratified_steps(1, vb_only.steps(), &mut rng);
    let (_, cross_entropy) = vb_only.terms(&model, x0.clone(), &steps, &mut rng);
    let cross_entropy = cross_entropy.into_scalar::<f64>();
    let expected = lambda * vb_only.steps() as f64 * cross_entropy;
    let difference = loss(&hybrid) - loss(&vb_only);
    assert!(cross_entropy > 0.1, "{cross_entropy}");
    assert!((difference - expected).abs() < 1e-4 * expected, "{difference} vs {expected}");
}
