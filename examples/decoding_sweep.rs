//! The speed–quality front of the masked samplers: one MDLM trained on the ladders' Markov source
//! (exact scores), decoded unconditionally by every policy of the one driver at several settings
//! — one token per step, LLaDA's top-k, Fast-dLLM's threshold and factor rules, the EB-sampler,
//! SlowFast, MDLM's ancestral steps, semi-autoregressive blocks — with model calls, tokens per
//! call, wall time and the fraction of transitions the chain allows.
//!
//! The same model then continues prompts (`--parts feature-cache`) through dLLM-Cache's feature
//! cache at several refresh intervals, against recomputing every feature at every call: model
//! calls, arithmetic, wall time, validity and agreement with the uncached tokens.
//!
//! ```text
//! cargo run --release --example decoding_sweep -- --steps 4000
//! cargo run --release --example decoding_sweep -- --steps 4000 --parts feature-cache
//! ```
//!
//! Writes `sweep.csv` (`dlm_discrete::sweep::sweep_csv`), `front.svg` (calls against validity,
//! the Pareto front labelled) and `feature_cache.csv` under `--out`; the model is checkpointed
//! there and reused.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use clap::Parser;
use dlm::block::{FeatureCacheSettings, FeatureCachedDecoder};
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::MarkovSource;
use dlm::core::front::plot_front;
use dlm::core::host::int_values;
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::discrete::sampler::{MaskedSampler, SamplerState, SlowFast, Unmasking};
use dlm::discrete::sweep::{sweep, sweep_csv};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::{LogLinear, ScheduleKind};
use dlm_support::ladder::{Budget, MarkovData, markov_data};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// One of the two measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Every masked sampler, unconditionally: the speed–quality front.
    Sweep,
    /// Prompted continuation through dLLM-Cache against no cache.
    FeatureCache,
}

#[derive(Parser, Debug)]
#[command(about = "Model calls against exact validity for every masked sampler")]
struct Args {
    /// AdamW steps of the MDLM.
    #[arg(long, default_value_t = 4000)]
    steps: usize,
    /// Sequences decoded per sampler.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// The measurements to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sweep,feature-cache")]
    parts: Vec<Part>,
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
    if args.parts.contains(&Part::FeatureCache) {
        feature_cache(&network, &mdlm, &data, &args, &device)?;
    }
    if !args.parts.contains(&Part::Sweep) {
        return Ok(());
    }

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

/// Tokens of the prompt in the feature-cache measurement; the rest of the sequence is generated.
const PROMPT_LEN: usize = 16;

/// Continues the first [`PROMPT_LEN`] tokens of `args.samples` test sequences (one batch) to
/// [`SEQ_LEN`], one token per call (top-1 by probability, proposals at temperature 1, the same
/// seed for every decoder), through dLLM-Cache at several settings and without a cache.
fn feature_cache(
    network: &Denoiser,
    mdlm: &Mdlm<LogLinear>,
    data: &MarkovData,
    args: &Args,
    device: &Device,
) -> anyhow::Result<()> {
    let model = mdlm.denoiser(network);
    let indices: Vec<usize> = (0..args.samples).collect();
    let prompt = data.test.batch(&indices, device).narrow(1, 0, PROMPT_LEN);
    let gen_len = SEQ_LEN - PROMPT_LEN;
    let sampler =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, gen_len)?
            .with_proposal(TokenSampler::new(1.0)?);
    let settings = [
        ("no cache", FeatureCacheSettings::NONE),
        ("K_p 100, K_r 7, ρ 0.25 (paper)", FeatureCacheSettings::PAPER),
        ("K_p 100, K_r 4, ρ 0.25", FeatureCacheSettings::new(100, 4, 0.25)?),
        ("K_p 100, K_r 2, ρ 0.25", FeatureCacheSettings::new(100, 2, 0.25)?),
        ("K_p 100, K_r 7, ρ 0.5", FeatureCacheSettings::new(100, 7, 0.5)?),
        ("K_p 100, K_r 7, ρ 0", FeatureCacheSettings::new(100, 7, 0.0)?),
        ("K_p 100, K_r 48, ρ 0.25", FeatureCacheSettings::new(100, 48, 0.25)?),
    ];
    let mut csv = String::from("decoder,calls,gflops,flops_ratio,seconds,validity,agreement\n");
    let mut reference: Option<(Vec<i64>, u64, f64)> = None;
    println!(
        "| decoder | calls | GFLOP | arithmetic | seconds | speed-up | validity | agreement |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, setting) in settings {
        let decoder = FeatureCachedDecoder::new(sampler.clone(), setting)?;
        let started = Instant::now();
        let out = decoder.decode(&model, prompt.clone(), gen_len, &mut StdRng::seed_from_u64(7))?;
        let tokens = int_values(out.tokens);
        let seconds = started.elapsed().as_secs_f64();
        let validity = continuation_validity(&data.source, &tokens);
        let (ref_tokens, ref_flops, ref_seconds) =
            reference.get_or_insert_with(|| (tokens.clone(), out.flops, seconds)).clone();
        let agreement = agreement(&ref_tokens, &tokens);
        let ratio = out.flops as f64 / ref_flops as f64;
        println!(
            "| {label} | {} | {:.2} | {:.3}× | {seconds:.2} | {:.2}× | {validity:.4} | {agreement:.3} |",
            out.nfe,
            out.flops as f64 / 1e9,
            ratio,
            ref_seconds / seconds,
        );
        csv.push_str(&format!(
            "{label},{},{:.4},{ratio:.4},{seconds:.3},{validity:.4},{agreement:.4}\n",
            out.nfe,
            out.flops as f64 / 1e9
        ));
    }
    std::fs::write(args.out.join("feature_cache.csv"), csv)?;
    Ok(())
}

/// The fraction of the chain's transitions into generated positions (the windows ending after
/// the prompt) that the chain allows, over the rows of `tokens` (`[rows, SEQ_LEN]`, flat).
fn continuation_validity(source: &MarkovSource, tokens: &[i64]) -> f64 {
    let order = 2;
    let (mut possible, mut impossible) = (0, 0);
    for row in tokens.chunks(SEQ_LEN) {
        let window: Vec<u32> = row[PROMPT_LEN - order..].iter().map(|&t| t as u32).collect();
        let score = source.score(&window);
        possible += score.possible;
        impossible += score.impossible;
    }
    possible as f64 / (possible + impossible).max(1) as f64
}

/// The fraction of generated positions where `tokens` equal `reference`.
fn agreement(reference: &[i64], tokens: &[i64]) -> f64 {
    let generated = |row: &[i64]| row[PROMPT_LEN..].to_vec();
    let (mut same, mut total) = (0, 0);
    for (a, b) in reference.chunks(SEQ_LEN).zip(tokens.chunks(SEQ_LEN)) {
        for (x, y) in generated(a).iter().zip(generated(b).iter()) {
            same += usize::from(x == y);
            total += 1;
        }
    }
    same as f64 / total.max(1) as f64
}
