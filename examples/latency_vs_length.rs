//! Latency against generation length: does a diffusion LM's latency depend mainly on its number
//! of steps rather than on the length?
//!
//! One network shape (`d_model` 128, 4 heads, 2 layers, random weights: speed does not depend on
//! them), batch 1, generating `--lengths` tokens with
//! - MDLM, full attention, a fixed number of steps (`--steps`, LLaDA's top-k with `L / steps`
//!   tokens per step), and one token per step;
//! - BD3LM, blocks of 16 decoded one token per step and four tokens per step, the clean blocks in
//!   the exact KV cache;
//! - the autoregressive baseline with its KV cache.
//!
//! Prints the table and each decoder's fitted exponent `k` of `seconds ≈ c · lengthᵏ`, and writes
//! `latency.csv` and `latency.svg` (log–log) under `--out`.
//!
//! ```text
//! cargo run --release --example latency_vs_length
//! ```

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Int, Tensor};
use clap::Parser;
use dlm::block::{BlockSampler, Prefix};
use dlm::core::ar;
use dlm::core::backbone::{Denoiser, DenoiserConfig};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::scaling::{log_log_slope, plot_scaling};
use dlm::core::tokenizer::SpecialTokens;
use dlm::discrete::Subs;
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Parser, Debug)]
#[command(about = "Wall time of MDLM, BD3LM and AR generation against the length")]
struct Args {
    /// Generation lengths (multiples of 64).
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512,1024")]
    lengths: Vec<usize>,
    /// MDLM's fixed number of steps.
    #[arg(long, default_value_t = 64)]
    steps: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/latency_vs_length")]
    out: PathBuf,
}

const BLOCK: usize = 16;
const VOCAB: usize = 64;

/// A decoder under test: generates `length` tokens, returns its model calls.
type Decode<'a> = Box<dyn Fn(usize) -> anyhow::Result<usize> + 'a>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let max_len = args.lengths.iter().copied().max().unwrap_or(64);
    if let Some(bad) = args.lengths.iter().find(|&&l| l == 0 || l % 64 != 0) {
        anyhow::bail!("--lengths must be positive multiples of 64, got {bad}");
    }
    device.seed(0);
    let config =
        DenoiserConfig::tokens(VOCAB, max_len).with_d_model(128).with_n_heads(4).with_n_layers(2);
    let model: Denoiser = dlm_core::testing::randomised(config.init(&device)?, &device);
    let mask_id = SpecialTokens::reserved().mask;
    let proposal = TokenSampler::new(1.0)?;
    let top_k = |steps: usize| -> anyhow::Result<MaskedSampler> {
        let policy = Unmasking::TopK { confidence: Confidence::TokenProbability };
        Ok(MaskedSampler::new(policy, steps)?.with_proposal(proposal))
    };
    let subs = Subs { model: &model, mask_id };
    let mdlm = |steps: Option<usize>| -> Decode<'_> {
        Box::new(move |length| {
            let state = SamplerState::all_masked(&subs, 1, length)?;
            let sampler = top_k(steps.unwrap_or(length))?;
            Ok(sampler.sample(&subs, state, &mut StdRng::seed_from_u64(1))?.nfe)
        })
    };
    let bd3lm = |steps_per_block: usize| -> Decode<'_> {
        let model = &model;
        Box::new(move |length| {
            let sampler = BlockSampler::new(top_k(steps_per_block)?, BLOCK, mask_id)?;
            let cached = Prefix::Cached { window: None };
            let rng = &mut StdRng::seed_from_u64(1);
            Ok(sampler.generate(model, None, 1, length / BLOCK, None, cached, rng)?.nfe)
        })
    };
    let autoregressive: Decode<'_> = Box::new(|length| {
        let first = Tensor::<2, Int>::zeros([1, 1], &device).add_scalar(5);
        let tokens = ar::generate(&model, first, length - 1, &proposal);
        let _ = tokens.into_data();
        Ok(length)
    });
    let decoders: Vec<(String, Decode<'_>)> = vec![
        (format!("MDLM, {} steps", args.steps), mdlm(Some(args.steps))),
        ("MDLM, one token per step".into(), mdlm(None)),
        (format!("BD3LM, blocks of {BLOCK}, one token per step"), bd3lm(BLOCK)),
        (format!("BD3LM, blocks of {BLOCK}, four tokens per step"), bd3lm(BLOCK / 4)),
        ("AR, KV cache".into(), autoregressive),
    ];
    // A warm-up call, so the first measurement does not pay the allocator's and threads' start.
    (decoders[0].1)(64)?;
    let mut csv = String::from("decoder,length,calls,seconds\n");
    let mut series = Vec::new();
    for (label, decode) in &decoders {
        let mut points = Vec::new();
        for &length in &args.lengths {
            let started = Instant::now();
            let calls = decode(length)?;
            let seconds = started.elapsed().as_secs_f64();
            println!("{label:<44} {length:>5} tokens  {calls:>5} calls  {seconds:>8.3} s");
            csv.push_str(&format!("{label},{length},{calls},{seconds:.4}\n"));
            points.push((length as f64, seconds));
        }
        series.push((label.clone(), points));
    }
    println!("\nfitted exponent k of seconds ≈ c·lengthᵏ:");
    for (label, points) in &series {
        let slope = log_log_slope(points).map_or("-".into(), |k| format!("{k:.2}"));
        println!("  {label:<44} {slope}");
    }
    std::fs::write(args.out.join("latency.csv"), csv)?;
    plot_scaling(
        &args.out.join("latency.svg"),
        "generation latency against length (batch 1, d_model 128, 2 layers)",
        ["tokens generated", "seconds"],
        &series,
    )?;
    Ok(())
}
