//! Parity of [`BertMlm`] with PyTorch/transformers on real checkpoints: AntiBERTy (PyTorch zip
//! `.bin`) and an English bert-tiny (`.safetensors`, `gamma`/`beta` layer-norm names, with its
//! WordPiece `tokenizer.json`).
//!
//! The expected numbers are in `tests/fixtures/*.json`, written by `scripts/bert_fixtures.py`
//! (PyTorch + transformers, run by hand). The weights come from `scripts/fetch-data.sh antiberty
//! bert-tiny`; `.ci/run` fetches them and runs `cargo test --workspace --test bert_parity
//! --test real_corpus -- --ignored` (`-p dlm-core` works too, with a build of its own).

use std::path::PathBuf;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use dlm_core::bert::BertMlm;
use dlm_core::tokenizer::HfTokenizer;
use serde_json::Value;

/// Largest tolerated |ours − PyTorch| on a logit (f32, CPU).
const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir(name: &str) -> PathBuf {
    let dir = root().join("data").join(name);
    assert!(dir.is_dir(), "{} is missing: run scripts/fetch-data.sh {name}", dir.display());
    dir
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn logits(model: &BertMlm, ids: &[u32], device: &Device) -> Vec<Vec<f32>> {
    let input: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    let tokens = Tensor::<1, Int>::from_ints(input.as_slice(), device).reshape([1, ids.len()]);
    let flat: Vec<f32> = model.forward(tokens, None).into_data().try_to_vec().unwrap();
    flat.chunks(model.vocab_size()).map(<[f32]>::to_vec).collect()
}

fn max_difference(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// AntiBERTy, its tokenizer and the PyTorch fixture.
fn antiberty(device: &Device) -> (BertMlm, HfTokenizer, Value) {
    let dir = model_dir("antiberty");
    let model = BertMlm::from_pretrained(&dir, device).unwrap();
    let tokenizer = HfTokenizer::from_wordpiece_vocab(&dir.join("vocab.txt")).unwrap();
    (model, tokenizer, fixture("antiberty.json"))
}

/// AntiBERTy's input: `[CLS]`, one token per residue, `[SEP]` — its runner feeds the residues
/// space-separated to a `BertTokenizer` over `vocab.txt`.
fn antibody_ids(tokenizer: &HfTokenizer, sequence: &str) -> Vec<u32> {
    let spaced: Vec<String> = sequence.chars().map(String::from).collect();
    let special = tokenizer.special();
    let mut ids = vec![special.bos];
    ids.extend(tokenizer.encode(&spaced.join(" ")).unwrap());
    ids.push(special.eos);
    ids
}

#[test]
#[ignore = "needs data/ from scripts/fetch-data.sh"]
fn antiberty_logits_match_pytorch() {
    let device = Device::flex();
    let (model, tokenizer, fixture) = antiberty(&device);
    let mut inputs = Vec::new();
    for input in fixture["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        let expected_ids = ids(&input["ids"]);
        let sequence = fixture["sequences"][name].as_str().unwrap();
        assert_eq!(antibody_ids(&tokenizer, sequence), expected_ids, "{name}");
        let ours = logits(&model, &expected_ids, &device);
        let theirs: Vec<Vec<f32>> =
            input["logits"].as_array().unwrap().iter().map(floats).collect();
        let worst = ours.iter().zip(&theirs).map(|(a, b)| max_difference(a, b)).fold(0.0, f32::max);
        println!("{name}: {} positions, max |Δlogit| = {worst:.2e}", expected_ids.len());
        assert!(worst <= TOLERANCE, "{name}: {worst}");
        inputs.push((expected_ids, theirs));
    }

    // The same inputs batched with right padding and an attention mask.
    let n = inputs.iter().map(|(ids, _)| ids.len()).max().unwrap();
    let (mut tokens, mut real) = (Vec::new(), Vec::new());
    for (ids, _) in &inputs {
        tokens.extend(ids.iter().map(|&t| t as i64).chain(std::iter::repeat_n(0, n - ids.len())));
        real.extend((0..n).map(|i| i < ids.len()));
    }
    let batch = inputs.len();
    let tokens = Tensor::<1, Int>::from_ints(tokens.as_slice(), &device).reshape([batch, n]);
    let real = Tensor::<2, Bool>::from_bool(TensorData::new(real, [batch, n]), &device);
    let flat: Vec<f32> = model.forward(tokens, Some(real)).into_data().try_to_vec().unwrap();
    for (b, (ids, theirs)) in inputs.iter().enumerate() {
        for (i, expected) in theirs.iter().enumerate().take(ids.len()) {
            let start = (b * n + i) * model.vocab_size();
            let worst = max_difference(&flat[start..start + model.vocab_size()], expected);
            assert!(worst <= TOLERANCE, "batched input {b}, position {i}: {worst}");
        }
    }
}

#[test]
#[ignore = "needs data/ from scripts/fetch-data.sh"]
fn antiberty_masked_prediction_matches_pytorch() {
    let device = Device::flex();
    let (model, tokenizer, fixture) = antiberty(&device);
    let evaluation = &fixture["masked_evaluation"];
    let (mut correct, mut nll, mut count) = (0, 0.0, 0);
    for draw in evaluation["draws"].as_array().unwrap() {
        let name = draw["name"].as_str().unwrap();
        let ids = antibody_ids(&tokenizer, fixture["sequences"][name].as_str().unwrap());
        let positions: Vec<usize> = draw["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as usize)
            .collect();
        let scores =
            model.masked_scores(&ids, &positions, tokenizer.special().mask, &device).unwrap();
        let their_nll = draw["nll_sum"].as_f64().unwrap();
        assert_eq!(scores.correct as u64, draw["correct"].as_u64().unwrap(), "{name}");
        assert!((scores.nll_sum - their_nll).abs() <= 1e-4 * positions.len() as f64, "{name}");
        correct += scores.correct;
        nll += scores.nll_sum;
        count += scores.count;
    }
    let accuracy = correct as f64 / count as f64;
    let perplexity = (nll / count as f64).exp();
    println!(
        "AntiBERTy, {count} masked residues: accuracy {accuracy:.4} (PyTorch {:.4}), \
         perplexity {perplexity:.4} (PyTorch {:.4})",
        evaluation["accuracy"].as_f64().unwrap(),
        evaluation["perplexity"].as_f64().unwrap()
    );
    assert!((perplexity - evaluation["perplexity"].as_f64().unwrap()).abs() < 1e-4);
}

#[test]
#[ignore = "needs data/ from scripts/fetch-data.sh"]
fn bert_tiny_safetensors_logits_match_pytorch() {
    let device = Device::flex();
    let dir = model_dir("bert-tiny");
    let model = BertMlm::from_pretrained(&dir, &device).unwrap();
    let tokenizer = HfTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let fixture = fixture("bert_tiny.json");
    let columns: Vec<usize> = fixture["column_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as usize)
        .collect();
    for input in fixture["inputs"].as_array().unwrap() {
        let text = input["text"].as_str().unwrap();
        let special = tokenizer.special();
        let mut ours_ids = vec![special.bos];
        ours_ids.extend(tokenizer.encode(text).unwrap());
        ours_ids.push(special.eos);
        assert_eq!(ours_ids, ids(&input["ids"]), "{text}");
        let rows = logits(&model, &ours_ids, &device);
        let logsumexp = floats(&input["logsumexp"]);
        let argmax = ids(&input["argmax"]);
        for (i, row) in rows.iter().enumerate() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
            assert!((lse - logsumexp[i]).abs() <= TOLERANCE, "{text}, position {i}");
            let best = (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            assert_eq!(best as u32, argmax[i], "{text}, position {i}");
            let theirs = floats(&input["columns"][i]);
            let ours: Vec<f32> = columns.iter().map(|&c| row[c]).collect();
            assert!(max_difference(&ours, &theirs) <= TOLERANCE, "{text}, position {i}");
        }
    }
}
