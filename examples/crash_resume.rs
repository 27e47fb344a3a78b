//! A training run that checkpoints after every step and continues from its checkpoint when
//! restarted: the subject of `scripts/crash-test.sh`, which kills it with `kill -9` at random
//! moments and checks that the loss curve of the interrupted runs equals the uninterrupted one
//! bit for bit.
//!
//! ```text
//! cargo run --release --example crash_resume -- --dir out/crash --steps 40
//! ```
//!
//! Appends `step,loss` lines (the loss as the hexadecimal bits of its `f64`) to `losses.csv`
//! in `--dir`, each before the checkpoint of its step is written.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use dlm::core::ar::ArObjective;
use dlm::core::backbone::DenoiserConfig;
use dlm::core::data::{MarkovSource, MarkovSourceConfig, SequenceDataset};
use dlm::core::train::{TrainConfig, Trainer};

#[derive(Parser, Debug)]
struct Args {
    /// Where the checkpoint and the losses go.
    #[arg(long)]
    dir: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = 40)]
    steps: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let source =
        MarkovSource::new(MarkovSourceConfig { n_symbols: 8, order: 2, branching: 3, seed: 0 })?;
    let sample = |len: usize, rng: &mut rand::rngs::StdRng| source.sample(len, rng);
    let train = SequenceDataset::generate(256, 32, source.vocab_size(), 1, sample)?;
    let model_config = DenoiserConfig::tokens(source.vocab_size(), 32)
        .with_d_model(32)
        .with_n_heads(2)
        .with_n_layers(2);
    let device = burn::tensor::Device::flex().autodiff();
    device.seed(0);
    let model = model_config.init(&device)?;
    let config =
        TrainConfig::new(args.steps, 16).with_learning_rate(3e-3).with_ema_decay(Some(0.9));
    let checkpoint = args.dir.join("run.ckpt");
    let mut trainer = Trainer::resume_or_new(&checkpoint, config, model, ArObjective::default())?;
    let path = args.dir.join("losses.csv");
    // A line cut by a kill is ended, so that the next one starts on a line of its own.
    if std::fs::read(&path).is_ok_and(|bytes| bytes.last().is_some_and(|&b| b != b'\n')) {
        std::fs::OpenOptions::new().append(true).open(&path)?.write_all(b"\n")?;
    }
    let mut losses = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let extra = serde_json::to_value(&model_config)?;
    while !trainer.is_done() {
        let report = trainer.step(&train)?;
        writeln!(losses, "{},{:016x}", report.step, report.loss.to_bits())?;
        losses.sync_data()?;
        trainer.save_checkpoint(&checkpoint, extra.clone())?;
    }
    Ok(())
}
