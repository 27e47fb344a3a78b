//! Block diffusion under uniform noise (DiffusionGemma's kind: canvases of random tokens,
//! self-conditioning, a clean prefix in the encoder's cache) against masked BD3LM, at the same
//! block length, a similar size and the same training budget.
//!
//! Each model continues the first block of test sequences for 7 blocks. Reported: BD3LM's NELBO
//! (uniform noise has no bound of this form; its training loss is a denoising cross-entropy),
//! the quality of the continuations, and model passes per generated token. On the Markov source
//! the continuations are scored exactly under the true chain: the share of impossible
//! transitions, and the NLL per possible transition (the exact conditional entropy is what
//! ancestral sampling at temperature 1 scores). On Shakespeare's characters: the share of their
//! words (two letters or more) that the training text knows. The test set's own continuations
//! are scored alike, as the ceiling.
//!
//! ```text
//! cargo run --release --example uniform_blocks [-- --steps 1500 --samples 128]
//! scripts/fetch-data.sh shakespeare && cargo run --release --example uniform_blocks -- --source shakespeare
//! ```

use burn::tensor::{Int, Tensor};
use clap::Parser;
use dlm::block::canvas::{CanvasSampler, CanvasSettings, SeededNoise, UniformBlockDiffusion};
use dlm::block::{Bd3lm, BlockSampler, Prefix};
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::data::MarkovSource;
use dlm::core::diffusion_gemma::{AttentionKind, DiffusionGemmaConfig, LayerAttention};
use dlm::core::host::token_rows;
use dlm::core::lexicon::{Lexicon, WordCount};
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::tokenizer::Tokenizer;
use dlm::discrete::sampler::{MaskedSampler, Unmasking};
use dlm::sched::{LogLinear, TimeSampler};
use dlm_support::ladder::LadderArgs;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    ladder: LadderArgs,
    /// Continuations sampled per model.
    #[arg(long, default_value_t = 128)]
    samples: usize,
}

const SEQ_LEN: usize = 64;
const BLOCK: usize = 8;

/// How continuations are judged: exactly under the Markov chain, or by the share of their words
/// the training text knows (Shakespeare at the character level).
enum Judge {
    Chain(MarkovSource),
    Words { tokenizer: Tokenizer, lexicon: Lexicon },
}

impl Judge {
    /// The figures of the generated part of `rows` (after the first block), named.
    fn score(&self, rows: &[Vec<u32>]) -> serde_json::Value {
        match self {
            Self::Chain(source) => {
                // The transitions ending in a generated token (the chain has order 2).
                let (mut log_prob, mut possible, mut impossible) = (0.0, 0usize, 0usize);
                for row in rows {
                    let s = source.score(&row[BLOCK - 2..]);
                    log_prob += s.log_prob;
                    possible += s.possible;
                    impossible += s.impossible;
                }
                json!({
                    "impossible": impossible as f64 / (possible + impossible) as f64,
                    "nll_per_transition": -log_prob / possible.max(1) as f64,
                })
            }
            Self::Words { tokenizer, lexicon } => {
                let count = rows
                    .iter()
                    .map(|row| lexicon.count(&tokenizer.decode(&row[BLOCK..]).unwrap_or_default()))
                    .fold(WordCount::default(), |a, b| a + b);
                json!({"known_words": count.share(), "words": count.words})
            }
        }
    }
}

/// A DiffusionGemma-shaped model of about the DiT's size: two layers (sliding, global), width
/// 128, a dense MLP of 192 beside two experts of 128 (one per token), canvases of `BLOCK`.
fn canvas_config(vocab_size: usize) -> DiffusionGemmaConfig {
    let shape = |value_projection| LayerAttention {
        head_dim: 32,
        num_kv_heads: 2,
        rope_theta: 10_000.0,
        rotated_pairs: 16,
        value_projection,
    };
    DiffusionGemmaConfig {
        vocab_size,
        hidden_size: 128,
        intermediate_size: 192,
        num_heads: 4,
        layers: vec![AttentionKind::Sliding, AttentionKind::Full],
        sliding: shape(true),
        full: shape(false),
        sliding_window: SEQ_LEN,
        num_experts: 2,
        top_k_experts: 1,
        moe_intermediate_size: 128,
        rms_norm_eps: 1e-6,
        final_logit_softcap: Some(30.0),
        attention_bias: false,
        canvas_length: BLOCK,
        max_seq_len: SEQ_LEN,
    }
}

fn parameters<M: burn::module::Module>(model: &M) -> usize {
    model.num_params()
}

fn main() -> anyhow::Result<()> {
    let Args { ladder: args, samples } = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    let ladder = args.ladder("uniform_blocks", SEQ_LEN, device.clone())?;
    let data = &ladder.data;
    let judge = match (&data.markov, &data.tokenizer) {
        (Some(source), _) => Judge::Chain(source.clone()),
        (None, Some(tokenizer)) => {
            let train: Vec<u32> =
                (0..data.train.len()).flat_map(|i| data.train.sequence(i).to_vec()).collect();
            let lexicon = Lexicon::from_text(&tokenizer.decode(&train)?);
            Judge::Words { tokenizer: tokenizer.clone(), lexicon }
        }
        (None, None) => anyhow::bail!("no way to judge samples of this source"),
    };
    let budget = ladder.budget();
    let test = data.test.batch(&(0..samples).collect::<Vec<_>>(), &device);
    let prompts: Tensor<2, Int> = test.clone().narrow(1, 0, BLOCK);
    let blocks = SEQ_LEN / BLOCK - 1;
    let generated = (blocks * BLOCK * samples) as f64;
    let mut rows = Vec::new();

    // Masked BD3LM on the DiT backbone.
    let mask_id = SpecialTokens::reserved().mask;
    let dit = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: data.vocab_size, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);
    let bd3lm = Bd3lm::new(LogLinear::default(), mask_id, BLOCK, TimeSampler::antithetic(1e-3)?)?;
    let (model, seconds) = budget.train("BD3LM", bd3lm.clone(), &dit, &device)?;
    let nelbo = bd3lm.evaluate(&model, &data.test, 64, 8, 0)?.nats_per_token;
    let inner =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, BLOCK)?
            .with_proposal(TokenSampler::new(1.0)?);
    let sampler = BlockSampler::new(inner, BLOCK, mask_id)?;
    let out = sampler.generate(
        &model,
        Some(prompts.clone()),
        samples,
        blocks,
        None,
        Prefix::Cached { window: None },
        &mut StdRng::seed_from_u64(1),
    )?;
    let quality = judge.score(&token_rows(out.tokens));
    let passes = out.nfe as f64 / (blocks * BLOCK) as f64;
    println!(
        "BD3LM L'={BLOCK} ({} parameters, {seconds:.0} s): NELBO {nelbo:.4} nats/token; samples (top-k, T = 1, {BLOCK} steps/block): {quality}, {passes:.3} passes/token",
        parameters(&model),
    );
    rows.push(json!({"model": "BD3LM", "parameters": parameters(&model), "seconds": seconds, "nelbo": nelbo, "decoding": "top-k, T = 1, 8 steps per block", "samples": quality, "passes_per_token": passes}));

    // Uniform-noise canvases on DiffusionGemma's blocks.
    let config = canvas_config(data.vocab_size);
    device.seed(0);
    let canvas_model = config.init(&device.clone().autodiff())?;
    let objective = UniformBlockDiffusion::new(1e-3, 0.5)?;
    let (canvas_model, seconds) =
        budget.train_model("uniform", objective, canvas_model, &config)?;
    let prompt_rows = token_rows(prompts);
    for (steps, t_min, t_max) in [(BLOCK, 0.4, 0.8), (BLOCK, 0.999, 1.0), (4 * BLOCK, 0.4, 0.8)] {
        let decoding = format!("EB γ = 0.1, T {t_max} → {t_min}, ≤ {steps} steps per canvas");
        let settings = CanvasSettings {
            max_new_tokens: blocks * BLOCK,
            max_denoising_steps: steps,
            t_min,
            t_max,
            ..CanvasSettings::default()
        };
        let sampler = CanvasSampler::new(settings, vec![], None)?;
        let out = sampler.generate(&canvas_model, &prompt_rows, &mut SeededNoise::new(1))?;
        let quality = judge.score(&out.sequences);
        let decoder: usize = out.decoder_passes.iter().sum();
        // One decoder pass of the batch serves every row still denoising; per token, as BD3LM's.
        let passes = decoder as f64 / generated + blocks as f64 / (blocks * BLOCK) as f64;
        println!(
            "uniform canvases ({} parameters, {seconds:.0} s), {decoding}: {quality}, {passes:.3} passes/token",
            parameters(&canvas_model),
        );
        rows.push(json!({"model": "uniform canvases", "parameters": parameters(&canvas_model), "seconds": seconds, "nelbo": null, "decoding": decoding, "samples": quality, "passes_per_token": passes}));
    }
    // What the test set's own continuations score: the ceiling of every row.
    let reference = judge.score(&token_rows(test));
    println!("held-out continuations: {reference}");
    let result = json!({"source": args.source.name(), "steps": ladder.steps, "samples": samples, "block": BLOCK, "seq_len": SEQ_LEN, "exact_entropies": data.exact(), "held_out": reference, "rows": rows});
    std::fs::write(ladder.out.join("result.json"), serde_json::to_string_pretty(&result)? + "\n")?;
    Ok(())
}
