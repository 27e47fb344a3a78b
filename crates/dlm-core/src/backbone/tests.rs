//! Tests of the assembled denoiser: cache exactness, masks, conditioning, validation.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};

use super::*;
use crate::testing::randomised;

fn small(io: DenoiserIo, cond_dim: Option<usize>) -> DenoiserConfig {
    DenoiserConfig::new(io, 64)
        .with_d_model(32)
        .with_n_heads(4)
        .with_n_layers(2)
        .with_cond_dim(cond_dim)
}

fn tokens(batch: usize, n: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<2>::random([batch, n], Distribution::Uniform(0.0, vocab as f64), device).int()
}

fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f64 {
    (a - b).abs().max().into_scalar::<f64>()
}

#[test]
fn cached_chunks_equal_the_full_forward_for_causal_and_block_causal_masks() {
    let device = Device::flex();
    device.seed(1);
    for cond_dim in [None, Some(16)] {
        let io = DenoiserIo::Tokens { vocab_size: 11, tie_embeddings: false };
        let model = randomised(small(io, cond_dim).init(&device).unwrap(), &device);
        let x = tokens(2, 12, 11, &device);
        let t = Tensor::<1>::from_floats([0.3, 0.8], &device);
        for mask in [AttentionMask::Causal, AttentionMask::BlockCausal { block_size: 4 }] {
            let full = model
                .forward(
                    DenoiserInput::tokens(x.clone()).with_time(t.clone()).with_mask(mask.clone()),
                )
                .output;
            // Prefix of 8 (two whole blocks), then the last 4 positions against its cache.
            let prefix = model.forward(
                DenoiserInput::tokens(x.clone().narrow(1, 0, 8))
                    .with_time(t.clone())
                    .with_mask(mask.clone())
                    .keep_cache(),
            );
            let cache = prefix.cache.unwrap();
            assert_eq!(cache.len(), 8);
            let chunk = model.forward(
                DenoiserInput::tokens(x.clone().narrow(1, 8, 4))
                    .with_time(t.clone())
                    .with_mask(mask.clone())
                    .with_cache(cache),
            );
            let diff_prefix = max_abs_diff(prefix.output, full.clone().narrow(1, 0, 8));
            let diff_chunk = max_abs_diff(chunk.output, full.narrow(1, 8, 4));
            assert!(
                diff_prefix < 1e-5 && diff_chunk < 1e-5,
                "{mask:?}: {diff_prefix} {diff_chunk}"
            );
        }
    }
}

#[test]
fn causal_outputs_do_not_see_the_future() {
    let device = Device::flex();
    let io = DenoiserIo::Tokens { vocab_size: 7, tie_embeddings: true };
    let model = randomised(small(io, None).init(&device).unwrap(), &device);
    let x = tokens(1, 6, 7, &device);
    let changed = x.clone().slice_assign([0..1, 5..6], Tensor::from_ints([[6]], &device));
    let run = |x: Tensor<2, Int>| {
        model.forward(DenoiserInput::tokens(x).with_mask(AttentionMask::Causal)).output
    };
    let (a, b) = (run(x), run(changed));
    assert!(max_abs_diff(a.clone().narrow(1, 0, 5), b.clone().narrow(1, 0, 5)) < 1e-6);
    assert!(max_abs_diff(a.narrow(1, 5, 1), b.narrow(1, 5, 1)) > 1e-4);
}

#[test]
fn fresh_models_start_uniform_and_time_independent() {
    let device = Device::flex();
    let io = DenoiserIo::Tokens { vocab_size: 9, tie_embeddings: false };
    let model = small(io, Some(16)).init(&device).unwrap();
    assert!(model.is_time_conditioned());
    let x = tokens(2, 5, 9, &device);
    let at = |t: f32| {
        let t = Tensor::<1>::from_floats([t, t], &device);
        model.forward(DenoiserInput::tokens(x.clone()).with_time(t)).output
    };
    // Zero-initialised head: logits 0, i.e. uniform over the vocabulary, at every time.
    assert_eq!(at(0.1).abs().max().into_scalar::<f64>(), 0.0);
    assert_eq!(at(0.9).abs().max().into_scalar::<f64>(), 0.0);
    // Vector models have the same head; their output is 0 until trained.
    let vectors =
        small(DenoiserIo::Vectors { input_dim: 6, output_dim: 6 }, None).init(&device).unwrap();
    let z = Tensor::<3>::random([2, 5, 6], Distribution::Normal(0.0, 1.0), &device);
    let out = vectors.forward(DenoiserInput::vectors(z)).output;
    assert_eq!(out.dims(), [2, 5, 6]);
    assert_eq!(out.abs().max().into_scalar::<f64>(), 0.0);
}

#[test]
fn time_conditioning_changes_the_output_once_trained() {
    let device = Device::flex();
    let io = DenoiserIo::Tokens { vocab_size: 9, tie_embeddings: false };
    let model = randomised(small(io, Some(16)).init(&device).unwrap(), &device);
    let x = tokens(1, 5, 9, &device);
    let at = |t: f32| {
        model
            .forward(DenoiserInput::tokens(x.clone()).with_time(Tensor::from_floats([t], &device)))
            .output
    };
    assert!(max_abs_diff(at(0.1), at(0.9)) > 1e-3);
    assert!(max_abs_diff(at(0.5), at(0.5)) == 0.0);
}

#[test]
fn explicit_positions_shift_the_rotary_phase() {
    // The same tokens at positions 0..n and 10..10+n differ only through RoPE; with full
    // attention, relative positions are equal, so the outputs are equal.
    let device = Device::flex();
    let io = DenoiserIo::Tokens { vocab_size: 5, tie_embeddings: false };
    let model = randomised(small(io, None).init(&device).unwrap(), &device);
    let x = tokens(1, 4, 5, &device);
    let at = |positions: [i64; 4]| {
        let positions = Tensor::<1, Int>::from_ints(positions, &device);
        model.forward(DenoiserInput::tokens(x.clone()).with_positions(positions)).output
    };
    assert!(max_abs_diff(at([0, 1, 2, 3]), at([10, 11, 12, 13])) < 1e-4);
    // Other relative distances change the output, so the positions are used.
    assert!(max_abs_diff(at([0, 1, 2, 3]), at([0, 2, 4, 6])) > 1e-3);
}

#[test]
fn config_errors_name_the_field() {
    let device = Device::flex();
    let check = |config: DenoiserConfig, field: &str| match config.init(&device) {
        Err(e) => assert!(e.to_string().contains(&format!("`{field}`")), "{e}"),
        Ok(_) => panic!("{field}: accepted"),
    };
    check(DenoiserConfig::tokens(1, 16), "vocab_size");
    check(DenoiserConfig::tokens(10, 0), "max_seq_len");
    check(DenoiserConfig::tokens(10, 16).with_d_model(30).with_n_heads(4), "n_heads");
    check(DenoiserConfig::tokens(10, 16).with_d_model(12).with_n_heads(4), "d_model / n_heads");
    check(DenoiserConfig::tokens(10, 16).with_dropout(1.0), "dropout");
    check(DenoiserConfig::tokens(10, 16).with_n_layers(0), "n_layers");
    check(DenoiserConfig::tokens(10, 16).with_cond_dim(Some(7)), "cond_dim");
    check(DenoiserConfig::tokens(10, 16).with_rope_base(f64::NAN), "rope_base");
    assert!(DenoiserConfig::tokens(10, 16).init(&device).unwrap().num_params() > 0);
    let config = DenoiserConfig::tokens(10, 16);
    assert!(config.check_seq_len(16).is_ok());
    let err = config.check_seq_len(17).unwrap_err().to_string();
    assert!(err.contains("`seq_len` = 17") && err.contains("max_seq_len = 16"), "{err}");
}

#[test]
fn a_custom_mask_behaves_like_the_rule_it_spells_out() {
    let device = Device::flex();
    let io = DenoiserIo::Tokens { vocab_size: 7, tie_embeddings: false };
    let model = randomised(small(io, None).init(&device).unwrap(), &device);
    let x = tokens(2, 6, 7, &device);
    // Causal, written out as "key index > query index is blocked".
    let q = Tensor::<1, Int>::arange(0..6, &device).reshape([6, 1]);
    let k = Tensor::<1, Int>::arange(0..6, &device).reshape([1, 6]);
    let blocked = k.greater(q).unsqueeze_dim::<3>(0).expand([2, 6, 6]);
    let run = |mask| model.forward(DenoiserInput::tokens(x.clone()).with_mask(mask)).output;
    let diff = max_abs_diff(run(AttentionMask::custom(blocked)), run(AttentionMask::Causal));
    assert!(diff < 1e-6, "{diff}");
    assert!(max_abs_diff(run(AttentionMask::Full), run(AttentionMask::Causal)) > 1e-4);
}

#[test]
fn masks_are_validated() {
    assert!(AttentionMask::block_causal(0).is_err());
    assert!(AttentionMask::block_causal(4).is_ok());
}

#[test]
#[should_panic(expected = "attention mask")]
fn a_block_size_of_zero_panics_with_a_message() {
    let device = Device::flex();
    let model =
        DenoiserConfig::tokens(10, 16).with_d_model(16).with_n_layers(1).init(&device).unwrap();
    let mask = AttentionMask::BlockCausal { block_size: 0 };
    model.forward(DenoiserInput::tokens(tokens(1, 6, 10, &device)).with_mask(mask));
}
