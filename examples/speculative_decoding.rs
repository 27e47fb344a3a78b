//! Speculative decoding and APD with a diffusion drafter, measured: an autoregressive target and a
//! smaller MDLM drafter trained on the ladders' Markov source; continuations of test prompts by
//! the target alone (one token per call, KV cache), by `SpeculativeDecoder` at several
//! windows and by `AdaptiveParallelDecoder` (APD: the drafter proposes, the AR model's mixture
//! decides; not exact) at APD's mixture weight 0.7, with model calls, tokens per round, wall time, and the source's exact score of the
//! generated transitions (both draw from the target's distribution, so it must agree: the mean
//! log-probability of the transitions the chain allows, and the fraction it never makes).
//!
//! ```text
//! cargo run --release --example speculative_decoding -- --steps 1500 --drafter-steps 6000
//! ```
//!
//! Writes `result.json` (and the two models' checkpoints) under `--out`.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use dlm::core::ar::{ArObjective, generate};
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::sampling::TokenSampler;
use dlm::core::tokenizer::SpecialTokens;
use dlm::discrete::{AdaptiveParallelDecoder, MaskingProcess, Mdlm, SpeculativeDecoder};
use dlm::sched::LogLinear;
use dlm_support::ladder::{Budget, markov_data};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Speculative decoding with a masked-diffusion drafter")]
struct Args {
    /// AdamW steps of the AR target.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// AdamW steps of the MDLM drafter (a masked model needs more than an AR one).
    #[arg(long, default_value_t = 6000)]
    drafter_steps: usize,
    /// Test prompts continued.
    #[arg(long, default_value_t = 32)]
    prompts: usize,
    /// Prompt tokens (from the test sequences).
    #[arg(long, default_value_t = 16)]
    prompt_len: usize,
    /// Tokens generated after each prompt.
    #[arg(long, default_value_t = 48)]
    n_new: usize,
    /// Draft windows.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    windows: Vec<usize>,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/speculative_decoding")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let seq_len = args.prompt_len + args.n_new;
    let data = markov_data(seq_len)?;
    let vocab_size = data.source.vocab_size();
    let io = DenoiserIo::Tokens { vocab_size, tie_embeddings: false };
    let budget = Budget {
        steps: args.steps,
        train: &data.train,
        valid: &data.valid,
        out: &args.out,
        resume: true,
    };
    // The target: the ladders' AR rung. The drafter: an MDLM of a quarter of its width.
    let target_config =
        DenoiserConfig::new(io.clone(), seq_len).with_d_model(128).with_n_heads(4).with_n_layers(2);
    let drafter_config =
        DenoiserConfig::new(io, seq_len).with_d_model(64).with_n_heads(2).with_n_layers(2);
    let (target, _) = budget.train("target_ar", ArObjective::default(), &target_config, &device)?;
    let mdlm =
        Mdlm::new(MaskingProcess::new(LogLinear::default(), SpecialTokens::reserved().mask), 1e-3)?;
    let drafter_budget = Budget { steps: args.drafter_steps, ..budget };
    let name = format!("drafter_mdlm_{}", args.drafter_steps);
    let (drafter_net, _) = drafter_budget.train(&name, mdlm.clone(), &drafter_config, &device)?;
    let drafter = mdlm.denoiser(&drafter_net);
    let nelbo = mdlm.evaluate(&drafter, &data.test, 64, 4, 0)?.nats_per_token;
    println!(
        "drafter NELBO {nelbo:.4} nats/token (entropy rate {:.4})",
        data.source.entropy_rate()
    );

    let prompts: Vec<Vec<u32>> =
        (0..args.prompts).map(|i| data.test.sequence(i)[..args.prompt_len].to_vec()).collect();
    // The source's score of the generated transitions (those ending after the prompt).
    let score = |tokens: &[u32]| {
        let (whole, prompt) =
            (data.source.score(tokens), data.source.score(&tokens[..args.prompt_len]));
        (
            whole.log_prob - prompt.log_prob,
            whole.possible - prompt.possible,
            whole.impossible - prompt.impossible,
        )
    };
    // Mean log-probability per allowed transition, and the fraction of impossible ones.
    let summary = |totals: (f64, usize, usize)| {
        let (log_prob, possible, impossible) = totals;
        (
            log_prob / possible.max(1) as f64,
            impossible as f64 / (possible + impossible).max(1) as f64,
        )
    };
    let add = |a: (f64, usize, usize), b: (f64, usize, usize)| (a.0 + b.0, a.1 + b.1, a.2 + b.2);
    let mut rows = Vec::new();

    let sampler = TokenSampler::new(1.0)?;
    let started = Instant::now();
    let mut totals = (0.0, 0, 0);
    for prompt in &prompts {
        let ids: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt.len()]), &device);
        let tokens: Vec<u32> = generate(&target, input, args.n_new, &sampler)
            .into_data()
            .iter::<i64>()
            .map(|t| t as u32)
            .collect();
        totals = add(totals, score(&tokens));
    }
    let ar_seconds = started.elapsed().as_secs_f64();
    let n = args.prompts as f64;
    let (log_prob, impossible) = summary(totals);
    println!(
        "AR alone: {} target calls per sequence, {ar_seconds:.3} s, {log_prob:.4} nats per \
         allowed transition, {:.2} % impossible",
        args.n_new,
        100.0 * impossible
    );
    rows.push(json!({
        "decoder": "AR alone", "target_calls": args.n_new, "draft_calls": 0, "seconds": ar_seconds,
        "speed_up": 1.0, "log_prob_per_transition": log_prob, "impossible_fraction": impossible,
    }));

    for &window in &args.windows {
        let decoder = SpeculativeDecoder::new(window)?;
        let mut rng = StdRng::seed_from_u64(0);
        let (mut target_calls, mut draft_calls, mut per_round) = (0, 0, 0.0);
        let started = Instant::now();
        for prompt in &prompts {
            let out = decoder.generate(&drafter, &target, prompt, args.n_new, &mut rng)?;
            target_calls += out.target_calls;
            draft_calls += out.draft_calls;
            per_round += out.tokens_per_round();
            totals = add(totals, score(&out.tokens));
        }
        let seconds = started.elapsed().as_secs_f64();
        let (log_prob, impossible) = summary(totals);
        println!(
            "window {window}: {:.1} target + {:.1} drafter calls per sequence, {:.2} tokens per round, \
             {seconds:.3} s ({:.2}x), {log_prob:.4} nats per allowed transition, {:.2} % impossible",
            target_calls as f64 / n,
            draft_calls as f64 / n,
            per_round / n,
            ar_seconds / seconds,
            100.0 * impossible
        );
        rows.push(json!({
            "decoder": format!("speculative, window {window}"),
            "target_calls": target_calls as f64 / n, "draft_calls": draft_calls as f64 / n,
            "tokens_per_round": per_round / n, "seconds": seconds, "speed_up": ar_seconds / seconds,
            "log_prob_per_transition": log_prob, "impossible_fraction": impossible,
        }));
    }
    for &lookahead in &args.windows {
        let decoder = AdaptiveParallelDecoder::new(0.7, lookahead)?.with_temperature(1.0)?;
        let mut rng = StdRng::seed_from_u64(0);
        let (mut verifier_calls, mut proposer_calls, mut rounds) = (0, 0, 0);
        let mut totals = (0.0, 0, 0);
        let started = Instant::now();
        for prompt in &prompts {
            let out = decoder.generate(&drafter, &target, prompt, args.n_new, &mut rng)?;
            verifier_calls += out.verifier_calls;
            proposer_calls += out.proposer_calls;
            rounds += out.accepted.len();
            totals = add(totals, score(&out.tokens));
        }
        let seconds = started.elapsed().as_secs_f64();
        let (log_prob, impossible) = summary(totals);
        let per_round = (args.n_new * args.prompts) as f64 / rounds as f64;
        println!(
            "APD R = 0.7, lookahead {lookahead}: {:.1} + {:.1} calls per sequence, {per_round:.2} \
             tokens per round, {seconds:.3} s ({:.2}x), {log_prob:.4} nats per allowed \
             transition, {:.2} % impossible",
            verifier_calls as f64 / n,
            proposer_calls as f64 / n,
            ar_seconds / seconds,
            100.0 * impossible
        );
        rows.push(json!({
            "decoder": format!("APD, R = 0.7, lookahead {lookahead}"),
            "target_calls": verifier_calls as f64 / n, "draft_calls": proposer_calls as f64 / n,
            "tokens_per_round": per_round, "seconds": seconds, "speed_up": ar_seconds / seconds,
            "log_prob_per_transition": log_prob, "impossible_fraction": impossible,
        }));
    }
    let result = json!({
        "source": data.source.config(), "steps": args.steps, "drafter_steps": args.drafter_steps,
        "drafter_nelbo": nelbo, "prompts": args.prompts,
        "prompt_len": args.prompt_len, "n_new": args.n_new,
        "entropy_rate": data.source.entropy_rate(), "rows": rows,
    });
    std::fs::write(args.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
