//! Decoding parity on an imported checkpoint: LLaDA's semi-autoregressive generation with
//! low-confidence remasking at temperature 0 is this library's [`MaskedSampler`] with a top-k
//! policy on token probabilities, a block length and a greedy proposal, run on the model loaded
//! by [`Pretrained::from_dir`] through SUBS. The reference tokens come from a PyTorch loop of the
//! same algorithm on the same tiny `transformers` model (`scripts/llama_fixtures.py`,
//! `llada_generate`), for pure diffusion and semi-autoregressive block settings, with and without
//! LLaDA's classifier-free guidance.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm::block::{BlockError, BlockSampler, BlockwiseDecoder, CacheMode, Prefix};
use dlm::core::llama::Pretrained;
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm::discrete::{Guided, Subs};
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
        // LLaDA's classifier-free guidance: the prompt-masked pass in the same batch.
        let cfg_scale = run["cfg_scale"].as_f64().unwrap();
        let guided = Guided::for_state(subs, &state, cfg_scale).unwrap();
        let out = sampler.sample(&guided, state, &mut StdRng::seed_from_u64(0)).unwrap();
        let ours: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
        assert_eq!(
            ours,
            ints(&run["tokens"]),
            "gen {gen_len}, block {block_length}, steps {steps}, cfg {cfg_scale}"
        );
        assert_eq!(out.nfe, steps, "one model call per step");
    }
}

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dlm-core/tests/fixtures/llama")
        .join(name)
}

fn top_k(steps: usize) -> MaskedSampler {
    MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, steps)
        .unwrap()
        .with_proposal(TokenSampler::greedy())
}

#[test]
fn the_fast_dllm_decoder_runs_on_llada_and_without_a_cache_reproduces_the_reference() {
    let dir = fixture_dir("llada");
    let device = Device::flex();
    let pretrained = Pretrained::from_dir(&dir, &device).unwrap();
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("generation.json")).unwrap())
            .unwrap();
    let subs = Subs { model: &pretrained, mask_id: pretrained.config.mask_id.unwrap() };
    let prompt =
        Tensor::<2, Int>::from_data(TensorData::new(ints(&fixture["prompt"]), [2, 4]), &device);
    // The reference's first run: 8 tokens in blocks of 4, 2 steps per block.
    let run = &fixture["runs"][0];
    assert_eq!((run["gen_len"].as_u64(), run["block_length"].as_u64()), (Some(8), Some(4)));
    let decoder = BlockwiseDecoder::new(top_k(2), 4).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let exact = decoder.decode(&subs, prompt.clone(), 8, CacheMode::None, &mut rng).unwrap();
    let tokens: Vec<i64> = exact.tokens.into_data().iter::<i64>().collect();
    assert_eq!(tokens, ints(&run["tokens"]));
    for mode in [CacheMode::Prefix, CacheMode::Dual] {
        let out = decoder.decode(&subs, prompt.clone(), 8, mode, &mut rng).unwrap();
        let tokens: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
        assert!(tokens.iter().all(|&t| t != 63), "{mode:?} left a mask");
        assert!(out.positions_processed < exact.positions_processed, "{mode:?} saved nothing");
    }
}

#[test]
fn bd3lm_s_exact_cache_runs_on_sdar_and_equals_recomputation() {
    let device = Device::flex();
    let pretrained = Pretrained::from_dir(fixture_dir("sdar"), &device).unwrap();
    let block = pretrained.config.architecture.block_size().unwrap();
    let sampler = BlockSampler::new(top_k(2), block, 63).unwrap();
    let prompt = Tensor::<2, Int>::from_ints([[5, 9, 14, 20], [33, 2, 41, 7]], &device);
    let generate = |prefix| {
        let mut rng = StdRng::seed_from_u64(0);
        sampler.generate(&pretrained, Some(prompt.clone()), 2, 3, None, prefix, &mut rng).unwrap()
    };
    let cached = generate(Prefix::Cached { window: None });
    let recomputed = generate(Prefix::Recomputed);
    let values = |t: Tensor<2, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
    assert_eq!(cached.tokens.dims(), [2, 4 + 3 * block]);
    assert_eq!(values(cached.tokens), values(recomputed.tokens));
    assert_eq!(cached.blocks, 3);
    // A prompt of 6 = one block and 2 positions: those 2 open the first decoded block, fixed.
    let partial =
        Tensor::<2, Int>::from_ints([[5, 9, 14, 20, 3, 8], [33, 2, 41, 7, 1, 4]], &device);
    let generate = |prefix| {
        let mut rng = StdRng::seed_from_u64(0);
        sampler.generate(&pretrained, Some(partial.clone()), 2, 2, None, prefix, &mut rng).unwrap()
    };
    let (cached, recomputed) =
        (generate(Prefix::Cached { window: None }), generate(Prefix::Recomputed));
    assert_eq!(cached.tokens.dims(), [2, 4 + 2 * block]);
    let tokens = values(cached.tokens);
    assert_eq!(tokens, values(recomputed.tokens));
    assert_eq!(
        (&tokens[..6], &tokens[12..18]),
        (&[5, 9, 14, 20, 3, 8][..], &[33, 2, 41, 7, 1, 4][..])
    );
    assert!(tokens.iter().all(|&t| t != 63));
}

#[test]
fn the_block_samplers_trajectory_replays_its_generation() {
    use dlm::discrete::sampler::{StepKind, Trajectory};
    let device = Device::flex();
    let pretrained = Pretrained::from_dir(fixture_dir("sdar"), &device).unwrap();
    let block = pretrained.config.architecture.block_size().unwrap();
    let sampler = BlockSampler::new(top_k(2), block, 63).unwrap();
    // One whole prompt block and two positions that open the first decoded block.
    let prompt = Tensor::<2, Int>::from_ints([[5, 9, 14, 20, 3, 8], [33, 2, 41, 7, 1, 4]], &device);
    for prefix in [Prefix::Cached { window: None }, Prefix::Recomputed] {
        let mut trajectory = Trajectory::default();
        let mut rng = StdRng::seed_from_u64(0);
        let prompt = Some(prompt.clone());
        let out = sampler
            .generate_observed(&pretrained, prompt, 2, 3, None, prefix, &mut rng, &mut trajectory)
            .unwrap();
        let tokens: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
        assert_eq!((trajectory.batch(), trajectory.seq_len()), (2, 4 + 3 * block));
        assert_eq!(trajectory.replay(), tokens, "{prefix:?}: the replay is the generation");
        assert_eq!(trajectory.nfe(), out.nfe, "{prefix:?}: every call, cache updates included");
        let denoising = trajectory.steps.iter().filter(|s| s.kind == StepKind::Denoise).count();
        assert_eq!(denoising, 3 * 2, "{prefix:?}: two top-k steps per block");
        let updates = trajectory.steps.iter().filter(|s| s.kind == StepKind::CacheUpdate).count();
        let expected = if prefix == Prefix::Recomputed { 0 } else { 1 + 3 };
        assert_eq!(updates, expected, "{prefix:?}: the prompt's and each block's");
        // Each block's steps sit at its place in the sequence, after the prompt's 6 positions.
        let second =
            trajectory.steps.iter().filter(|s| s.kind == StepKind::Denoise).nth(2).unwrap();
        assert_eq!(second.block, [4 + block, 4 + 2 * block]);
        let positions = second.rows.iter().flat_map(|r| r.committed.iter().map(|c| c.position));
        assert!(positions.clone().count() > 0);
        assert!(positions.into_iter().all(|p| (4 + block..4 + 2 * block).contains(&p)));
    }
}

#[test]
fn dream_s_shifted_logits_refuse_kv_caches() {
    let device = Device::flex();
    let pretrained = Pretrained::from_dir(fixture_dir("dream"), &device).unwrap();
    let subs = Subs { model: &pretrained, mask_id: 63 };
    let prompt = Tensor::<2, Int>::from_ints([[5, 9, 14, 20]], &device);
    let decoder = BlockwiseDecoder::new(top_k(2), 4).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let refused = decoder.decode(&subs, prompt.clone(), 8, CacheMode::Prefix, &mut rng);
    assert!(matches!(refused, Err(BlockError::Unsupported { .. })));
    let blocks = BlockSampler::new(top_k(2), 4, 63).unwrap();
    let cached = Prefix::Cached { window: None };
    let refused = blocks.generate(&pretrained, Some(prompt.clone()), 1, 1, None, cached, &mut rng);
    assert!(matches!(refused, Err(BlockError::Unsupported { .. })));
    // Without a cache it decodes.
    assert!(decoder.decode(&subs, prompt, 8, CacheMode::None, &mut rng).is_ok());
}

#[test]
fn the_command_line_generates_streams_and_refuses_what_it_cannot_do() {
    use dlm::generate::{Cache, Checkpoint, GenerateError, GenerateSettings, Policy};
    let device = Device::flex();
    let llada = Checkpoint::load(&fixture_dir("llada"), &device, None).unwrap();
    let settings =
        GenerateSettings { gen_length: 8, block_length: Some(4), steps: 2, ..Default::default() };
    let mut pieces = Vec::new();
    let generated = llada
        .generate("w5 w9 w14 w20", &settings, &mut |text| pieces.push(text.to_string()))
        .unwrap();
    assert_eq!(generated.tokens.len(), 8);
    assert_eq!(generated.nfe, 4);
    assert_eq!(pieces.concat(), generated.text, "the streamed pieces are the text");
    assert!(pieces.len() >= 2, "one piece per block: {pieces:?}");
    // What the architecture cannot do is an error naming it.
    let exact = GenerateSettings { cache: Cache::Exact, ..settings.clone() };
    assert!(matches!(
        llada.generate("w5", &exact, &mut |_| {}),
        Err(GenerateError::Unsupported(_))
    ));
    let long = GenerateSettings { gen_length: 100, block_length: None, ..settings.clone() };
    assert!(matches!(llada.generate("w5", &long, &mut |_| {}), Err(GenerateError::Discrete(_))));
    assert!(matches!(
        Checkpoint::load(&fixture_dir("sdar"), &device, None),
        Err(GenerateError::NoMaskToken { .. })
    ));
    let sdar = Checkpoint::load(&fixture_dir("sdar"), &device, Some(63)).unwrap();
    let cached = GenerateSettings { cache: Cache::Exact, block_length: None, ..settings.clone() };
    let out = sdar.generate("w5 w9 w14 w20", &cached, &mut |_| {}).unwrap();
    assert_eq!(out.tokens.len(), 8);
    let dual = GenerateSettings { cache: Cache::Dual, ..cached.clone() };
    assert!(matches!(
        sdar.generate("w5 w9 w14 w20", &dual, &mut |_| {}),
        Err(GenerateError::Unsupported(_))
    ));
    // A prompt that is not whole blocks: its remainder opens the first block, kept fixed.
    let partial = sdar.generate("w5 w9 w14 w20 w21 w22", &cached, &mut |_| {}).unwrap();
    assert_eq!(partial.tokens.len(), 8, "two positions of the first block are the prompt's");
    let ancestral =
        GenerateSettings { policy: Policy::Ancestral, cache: Cache::Prefix, ..settings };
    assert!(matches!(llada.generate("w5", &ancestral, &mut |_| {}), Err(GenerateError::Block(_))));
    // The entropy bound decodes with the full-attention sampler and the dual cache.
    let eb = GenerateSettings { policy: Policy::EntropyBound, gamma: 0.1, ..settings.clone() };
    assert_eq!(llada.generate("w5", &eb, &mut |_| {}).unwrap().tokens.len(), 8);
    let eb_dual = GenerateSettings { cache: Cache::Dual, ..eb };
    assert_eq!(llada.generate("w5", &eb_dual, &mut |_| {}).unwrap().tokens.len(), 8);
    // A TOML file with an unknown key is refused by name.
    let err = toml::from_str::<GenerateSettings>("stepz = 3").unwrap_err().to_string();
    assert!(err.contains("stepz"), "{err}");
    // The checkpoint's chat template renders the prompt; a Base model has none.
    assert_eq!(llada.chat_prompt("  w7 w8 ").unwrap(), "w4w1 w7 w8 w2 w3");
    let dream = Checkpoint::load(&fixture_dir("dream"), &device, None).unwrap();
    assert!(matches!(dream.chat_prompt("w7"), Err(GenerateError::Unsupported(_))));
    // The score of a text: a finite, positive bound per token.
    let score = llada.score("w5 w6 w7 w8 w9 w10", 8, 0).unwrap();
    assert_eq!(score.tokens, 6);
    assert!(score.nats_per_token.is_finite() && score.nats_per_token > 0.0);
    // A block-causal model is scored with BD3LM's bound on its whole blocks.
    let blocks = sdar.score("w5 w6 w7 w8 w9 w10", 8, 0).unwrap();
    assert_eq!(blocks.tokens, 4, "one whole block of 4");
    assert!(blocks.nats_per_token.is_finite() && blocks.nats_per_token > 0.0);
    assert!(matches!(sdar.score("w5 w6", 8, 0), Err(GenerateError::Core(_))), "no whole block");
}

#[test]
fn the_dlm_binary_prints_a_generation_and_fails_with_a_message() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dlm")).args(args).output().unwrap()
    };
    let model = fixture_dir("dream");
    let model = model.to_str().unwrap();
    let ok = run(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "w5 w9",
        "--gen-length",
        "4",
        "--block-length",
        "0",
        "--steps",
        "4",
    ]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert_eq!(stdout.split_whitespace().count(), 4, "{stdout}");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("4 model calls"));
    // Watched (stderr is a pipe here: snapshots), the same text, and the canvas fills up.
    let args = ["--gen-length", "4", "--block-length", "0", "--steps", "4", "--watch"];
    let watched = run(&[&["generate", "--model", model, "--prompt", "w5 w9"][..], &args].concat());
    assert!(watched.status.success(), "{}", String::from_utf8_lossy(&watched.stderr));
    assert_eq!(String::from_utf8(watched.stdout).unwrap(), stdout);
    let frames = String::from_utf8(watched.stderr).unwrap();
    assert!(frames.starts_with("step 0 · 0 model calls · 0/4 decoded\n"), "{frames}");
    assert!(frames.contains("step 4 · 4 model calls · 4/4 decoded\n"), "{frames}");
    assert!(!frames.contains('\x1b'), "no escape codes off a terminal: {frames}");
    let bad = run(&["generate", "--model", model, "--prompt", "w5", "--cache", "exact"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("exact cache needs a block-causal model")
    );
}

#[test]
fn the_bd3lm_research_checkpoint_samples_with_its_exact_cache() {
    use dlm::core::backbone::{DitCheckpoint, DitFamily};
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/dlm-core/tests/fixtures/dit/bd3lm");
    let device = Device::flex();
    let checkpoint = DitCheckpoint::from_dir(&dir, &device).unwrap();
    let DitFamily::Bd3lm { block_size } = checkpoint.family else { panic!("a BD3LM checkpoint") };
    let sampler = BlockSampler::new(top_k(2), block_size, checkpoint.mask_id).unwrap();
    let generate = |prefix| {
        let mut rng = StdRng::seed_from_u64(0);
        sampler.generate(&checkpoint, None, 2, 3, None, prefix, &mut rng).unwrap()
    };
    let values = |t: Tensor<2, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
    let (cached, recomputed) =
        (generate(Prefix::Cached { window: None }), generate(Prefix::Recomputed));
    assert_eq!(values(cached.tokens), values(recomputed.tokens));
    // MDLM's checkpoint is a time-agnostic masked denoiser for every sampler.
    let mdlm = DitCheckpoint::from_dir(dir.with_file_name("mdlm"), &device).unwrap();
    let subs = Subs { model: &mdlm, mask_id: mdlm.mask_id };
    let state = SamplerState::all_masked(&subs, 2, 16).unwrap();
    let out = top_k(8).sample(&subs, state, &mut StdRng::seed_from_u64(0)).unwrap();
    assert!(out.tokens.into_data().iter::<i64>().all(|t| t != 32));
}

#[test]
fn no_generation_takes_more_model_calls_than_its_bound() {
    use dlm::generate::{Cache, Checkpoint, GenerateSettings, Policy};
    let device = Device::flex();
    let llada = Checkpoint::load(&fixture_dir("llada"), &device, None).unwrap();
    let sdar = Checkpoint::load(&fixture_dir("sdar"), &device, Some(63)).unwrap();
    let policies = [
        Policy::TopK,
        Policy::Random,
        Policy::Threshold,
        Policy::Ancestral,
        Policy::EntropyBound,
        Policy::SlowFast,
    ];
    for policy in policies {
        for edit_threshold in [None, Some(0.05)] {
            let settings = GenerateSettings {
                policy,
                steps: 3,
                gen_length: 8,
                block_length: Some(4),
                threshold: 0.99,
                edit_threshold,
                ..GenerateSettings::default()
            };
            let bound = settings.max_model_calls(None);
            for cache in [Cache::None, Cache::Dual] {
                if cache == Cache::Dual && policy == Policy::Ancestral {
                    continue;
                }
                let settings = GenerateSettings { cache, ..settings.clone() };
                let nfe = llada.generate("w5 w9", &settings, &mut |_| {}).unwrap().nfe;
                assert!(nfe <= bound, "{policy:?} {cache:?} {edit_threshold:?}: {nfe} > {bound}");
            }
            if policy != Policy::Ancestral {
                // Generations shorter than a block decode a whole block all the same, after a
                // prompt that fills part of one or none.
                for (prompt, gen_length) in [("w5 w9 w14", 8), ("w5 w9 w14 w20", 1), ("w5", 2)] {
                    let block_causal = GenerateSettings {
                        cache: Cache::Exact,
                        block_length: None,
                        gen_length,
                        ..settings.clone()
                    };
                    let nfe = sdar.generate(prompt, &block_causal, &mut |_| {}).unwrap().nfe;
                    let bound = block_causal.max_model_calls(Some(4));
                    assert!(
                        nfe <= bound,
                        "SDAR {policy:?} {edit_threshold:?} {prompt}: {nfe} > {bound}"
                    );
                }
            }
        }
    }
    // The closed forms: LLaDA's defaults take at most their 32 steps and the noise removal; a
    // grid walks all its steps in every block.
    assert_eq!(GenerateSettings::default().max_model_calls(None), 33);
    let ancestral = GenerateSettings {
        policy: Policy::Ancestral,
        steps: 1000,
        block_length: Some(32),
        ..GenerateSettings::default()
    };
    assert_eq!(ancestral.max_model_calls(None), 4 * 1000 + 1);
    let edits = GenerateSettings {
        policy: Policy::Threshold,
        edit_threshold: Some(0.9),
        ..ancestral.clone()
    };
    assert_eq!(edits.max_model_calls(None), 4 * (32 + 16) + 1);
}

#[test]
fn sdar_scores_each_token_under_its_block_causal_mask() {
    // The chain rule of a block-causal model: token i is read with the tokens before it visible
    // and masks from i to the end of its block, queries seeing their block and the ones before.
    // Under full attention the earlier positions would also see the masks of later blocks, and
    // the values differ.
    use dlm::core::backbone::{AttentionMask, DenoiserInput, TokenModel};
    use dlm::discrete::likelihood::LikelihoodSplit;
    use dlm::discrete::zero_masking_log_probs;
    use dlm::generate::Checkpoint;

    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/dlm-core/tests/fixtures/llama/sdar");
    let device = Device::flex();
    let checkpoint = Checkpoint::load(&dir, &device, Some(63)).unwrap();
    let tokens: Vec<u32> = vec![5, 9, 12, 7, 30, 2, 44, 8, 19, 3];
    let chain =
        checkpoint.token_likelihoods(&tokens, LikelihoodSplit::Chain { from: 0 }, 1, 0).unwrap();
    let direct = |i: usize, mask: AttentionMask| {
        // Ten tokens fill three blocks of four; the row is padded with masks to twelve.
        let mut row = vec![63i64; 12];
        for (j, &t) in tokens[..i].iter().enumerate() {
            row[j] = i64::from(t);
        }
        let input = Tensor::<2, Int>::from_data(TensorData::new(row, [1, 12]), &device);
        let logits =
            checkpoint.pretrained.forward(DenoiserInput::tokens(input).with_mask(mask)).output;
        let log_probs: Vec<f32> =
            zero_masking_log_probs(logits, 63).into_data().iter::<f32>().collect();
        f64::from(log_probs[i * 64 + tokens[i] as usize])
    };
    for i in [0, 1, 5, 9] {
        let got = chain.logprobs[i].unwrap();
        let block_causal = direct(i, AttentionMask::BlockCausal { block_size: 4 });
        assert!((got - block_causal).abs() < 1e-5, "position {i}: {got} vs {block_causal}");
        if i == 1 || i == 5 {
            let full = direct(i, AttentionMask::Full);
            assert!((got - full).abs() > 1e-4, "position {i}: full attention gives the same");
        }
    }
    // A token of a later block changes no earlier score.
    let mut later = tokens.clone();
    later[9] = 40;
    let other =
        checkpoint.token_likelihoods(&later, LikelihoodSplit::Chain { from: 0 }, 1, 0).unwrap();
    assert_eq!(chain.logprobs[..9], other.logprobs[..9]);
}

#[test]
fn diffusion_gemma_generates_from_its_directory_and_on_the_command_line() {
    use dlm::block::canvas::CanvasSettings;
    use dlm::diffusion_gemma::{GemmaCheckpoint, is_diffusion_gemma};

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dlm-core/tests/fixtures/diffusion_gemma");
    assert!(is_diffusion_gemma(&dir) && !is_diffusion_gemma(&fixture_dir("dream")));
    let checkpoint = GemmaCheckpoint::load(&dir, &Device::flex()).unwrap();
    // The fixture's generation config is silent: transformers' defaults.
    assert_eq!(checkpoint.default_settings(), CanvasSettings::default());
    assert_eq!(checkpoint.chat_prompt("w9 w10").unwrap(), "w2 w3 w9 w10 w4 w5");
    let settings =
        CanvasSettings { max_new_tokens: 8, max_denoising_steps: 6, ..Default::default() };
    let a = checkpoint.generate("w2 w17 w33", settings.clone(), 7).unwrap();
    let b = checkpoint.generate("w2 w17 w33", settings.clone(), 7).unwrap();
    assert_eq!((&a.tokens, &a.steps), (&b.tokens, &b.steps), "one seed, one generation");
    assert!(a.tokens.len() <= 8 && a.decoder_passes <= 2 * 6);
    assert_eq!(a.text.split_whitespace().count(), a.tokens.len());
    // The prompt is opened with <bos> (w2) when it lacks it.
    let without_bos = checkpoint.generate("w17 w33", settings.clone(), 7).unwrap();
    assert_eq!(without_bos.tokens, a.tokens);
    assert!(checkpoint.generate("w2 w60", settings, 7).unwrap_err().to_string().contains("vision"));

    let run = |args: &[&str]| {
        let dir = dir.to_str().unwrap();
        let base = ["generate", "--model", dir, "--prompt", "w2 w17"];
        std::process::Command::new(env!("CARGO_BIN_EXE_dlm"))
            .args([&base[..], args].concat())
            .output()
            .unwrap()
    };
    let ok = run(&["--gen-length", "4", "--steps", "3"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8(ok.stdout).unwrap().split_whitespace().count() <= 4);
    assert!(String::from_utf8_lossy(&ok.stderr).contains("decoder passes"));
    let refused = run(&["--policy", "top-k"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--policy is a masked sampler's"));
}

#[test]
fn adaptive_stopping_from_a_settings_file_saves_model_calls_on_an_imported_model() {
    use dlm::generate::{Checkpoint, GenerateSettings};
    let checkpoint = Checkpoint::load(&fixture_dir("llada"), &Device::flex(), None).unwrap();
    let plain: GenerateSettings = toml::from_str("gen_length = 8\nsteps = 8").unwrap();
    let stopping: GenerateSettings = toml::from_str(
        "gen_length = 8\nsteps = 8\n[adaptive_stopping]\nstability_threshold = 0\nconfidence_threshold = 100.0",
    )
    .unwrap();
    let full = checkpoint.generate("w5 w9", &plain, &mut |_| {}).unwrap();
    let early = checkpoint.generate("w5 w9", &stopping, &mut |_| {}).unwrap();
    // Always confident, no stability asked: the first call decides every position.
    assert_eq!(full.nfe, 8);
    assert_eq!(early.nfe, 1);
    let bad = "[adaptive_stopping]\nstability_threshold = 1\nconfidence_threshold = -1.0";
    assert!(
        toml::from_str::<GenerateSettings>(bad)
            .unwrap_err()
            .to_string()
            .contains("confidence_threshold")
    );
}
