//! The two speed claims of block diffusion, each in one run.
//!
//! 1. BD3LM's exact KV cache: wall time and model calls of generating 256…2048 tokens block by
//!    block with the clean blocks cached against recomputing them, same model and seed; the
//!    tokens must be identical.
//! 2. Fast-dLLM: an MDLM trained on the words task (sequences of 4-token words in which one
//!    token determines the word), on sequences of 32, then 128, then 512 tokens (`--stages`),
//!    decodes 512 tokens one token per step without a cache (the reference) and with
//!    confidence-threshold decoding (τ = 0.9) with no, prefix and dual caches; speed-up,
//!    agreement with the reference and the exact validity of the samples (in the best word
//!    alignment, `WordsTask::score_best_phase`).
//!
//! ```text
//! cargo run --release --example block_speed                      # both, about 75 min on 2 cores
//! cargo run --release --example block_speed -- --parts fast-dllm
//! ```

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor};
use clap::Parser;
use dlm::block::{BlockSampler, BlockwiseDecoder, CacheMode, Prefix};
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{SequenceDataset, WordsTask, WordsTaskConfig};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::discrete::sampler::{MaskedSampler, Unmasking};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

/// One of the two measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// BD3LM's exact KV cache against recomputation.
    Bd3lm,
    /// Fast-dLLM's caches and threshold decoding against one token per step.
    FastDllm,
}

#[derive(Parser, Debug)]
struct Args {
    /// The measurements to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bd3lm,fast-dllm")]
    parts: Vec<Part>,
    /// Lengths for the BD3LM cache comparison.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024,2048")]
    lengths: Vec<usize>,
    /// Training stages of the Fast-dLLM model, `LEN:STEPS` each, run in order on the same
    /// weights: `STEPS` steps on sequences of `LEN` tokens (at most 512, the generation length),
    /// 4096 tokens per step. Local structure is learnt fastest on short sequences; the last stage
    /// at the generation length teaches the model to ignore distant positions.
    #[arg(long, value_delimiter = ',', default_value = "32:2000,128:1000,512:2000")]
    stages: Vec<Stage>,
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
    let mut result = serde_json::Map::new();
    if args.parts.contains(&Part::Bd3lm) {
        result.insert("bd3lm_cache".into(), bd3lm_cache(&args, &device)?);
    }
    if args.parts.contains(&Part::FastDllm) {
        result.insert("fast_dllm".into(), fast_dllm(&args, &device)?);
    }
    std::fs::write(args.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
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

/// One training stage: `steps` optimiser steps on sequences of `len` tokens.
#[derive(Clone, Copy, Debug)]
struct Stage {
    len: usize,
    steps: usize,
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: Option<&str>, what: &str| -> Result<usize, String> {
            part.and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| format!("a stage is LEN:STEPS, got {text:?} (bad {what})"))
        };
        let mut parts = text.split(':');
        let stage = Self { len: parse(parts.next(), "LEN")?, steps: parse(parts.next(), "STEPS")? };
        if parts.next().is_some() {
            return Err(format!("a stage is LEN:STEPS, got {text:?}"));
        }
        if !(1..=GEN_LEN).contains(&stage.len) {
            return Err(format!(
                "a stage's LEN must be between 1 and {GEN_LEN}, got {}",
                stage.len
            ));
        }
        Ok(stage)
    }
}

/// The Fast-dLLM generation length.
const GEN_LEN: usize = 512;

fn fast_dllm(args: &Args, device: &Device) -> anyhow::Result<serde_json::Value> {
    const BLOCK: usize = 32;
    const BATCH: usize = 4;
    let task = WordsTask::new(WordsTaskConfig { n_words: 16, word_len: 4, seed: 0 })?;
    let vocab = task.vocab_size();
    let mask_id = SpecialTokens::reserved().mask;
    let sample = |len: usize, rng: &mut StdRng| task.sample(len, rng);
    let config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        GEN_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);
    let objective = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
    device.seed(0);
    let mut weights = config.init(&device.clone().autodiff())?;
    let mut model = None;
    for (i, stage) in args.stages.iter().enumerate() {
        let batch = (4096 / stage.len).max(1);
        let train =
            SequenceDataset::generate(2048 * GEN_LEN / stage.len, stage.len, vocab, 1, sample)?;
        let valid =
            SequenceDataset::generate(16 * GEN_LEN / stage.len, stage.len, vocab, 2, sample)?;
        let train_config = TrainConfig::new(stage.steps, batch)
            .with_learning_rate(2e-3)
            .with_warmup_steps(100.min(stage.steps))
            .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
            .with_ema_decay(Some(0.99));
        println!("Fast-dLLM model: {} steps of {batch} × {} tokens", stage.steps, stage.len);
        let mut trainer = Trainer::new(train_config, weights, objective.clone())?;
        let options = RunOptions {
            eval_every: 500,
            metrics_csv: Some(args.out.join(format!("stage{}_len{}.csv", i + 1, stage.len))),
            ..RunOptions::default()
        };
        run(&mut trainer, &train, &valid, &options)?;
        weights = trainer.model().clone();
        model = Some(trainer.eval_model());
    }
    let model: Denoiser = model.ok_or_else(|| anyhow::anyhow!("--stages is empty"))?;
    let valid = SequenceDataset::generate(16, GEN_LEN, vocab, 2, sample)?;
    let subs = objective.denoiser(&model);
    let nelbo = objective.evaluate(&subs, &valid, 8, 4, 0)?;
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
        let decoder = BlockwiseDecoder::new(sampler.clone(), BLOCK)?;
        let started = Instant::now();
        let out =
            decoder.decode(&subs, prompt.clone(), GEN_LEN, mode, &mut StdRng::seed_from_u64(3))?;
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
    let stages: Vec<_> =
        args.stages.iter().map(|s| json!({"len": s.len, "steps": s.steps})).collect();
    Ok(
        json!({"task": "words, 16 × 4 tokens", "stages": stages, "gen_len": GEN_LEN, "block": BLOCK, "batch": BATCH, "nelbo": nelbo.nats_per_token, "rows": rows}),
    )
}
