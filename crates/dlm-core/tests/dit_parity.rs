//! Parity of the MDLM / BD3LM checkpoint import with their DiT's forward, written from the
//! reference repository's `models/dit.py` in `scripts/dit_fixtures.py` (run by hand): tiny
//! random checkpoints under the Hugging Face names (prefix `backbone.`), every weight nonzero.
//! MDLM with full attention, BD3LM block-causal over its blocks; every logit within 1e-4.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::backbone::{AttentionMask, DenoiserInput, DitCheckpoint, DitFamily, TokenModel};
use serde_json::Value;

fn check(name: &str, family: DitFamily) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dit").join(name);
    let device = Device::flex();
    let checkpoint = DitCheckpoint::from_dir(&dir, &device).unwrap();
    assert_eq!(checkpoint.family, family);
    assert_eq!(checkpoint.mask_id, 32, "the last id");
    assert!(!checkpoint.is_time_conditioned());
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).unwrap()).unwrap();
    let tokens: Vec<i64> =
        fixture["tokens"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [2, 16]), &device);
    let mask = match family {
        DitFamily::Mdlm => AttentionMask::Full,
        DitFamily::Bd3lm { block_size } => AttentionMask::BlockCausal { block_size },
    };
    // Whatever time a sampler passes, the checkpoint runs at σ = 0.
    let input = DenoiserInput::tokens(tokens).with_mask(mask).with_time(Tensor::ones([2], &device));
    let ours: Vec<f32> =
        TokenModel::forward(&checkpoint, input).output.into_data().try_to_vec::<f32>().unwrap();
    let theirs: Vec<f32> =
        fixture["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let difference = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert_eq!(ours.len(), theirs.len());
    assert!(difference < 1e-4, "{name}: max |Δ| = {difference}");
}

#[test]
fn mdlm_matches_the_reference_dit() {
    check("mdlm", DitFamily::Mdlm);
}

#[test]
fn bd3lm_matches_the_reference_dit_block_causally() {
    check("bd3lm", DitFamily::Bd3lm { block_size: 4 });
}

#[test]
fn configs_it_cannot_run_are_refused_by_name() {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dit/bd3lm");
    let edit = |tag: &str, key: &str, value: Value| {
        let dir = std::env::temp_dir().join(format!("dlm-dit-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(source.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
                .unwrap();
        config[key] = value;
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        DitCheckpoint::from_dir(&dir, &Device::flex())
    };
    let name = |result: Result<DitCheckpoint, dlm_core::CoreError>| match result {
        Err(dlm_core::CoreError::Unsupported { name, .. }) => name,
        other => panic!("expected Unsupported, got {other:?}"),
    };
    assert_eq!(name(edit("timed", "time_conditioning", Value::Bool(true))), "time_conditioning");
    assert_eq!(name(edit("type", "model_type", Value::from("dit"))), "model_type");
    assert_eq!(name(edit("block", "block_size", Value::Null)), "model_type");
    assert!(matches!(
        edit("blocks", "n_blocks", Value::from(3)),
        Err(dlm_core::CoreError::MissingTensor { key, .. }) if key == "backbone.blocks.2.norm1.weight"
    ));
}
