//! Trains the autoregressive baseline and measures it against ground truth.
//!
//! ```text
//! # Markov source: validation NLL against the exact entropy rate
//! cargo run --release --example train_ar -- --source markov
//! # Shakespeare (run scripts/fetch-data.sh first): perplexity and samples
//! cargo run --release --example train_ar -- --source shakespeare
//! ```
//!
//! Writes `metrics.csv`, `loss.svg`, `model.ckpt` and `result.json` under `--out`.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use clap::{Parser, ValueEnum};
use dlm::core::ar::{ArObjective, generate};
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{
    MarkovSource, MarkovSourceConfig, SequenceDataset, read_documents, split_corpus,
    tokenize_documents,
};
use dlm::core::eval::{EvalBatches, unigram_entropy};
use dlm::core::sampling::TokenSampler;
use dlm::core::tokenizer::{HfTokenizer, Tokenizer};
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, evaluate, run};
use dlm_support::ladder::shakespeare_files;
use serde_json::json;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Source {
    /// A sparse order-2 Markov chain over 16 symbols with a known entropy rate.
    Markov,
    /// The 42 Shakespeare texts of `scripts/fetch-data.sh`, with a byte-level BPE.
    Shakespeare,
}

#[derive(Parser, Debug)]
#[command(about = "Train the autoregressive baseline")]
struct Args {
    #[arg(long, value_enum, default_value = "markov")]
    source: Source,
    /// Optimiser steps (default: 1500 for markov, 600 for shakespeare).
    #[arg(long)]
    steps: Option<usize>,
    /// Device: flex, ndarray, wgpu, cuda (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/train_ar")]
    out: PathBuf,
    /// Seed of data, initialisation and batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    let out = args.out.join(format!("{:?}", args.source).to_lowercase());
    std::fs::create_dir_all(&out)?;
    match args.source {
        Source::Markov => markov(&args, device, out),
        Source::Shakespeare => shakespeare(&args, device, out),
    }
}

fn options(out: &std::path::Path, model: &DenoiserConfig) -> RunOptions {
    RunOptions {
        eval_every: 250,
        eval_batches: Some(16),
        log_every: 25,
        checkpoint: Some(out.join("model.ckpt")),
        checkpoint_every: 500,
        checkpoint_extra: serde_json::to_value(model).expect("serialisable config"),
        metrics_csv: Some(out.join("metrics.csv")),
        loss_plot: Some(out.join("loss.svg")),
        show_progress: true,
    }
}

fn markov(args: &Args, device: burn::tensor::Device, out: PathBuf) -> anyhow::Result<()> {
    let source_config =
        MarkovSourceConfig { n_symbols: 16, order: 2, branching: 4, seed: args.seed };
    let source = MarkovSource::new(source_config)?;
    let (seq_len, vocab) = (64, source.vocab_size());
    let sample = |len: usize, rng: &mut rand::rngs::StdRng| source.sample(len, rng);
    let train = SequenceDataset::generate(16_384, seq_len, vocab, args.seed + 1, sample)?;
    let valid = SequenceDataset::generate(256, seq_len, vocab, args.seed + 2, sample)?;
    let test = SequenceDataset::generate(1024, seq_len, vocab, args.seed + 3, sample)?;

    let model_config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        seq_len,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);
    model_config.check_seq_len(train.seq_len())?;
    let steps = args.steps.unwrap_or(1500);
    let train_config = TrainConfig::new(steps, 32)
        .with_learning_rate(1e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_seed(args.seed);
    device.seed(args.seed);
    let model = model_config.init(&device.clone().autodiff())?;
    let mut trainer = Trainer::new(train_config, model, ArObjective::default())?;
    let started = Instant::now();
    run(&mut trainer, &train, &valid, &options(&out, &model_config))?;
    let seconds = started.elapsed().as_secs_f64();

    // Exact NLL on the test set: with the full order-k context (positions ≥ k) against the
    // entropy rate, and from position 1 against the exact conditional entropy of the sequence.
    let model = trainer.eval_model();
    let batches = EvalBatches { batch_size: 64, max_batches: None, seed: 0 };
    let order = source_config.order;
    let nll_full_context =
        evaluate(&ArObjective::default().with_first_target(order), &model, &test, batches)?;
    let nll_all = evaluate(&ArObjective::default(), &model, &test, batches)?;
    let entropy_rate = source.entropy_rate();
    let conditional = source.conditional_entropy_per_token(seq_len);
    let result = json!({
        "source": source_config,
        "seq_len": seq_len,
        "steps": steps,
        "train_seconds": seconds,
        "test_nll_full_context": nll_full_context,
        "entropy_rate": entropy_rate,
        "relative_gap": nll_full_context / entropy_rate - 1.0,
        "test_nll_from_position_1": nll_all,
        "exact_conditional_entropy_from_position_1": conditional,
        "parameters": burn::module::Module::num_params(&model),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    println!(
        "test NLL {nll_full_context:.4} nats/token vs entropy rate {entropy_rate:.4} ({:+.2} %)",
        100.0 * (nll_full_context / entropy_rate - 1.0)
    );
    std::fs::write(out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}

fn shakespeare(args: &Args, device: burn::tensor::Device, out: PathBuf) -> anyhow::Result<()> {
    let files = shakespeare_files()?;
    let started = Instant::now();
    let tokenizer = Tokenizer::from(HfTokenizer::train_bpe(&files, 4096)?);
    tokenizer.save(&out.join("tokenizer.json"))?;
    let documents = read_documents(&files)?;
    let ids = tokenize_documents(&documents, &tokenizer, Some(&PathBuf::from("data/cache")))?;
    let seq_len = 128;
    let splits = split_corpus(&ids, &tokenizer, seq_len, 0.05, 0.05)?;
    println!(
        "tokenizer + corpus in {:.1} s: {} train / {} valid / {} test sequences of {seq_len}",
        started.elapsed().as_secs_f64(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len()
    );

    let vocab = tokenizer.vocab_size();
    let model_config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        seq_len,
    )
    .with_d_model(256)
    .with_n_heads(4)
    .with_n_layers(4);
    model_config.check_seq_len(splits.train.seq_len())?;
    let steps = args.steps.unwrap_or(600);
    let train_config = TrainConfig::new(steps, 16)
        .with_learning_rate(1e-3)
        .with_warmup_steps(50)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_seed(args.seed);
    device.seed(args.seed);
    let model = model_config.init(&device.clone().autodiff())?;
    let mut trainer = Trainer::new(
        train_config,
        model,
        ArObjective::default().ignoring(tokenizer.special().pad),
    )?;
    let started = Instant::now();
    run(&mut trainer, &splits.train, &splits.valid, &options(&out, &model_config))?;
    let seconds = started.elapsed().as_secs_f64();

    let model: Denoiser = trainer.eval_model();
    let batches = EvalBatches { batch_size: 16, max_batches: None, seed: 0 };
    let nll = evaluate(&ArObjective::default(), &model, &splits.test, batches)?;
    let sampler = TokenSampler::new(0.8)?.with_top_p(0.95)?;
    let bos = tokenizer.special().bos as i64;
    let prompt = Tensor::<2, Int>::from_data(TensorData::new(vec![bos; 4], [4, 1]), &device);
    device.seed(args.seed);
    let samples = generate(&model, prompt, 96, &sampler);
    let rows: Vec<Vec<u32>> = samples
        .into_data()
        .iter::<i64>()
        .map(|t| t as u32)
        .collect::<Vec<_>>()
        .chunks(97)
        .map(<[u32]>::to_vec)
        .collect();
    let texts: Vec<String> = rows.iter().map(|r| tokenizer.decode(r)).collect::<Result<_, _>>()?;
    let entropies: Vec<f64> = rows.iter().map(|r| unigram_entropy(&r[1..])).collect();
    let result = json!({
        "tokenizer": "byte-level BPE, 4096",
        "seq_len": seq_len,
        "steps": steps,
        "train_seconds": seconds,
        "test_nll": nll,
        "test_perplexity": nll.exp(),
        "sample_unigram_entropy": entropies,
        "samples": texts,
        "parameters": burn::module::Module::num_params(&model),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    std::fs::write(out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
