//! The README's first command: trains a small masked diffusion language model (MDLM) on
//! *Alice in Wonderland*, character level, for a few minutes on the CPU, then reports its
//! likelihood bound and prints samples from two samplers.
//!
//! ```text
//! scripts/fetch-data.sh canterbury            # optional: without it, a Markov source is used
//! cargo run --release --example quickstart
//! ```
//!
//! Writes `out/quickstart/{metrics.csv, loss.svg, model.ckpt}`.

use dlm::core::host::token_rows;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Parser;
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{
    MarkovSource, MarkovSourceConfig, SequenceDataset, read_documents, split_corpus,
    tokenize_documents,
};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::tokenizer::{CharTokenizer, Tokenizer};
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Parser, Debug)]
#[command(about = "Train a small MDLM on Alice in Wonderland and sample from it")]
struct Args {
    /// Optimiser steps.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Device: flex, ndarray, wgpu, cuda, tch (or BURN_DEVICE).
    #[arg(long)]
    device: Option<String>,
    /// Model replicas computing each batch in parallel threads (2 keeps both cores of a 2-core
    /// machine busy on flex; 1 on a GPU or libtorch, which parallelise each operation).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Output folder.
    #[arg(long, default_value = "out/quickstart")]
    out: PathBuf,
}

struct Data {
    name: &'static str,
    train: SequenceDataset,
    valid: SequenceDataset,
    tokenizer: Option<Tokenizer>,
    vocab_size: usize,
}

const SEQ_LEN: usize = 128;

fn alice() -> anyhow::Result<Option<Data>> {
    let path = Path::new("data/canterbury/alice29.txt");
    if !path.is_file() {
        return Ok(None);
    }
    let documents = read_documents(&[path.to_path_buf()])?;
    let tokenizer =
        Tokenizer::Char(CharTokenizer::from_texts(documents.iter().map(String::as_str))?);
    let ids = tokenize_documents(&documents, &tokenizer, Some(Path::new("data/cache")))?;
    let splits = split_corpus(&ids, &tokenizer, SEQ_LEN, 0.05, 0.05)?;
    let vocab_size = tokenizer.vocab_size();
    Ok(Some(Data {
        name: "Alice in Wonderland (characters)",
        train: splits.train,
        valid: splits.valid,
        tokenizer: Some(tokenizer),
        vocab_size,
    }))
}

fn markov() -> anyhow::Result<Data> {
    let source =
        MarkovSource::new(MarkovSourceConfig { n_symbols: 16, order: 2, branching: 4, seed: 0 })?;
    let vocab_size = source.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| source.sample(len, rng);
    let train = SequenceDataset::generate(4096, SEQ_LEN, vocab_size, 1, sample)?;
    let valid = SequenceDataset::generate(128, SEQ_LEN, vocab_size, 2, sample)?;
    println!("(exact entropy rate of this source: {:.4} nats/token)", source.entropy_rate());
    Ok(Data {
        name: "Markov source (16 symbols, order 2)",
        train,
        valid,
        tokenizer: None,
        vocab_size,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device: Device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    let data = match alice()? {
        Some(data) => data,
        None => {
            println!(
                "data/canterbury/alice29.txt is missing (run scripts/fetch-data.sh canterbury); \
                 training on the embedded Markov source instead."
            );
            markov()?
        }
    };
    let mask_id = SpecialTokens::reserved().mask;
    println!(
        "MDLM on {}: {} training sequences of {SEQ_LEN} tokens, vocabulary {}",
        data.name,
        data.train.len(),
        data.vocab_size
    );

    let model_config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: data.vocab_size, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(4);
    model_config.check_seq_len(SEQ_LEN)?;
    let schedule = LogLinear::default();
    let objective = Mdlm::new(MaskingProcess::new(schedule, mask_id), 1e-3)?;
    let train_config = TrainConfig::new(args.steps, 16)
        .with_learning_rate(2e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_ema_decay(Some(0.99))
        .with_replicas(args.replicas);
    device.seed(0);
    let model = model_config.init(&device.clone().autodiff())?;
    let mut trainer = Trainer::new(train_config, model, objective.clone())?;
    let options = RunOptions {
        eval_every: 250,
        eval_batches: Some(4),
        log_every: 20,
        checkpoint: Some(args.out.join("model.ckpt")),
        checkpoint_every: 500,
        checkpoint_extra: serde_json::to_value(&model_config)?,
        metrics_csv: Some(args.out.join("metrics.csv")),
        loss_plot: Some(args.out.join("loss.svg")),
        show_progress: true,
    };
    run(&mut trainer, &data.train, &data.valid, &options)?;

    let model: Denoiser = trainer.eval_model();
    let subs = objective.denoiser(&model);
    let report = objective.evaluate(&subs, &data.valid, 32, 4, 0)?;
    println!(
        "\nvalidation NELBO {:.4} nats/token ({:.3} bits), perplexity ≤ {:.2}",
        report.nats_per_token, report.bits_per_token, report.perplexity_bound
    );

    let proposal = TokenSampler::new(1.0)?;
    let samplers = [
        (
            "MDLM ancestral, 128 steps",
            MaskedSampler::new(Unmasking::ancestral(objective.process())?, 128)?,
        ),
        (
            "confidence top-k, 64 steps",
            MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, 64)?,
        ),
    ];
    for (name, sampler) in samplers {
        device.seed(1);
        let state = SamplerState::all_masked(&subs, 2, SEQ_LEN)?;
        let out =
            sampler.with_proposal(proposal).sample(&subs, state, &mut StdRng::seed_from_u64(1))?;
        println!("\n--- {name} ({} model calls) ---", out.nfe);
        for row in token_rows(out.tokens) {
            match &data.tokenizer {
                Some(tokenizer) => println!("{}\n", tokenizer.decode(&row)?.replace('\n', " ")),
                None => println!("{row:?}\n"),
            }
        }
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
