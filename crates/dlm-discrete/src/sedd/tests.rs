use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use dlm_core::backbone::{DenoiserConfig, DenoiserIo};
use dlm_core::data::{MarkovSource, MarkovSourceConfig, SequenceDataset};
use dlm_core::host::int_values;
use dlm_core::tokenizer::SpecialTokens;
use dlm_sched::{Geometric, LogLinear};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::denoiser::{MaskedDenoiser, Subs};
use crate::{MaskingProcess, Mdlm};

const V: usize = 6;
const MASK: u32 = 5;
const ABSORBING: Graph = Graph::Absorbing { mask_id: MASK };

fn values(tensor: Tensor<3>) -> Vec<f64> {
    tensor.into_data().iter::<f64>().collect()
}

fn tokens(values: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The per-position DWDSE term by its definition, every jump summed on the host:
/// `Σ_{y≠x} w(y → x) [e^{s_y} − r_y s_y + K(r_y)]`, with `w` the forward rate from `y` into
/// `x` (absorbing: 1 from every non-mask id into the mask, 0 into a visible id; uniform: 1/V)
/// and `r_y = P_σ(y|x0)/P_σ(x|x0)`, `K(0) = 0`.
fn score_entropy_by_definition(
    graph: Graph,
    log_score: &[f64],
    x: u32,
    x0: u32,
    sigma: f64,
) -> f64 {
    let p = |to: u32| graph.transition_probability(sigma, x0, to, V);
    (0..V as u32)
        .filter(|&y| y != x)
        .map(|y| {
            let rate = match graph {
                Graph::Absorbing { mask_id } => f64::from(u8::from(x == mask_id)),
                Graph::Uniform => 1.0 / V as f64,
            };
            let r = p(y) / p(x);
            let k = if r > 0.0 { r * (r.ln() - 1.0) } else { 0.0 };
            let s = log_score[y as usize];
            rate * (s.exp() - r * s + k)
        })
        .sum()
}

#[test]
fn the_closed_forms_of_the_score_entropy_match_its_definition() {
    // Both branches of each graph (x_t = x0, x_t ≠ x0; masked and visible), on both sides of
    // σ = 0.5; a wrong constant, weight or ratio in a closed form fails here.
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(1);
    for graph in [ABSORBING, Graph::Uniform] {
        for sigma in [1e-3, 0.3, 2.0, 8.0] {
            let (x_t, x0): (Vec<i64>, Vec<i64>) = match graph {
                Graph::Absorbing { .. } => (vec![5, 5, 2, 0, 5, 1], vec![0, 3, 2, 0, 4, 1]),
                Graph::Uniform => (vec![0, 3, 2, 5, 4, 1], vec![0, 1, 2, 2, 0, 1]),
            };
            let n = x_t.len();
            let log_score: Vec<f64> = (0..n * V).map(|_| rng.random::<f64>() * 4.0 - 2.0).collect();
            let tensor = Tensor::<3>::from_data(
                TensorData::new(log_score.iter().map(|&s| s as f32).collect(), [1, n, V]),
                &device,
            );
            let closed = graph.score_entropy(
                tensor,
                tokens(x_t.clone(), [1, n], &device),
                tokens(x0.clone(), [1, n], &device),
                &[sigma],
            );
            let closed: Vec<f64> = closed.into_data().iter::<f64>().collect();
            for i in 0..n {
                let expected = score_entropy_by_definition(
                    graph,
                    &log_score[i * V..(i + 1) * V],
                    x_t[i] as u32,
                    x0[i] as u32,
                    sigma,
                );
                let tolerance = 1e-5 * expected.abs().max(1.0);
                assert!(
                    (closed[i] - expected).abs() < tolerance,
                    "{graph:?} σ = {sigma}, position {i}: {} vs {expected}",
                    closed[i]
                );
            }
        }
    }
}

#[test]
fn the_score_entropy_vanishes_at_the_true_ratios_only() {
    let device = Device::flex();
    for graph in [ABSORBING, Graph::Uniform] {
        let sigma = 0.8;
        let (x, x0) = match graph {
            Graph::Absorbing { .. } => (MASK, 2),
            Graph::Uniform => (4, 2),
        };
        let ratios: Vec<f64> = (0..V as u32)
            .map(|y| {
                let p = |to| graph.transition_probability(sigma, x0, to, V);
                (p(y) / p(x)).ln().max(-40.0)
            })
            .collect();
        let entropy = |log_score: &[f64]| -> f64 {
            let tensor = Tensor::<3>::from_data(
                TensorData::new(log_score.iter().map(|&s| s as f32).collect(), [1, 1, V]),
                &device,
            );
            let x_t = tokens(vec![i64::from(x)], [1, 1], &device);
            let x0 = tokens(vec![i64::from(x0)], [1, 1], &device);
            graph.score_entropy(tensor, x_t, x0, &[sigma]).into_scalar::<f64>()
        };
        assert!(entropy(&ratios).abs() < 1e-5, "{graph:?}: {}", entropy(&ratios));
        for y in (0..V).filter(|&y| y != x as usize && ratios[y] > -40.0) {
            let mut off = ratios.clone();
            off[y] += 0.1;
            assert!(entropy(&off) > 1e-4, "{graph:?}, y = {y}: {}", entropy(&off));
        }
    }
}

/// A time-conditioned DiT over the `V` ids, freshly initialised (zero output).
fn fresh_network(device: &Device) -> dlm_core::backbone::Denoiser {
    DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: V, tie_embeddings: false }, 8)
        .with_d_model(16)
        .with_n_layers(1)
        .with_cond_dim(Some(16))
        .init(device)
        .unwrap()
}

/// An MDLM denoiser read as an absorbing score: `s_y = p_θ(y | x_t)/(e^σ − 1)`, normalised.
struct Normalised<'a> {
    subs: Subs<'a>,
    schedule: LogLinear,
}

impl ConcreteScore for Normalised<'_> {
    fn log_score(&self, x_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let batch = x_t.dims()[0];
        let times: Vec<f64> = t.clone().into_data().iter::<f64>().collect();
        let shift: Vec<f64> = times.iter().map(|&t| self.schedule.sigma(t).exp_m1().ln()).collect();
        let log_probs = self.subs.log_probs(x_t.clone(), t);
        let shift = floats(&shift, &log_probs.device()).reshape([batch, 1, 1]);
        (log_probs - shift).mask_fill(x_t.one_hot::<3>(V).bool(), 0.0)
    }
    fn vocab_size(&self) -> usize {
        V
    }
    fn max_seq_len(&self) -> Option<usize> {
        None
    }
    fn device(&self) -> Device {
        self.subs.model.device()
    }
}

#[test]
fn on_the_absorbing_graph_a_normalised_score_has_mdlms_nelbo() {
    // With normalised scores the DWDSE terms are σ′/(e^σ − 1)·(−log p_θ(x0|x_t)) at masked
    // positions, MDLM's eq. 10 term for term; the same generator draws the same masks.
    let device = Device::flex();
    let model = fresh_network(&device);
    let subs = Subs { model: &model, mask_id: MASK };
    let x0 = Tensor::<2>::random([4, 8], Distribution::Uniform(0.0, 5.0), &device).int();
    let times = [0.1, 0.45, 0.7, 0.95];
    let sedd = Sedd::new(ABSORBING, LogLinear::default(), V, 1e-3).unwrap();
    let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK), 1e-3).unwrap();
    let score = Normalised { subs, schedule: LogLinear::default() };
    let ours = sedd.loss_at(&score, x0.clone(), &times, &mut StdRng::seed_from_u64(3));
    let theirs = mdlm.loss_at(&subs, x0, &times, &mut StdRng::seed_from_u64(3));
    let (ours, theirs) = (ours.sum.into_scalar::<f64>(), theirs.sum.into_scalar::<f64>());
    assert!(theirs > 1.0, "{theirs}");
    assert!((ours / theirs - 1.0).abs() < 1e-4, "SEDD {ours}, MDLM {theirs}");
}

fn markov() -> MarkovSource {
    MarkovSource::new(MarkovSourceConfig { n_symbols: 6, order: 2, branching: 3, seed: 1 }).unwrap()
}

#[test]
fn the_exact_score_attains_the_entropy_on_both_graphs() {
    // The DWDSE of the exact concrete score is −ln p(x) in expectation over the noise (the
    // reverse chain is then exact); a wrong weight σ′, a wrong branch constant or a wrong prior
    // term moves it. 512 sequences × 16 times; the noise's spread is under 1 % (measured).
    let device = Device::flex();
    let source = markov();
    let vocab = source.vocab_size();
    let data =
        SequenceDataset::generate(512, 16, vocab, 7, |len, rng| source.sample(len, rng)).unwrap();
    let exact = (0..data.len()).map(|i| -source.log_prob(data.sequence(i))).sum::<f64>()
        / (data.len() * 16) as f64;
    let mask_id = SpecialTokens::reserved().mask;
    let absorbing =
        Sedd::new(Graph::Absorbing { mask_id }, LogLinear::default(), vocab, 1e-4).unwrap();
    let uniform = Sedd::new(Graph::Uniform, Geometric::default(), vocab, 1e-4).unwrap();
    let bayes = |graph, schedule| MarkovBayesScore {
        source: &source,
        graph,
        schedule,
        vocab_size: vocab,
        device: device.clone(),
    };
    let bound = absorbing
        .evaluate(&bayes(absorbing.graph(), absorbing.schedule()), &data, 256, 16, 0)
        .unwrap()
        .nats_per_token;
    assert!((bound / exact - 1.0).abs() < 0.015, "absorbing: {bound} vs {exact}");
    let uniform_schedule = *uniform.schedule();
    let score = MarkovBayesScore {
        source: &source,
        graph: Graph::Uniform,
        schedule: &uniform_schedule,
        vocab_size: vocab,
        device: device.clone(),
    };
    let bound = uniform.evaluate(&score, &data, 256, 16, 0).unwrap().nats_per_token;
    assert!((bound / exact - 1.0).abs() < 0.015, "uniform: {bound} vs {exact}");
}

/// The exact score of i.i.d. tokens with law `pi` (over the ids, 0 at the mask).
struct Product<S> {
    pi: Vec<f64>,
    graph: Graph,
    schedule: S,
}

impl<S: NoiseSchedule> Product<S> {
    /// `p_t(z) = Σ_a π(a) P_σ(z | a)`.
    fn marginal(&self, sigma: f64, z: u32) -> f64 {
        (0..V as u32)
            .map(|a| self.pi[a as usize] * self.graph.transition_probability(sigma, a, z, V))
            .sum()
    }
}

impl<S: NoiseSchedule> ConcreteScore for Product<S> {
    fn log_score(&self, x_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let [batch, seq_len] = x_t.dims();
        let times: Vec<f64> = t.into_data().iter::<f64>().collect();
        let x: Vec<i64> = int_values(x_t);
        let out: Vec<f32> = x
            .iter()
            .enumerate()
            .flat_map(|(i, &x)| {
                let sigma = self.schedule.sigma(times[i / seq_len]);
                let own = self.marginal(sigma, x as u32);
                (0..V as u32).map(move |y| (self.marginal(sigma, y) / own).ln().max(-1e6) as f32)
            })
            .collect();
        Tensor::from_data(TensorData::new(out, [batch, seq_len, V]), &Device::flex())
    }
    fn vocab_size(&self) -> usize {
        V
    }
    fn max_seq_len(&self) -> Option<usize> {
        None
    }
    fn device(&self) -> Device {
        Device::flex()
    }
}

fn product(graph: Graph) -> Vec<f64> {
    match graph {
        Graph::Absorbing { .. } => vec![0.1, 0.35, 0.05, 0.2, 0.3, 0.0],
        Graph::Uniform => vec![0.1, 0.3, 0.05, 0.2, 0.15, 0.2],
    }
}

#[test]
fn a_tau_leaping_step_with_the_exact_score_is_the_exact_reverse_step() {
    // Thm 4.2: for one token, [exp(−ΔσQ) s]_y · exp(ΔσQ)(x, y) = p_s(y) P_{Δσ}(x | y) / p_t(x),
    // the reverse step by Bayes' rule. Checked for every current token, both graphs.
    let device = Device::flex();
    let cases: Vec<(Graph, Box<dyn NoiseSchedule>)> = vec![
        (ABSORBING, Box::new(LogLinear::default())),
        (Graph::Uniform, Box::new(Geometric::new(0.1, 5.0).unwrap())),
    ];
    for (graph, schedule) in cases {
        let score = Product { pi: product(graph), graph, schedule: &*schedule };
        let (t, s) = (0.7, 0.5);
        let (sigma_t, sigma_s) = (schedule.sigma(t), schedule.sigma(s));
        let all: Vec<i64> = (0..V as i64).collect();
        let probs = TweedieSampler::step_probabilities(
            graph,
            &score,
            tokens(all, [1, V], &device),
            t,
            sigma_t - sigma_s,
        );
        let probs = values(probs);
        for x in 0..V as u32 {
            let p_t = score.marginal(sigma_t, x);
            if p_t == 0.0 {
                continue;
            }
            for y in 0..V as u32 {
                let jump = graph.transition_probability(sigma_t - sigma_s, y, x, V);
                let expected = score.marginal(sigma_s, y) * jump / p_t;
                let found = probs[x as usize * V + y as usize];
                assert!(
                    (found - expected).abs() < 1e-5,
                    "{graph:?} x = {x}, y = {y}: {found} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn the_sampler_with_the_exact_score_draws_the_data_law() {
    // For independent tokens each τ-leaping step is exact, so any number of steps gives the
    // law π: a χ² test on 4096 tokens (df ≤ 5; the 0.1 % critical value is 20.5). The
    // absorbing run must also leave no mask after noise removal.
    let mut rng = StdRng::seed_from_u64(11);
    let cases: Vec<(Graph, Box<dyn NoiseSchedule>)> = vec![
        (ABSORBING, Box::new(LogLinear::default())),
        (Graph::Uniform, Box::new(Geometric::default())),
    ];
    for (graph, schedule) in cases {
        let pi = product(graph);
        let sedd = Sedd::new(graph, &*schedule, V, 1e-3).unwrap();
        let score = Product { pi: pi.clone(), graph, schedule: &*schedule };
        let sampler = TweedieSampler::new(6).unwrap();
        assert_eq!(sampler.nfe(), 7);
        let drawn = int_values(sampler.sample(&sedd, &score, 256, 16, &mut rng).unwrap());
        let mut counts = [0usize; V];
        drawn.iter().for_each(|&t| counts[t as usize] += 1);
        assert_eq!(counts[MASK as usize] > 0, pi[MASK as usize] > 0.0, "{graph:?}: {counts:?}");
        let n = drawn.len() as f64;
        let chi2: f64 = (0..V)
            .filter(|&v| pi[v] > 0.0)
            .map(|v| (counts[v] as f64 - n * pi[v]).powi(2) / (n * pi[v]))
            .sum();
        assert!(chi2 < 20.5, "{graph:?}: χ² = {chi2}, counts {counts:?}");
    }
}

#[test]
fn the_uniform_prior_term_and_transitions_are_distributions() {
    for graph in [ABSORBING, Graph::Uniform] {
        for sigma in [1e-4, 0.5, 3.0] {
            for from in 0..V as u32 {
                let total: f64 =
                    (0..V as u32).map(|to| graph.transition_probability(sigma, from, to, V)).sum();
                assert!((total - 1.0).abs() < 1e-12, "{graph:?}, {from}: {total}");
            }
        }
    }
    // KL to the uniform base, by its definition.
    let sigma = 1.5;
    let kl: f64 = (0..V as u32)
        .map(|y| {
            let p = Graph::Uniform.transition_probability(sigma, 2, y, V);
            p * (p * V as f64).ln()
        })
        .sum();
    assert!((Graph::Uniform.prior_kl(sigma, V) - kl).abs() < 1e-12);
    assert!(Graph::Uniform.prior_kl(20.0, V) < 1e-7);
}

#[test]
fn bad_input_is_an_error_naming_the_field() {
    let message = |e: DiscreteError| e.to_string();
    assert!(
        message(Sedd::new(ABSORBING, LogLinear::default(), 1, 1e-3).unwrap_err())
            .contains("vocab_size")
    );
    assert!(
        message(Sedd::new(ABSORBING, LogLinear::default(), 5, 1e-3).unwrap_err())
            .contains("mask_id")
    );
    assert!(Sedd::new(Graph::Uniform, Geometric::default(), 5, 2.0).is_err());
    assert!(message(TweedieSampler::new(0).unwrap_err()).contains("steps"));
    assert!(
        message(TweedieSampler::new(4).unwrap().with_t_end(1.0).unwrap_err()).contains("t_end")
    );

    let sedd = Sedd::new(ABSORBING, LogLinear::default(), V, 1e-3).unwrap();
    let wide = Product { pi: product(ABSORBING), graph: ABSORBING, schedule: LogLinear::default() };
    let sampler = TweedieSampler::new(2).unwrap();
    let seven = Sedd::new(ABSORBING, LogLinear::default(), V + 1, 1e-3).unwrap();
    let err = sampler.sample(&seven, &wide, 2, 4, &mut StdRng::seed_from_u64(0)).unwrap_err();
    assert!(message(err).contains("model vocab_size"));
    let err = sampler.sample(&sedd, &wide, 0, 4, &mut StdRng::seed_from_u64(0)).unwrap_err();
    assert!(message(err).contains("batch"));
    // Clean data holding the mask.
    let data = SequenceDataset::new(4, V, vec![0, 1, MASK, 2]).unwrap();
    let err = sedd.evaluate(&wide, &data, 1, 1, 0).unwrap_err();
    assert!(message(err).contains("data tokens"));
    let wide_data = SequenceDataset::new(4, V + 2, vec![0, 1, 7, 2]).unwrap();
    let err = sedd.evaluate(&wide, &wide_data, 1, 1, 0).unwrap_err();
    assert!(message(err).contains("data vocab_size"));
}

#[test]
fn a_fresh_score_network_starts_at_the_scores_of_a_uniform_denoiser() {
    // A fresh DiT has zero output: on the absorbing graph the shift −ln(e^σ − 1) − ln(V − 1)
    // makes a masked position's scores sum to 1/(e^σ − 1), the exact total; on the uniform
    // graph every ratio is 1. Own entries are 0 on both.
    let device = Device::flex();
    let model = fresh_network(&device);
    let x_t = tokens(vec![5, 1, 5, 2], [2, 2], &device);
    let t = floats(&[0.3, 0.8], &device);
    let absorbing = Sedd::new(ABSORBING, LogLinear::default(), V, 1e-3).unwrap();
    let scores = values(absorbing.score_network(&model).log_score(x_t.clone(), t.clone()));
    for (row, time) in [(0, 0.3), (2, 0.8)] {
        let at = &scores[row * V..(row + 1) * V];
        assert_eq!(at[MASK as usize], 0.0);
        let total: f64 = at.iter().take(MASK as usize).map(|s| s.exp()).sum();
        let expected = 1.0 / LogLinear::default().sigma(time).exp_m1();
        assert!((total / expected - 1.0).abs() < 1e-4, "{total} vs {expected}");
    }
    assert_eq!(scores[V + 1], 0.0);
    let uniform = Sedd::new(Graph::Uniform, Geometric::default(), V, 1e-3).unwrap();
    let scores = values(uniform.score_network(&model).log_score(x_t, t));
    assert!(scores.iter().all(|s| s.abs() < 1e-6), "{scores:?}");
}
