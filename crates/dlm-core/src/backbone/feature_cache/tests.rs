//! Tests of the feature cache: exactness where nothing is stale, V-verify's choice, the
//! arithmetic count, and the boundary checks.

use burn::tensor::{Device, Distribution, Int, Tensor};

use super::*;
use crate::backbone::{AttentionMask, DenoiserConfig, DenoiserInput, DenoiserIo};
use crate::host::int_values;
use crate::llama::LlamaConfig;
use crate::testing::randomised;

const VOCAB: usize = 13;

fn denoiser(
    cond_dim: Option<usize>,
    n_layers: usize,
    device: &Device,
) -> crate::backbone::Denoiser {
    let io = DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: false };
    let config = DenoiserConfig::new(io, 32)
        .with_d_model(32)
        .with_n_heads(4)
        .with_n_layers(n_layers)
        .with_cond_dim(cond_dim);
    randomised(config.init(device).unwrap(), device)
}

/// Grouped-query attention (4 query heads on 2 key/value heads) and Qwen3's q/k norms.
fn llama(device: &Device) -> crate::llama::LlamaLm {
    let config = LlamaConfig::new(VOCAB, 32, 48, 2, 4, 2, 8, 32).with_qk_norm(true);
    randomised(config.init(device).unwrap(), device)
}

fn tokens(batch: usize, len: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<2>::random([batch, len], Distribution::Uniform(0.0, VOCAB as f64), device).int()
}

fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f64 {
    (a - b).abs().max().into_scalar::<f64>()
}

/// The plain full-attention forward pass, up to the final norm.
fn plain<M: TokenModel>(model: &M, x: &Tensor<2, Int>, t: &Option<Tensor<1>>) -> Tensor<3> {
    let mut input = DenoiserInput::tokens(x.clone()).with_mask(AttentionMask::Full);
    if let Some(t) = t {
        input = input.with_time(t.clone());
    }
    model.forward_hidden(input).output
}

fn pass(prompt: SegmentUpdate, response: SegmentUpdate) -> FeaturePass {
    FeaturePass { prompt, response }
}

/// Every invariant that makes the cache exact, for one model.
fn exact_where_nothing_is_stale<M: FeatureCachedModel>(model: &M, t: Option<Tensor<1>>) {
    let device = model.device();
    let (batch, len, prompt_len) = (2, 12, 4);
    let a = tokens(batch, len, &device);
    let b = tokens(batch, len, &device);
    let mut cache = FeatureCache::new(prompt_len);
    // An empty cache recomputes everything, whatever the pass says.
    let reuse = pass(SegmentUpdate::Reuse, SegmentUpdate::Reuse);
    let (filled, _) = model.forward_features(a.clone(), t.clone(), &mut cache, reuse).unwrap();
    assert!(max_abs_diff(filled, plain(model, &a, &t)) < 1e-5);
    assert_eq!(cache.shape(), Some([batch, len]));
    // Nothing changed: reusing or verifying gives the same hidden states.
    for update in [SegmentUpdate::Reuse, SegmentUpdate::Verify { rows: 3 }] {
        let (h, _) = model
            .forward_features(a.clone(), t.clone(), &mut cache, pass(SegmentUpdate::Reuse, update))
            .unwrap();
        assert!(max_abs_diff(h, plain(model, &a, &t)) < 1e-5, "{update:?}");
    }
    // New tokens: recomputing every row, in full or by V-verify of the whole response, is the
    // plain pass of the new tokens (this runs the row-assignment path on every row).
    let every_row = SegmentUpdate::Verify { rows: len - prompt_len };
    for response in [SegmentUpdate::Recompute, every_row] {
        let mut cache = cache.clone();
        let (h, _) = model
            .forward_features(
                b.clone(),
                t.clone(),
                &mut cache,
                pass(SegmentUpdate::Recompute, response),
            )
            .unwrap();
        assert!(max_abs_diff(h, plain(model, &b, &t)) < 1e-5, "{response:?}");
    }
    // Reusing stale features is not the new pass: the cache is approximate by design.
    let (stale, _) = model.forward_features(b.clone(), t.clone(), &mut cache, reuse).unwrap();
    assert!(max_abs_diff(stale, plain(model, &b, &t)) > 1e-3);
}

#[test]
fn the_cache_is_exact_wherever_no_feature_is_stale() {
    let device = Device::flex();
    device.seed(3);
    exact_where_nothing_is_stale(&denoiser(None, 2, &device), None);
    let t = Tensor::<1>::from_floats([0.3, 0.7], &device);
    exact_where_nothing_is_stale(&denoiser(Some(16), 2, &device), Some(t));
    exact_where_nothing_is_stale(&llama(&device), None);
}

#[test]
fn v_verify_recomputes_the_row_whose_value_changed() {
    // One layer, so the layer's input is the embedding: changing the token at `j` changes the
    // value of row `j` alone, V-verify with one row must pick it, and row `j`'s output is then
    // exact (the other rows' keys are unchanged and every value is fresh), while the other rows
    // keep their stale attention.
    let device = Device::flex();
    device.seed(5);
    let model = denoiser(None, 1, &device);
    let (len, prompt_len, j) = (10, 3, 7);
    let a = tokens(1, len, &device);
    let mut changed = int_values(a.clone());
    changed[j] = (changed[j] + 1) % VOCAB as i64;
    let b = Tensor::<1, Int>::from_ints(changed.as_slice(), &device).reshape([1, len]);
    let mut cache = FeatureCache::new(prompt_len);
    model.forward_features(a.clone(), None, &mut cache, FeaturePass::FULL).unwrap();
    let verify_one = pass(SegmentUpdate::Reuse, SegmentUpdate::Verify { rows: 1 });
    let (h, _) = model.forward_features(b.clone(), None, &mut cache, verify_one).unwrap();
    let exact = plain(&model, &b, &None);
    let at = |t: Tensor<3>, i: usize| t.narrow(1, i, 1);
    assert!(max_abs_diff(at(h.clone(), j), at(exact.clone(), j)) < 1e-5);
    assert!(max_abs_diff(h, exact) > 1e-4, "the other rows attend to the stale row j");

    // Two rows changed since the cache was filled, one recomputed: every value is fresh, and
    // exactly one changed row keeps its stale key.
    let mut two = int_values(b.clone());
    two[4] = (two[4] + 1) % VOCAB as i64;
    let c = Tensor::<1, Int>::from_ints(two.as_slice(), &device).reshape([1, len]);
    let mut fresh = FeatureCache::new(prompt_len);
    model.forward_features(c.clone(), None, &mut fresh, FeaturePass::FULL).unwrap();
    let mut cache = FeatureCache::new(prompt_len);
    model.forward_features(a, None, &mut cache, FeaturePass::FULL).unwrap();
    model.forward_features(c, None, &mut cache, verify_one).unwrap();
    let (verified, exact) = (&cache.layers[0], &fresh.layers[0]);
    let values = (verified.value.clone() - exact.value.clone()).abs().max().into_scalar::<f64>();
    assert!(values < 1e-5, "{values}");
    let key_rows = (verified.key.clone() - exact.key.clone()).abs().max_dim(3).max_dim(1);
    let stale_keys = key_rows.reshape([len]).greater_elem(1e-5).int().sum().into_scalar::<i64>();
    assert_eq!(stale_keys, 1);
}

#[test]
fn least_similar_rows_ranks_by_cosine_similarity() {
    let device = Device::flex();
    // Four rows of two heads × two dims; the fresh rows against the stale ones have cosines
    // 1 (same direction, twice as long), 0 (orthogonal), −1 (opposite), 0 (a zero vector).
    let stale = [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0], [1.0; 4]];
    let fresh = [[2.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, -2.0, -1.0, 0.0], [0.0; 4]];
    let heads = |rows: [[f32; 4]; 4]| {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        // [n, kv_heads · head_dim] → [1, kv_heads, n, head_dim]
        Tensor::<1>::from_floats(flat.as_slice(), &device).reshape([1, 4, 2, 2]).swap_dims(1, 2)
    };
    let pick = |count| {
        let rows = least_similar_rows(heads(fresh), heads(stale), count);
        let mut rows = int_values(rows);
        rows.sort_unstable();
        rows
    };
    assert_eq!(pick(1), vec![2]);
    assert_eq!(pick(3), vec![1, 2, 3]);
    // Cosine, not the dot product nor the distance: row 0 has cosine 0.71 but the larger dot
    // product (10 against 1); row 2 has cosine 0.71 and the smaller distance (0.9 against 4).
    let pair = |fresh: [[f32; 4]; 2], stale: [[f32; 4]; 2]| {
        let heads = |rows: [[f32; 4]; 2]| {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            Tensor::<1>::from_floats(flat.as_slice(), &device).reshape([1, 2, 2, 2]).swap_dims(1, 2)
        };
        int_values(least_similar_rows(heads(fresh), heads(stale), 1))
    };
    let e1 = [1.0, 0.0, 0.0, 0.0];
    assert_eq!(pair([[10.0, 10.0, 0.0, 0.0], [1.0, 0.01, 0.0, 0.0]], [e1, e1]), vec![0]);
    assert_eq!(pair([[5.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.0, 0.0]], [e1, e1]), vec![1]);
}

#[test]
fn a_pass_counts_the_arithmetic_it_does() {
    let device = Device::flex();
    let model = denoiser(None, 2, &device);
    let (batch, len, prompt_len, d, d_ff) = (2u64, 12u64, 4u64, 32u64, 128u64);
    let x = tokens(batch as usize, len as usize, &device);
    // Per row of a layer: q, k, v and output projections (4d²), the MLP (2·d·d_ff), and per
    // key the scores and the weighted values (2d); two flops per multiply-add.
    let row = |keys: u64| 2 * (4 * d * d + 2 * d * d_ff + keys * 2 * d);
    let mut cache = FeatureCache::new(prompt_len as usize);
    let (_, full) = model.forward_features(x.clone(), None, &mut cache, FeaturePass::FULL).unwrap();
    assert_eq!(full, 2 * batch * len * row(len));
    let verify = pass(SegmentUpdate::Reuse, SegmentUpdate::Verify { rows: 2 });
    let (_, partial) = model.forward_features(x.clone(), None, &mut cache, verify).unwrap();
    let values = 2 * d * d * batch * (len - prompt_len);
    assert_eq!(partial, 2 * (batch * 2 * row(len) + values));
    // ρ·L_r below one row: the values alone.
    let values_only = pass(SegmentUpdate::Reuse, SegmentUpdate::Verify { rows: 0 });
    let (_, cost) = model.forward_features(x.clone(), None, &mut cache, values_only).unwrap();
    assert_eq!(cost, 2 * values);
    let reuse = pass(SegmentUpdate::Reuse, SegmentUpdate::Reuse);
    assert_eq!(model.forward_features(x, None, &mut cache, reuse).unwrap().1, 0);
    assert_eq!(model.head_flops_per_row(), 2 * d * VOCAB as u64);

    // LLaMA: q (4 heads × 8) and k, v (2 heads × 8) projections, the output projection, the
    // SwiGLU MLP's three matrices (intermediate 48), scores and values over the query width.
    let llama = llama(&device);
    let x = tokens(batch as usize, len as usize, &device);
    let (q, kv, ff) = (32u64, 16u64, 48u64);
    let row = 2 * (d * (q + 2 * kv) + q * d + 3 * d * ff + len * 2 * q);
    let mut cache = FeatureCache::new(prompt_len as usize);
    let (_, full) = llama.forward_features(x, None, &mut cache, FeaturePass::FULL).unwrap();
    assert_eq!(full, 2 * batch * len * row);
}

#[test]
fn bad_passes_are_refused_naming_the_field() {
    let device = Device::flex();
    let model = denoiser(Some(16), 1, &device);
    let t = Some(Tensor::<1>::from_floats([0.5], &device));
    let x = tokens(1, 8, &device);
    let field = |result: Result<(Tensor<3>, u64), CoreError>| match result {
        Err(CoreError::Invalid(invalid)) => invalid.to_string(),
        other => panic!("expected an invalid input, got {:?}", other.map(|(_, f)| f)),
    };
    let full = FeaturePass::FULL;
    let message =
        field(model.forward_features(x.clone(), t.clone(), &mut FeatureCache::new(8), full));
    assert!(message.contains("prompt_len"), "{message}");
    let message = field(model.forward_features(x.clone(), None, &mut FeatureCache::new(2), full));
    assert!(message.contains("time"), "{message}");
    let long = tokens(1, 40, &device);
    let message = field(model.forward_features(long, t.clone(), &mut FeatureCache::new(2), full));
    assert!(message.contains("len"), "{message}");
    let outside = Tensor::<2, Int>::from_ints([[0, 1, 2, VOCAB as i32, 0, 1, 2, 3]], &device);
    let message =
        field(model.forward_features(outside, t.clone(), &mut FeatureCache::new(2), full));
    assert!(message.contains("tokens"), "{message}");
    let mut cache = FeatureCache::new(2);
    model.forward_features(x.clone(), t.clone(), &mut cache, full).unwrap();
    let too_many = pass(SegmentUpdate::Reuse, SegmentUpdate::Verify { rows: 7 });
    let message = field(model.forward_features(x, t.clone(), &mut cache, too_many));
    assert!(message.contains("response"), "{message}");
    let other_batch = tokens(2, 8, &device);
    let message = field(model.forward_features(other_batch, t, &mut cache, full));
    assert!(message.contains("cached batch"), "{message}");
}
