//! Tests of the harness with the autoregressive objective on a small denoiser.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use rand::RngExt;

use super::*;
use crate::ar::ArObjective;
use crate::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use crate::data::SequenceDataset;
use crate::error::CoreError;
use dlm_sched::InvalidInput;

fn model_config() -> DenoiserConfig {
    DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: 12, tie_embeddings: false }, 16)
        .with_d_model(32)
        .with_n_heads(2)
        .with_n_layers(2)
}

fn model(device: &Device) -> Denoiser {
    model_config().init(device).unwrap()
}

/// Counting sequences mod 8 with a random start: fully predictable after the first token.
fn data(n: usize, seed: u64) -> SequenceDataset {
    SequenceDataset::generate(n, 12, 12, seed, |len, rng| {
        let start = rng.random_range(0..8u32);
        (0..len as u32).map(|i| 4 + (start + i) % 8).collect()
    })
    .unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-train-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.ckpt")
}

fn flat_params<M: Module>(model: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().into_data().iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn a_small_model_overfits_a_batch() {
    let device = Device::flex().autodiff();
    let train = data(16, 1);
    let config = TrainConfig::new(40, 16).with_learning_rate(3e-3).with_seed(3);
    let mut trainer = Trainer::new(config, model(&device), ArObjective::default()).unwrap();
    let first = trainer.step(&train).unwrap().loss;
    let mut last = first;
    while !trainer.is_done() {
        last = trainer.step(&train).unwrap().loss;
    }
    // ln 12 ≈ 2.48 at the start; the sequences are deterministic after the first token.
    assert!((first - 12f64.ln()).abs() < 1e-4, "{first}");
    assert!(last < first / 2.0, "{first} -> {last}");
    assert!(trainer.evaluate(&train, None).unwrap() < first / 2.0);
}

#[test]
fn a_resumed_run_reproduces_the_uninterrupted_loss_curve_exactly() {
    let device = Device::flex().autodiff();
    let train = data(40, 2);
    // A learning rate with a full 17-digit expansion must survive the JSON round trip.
    let config = TrainConfig::new(8, 8)
        .with_learning_rate(2e-3 / 3.0)
        .with_warmup_steps(2)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_grad_accumulation(2)
        .with_ema_decay(Some(0.9))
        .with_seed(11);
    let objective = ArObjective::default();

    // One initial model for both runs (the device seed is process-wide, so tests running in
    // parallel could change a second draw).
    let initial = model(&device);
    let mut uninterrupted = Trainer::new(config.clone(), initial.clone(), objective).unwrap();
    let expected: Vec<f64> = (0..8).map(|_| uninterrupted.step(&train).unwrap().loss).collect();

    let mut first_half = Trainer::new(config, initial, objective).unwrap();
    let mut losses: Vec<f64> = (0..4).map(|_| first_half.step(&train).unwrap().loss).collect();
    let path = scratch("resume");
    let extra = serde_json::to_value(model_config()).unwrap();
    first_half.save_checkpoint(&path, extra).unwrap();
    drop(first_half);

    let stored: DenoiserConfig =
        serde_json::from_value(Trainer::<Denoiser, ArObjective>::checkpoint_extra(&path).unwrap())
            .unwrap();
    // A freshly initialised model with other weights: everything must come from the file.
    device.seed(99);
    let fresh = stored.init(&device).unwrap();
    let mut resumed = Trainer::resume(&path, fresh, objective).unwrap();
    assert_eq!(resumed.state().step, 4);
    losses.extend((0..4).map(|_| resumed.step(&train).unwrap().loss));
    assert_eq!(losses, expected, "bitwise equal loss curves");
    assert_eq!(flat_params(resumed.model()), flat_params(uninterrupted.model()));
    assert_eq!(flat_params(resumed.ema().unwrap()), flat_params(uninterrupted.ema().unwrap()));
}

#[test]
fn a_checkpoint_does_not_load_into_another_architecture() {
    let device = Device::flex().autodiff();
    let trainer =
        Trainer::new(TrainConfig::new(1, 2), model(&device), ArObjective::default()).unwrap();
    let path = scratch("architecture");
    trainer.save_checkpoint(&path, serde_json::Value::Null).unwrap();
    let wider = model_config().with_d_model(64).init(&device).unwrap();
    match Trainer::resume(&path, wider, ArObjective::default()) {
        Err(CoreError::Record { what, .. }) => assert!(what.contains("model"), "{what}"),
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("loaded into a wider model"),
    }
}

/// A checkpoint whose `optimizer` section is `optimizer` and everything else `path`'s.
fn with_optimizer_section(path: &std::path::Path, optimizer: &[u8], out: &std::path::Path) {
    let sections = crate::checkpoint::read_sections(path).unwrap();
    let (meta, model) = (sections.get("meta").unwrap(), sections.get("model").unwrap());
    let parts: Vec<(&str, &[u8])> =
        vec![("meta", meta), ("model", model), ("optimizer", optimizer)];
    crate::checkpoint::write_sections(out, &parts).unwrap();
}

#[test]
fn an_optimizer_state_of_another_model_or_none_is_an_error() {
    let device = Device::flex().autodiff();
    let (train, config) = (data(16, 4), TrainConfig::new(4, 8));
    let objective = ArObjective::default();
    let saved = |name: &str, model: Denoiser| {
        let mut trainer = Trainer::new(config.clone(), model, objective).unwrap();
        trainer.step(&train).unwrap();
        let path = scratch(name);
        trainer.save_checkpoint(&path, serde_json::Value::Null).unwrap();
        path
    };
    let (ours, theirs) =
        (saved("optimizer-ours", model(&device)), saved("optimizer-theirs", model(&device)));
    let optimizer = |path: &std::path::Path| {
        crate::checkpoint::read_sections(path).unwrap().get("optimizer").unwrap().to_vec()
    };
    let refused = |path: &std::path::Path| match Trainer::resume(path, model(&device), objective) {
        Err(CoreError::Record { what, message }) => {
            assert!(what.ends_with("optimizer"), "{what}");
            message
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("resumed with an optimizer state that does not match"),
    };
    // The other run's parameters have other ids: its moments belong to no parameter of ours.
    let mixed = scratch("optimizer-mixed");
    with_optimizer_section(&ours, &optimizer(&theirs), &mixed);
    assert!(refused(&mixed).contains("which the model does not have"));
    // A state from before the first step (empty) after one step: every moment would restart.
    let untrained = Trainer::new(config.clone(), model(&device), objective).unwrap();
    let blank = scratch("optimizer-blank");
    untrained.save_checkpoint(&blank, serde_json::Value::Null).unwrap();
    let emptied = scratch("optimizer-emptied");
    with_optimizer_section(&ours, &optimizer(&blank), &emptied);
    assert!(refused(&emptied).contains("have a state after 1 steps"));
    // Not a burnpack at all.
    let garbage = scratch("optimizer-garbage");
    with_optimizer_section(&ours, b"not an optimizer", &garbage);
    assert!(refused(&garbage).contains("not an optimizer record"));
    // The matching state resumes.
    assert!(Trainer::resume(&ours, model(&device), objective).is_ok());
}

#[test]
fn resume_or_new_starts_continues_and_refuses_another_run() {
    let device = Device::flex().autodiff();
    let train = data(16, 4);
    let path = scratch("resume-or-new");
    let _ = std::fs::remove_file(&path);
    let config = TrainConfig::new(4, 4).with_seed(5);
    let objective = ArObjective::default();
    let mut trainer =
        Trainer::resume_or_new(&path, config.clone(), model(&device), objective).unwrap();
    assert_eq!(trainer.state().step, 0, "no file: a fresh run");
    trainer.step(&train).unwrap();
    trainer.step(&train).unwrap();
    trainer.save_checkpoint(&path, serde_json::Value::Null).unwrap();
    let resumed = Trainer::resume_or_new(&path, config.clone(), model(&device), objective).unwrap();
    assert_eq!(resumed.state().step, 2);
    assert_eq!(flat_params(resumed.model()), flat_params(trainer.model()));
    // A save cut short: the run continues from the checkpoint before it.
    trainer.step(&train).unwrap();
    trainer.save_checkpoint(&path, serde_json::Value::Null).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let fallback =
        Trainer::resume_or_new(&path, config.clone(), model(&device), objective).unwrap();
    assert_eq!(fallback.state().step, 2, "the previous checkpoint, one step earlier");
    let other = config.clone().with_learning_rate(5e-4);
    // Another dataset of the same size, or another objective: refused too.
    let mut resumed =
        Trainer::resume_or_new(&path, config.clone(), model(&device), objective).unwrap();
    match resumed.step(&data(16, 99)) {
        Err(CoreError::TrainingDataChanged { saved, given }) => assert_ne!(saved, given),
        other => panic!("unexpected {other:?}"),
    }
    let shifted = ArObjective::default().with_first_target(2);
    match Trainer::resume_or_new(&path, config.clone(), model(&device), shifted) {
        Err(CoreError::ResumeMismatch { saved, requested, .. }) => {
            assert!(saved.contains("first_target: 1"), "{saved}");
            assert!(requested.contains("first_target: 2"), "{requested}");
        }
        other => panic!("unexpected {:?}", other.map(|t| t.state())),
    }
    match Trainer::resume_or_new(&path, other, model(&device), objective) {
        Err(CoreError::ResumeMismatch { path: p, saved, requested }) => {
            assert_eq!(p, path);
            assert!(saved.contains("learning_rate: 0.0003"), "{saved}");
            assert!(requested.contains("learning_rate: 0.0005"), "{requested}");
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("resumed another run's checkpoint"),
    }
}

#[test]
fn ema_blends_with_the_decay() {
    let device = Device::flex().autodiff();
    let before = model(&device);
    let config = TrainConfig::new(1, 8).with_learning_rate(1e-2).with_ema_decay(Some(0.75));
    let mut trainer = Trainer::new(config, before.clone(), ArObjective::default()).unwrap();
    trainer.step(&data(8, 3)).unwrap();
    let (old, new, ema) =
        (flat_params(&before), flat_params(trainer.model()), flat_params(trainer.ema().unwrap()));
    assert!(old.iter().zip(&new).any(|(a, b)| a != b));
    for ((o, n), e) in old.iter().zip(&new).zip(&ema) {
        assert!((0.75 * o + 0.25 * n - e).abs() < 1e-6);
    }
}

#[test]
fn global_norm_clipping_scales_all_gradients_together() {
    use burn::optim::GradientsParams;
    let device = Device::flex().autodiff();
    let model = model(&device);
    let batch = data(4, 4).batch(&[0, 1, 2, 3], &device);
    let loss = ArObjective::default().loss(&model, batch, &mut rand::SeedableRng::seed_from_u64(0));
    let mut grads = GradientsParams::from_grads(loss.sum.backward(), &model);
    let norm = clip_global_norm(&model, &mut grads, f64::INFINITY);
    assert!(norm > 0.0);
    let clipped = clip_global_norm(&model, &mut grads, norm / 4.0);
    assert!((clipped - norm).abs() < 1e-6 * norm, "returns the norm before clipping");
    let after = clip_global_norm(&model, &mut grads, f64::INFINITY);
    assert!((after - norm / 4.0).abs() < 1e-4 * norm, "{after} vs {}", norm / 4.0);
}

#[test]
fn bad_settings_are_rejected() {
    let cases = [
        (TrainConfig::new(0, 4), "steps"),
        (TrainConfig::new(4, 0), "batch_size"),
        (TrainConfig::new(4, 4).with_grad_accumulation(0), "grad_accumulation"),
        (TrainConfig::new(4, 4).with_learning_rate(-1.0), "learning_rate"),
        (TrainConfig::new(4, 4).with_beta_2(1.0), "beta_2"),
        (TrainConfig::new(4, 4).with_ema_decay(Some(1.0)), "ema_decay"),
        (TrainConfig::new(4, 4).with_grad_clip_norm(Some(0.0)), "grad_clip_norm"),
        (TrainConfig::new(4, 4).with_decay(LrDecay::Cosine { min_ratio: 2.0 }), "decay.min_ratio"),
        // Valid in f64, another optimiser in the f32 the optimiser computes in.
        (TrainConfig::new(4, 4).with_beta_2(1.0 - 1e-9), "beta_2"),
        (TrainConfig::new(4, 4).with_beta_1(1.0 - 1e-12), "beta_1"),
        (TrainConfig::new(4, 4).with_epsilon(1e-50), "epsilon"),
        (TrainConfig::new(4, 4).with_ema_decay(Some(1.0 - 1e-10)), "ema_decay"),
        (TrainConfig::new(4, 4).with_grad_clip_norm(Some(f64::INFINITY)), "grad_clip_norm"),
        (TrainConfig::new(4, 4).with_weight_decay(1e300), "weight_decay"),
    ];
    for (config, field) in cases {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{err}");
    }
    // The largest settings that survive f32 are accepted.
    assert!(TrainConfig::new(4, 4).with_beta_2(0.9999).with_epsilon(1e-30).validate().is_ok());
    // A dataset smaller than a batch, sequences the objective cannot score, or another training
    // set than the run started on: errors, not panics.
    let device = Device::flex().autodiff();
    let objective = ArObjective::default();
    let mut trainer = Trainer::new(TrainConfig::new(1, 64), model(&device), objective).unwrap();
    assert!(matches!(trainer.step(&data(8, 5)), Err(CoreError::Invalid(InvalidInput { .. }))));
    let late = ArObjective::default().with_first_target(12);
    let mut trainer = Trainer::new(TrainConfig::new(3, 4), model(&device), late).unwrap();
    let err = trainer.step(&data(8, 5)).unwrap_err().to_string();
    assert!(err.contains("`seq_len` = 12"), "{err}");
    let mut trainer = Trainer::new(TrainConfig::new(3, 4), model(&device), objective).unwrap();
    trainer.step(&data(8, 5)).unwrap();
    let err = trainer.step(&data(12, 5)).unwrap_err().to_string();
    assert!(err.contains("training sequences"), "{err}");
}

#[test]
fn replicas_sum_the_gradients_of_their_shards() {
    // The causal objective draws no noise, so one step with the batch split across replicas must
    // give the step of the whole batch (to rounding): a dropped shard, a shard counted twice or a
    // mean where a sum belongs would move the parameters elsewhere.
    let device = Device::flex().autodiff();
    let initial = crate::testing::randomised_with_std(model(&device), 0.05, &device);
    let train = data(16, 2);
    let step_with = |replicas: usize| {
        // With ε = 1 Adam's first update, g/(|g| + 1), is smooth in the gradient: rounding noise
        // in a near-zero gradient cannot flip an update of size lr.
        let config = TrainConfig::new(2, 8)
            .with_replicas(replicas)
            .with_learning_rate(1.0)
            .with_epsilon(1.0);
        let mut trainer = Trainer::new(config, initial.clone(), ArObjective::default()).unwrap();
        let report = trainer.step(&train).unwrap();
        (report, flat_params(trainer.model()))
    };
    let (one, after_one) = step_with(1);
    for replicas in [2, 4] {
        let (many, after_many) = step_with(replicas);
        assert_eq!(many.tokens, one.tokens);
        assert!((many.loss - one.loss).abs() < 1e-5 * one.loss, "{many:?} vs {one:?}");
        let (norm_many, norm_one) = (many.grad_norm, one.grad_norm);
        assert!((norm_many - norm_one).abs() < 1e-4 * norm_one, "{norm_many} vs {norm_one}");
        let moved =
            after_one.iter().zip(&after_many).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(moved < 1e-5, "replicas = {replicas}: parameters differ by {moved}");
    }
    let err = TrainConfig::new(2, 8).with_replicas(3).validate().unwrap_err().to_string();
    assert!(err.contains("`replicas`"), "{err}");
}

#[test]
#[cfg(not(feature = "plot"))]
fn a_loss_plot_without_the_plot_feature_is_refused_before_training() {
    use crate::train::{RunOptions, run};
    let device = Device::flex().autodiff();
    let mut trainer =
        Trainer::new(TrainConfig::new(2, 4), model(&device), ArObjective::default()).unwrap();
    let options = RunOptions {
        loss_plot: Some("loss.svg".into()),
        show_progress: false,
        ..RunOptions::default()
    };
    let err = run(&mut trainer, &data(8, 1), &data(8, 2), &options).unwrap_err();
    assert!(matches!(err, CoreError::Unsupported { name: "loss_plot", .. }), "{err}");
    assert_eq!(trainer.state().step, 0, "nothing was trained");
}

/// The AR objective, whose loss turns NaN from its `from`-th call on.
#[derive(Debug)]
struct PoisonedFrom {
    from: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Objective<Denoiser> for PoisonedFrom {
    fn check_data(&self, model: &Denoiser, data: &SequenceDataset) -> Result<(), CoreError> {
        ArObjective::default().check_data(model, data)
    }

    fn loss(
        &self,
        model: &Denoiser,
        batch: burn::tensor::Tensor<2, burn::tensor::Int>,
        rng: &mut rand::rngs::StdRng,
    ) -> crate::train::LossSum {
        let calls = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let loss = ArObjective::default().loss(model, batch, rng);
        if calls >= self.from {
            crate::train::LossSum { sum: loss.sum.mul_scalar(f64::NAN), count: loss.count }
        } else {
            loss
        }
    }
}

#[test]
fn a_diverged_step_is_an_error_naming_it_and_changes_nothing() {
    let device = Device::flex().autodiff();
    let train = data(32, 3);
    let objective = PoisonedFrom { from: 1, calls: Default::default() };
    let config = TrainConfig::new(4, 8).with_ema_decay(Some(0.9));
    let mut trainer = Trainer::new(config, model(&device), objective).unwrap();
    trainer.step(&train).unwrap();
    let (params, ema, state) =
        (flat_params(trainer.model()), flat_params(trainer.ema().unwrap()), trainer.state());
    match trainer.step(&train) {
        Err(CoreError::Diverged { step: 1, what: "loss", value }) => assert!(value.is_nan()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(flat_params(trainer.model()), params, "no update applied");
    assert_eq!(flat_params(trainer.ema().unwrap()), ema, "the EMA is untouched");
    assert_eq!(trainer.state(), state, "the step and the data position are as before");
    // What a run would save now is the last good state.
    let path = scratch("diverged");
    trainer.save_checkpoint(&path, serde_json::Value::Null).unwrap();
    // The checkpoint is the poisoned objective's (its call count included): resuming it with
    // another objective is refused; its weights are the last good ones.
    let other = Trainer::resume(&path, model(&device), ArObjective::default());
    assert!(matches!(other, Err(CoreError::ResumeMismatch { .. })));
    let same = PoisonedFrom { from: 1, calls: 2.into() };
    let resumed = Trainer::resume(&path, model(&device), same).unwrap();
    assert_eq!(flat_params(resumed.model()), params);
    assert_eq!(resumed.state(), state);
}
