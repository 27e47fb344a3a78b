//! The engine: one thread owns the model and decodes the queued requests one after another.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread;

use dlm_core::tokenizer::{ChatMessage, ChatTemplate};
use dlm_discrete::sampler::{Commit, EachStep, TrajectoryStep};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::error::ApiError;
use crate::generate::{Checkpoint, GenerateSettings, Generated, Policy};

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
}

impl Finished {
    /// Whether the model ended the text (an end-of-text token) before `max_tokens`.
    pub fn ended_by_the_model(&self) -> bool {
        self.generated.tokens.len() < self.max_tokens
    }
}

struct Job {
    prompt: String,
    settings: GenerateSettings,
    steps: bool,
    events: UnboundedSender<Event>,
}

/// The model behind the server: a bounded queue of requests in front of one decoding thread.
#[derive(Debug)]
pub struct Engine {
    jobs: SyncSender<Job>,
    model_name: String,
    defaults: GenerateSettings,
    chat_template: Option<ChatTemplate>,
    queue: usize,
    requests: AtomicU64,
    block_size: Option<usize>,
    max_calls: usize,
}

impl Engine {
    /// Starts the decoding thread for `checkpoint`, served as `model_name`, with `defaults` for
    /// the settings a request leaves out and room for `queue` waiting requests (beyond the one
    /// being decoded).
    ///
    /// # Errors
    /// [`ApiError`] (500) if the thread cannot be started.
    pub fn start(
        checkpoint: Checkpoint,
        model_name: String,
        defaults: GenerateSettings,
        queue: usize,
    ) -> Result<Self, ApiError> {
        let chat_template = checkpoint.chat_template.clone();
        let block_size = checkpoint.pretrained.config.architecture.block_size();
        let (jobs, waiting) = sync_channel::<Job>(queue);
        thread::Builder::new()
            .name("dlm-engine".into())
            .spawn(move || {
                for job in waiting {
                    // The client left while the request waited.
                    if job.events.is_closed() {
                        continue;
                    }
                    let result = catch_unwind(AssertUnwindSafe(|| decode(&checkpoint, &job)))
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
            })
            .map_err(|err| ApiError::internal(format!("cannot start the engine: {err}")))?;
        Ok(Self {
            jobs,
            model_name,
            defaults,
            chat_template,
            queue,
            requests: AtomicU64::new(0),
            block_size,
            max_calls: Self::DEFAULT_MAX_CALLS,
        })
    }

    /// The default bound on one request's model calls ([`Engine::with_max_calls`]).
    pub const DEFAULT_MAX_CALLS: usize = 4096;

    /// Refuses requests whose settings may take more than `max_calls` model calls
    /// ([`GenerateSettings::max_model_calls`]): one thread decodes every request in turn, so one
    /// request of a million ancestral steps would hold up all the others.
    pub fn with_max_calls(self, max_calls: usize) -> Self {
        Self { max_calls, ..self }
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

    /// Queues a generation; its events arrive on the returned channel, with every step when
    /// `steps` is set.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `steps` (a time grid) or `max_tokens` (the other policies) when
    /// the settings may take more model calls than this server allows; (503) when the queue is
    /// full or the engine has stopped.
    pub fn submit(
        &self,
        prompt: String,
        settings: GenerateSettings,
        steps: bool,
    ) -> Result<UnboundedReceiver<Event>, ApiError> {
        let calls = settings.max_model_calls(self.block_size);
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
        match self.jobs.try_send(Job { prompt, settings, steps, events }) {
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

/// Runs one job, sending text as blocks become final.
fn decode(checkpoint: &Checkpoint, job: &Job) -> Result<Finished, ApiError> {
    let rejected = |err: crate::generate::GenerateError| ApiError::rejected(err.to_string());
    let prompt_tokens =
        checkpoint.tokenizer.encode(&job.prompt).map_err(|err| rejected(err.into()))?.len();
    let mut on_text = |text: &str| {
        let _ = job.events.send(Event::Text(text.to_string()));
    };
    let mut on_step = EachStep(|step: &TrajectoryStep| {
        if job.steps {
            let _ = job.events.send(Event::Step(step_view(checkpoint, step, prompt_tokens)));
        }
    });
    let generated = checkpoint
        .generate_stepwise(&job.prompt, &job.settings, &mut on_text, &mut on_step)
        .map_err(rejected)?;
    Ok(Finished { generated, prompt_tokens, max_tokens: job.settings.gen_length })
}
