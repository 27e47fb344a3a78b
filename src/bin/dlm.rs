//! `dlm`: train, evaluate and sample models from recipe files; generate with, score and serve
//! imported diffusion LMs.
//!
//! ```text
//! dlm generate --model DIR --prompt TEXT [--chat] [--watch] [--trajectory FILE.jsonl]
//!              [--config FILE.toml]
//!              [--policy top-k|threshold|random|ancestral|entropy-bound|slow-fast] [--steps N]
//!              [--block-length N] [--threshold T] [--gamma G] [--cache none|prefix|dual|exact]
//!              [--temperature T] [--seed S] [--gen-length N] [--cfg-scale W] [--mask-id ID]
//!              [--device D]
//! dlm score    --model DIR --text FILE [--samples N] [--seed S] [--mask-id ID] [--device D]
//! dlm train    RECIPE.toml [--out DIR] [--device D]
//! dlm eval     RUN_DIR [--device D]
//! dlm sample   RUN_DIR [--rows N] [--steps N] [--temperature T] [--seed S] [--watch] [--device D]
//! dlm serve    --model DIR [settings as for generate] [--host H] [--port P] [--batch N]
//!              [--queue N] [--max-calls N] [--name NAME]
//! ```
//!
//! On a DiffusionGemma checkpoint, `dlm generate` runs its canvas sampler (`--steps`, `--gamma`,
//! `--gen-length`, `--seed` over the checkpoint's generation config) and prints the text when it
//! is done.
//!
//! Generated text streams to stdout as blocks become final; the model calls, tokens per call and
//! wall time go to stderr. Settings come from the TOML file first (its keys are the flag names
//! with underscores, see `dlm::generate::GenerateSettings`), then the flags. `dlm serve` takes
//! the same settings as the defaults of its requests (see `dlm::serve`). `dlm train` reads a recipe
//! (see `dlm::recipe` and `configs/`) and writes its run folder; `dlm eval` and `dlm sample` read
//! that folder.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dlm::block::canvas::CanvasSettings;
use dlm::diffusion_gemma::GemmaCheckpoint;
use dlm::generate::{Cache, Checkpoint, GenerateSettings, Policy};
use dlm::recipe::{Recipe, Run, StepBar};
use dlm::watch::LiveView;

#[derive(Parser, Debug)]
#[command(
    name = "dlm",
    version,
    about = "Diffusion language models: train, evaluate, sample, generate, score, serve"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a continuation of a prompt.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// Render the prompt as a user message with the checkpoint's chat template.
        #[arg(long)]
        chat: bool,
        /// Write every decoding step to this file (JSON Lines).
        #[arg(long)]
        trajectory: Option<PathBuf>,
        /// Draw the canvas on stderr as the model commits, edits and remasks (live on a
        /// terminal, else a few snapshots); the text is printed when it is done.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Serve the model over an OpenAI-compatible HTTP API (the settings are the defaults of
    /// every request).
    #[cfg(feature = "serve")]
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        settings: SettingsArgs,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The port (0: any free one, printed at start).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Requests decoded at once, their steps stacked into one model call.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Requests that may wait while `batch` are decoded; more get a 503.
        #[arg(long, default_value_t = 16)]
        queue: usize,
        /// The most model calls one request may take (its settings' worst case); more get a 400.
        #[arg(long, default_value_t = dlm::serve::Engine::DEFAULT_MAX_CALLS)]
        max_calls: usize,
        /// The model name of the API (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Train a model from a recipe (a TOML file: data, model, objective, optimiser, run; see
    /// `configs/`), continuing its checkpoint when the run was started before.
    Train {
        /// The recipe.
        recipe: PathBuf,
        /// The output folder (overrides the recipe's `run.out`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The burn device.
        #[arg(long)]
        device: Option<String>,
    },
    /// Score a trained run's test split: the exact NLL (AR) or the NELBO (diffusion).
    Eval {
        /// The run's folder (`run.out` of its recipe).
        run: PathBuf,
        /// The burn device.
        #[arg(long)]
        device: Option<String>,
    },
    /// Draw samples from a trained run with its family's sampler.
    Sample {
        /// The run's folder (`run.out` of its recipe).
        run: PathBuf,
        /// Samples.
        #[arg(long, default_value_t = 4)]
        rows: usize,
        /// Denoising steps (per block for BD3LM; default: one per position, one per block
        /// position for BD3LM; D3PM takes its `T`).
        #[arg(long)]
        steps: Option<usize>,
        /// Proposal temperature (0: greedy).
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Draw the first sample's canvas as it is decoded (masked families).
        #[arg(long)]
        watch: bool,
        /// The burn device.
        #[arg(long)]
        device: Option<String>,
    },
    /// Estimate the masked-diffusion bound (nats per token) on a text file.
    Score {
        #[command(flatten)]
        model: ModelArgs,
        /// The text to score.
        #[arg(long)]
        text: PathBuf,
        /// Masks drawn per text.
        #[arg(long, default_value_t = 16)]
        samples: usize,
        /// Seed of the masks.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// The settings of a generation: a TOML file, then flags over it.
#[derive(clap::Args, Debug)]
struct SettingsArgs {
    /// A TOML file of settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The unmasking rule.
    #[arg(long, value_enum)]
    policy: Option<PolicyArg>,
    /// Steps per block.
    #[arg(long)]
    steps: Option<usize>,
    /// Semi-autoregressive block length (0: the whole generation is one block).
    #[arg(long)]
    block_length: Option<usize>,
    /// Confidence threshold of the threshold rule (SlowFast's high-confidence threshold).
    #[arg(long)]
    threshold: Option<f64>,
    /// The bound γ of the entropy-bound rule.
    #[arg(long)]
    gamma: Option<f64>,
    /// The cache.
    #[arg(long, value_enum)]
    cache: Option<CacheArg>,
    /// Proposal temperature (0: greedy).
    #[arg(long)]
    temperature: Option<f64>,
    /// Seed of every draw.
    #[arg(long)]
    seed: Option<u64>,
    /// Tokens to generate.
    #[arg(long)]
    gen_length: Option<usize>,
    /// Classifier-free guidance scale (LLaDA's cfg_scale; 0: none).
    #[arg(long)]
    cfg_scale: Option<f64>,
    /// Token editing above this probability (LLaDA 2.1's token-to-token rule; off by default).
    #[arg(long)]
    edit_threshold: Option<f64>,
}

impl SettingsArgs {
    fn settings(self) -> Result<GenerateSettings, Box<dyn std::error::Error>> {
        let mut settings = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<GenerateSettings>(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => GenerateSettings::default(),
        };
        if let Some(policy) = self.policy {
            settings.policy = match policy {
                PolicyArg::TopK => Policy::TopK,
                PolicyArg::Threshold => Policy::Threshold,
                PolicyArg::Random => Policy::Random,
                PolicyArg::Ancestral => Policy::Ancestral,
                PolicyArg::EntropyBound => Policy::EntropyBound,
                PolicyArg::SlowFast => Policy::SlowFast,
            };
        }
        if let Some(cache) = self.cache {
            settings.cache = match cache {
                CacheArg::None => Cache::None,
                CacheArg::Prefix => Cache::Prefix,
                CacheArg::Dual => Cache::Dual,
                CacheArg::Exact => Cache::Exact,
            };
        }
        settings.steps = self.steps.unwrap_or(settings.steps);
        if let Some(block_length) = self.block_length {
            settings.block_length = (block_length > 0).then_some(block_length);
        }
        settings.threshold = self.threshold.unwrap_or(settings.threshold);
        settings.gamma = self.gamma.unwrap_or(settings.gamma);
        settings.temperature = self.temperature.unwrap_or(settings.temperature);
        settings.seed = self.seed.unwrap_or(settings.seed);
        settings.gen_length = self.gen_length.unwrap_or(settings.gen_length);
        settings.cfg_scale = self.cfg_scale.unwrap_or(settings.cfg_scale);
        settings.edit_threshold = self.edit_threshold.or(settings.edit_threshold);
        Ok(settings)
    }
}

impl SettingsArgs {
    /// DiffusionGemma's settings: the checkpoint's `defaults`, with `--steps` (denoising steps
    /// per canvas, at most), `--gamma` (the entropy bound) and `--gen-length` over them. The
    /// masked samplers' flags are refused by name.
    fn canvas_settings(
        self,
        defaults: CanvasSettings,
    ) -> Result<CanvasSettings, Box<dyn std::error::Error>> {
        let masked_only = [
            ("--config", self.config.is_some()),
            ("--policy", self.policy.is_some()),
            ("--block-length", self.block_length.is_some()),
            ("--threshold", self.threshold.is_some()),
            ("--cache", self.cache.is_some()),
            ("--temperature", self.temperature.is_some()),
            ("--cfg-scale", self.cfg_scale.is_some()),
            ("--edit-threshold", self.edit_threshold.is_some()),
        ];
        if let Some((flag, _)) = masked_only.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag} is a masked sampler's setting; DiffusionGemma takes --steps, --gamma, \
                 --gen-length and --seed"
            )
            .into());
        }
        let settings = CanvasSettings {
            max_denoising_steps: self.steps.unwrap_or(defaults.max_denoising_steps),
            entropy_bound: self.gamma.unwrap_or(defaults.entropy_bound),
            max_new_tokens: self.gen_length.unwrap_or(defaults.max_new_tokens),
            ..defaults
        };
        settings.validate()?;
        Ok(settings)
    }
}

#[derive(clap::Args, Debug)]
struct ModelArgs {
    /// A Hugging Face model directory (config.json, weights, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// The mask token's id, when config.json does not name it.
    #[arg(long)]
    mask_id: Option<u32>,
    /// The burn device (`flex`, `ndarray`, `wgpu`, `cuda`, `tch`, ...); default `BURN_DEVICE` or
    /// `flex`.
    #[arg(long)]
    device: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    TopK,
    Threshold,
    Random,
    Ancestral,
    EntropyBound,
    SlowFast,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CacheArg {
    None,
    Prefix,
    Dual,
    Exact,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ModelArgs) -> Result<Checkpoint, Box<dyn std::error::Error>> {
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    Ok(Checkpoint::load(&args.model, &device, args.mask_id)?)
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Generate { model, prompt, chat, trajectory, watch, settings }
            if dlm::diffusion_gemma::is_diffusion_gemma(&model.model) =>
        {
            if watch || model.mask_id.is_some() {
                return Err(
                    "--watch and --mask-id are for masked models, not DiffusionGemma".into()
                );
            }
            let device = dlm::device::device_from_cli_or_env(model.device.as_deref())?;
            let checkpoint = GemmaCheckpoint::load(&model.model, &device)?;
            let seed = settings.seed.unwrap_or(0);
            let canvas = settings.canvas_settings(checkpoint.default_settings())?;
            let prompt = if chat { checkpoint.chat_prompt(&prompt)? } else { prompt };
            let generated = checkpoint.generate(&prompt, canvas, seed)?;
            println!("{}", generated.text);
            if let Some(path) = trajectory {
                let lines: Vec<String> =
                    generated.steps.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
                std::fs::write(&path, lines.join("\n") + "\n")
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            eprintln!(
                "{} tokens, {} decoder passes, {:.2} tokens per pass, {:.2} s",
                generated.tokens.len(),
                generated.decoder_passes,
                generated.tokens_per_forward,
                generated.seconds
            );
        }
        Command::Generate { model, prompt, chat, trajectory, watch, settings } => {
            let settings = settings.settings()?;
            let checkpoint = load(&model)?;
            let prompt = if chat { checkpoint.chat_prompt(&prompt)? } else { prompt };
            let mut stdout = std::io::stdout();
            let generated = if watch {
                let tokenizer = &checkpoint.tokenizer;
                let mut view =
                    LiveView::stderr(|t| tokenizer.decode(&[t as u32]).unwrap_or_default());
                let generated =
                    checkpoint.generate_stepwise(&prompt, &settings, &mut |_| {}, &mut view)?;
                view.finish()?;
                write!(stdout, "{}", generated.text)?;
                generated
            } else {
                checkpoint.generate(&prompt, &settings, &mut |text| {
                    let _ = write!(stdout, "{text}");
                    let _ = stdout.flush();
                })?
            };
            println!();
            stdout.flush()?;
            if let Some(path) = trajectory {
                std::fs::write(&path, generated.trajectory.to_jsonl())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            eprintln!(
                "{} tokens, {} model calls, {:.2} tokens per call, {:.2} s",
                generated.tokens.len(),
                generated.nfe,
                generated.tokens_per_forward(),
                generated.seconds
            );
        }
        #[cfg(feature = "serve")]
        Command::Serve { model, settings, host, port, batch, queue, max_calls, name } => {
            let settings = settings.settings()?;
            let name = name.unwrap_or_else(|| {
                let dir = model.model.canonicalize().unwrap_or_else(|_| model.model.clone());
                dir.file_name().map_or("dlm".into(), |n| n.to_string_lossy().into_owned())
            });
            let checkpoint = load(&model)?;
            let engine =
                dlm::serve::Engine::start(checkpoint, name.clone(), settings, queue, batch)?
                    .with_max_calls(max_calls);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
                // The one line a script waits for (with the port, when it was 0).
                println!("serving {name} on http://{}", listener.local_addr()?);
                std::io::stdout().flush()?;
                dlm::serve::serve(listener, std::sync::Arc::new(engine)).await
            })?;
        }
        Command::Train { recipe: path, out, device } => {
            let device = dlm::device::device_from_cli_or_env(device.as_deref())?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut recipe = Recipe::load(&path)?;
            if out.is_some() {
                recipe.run.out = out;
            }
            let trained = dlm::recipe::train(&recipe, &text, &device, true)?;
            println!(
                "{}: test {:.4} nats/token ({}), {:.0} s of training; wrote {}",
                path.display(),
                trained.test.report.nats_per_token,
                trained.test.kind,
                trained.seconds,
                trained.out.display()
            );
        }
        Command::Eval { run, device } => {
            let device = dlm::device::device_from_cli_or_env(device.as_deref())?;
            let loaded = Run::load(&run, &device)?;
            let test = loaded.test(true)?;
            println!(
                "{} test tokens: {:.4} nats/token ({:.4} bits, perplexity ≤ {:.3}; {})",
                test.report.tokens,
                test.report.nats_per_token,
                test.report.bits_per_token,
                test.report.perplexity_bound,
                test.kind
            );
            let family = &loaded.recipe.objective;
            if let Some(exact) = dlm::recipe::exact_reference(family, &loaded.data) {
                println!("exact entropy of the source, the figure's floor: {exact:.4} nats/token");
            }
        }
        Command::Sample { run, rows, steps, temperature, seed, watch, device } => {
            let device = dlm::device::device_from_cli_or_env(device.as_deref())?;
            let loaded = Run::load(&run, &device)?;
            let seq_len = loaded.data.train.seq_len();
            let family = &loaded.recipe.objective;
            let steps = steps.unwrap_or(family.default_steps(seq_len));
            if watch && !family.observes_steps() {
                return Err("--watch draws the masked families' decoding (mdlm, bd3lm)".into());
            }
            let (samples, nfe) = if watch {
                let data = &loaded.data;
                let mut view = LiveView::stderr(|t| data.show(&[t as u32]));
                let out = loaded.objective.sample(
                    &loaded.model,
                    data,
                    rows,
                    steps,
                    temperature,
                    seed,
                    &mut view,
                )?;
                view.finish()?;
                out
            } else {
                // Steps that report to the bar move it; AR and D3PM do not, and it only ticks.
                let calls = family.sampling_calls(seq_len, steps) as u64;
                let bar = dlm::recipe::bar(true, calls, "model calls");
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                let mut bar = StepBar(bar);
                let out = loaded.objective.sample(
                    &loaded.model,
                    &loaded.data,
                    rows,
                    steps,
                    temperature,
                    seed,
                    &mut bar,
                )?;
                bar.0.finish_and_clear();
                out
            };
            // One line per sample: line breaks inside a sample are shown as ↵.
            for sample in &samples {
                println!("{}", loaded.data.show(sample).replace('\n', "↵"));
            }
            eprintln!("{} samples of {seq_len} tokens, {nfe} model calls", samples.len());
        }
        Command::Score { model, text, samples, seed } => {
            let checkpoint = load(&model)?;
            let text =
                std::fs::read_to_string(&text).map_err(|e| format!("{}: {e}", text.display()))?;
            let score = checkpoint.score(&text, samples, seed)?;
            println!(
                "{} tokens, bound {:.4} nats per token ({samples} masks)",
                score.tokens, score.nats_per_token
            );
        }
    }
    Ok(())
}
