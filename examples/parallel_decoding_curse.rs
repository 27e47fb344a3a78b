//! Parallel decoding breaks dependent tokens: an MDLM trained on the correlated-pairs task
//! (sequences of valid two-token phrases) is decoded with `k` tokens per step and with
//! Fast-dLLM's confidence threshold, and every sample is scored exactly for validity.
//!
//! Decoding both tokens of a phrase in the same step draws them from their marginals, which
//! almost never form a valid phrase (the "high house" failure: "high" and "house" are each
//! likely, "high house" is not). Threshold decoding commits several tokens only where the model
//! is confident, so it keeps validity while cutting the number of model calls.
//!
//! Validity is scored in whichever phrase alignment fits a sample better
//! ([`PairsTask::score_best_phase`]): the model reads positions only relatively, so a sampler
//! that commits a far-away token first may start the phrases at an odd position, a coherent
//! sample that a fixed alignment would count as all wrong. The fixed alignment is printed beside.
//!
//! ```text
//! cargo run --release --example parallel_decoding_curse
//! ```

use dlm::core::host::token_rows;
use std::path::PathBuf;

use clap::Parser;
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{PairsScore, PairsTask, PairsTaskConfig, SequenceDataset};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Samples per decoding setting.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/parallel_decoding_curse")]
    out: PathBuf,
}

const SEQ_LEN: usize = 32;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let task = PairsTask::new(PairsTaskConfig { n_symbols: 32, n_pairs: 48, seed: 0 })?;
    let vocab = task.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| task.sample(len, rng);
    let train = SequenceDataset::generate(8192, SEQ_LEN, vocab, 1, sample)?;
    let valid = SequenceDataset::generate(256, SEQ_LEN, vocab, 2, sample)?;
    let mask_id = SpecialTokens::reserved().mask;

    let model_config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(3);
    let objective = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
    let config = TrainConfig::new(args.steps, 64)
        .with_learning_rate(2e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_ema_decay(Some(0.99));
    device.seed(0);
    let mut trainer =
        Trainer::new(config, model_config.init(&device.clone().autodiff())?, objective.clone())?;
    let options = RunOptions {
        eval_every: 500,
        metrics_csv: Some(args.out.join("metrics.csv")),
        loss_plot: Some(args.out.join("loss.svg")),
        ..RunOptions::default()
    };
    run(&mut trainer, &train, &valid, &options)?;
    let model: Denoiser = trainer.eval_model();
    let subs = objective.denoiser(&model);
    let nelbo = objective.evaluate(&subs, &valid, 64, 4, 0)?;
    println!(
        "validation NELBO {:.4} nats/token; exact entropy {:.4} nats/token",
        nelbo.nats_per_token,
        task.sequence_entropy(SEQ_LEN) / SEQ_LEN as f64
    );

    let proposal = TokenSampler::new(1.0)?;
    let mut rows = Vec::new();
    let mut evaluate = |label: String, sampler: MaskedSampler| -> anyhow::Result<()> {
        device.seed(7);
        let state = SamplerState::all_masked(&subs, args.samples, SEQ_LEN)?;
        let out =
            sampler.with_proposal(proposal).sample(&subs, state, &mut StdRng::seed_from_u64(7))?;
        let samples = token_rows(out.tokens);
        let validity = |score: fn(&PairsTask, &[u32]) -> PairsScore| {
            let (valid, total) = samples
                .iter()
                .map(|s| score(&task, s))
                .fold((0, 0), |(v, t), s| (v + s.valid, t + s.total));
            valid as f64 / total as f64
        };
        let (best_phase, phase0) =
            (validity(PairsTask::score_best_phase), validity(PairsTask::score));
        let tokens_per_step = (args.samples * SEQ_LEN) as f64 / (out.nfe * args.samples) as f64;
        println!(
            "{label:<28} model calls {:>3}  tokens/step {tokens_per_step:>5.2}  validity {best_phase:.3} (phase 0 only: {phase0:.3})",
            out.nfe
        );
        rows.push(json!({"decoding": label, "nfe": out.nfe, "tokens_per_step": tokens_per_step, "validity": best_phase, "validity_phase0": phase0}));
        Ok(())
    };
    for k in [1, 2, 4, 8, 16, 32] {
        let sampler = MaskedSampler::new(
            Unmasking::TopK { confidence: Confidence::TokenProbability },
            SEQ_LEN / k,
        )?;
        evaluate(format!("fixed k = {k}"), sampler)?;
    }
    for tau in [0.99, 0.9, 0.7, 0.5] {
        let sampler =
            MaskedSampler::new(Unmasking::threshold(Confidence::TokenProbability, tau)?, 1)?;
        evaluate(format!("threshold τ = {tau}"), sampler)?;
    }
    let result = json!({"steps": args.steps, "nelbo": nelbo.nats_per_token, "rows": rows});
    std::fs::write(args.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
