//! DiffuSeq's partial noising on a task with an exact answer: the source is a random sequence of
//! 8 tokens, the target its reverse. The model sees `[source | target]`, only the target is
//! noised in training and generated at sampling (the source re-anchored after every step), and
//! exact-match accuracy is measured against the number of sampling steps, DDPM and DDIM.
//!
//! ```text
//! cargo run --release --example diffuseq_task
//! ```

use std::path::PathBuf;

use clap::Parser;
use dlm::continuous::{
    DiffusionLm, DiffusionLmConfig, DiffusionLmLoss, Distance, GaussianSampler, Update,
};
use dlm::core::data::SequenceDataset;
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::sched::{SquareRoot, TimeGrid};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Test pairs.
    #[arg(long, default_value_t = 128)]
    test: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/diffuseq_task")]
    out: PathBuf,
}

const HALF: usize = 8;
const SYMBOLS: u32 = 12;

fn example(_len: usize, rng: &mut StdRng) -> Vec<u32> {
    let source: Vec<u32> =
        (0..HALF).map(|_| SpecialTokens::COUNT + rng.random_range(0..SYMBOLS)).collect();
    source.iter().copied().chain(source.iter().rev().copied()).collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let vocab = (SpecialTokens::COUNT + SYMBOLS) as usize;
    let train = SequenceDataset::generate(8192, 2 * HALF, vocab, 1, example)?;
    let valid = SequenceDataset::generate(128, 2 * HALF, vocab, 2, example)?;
    let test = SequenceDataset::generate(args.test, 2 * HALF, vocab, 3, example)?;
    let schedule = SquareRoot::default();
    let loss = DiffusionLmLoss::new(schedule, 2000)?.with_source_len(HALF);
    let config = DiffusionLmConfig::new(vocab, 2 * HALF)
        .with_embed_dim(16)
        .with_d_model(128)
        .with_n_layers(3);
    let train_config = TrainConfig::new(args.steps, 64)
        .with_learning_rate(1e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_ema_decay(Some(0.99));
    device.seed(0);
    let mut trainer = Trainer::new(train_config, config.init(&device.clone().autodiff())?, loss)?;
    let started = std::time::Instant::now();
    run(
        &mut trainer,
        &train,
        &valid,
        &RunOptions {
            eval_every: 500,
            metrics_csv: Some(args.out.join("metrics.csv")),
            loss_plot: Some(args.out.join("loss.svg")),
            ..RunOptions::default()
        },
    )?;
    println!("trained in {:.0} s", started.elapsed().as_secs_f64());
    let model: DiffusionLm = trainer.eval_model();

    let indices: Vec<usize> = (0..test.len()).collect();
    let truth: Vec<i64> = test.batch(&indices, &device).into_data().iter::<i64>().collect();
    let source = test.batch(&indices, &device).narrow(1, 0, HALF);
    let mut rows = Vec::new();
    for update in [Update::Ddpm, Update::Ddim { eta: 0.0 }] {
        for steps in [5, 10, 20, 50, 100, 200] {
            let sampler = GaussianSampler::new(update, TimeGrid::uniform(steps, 0.0)?)?
                .with_clamping(Distance::L2);
            let started = std::time::Instant::now();
            let out = sampler.sample(
                &model,
                &schedule,
                test.len(),
                2 * HALF,
                Some(source.clone()),
                &mut StdRng::seed_from_u64(4),
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let got: Vec<i64> = out.tokens.into_data().iter::<i64>().collect();
            let (mut exact, mut correct) = (0, 0);
            for (g, t) in got.chunks(2 * HALF).zip(truth.chunks(2 * HALF)) {
                let hits = (HALF..2 * HALF).filter(|&i| g[i] == t[i]).count();
                correct += hits;
                exact += usize::from(hits == HALF);
            }
            let exact_match = exact as f64 / test.len() as f64;
            let token_accuracy = correct as f64 / (test.len() * HALF) as f64;
            println!(
                "{update:?} {steps:>3} steps: exact match {exact_match:.3}, token accuracy {token_accuracy:.3}, {seconds:.2} s"
            );
            rows.push(json!({"update": format!("{update:?}"), "steps": steps, "exact_match": exact_match, "token_accuracy": token_accuracy, "seconds": seconds}));
        }
    }
    std::fs::write(
        args.out.join("result.json"),
        serde_json::to_string_pretty(&json!({"steps": args.steps, "rows": rows}))?,
    )?;
    Ok(())
}
