//! The README's first command: trains a small masked diffusion language model (MDLM, Sahoo et
//! al. 2024) on *Alice in Wonderland*, character level, for about three minutes on two CPU
//! cores, then shows what diffusion decoding does:
//!
//! 1. the likelihood bound on held-out text, beside the entropy of the letter frequencies alone;
//! 2. samples from three samplers as text, each with its model calls and the share of its words
//!    that are words of the book (beside the share for held-out text and for letters drawn by
//!    their frequencies), and a note when a sample collapsed onto one repeated character;
//! 3. a masked span of a held-out passage infilled, with context on both sides (what an
//!    autoregressive model cannot do);
//! 4. one sample decoded step by step: the canvas redrawn as the model commits characters.
//!
//! ```text
//! cargo run --release --example quickstart [-- --steps 1500 --out out/quickstart]
//! ```
//!
//! The text is in the repository (`assets/alice29.txt`, public domain). Writes
//! `out/quickstart/{metrics.csv, loss.svg, model.ckpt}`; a second run reuses the trained model
//! there (delete the folder to train again).

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use dlm::core::backbone::{Denoiser, DenoiserConfig, DenoiserIo};
use dlm::core::data::{SequenceDataset, split_corpus, tokenize_documents};
use dlm::core::eval::{dominant_token, unigram_entropy};
use dlm::core::host::{int_values, token_rows};
use dlm::core::lexicon::{Lexicon, WordCount};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::{CharTokenizer, SpecialTokens, Tokenizer};
use dlm::core::train::{LrDecay, RunOptions, TrainConfig, Trainer, run};
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm::discrete::{MaskedDenoiser, MaskingProcess, Mdlm, Subs};
use dlm::sched::LogLinear;
use dlm::watch::LiveView;
use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;

#[derive(Parser, Debug)]
#[command(about = "Train a small MDLM on Alice in Wonderland and watch it decode")]
struct Args {
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500)]
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

/// The book, in the repository (see `assets/README.md`).
const ALICE: &str = include_str!("../assets/alice29.txt");
const SEQ_LEN: usize = 64;
/// Samples per sampler.
const ROWS: usize = 4;
/// Characters of the prompt of a continuation.
const PROMPT: usize = 16;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device: Device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    std::fs::create_dir_all(&args.out)?;

    let tokenizer = Tokenizer::Char(CharTokenizer::from_texts([ALICE])?);
    let ids = tokenize_documents(&[ALICE.to_string()], &tokenizer, None)?;
    let splits = split_corpus(&ids, &tokenizer, SEQ_LEN, 0.05, 0.05)?;
    let (train, valid) = (splits.train, splits.valid);
    let decode = |tokens: &[u32]| tokenizer.decode(tokens).unwrap_or_default();
    let lexicon = Lexicon::from_text(&decode(&concat(&train)));
    println!(
        "MDLM on Alice in Wonderland, characters: {} training sequences of {SEQ_LEN}, {} symbols, \
         {} distinct words",
        train.len(),
        tokenizer.vocab_size() - SpecialTokens::COUNT as usize,
        lexicon.len()
    );

    // A small denoiser (0.1M parameters: what two cores train in three minutes) and MDLM's
    // continuous-time NELBO under the log-linear schedule.
    let model_config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: tokenizer.vocab_size(), tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(64)
    .with_n_heads(2)
    .with_n_layers(2);
    let objective =
        Mdlm::new(MaskingProcess::new(LogLinear::default(), SpecialTokens::reserved().mask), 1e-3)?;
    let train_config = TrainConfig::new(args.steps, 64)
        .with_learning_rate(2e-3)
        .with_warmup_steps(100)
        .with_decay(LrDecay::Cosine { min_ratio: 0.1 })
        .with_ema_decay(Some(0.99))
        .with_replicas(args.replicas);
    device.seed(0);
    let model = model_config.init(&device.clone().autodiff())?;
    // A finished run in `--out` is reused (delete the folder to train again).
    let checkpoint = args.out.join("model.ckpt");
    let mut trainer = Trainer::resume_or_new(&checkpoint, train_config, model, objective.clone())?;
    let options = RunOptions {
        eval_every: 500,
        eval_batches: Some(4),
        log_every: 20,
        checkpoint: Some(checkpoint),
        checkpoint_every: 500,
        checkpoint_extra: serde_json::to_value(&model_config)?,
        metrics_csv: Some(args.out.join("metrics.csv")),
        loss_plot: Some(args.out.join("loss.svg")),
        show_progress: true,
    };
    run(&mut trainer, &train, &valid, &options)?;

    let model: Denoiser = trainer.eval_model();
    let subs = objective.denoiser(&model);
    let report = objective.evaluate(&subs, &valid, 64, 4, 0)?;
    println!(
        "\n1. Likelihood. Validation NELBO {:.3} nats/character (perplexity ≤ {:.1}); letter \
         frequencies alone give {:.3}.",
        report.nats_per_token,
        report.perplexity_bound,
        unigram_entropy(&concat(&train))
    );

    // Reference points of the word share: held-out sequences (cut at their edges as samples
    // are), and letters drawn by their frequency.
    let held_out = (0..valid.len())
        .map(|i| lexicon.count(&decode(valid.sequence(i))))
        .fold(WordCount::default(), |a, b| a + b);
    let frequencies = WeightedIndex::new(train.token_frequencies())?;
    let mut rng = StdRng::seed_from_u64(7);
    let letters: Vec<u32> =
        (0..ROWS * SEQ_LEN).map(|_| frequencies.sample(&mut rng) as u32).collect();
    println!(
        "\n2. Samples ({ROWS} of {SEQ_LEN} characters each), with how many of their words (of two \
         letters or more) are words of the book: held-out text scores {}, letters drawn by their \
         frequencies {}.",
        percent(held_out),
        percent(lexicon.count(&decode(&letters)))
    );
    let proposal = TokenSampler::new(1.0)?;
    let confidence = Unmasking::TopK { confidence: Confidence::TokenProbability };
    // Each sampler with the length of the prompt it continues: the first characters of held-out
    // passages, or nothing.
    let samplers = [
        (
            "MDLM ancestral (the model's reverse process), 64 steps",
            MaskedSampler::new(Unmasking::ancestral(objective.process())?, 64)?,
            0,
        ),
        (
            "LLaDA confidence order after a 16-character prompt, blocks of 16, 2 characters per call",
            MaskedSampler::new(confidence.clone(), 8)?.with_block_length(16)?,
            PROMPT,
        ),
        (
            "confidence order with no prompt, over the whole sequence, 2 characters per call",
            MaskedSampler::new(confidence, 32)?,
            0,
        ),
    ];
    for (name, sampler, prompt_len) in &samplers {
        device.seed(1);
        let state = match prompt_len {
            0 => SamplerState::all_masked(&subs, ROWS, SEQ_LEN)?,
            &n => {
                SamplerState::with_prompt(&subs, prompts(&valid, n, &subs.device()), SEQ_LEN - n)?
            }
        };
        let out = sampler.clone().with_proposal(proposal).sample(
            &subs,
            state,
            &mut StdRng::seed_from_u64(1),
        )?;
        let rows = token_rows(out.tokens);
        let count = rows
            .iter()
            .map(|row| lexicon.count(&decode(&row[*prompt_len..])))
            .fold(WordCount::default(), |a, b| a + b);
        println!("\n--- {name}: {} model calls, words of the book {} ---", out.nfe, percent(count));
        for row in &rows {
            let (prompt, generated) = row.split_at(*prompt_len);
            match prompt_len {
                0 => println!("{}", one_line(&decode(generated))),
                _ => println!("[{}]{}", one_line(&decode(prompt)), one_line(&decode(generated))),
            }
        }
        explain_collapse(
            &rows.iter().flat_map(|r| &r[*prompt_len..]).copied().collect::<Vec<_>>(),
            &decode,
        );
    }

    infill(&objective, &subs, &valid, &tokenizer, &lexicon, proposal)?;

    println!(
        "\n4. One sample step by step ({}; on a terminal the canvas is redrawn in place):",
        samplers[0].0
    );
    device.seed(2);
    let mut view = LiveView::stderr(|t| decode(&[t as u32])).with_width(SEQ_LEN);
    let state = SamplerState::all_masked(&subs, 1, SEQ_LEN)?;
    samplers[0].1.clone().with_proposal(proposal).sample_observed(
        &subs,
        state,
        &mut StdRng::seed_from_u64(2),
        &mut view,
    )?;
    view.finish()?;
    println!("\nwrote {}", args.out.display());
    Ok(())
}

/// The first `len` tokens of the first [`ROWS`] sequences of `data`, `[ROWS, len]`.
fn prompts(data: &SequenceDataset, len: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> =
        (0..ROWS).flat_map(|i| data.sequence(i)[..len].iter().map(|&t| i64::from(t))).collect();
    Tensor::<2, Int>::from_data(TensorData::new(ids, [ROWS, len]), device)
}

/// Every token of a split, in corpus order.
fn concat(data: &SequenceDataset) -> Vec<u32> {
    (0..data.len()).flat_map(|i| data.sequence(i).iter().copied()).collect()
}

fn percent(count: WordCount) -> String {
    match count.share() {
        Some(share) => format!("{} of {} ({:.0}%)", count.known, count.words, 100.0 * share),
        None => "none (no words)".into(),
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// Says why a sample is mostly one character, when it is.
fn explain_collapse(tokens: &[u32], decode: &dyn Fn(&[u32]) -> String) {
    let Some((token, share)) = dominant_token(tokens) else { return };
    if share > 0.5 {
        println!(
            "note: {:.0}% of these characters are {:?}. Confidence-ordered decoding commits the \
             positions the model is surest of first; where the context says little, a small \
             model is surest of the most common character, and every one committed makes its \
             neighbours likelier copies. A longer prompt, or the model's own reverse process \
             (ancestral, which unmasks positions in random order), avoids this.",
            100.0 * share,
            decode(&[token])
        );
    }
}

/// Masks a span of words in the middle of a held-out passage and fills it in.
fn infill(
    objective: &Mdlm<LogLinear>,
    subs: &Subs<'_, Denoiser>,
    valid: &SequenceDataset,
    tokenizer: &Tokenizer,
    lexicon: &Lexicon,
    proposal: TokenSampler,
) -> anyhow::Result<()> {
    let decode = |tokens: &[u32]| tokenizer.decode(tokens).unwrap_or_default();
    let passage = valid.sequence(valid.len() / 2).to_vec();
    let space = tokenizer.encode(" ")?[0];
    // From the first space after a third of the passage to the first space after two thirds.
    let after = |from: usize| (from..SEQ_LEN).find(|&i| passage[i] == space).unwrap_or(from);
    let (start, end) = match (after(SEQ_LEN / 3), after(2 * SEQ_LEN / 3)) {
        (start, end) if start < end => (start, end),
        // No space to cut at: the middle third.
        _ => (SEQ_LEN / 3, 2 * SEQ_LEN / 3),
    };
    let mask = SpecialTokens::reserved().mask;
    let mut masked = passage.clone();
    masked[start..end].fill(mask);
    println!(
        "\n3. Infilling: characters {start}..{end} of a held-out passage masked, the rest given \
         on both sides.\n   {:<12}{}\n   {:<12}{}{}{}",
        "original:",
        one_line(&decode(&passage)),
        "masked:",
        one_line(&decode(&passage[..start])),
        dlm::watch::MASK_GLYPH.to_string().repeat(end - start),
        one_line(&decode(&passage[end..]))
    );
    let samplers = [
        ("ancestral", MaskedSampler::new(Unmasking::ancestral(objective.process())?, 32)?),
        (
            "confidence",
            MaskedSampler::new(
                Unmasking::TopK { confidence: Confidence::TokenProbability },
                end - start,
            )?,
        ),
    ];
    for (name, sampler) in samplers {
        let ids: Vec<i64> = masked.iter().map(|&t| i64::from(t)).collect();
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(ids, [1, SEQ_LEN]), &subs.device());
        let state = SamplerState::infill(subs, tokens)?;
        let out =
            sampler.with_proposal(proposal).sample(subs, state, &mut StdRng::seed_from_u64(3))?;
        let filled: Vec<u32> = int_values(out.tokens).into_iter().map(|t| t as u32).collect();
        let span = decode(&filled[start..end]);
        println!(
            "   {:<11}{}[{}]{}   ({} calls, words of the book {})",
            format!("{name}:"),
            one_line(&decode(&filled[..start])),
            one_line(&span),
            one_line(&decode(&filled[end..])),
            out.nfe,
            percent(lexicon.count(&span))
        );
    }
    Ok(())
}
