//! The canvas sampler against transformers' traced generations (the fixture of
//! `scripts/diffusion_gemma_fixtures.py`), and its pieces against their rules.

use std::path::PathBuf;

use burn::tensor::Device;
use dlm_core::diffusion_gemma::DiffusionGemma;
use serde_json::Value;

use super::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dlm-core/tests/fixtures/diffusion_gemma")
}

fn flat(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        number => vec![number.as_f64().unwrap()],
    }
}

fn rows(value: &Value) -> Vec<Vec<u32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| flat(row).iter().map(|&v| v as u32).collect())
        .collect()
}

#[test]
fn replays_transformers_generations_token_for_token() {
    let device = Device::flex();
    let gemma = DiffusionGemma::from_dir(fixture_dir(), &device).unwrap();
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let prompts = rows(&reference["prompt"]);
    for traced in reference["generations"].as_array().unwrap() {
        let s = &traced["settings"];
        let settings = CanvasSettings {
            max_new_tokens: s["max_new_tokens"].as_u64().unwrap() as usize,
            max_denoising_steps: s["max_denoising_steps"].as_u64().unwrap() as usize,
            entropy_bound: s["entropy_bound"].as_f64().unwrap(),
            t_min: s["t_min"].as_f64().unwrap(),
            t_max: s["t_max"].as_f64().unwrap(),
            stability_threshold: s["stability_threshold"].as_u64().unwrap() as usize,
            confidence_threshold: s["confidence_threshold"].as_f64().unwrap(),
        };
        let eos = s
            .get("eos_token_id")
            .map_or(gemma.info.eos_ids.clone(), |id| vec![id.as_u64().unwrap() as u32]);
        let pad = s.get("pad_token_id").map(|id| id.as_u64().unwrap() as u32);
        let sampler = CanvasSampler::new(settings, eos, pad).unwrap();
        let tokens = traced["randint"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| flat(d).iter().map(|&v| v as u32).collect())
            .collect();
        let uniforms = traced["uniforms"].as_array().unwrap().iter().map(flat).collect();
        let mut noise = ReplayedNoise::new(tokens, uniforms);
        let generation = sampler.generate(&gemma.model, &prompts, &mut noise).unwrap();
        assert!(noise.is_exhausted(), "every recorded draw is used, no more");
        let steps = traced["steps"].as_array().unwrap();
        assert_eq!(generation.steps.len(), steps.len());
        for (ours, theirs) in generation.steps.iter().zip(steps) {
            assert_eq!(ours.remaining as u64, theirs["step"].as_u64().unwrap());
            assert!(
                (f64::from(ours.temperature) - theirs["temperature"].as_f64().unwrap()).abs()
                    < 1e-6
            );
            let accepted: Vec<Vec<bool>> = theirs["accepted"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect())
                .collect();
            assert_eq!(ours.accepted, accepted, "accepted at {ours:?}");
            assert_eq!(ours.argmax, rows(&theirs["argmax"]), "argmax at {ours:?}");
            let stopped: Vec<bool> = theirs["stopped"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect();
            assert_eq!(ours.stopped, stopped);
        }
        assert_eq!(generation.sequences, rows(&traced["sequences"]));
        for (ours, theirs) in
            generation.tokens_per_forward.iter().zip(flat(&traced["tokens_per_forward"]))
        {
            assert!((ours - theirs).abs() < 1e-6, "tokens per forward {ours} vs {theirs}");
        }
    }
}

#[test]
fn the_temperature_falls_linearly_from_t_max() {
    let schedule = LinearTemperature { t_min: 0.4, t_max: 0.8, steps: 48 };
    assert!((schedule.at(48) - 0.8).abs() < 1e-7);
    assert!((schedule.at(1) - (0.4 + 0.4 / 48.0)).abs() < 1e-7);
    assert!((schedule.at(24) - 0.6).abs() < 1e-7);
}

#[test]
fn the_entropy_bound_accepts_the_lowest_entropies_within_gamma() {
    // Sorted: 0.01 (pos 1), 0.02 (pos 4), 0.5 (pos 0), 1.0 (pos 3), 2.0 (pos 2).
    let entropies = [0.5, 0.01, 2.0, 1.0, 0.02];
    // γ = 0.1: 0.01 + 0.02 − 0.02 = 0.01 ≤ γ; + 0.5 → 0.03 ≤ γ; + 1.0 → 0.53 > γ.
    assert_eq!(accept_by_entropy(&entropies, 0.1), [true, true, false, false, true]);
    // The lowest is always accepted, however small γ.
    assert_eq!(accept_by_entropy(&entropies, 1e-9), [false, true, false, false, false]);
    assert_eq!(accept_by_entropy(&entropies, 10.0), [true; 5]);
}

#[test]
fn a_canvas_stops_when_stable_and_confident_and_not_before_the_second_step() {
    let mut rule = StableAndConfident::new(1, 0.5);
    let canvas = vec![vec![3, 4]];
    assert_eq!(rule.observe(&canvas, &[0.1]), [false], "no history at the first step");
    assert_eq!(rule.observe(&canvas, &[0.1]), [true]);
    assert_eq!(rule.observe(&canvas, &[0.9]), [false], "stable but not confident");
    assert_eq!(rule.observe(&[vec![3, 5]], &[0.1]), [false], "confident but changed");
    let mut without_stability = StableAndConfident::new(0, 0.5);
    assert_eq!(without_stability.observe(&canvas, &[0.1]), [true]);
}

#[test]
fn bad_settings_prompts_and_replays_are_refused_by_name() {
    let field = |error: crate::BlockError| error.invalid().unwrap().name.to_string();
    let bad = |edit: fn(&mut CanvasSettings)| {
        let mut settings = CanvasSettings::default();
        edit(&mut settings);
        field(CanvasSampler::new(settings, vec![1], None).unwrap_err())
    };
    assert_eq!(bad(|s| s.t_max = 0.3), "t_max");
    assert_eq!(bad(|s| s.entropy_bound = 0.0), "entropy_bound");
    assert_eq!(bad(|s| s.max_denoising_steps = 0), "max_denoising_steps");
    assert_eq!(bad(|s| s.confidence_threshold = f64::NAN), "confidence_threshold");
    let error = serde_json::from_str::<CanvasSettings>(r#"{"t_min": -1}"#).unwrap_err();
    assert!(error.to_string().contains("t_min"), "{error}");
    assert!(serde_json::from_str::<CanvasSettings>(r#"{"steps": 4}"#).is_err());

    let device = Device::flex();
    let gemma = DiffusionGemma::from_dir(fixture_dir(), &device).unwrap();
    let settings =
        CanvasSettings { max_new_tokens: 4, max_denoising_steps: 2, ..Default::default() };
    let sampler = CanvasSampler::new(settings, vec![1], Some(0)).unwrap();
    let run =
        |prompts: &[Vec<u32>]| sampler.generate(&gemma.model, prompts, &mut SeededNoise::new(0));
    assert_eq!(field(run(&[vec![2, 3], vec![2]]).unwrap_err()), "prompt length");
    assert_eq!(field(run(&[vec![2, 64]]).unwrap_err()), "token id");
    assert_eq!(field(run(&[]).unwrap_err()), "prompts");
    let long = vec![2; 125];
    assert_eq!(field(run(&[long]).unwrap_err()), "prompt + canvases");
    // A replay that runs out says so instead of inventing draws.
    let mut short = ReplayedNoise::new(vec![vec![0; 4]], vec![]);
    let error = sampler.generate(&gemma.model, &[vec![2, 3]], &mut short).unwrap_err();
    assert_eq!(field(error), "uniforms");
    // Seeded runs are reproducible.
    let a = run(&[vec![2, 3]]).unwrap();
    let b = run(&[vec![2, 3]]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.sequences[0].len(), 2 + 4);
}

/// A tiny canvas model: canvases of 4, two layers (sliding, global).
fn tiny_model(device: &Device) -> dlm_core::diffusion_gemma::DiffusionGemmaLm {
    use dlm_core::diffusion_gemma::{AttentionKind, DiffusionGemmaConfig, LayerAttention};
    let shape = |head_dim, value_projection| LayerAttention {
        head_dim,
        num_kv_heads: 2,
        rope_theta: 10_000.0,
        rotated_pairs: head_dim / 2,
        value_projection,
    };
    DiffusionGemmaConfig {
        vocab_size: 16,
        hidden_size: 32,
        intermediate_size: 64,
        num_heads: 4,
        layers: vec![AttentionKind::Sliding, AttentionKind::Full],
        sliding: shape(8, true),
        full: shape(8, false),
        sliding_window: 8,
        num_experts: 2,
        top_k_experts: 1,
        moe_intermediate_size: 16,
        rms_norm_eps: 1e-6,
        final_logit_softcap: Some(30.0),
        attention_bias: false,
        canvas_length: 4,
        max_seq_len: 64,
    }
    .init(device)
    .unwrap()
}

#[test]
fn without_corruption_the_loss_is_the_clean_canvas_cross_entropy_after_its_clean_prefix() {
    use burn::tensor::activation::log_softmax;
    use dlm_core::train::Objective;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    let device = Device::flex();
    let model = tiny_model(&device);
    let ids: Vec<i64> = (0..2 * 12).map(|i| (i * 7 % 16) as i64).collect();
    let batch = dlm_core::host::ints(ids, [2, 12], &device);
    let objective =
        UniformBlockDiffusion::with_times(0.0, 0.0, 0.0).unwrap().with_ar_weight(0.0).unwrap();
    let loss = objective.loss(&model, batch.clone(), &mut StdRng::seed_from_u64(3));
    assert_eq!(loss.count, 2 * 4);
    // The same draw of the canvas index, then the clean canvas read after its clean prefix.
    let k = StdRng::seed_from_u64(3).random_range(1..3usize);
    let (_, cache) = model.encode(batch.clone().narrow(1, 0, 4 * k), None);
    let canvas = batch.narrow(1, 4 * k, 4);
    let logits = model.decode(canvas.clone(), None, &cache);
    let expected = log_softmax(logits, 2).gather(2, canvas.unsqueeze_dim::<3>(2)).neg().sum();
    let (ours, theirs) = (loss.sum.into_scalar::<f64>(), expected.into_scalar::<f64>());
    assert!((ours - theirs).abs() < 1e-4 * theirs.abs(), "{ours} vs {theirs}");
}

#[test]
fn corruption_replaces_tokens_at_the_row_s_rate_with_uniform_ones() {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    let (width, vocab) = (1000, 10);
    let clean = vec![3i64; 2 * width];
    let noisy = UniformBlockDiffusion::corrupt(
        &clean,
        width,
        &[0.2, 0.9],
        vocab,
        &mut StdRng::seed_from_u64(1),
    );
    // A replaced token keeps its value with probability 1/V: the changed share is t·(1 − 1/V).
    for (row, t) in [(0, 0.2), (1, 0.9)] {
        let changed = noisy[row * width..(row + 1) * width].iter().filter(|&&x| x != 3).count();
        let expected = t * (1.0 - 1.0 / vocab as f64) * width as f64;
        let sd = (expected * (1.0 - expected / width as f64)).sqrt();
        assert!((changed as f64 - expected).abs() < 4.0 * sd, "row {row}: {changed} vs {expected}");
    }
    assert!(noisy.iter().all(|&x| (0..vocab as i64).contains(&x)));
    assert!(UniformBlockDiffusion::new(1.5, 0.5).is_err());
    assert!(UniformBlockDiffusion::new(0.1, -0.5).is_err());
}

#[test]
fn a_trained_canvas_model_continues_a_cycle_it_has_only_seen_in_training() {
    // Sequences count up modulo 12 from a random phase: every canvas is determined by the token
    // before it. After training, the sampler must continue prompts exactly.
    use dlm_core::data::SequenceDataset;
    use dlm_core::train::{TrainConfig, Trainer};

    let device = Device::flex().autodiff();
    let cycle = |start: u32, len: usize| (0..len as u32).map(|i| (start + i) % 12).collect();
    let data = SequenceDataset::generate(48, 12, 16, 0, |_, rng| {
        use rand::RngExt;
        cycle(rng.random_range(0..12), 12)
    })
    .unwrap();
    let objective = UniformBlockDiffusion::new(0.0, 0.5).unwrap();
    let config = TrainConfig::new(300, 16).with_learning_rate(3e-3);
    let mut trainer = Trainer::new(config, tiny_model(&device), objective).unwrap();
    let first = trainer.step(&data).unwrap().loss;
    let mut last = first;
    while !trainer.is_done() {
        last = trainer.step(&data).unwrap().loss;
    }
    assert!(last < 0.1 * first, "loss {first} → {last}");
    // Every parameter was trained (the encoder's autoregressive term reaches the last encoder
    // layer's scalar), so the run resumes from its checkpoint.
    let path = std::env::temp_dir().join(format!("dlm-canvas-{}.ckpt", std::process::id()));
    trainer.save_checkpoint(&path, serde_json::Value::Null).unwrap();
    let objective = UniformBlockDiffusion::new(0.0, 0.5).unwrap();
    let resumed = Trainer::resume(&path, tiny_model(&device), objective);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(resumed.unwrap().state().step, 300);
    let model = trainer.eval_model();
    let settings =
        CanvasSettings { max_new_tokens: 8, max_denoising_steps: 8, ..Default::default() };
    let sampler = CanvasSampler::new(settings, vec![], None).unwrap();
    let prompts: Vec<Vec<u32>> = (0..12).map(|start| cycle(start, 4)).collect();
    let out = sampler.generate(&model, &prompts, &mut SeededNoise::new(5)).unwrap();
    let right = (0..12u32)
        .map(|start| out.sequences[start as usize] == cycle(start, 12))
        .filter(|&ok| ok)
        .count();
    assert!(right >= 11, "{right} of 12 continuations exact: {:?}", out.sequences);
}
