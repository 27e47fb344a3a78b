//! Mutation fuzzing of every parser that reads a file or a config: checkpoints, the token cache,
//! `tokenizer.json`, Hugging Face weights and config JSON. Each target starts from valid inputs,
//! applies random mutations (bit flips, interesting bytes, truncation, duplicated and inserted
//! ranges, huge little-endian lengths) and must return (`Ok` or a typed error) without a panic;
//! some also check that what they accept is right. Runs on the stable toolchain, in-process,
//! with `catch_unwind` (cargo-fuzz needs nightly).
//!
//! `cargo test --test fuzz` runs a few hundred inputs per target; `scripts/fuzz.sh` runs each
//! target for a fixed time (`DLM_FUZZ_SECONDS`), from a seed (`DLM_FUZZ_SEED`). A crashing
//! input is written to `target/fuzz-crashes/` before the test fails.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use dlm::core::bert::{BertConfig, BertMlm};
use dlm::core::checkpoint::{read_sections, write_sections};
use dlm::core::data::tokenize_documents;
use dlm::core::llama::{ImportedConfig, Pretrained};
use dlm::core::sampling::TokenSampler;
use dlm::core::tokenizer::{HfTokenizer, Tokenizer};
use dlm::core::train::TrainConfig;
use dlm::discrete::sampler::{MaskedSampler, SamplerState};
use dlm::discrete::{Spindle, Subs};
use dlm::sched::{NoiseSchedule, ScheduleKind, TimeGrid};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One to four random mutations of `input`.
fn mutate(input: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..7) {
            0 if len > 0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => {
                bytes[at] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'-'][rng.random_range(0..7)]
            }
            2 => bytes.truncate(at),
            3 if len > 0 => {
                let end = rng.random_range(at..=len.min(at + 64));
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            4 => {
                let extra: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                bytes.splice(at..at, extra);
            }
            5 if len >= 8 => {
                let at = rng.random_range(0..=len - 8);
                let huge = [u64::MAX, u64::MAX / 2, 1 << 40, 1 << 32][rng.random_range(0..4)];
                bytes[at..at + 8].copy_from_slice(&huge.to_le_bytes());
            }
            _ => bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
    }
    bytes
}

/// Runs `target` on mutations of `seeds` (and on the seeds themselves): `DLM_FUZZ_CASES` inputs
/// (default `cases`), or as many as fit in `DLM_FUZZ_SECONDS`. Panics, after saving the input,
/// when `target` panics.
fn fuzz(name: &str, cases: u64, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) {
    let seconds = env_number("DLM_FUZZ_SECONDS");
    let cases = env_number("DLM_FUZZ_CASES").unwrap_or(cases);
    let mut rng = StdRng::seed_from_u64(env_number("DLM_FUZZ_SEED").unwrap_or(0));
    let started = Instant::now();
    let mut run = 0u64;
    loop {
        let done = match seconds {
            Some(s) => started.elapsed() >= Duration::from_secs(s),
            None => run >= cases,
        };
        if done {
            break;
        }
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let input = if run < seeds.len() as u64 { seed.clone() } else { mutate(seed, &mut rng) };
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{name}-{run}.bin"));
            std::fs::write(&file, &input).unwrap();
            panic!("{name}: input {run} panicked; saved to {}", file.display());
        }
        run += 1;
    }
    println!("{name}: {run} inputs in {:.1} s, no panic", started.elapsed().as_secs_f64());
}

#[test]
fn checkpoint_files() {
    let dir = scratch("checkpoint");
    let path = dir.join("run.ckpt");
    write_sections(&path, &[("meta", b"{\"step\": 3}"), ("model", &[1; 40])]).unwrap();
    let seeds = vec![std::fs::read(&path).unwrap()];
    fuzz("checkpoint", 2000, &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(sections) = read_sections(&path) {
            let _ = sections.get("model");
        }
    });
}

#[test]
fn token_cache_entries() {
    // A cache entry rewritten with a valid checksum, so that the parser itself is reached: it
    // reads as the right number of documents of ids in the vocabulary, or is recomputed.
    let dir = scratch("cache");
    let tokenizer = Tokenizer::Byte(dlm::core::tokenizer::ByteTokenizer);
    let documents = vec!["a first document".to_string(), "and a second".to_string()];
    let expected = tokenize_documents(&documents, &tokenizer, None).unwrap();
    tokenize_documents(&documents, &tokenizer, Some(&dir)).unwrap();
    let entry = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let seeds = vec![read_sections(&entry).unwrap().get("tokens").unwrap().to_vec()];
    fuzz("token-cache", 1000, &seeds, |bytes| {
        write_sections(&entry, &[("tokens", bytes)]).unwrap();
        let ids = tokenize_documents(&documents, &tokenizer, Some(&dir)).unwrap();
        assert_eq!(ids.len(), expected.len(), "an entry of another corpus was trusted");
        assert!(ids.iter().flatten().all(|&id| (id as usize) < tokenizer.vocab_size()));
    });
}

#[test]
fn tokenizer_files() {
    let dir = scratch("tokenizer");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, "the cat sat on the mat; the dog sat on the log. ".repeat(20)).unwrap();
    let trained = HfTokenizer::train_bpe(&[corpus], 300).unwrap();
    let seeds = vec![trained.to_json().unwrap().into_bytes()];
    let path = dir.join("tokenizer.json");
    fuzz("tokenizer", 300, &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(tokenizer) = HfTokenizer::load(&path) {
            let _ = tokenizer.encode("the cat").and_then(|ids| tokenizer.decode(&ids));
        }
    });
}

#[test]
fn hugging_face_weights() {
    let config = BertConfig {
        vocab_size: 13,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 8,
        max_position_embeddings: 8,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        position_embedding_type: "absolute".into(),
        tie_word_embeddings: true,
    };
    let dir = scratch("weights");
    let path = dir.join("model.safetensors");
    let data = vec![0u8; 13 * 8 * 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![13, 8], &data).unwrap();
    let seeds = vec![
        safetensors::serialize([("bert.embeddings.word_embeddings.weight", view)], None).unwrap(),
    ];
    let device = Device::flex();
    fuzz("weights", 300, &seeds, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = BertMlm::load(&config, &path, &device);
    });
}

/// An imported checkpoint directory (the SDAR parity fixture): mutated weights beside its own
/// config, and mutated `config.json` files of the three families beside their own weights.
#[test]
fn pretrained_checkpoints() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dlm-core/tests/fixtures/llama");
    let dir = scratch("pretrained");
    let copy = |family: &str, file: &str| {
        std::fs::copy(fixtures.join(family).join(file), dir.join(file)).unwrap();
    };
    let device = Device::flex();
    copy("sdar", "config.json");
    let weights = vec![std::fs::read(fixtures.join("sdar/model.safetensors")).unwrap()];
    fuzz("pretrained-weights", 100, &weights, |bytes| {
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        let _ = Pretrained::from_dir(&dir, &device);
    });
    copy("sdar", "model.safetensors");
    let configs: Vec<Vec<u8>> = ["llada", "dream", "sdar"]
        .iter()
        .map(|family| std::fs::read(fixtures.join(family).join("config.json")).unwrap())
        .collect();
    fuzz("pretrained-config", 300, &configs, |bytes| {
        std::fs::write(dir.join("config.json"), bytes).unwrap();
        if let Ok(config) = ImportedConfig::from_json_file(&dir.join("config.json")) {
            // An accepted config has a table; the SDAR weights load into it or are refused.
            assert!(!config.expected_tensors().is_empty());
            let _ = Pretrained::from_dir(&dir, &device);
        }
    });
}

#[test]
fn config_json() {
    // What a config accepts must also run: a sampler read from JSON samples without a panic,
    // a schedule stays in [0, 1], a grid walks down in time.
    let device = Device::flex();
    let model = dlm::core::backbone::DenoiserConfig::tokens(10, 8)
        .with_d_model(8)
        .with_n_heads(2)
        .with_n_layers(1)
        .init(&device)
        .unwrap();
    let subs = Subs { model: &model, mask_id: 3 };
    let seeds: Vec<Vec<u8>> = [
        r#"{"proposal": {"temperature": 1.0, "top_k": 4, "top_p": 0.9}, "unmasking": {"policy": "threshold", "confidence": "margin", "tau": 0.9}, "steps": 4, "block_length": 4}"#,
        r#"{"proposal": {"temperature": 0}, "unmasking": {"policy": "re_mdm", "schedule": {"kind": "cosine", "s": 0.008}, "strategy": {"strategy": "loop", "eta": 0.1, "t_on": 0.5, "t_off": 0.2, "alpha_on": 0.9}}, "steps": 6, "block_length": null}"#,
        r#"{"kind": "log_linear", "eps": 0.001}"#,
        r#"{"kind": "discrete", "rule": "betas", "betas": [0.1, 0.5, 1.0]}"#,
        "[1.0, 0.5, 0.25, 0.0]",
        r#"{"lambda": 0.01, "information": [1.0, 0.5, 2.0]}"#,
        r#"{"steps": 10, "batch_size": 4, "learning_rate": 0.001, "beta_2": 0.99}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("config", 2000, &seeds, |bytes| {
        if let Ok(sampler) = serde_json::from_slice::<MaskedSampler>(bytes) {
            let state = SamplerState::all_masked(&subs, 2, 8).expect("a valid state");
            sampler.sample(&subs, state, &mut StdRng::seed_from_u64(0)).expect("a valid state");
        }
        if let Ok(schedule) = serde_json::from_slice::<ScheduleKind>(bytes) {
            for t in [0.0, 0.5, 1.0] {
                let alpha = schedule.alpha(t);
                assert!((0.0..=1.0).contains(&alpha), "{schedule:?}: α({t}) = {alpha}");
            }
        }
        if let Ok(grid) = serde_json::from_slice::<TimeGrid>(bytes) {
            assert!(grid.steps() > 0);
        }
        let _ = serde_json::from_slice::<Spindle>(bytes);
        let _ = serde_json::from_slice::<TokenSampler>(bytes);
        if let Ok(config) = serde_json::from_slice::<TrainConfig>(bytes) {
            let _ = config.validate();
        }
    });
}
