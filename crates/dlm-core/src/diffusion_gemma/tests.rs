//! Invariants of the DiffusionGemma network that do not need the reference: the rotary
//! frequencies, the encoder's window, and the cache (chunked encoding equals one pass).

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::*;

fn config(layers: Vec<AttentionKind>) -> DiffusionGemmaConfig {
    DiffusionGemmaConfig {
        vocab_size: 32,
        hidden_size: 16,
        intermediate_size: 24,
        num_heads: 4,
        layers,
        sliding: LayerAttention {
            head_dim: 8,
            num_kv_heads: 2,
            rope_theta: 10_000.0,
            rotated_pairs: 4,
            value_projection: true,
        },
        full: LayerAttention {
            head_dim: 16,
            num_kv_heads: 1,
            rope_theta: 1e6,
            rotated_pairs: 2,
            value_projection: false,
        },
        sliding_window: 3,
        num_experts: 4,
        top_k_experts: 2,
        moe_intermediate_size: 8,
        rms_norm_eps: 1e-6,
        final_logit_softcap: Some(30.0),
        attention_bias: false,
        canvas_length: 4,
        max_seq_len: 64,
    }
}

fn tokens(ids: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn proportional_rope_rotates_only_its_share_of_pairs_with_the_full_head_exponent() {
    let frequencies = rotary_frequencies(16, 1e6, 2);
    assert_eq!(frequencies.len(), 8);
    assert_eq!(frequencies[0], 1.0);
    // θ^(−2j/16), not θ^(−2j/4): the exponent divides by the whole head.
    assert!((frequencies[1] - 1e6f64.powf(-2.0 / 16.0) as f32).abs() < 1e-9);
    assert!(frequencies[2..].iter().all(|&f| f == 0.0));
    let standard = rotary_frequencies(8, 1e4, 4);
    assert!((standard[3] - 1e4f64.powf(-6.0 / 8.0) as f32).abs() < 1e-9);
}

#[test]
fn a_sliding_layer_sees_exactly_its_window() {
    // One sliding layer with a window of 3: position 5 sees positions 3, 4 and 5 only.
    let device = Device::flex();
    let model = config(vec![AttentionKind::Sliding]).init(&device).unwrap();
    let base = [3, 7, 1, 9, 4, 12];
    let at_last = |ids: &[i64]| {
        let (hidden, _) = model.encode(tokens(ids, &device), None);
        values(hidden.narrow(1, 5, 1))
    };
    let reference = at_last(&base);
    let mut outside = base;
    outside[2] = 20;
    assert!(max_difference(&at_last(&outside), &reference) < 1e-6, "position 2 is outside");
    let mut inside = base;
    inside[3] = 20;
    assert!(max_difference(&at_last(&inside), &reference) > 1e-4, "position 3 is inside");
}

#[test]
fn encoding_in_chunks_equals_one_pass_and_the_decoder_reads_the_same_cache() {
    // Chunks of 4, 1 and 3 tokens: the second and third cross the window of 3, so the sliding
    // layers' cache must have kept the right keys.
    let device = Device::flex();
    let kinds = vec![AttentionKind::Sliding, AttentionKind::Full, AttentionKind::Sliding];
    let model = config(kinds).init(&device).unwrap();
    let ids = [2, 11, 5, 30, 8, 17, 1, 22];
    let (whole, whole_cache) = model.encode(tokens(&ids, &device), None);
    let mut cache = None;
    let mut parts = Vec::new();
    for chunk in [&ids[..4], &ids[4..5], &ids[5..]] {
        let (hidden, next) = model.encode(tokens(chunk, &device), cache);
        parts.push(hidden);
        cache = Some(next);
    }
    let cache = cache.unwrap();
    assert_eq!(cache.len(), 8);
    let chunked = Tensor::cat(parts, 1);
    assert!(max_difference(&values(chunked), &values(whole)) < 1e-5);
    let canvas = tokens(&[4, 4, 9, 0], &device);
    let a = model.decode(canvas.clone(), None, &whole_cache);
    let b = model.decode(canvas, None, &cache);
    assert!(max_difference(&values(a.clone()), &values(b)) < 1e-5);
    // Soft-capped: every logit within (−30, 30).
    assert!(values(a).iter().all(|l| l.abs() < 30.0));
}

#[test]
fn bad_configs_are_refused_by_name() {
    let mut bad = config(vec![AttentionKind::Full]);
    bad.full.num_kv_heads = 3;
    assert!(bad.validate().unwrap_err().to_string().contains("full.num_kv_heads"));
    let mut bad = config(vec![AttentionKind::Full]);
    bad.top_k_experts = 5;
    assert!(bad.validate().unwrap_err().to_string().contains("top_k_experts"));
    let mut bad = config(vec![AttentionKind::Full]);
    bad.sliding.rotated_pairs = 5;
    assert!(bad.validate().unwrap_err().to_string().contains("sliding.rotated_pairs"));
}
