//! The two speed claims of block diffusion, each in one run.
//!
//! 1. BD3LM's exact KV cache: wall time and model calls of generating 256…2048 tokens block by
//!    block with the clean blocks cached against recomputing them, same model and seed; the
//!    tokens must be identical.
//! 2. Fast-dLLM: an MDLM trained on the words task (sequences of 4-token words in which one
//!    token determines the word) decodes 512 tokens one token per step without a cache (the
//!    reference) and with confidence-threshold decoding (τ = 0.9) with no, prefix and dual
//!    caches; speed-up, agreement with the reference and the exact validity of the samples (in
//!    the best word alignment, `WordsTask::score_best_phase`).
//!
//! ```text
//! cargo run --release --example block_speed
//! ```

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor};
use clap::Parser;
use dlm::block::{BlockSampler, BlockwiseDecoder, CacheMode, Prefix};
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{SequenceDataset, SpecialTokens, WordsTask, WordsTaskConfig};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::discrete::sampler::{MaskedSampler, Unmasking};
use dlm::discrete::{MaskingProcess, Mdlm, Subs};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Lengths for the BD3LM cache comparison.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024,2048")]
    lengths: Vec<usize>,
    /// Training steps of the Fast-dLLM model.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Sequence length the Fast-dLLM model is trained at (at most 512, the generation length);
    /// every step sees 4096 tokens.
    #[arg(long, default_value_t = 512)]
    train_len: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/block_speed")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let bd3lm = bd3lm_cache(&args, &device)?;
    let fast = fast_dllm(&args, &device)?;
    std::fs::write(
        args.out.join("result.json"),
        serde_json::to_string_pretty(&json!({"bd3lm_cache": bd3lm, "fast_dllm": fast}))?,
    )?;
    Ok(())
}

fn bd3lm_cache(args: &Args, device: &Device) -> anyhow::Result<serde_json::Value> {
    const BLOCK: usize = 16;
    let mask_id = SpecialTokens::reserved().mask;
    device.seed(0);
    // Speed does not depend on the weights; a fresh model with random weights decodes the same.
    let config =
        DenoiserConfig::tokens(64, 2048).with_d_model(128).with_n_heads(4).with_n_layers(2);
    let model = dlm_core::testing::randomised(config.init(device)?, device);
    let inner =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, BLOCK)?
            .with_proposal(TokenSampler::new(1.0)?);
    let sampler = BlockSampler::new(inner, BLOCK, mask_id)?;
    println!("BD3LM, block {BLOCK}, one token per step, batch 1, d_model 128, 2 layers:");
    let mut rows = Vec::new();
    for &length in &args.lengths {
        let run = |prefix| -> anyhow::Result<(Vec<i64>, usize, f64)> {
            let started = Instant::now();
            let out = sampler.generate(
                &model,
                None,
                1,
                length / BLOCK,
                None,
                prefix,
                &mut StdRng::seed_from_u64(1),
            )?;
            let tokens: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
            Ok((tokens, out.nfe, started.elapsed().as_secs_f64()))
        };
        let (cached_tokens, cached_nfe, cached_s) = run(Prefix::Cached { window: None })?;
        let (plain_tokens, plain_nfe, plain_s) = run(Prefix::Recomputed)?;
        let identical = cached_tokens == plain_tokens;
        println!(
            "  {length:>5} tokens: recomputed {plain_s:>7.2} s ({plain_nfe} calls), cached {cached_s:>6.2} s ({cached_nfe} calls): {:.1}×, identical tokens: {identical}",
            plain_s / cached_s
        );
        rows.push(json!({"length": length, "recomputed_seconds": plain_s, "recomputed_nfe": plain_nfe, "cached_seconds": cached_s, "cached_nfe": cached_nfe, "speedup": plain_s / cached_s, "identical_tokens": identical}));
    }
    Ok(json!(rows))
}

fn fast_dllm(args: &Args, device: &Device) -> anyhow::Result<serde_json::Value> {
    const GEN_LEN: usize = 512;
    let train_len = args.train_len;
    anyhow::ensure!(
        (1..=GEN_LEN).contains(&train_len),
        "--train-len must be between 1 and {GEN_LEN}, got {train_len}"
    );
    const BLOCK: usize = 32;
    const BATCH: usize = 4;
    let task = WordsTask::new(WordsTaskConfig { n_words: 16, word_len: 4, seed: 0 })?;
    let vocab = task.vocab_size();
    let mask_id = SpecialTokens::reserved().mask;
    let sample = |len: usize, rng: &mut StdRng| task.sample(len, rng);
    let batch = (4096 / train_len).max(1);
    let train = SequenceDataset::generate(2048 * GEN_LEN / train_len, train_len, vocab, 1, sample)?;
    let valid = SequenceDataset::generate(16 * GEN_LEN / train_len, train_len, vocab, 2, sample)?;
    let config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        GEN_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);
    let objective = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
    let train_config = TrainConfig::new(args.steps, batch)
        .with_learning_rate(2e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_ema_decay(Some(0.99));
    device.seed(0);
    let mut trainer =
        Trainer::new(train_config, config.init(&device.clone().autodiff())?, objective.clone())?;
    run(&mut trainer, &train, &valid, &RunOptions { eval_every: 500, ..RunOptions::default() })?;
    let model: Denoiser = trainer.eval_model();
    let nelbo = objective.evaluate(&Subs { model: &model, mask_id }, &valid, 8, 4, 0)?;
    println!(
        "\nFast-dLLM: MDLM on words (NELBO {:.4}, exact {:.4} nats/token), {BATCH} × {GEN_LEN} tokens, blocks of {BLOCK}:",
        nelbo.nats_per_token,
        task.entropy_rate()
    );

    let proposal = TokenSampler::greedy();
    let one_per_step =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, BLOCK)?
            .with_proposal(proposal);
    let threshold =
        MaskedSampler::new(Unmasking::threshold(Confidence::TokenProbability, 0.9)?, BLOCK)?
            .with_proposal(proposal);
    let prompt = Tensor::<2, Int>::zeros([BATCH, 0], device);
    let mut rows = Vec::new();
    let mut baseline: Option<(f64, f64, Vec<i64>)> = None;
    for (name, sampler, mode) in [
        ("one token per step, no cache", &one_per_step, CacheMode::None),
        ("threshold 0.9, no cache", &threshold, CacheMode::None),
        ("threshold 0.9, prefix cache", &threshold, CacheMode::Prefix),
        ("threshold 0.9, dual cache", &threshold, CacheMode::Dual),
    ] {
        let decoder = BlockwiseDecoder::new(sampler.clone(), BLOCK, mask_id)?;
        let started = Instant::now();
        let out =
            decoder.decode(&model, prompt.clone(), GEN_LEN, mode, &mut StdRng::seed_from_u64(3))?;
        let seconds = started.elapsed().as_secs_f64();
        let tokens: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
        let as_u32: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
        let (valid_words, total) = as_u32
            .chunks(GEN_LEN)
            .map(|s| task.score_best_phase(s))
            .fold((0, 0), |(v, t), s| (v + s.valid, t + s.total));
        let validity = valid_words as f64 / total as f64;
        let (speedup, agreement) = match &baseline {
            None => {
                baseline = Some((seconds, validity, tokens.clone()));
                (1.0, 1.0)
            }
            Some((base_s, _, base_tokens)) => {
                let same = tokens.iter().zip(base_tokens).filter(|(a, b)| a == b).count();
                (base_s / seconds, same as f64 / tokens.len() as f64)
            }
        };
        println!(
            "  {name:<30} {seconds:>7.2} s, {:>4} calls, {speedup:>5.1}×, validity {:.3}, agreement with the reference {agreement:.3}",
            out.nfe, validity
        );
        rows.push(json!({"decoding": name, "seconds": seconds, "nfe": out.nfe, "positions_processed": out.positions_processed, "speedup": speedup, "validity": validity, "token_agreement": agreement}));
    }
    Ok(
        json!({"task": "words, 16 × 4 tokens", "train_len": train_len, "train_batch": batch, "gen_len": GEN_LEN, "block": BLOCK, "batch": BATCH, "nelbo": nelbo.nats_per_token, "rows": rows}),
    )
}
