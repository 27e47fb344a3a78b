//! Parity of the imported LLaMA-family checkpoints with PyTorch/transformers: tiny random models
//! of `transformers`' `LlamaForCausalLM` (saved under LLaDA's names), `Qwen2ForCausalLM` (Dream,
//! sharded) and `Qwen3ForCausalLM` (SDAR, tied embeddings, explicit head size), written with
//! their logits by `scripts/llama_fixtures.py` (run by hand) into `tests/fixtures/llama/`.
//!
//! Each checkpoint is loaded through [`Pretrained::from_dir`] and run with full attention, with
//! padded keys in one row, and (SDAR) block-causal attention; every logit must match within
//! 1e-4. A second pass runs the same inputs through the KV cache, chunk by chunk, where the mask
//! makes that exact.

use std::path::PathBuf;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use dlm_core::backbone::{AttentionMask, DenoiserInput, TokenModel};
use dlm_core::llama::{Architecture, Pretrained};
use serde_json::Value;

/// Largest tolerated |ours − PyTorch| on a logit (f32, CPU).
const TOLERANCE: f32 = 1e-4;

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(name)
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_dir(name).join("logits.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn numbers<T>(value: &Value, convert: impl Fn(&Value) -> T) -> Vec<T> {
    value.as_array().unwrap().iter().map(convert).collect()
}

fn max_difference(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// The fixture's case as our mask: full attention when nothing is blocked, else the blocked
/// pattern (block-causal cases also as [`AttentionMask::BlockCausal`]).
fn mask_of(case: &Value, batch: usize, len: usize, device: &Device) -> AttentionMask {
    let blocked: Vec<bool> = numbers(&case["blocked"], |v| v.as_u64().unwrap() == 1);
    if blocked.iter().all(|&b| !b) {
        return AttentionMask::Full;
    }
    if case["name"] == "block_causal" {
        return AttentionMask::BlockCausal { block_size: 4 };
    }
    AttentionMask::custom(Tensor::<3, Bool>::from_data(
        TensorData::new(blocked, [batch, len, len]),
        device,
    ))
}

/// Loads `name`, checks every case's logits, and returns the model and the fixture.
fn check(name: &str, architecture: Architecture, mask_id: Option<u32>) -> (Pretrained, Value) {
    let device = Device::flex();
    let pretrained = Pretrained::from_dir(fixture_dir(name), &device).unwrap();
    assert_eq!(pretrained.config.architecture, architecture);
    assert_eq!(pretrained.config.mask_id, mask_id);
    let fixture = fixture(name);
    let (batch, len) =
        (fixture["batch"].as_u64().unwrap() as usize, fixture["len"].as_u64().unwrap() as usize);
    let tokens: Vec<i64> = numbers(&fixture["tokens"], |v| v.as_i64().unwrap());
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, len]), &device);
    for case in fixture["cases"].as_array().unwrap() {
        let mask = mask_of(case, batch, len, &device);
        let input = DenoiserInput::tokens(tokens.clone()).with_mask(mask);
        let ours: Vec<f32> =
            pretrained.model.forward(input).output.into_data().try_to_vec::<f32>().unwrap();
        let theirs: Vec<f32> = numbers(&case["logits"], |v| v.as_f64().unwrap() as f32);
        let difference = max_difference(&ours, &theirs);
        assert!(difference < TOLERANCE, "{name}/{}: max |Δ| = {difference}", case["name"]);
    }
    (pretrained, fixture)
}

#[test]
fn llada_matches_transformers_llama_under_llada_names() {
    check("llada", Architecture::Llada, Some(63));
}

#[test]
fn dream_matches_transformers_qwen2_from_shards() {
    let (pretrained, fixture) = check("dream", Architecture::Dream, Some(63));
    assert!(pretrained.config.architecture.shifts_logits());
    // Read as Dream reads it: the prediction for token i is the output at i − 1 (at 0, its own).
    let device = Device::flex();
    let (batch, len, vocab) = (2, 8, 64);
    let tokens: Vec<i64> = numbers(&fixture["tokens"], |v| v.as_i64().unwrap());
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, len]), &device);
    let input = DenoiserInput::tokens(tokens);
    let ours: Vec<f32> =
        TokenModel::forward(&pretrained, input).output.into_data().try_to_vec::<f32>().unwrap();
    let raw: Vec<f32> = numbers(&fixture["cases"][0]["logits"], |v| v.as_f64().unwrap() as f32);
    let shifted: Vec<f32> = (0..batch * len)
        .flat_map(|row| {
            let source = if row % len == 0 { row } else { row - 1 };
            raw[source * vocab..(source + 1) * vocab].to_vec()
        })
        .collect();
    let difference = max_difference(&ours, &shifted);
    assert!(difference < TOLERANCE, "shifted: max |Δ| = {difference}");
}

#[test]
fn sdar_matches_transformers_qwen3_with_block_causal_attention_and_its_kv_cache() {
    let (pretrained, fixture) = check("sdar", Architecture::Sdar { block_size: 4 }, None);
    assert!(pretrained.config.model.tie_embeddings && pretrained.config.model.qk_norm);
    // Block by block through the KV cache: exact under a block-causal mask, so the logits of each
    // block equal the reference's block-causal logits.
    let device = Device::flex();
    let (batch, len) = (2, 8);
    let tokens: Vec<i64> = numbers(&fixture["tokens"], |v| v.as_i64().unwrap());
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, len]), &device);
    let case = fixture["cases"].as_array().unwrap().iter().find(|c| c["name"] == "block_causal");
    let theirs: Vec<f32> = numbers(&case.unwrap()["logits"], |v| v.as_f64().unwrap() as f32);
    let mask = AttentionMask::BlockCausal { block_size: 4 };
    let first = DenoiserInput::tokens(tokens.clone().narrow(1, 0, 4)).with_mask(mask.clone());
    let first = pretrained.model.forward(first.keep_cache());
    let second = DenoiserInput::tokens(tokens.narrow(1, 4, 4))
        .with_mask(mask)
        .with_cache(first.cache.expect("kept"));
    let second = pretrained.model.forward(second).output;
    let ours: Vec<f32> =
        Tensor::cat(vec![first.output, second], 1).into_data().try_to_vec::<f32>().unwrap();
    let difference = max_difference(&ours, &theirs);
    assert!(difference < TOLERANCE, "cached blocks: max |Δ| = {difference}");
}
