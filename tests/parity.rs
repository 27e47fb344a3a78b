//! Backend parity: the same model, weights and inputs on `flex` (the reference) and on every other
//! compiled backend give the same numbers within `f32` tolerance — forward (the denoiser and a
//! BERT MLM), backward, one training step, and one step of the masked and Gaussian samplers.
//!
//! ```text
//! cargo test -p dlm --features ndarray --test parity      # one backend
//! cargo test -p dlm --features wgpu --test parity         # on a machine with a Vulkan driver
//! source <(scripts/setup-torch.sh --env) && cargo test -p dlm --features tch --test parity
//! # CI: all three in one build (inside the torch environment)
//! cargo test -p dlm --features ndarray,wgpu,tch --lib --test parity
//! ```
#![cfg(any(feature = "ndarray", feature = "wgpu", feature = "cuda", feature = "tch"))]

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{AttentionMask, Denoiser, DenoiserConfig, DenoiserInput, DenoiserIo};
use dlm::core::bert::BertConfig;
use dlm::core::data::SequenceDataset;
use dlm::core::train::{Objective, TrainConfig, Trainer};
use dlm::device::{compiled_backends, parse_device};
use dlm::discrete::{MaskedDenoiser, Subs};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Tolerances (f32 arithmetic in another order, other kernels for GELU, softmax, reductions):
/// outputs element-wise `|a − b| ≤ 1e-4·max(1, |b|)`; gradients `max|a − b| ≤ 1e-4·max|b|` over
/// all parameters; one AdamW step (with `ε = 1e-5`): the loss within 1e-4 relative and the
/// parameter updates within 1e-4 in relative L2.
/// Adam divides by `√v + ε`, so a parameter whose gradient is at the level of rounding noise moves
/// by up to ±lr with a backend-dependent sign; an `ε` above that noise damps those entries
/// without hiding a wrong update.
const TOLERANCE: f64 = 1e-4;
const UPDATE_TOLERANCE: f64 = 1e-4;

fn others() -> Vec<(&'static str, Device)> {
    compiled_backends()
        .into_iter()
        .filter(|&b| b != "flex")
        .map(|b| (b, parse_device(b).expect("compiled")))
        .collect()
}

fn assert_close(name: &str, a: Vec<f64>, b: Vec<f64>) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let worst =
        a.iter().zip(&b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0f64, f64::max);
    eprintln!("{name}: worst relative difference {worst:.2e}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= TOLERANCE * y.abs().max(1.0), "{name}[{i}]: {x} vs flex {y}");
    }
}

fn assert_close_normwise(name: &str, a: Vec<f64>, b: Vec<f64>) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f64, f64::max);
    eprintln!("{name}: worst difference / scale {:.2e}", worst / scale);
    assert!(worst <= TOLERANCE * scale, "{name}: max difference {worst}, scale {scale}");
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn config() -> DenoiserConfig {
    DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: 13, tie_embeddings: false }, 32)
        .with_d_model(32)
        .with_n_heads(4)
        .with_n_layers(2)
        .with_cond_dim(Some(16))
}

/// `target` with the weights of `source` (possibly on another backend), through a record.
fn same_weights<M: Module>(source: &M, target: M) -> M {
    target.load_record(source.clone().into_record())
}

/// Random weights `N(0, 0.05²)` (a well-conditioned network, so that the comparison measures the
/// backends, not the amplification of rounding by saturated layers), on flex and on `device`.
fn pair(config: &DenoiserConfig, device: &Device) -> (Denoiser, Denoiser) {
    let flex = Device::flex();
    let reference =
        dlm_core::testing::randomised_with_std(config.init(&flex).unwrap(), 0.05, &flex);
    let copy = same_weights(&reference, config.init(device).unwrap());
    (reference, copy)
}

/// The causal (autoregressive) model of the backward and training checks: no time input.
fn causal() -> DenoiserConfig {
    config().with_cond_dim(None)
}

fn tokens(device: &Device) -> Tensor<2, Int> {
    let values: Vec<i64> = (0..2 * 12).map(|i| (i * 7 % 13) as i64).collect();
    Tensor::from_data(TensorData::new(values, [2, 12]), device)
}

#[test]
fn bert_forward_agrees() {
    let config = BertConfig {
        vocab_size: 13,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        position_embedding_type: "absolute".into(),
        tie_word_embeddings: true,
    };
    let flex = Device::flex();
    let reference =
        dlm_core::testing::randomised_with_std(config.init(&flex).unwrap(), 0.05, &flex);
    for (name, device) in others() {
        let model = same_weights(&reference, config.init(&device).unwrap());
        assert_close(
            &format!("{name} BERT forward"),
            host(model.forward(tokens(&device), None)),
            host(reference.forward(tokens(&flex), None)),
        );
    }
}

/// The imported LLaMA family (SDAR's fixture: grouped-query heads, q/k norms, tied head) with
/// full, padded and block-causal masks, and a block through its KV cache.
#[test]
fn imported_llama_forward_agrees() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dlm-core/tests/fixtures/llama/sdar");
    let flex = Device::flex();
    let reference = dlm::core::llama::Pretrained::from_dir(&dir, &flex).unwrap();
    let ids = |device: &Device| {
        Tensor::<2, Int>::from_ints(
            [[5, 9, 14, 20, 3, 8, 11, 2], [33, 2, 41, 7, 1, 4, 60, 12]],
            device,
        )
    };
    let masks = |device: &Device| {
        let mut padded = vec![false; 2 * 8 * 8];
        for q in 0..8 {
            padded[64 + q * 8 + 6] = true;
            padded[64 + q * 8 + 7] = true;
        }
        let padded =
            Tensor::<3, burn::tensor::Bool>::from_data(TensorData::new(padded, [2, 8, 8]), device);
        vec![
            ("full", AttentionMask::Full),
            ("padded", AttentionMask::custom(padded)),
            ("block-causal", AttentionMask::BlockCausal { block_size: 4 }),
        ]
    };
    for (name, device) in others() {
        let model = dlm::core::llama::Pretrained::from_dir(&dir, &device).unwrap();
        for ((mask_name, mask), (_, reference_mask)) in masks(&device).into_iter().zip(masks(&flex))
        {
            let ours = model.model.forward(DenoiserInput::tokens(ids(&device)).with_mask(mask));
            let theirs = reference
                .model
                .forward(DenoiserInput::tokens(ids(&flex)).with_mask(reference_mask));
            assert_close(
                &format!("{name} LLaMA forward, {mask_name}"),
                host(ours.output),
                host(theirs.output),
            );
        }
        let mask = AttentionMask::BlockCausal { block_size: 4 };
        let first = model.model.forward(
            DenoiserInput::tokens(ids(&device).narrow(1, 0, 4))
                .with_mask(mask.clone())
                .keep_cache(),
        );
        let second = model.model.forward(
            DenoiserInput::tokens(ids(&device).narrow(1, 4, 4))
                .with_mask(mask.clone())
                .with_cache(first.cache.unwrap()),
        );
        let full = reference.model.forward(DenoiserInput::tokens(ids(&flex)).with_mask(mask));
        assert_close(
            &format!("{name} LLaMA cached block"),
            host(second.output),
            host(full.output.narrow(1, 4, 4)),
        );
    }
}

#[test]
fn forward_passes_agree() {
    for (name, device) in others() {
        let (reference, model) = pair(&config(), &device);
        for mask in [
            AttentionMask::Full,
            AttentionMask::Causal,
            AttentionMask::BlockCausal { block_size: 4 },
        ] {
            let run = |m: &Denoiser, d: &Device| {
                let t = Tensor::<1>::from_floats([0.3, 0.9], d);
                host(
                    m.forward(
                        DenoiserInput::tokens(tokens(d)).with_time(t).with_mask(mask.clone()),
                    )
                    .output,
                )
            };
            assert_close(
                &format!("{name} forward {mask:?}"),
                run(&model, &device),
                run(&reference, &Device::flex()),
            );
        }
    }
}

fn gradients(model: &Denoiser, device: &Device) -> Vec<f64> {
    let autodiff = device.clone().autodiff();
    let model = same_weights(model, causal().init(&autodiff).unwrap());
    let loss =
        ArObjective::default().loss(&model, tokens(&autodiff), &mut StdRng::seed_from_u64(0));
    let grads = GradientsParams::from_grads(loss.sum.backward(), &model);
    struct Collect<'a>(&'a GradientsParams, Vec<f64>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.extend(g.into_data().iter::<f64>());
            }
        }
    }
    let mut collect = Collect(&grads, Vec::new());
    model.visit(&mut collect);
    collect.1
}

#[test]
fn backward_passes_agree() {
    for (name, device) in others() {
        let (reference, model) = pair(&causal(), &device);
        assert_close_normwise(
            &format!("{name} gradients"),
            gradients(&model, &device),
            gradients(&reference, &Device::flex()),
        );
    }
}

#[test]
fn a_training_step_agrees() {
    let data =
        SequenceDataset::new(12, 13, (0..8 * 12).map(|i| (i * 5 % 13) as u32).collect()).unwrap();
    struct Collect(Vec<f64>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().into_data().iter::<f64>());
        }
    }
    let params = |m: &Denoiser| {
        let mut collect = Collect(Vec::new());
        m.visit(&mut collect);
        collect.0
    };
    for (name, device) in others() {
        let (reference, model) = pair(&causal(), &device);
        let step = |m: Denoiser, d: &Device| {
            let m = same_weights(&m, causal().init(&d.clone().autodiff()).unwrap());
            let before = params(&m);
            let mut trainer = Trainer::new(
                TrainConfig::new(1, 4).with_learning_rate(1e-3).with_epsilon(1e-5),
                m,
                ArObjective::default(),
            )
            .unwrap();
            let loss = trainer.step(&data).unwrap().loss;
            let update: Vec<f64> =
                params(trainer.model()).iter().zip(&before).map(|(a, b)| a - b).collect();
            (loss, update)
        };
        let (loss, update) = step(model, &device);
        let (reference_loss, reference_update) = step(reference, &Device::flex());
        assert!(
            (loss - reference_loss).abs() <= TOLERANCE * reference_loss.abs(),
            "{name} loss {loss} vs {reference_loss}"
        );
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let difference: Vec<f64> =
            update.iter().zip(&reference_update).map(|(a, b)| a - b).collect();
        let relative = norm(&difference) / norm(&reference_update);
        eprintln!(
            "{name} AdamW step: loss difference {:.2e}, update difference {relative:.2e} (L2)",
            (loss - reference_loss).abs()
        );
        assert!(
            relative <= UPDATE_TOLERANCE,
            "{name} AdamW update differs by {relative} (L2, relative)"
        );
        assert!(norm(&reference_update) > 1e-3, "the step moved the weights");
    }
}

#[test]
fn sampler_inputs_agree() {
    // One masked-sampler step reads SUBS log-probabilities; a Gaussian step reads x̂0.
    for (name, device) in others() {
        let (reference, model) = pair(&config(), &device);
        let masked = |d: &Device| tokens(d).mask_fill(tokens(d).lower_elem(5), 3);
        let subs = |m: &Denoiser, d: &Device| {
            let t = Tensor::<1>::from_floats([0.5, 0.5], d);
            host(Subs { model: m, mask_id: 3 }.log_probs(masked(d), t).exp())
        };
        assert_close(
            &format!("{name} SUBS probabilities"),
            subs(&model, &device),
            subs(&reference, &Device::flex()),
        );
    }
    for (name, device) in others() {
        let flex = Device::flex();
        let config = dlm::continuous::DiffusionLmConfig::new(13, 16)
            .with_embed_dim(8)
            .with_d_model(32)
            .with_n_layers(1)
            .with_cond_dim(16);
        let reference =
            dlm_core::testing::randomised_with_std(config.init(&flex).unwrap(), 0.05, &flex);
        let model = same_weights(&reference, config.init(&device).unwrap());
        let x0 = |m: &dlm::continuous::DiffusionLm, d: &Device| {
            let z = Tensor::<3>::from_data(
                TensorData::new(
                    (0..2 * 5 * 8).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect::<Vec<_>>(),
                    [2, 5, 8],
                ),
                d,
            );
            host(dlm::continuous::X0Predictor::predict_x0(
                m,
                z,
                Tensor::from_floats([0.2, 0.7], d),
                None,
            ))
        };
        assert_close(
            &format!("{name} Diffusion-LM x0"),
            x0(&model, &device),
            x0(&reference, &flex),
        );
    }
}
