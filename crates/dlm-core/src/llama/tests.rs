use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::{Value, json};

use super::*;
use crate::error::CoreError;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(name)
}

/// A copy of fixture `name` in a scratch directory, with `edit` applied to its `config.json`.
fn edited(name: &str, tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-llama-{}-{name}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let config_path = dir.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&config_path, config.to_string()).unwrap();
    dir
}

fn load(dir: &Path) -> Result<Pretrained, CoreError> {
    Pretrained::from_dir(dir, &Device::flex())
}

#[test]
fn checkpoints_that_do_not_fit_their_config_give_typed_errors_naming_the_key() {
    let more_layers = edited("llada", "layers", |c| c["n_layers"] = json!(3));
    match load(&more_layers) {
        Err(CoreError::MissingTensor { key, .. }) => {
            assert_eq!(key, "model.transformer.blocks.2.attn_norm.weight")
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    let fewer_layers = edited("dream", "layers", |c| c["num_hidden_layers"] = json!(1));
    match load(&fewer_layers) {
        Err(CoreError::UnexpectedTensor { key, path }) => {
            assert!(key.starts_with("model.layers.1."), "{key}");
            assert!(path.ends_with("model.safetensors.index.json"), "{}", path.display());
        }
        other => panic!("expected an unexpected tensor, got {other:?}"),
    }
    let wider = edited("sdar", "ff", |c| c["intermediate_size"] = json!(64));
    match load(&wider) {
        Err(CoreError::TensorShape { key, expected, found, .. }) => {
            assert_eq!(key, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!((expected, found), (vec![64, 32], vec![48, 32]));
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    // Untied: the head is then expected, and the tied file has none.
    let untied = edited("sdar", "untied", |c| c["tie_word_embeddings"] = json!(false));
    assert!(
        matches!(load(&untied), Err(CoreError::MissingTensor { key, .. }) if key == "lm_head.weight")
    );
}

#[test]
fn configs_this_implementation_cannot_run_are_refused_by_name() {
    let unsupported = |dir: PathBuf, field: &str| match load(&dir) {
        Err(CoreError::Unsupported { name, .. }) => assert_eq!(name, field),
        other => panic!("{field}: expected Unsupported, got {other:?}"),
    };
    unsupported(edited("dream", "type", |c| c["model_type"] = json!("gpt2")), "model_type");
    unsupported(
        edited("dream", "scaling", |c| c["rope_scaling"] = json!({"type": "yarn"})),
        "rope_scaling",
    );
    unsupported(
        edited("sdar", "window", |c| c["use_sliding_window"] = json!(true)),
        "use_sliding_window",
    );
    unsupported(
        edited("sdar", "rope", |c| c["rope_parameters"]["rope_type"] = json!("llama3")),
        "rope_type",
    );
    unsupported(
        edited("llada", "qk", |c| c["attention_layer_norm"] = json!(true)),
        "attention_layer_norm",
    );
    unsupported(edited("llada", "alibi", |c| c["alibi"] = json!(true)), "alibi");
    unsupported(
        edited("llada", "act", |c| c["activation_type"] = json!("gelu")),
        "activation_type",
    );
    let heads = edited("dream", "heads", |c| c["num_key_value_heads"] = json!(3));
    assert!(matches!(load(&heads), Err(CoreError::Invalid(i)) if i.name == "num_kv_heads"));
    let missing = edited("dream", "missing", |c| {
        c.as_object_mut().unwrap().remove("hidden_size");
    });
    assert!(matches!(load(&missing), Err(CoreError::Json { .. })));
    let outside = edited("dream", "outside", |_| {});
    let index = outside.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap().replace("model-00001", "../model-00001");
    std::fs::write(&index, text).unwrap();
    assert!(matches!(load(&outside), Err(CoreError::Weights { .. })));
    let empty = std::env::temp_dir().join(format!("dlm-llama-{}-empty", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(load(&empty), Err(CoreError::Io { .. })));
}

/// The key tables against the real checkpoints' configs: the names and shapes the released
/// LLaDA-8B, Dream-7B and Qwen3-0.6B (the base of Tiny-A2D; SDAR shares its layout) files
/// hold, from their `config.json` values (`docs/pretrained.md` lists the sources).
#[test]
fn the_key_tables_name_the_tensors_of_the_real_checkpoints() {
    let read = |json: Value| {
        let path = std::env::temp_dir().join(format!(
            "dlm-llama-{}-{}.json",
            std::process::id(),
            json["model_type"].as_str().unwrap()
        ));
        std::fs::write(&path, json.to_string()).unwrap();
        ImportedConfig::from_json_file(&path).unwrap()
    };
    let llada = read(json!({
        "model_type": "llada", "d_model": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 32,
        "mlp_hidden_size": 12288, "vocab_size": 126464, "embedding_size": 126464,
        "max_sequence_length": 4096, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
        "include_qkv_bias": false, "weight_tying": false, "mask_token_id": 126336,
        "block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms"
    }));
    let dream = read(json!({
        "model_type": "Dream", "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "vocab_size": 152064, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": false, "mask_token_id": 151666
    }));
    let qwen3 = read(json!({
        "model_type": "a2d-qwen3", "hidden_size": 1024, "intermediate_size": 3072,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
        "attention_bias": false
    }));
    let table = |config: &ImportedConfig| -> Vec<(String, Vec<usize>)> {
        config.expected_tensors().into_iter().map(|t| (t.key, t.shape)).collect()
    };
    let has = |table: &[(String, Vec<usize>)], key: &str, shape: &[usize]| {
        assert!(table.iter().any(|(k, s)| k == key && s == shape), "{key} {shape:?}");
    };
    let t = table(&llada);
    assert_eq!(t.len(), 3 + 32 * 9);
    has(&t, "model.transformer.wte.weight", &[126464, 4096]);
    has(&t, "model.transformer.blocks.31.ff_proj.weight", &[12288, 4096]);
    has(&t, "model.transformer.blocks.0.ff_out.weight", &[4096, 12288]);
    has(&t, "model.transformer.ff_out.weight", &[126464, 4096]);
    assert_eq!(llada.mask_id, Some(126336));
    let t = table(&dream);
    assert_eq!(t.len(), 3 + 28 * 12, "q/k/v biases");
    has(&t, "model.layers.27.self_attn.k_proj.weight", &[512, 3584]);
    has(&t, "model.layers.0.self_attn.q_proj.bias", &[3584]);
    has(&t, "lm_head.weight", &[152064, 3584]);
    let t = table(&qwen3);
    assert_eq!(t.len(), 2 + 28 * 11, "tied: no lm_head; q/k norms");
    has(&t, "model.layers.0.self_attn.q_proj.weight", &[2048, 1024]);
    has(&t, "model.layers.0.self_attn.o_proj.weight", &[1024, 2048]);
    has(&t, "model.layers.5.self_attn.k_norm.weight", &[128]);
    assert!(!qwen3.architecture.shifts_logits() && dream.architecture.shifts_logits());
}
