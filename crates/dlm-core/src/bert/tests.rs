//! BERT tests: a Hugging Face–named safetensors file written from a random model loads back to
//! the same logits; files that do not fit give typed errors; the forward pass follows the
//! architecture (post-norm, tied decoder, padding mask).

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use burn::tensor::{Bool, Device, Int, Tensor};

use super::import::expected_tensors;
use super::*;
use crate::CoreError;
use crate::testing::randomised;
use dlm_sched::InvalidInput;

fn config(tied: bool) -> BertConfig {
    BertConfig {
        vocab_size: 13,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 24,
        max_position_embeddings: 10,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        position_embedding_type: "absolute".into(),
        tie_word_embeddings: tied,
    }
}

/// Writes `model` as Hugging Face would name and lay it out (linear weights `[out, in]`,
/// layer norms `weight`/`bias`), plus `extra` tensors, leaving out `skip`.
fn write_hf(model: &BertMlm, config: &BertConfig, path: &Path, skip: &str, extra: &[&str]) {
    let ours = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (key, module_path, _) in expected_tensors(config) {
        if key == skip {
            continue;
        }
        let tensor = ours.iter().find(|t| t.name == module_path).expect("a module tensor");
        named.push((key, tensor.shape.to_vec(), tensor.to_bytes().unwrap().to_vec()));
    }
    for key in extra {
        named.push((key.to_string(), vec![2], vec![0; 8]));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = named
        .iter()
        .map(|(key, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (key.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-bert-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tokens(device: &Device) -> Tensor<2, Int> {
    Tensor::from_ints([[2, 5, 7, 4, 9, 3], [2, 6, 4, 4, 11, 3]], device)
}

#[test]
fn a_hugging_face_file_loads_back_to_the_same_logits() {
    let device = Device::flex();
    let dir = scratch("roundtrip");
    for tied in [true, false] {
        let config = config(tied);
        let model = randomised(config.init(&device).unwrap(), &device);
        let path = dir.join(format!("tied_{tied}.safetensors"));
        // A pooler and an extra head, as real checkpoints have, are ignored.
        write_hf(&model, &config, &path, "", &["bert.pooler.dense.bias", "cls.species.bias"]);
        let loaded = BertMlm::load(&config, &path, &device).unwrap();
        let (a, b) = (model.forward(tokens(&device), None), loaded.forward(tokens(&device), None));
        let diff = (a - b).abs().max().into_scalar::<f32>();
        assert_eq!(diff, 0.0, "tied = {tied}");
    }
}

#[test]
fn files_that_do_not_fit_give_typed_errors() {
    let device = Device::flex();
    let dir = scratch("errors");
    let config = config(true);
    let model = config.init(&device).unwrap();
    let path = dir.join("model.safetensors");

    write_hf(&model, &config, &path, "bert.encoder.layer.1.output.dense.bias", &[]);
    let err = BertMlm::load(&config, &path, &device).unwrap_err();
    assert!(
        matches!(&err, CoreError::MissingTensor { key, .. } if key == "bert.encoder.layer.1.output.dense.bias"),
        "{err}"
    );

    write_hf(&model, &config, &path, "", &["bert.encoder.layer.2.output.dense.bias"]);
    let err = BertMlm::load(&config, &path, &device).unwrap_err();
    assert!(
        matches!(&err, CoreError::UnexpectedTensor { key, .. } if key.contains("layer.2")),
        "{err}"
    );

    write_hf(&model, &config, &path, "", &[]);
    let wider = BertConfig { intermediate_size: 32, ..config.clone() };
    let err = BertMlm::load(&wider, &path, &device).unwrap_err();
    match &err {
        CoreError::TensorShape { key, expected, found, .. } => {
            assert_eq!(key, "bert.encoder.layer.0.intermediate.dense.weight");
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                ([32, 16].as_slice(), [24, 16].as_slice())
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("intermediate.dense.weight"), "{err}");

    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        BertMlm::load(&config, &truncated, &device),
        Err(CoreError::Weights { .. } | CoreError::WeightsFormat { .. })
    ));

    let foreign = dir.join("notes.txt");
    std::fs::write(&foreign, "not a checkpoint").unwrap();
    assert!(matches!(
        BertMlm::load(&config, &foreign, &device),
        Err(CoreError::WeightsFormat { .. })
    ));
    assert!(matches!(
        BertMlm::load(&config, dir.join("absent.bin"), &device),
        Err(CoreError::Io { .. })
    ));
}

#[test]
fn configs_are_read_from_hugging_face_json_and_validated() {
    let dir = scratch("config");
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 25,
            "hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8,
            "intermediate_size": 2048, "max_position_embeddings": 512, "hidden_act": "gelu"}"#,
    )
    .unwrap();
    let config = BertConfig::from_json_file(&path).unwrap();
    assert_eq!((config.type_vocab_size, config.tie_word_embeddings), (2, true));
    assert_eq!(config.layer_norm_eps, 1e-12);
    let bad_heads = BertConfig { num_attention_heads: 3, ..config.clone() };
    assert!(matches!(
        bad_heads.validate(),
        Err(CoreError::Invalid(InvalidInput { name: "hidden_size", .. }))
    ));
    let relu = BertConfig { hidden_act: "relu".into(), ..config };
    assert!(matches!(relu.validate(), Err(CoreError::Unsupported { name: "hidden_act", .. })));
}

#[test]
fn padding_keys_do_not_change_the_real_positions() {
    let device = Device::flex();
    let model = randomised(config(true).init(&device).unwrap(), &device);
    let short = Tensor::<2, Int>::from_ints([[2, 5, 7, 3]], &device);
    let padded = Tensor::<2, Int>::from_ints([[2, 5, 7, 3, 0, 0]], &device);
    let real = Tensor::<2, Bool>::from_bool(
        burn::tensor::TensorData::new(vec![true, true, true, true, false, false], [1, 6]),
        &device,
    );
    let a = model.forward(short, None);
    let b = model.forward(padded.clone(), Some(real)).narrow(1, 0, 4);
    assert!((a.clone() - b).abs().max().into_scalar::<f32>() < 1e-5);
    // Without the mask the padding is attended to and the logits move.
    let c = model.forward(padded, None).narrow(1, 0, 4);
    assert!((a - c).abs().max().into_scalar::<f32>() > 1e-4);
}

#[test]
fn masked_scores_follow_the_softmax_and_reject_bad_input() {
    let device = Device::flex();
    let model = randomised(config(true).init(&device).unwrap(), &device);
    let sequence = [2u32, 5, 7, 4, 9, 3];
    let (positions, mask) = ([1usize, 4], 12u32);
    let scores = model.masked_scores(&sequence, &positions, mask, &device).unwrap();
    // By hand: the log-softmax of the logits with those positions masked.
    let masked = Tensor::<2, Int>::from_ints([[2, 12, 7, 4, 12, 3]], &device);
    let log_probs = burn::tensor::activation::log_softmax(model.forward(masked, None), 2);
    let rows: Vec<f32> = log_probs.into_data().try_to_vec().unwrap();
    let (mut nll, mut correct) = (0.0, 0);
    for &p in &positions {
        let row = &rows[p * 13..(p + 1) * 13];
        nll -= f64::from(row[sequence[p] as usize]);
        let best = (0..13).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        correct += usize::from(best == sequence[p] as usize);
    }
    assert_eq!((scores.count, scores.correct), (2, correct));
    assert!((scores.nll_sum - nll).abs() < 1e-9 && nll > 0.0);

    let bad = |tokens: &[u32], positions: &[usize], mask| {
        matches!(
            model.masked_scores(tokens, positions, mask, &device),
            Err(CoreError::Invalid(InvalidInput { .. }))
        )
    };
    assert!(bad(&sequence, &[6], mask), "position past the end");
    assert!(bad(&sequence, &[1], 13), "mask id ≥ V");
    assert!(bad(&[2, 13, 3], &[1], mask), "token id ≥ V");
    assert!(bad(&[2; 11], &[1], mask), "longer than the positions");
}
