//! Bad input across the public API: every case must come back as a typed error naming the field
//! (or the documented error variant), never a panic, an abort or a silent substitute. One case per
//! line, grouped by crate; `docs/reliability.md` lists the classes they cover.

use burn::tensor::{Device, Int, Tensor};
use dlm::block::{Bd3lm, Bd3lmMask, BlockError, BlockSampler, BlockwiseDecoder, CacheMode, Prefix};
use dlm::continuous::{
    ContinuousError, DiffusionLmConfig, DiffusionLmLoss, GaussianSampler, Update,
};
use dlm::core::CoreError;
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{AttentionMask, DenoiserConfig};
use dlm::core::checkpoint::{read_sections, write_sections};
use dlm::core::data::{
    BatchCursor, MarkovSource, MarkovSourceConfig, PairsTask, PairsTaskConfig, SequenceDataset,
    WordsTask, WordsTaskConfig, pad_documents, read_documents, text_files, wrap_documents,
};
use dlm::core::eval::{EvalBatches, evaluate_bound};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::{CharTokenizer, HfTokenizer, SpecialTokens};
use dlm::core::train::{LrDecay, TrainConfig, Trainer};
use dlm::discrete::d3pm::{D3pm, Transition, mutual_information_schedule};
use dlm::discrete::sampler::{
    MaskedSampler, ReMdm, ReMdmStrategy, SamplerState, SlowFast, TokenEditing, Unmasking,
};
use dlm::discrete::{DiscreteError, MaskingProcess, Mdlm, Spindle, Subs};
use dlm::sched::{
    Cosine, DiscreteSchedule, Geometric, LinearBeta, LogLinear, Polynomial, ScheduleError,
    ScheduleKind, SquareRoot, TimeGrid, TimeSampler,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Asserts that `result` is an error whose invalid input names `field`.
macro_rules! invalid {
    ($result:expr, $field:expr) => {{
        let err = $result.err().expect(concat!("an error from ", stringify!($result)));
        let invalid = err.invalid().unwrap_or_else(|| panic!("{err}: not an invalid input"));
        assert_eq!(invalid.name, $field, "{err}");
        assert!(err.to_string().contains(&format!("`{}", $field)), "{err}");
    }};
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-bad-input-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn schedules_grids_and_time_samplers() {
    invalid!(Cosine::new(-1.0), "s");
    invalid!(Cosine::new(f64::NAN), "s");
    invalid!(LogLinear::new(1.5), "eps");
    invalid!(Polynomial::new(0.0), "exponent");
    invalid!(Polynomial::new(f64::INFINITY), "exponent");
    invalid!(SquareRoot::new(-0.5), "s");
    invalid!(LinearBeta::new(0.5, 0.1), "beta_max");
    invalid!(Geometric::new(2.0, 1.0), "sigma_max");
    invalid!(DiscreteSchedule::from_betas(vec![]), "betas.len()");
    invalid!(DiscreteSchedule::from_betas(vec![0.1, 1.5]), "betas");
    invalid!(DiscreteSchedule::from_betas(vec![0.1, f64::NAN]), "betas");
    invalid!(DiscreteSchedule::square_root(0, 0.1), "steps");
    invalid!(DiscreteSchedule::absorbing_mutual_information(0), "steps");
    invalid!(TimeGrid::uniform(0, 0.0), "steps");
    invalid!(TimeGrid::uniform(4, 1.5), "t_min");
    invalid!(TimeSampler::uniform(-0.1), "low");
    invalid!(TimeSampler::antithetic(1.5), "low");
    invalid!(TimeSampler::clipped(0.8, 0.2), "omega");
    // Size bombs: a table of a billion steps is an error, not an abort.
    invalid!(TimeGrid::uniform(1 << 30, 0.0), "steps");
    invalid!(DiscreteSchedule::square_root(1 << 30, 0.1), "steps");
    invalid!(DiscreteSchedule::absorbing_mutual_information(usize::MAX), "steps");
    // Configs go through the constructors.
    let read = |json: &str| serde_json::from_str::<ScheduleKind>(json).map_err(|e| e.to_string());
    assert!(read(r#"{"kind": "cosine", "s": -1}"#).unwrap_err().contains("`s` = -1"));
    assert!(read(r#"{"kind": "log_linear", "eps": 2}"#).unwrap_err().contains("`eps` = 2"));
    assert!(read(r#"{"kind": "no_such_schedule"}"#).is_err());
    assert!(serde_json::from_str::<TimeGrid>("[1.0, 0.5, 0.7]").is_err());
    assert!(serde_json::from_str::<TimeGrid>("[]").is_err());
    let _: Option<ScheduleError> = None;
}

#[test]
fn data_sources_and_datasets() {
    invalid!(SequenceDataset::new(0, 10, vec![1, 2]), "seq_len");
    invalid!(SequenceDataset::new(4, 10, vec![]), "tokens.len()");
    invalid!(SequenceDataset::new(4, 10, vec![1; 5]), "tokens.len()");
    invalid!(SequenceDataset::new(2, 5, vec![1, 9]), "token id");
    invalid!(BatchCursor::new(0, 0), "batch_size");
    let markov = |n_symbols, order, branching| {
        MarkovSource::new(MarkovSourceConfig { n_symbols, order, branching, seed: 0 })
    };
    invalid!(markov(1, 1, 1), "n_symbols");
    invalid!(markov(4, 0, 2), "order");
    invalid!(markov(4, 1, 5), "branching");
    invalid!(markov(4, 1, 0), "branching");
    // A size bomb: 64^4 contexts would be 16.7 M × 64 probabilities.
    invalid!(markov(64, 4, 2), "order");
    invalid!(PairsTask::new(PairsTaskConfig { n_symbols: 7, n_pairs: 2, seed: 0 }), "n_symbols");
    invalid!(PairsTask::new(PairsTaskConfig { n_symbols: 8, n_pairs: 0, seed: 0 }), "n_pairs");
    invalid!(WordsTask::new(WordsTaskConfig { n_words: 0, word_len: 3, seed: 0 }), "n_words");
    invalid!(WordsTask::new(WordsTaskConfig { n_words: 4, word_len: 0, seed: 0 }), "word_len");
    assert!(matches!(read_documents(&[]), Err(CoreError::EmptyCorpus { .. })));
    assert!(matches!(text_files(&scratch("no-text")), Err(CoreError::EmptyCorpus { .. })));
    assert!(matches!(text_files(&scratch("x").join("absent")), Err(CoreError::Io { .. })));
    assert!(CharTokenizer::from_texts(std::iter::empty::<&str>()).is_err());
    let special = dlm::core::tokenizer::SpecialTokens::reserved();
    invalid!(pad_documents(&[vec![5]], 1 << 40, 10, special), "seq_len");
    invalid!(
        pad_documents(&vec![vec![5]; 1 << 13], 1 << 20, 10, special),
        "documents.len() · seq_len"
    );
    invalid!(HfTokenizer::train_bpe(&[], 1 << 30), "vocab_size");
}

#[test]
fn token_sampling_and_trainer_settings() {
    invalid!(TokenSampler::new(-1.0), "temperature");
    invalid!(TokenSampler::new(f64::NAN), "temperature");
    invalid!(TokenSampler::new(1e-40), "temperature");
    invalid!(TokenSampler::greedy().with_top_k(0), "top_k");
    invalid!(TokenSampler::greedy().with_top_p(0.0), "top_p");
    invalid!(TokenSampler::greedy().with_top_p(1.5), "top_p");
    let base = || TrainConfig::new(4, 4);
    invalid!(TrainConfig::new(0, 4).validate(), "steps");
    invalid!(TrainConfig::new(4, 0).validate(), "batch_size");
    invalid!(base().with_grad_accumulation(0).validate(), "grad_accumulation");
    invalid!(base().with_replicas(3).validate(), "replicas");
    invalid!(base().with_learning_rate(0.0).validate(), "learning_rate");
    invalid!(base().with_learning_rate(f64::NAN).validate(), "learning_rate");
    invalid!(base().with_weight_decay(-1.0).validate(), "weight_decay");
    invalid!(base().with_beta_1(1.0).validate(), "beta_1");
    invalid!(base().with_beta_2(1.0 - 1e-9).validate(), "beta_2");
    invalid!(base().with_epsilon(0.0).validate(), "epsilon");
    invalid!(base().with_epsilon(1e-50).validate(), "epsilon");
    invalid!(base().with_decay(LrDecay::Cosine { min_ratio: 2.0 }).validate(), "decay.min_ratio");
    invalid!(base().with_grad_clip_norm(Some(0.0)).validate(), "grad_clip_norm");
    invalid!(base().with_grad_clip_norm(Some(f64::INFINITY)).validate(), "grad_clip_norm");
    invalid!(base().with_ema_decay(Some(1.0)).validate(), "ema_decay");
    invalid!(base().with_ema_decay(Some(1.0 - 1e-10)).validate(), "ema_decay");
}

#[test]
fn models_masks_evaluation_and_checkpoints() {
    let device = Device::flex();
    let config = || DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1);
    invalid!(DenoiserConfig::tokens(1, 16).validate(), "vocab_size");
    invalid!(config().with_n_layers(0).validate(), "n_layers");
    invalid!(config().with_n_heads(3).validate(), "n_heads");
    invalid!(config().with_dropout(1.0).validate(), "dropout");
    invalid!(config().with_rope_base(1.0).validate(), "rope_base");
    invalid!(config().with_cond_dim(Some(7)).validate(), "cond_dim");
    invalid!(DenoiserConfig::tokens(1 << 30, 16).validate(), "vocab_size");
    invalid!(config().with_d_model(1 << 20).validate(), "d_model");
    invalid!(config().with_n_layers(1 << 20).validate(), "n_layers");
    invalid!(DenoiserConfig::tokens(10, usize::MAX).validate(), "max_seq_len");
    invalid!(config().check_seq_len(0), "seq_len");
    invalid!(config().check_seq_len(17), "seq_len");
    invalid!(AttentionMask::block_causal(0), "block_size");
    let data = SequenceDataset::new(4, 10, (0..40).map(|i| i % 10).collect()).unwrap();
    let never = |_: Tensor<2, Int>, _: &mut StdRng| -> dlm::core::train::LossSum { unreachable!() };
    let batches = |batch_size, max_batches| EvalBatches { batch_size, max_batches, seed: 0 };
    invalid!(evaluate_bound(&data, &device, batches(0, None), 1, never), "batch_size");
    invalid!(evaluate_bound(&data, &device, batches(4, Some(0)), 1, never), "max_batches");
    invalid!(evaluate_bound(&data, &device, batches(4, None), 0, never), "time_samples");
    let dir = scratch("checkpoints");
    let long_name = "x".repeat(256);
    invalid!(
        write_sections(&dir.join("a.ckpt"), &[(long_name.as_str(), &[1])]),
        "section name length"
    );
    std::fs::write(dir.join("foreign.ckpt"), b"PK\x03\x04").unwrap();
    assert!(matches!(
        read_sections(&dir.join("foreign.ckpt")),
        Err(CoreError::ForeignCheckpoint { .. })
    ));
    write_sections(&dir.join("cut.ckpt"), &[("model", &[7; 64])]).unwrap();
    let bytes = std::fs::read(dir.join("cut.ckpt")).unwrap();
    std::fs::write(dir.join("cut.ckpt"), &bytes[..40]).unwrap();
    assert!(matches!(
        read_sections(&dir.join("cut.ckpt")),
        Err(CoreError::TruncatedCheckpoint { .. })
    ));
}

#[test]
fn masked_diffusion_objectives_and_samplers() {
    let device = Device::flex();
    let model =
        DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&device).unwrap();
    let probability = Confidence::TokenProbability;
    invalid!(MaskedSampler::new(Unmasking::Random, 0), "steps");
    invalid!(
        MaskedSampler::new(Unmasking::Random, 4).unwrap().with_block_length(0),
        "block_length"
    );
    invalid!(Unmasking::threshold(probability, 0.0), "tau");
    invalid!(Unmasking::threshold(probability, 1.5), "tau");
    assert!(matches!(
        Unmasking::threshold(Confidence::NegativeEntropy, 0.9),
        Err(DiscreteError::ConfidenceNotAProbability { .. })
    ));
    invalid!(Unmasking::factor(probability, 0.0), "factor");
    invalid!(
        MaskedSampler::new(Unmasking::Threshold { confidence: probability, tau: 5.0 }, 4),
        "tau"
    );
    let log_linear = || ScheduleKind::LogLinear(LogLinear::default());
    invalid!(ReMdm::new(log_linear(), ReMdmStrategy::Cap { eta: 2.0 }), "eta");
    let looping = ReMdmStrategy::Loop { eta: 0.1, t_on: 0.3, t_off: 0.5, alpha_on: 0.9 };
    invalid!(ReMdm::new(log_linear(), looping), "t_off");
    let sampler_json = r#"{"proposal": {"temperature": 0}, "unmasking": {"policy": "random"}, "steps": 0, "block_length": null}"#;
    let err = serde_json::from_str::<MaskedSampler>(sampler_json).unwrap_err();
    assert!(err.to_string().contains("`steps` = 0"), "{err}");
    let process = || MaskingProcess::new(LogLinear::default(), 3);
    invalid!(Mdlm::new(process(), -0.1), "low");
    invalid!(Mdlm::new(process(), f64::NAN), "low");
    let mdlm = Mdlm::new(process(), 1e-3).unwrap();
    let data = SequenceDataset::new(4, 10, vec![5; 16]).unwrap();
    assert!(matches!(
        mdlm.evaluate(&Subs { model: &model, mask_id: 4 }, &data, 2, 1, 0),
        Err(DiscreteError::MaskMismatch { expected: 3, found: 4, .. })
    ));
    let x0 = data.batch(&[0], &device);
    invalid!(
        mdlm.integrand_at(&mdlm.denoiser(&model), x0, 0.0, &mut StdRng::seed_from_u64(0)),
        "t"
    );
    let clean = Tensor::<2, Int>::from_ints([[5, 6, 7]], &device);
    invalid!(SamplerState::infill(&mdlm.denoiser(&model), clean), "masked positions");
    let linear = Polynomial::new(1.0).unwrap();
    invalid!(Spindle::new(-1.0, &[1.0, 2.0], &linear), "lambda");
    invalid!(Spindle::new(0.01, &[0.0, 0.0], &linear), "counts.len()");
    invalid!(Spindle::new(10.0, &[1.0, 50.0], &linear), "lambda");
    let spindle = Spindle::new(0.01, &[0.0, 0.0, 0.0, 0.0, 1.0, 5.0], &linear).unwrap();
    let spindled = MaskingProcess::new(linear, 3).with_spindle(spindle).unwrap();
    assert!(matches!(Unmasking::ancestral(&spindled), Err(DiscreteError::Unsupported { .. })));
    let schedule = DiscreteSchedule::absorbing_mutual_information(4).unwrap();
    invalid!(D3pm::new(Transition::Uniform, schedule.clone(), 1, 0.0), "vocab_size");
    invalid!(D3pm::new(Transition::Absorbing { mask_id: 9 }, schedule.clone(), 5, 0.0), "mask_id");
    invalid!(D3pm::new(Transition::Uniform, schedule, 5, -0.1), "hybrid_lambda");
    invalid!(mutual_information_schedule(Transition::Uniform, &[1.0, 2.0], 0), "steps");
    invalid!(mutual_information_schedule(Transition::Uniform, &[1.0, 2.0], 1 << 30), "steps");
}

#[test]
fn block_diffusion_and_continuous_diffusion() {
    let device = Device::flex();
    let model =
        DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&device).unwrap();
    let times = TimeSampler::uniform(1e-3).unwrap();
    invalid!(Bd3lm::new(LogLinear::default(), 3, 0, times), "block_size");
    let bd3lm = Bd3lm::new(LogLinear::default(), 3, 4, times).unwrap();
    invalid!(bd3lm.check(&model, &SequenceDataset::new(6, 10, vec![5; 12]).unwrap()), "seq_len");
    invalid!(Bd3lmMask::new(3, 8), "block_size");
    invalid!(Bd3lmMask::new(0, 8), "block_size");
    let top_k =
        || MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 2).unwrap();
    invalid!(BlockSampler::new(top_k(), 0, 3), "block_size");
    invalid!(BlockwiseDecoder::new(top_k(), 0), "block_size");
    let ancestral = MaskedSampler::new(
        Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(LogLinear::default()) },
        4,
    )
    .unwrap();
    assert!(matches!(BlockwiseDecoder::new(ancestral, 4), Err(BlockError::Unsupported { .. })));
    let decoder = BlockwiseDecoder::new(top_k(), 4).unwrap();
    let prompt = Tensor::<2, Int>::from_ints([[5, 6]], &device);
    let subs = Subs { model: &model, mask_id: 3 };
    let mut rng = StdRng::seed_from_u64(0);
    invalid!(decoder.decode(&subs, prompt, 6, CacheMode::Dual, &mut rng), "gen_len");
    let grid = || TimeGrid::uniform(4, 0.0).unwrap();
    invalid!(GaussianSampler::new(Update::Ddim { eta: 2.0 }, grid()), "eta");
    assert!(serde_json::from_str::<Update>(r#"{"update": "ddim", "eta": -1}"#).is_err());
    invalid!(DiffusionLmLoss::new(SquareRoot::default(), 0), "levels");
    let _: Option<ContinuousError> = None;
}

/// Ids against the model's vocabulary, lengths against its context, the mask where it does not
/// belong: at the samplers, the block decoders, the evaluations and the trainer.
#[test]
fn ids_and_lengths_against_the_model() {
    let device = Device::flex();
    // Vocabulary 10 with the mask at 3, context 16.
    let model =
        DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&device).unwrap();
    let subs = Subs { model: &model, mask_id: 3 };
    let ints = |rows: &[[i64; 3]]| {
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(flat, [rows.len(), 3]), &device)
    };
    invalid!(Unmasking::entropy_bound(-0.5), "gamma");
    invalid!(Unmasking::entropy_bound(f64::INFINITY), "gamma");
    invalid!(SlowFast::new(0, 0.3, 2, 1.0, 0.9), "exploration_steps");
    invalid!(SlowFast::new(6, -0.1, 2, 1.0, 0.9), "span_confidence");
    invalid!(SlowFast::new(6, 0.3, 0, 1.0, 0.9), "stability_window");
    invalid!(SlowFast::new(6, 0.3, 2, f64::NAN, 0.9), "stability_std");
    invalid!(SlowFast::new(6, 0.3, 2, 1.0, 1.5), "high_confidence");
    invalid!(TokenEditing::new(1.0, 16), "threshold");
    invalid!(TokenEditing::new(f64::NAN, 16), "threshold");
    invalid!(SamplerState::all_masked(&subs, 0, 8), "batch");
    invalid!(SamplerState::all_masked(&subs, 2, 0), "seq_len");
    invalid!(SamplerState::all_masked(&subs, 2, 17), "seq_len");
    invalid!(SamplerState::all_masked(&Subs { model: &model, mask_id: 10 }, 2, 8), "mask_id");
    invalid!(SamplerState::with_prompt(&subs, ints(&[[5, 6, 7]]), 0), "gen_len");
    invalid!(SamplerState::with_prompt(&subs, ints(&[[5, 3, 7]]), 4), "tokens");
    invalid!(SamplerState::with_prompt(&subs, ints(&[[5, 10, 7]]), 4), "tokens");
    invalid!(SamplerState::with_prompt(&subs, ints(&[[5, -1, 7]]), 4), "tokens");
    invalid!(SamplerState::with_prompt(&subs, ints(&[[5, 6, 7]]), 14), "seq_len");
    invalid!(SamplerState::infill(&subs, ints(&[[5, 3, 12]])), "tokens");
    // A state built by hand goes through the same check in the driver.
    let sampler = MaskedSampler::new(Unmasking::Random, 4).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut state = SamplerState::all_masked(&subs, 1, 3).unwrap();
    state.tokens = ints(&[[3, 11, 3]]);
    invalid!(sampler.sample(&subs, state.clone(), &mut rng), "tokens");
    state.fixed = Tensor::<2, Int>::zeros([1, 2], &device).equal_elem(0);
    state.tokens = ints(&[[3, 3, 3]]);
    invalid!(sampler.sample(&subs, state, &mut rng), "fixed");
    // BD3LM's block sampler: the prompt, the end token, the length generated.
    let top_k = MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 2).unwrap();
    let blocks = BlockSampler::new(top_k.clone(), 3, 3).unwrap();
    let cached = Prefix::Cached { window: None };
    let generate = |prompt: Option<Tensor<2, Int>>, max_blocks, eos, prefix| {
        blocks.generate(&model, prompt, 1, max_blocks, eos, prefix, &mut StdRng::seed_from_u64(0))
    };
    invalid!(generate(Some(ints(&[[5, 3, 7]])), 1, None, cached), "tokens");
    invalid!(generate(None, 1, Some(10), cached), "eos");
    invalid!(generate(Some(ints(&[[5, 6, 7]])), 5, None, Prefix::Recomputed), "max_blocks");
    invalid!(generate(None, 6, None, Prefix::Cached { window: Some(18) }), "window");
    assert!(generate(None, 6, None, Prefix::Cached { window: Some(6) }).is_ok());
    // The Fast-dLLM decoder: the whole length against the context.
    let decoder = BlockwiseDecoder::new(top_k, 4).unwrap();
    let decode = |prompt, gen_len| {
        decoder.decode(&subs, prompt, gen_len, CacheMode::Prefix, &mut StdRng::seed_from_u64(0))
    };
    invalid!(decode(ints(&[[5, 6, 7]]), 16), "seq_len");
    invalid!(decode(ints(&[[5, 3, 7]]), 4), "tokens");
    // Evaluation and training data: vocabulary, context, the mask inside.
    let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), 3), 1e-3).unwrap();
    let with_mask = SequenceDataset::new(4, 10, vec![5, 6, 3, 7, 5, 6, 7, 8]).unwrap();
    let wider = SequenceDataset::new(4, 12, vec![5, 6, 11, 7, 5, 6, 7, 8]).unwrap();
    let longer = SequenceDataset::new(32, 10, vec![5; 64]).unwrap();
    invalid!(mdlm.evaluate(&subs, &with_mask, 2, 1, 0), "data tokens");
    invalid!(mdlm.evaluate(&subs, &wider, 2, 1, 0), "vocab_size");
    invalid!(mdlm.evaluate(&subs, &longer, 2, 1, 0), "seq_len");
    // Data from a tokenizer whose mask is 3, scored by a process that masks with 9.
    let tokenized = wrap_documents(&[vec![5, 6, 7, 8, 5, 6, 7]], 4, 10, SpecialTokens::reserved());
    let masks_with_9 = Mdlm::new(MaskingProcess::new(LogLinear::default(), 9), 1e-3).unwrap();
    let subs_9 = Subs { model: &model, mask_id: 9 };
    invalid!(masks_with_9.evaluate(&subs_9, &tokenized.unwrap(), 1, 1, 0), "mask_id");
    let schedule = DiscreteSchedule::absorbing_mutual_information(4).unwrap();
    let absorbing = D3pm::new(Transition::Absorbing { mask_id: 3 }, schedule.clone(), 10, 0.0);
    invalid!(absorbing.unwrap().evaluate(&model, &with_mask, 2, 1, 0), "data tokens");
    let other_vocabulary = D3pm::new(Transition::Uniform, schedule, 12, 0.0).unwrap();
    invalid!(other_vocabulary.evaluate(&model, &wider, 2, 1, 0), "model vocab_size");
    let bd3lm = Bd3lm::new(LogLinear::default(), 3, 4, TimeSampler::uniform(1e-3).unwrap());
    invalid!(bd3lm.unwrap().check(&model, &with_mask), "data tokens");
    let autodiff = device.clone().autodiff();
    let trainable = || {
        DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&autodiff).unwrap()
    };
    let config = TrainConfig::new(2, 2);
    let mut trainer = Trainer::new(config.clone(), trainable(), mdlm).unwrap();
    invalid!(trainer.step(&with_mask), "data tokens");
    invalid!(trainer.step(&wider), "vocab_size");
    let mut ar = Trainer::new(config.clone(), trainable(), ArObjective::default()).unwrap();
    invalid!(ar.step(&longer), "seq_len");
    let diffusion_lm = DiffusionLmConfig::new(10, 16)
        .with_embed_dim(8)
        .with_d_model(16)
        .with_n_heads(2)
        .with_n_layers(1)
        .with_cond_dim(16)
        .init(&autodiff)
        .unwrap();
    let loss = DiffusionLmLoss::new(SquareRoot::default(), 10).unwrap();
    let mut continuous = Trainer::new(config, diffusion_lm, loss).unwrap();
    invalid!(continuous.step(&wider), "vocab_size");
}

#[test]
fn stop_tokens_guidance_trajectories_and_drafters() {
    use dlm::discrete::sampler::Trajectory;
    use dlm::discrete::{AdaptiveParallelDecoder, Guided, SpeculativeDecoder};
    let device = Device::flex();
    let model =
        DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&device).unwrap();
    let subs = Subs { model: &model, mask_id: 3 };
    let state = || SamplerState::all_masked(&subs, 1, 8).unwrap();
    let rng = || StdRng::seed_from_u64(0);
    let sampler = MaskedSampler::new(Unmasking::Random, 4).unwrap();
    // Stop tokens outside the vocabulary, or the mask itself.
    for stop in [10, 3] {
        let stopping = sampler.clone().with_stop_tokens(vec![stop]);
        invalid!(stopping.sample(&subs, state(), &mut rng()), "stop_tokens");
    }
    invalid!(MaskedSampler::new(Unmasking::Random, 1 << 21), "steps");
    invalid!(SamplerState::all_masked(&subs, 1, 1_000_000_000_000), "seq_len");
    let prompt = Tensor::<2, Int>::from_ints([[5, 6]], &device);
    invalid!(SamplerState::with_prompt(&subs, prompt, usize::MAX), "seq_len");
    invalid!(Guided::for_state(subs, &state(), -0.5), "cfg_scale");
    invalid!(Guided::for_state(subs, &state(), f64::INFINITY), "cfg_scale");
    // Trajectory files: unparsable lines are named by number; wrong sizes by field.
    assert!(matches!(
        Trajectory::from_jsonl("{\"batch\": 1}"),
        Err(DiscreteError::Trajectory { line: 1, .. })
    ));
    let header = r#"{"batch":1,"seq_len":2,"mask_id":3,"initial":[3,3]}"#;
    invalid!(
        Trajectory::from_jsonl(r#"{"batch":2,"seq_len":2,"mask_id":3,"initial":[3,3]}"#),
        "initial"
    );
    let outside = format!(
        "{header}\n{}",
        r#"{"kind":"denoise","block":[0,2],"nfe":1,"rows":[{"remasked":[5]}]}"#
    );
    invalid!(Trajectory::from_jsonl(&outside), "position");
    let rows = format!("{header}\n{}", r#"{"kind":"denoise","block":[0,2],"nfe":1,"rows":[]}"#);
    invalid!(Trajectory::from_jsonl(&rows), "rows");
    // Drafting decoders.
    invalid!(SpeculativeDecoder::new(0), "window");
    let speculative = SpeculativeDecoder::new(2).unwrap();
    invalid!(speculative.generate(&subs, &model, &[], 4, &mut rng()), "prompt");
    invalid!(speculative.generate(&subs, &model, &[10], 4, &mut rng()), "prompt token");
    invalid!(speculative.generate(&subs, &model, &[5], 100, &mut rng()), "n_new");
    invalid!(AdaptiveParallelDecoder::new(1.5, 4), "mixture_weight");
    invalid!(AdaptiveParallelDecoder::new(0.5, 0), "lookahead");
    invalid!(
        AdaptiveParallelDecoder::new(0.5, 4).unwrap().with_temperature(f64::NAN),
        "temperature"
    );
}
