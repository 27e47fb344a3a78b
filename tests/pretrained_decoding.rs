//! Decoding parity on an imported checkpoint: LLaDA's semi-autoregressive generation with
//! low-confidence remasking at temperature 0 is this library's [`MaskedSampler`] with a top-k
//! policy on token probabilities, a block length and a greedy proposal, run on the model loaded
//! by [`Pretrained::from_dir`] through SUBS. The reference tokens come from a PyTorch loop of the
//! same algorithm on the same tiny `transformers` model (`scripts/llama_fixtures.py`,
//! `llada_generate`), for pure diffusion and semi-autoregressive block settings.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm::core::llama::Pretrained;
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::discrete::Subs;
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

fn ints(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

#[test]
fn llada_low_confidence_remasking_is_token_identical_to_the_reference_loop() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dlm-core/tests/fixtures/llama/llada");
    let device = Device::flex();
    let pretrained = Pretrained::from_dir(&dir, &device).unwrap();
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("generation.json")).unwrap())
            .unwrap();
    let mask_id = pretrained.config.mask_id.expect("the config names the mask");
    assert_eq!(i64::from(mask_id), fixture["mask_id"].as_i64().unwrap());
    let subs = Subs { model: &pretrained, mask_id };
    let batch = fixture["batch"].as_u64().unwrap() as usize;
    let prompt = ints(&fixture["prompt"]);
    let prompt_len = prompt.len() / batch;
    let prompt = Tensor::<2, Int>::from_data(TensorData::new(prompt, [batch, prompt_len]), &device);
    for run in fixture["runs"].as_array().unwrap() {
        let field = |name: &str| run[name].as_u64().unwrap() as usize;
        let (gen_len, block_length, steps) =
            (field("gen_len"), field("block_length"), field("steps"));
        let steps_per_block = steps / (gen_len / block_length);
        let sampler = MaskedSampler::new(
            Unmasking::TopK { confidence: Confidence::TokenProbability },
            steps_per_block,
        )
        .unwrap()
        .with_block_length(block_length)
        .unwrap()
        .with_proposal(TokenSampler::greedy());
        let state = SamplerState::with_prompt(&subs, prompt.clone(), gen_len).unwrap();
        let out = sampler.sample(&subs, state, &mut StdRng::seed_from_u64(0)).unwrap();
        let ours: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
        assert_eq!(
            ours,
            ints(&run["tokens"]),
            "gen {gen_len}, block {block_length}, steps {steps}"
        );
        assert_eq!(out.nfe, steps, "one model call per step");
    }
}
