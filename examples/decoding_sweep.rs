//! The speed–quality front of the masked samplers: one MDLM trained on the ladders' Markov source
//! (exact scores), decoded unconditionally by every policy of the one driver at several settings
//! — one token per step, LLaDA's top-k, Fast-dLLM's threshold and factor rules, the EB-sampler,
//! SlowFast, MDLM's ancestral steps, semi-autoregressive blocks — with model calls, tokens per
//! call, wall time and the fraction of transitions the chain allows.
//!
//! ```text
//! cargo run --release --example decoding_sweep -- --steps 4000
//! ```
//!
//! Writes `sweep.csv` (`dlm_discrete::sweep::sweep_csv`) and `front.svg` (calls against validity,
//! the Pareto front labelled) under `--out`; the model is checkpointed there and reused.

use std::path::PathBuf;

use clap::Parser;
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::front::plot_front;
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::discrete::sampler::{MaskedSampler, SamplerState, SlowFast, Unmasking};
use dlm::discrete::sweep::{sweep, sweep_csv};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::{LogLinear, ScheduleKind};
use dlm_support::ladder::{Budget, markov_data};

#[derive(Parser, Debug)]
#[command(about = "Model calls against exact validity for every masked sampler")]
struct Args {
    /// AdamW steps of the MDLM.
    #[arg(long, default_value_t = 4000)]
    steps: usize,
    /// Sequences decoded per sampler.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/decoding_sweep")]
    out: PathBuf,
}

const SEQ_LEN: usize = 64;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let data = markov_data(SEQ_LEN)?;
    let io = DenoiserIo::Tokens { vocab_size: data.source.vocab_size(), tie_embeddings: false };
    let config =
        DenoiserConfig::new(io, SEQ_LEN).with_d_model(128).with_n_heads(4).with_n_layers(2);
    let mdlm =
        Mdlm::new(MaskingProcess::new(LogLinear::default(), SpecialTokens::reserved().mask), 1e-3)?;
    let budget = Budget {
        steps: args.steps,
        train: &data.train,
        valid: &data.valid,
        out: &args.out,
        resume: true,
    };
    let (network, _) =
        budget.train(&format!("mdlm_{}", args.steps), mdlm.clone(), &config, &device)?;
    let model = mdlm.denoiser(&network);
    let nelbo = mdlm.evaluate(&model, &data.test, 64, 4, 0)?.nats_per_token;
    println!("MDLM NELBO {nelbo:.4} nats/token (entropy rate {:.4})", data.source.entropy_rate());

    let probability = Confidence::TokenProbability;
    let mut samplers: Vec<(String, MaskedSampler)> = Vec::new();
    for tokens_per_step in [1, 2, 4, 8] {
        let sampler = MaskedSampler::new(
            Unmasking::TopK { confidence: probability },
            SEQ_LEN / tokens_per_step,
        )?;
        samplers.push((format!("top-k, {tokens_per_step}/step"), sampler));
    }
    for tau in [0.95, 0.9, 0.7, 0.5] {
        samplers.push((
            format!("threshold {tau}"),
            MaskedSampler::new(Unmasking::threshold(probability, tau)?, 1)?,
        ));
    }
    for factor in [0.5, 1.0, 2.0] {
        samplers.push((
            format!("factor {factor}"),
            MaskedSampler::new(Unmasking::factor(probability, factor)?, 1)?,
        ));
    }
    for gamma in [0.01, 0.1, 1.0] {
        samplers.push((
            format!("entropy bound {gamma}"),
            MaskedSampler::new(Unmasking::entropy_bound(gamma)?, 1)?,
        ));
    }
    for high in [0.9, 0.7] {
        let paper = SlowFast::default();
        let policy = SlowFast::new(
            paper.exploration_steps(),
            paper.span_confidence(),
            paper.stability_window(),
            paper.stability_std(),
            high,
        )?;
        samplers.push((
            format!("SlowFast {high}"),
            MaskedSampler::new(Unmasking::SlowFast(policy), 1)?,
        ));
    }
    for steps in [64, 32, 16] {
        let schedule = ScheduleKind::LogLinear(LogLinear::default());
        samplers.push((
            format!("ancestral {steps}"),
            MaskedSampler::new(Unmasking::Ancestral { schedule }, steps)?,
        ));
    }
    let blocks = MaskedSampler::new(Unmasking::TopK { confidence: probability }, 16)?
        .with_block_length(16)?;
    samplers.push(("blocks of 16, top-k 1/step".into(), blocks));
    let blocks =
        MaskedSampler::new(Unmasking::threshold(probability, 0.9)?, 1)?.with_block_length(16)?;
    samplers.push(("blocks of 16, threshold 0.9".into(), blocks));
    // Proposals at temperature 1: the samplers draw from the model, as MDLM's ancestral one does.
    let proposal = TokenSampler::new(1.0)?;
    let samplers: Vec<(String, MaskedSampler)> =
        samplers.into_iter().map(|(label, s)| (label, s.with_proposal(proposal))).collect();

    // Validity: the fraction of the samples' transitions the chain allows.
    let validity = |rows: &[Vec<i64>]| {
        let (mut possible, mut impossible) = (0, 0);
        for row in rows {
            let tokens: Vec<u32> = row.iter().map(|&t| t as u32).collect();
            let score = data.source.score(&tokens);
            possible += score.possible;
            impossible += score.impossible;
        }
        possible as f64 / (possible + impossible).max(1) as f64
    };
    // One sequence per run: each sampler's calls are those of one sequence, not of a batch's
    // slowest row.
    let start = || SamplerState::all_masked(&model, 1, SEQ_LEN);
    let rows = sweep(&model, &samplers, &start, args.samples, 0, &validity)?;
    for row in &rows {
        println!(
            "{:<30} {:>5.1} calls  {:>5.2} tokens/call  validity {:.4}  {:>6.3} s{}",
            row.label,
            row.calls,
            row.tokens_per_call,
            row.quality,
            row.seconds,
            if row.on_front { "  (front)" } else { "" }
        );
    }
    std::fs::write(args.out.join("sweep.csv"), sweep_csv(&rows))?;
    let points: Vec<(String, f64, f64)> =
        rows.iter().map(|r| (r.label.clone(), r.calls, r.quality)).collect();
    plot_front(
        &args.out.join("front.svg"),
        "masked samplers on the Markov source",
        ["model calls per sequence", "allowed transitions"],
        &points,
    )?;
    Ok(())
}
