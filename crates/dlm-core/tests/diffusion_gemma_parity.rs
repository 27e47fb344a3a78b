//! Parity of the imported DiffusionGemma text model with PyTorch/transformers: a tiny random
//! `DiffusionGemmaForBlockDiffusion` (sliding and global layers with their own head sizes and
//! rotary settings, the mixture of experts, self-conditioning, perturbed norms and untied
//! per-layer scalars), saved in two shards with its outputs by
//! `scripts/diffusion_gemma_fixtures.py` (run by hand) into `tests/fixtures/diffusion_gemma/`.
//!
//! Loaded through [`DiffusionGemma::from_dir`], every recorded output must match within 1e-4:
//! the encoder's hidden states for the prompt, decoder logits without and with
//! self-conditioning, and logits for a second canvas after the first joined the cache (where the
//! sliding layers keep only the last `sliding_window − 1` keys).

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::CoreError;
use dlm_core::diffusion_gemma::{AttentionKind, DiffusionGemma};
use serde_json::Value;

/// Largest tolerated |ours − PyTorch| (f32, CPU).
const TOLERANCE: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusion_gemma")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every number of a nested JSON array, in row-major order.
fn flat(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        number => vec![number.as_f64().unwrap()],
    }
}

fn ids(value: &Value, device: &Device) -> Tensor<2, Int> {
    let rows = value.as_array().unwrap();
    let ids: Vec<i64> = flat(value).into_iter().map(|v| v as i64).collect();
    let len = ids.len() / rows.len();
    Tensor::from_data(TensorData::new(ids, [rows.len(), len]), device)
}

fn max_difference<const D: usize>(ours: Tensor<D>, theirs: &Value) -> f32 {
    let theirs = flat(theirs);
    let ours: Vec<f32> = ours.into_data().iter::<f32>().collect();
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(&theirs).map(|(a, b)| (a - *b as f32).abs()).fold(0.0, f32::max)
}

#[test]
fn encoder_and_decoder_match_transformers() {
    let device = Device::flex();
    let gemma = DiffusionGemma::from_dir(fixture_dir(), &device).unwrap();
    let config = &gemma.info.model;
    use AttentionKind::{Full, Sliding};
    assert_eq!(config.layers, [Sliding, Sliding, Full]);
    assert_eq!((config.sliding.head_dim, config.sliding.num_kv_heads), (8, 2));
    assert_eq!((config.full.head_dim, config.full.num_kv_heads), (16, 1));
    assert_eq!((config.sliding.rotated_pairs, config.full.rotated_pairs), (4, 2));
    assert_eq!(config.canvas_length, 4);
    assert_eq!(gemma.info.eos_ids, [1]);
    let reference = reference();
    let model = &gemma.model;

    let (hidden, cache) = model.encode(ids(&reference["prompt"], &device), None);
    let encoder = max_difference(hidden, &reference["encoder"]["hidden"]);
    assert!(encoder < TOLERANCE, "encoder hidden states differ by {encoder}");

    let decoder = &reference["decoder"];
    let canvas = ids(&decoder["canvas"], &device);
    let logits = model.decode(canvas.clone(), None, &cache);
    let first = max_difference(logits.clone(), &decoder["logits"]);
    assert!(first < TOLERANCE, "decoder logits differ by {first}");

    let temperature = decoder["self_conditioning_temperature"].as_f64().unwrap();
    let conditioned = model.decode(canvas.clone(), Some(logits.div_scalar(temperature)), &cache);
    let second = max_difference(conditioned, &decoder["logits_self_conditioned"]);
    assert!(second < TOLERANCE, "self-conditioned logits differ by {second}");

    let (_, cache) = model.encode(canvas, Some(cache));
    assert_eq!(cache.len(), 7 + 4);
    let next = &reference["next_canvas"];
    let logits = model.decode(ids(&next["canvas"], &device), None, &cache);
    let third = max_difference(logits, &next["logits"]);
    assert!(third < TOLERANCE, "second-canvas logits differ by {third}");
    println!(
        "max |ours − transformers|: encoder {encoder:.1e}, decoder {first:.1e}, \
         self-conditioned {second:.1e}, second canvas {third:.1e}"
    );
}

/// A copy of the fixture directory with `edit` applied to its `config.json`.
fn edited_fixture(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dlm-diffusion-gemma-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn configs_and_weights_that_do_not_fit_are_refused_by_name() {
    let device = Device::flex();
    let load = |dir: PathBuf| {
        let result = DiffusionGemma::from_dir(&dir, &device).map(drop);
        std::fs::remove_dir_all(dir).unwrap();
        result.unwrap_err()
    };
    let error = load(edited_fixture("experts", |c| c["text_config"]["num_experts"] = Value::Null));
    assert!(matches!(error, CoreError::Unsupported { name: "num_experts", .. }), "{error}");
    let error = load(edited_fixture("bidirectional", |c| {
        c["text_config"]["use_bidirectional_attention"] = "all".into();
    }));
    assert!(
        matches!(error, CoreError::Unsupported { name: "use_bidirectional_attention", .. }),
        "{error}"
    );
    let error = load(edited_fixture("rope", |c| {
        c["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = "yarn".into();
    }));
    assert!(matches!(error, CoreError::Unsupported { name: "rope_parameters.rope_type", .. }));
    // A config whose sizes the weights do not bear out: a tensor of the wrong shape, named.
    let error =
        load(edited_fixture("hidden", |c| c["text_config"]["intermediate_size"] = 32.into()));
    match error {
        CoreError::TensorShape { key, .. } => {
            assert!(key.ends_with("mlp.gate_proj.weight"), "{key}")
        }
        other => panic!("expected a shape error, got {other}"),
    }
    let error = load(edited_fixture("window", |c| c["text_config"]["sliding_window"] = 1.into()));
    assert!(error.to_string().contains("sliding_window"), "{error}");
}

#[test]
fn a_generation_config_in_the_released_format_sets_the_defaults_and_end_ids() {
    let dir = edited_fixture("generation", |_| {});
    let released = r#"{
        "max_new_tokens": 256, "max_denoising_steps": 48,
        "sampler_config": {"entropy_bound": 0.1, "_cls_name": "EntropyBoundSamplerConfig"},
        "t_min": 0.4, "t_max": 0.8, "stability_threshold": 1, "confidence_threshold": 0.005,
        "eos_token_id": [1, 10, 50], "pad_token_id": 0, "transformers_version": "5.24.0"
    }"#;
    std::fs::write(dir.join("generation_config.json"), released).unwrap();
    let gemma = DiffusionGemma::from_dir(&dir, &Device::flex()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let generation = &gemma.info.generation;
    assert_eq!(generation.max_denoising_steps, Some(48));
    assert_eq!(generation.entropy_bound, Some(0.1));
    assert_eq!((generation.t_min, generation.t_max), (Some(0.4), Some(0.8)));
    assert_eq!(generation.confidence_threshold, Some(0.005));
    assert_eq!(gemma.info.eos_ids, [1, 10, 50]);
    assert_eq!(gemma.info.pad_id, Some(0));
}
