//! Complementary masking (LaViDa) against standard masking, measured: MDLMs of one size trained
//! on the same source, three ways — standard masking at batch `2B` (the same model compute per
//! step as the pair), standard masking at batch `B` (the same data per step), and complementary
//! masking at batch `B` (each sequence scored with a mask and with its complement, `2B` rows per
//! step) — with the test NELBO (one mask per time, stratified times) and the wall time of each.
//!
//! ```text
//! cargo run --release --example complementary_masking -- --source markov --steps 1500
//! cargo run --release --example complementary_masking -- --source shakespeare --steps 1500
//! ```
//!
//! Writes `result.json` and each run's metrics CSV under `--out/<source>`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::LogLinear;
use dlm_support::ladder::{LadderData, Source};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Complementary against standard masking at equal compute and equal data")]
struct Args {
    /// The corpus.
    #[arg(long, value_enum, default_value = "markov")]
    source: Source,
    /// AdamW steps of every run.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// `B`: sequences per step of the complementary run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Sequence length.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/complementary_masking")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    let out = args.out.join(args.source.name());
    std::fs::create_dir_all(&out)?;
    let data = LadderData::load(args.source, args.seq_len)?;
    let io = DenoiserIo::Tokens { vocab_size: data.vocab_size, tie_embeddings: false };
    let config =
        DenoiserConfig::new(io, args.seq_len).with_d_model(64).with_n_heads(2).with_n_layers(2);
    let process = MaskingProcess::new(LogLinear::default(), SpecialTokens::reserved().mask);
    let standard = Mdlm::new(process, 1e-3)?;
    let complementary = standard.clone().with_complementary_masking()?;
    let b = args.batch;
    let runs = [
        ("standard, batch 2B (equal compute)", standard.clone(), 2 * b),
        ("standard, batch B (equal data)", standard.clone(), b),
        ("complementary, batch B", complementary, b),
    ];
    let mut rows = Vec::new();
    for (i, (label, objective, batch)) in runs.into_iter().enumerate() {
        let train_config = TrainConfig::new(args.steps, batch)
            .with_learning_rate(1e-3)
            .with_warmup_steps(100)
            .with_decay(LrDecay::Cosine { min_ratio: 0.1 });
        device.seed(0);
        let model = config.init(&device.clone().autodiff())?;
        let mut trainer = Trainer::new(train_config, model, objective)?;
        let options = RunOptions {
            metrics_csv: Some(out.join(format!("run{i}.csv"))),
            ..RunOptions::default()
        };
        let started = Instant::now();
        run(&mut trainer, &data.train, &data.valid, &options)?;
        let seconds = started.elapsed().as_secs_f64();
        let model: Denoiser = trainer.eval_model();
        let nelbo = standard.evaluate(&standard.denoiser(&model), &data.test, 64, 4, 0)?;
        let rows_per_step = if label.starts_with("complementary") { 2 * batch } else { batch };
        let unique_tokens = args.steps * batch * args.seq_len;
        println!(
            "{label:<38} {rows_per_step:>3} rows/step  {unique_tokens:>9} data tokens  \
             {seconds:>7.1} s  test NELBO {:.4} nats/token",
            nelbo.nats_per_token
        );
        rows.push(json!({
            "run": label, "sequences_per_step": batch, "rows_per_step": rows_per_step,
            "data_tokens": unique_tokens, "seconds": seconds, "test_nelbo": nelbo.nats_per_token,
        }));
    }
    let exact = data.exact().map(|(sequence, _)| sequence);
    if let Some(entropy) = exact {
        println!("exact entropy {entropy:.4} nats/token");
    }
    let result = json!({
        "source": args.source.name(), "steps": args.steps, "batch": b, "seq_len": args.seq_len,
        "exact_entropy": exact, "runs": rows,
    });
    std::fs::write(out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
