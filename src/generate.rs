//! Generating and scoring with an imported checkpoint: what `dlm generate` and `dlm score` run.
//!
//! [`Checkpoint::load`] reads a Hugging Face directory (config, weights, `tokenizer.json`);
//! [`Checkpoint::generate`] picks the decoder the settings and the architecture call for and
//! streams text as blocks become final; [`Checkpoint::score`] estimates the masked-diffusion
//! bound on a text, and [`Checkpoint::token_likelihoods`] splits a text's log-likelihood over
//! its tokens (what `dlm serve` returns as `logprobs`).
//!
//! | `cache` | full attention (LLaDA, Dream, Tiny-A2D) | block-causal (SDAR) |
//! |---|---|---|
//! | `none` | [`MaskedSampler`], semi-autoregressive with `block_length` | [`BlockSampler`], prefix recomputed |
//! | `prefix`, `dual` | [`BlockwiseDecoder`] (Fast-dLLM's approximate caches) | refused |
//! | `exact` | refused | [`BlockSampler`] with BD3LM's exact KV cache |

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_block::{Bd3lm, BlockError, BlockSampler, BlockwiseDecoder, CacheMode, Prefix};
use dlm_core::CoreError;
use dlm_core::backbone::{AttentionMask, DenoiserInput, DenoiserOutput, TokenModel};
use dlm_core::data::SequenceDataset;
use dlm_core::llama::Pretrained;
use dlm_core::sampling::{Confidence, TokenSampler};
use dlm_core::tokenizer::{ChatMessage, ChatTemplate, HfTokenizer, SpecialTokens};
use dlm_discrete::likelihood::{LikelihoodSplit, TokenLikelihood, TokenLikelihoods};
use dlm_discrete::sampler::{
    AdaptiveStopping, BlockDone, MaskedSampler, Observer, SamplerState, SlowFast, Start,
    TokenEditing, Trajectory, TrajectoryStep, Unmasking,
};
use dlm_discrete::{DiscreteError, Guided, MaskingProcess, Mdlm, Subs};
use dlm_sched::{LogLinear, ScheduleKind, TimeSampler};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// What can go wrong between a model directory and its text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// Loading, tokenising or checking failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A sampler refused its settings or its state (a prompt beyond the context, say).
    #[error(transparent)]
    Discrete(#[from] DiscreteError),
    /// A block decoder refused its settings.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The settings ask for something this architecture cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// Neither the config nor the caller names the mask token.
    #[error("{}: config.json names no mask_token_id; pass the mask id", dir.display())]
    NoMaskToken {
        /// The model directory.
        dir: std::path::PathBuf,
    },
}

/// The unmasking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Commit the most confident masked positions, an even share of the block per step (LLaDA's
    /// low-confidence remasking).
    TopK,
    /// Commit every masked position whose confidence exceeds `threshold`, at least one per step
    /// (Fast-dLLM's parallel decoding).
    Threshold,
    /// Commit random masked positions, an even share per step (LLaDA's random remasking).
    Random,
    /// MDLM's ancestral steps on the log-linear schedule (whole sequence or semi-autoregressive
    /// blocks; not with the approximate caches).
    Ancestral,
    /// The EB-sampler: the lowest-entropy masked positions while `Σ H − max H ≤ gamma`, at least
    /// one per step (Ben-Hamu et al. 2025).
    EntropyBound,
    /// SlowFast sampling (Wei et al. 2025): sub-cycles of a slow phase estimating the span the
    /// model is sure of, then a fast phase filling it; the paper's settings, with `threshold` as
    /// its high-confidence threshold.
    SlowFast,
}

/// Which cache the decoder keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cache {
    /// Every step recomputes the whole sequence.
    None,
    /// Fast-dLLM's prefix cache (approximate).
    Prefix,
    /// Fast-dLLM's dual cache (approximate).
    Dual,
    /// BD3LM's exact cache of the clean blocks (block-causal models).
    Exact,
}

/// The settings of one generation, as flags or a TOML file (unknown keys are errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateSettings {
    /// The unmasking rule.
    pub policy: Policy,
    /// Steps per block of the count and grid policies (top-k, random, ancestral); the rules
    /// (threshold, entropy bound) step until the block is decoded.
    pub steps: usize,
    /// Semi-autoregressive block length; `None` decodes the whole generation as one block
    /// (block-causal models use their own block size).
    pub block_length: Option<usize>,
    /// Confidence threshold of the threshold rule (and SlowFast's high-confidence threshold).
    pub threshold: f64,
    /// The entropy bound `γ` of the entropy-bound rule.
    pub gamma: f64,
    /// The cache.
    pub cache: Cache,
    /// Temperature of the token proposals (0: greedy).
    pub temperature: f64,
    /// The seed of every draw.
    pub seed: u64,
    /// Tokens to generate.
    pub gen_length: usize,
    /// Classifier-free guidance scale `w` (LLaDA's `cfg_scale`; 0: none): full-attention models
    /// without a cache.
    pub cfg_scale: f64,
    /// Token editing (LLaDA 2.1's token-to-token rule): decoded tokens whose current prediction
    /// differs with probability above this are replaced, with up to 16 edit-only calls per block;
    /// `None`: no editing.
    pub edit_threshold: Option<f64>,
    /// Adaptive stopping (DiffusionGemma's stable-and-confident rule on the masked positions):
    /// a row's block ends, its masks taking the argmax, once its prediction held for
    /// `stability_threshold` steps with a mean entropy below `confidence_threshold`; `None`: off.
    /// Every decoder applies it inside each block (the masked sampler, BD3LM's block sampler,
    /// the Fast-dLLM caches).
    pub adaptive_stopping: Option<AdaptiveStopping>,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        Self {
            policy: Policy::TopK,
            steps: 32,
            block_length: None,
            threshold: 0.9,
            gamma: 0.1,
            cache: Cache::None,
            temperature: 0.0,
            seed: 0,
            gen_length: 128,
            cfg_scale: 0.0,
            edit_threshold: None,
            adaptive_stopping: None,
        }
    }
}

impl GenerateSettings {
    /// The most model calls a generation with these settings makes, for a model that decodes in
    /// blocks of `block_size` (block-causal) or in any block (`None`): per block, the policy's
    /// steps (a time grid walks all of them; even shares and the rules stop once the block is
    /// decoded, which takes at most one step per position) and the edit-only calls of token
    /// editing, then the final noise removal; the block-causal sampler decodes whole blocks of
    /// `block_size` (the first may start with up to `block_size − 1` prompt positions), each with
    /// its own noise removal and cache update, after one call that caches the prompt. What a
    /// server bounds before it accepts a request.
    pub fn max_model_calls(&self, block_size: Option<usize>) -> usize {
        let gen_length = self.gen_length.max(1);
        let steps_per_block = |block: usize| match self.policy {
            Policy::Ancestral => self.steps,
            Policy::TopK | Policy::Random => self.steps.min(block),
            Policy::Threshold | Policy::EntropyBound | Policy::SlowFast => block,
        };
        let edits = match self.edit_threshold {
            Some(_) => TokenEditing::default().max_post_steps(),
            None => 0,
        };
        match block_size {
            // Whole blocks of `bs`, the first shared with up to `bs − 1` prompt positions; per
            // block its steps, its noise removal and its cache update; one call for the prompt.
            Some(bs) => {
                let bs = bs.max(1);
                let blocks = (bs - 1).saturating_add(gen_length).div_ceil(bs);
                let per_block = steps_per_block(bs).saturating_add(edits + 2);
                blocks.saturating_mul(per_block).saturating_add(1)
            }
            // Blocks of the block length within the generation, then one noise removal.
            None => {
                let block = self.block_length.unwrap_or(gen_length).clamp(1, gen_length);
                let per_block = steps_per_block(block).saturating_add(edits);
                gen_length.div_ceil(block).saturating_mul(per_block).saturating_add(1)
            }
        }
    }
}

/// What a generation returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The generated text, cut at the first end-of-text token.
    pub text: String,
    /// The generated ids, cut likewise.
    pub tokens: Vec<u32>,
    /// The end-of-text token the text was cut at, if the model committed one.
    pub end_token: Option<u32>,
    /// Model calls (cache updates included).
    pub nfe: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Every step of the decoding (prompt and generation), replayable ([`Trajectory::replay`])
    /// and writable as JSON Lines.
    pub trajectory: Trajectory,
}

impl Generated {
    /// Generated tokens per model call (the tokens up to the end of text).
    pub fn tokens_per_forward(&self) -> f64 {
        self.tokens.len() as f64 / self.nfe.max(1) as f64
    }
}

/// The bound [`Checkpoint::score`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Tokens scored.
    pub tokens: usize,
    /// The masked-diffusion bound on `−log p` in nats per token.
    pub nats_per_token: f64,
}

/// A model directory, ready to generate: the network, its tokenizer and its special tokens.
#[derive(Debug)]
pub struct Checkpoint {
    /// The network and its config.
    pub pretrained: Pretrained,
    /// Its `tokenizer.json`, with the config's special-token ids.
    pub tokenizer: HfTokenizer,
    /// The mask token.
    pub mask_id: u32,
    /// The end-of-text tokens at which generated text is cut: the config's and those of
    /// `generation_config.json`, where present.
    pub eos_ids: Vec<u32>,
    /// The checkpoint's chat template, if it has one (Instruct models).
    pub chat_template: Option<ChatTemplate>,
}

/// A block-causal network read with its own mask (SDAR: queries see their block and the blocks
/// before), for callers that send plain inputs.
struct BlockCausal<'a> {
    model: &'a Pretrained,
    block_size: usize,
}

impl TokenModel for BlockCausal<'_> {
    /// # Shapes
    /// - tokens `[batch, n]` → `[batch, n, hidden]`
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        let mask = AttentionMask::BlockCausal { block_size: self.block_size };
        self.model.forward_hidden(input.with_mask(mask))
    }

    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.model.head_rows(hidden)
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn max_seq_len(&self) -> usize {
        self.model.max_seq_len()
    }

    fn is_time_conditioned(&self) -> bool {
        false
    }

    fn device(&self) -> Device {
        TokenModel::device(self.model)
    }
}

/// Streams finished blocks, and records and reports every step.
struct Recorder<'a> {
    stream: &'a mut dyn FnMut(BlockDone<'_>),
    observer: &'a mut dyn Observer,
    trajectory: Trajectory,
}

impl Observer for Recorder<'_> {
    fn started(&mut self, start: Start<'_>) {
        self.trajectory.started(start);
        self.observer.started(start);
    }

    fn step_done(&mut self, step: &TrajectoryStep) {
        self.trajectory.step_done(step);
        self.observer.step_done(step);
    }

    fn block_done(&mut self, done: BlockDone<'_>) {
        (self.stream)(done);
    }
}

/// The fields of `generation_config.json` this library reads.
#[derive(Debug, Default, Deserialize)]
struct GenerationConfig {
    #[serde(default)]
    eos_token_id: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl Checkpoint {
    /// Loads `dir`: `config.json`, the weights, `tokenizer.json`. `mask_id` overrides the
    /// config's `mask_token_id`.
    ///
    /// # Errors
    /// As [`Pretrained::from_dir`] and [`HfTokenizer::load_with_special`];
    /// [`GenerateError::NoMaskToken`] when no mask id is known.
    pub fn load(dir: &Path, device: &Device, mask_id: Option<u32>) -> Result<Self, GenerateError> {
        let pretrained = Pretrained::from_dir(dir, device)?;
        let config = &pretrained.config;
        let mask_id = mask_id
            .or(config.mask_id)
            .ok_or_else(|| GenerateError::NoMaskToken { dir: dir.to_path_buf() })?;
        let eos = config.eos_id.unwrap_or(mask_id);
        let special = SpecialTokens {
            pad: config.pad_id.unwrap_or(eos),
            bos: config.bos_id.unwrap_or(eos),
            eos,
            mask: mask_id,
        };
        let tokenizer = HfTokenizer::load_with_special(&dir.join("tokenizer.json"), special)?;
        let mut eos_ids: Vec<u32> = config.eos_id.into_iter().collect();
        let generation_config = dir.join("generation_config.json");
        if generation_config.is_file() {
            let generation: GenerationConfig = dlm_core::hf::read_json(&generation_config)?;
            match generation.eos_token_id {
                Some(OneOrMany::One(id)) => eos_ids.push(id),
                Some(OneOrMany::Many(ids)) => eos_ids.extend(ids),
                None => {}
            }
        }
        eos_ids.dedup();
        let chat_template = ChatTemplate::from_model_dir(dir)?;
        Ok(Self { pretrained, tokenizer, mask_id, eos_ids, chat_template })
    }

    /// `user` as the checkpoint's chat template renders a one-message conversation, with the
    /// assistant's turn opened: the prompt an Instruct model expects.
    ///
    /// # Errors
    /// [`GenerateError::Unsupported`] for a checkpoint without a template;
    /// [`CoreError::Template`] if it fails to render.
    pub fn chat_prompt(&self, user: &str) -> Result<String, GenerateError> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            GenerateError::Unsupported(
                "this checkpoint has no chat template (a Base model?)".into(),
            )
        })?;
        Ok(template.render(&[ChatMessage::user(user)], true)?)
    }

    /// Generates `settings.gen_length` tokens after `prompt`, calling `on_text` with each piece
    /// of text as the blocks holding it become final.
    ///
    /// # Errors
    /// [`GenerateError::Unsupported`] for a cache the architecture cannot use (see the module
    /// table) or a block length other than a block-causal model's own; the samplers' errors for
    /// bad settings or a prompt that does not fit the context.
    pub fn generate(
        &self,
        prompt: &str,
        settings: &GenerateSettings,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generated, GenerateError> {
        self.generate_stepwise(prompt, settings, on_text, &mut ())
    }

    /// As [`Checkpoint::generate`], also telling `observer` where the decoding starts (the
    /// prompt's tokens and the masks after it) and every step, a block-causal model's cache
    /// updates included (positions count from the start of the prompt): what a live view of the
    /// canvas ([`crate::watch::LiveView`]) draws. Its `block_done` is not called (`on_text` is).
    ///
    /// # Errors
    /// As [`Checkpoint::generate`].
    pub fn generate_stepwise(
        &self,
        prompt: &str,
        settings: &GenerateSettings,
        on_text: &mut dyn FnMut(&str),
        observer: &mut dyn Observer,
    ) -> Result<Generated, GenerateError> {
        let ids = self.tokenizer.encode(prompt)?;
        self.generate_ids_stepwise(&ids, settings, on_text, observer)
    }

    /// As [`Checkpoint::generate_stepwise`], from a prompt already tokenised (what an evaluation
    /// harness sends).
    ///
    /// # Errors
    /// As [`Checkpoint::generate`].
    pub fn generate_ids_stepwise(
        &self,
        prompt: &[u32],
        settings: &GenerateSettings,
        on_text: &mut dyn FnMut(&str),
        observer: &mut dyn Observer,
    ) -> Result<Generated, GenerateError> {
        self.generate_through(&self.pretrained, prompt, settings, on_text, observer)
    }

    /// As [`Checkpoint::generate_ids_stepwise`], the network's calls made through `model`: this
    /// checkpoint's network or a view of it (`dlm serve` batches the calls of concurrent
    /// requests into one).
    ///
    /// # Errors
    /// As [`Checkpoint::generate`].
    pub fn generate_through<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        prompt: &[u32],
        settings: &GenerateSettings,
        on_text: &mut dyn FnMut(&str),
        observer: &mut dyn Observer,
    ) -> Result<Generated, GenerateError> {
        let started = Instant::now();
        let device = self.pretrained.model.device();
        let ids: Vec<i64> = prompt.iter().map(|&id| i64::from(id)).collect();
        let prompt_len = ids.len();
        let prompt = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt_len]), &device);
        let mut rng = StdRng::seed_from_u64(settings.seed);
        // Each finished block: the new text since the last one.
        let mut streamed = String::new();
        let mut stream = |done: BlockDone<'_>| {
            let end = done.end.clamp(prompt_len, prompt_len + settings.gen_length);
            let generated = self.cut_at_eos(&done.tokens[prompt_len..end]);
            if let Ok(text) = self.tokenizer.decode(&generated) {
                if let Some(new) = text.strip_prefix(streamed.as_str()) {
                    on_text(new);
                }
                streamed = text;
            }
        };
        let mut recorder =
            Recorder { stream: &mut stream, observer, trajectory: Trajectory::default() };
        let (tokens, nfe) = match self.pretrained.config.architecture.block_size() {
            Some(block_size) => self.decode_block_causal(
                model,
                block_size,
                prompt,
                settings,
                &mut rng,
                &mut recorder,
            )?,
            None => self.decode_full_attention(model, prompt, settings, &mut rng, &mut recorder)?,
        };
        let trajectory = recorder.trajectory;
        // Blocks may run past the requested length (a block-causal model fills its last block).
        let end = tokens.len().min(prompt_len + settings.gen_length);
        let raw = &tokens[prompt_len..end];
        let tokens = self.cut_at_eos(raw);
        let end_token = raw.get(tokens.len()).map(|&t| t as u32);
        let text = self.tokenizer.decode(&tokens)?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Generated { text, tokens, end_token, nfe, seconds, trajectory })
    }

    /// The masked-diffusion bound on `text`, from `samples` masks at stratified times: for a
    /// full-attention model MDLM's NELBO (Sahoo et al. 2024, eq. 10) under the log-linear
    /// schedule `α(t) = 1 − (1 − ε)t` (with `ε → 0` LLaDA's likelihood bound, Nie et al. 2025,
    /// eq. 6); for a block-causal model BD3LM's block NELBO (Arriola et al. 2025, eq. 8) on the
    /// text's whole blocks (a last partial block is not scored; [`Score::tokens`] says how many
    /// were).
    ///
    /// # Errors
    /// As [`Mdlm::evaluate`] and [`Bd3lm::evaluate`] for a text longer than the context, or
    /// shorter than one block of a block-causal model.
    pub fn score(&self, text: &str, samples: usize, seed: u64) -> Result<Score, GenerateError> {
        let mut ids = self.tokenizer.encode(text)?;
        let vocab_size = self.tokenizer.vocab_size();
        let schedule = LogLinear::default();
        let report = match self.pretrained.config.architecture.block_size() {
            None => {
                let data = SequenceDataset::new(ids.len(), vocab_size, ids)?;
                let mdlm = Mdlm::new(MaskingProcess::new(schedule, self.mask_id), 1e-3)?;
                let subs = Subs { model: &self.pretrained, mask_id: self.mask_id };
                mdlm.evaluate(&subs, &data, 1, samples, seed)?
            }
            Some(block_size) => {
                ids.truncate(ids.len() / block_size * block_size);
                let data = SequenceDataset::new(ids.len(), vocab_size, ids)?;
                let times = TimeSampler::antithetic(1e-3).map_err(DiscreteError::from)?;
                let bd3lm = Bd3lm::new(schedule, self.mask_id, block_size, times)?;
                bd3lm.evaluate(&self.pretrained, &data, 1, samples, seed)?
            }
        };
        let tokens = report.tokens;
        Ok(Score { tokens, nats_per_token: report.nats_per_token })
    }

    /// `tokens`' log-likelihood split over its tokens ([`dlm_discrete::likelihood`]): the
    /// left-to-right chain rule, or the Monte-Carlo masked-diffusion bound of the tokens after a
    /// context (LLaDA's conditional bound); a block-causal model (SDAR) reads each block given
    /// the blocks before it. `top` alternatives per scored position; `seed` draws the bound's
    /// masks. A shifted family (Dream) reads token `i`'s prediction at `i − 1`, so its first
    /// token has none and is not scored.
    ///
    /// # Errors
    /// As [`TokenLikelihoods::score`]: no tokens, a token outside the vocabulary or the mask, a
    /// sequence beyond the context, a context that leaves nothing to score, too few samples.
    pub fn token_likelihoods(
        &self,
        tokens: &[u32],
        split: LikelihoodSplit,
        top: usize,
        seed: u64,
    ) -> Result<TokenLikelihood, GenerateError> {
        /// Sequences per model call: `16 · len · hidden` activations at a time.
        const ROWS_PER_CALL: usize = 16;
        let architecture = self.pretrained.config.architecture;
        let block_size = architecture.block_size();
        let scorer = TokenLikelihoods::new(block_size, ROWS_PER_CALL, top)?;
        // Dream has no prediction for its first token: scoring starts at the second.
        let split = match split {
            _ if !architecture.shifts_logits() => split,
            LikelihoodSplit::Chain { from } => LikelihoodSplit::Chain { from: from.max(1) },
            LikelihoodSplit::Nelbo { context, samples } => {
                LikelihoodSplit::Nelbo { context: context.max(1), samples }
            }
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let likelihood = match block_size {
            None => {
                let subs = Subs { model: &self.pretrained, mask_id: self.mask_id };
                scorer.score(&subs, tokens, split, &mut rng)?
            }
            Some(block_size) => {
                let model = BlockCausal { model: &self.pretrained, block_size };
                let subs = Subs { model: &model, mask_id: self.mask_id };
                scorer.score(&subs, tokens, split, &mut rng)?
            }
        };
        Ok(likelihood)
    }

    /// SDAR's decoding: BD3LM's block sampler, with its exact cache or the prefix recomputed.
    fn decode_block_causal<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        block_size: usize,
        prompt: Tensor<2, Int>,
        settings: &GenerateSettings,
        rng: &mut StdRng,
        stream: &mut dyn Observer,
    ) -> Result<(Vec<i64>, usize), GenerateError> {
        if settings.cfg_scale != 0.0 {
            return Err(GenerateError::Unsupported(
                "classifier-free guidance with a block-causal model is not implemented; use \
                 cfg_scale = 0"
                    .into(),
            ));
        }
        if settings.block_length.is_some_and(|b| b != block_size) {
            return Err(GenerateError::Unsupported(format!(
                "this block-causal model decodes blocks of {block_size}; block_length = {:?} is \
                 not one",
                settings.block_length
            )));
        }
        let prefix = match settings.cache {
            Cache::Exact => Prefix::Cached { window: None },
            Cache::None => Prefix::Recomputed,
            other => {
                return Err(GenerateError::Unsupported(format!(
                    "cache {other:?} needs full attention; this model is block-causal: use \
                     `exact` or `none`"
                )));
            }
        };
        let blocks = BlockSampler::new(self.sampler(settings)?, block_size, self.mask_id)?;
        let prompt_len = prompt.dims()[1];
        // A partial last prompt block is decoded with the first generated tokens.
        let max_blocks = (prompt_len % block_size + settings.gen_length).div_ceil(block_size);
        let out = blocks.generate_observed(
            model,
            (prompt_len > 0).then_some(prompt),
            1,
            max_blocks,
            self.eos_ids.first().copied(),
            prefix,
            rng,
            stream,
        )?;
        Ok((out.tokens.into_data().iter::<i64>().collect(), out.nfe))
    }

    /// LLaDA's, Dream's and Tiny-A2D's decoding: the masked sampler (semi-autoregressive with a
    /// block length), or the Fast-dLLM decoder with its prefix or dual cache.
    fn decode_full_attention<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        prompt: Tensor<2, Int>,
        settings: &GenerateSettings,
        rng: &mut StdRng,
        stream: &mut dyn Observer,
    ) -> Result<(Vec<i64>, usize), GenerateError> {
        let subs = Subs { model, mask_id: self.mask_id };
        // Decoding stops once every row has committed an end-of-text token with nothing masked
        // before it: the text is final there.
        let sampler = self.sampler(settings)?.with_stop_tokens(self.eos_ids.clone());
        let (tokens, nfe) = match settings.cache {
            Cache::None => {
                let state = SamplerState::with_prompt(&subs, prompt, settings.gen_length)?;
                let guided = Guided::for_state(subs, &state, settings.cfg_scale)?;
                let out = sampler.sample_observed(&guided, state, rng, stream)?;
                (out.tokens, out.nfe)
            }
            Cache::Prefix | Cache::Dual if settings.cfg_scale != 0.0 => {
                return Err(GenerateError::Unsupported(
                    "classifier-free guidance with the prefix or dual cache is not implemented; \
                     use cache `none`"
                        .into(),
                ));
            }
            Cache::Prefix | Cache::Dual => {
                let block = settings.block_length.unwrap_or(settings.gen_length);
                let mode = if settings.cache == Cache::Prefix {
                    CacheMode::Prefix
                } else {
                    CacheMode::Dual
                };
                let decoder = BlockwiseDecoder::new(sampler, block)?;
                let out = decoder.decode_observed(
                    &subs,
                    prompt,
                    settings.gen_length,
                    mode,
                    rng,
                    stream,
                )?;
                (out.tokens, out.nfe)
            }
            Cache::Exact => {
                return Err(GenerateError::Unsupported(
                    "the exact cache needs a block-causal model (SDAR); this one has full \
                     attention: use `none`, `prefix` or `dual`"
                        .into(),
                ));
            }
        };
        Ok((tokens.into_data().iter::<i64>().collect(), nfe))
    }

    fn sampler(&self, settings: &GenerateSettings) -> Result<MaskedSampler, GenerateError> {
        let confidence = Confidence::TokenProbability;
        let unmasking = match settings.policy {
            Policy::TopK => Unmasking::TopK { confidence },
            Policy::Threshold => Unmasking::threshold(confidence, settings.threshold)?,
            Policy::Random => Unmasking::Random,
            Policy::Ancestral => {
                Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(LogLinear::default()) }
            }
            Policy::EntropyBound => Unmasking::entropy_bound(settings.gamma)?,
            Policy::SlowFast => {
                let paper = SlowFast::default();
                Unmasking::SlowFast(SlowFast::new(
                    paper.exploration_steps(),
                    paper.span_confidence(),
                    paper.stability_window(),
                    paper.stability_std(),
                    settings.threshold,
                )?)
            }
        };
        let mut sampler = MaskedSampler::new(unmasking, settings.steps)?
            .with_proposal(TokenSampler::new(settings.temperature)?);
        if let Some(threshold) = settings.edit_threshold {
            let paper = TokenEditing::default();
            sampler =
                sampler.with_editing(TokenEditing::new(threshold, paper.max_post_steps())?)?;
        }
        if let Some(stopping) = settings.adaptive_stopping {
            sampler = sampler.with_adaptive_stopping(stopping)?;
        }
        // Semi-autoregressive blocks for the full-attention sampler; the block decoders take the
        // block length themselves.
        let full_attention = self.pretrained.config.architecture.block_size().is_none();
        if let Some(block) = settings.block_length
            && full_attention
            && settings.cache == Cache::None
        {
            sampler = sampler.with_block_length(block)?;
        }
        Ok(sampler)
    }

    /// `ids` up to (not including) the first end-of-text token.
    fn cut_at_eos(&self, ids: &[i64]) -> Vec<u32> {
        ids.iter().map(|&t| t as u32).take_while(|t| !self.eos_ids.contains(t)).collect()
    }
}
