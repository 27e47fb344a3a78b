//! AR vs MDLM vs D3PM (absorbing) vs D3PM (uniform) at equal budget — same network size, steps,
//! batch and data — on the Markov source, each measured against the exact entropy.
//!
//! ```text
//! cargo run --release --example discrete_ladder
//! ```
//!
//! The AR figure is an exact NLL; the diffusion figures are upper bounds (NELBO), estimated with
//! several time samples per test sequence. The reference is the exact entropy per token of a
//! whole sequence, `H(x_1..x_L)/L`, which the bounds can reach; the entropy rate is printed too.

use std::path::PathBuf;

use burn::tensor::Device;
use clap::Parser;
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{MarkovSource, MarkovSourceConfig, SequenceDataset, SpecialTokens};
use dlm::core::train::{
    EvalBatches, LrDecay, Objective, RunOptions, TrainConfig, Trainer, evaluate, run,
};
use dlm::discrete::d3pm::{D3pm, Transition, mutual_information_schedule};
use dlm::discrete::{MaskingProcess, Mdlm, Subs};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Optimiser steps per model.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/discrete_ladder")]
    out: PathBuf,
}

const SEQ_LEN: usize = 64;

fn train<O: Objective<Denoiser>>(
    name: &str,
    objective: O,
    config: &DenoiserConfig,
    args: &Args,
    device: &Device,
    train: &SequenceDataset,
    valid: &SequenceDataset,
) -> anyhow::Result<(Denoiser, f64)> {
    let train_config = TrainConfig::new(args.steps, 32)
        .with_learning_rate(1e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 });
    device.seed(0);
    let mut trainer =
        Trainer::new(train_config, config.init(&device.clone().autodiff())?, objective)?;
    let started = std::time::Instant::now();
    let options = RunOptions {
        eval_every: 500,
        metrics_csv: Some(args.out.join(format!("{name}.csv"))),
        ..RunOptions::default()
    };
    run(&mut trainer, train, valid, &options)?;
    Ok((trainer.eval_model(), started.elapsed().as_secs_f64()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let source =
        MarkovSource::new(MarkovSourceConfig { n_symbols: 16, order: 2, branching: 4, seed: 0 })?;
    let vocab = source.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| source.sample(len, rng);
    let train_set = SequenceDataset::generate(16_384, SEQ_LEN, vocab, 1, sample)?;
    let valid = SequenceDataset::generate(256, SEQ_LEN, vocab, 2, sample)?;
    let test = SequenceDataset::generate(512, SEQ_LEN, vocab, 3, sample)?;
    let sequence_entropy = source.sequence_entropy(SEQ_LEN) / SEQ_LEN as f64;
    let entropy_rate = source.entropy_rate();
    let mask_id = SpecialTokens::reserved().mask;
    let base = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);
    let conditioned = base.clone().with_cond_dim(Some(128));
    let mut rows = Vec::new();
    println!(
        "exact entropy: {sequence_entropy:.4} nats/token over a whole sequence, rate {entropy_rate:.4}"
    );
    // Each figure against the exact entropy of what it scores.
    let mut report = |name: &str, nats: f64, reference: f64, seconds: f64, kind: &str| {
        println!(
            "{name:<16} {nats:.4} nats/token ({kind}); exact {reference:.4}: ratio {:.3}; {seconds:.0} s",
            nats / reference
        );
        rows.push(json!({"model": name, "nats_per_token": nats, "kind": kind, "exact_reference": reference, "ratio": nats / reference, "train_seconds": seconds}));
    };

    // AR scores positions 2..L (position 1 has no context): its reference is the exact
    // conditional entropy of those positions.
    let (ar, seconds) =
        train("ar", ArObjective::default(), &base, &args, &device, &train_set, &valid)?;
    let batches = EvalBatches { batch_size: 64, max_batches: None, seed: 0 };
    let ar_nll = evaluate(&ArObjective::default(), &ar, &test, batches)?;
    let conditional =
        (source.sequence_entropy(SEQ_LEN) - source.sequence_entropy(1)) / (SEQ_LEN - 1) as f64;
    report("AR", ar_nll, conditional, seconds, "exact NLL, positions 2..L");

    let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
    let (model, seconds) = train("mdlm", mdlm.clone(), &base, &args, &device, &train_set, &valid)?;
    let nelbo = mdlm.evaluate(&Subs { model: &model, mask_id }, &test, 64, 8, 0)?;
    report("MDLM", nelbo.nats_per_token, sequence_entropy, seconds, "NELBO");

    let frequencies = token_frequencies(&train_set, vocab);
    for (name, transition, lambda) in [
        ("D3PM absorbing", Transition::Absorbing { mask_id }, 0.01),
        ("D3PM uniform", Transition::Uniform, 0.0),
    ] {
        let schedule = mutual_information_schedule(transition, &frequencies, 1000)?;
        let d3pm = D3pm::new(transition, schedule, vocab, lambda)?;
        let (model, seconds) = train(
            &name.replace(' ', "_"),
            d3pm.clone(),
            &conditioned,
            &args,
            &device,
            &train_set,
            &valid,
        )?;
        let nats = d3pm_nelbo(&d3pm, &model, &test, 8)?;
        report(name, nats, sequence_entropy, seconds, "NELBO, T = 1000");
    }
    let result = json!({
        "steps": args.steps,
        "seq_len": SEQ_LEN,
        "sequence_entropy_per_token": sequence_entropy,
        "entropy_rate": entropy_rate,
        "rows": rows,
    });
    std::fs::write(args.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}

fn token_frequencies(data: &SequenceDataset, vocab: usize) -> Vec<f64> {
    let mut counts = vec![0.0; vocab];
    for i in 0..data.len() {
        for &t in data.sequence(i) {
            counts[t as usize] += 1.0;
        }
    }
    counts
}

/// The D3PM bound on `data`, `time_samples` stratified step draws per sequence, `f64` sums.
fn d3pm_nelbo(
    d3pm: &D3pm,
    model: &Denoiser,
    data: &SequenceDataset,
    time_samples: usize,
) -> anyhow::Result<f64> {
    let device = burn::module::Module::devices(model).into_iter().next().expect("parameters");
    let mut rng = StdRng::seed_from_u64(0);
    let (mut sum, mut count) = (0.0, 0usize);
    for indices in data.ordered_batches(64) {
        let x0 = data.batch(&indices, &device);
        for _ in 0..time_samples {
            let loss = d3pm.nelbo_sum(model, x0.clone(), &mut rng);
            sum += loss.sum.into_scalar::<f64>();
            count += loss.count;
        }
    }
    Ok(sum / count as f64)
}
