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
