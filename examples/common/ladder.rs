//! What the likelihood-ladder examples share: the Markov data, equal-budget training and the
//! result table.

use std::path::Path;

use burn::tensor::Device;
use dlm::core::backbone::{Denoiser, DenoiserConfig};
use dlm::core::data::{MarkovSource, MarkovSourceConfig, SequenceDataset};
use dlm::core::train::{LrDecay, Objective, RunOptions, TrainConfig, Trainer, run};
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// The Markov source of the ladders and its train/valid/test sets.
pub(crate) struct MarkovData {
    pub(crate) source: MarkovSource,
    pub(crate) train: SequenceDataset,
    pub(crate) valid: SequenceDataset,
    pub(crate) test: SequenceDataset,
}

pub(crate) fn markov_data(seq_len: usize) -> anyhow::Result<MarkovData> {
    let source =
        MarkovSource::new(MarkovSourceConfig { n_symbols: 16, order: 2, branching: 4, seed: 0 })?;
    let vocab = source.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| source.sample(len, rng);
    let train = SequenceDataset::generate(16_384, seq_len, vocab, 1, sample)?;
    let valid = SequenceDataset::generate(256, seq_len, vocab, 2, sample)?;
    let test = SequenceDataset::generate(512, seq_len, vocab, 3, sample)?;
    Ok(MarkovData { source, train, valid, test })
}

/// Trains one model with the ladder's common budget: `steps` AdamW steps of batch 32, lr 1e-3
/// with 100 warmup steps and cosine decay; returns the evaluation model and the seconds taken.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train<O: Objective<Denoiser>>(
    name: &str,
    objective: O,
    config: &DenoiserConfig,
    steps: usize,
    device: &Device,
    train: &SequenceDataset,
    valid: &SequenceDataset,
    out: &Path,
) -> anyhow::Result<(Denoiser, f64)> {
    let train_config = TrainConfig::new(steps, 32)
        .with_learning_rate(1e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 });
    device.seed(0);
    let mut trainer =
        Trainer::new(train_config, config.init(&device.clone().autodiff())?, objective)?;
    let started = std::time::Instant::now();
    let options = RunOptions {
        eval_every: 500,
        metrics_csv: Some(out.join(format!("{name}.csv"))),
        ..RunOptions::default()
    };
    run(&mut trainer, train, valid, &options)?;
    Ok((trainer.eval_model(), started.elapsed().as_secs_f64()))
}

/// Rows of a ladder: each figure against the exact entropy of what it scores.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<Value>,
}

impl Table {
    pub(crate) fn add(&mut self, name: &str, nats: f64, reference: f64, seconds: f64, kind: &str) {
        println!(
            "{name:<16} {nats:.4} nats/token = {:.4} bits ({kind}); exact {reference:.4}: ratio {:.3}; {seconds:.0} s",
            nats / std::f64::consts::LN_2,
            nats / reference
        );
        self.rows.push(json!({
            "model": name,
            "nats_per_token": nats,
            "bits_per_token": nats / std::f64::consts::LN_2,
            "kind": kind,
            "exact_reference": reference,
            "ratio": nats / reference,
            "train_seconds": seconds,
        }));
    }

    pub(crate) fn into_rows(self) -> Vec<Value> {
        self.rows
    }
}
