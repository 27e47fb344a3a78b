//! The engine: a bounded queue of requests in front of a pool of decoding workers, whose model
//! calls are stacked into one batch per step ([`super::batch`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use dlm_core::tokenizer::{ChatMessage, ChatTemplate, HfTokenizer};
use dlm_discrete::DiscreteError;
use dlm_discrete::likelihood::TokenLikelihood;
use dlm_discrete::sampler::{Commit, EachStep, TrajectoryStep};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::api::{LikelihoodRequest, PromptInput};
use super::batch::{BatchStats, Batched, Executor};
use super::error::ApiError;
use crate::generate::{Checkpoint, GenerateError, GenerateSettings, Generated, Policy};

/// What the engine reports about one request, in order: pieces of text as blocks become final,
/// then the end.
#[derive(Debug)]
pub enum Event {
    /// Text that no later step can change.
    Text(String),
    /// A decoding step, for a live view of the canvas (asked for with `stream_steps`): positions
    /// counted from the start of the generation, tokens as text.
    Step(serde_json::Value),
    /// The generation's end: its result, or why it failed.
    Done(Result<Finished, ApiError>),
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Text, ids, model calls, time.
    pub generated: Generated,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// The tokens that were asked for.
    pub max_tokens: usize,
    /// The returned tokens scored, when `logprobs` asked for it
    /// ([`LikelihoodRequest::split`]).
    pub likelihood: Option<TokenLikelihood>,
}

impl Finished {
    /// The prompt, the generated tokens and the end-of-text token that ended them: the tokens
    /// `logprobs` covers (an evaluation harness reads all but the last as prompt).
    pub fn returned_ids(&self, prompt: &[u32]) -> Vec<u32> {
        let end = self.generated.end_token.as_slice();
        [prompt, &self.generated.tokens, end].concat()
    }
}

impl Finished {
    /// Whether the model ended the text (an end-of-text token) before `max_tokens`.
    pub fn ended_by_the_model(&self) -> bool {
        self.generated.tokens.len() < self.max_tokens
    }
}

struct Job {
    prompt: Vec<u32>,
    settings: GenerateSettings,
    steps: bool,
    likelihood: Option<LikelihoodRequest>,
    events: UnboundedSender<Event>,
}

/// One request for the engine: a tokenised prompt, the settings, and what to report.
#[derive(Debug, Clone)]
pub struct Request {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// The decoding settings.
    pub settings: GenerateSettings,
    /// Whether every step is sent as an [`Event::Step`].
    pub steps: bool,
    /// What to score after the generation (`logprobs`).
    pub likelihood: Option<LikelihoodRequest>,
}

/// The model behind the server: a bounded queue of requests in front of `batch` decoding
/// workers, whose steps run as one batch.
#[derive(Debug)]
pub struct Engine {
    jobs: SyncSender<Job>,
    executor: Executor,
    batch: usize,
    model_name: String,
    defaults: GenerateSettings,
    chat_template: Option<ChatTemplate>,
    tokenizer: HfTokenizer,
    eos_id: Option<u32>,
    max_seq_len: usize,
    queue: usize,
    requests: AtomicU64,
    block_size: Option<usize>,
    max_calls: usize,
}

impl Engine {
    /// Starts `batch` decoding workers for `checkpoint` (at least one), served as `model_name`,
    /// with `defaults` for the settings a request leaves out and room for `queue` waiting
    /// requests beyond the `batch` being decoded.
    ///
    /// # Errors
    /// [`ApiError`] (500) if a thread cannot be started.
    pub fn start(
        checkpoint: Checkpoint,
        model_name: String,
        defaults: GenerateSettings,
        queue: usize,
        batch: usize,
    ) -> Result<Self, ApiError> {
        let batch = batch.max(1);
        let chat_template = checkpoint.chat_template.clone();
        let tokenizer = checkpoint.tokenizer.clone();
        let eos_id = checkpoint.eos_ids.first().copied();
        let max_seq_len = dlm_core::backbone::TokenModel::max_seq_len(&checkpoint.pretrained);
        let block_size = checkpoint.pretrained.config.architecture.block_size();
        let (jobs, waiting) = sync_channel::<Job>(queue);
        let cannot_start =
            |err: std::io::Error| ApiError::internal(format!("cannot start the engine: {err}"));
        let checkpoint = Arc::new(checkpoint);
        let executor = Executor::start(checkpoint.clone(), |c: &Checkpoint| &c.pretrained)
            .map_err(cannot_start)?;
        let waiting = Arc::new(Mutex::new(waiting));
        for worker in 0..batch {
            let (checkpoint, executor, waiting) =
                (checkpoint.clone(), executor.clone(), waiting.clone());
            thread::Builder::new()
                .name(format!("dlm-worker-{worker}"))
                .spawn(move || work(&checkpoint, &executor, &waiting))
                .map_err(cannot_start)?;
        }
        Ok(Self {
            jobs,
            executor,
            batch,
            model_name,
            defaults,
            chat_template,
            tokenizer,
            eos_id,
            max_seq_len,
            queue,
            requests: AtomicU64::new(0),
            block_size,
            max_calls: Self::DEFAULT_MAX_CALLS,
        })
    }

    /// The default bound on one request's model calls ([`Engine::with_max_calls`]).
    pub const DEFAULT_MAX_CALLS: usize = 4096;

    /// Refuses requests whose settings may take more than `max_calls` model calls
    /// ([`GenerateSettings::max_model_calls`]): a few workers decode every request, so one
    /// request of a million ancestral steps would hold a worker, and the batch, for long.
    pub fn with_max_calls(self, max_calls: usize) -> Self {
        Self { max_calls, ..self }
    }

    /// What the batch executor has run: forward passes, and the callers' calls and rows they
    /// stacked.
    pub fn batch_stats(&self) -> &BatchStats {
        self.executor.stats()
    }

    /// The number of decoding workers (requests decoded at once).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The served model's name.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// The settings a request leaves out.
    pub fn defaults(&self) -> &GenerateSettings {
        &self.defaults
    }

    /// A new request id.
    pub(crate) fn next_id(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    /// The prompt's token ids: `text` tokenised, or the ids checked against the vocabulary.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `prompt` for text the tokenizer refuses or an id outside the
    /// vocabulary.
    pub fn encode(&self, prompt: &PromptInput) -> Result<Vec<u32>, ApiError> {
        match prompt {
            PromptInput::Text(text) => self
                .tokenizer
                .encode(text)
                .map_err(|err| ApiError::invalid("prompt", err.to_string())),
            PromptInput::Tokens(ids) => self.checked_ids(ids, "prompt").map(<[u32]>::to_vec),
        }
    }

    /// `ids` if each is in the vocabulary.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `field` for an id outside it.
    pub fn checked_ids<'a>(&self, ids: &'a [u32], field: &str) -> Result<&'a [u32], ApiError> {
        let vocab_size = self.tokenizer.vocab_size();
        match ids.iter().position(|&id| id as usize >= vocab_size) {
            Some(i) => Err(ApiError::invalid(
                field,
                format!("token {} at {i} is outside the vocabulary of {vocab_size}", ids[i]),
            )),
            None => Ok(ids),
        }
    }

    /// `ids` as text.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `tokens` for ids the tokenizer cannot decode.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ApiError> {
        self.tokenizer.decode(ids).map_err(|err| ApiError::invalid("tokens", err.to_string()))
    }

    /// What a client needs to tokenise as the server does (vLLM's `/tokenizer_info`, which
    /// lm-evaluation-harness reads): the end-of-text token, the context length, the chat
    /// template's source.
    pub fn tokenizer_info(&self) -> serde_json::Value {
        let eos = self.eos_id.and_then(|id| self.tokenizer.id_to_token(id));
        json!({
            "eos_token": eos,
            "bos_token": null,
            "pad_token": null,
            "model_max_length": self.max_seq_len,
            "vocab_size": self.tokenizer.vocab_size(),
            "chat_template": self.chat_template.as_ref().map(ChatTemplate::source),
        })
    }

    /// The longest sequence the model reads.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// Queues a generation; its events arrive on the returned channel, with every step when
    /// `request.steps` is set.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `steps` (a time grid) or `max_tokens` (the other policies) when
    /// the settings may take more model calls than this server allows; (503) when the queue is
    /// full or the engine has stopped.
    pub fn submit(&self, request: Request) -> Result<UnboundedReceiver<Event>, ApiError> {
        let Request { prompt, settings, steps, likelihood } = request;
        if let Some((context, _)) = likelihood.and_then(|l| l.nelbo)
            && context >= prompt.len()
        {
            return Err(ApiError::invalid(
                "nelbo_from",
                format!("nelbo_from = {context}: below the prompt's {} tokens", prompt.len()),
            ));
        }
        // Scoring reads its sequences 16 to a call.
        let scoring = likelihood
            .map_or(0, |l| l.rows(prompt.len(), settings.gen_length, self.block_size).div_ceil(16));
        if scoring > self.max_calls {
            return Err(ApiError::invalid(
                "logprobs",
                format!(
                    "scoring may take {scoring} model calls; this server allows {} per request",
                    self.max_calls
                ),
            ));
        }
        let calls = settings.max_model_calls(self.block_size) + scoring;
        if calls > self.max_calls {
            // A time grid's calls grow with its steps; the other policies' with the length.
            let field = match settings.policy {
                Policy::Ancestral => "steps",
                _ => "max_tokens",
            };
            return Err(ApiError::invalid(
                field,
                format!(
                    "policy {:?} with steps = {} and max_tokens = {} may take {calls} model \
                     calls; this server allows {} per request",
                    settings.policy, settings.steps, settings.gen_length, self.max_calls
                ),
            ));
        }
        let (events, receiver) = unbounded_channel();
        match self.jobs.try_send(Job { prompt, settings, steps, likelihood, events }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(ApiError::overloaded(format!(
                "the queue is full ({} requests wait); retry later",
                self.queue
            ))),
            Err(TrySendError::Disconnected(_)) => {
                Err(ApiError::overloaded("the engine has stopped"))
            }
        }
    }

    /// `messages` as the checkpoint's chat template renders them, the assistant's turn opened.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `messages` for a checkpoint without a template or a
    /// conversation the template refuses.
    pub fn chat_prompt(&self, messages: Vec<ChatMessage>) -> Result<String, ApiError> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "messages",
                "this checkpoint has no chat template (a Base model?): use /v1/completions",
            )
        })?;
        template
            .render(&messages, true)
            .map_err(|err| ApiError::invalid("messages", err.to_string()))
    }
}

/// A step of the one row a request decodes, for the canvas: generated positions only, counted
/// from the start of the generation, each token with its text.
fn step_view(
    checkpoint: &Checkpoint,
    step: &TrajectoryStep,
    prompt_len: usize,
) -> serde_json::Value {
    let row = step.rows.first().cloned().unwrap_or_default();
    let view = |commits: &[Commit]| -> Vec<serde_json::Value> {
        commits
            .iter()
            .filter(|c| c.position >= prompt_len)
            .map(|c| {
                let text = u32::try_from(c.token)
                    .ok()
                    .and_then(|id| checkpoint.tokenizer.decode(&[id]).ok())
                    .unwrap_or_default();
                json!({"position": c.position - prompt_len, "text": text, "confidence": c.confidence})
            })
            .collect()
    };
    let remasked: Vec<usize> =
        row.remasked.iter().filter(|&&p| p >= prompt_len).map(|p| p - prompt_len).collect();
    json!({
        "kind": step.kind,
        "nfe": step.nfe,
        "committed": view(&row.committed),
        "remasked": remasked,
        "edited": view(&row.edited),
    })
}

/// A worker: takes the next waiting job, decodes it through the executor, reports, repeats.
fn work(checkpoint: &Checkpoint, executor: &Executor, waiting: &Mutex<Receiver<Job>>) {
    loop {
        // One idle worker waits on the queue at a time; the lock is released before decoding.
        let job = match waiting.lock() {
            Ok(waiting) => waiting.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // The client left while the request waited.
        if job.events.is_closed() {
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| decode(checkpoint, executor, &job)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Err(ApiError::internal(format!("the generation failed: {what}")))
            });
        let _ = job.events.send(Event::Done(result));
    }
}

/// Runs one job, sending text as blocks become final, then scores it if asked.
fn decode(checkpoint: &Checkpoint, executor: &Executor, job: &Job) -> Result<Finished, ApiError> {
    let rejected = |err: GenerateError| ApiError::rejected(err.to_string());
    let prompt_tokens = job.prompt.len();
    let mut on_text = |text: &str| {
        let _ = job.events.send(Event::Text(text.to_string()));
    };
    let mut on_step = EachStep(|step: &TrajectoryStep| {
        if job.steps {
            let _ = job.events.send(Event::Step(step_view(checkpoint, step, prompt_tokens)));
        }
    });
    let model = Batched { model: &checkpoint.pretrained, executor };
    let generated = checkpoint
        .generate_through(&model, &job.prompt, &job.settings, &mut on_text, &mut on_step)
        .map_err(rejected)?;
    let mut finished = Finished {
        generated,
        prompt_tokens,
        max_tokens: job.settings.gen_length,
        likelihood: None,
    };
    if let Some(request) = job.likelihood {
        let (split, tokens) = request.split(&job.prompt, &finished.returned_ids(&job.prompt));
        let scored = checkpoint.token_likelihoods(&tokens, split, request.top, job.settings.seed);
        finished.likelihood = Some(scored.map_err(|err| {
            let field = match &err {
                GenerateError::Discrete(DiscreteError::Invalid(invalid)) => match invalid.name {
                    "context" => "nelbo_from",
                    "samples" => "nelbo_samples",
                    _ => "prompt",
                },
                _ => "logprobs",
            };
            ApiError::invalid(field, err.to_string())
        })?);
    }
    Ok(finished)
}
