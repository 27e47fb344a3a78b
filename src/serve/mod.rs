//! `dlm serve`: an OpenAI-compatible HTTP server for an imported checkpoint.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | a page that shows the canvas as the model commits and remasks tokens |
//! | `GET /health` | `{"status": "ok"}` |
//! | `GET /v1/models` | the served model |
//! | `POST /v1/completions` | a completion of `prompt` |
//! | `POST /v1/chat/completions` | the assistant's reply to `messages`, through the checkpoint's chat template |
//! | `GET /tokenizer_info`, `POST /tokenize`, `POST /detokenize` | vLLM's tokenizer routes (lm-evaluation-harness tokenises through them) |
//!
//! Requests take OpenAI's fields (`max_tokens`, `temperature`, `seed`, `stop`, `stream`, …) and
//! the sampler's beside them (`policy`, `steps`, `block_length`, `threshold`, `gamma`,
//! `cache`, `cfg_scale`, and `stream_steps` for every step as an event); what a request leaves
//! out comes from the server's defaults. Unknown fields, bad
//! values and requests beyond the model (a prompt longer than its context) get a 400 whose JSON
//! body names the field, and so does a request whose settings may take more model calls than the
//! server allows (`dlm serve --max-calls`, default 4096: a few workers decode every request, so
//! a request of a million ancestral steps would hold one for long); a full queue gets a 503. A panic inside a generation fails that request
//! with a 500 and leaves the server running.
//!
//! # Streaming a diffusion model
//!
//! A diffusion sampler does not produce text left to right: a step commits tokens anywhere in the
//! block being decoded. With `"stream": true` a chunk is sent when text becomes **final**: when a
//! block is done (semi-autoregressive decoding, the block decoders, SDAR), or once at the end
//! when the whole generation is one block. A chunk never revises an earlier one: no decoder of
//! this library changes a finished block. Text is cut at the first end-of-text token and at the
//! first stop string; the last chunk carries `finish_reason` (`stop` when the model committed an
//! end-of-text token or the text met a stop string, `length` otherwise), `usage`, and `dlm`
//! (model calls, tokens per call, seconds), and `data: [DONE]` follows. The response starts with
//! the first event (the first final block, or with `stream_steps` the first step), so errors
//! found when decoding starts are still a 400.
//!
//! # Log-likelihoods
//!
//! With `echo` and `logprobs` a completion returns each token's share of the sequence's
//! log-likelihood ([`crate::generate::Checkpoint::token_likelihoods`]): the masked model's
//! left-to-right chain rule by default (any split of context and continuation a harness picks is
//! then exact for that factorisation), LLaDA's Monte-Carlo bound of the tokens after `nelbo_from`
//! on request.
//!
//! # Scheduling
//!
//! `batch` workers decode requests in arrival order; their plain model calls go through
//! [`Batched`] to one [`Executor`], which stacks the calls pending at once into one forward pass,
//! so requests join and leave the running batch between denoising steps.

mod api;
mod batch;
mod engine;
mod error;
mod stop;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use dlm_core::tokenizer::ChatMessage;
use serde_json::json;
use tokio::sync::mpsc::channel;
use tokio_stream::wrappers::ReceiverStream;

pub use api::{
    ChatChoice, ChatCompletion, Completion, CompletionChoice, CompletionLogprobs, DecodingCost,
    FinishReason, GenerationRequest, LikelihoodRequest, Logprobs, Prompt, PromptInput,
    RequestMessage, ResponseMessage, Stop, Usage,
};
pub use batch::{BatchStats, Batched, Executor};
pub use engine::{Engine, Event, Finished, Request};
pub use error::ApiError;
pub use stop::StopFilter;

/// The routes, on `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/tokenizer_info", get(tokenizer_info))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(engine)
}

/// Serves `engine` on `listener` until Ctrl-C.
///
/// # Errors
/// As [`axum::serve`].
pub async fn serve(listener: tokio::net::TcpListener, engine: Arc<Engine>) -> std::io::Result<()> {
    axum::serve(listener, router(engine))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// The page that shows the canvas denoise (`src/serve/page.html`).
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("page.html"))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn models(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": engine.model_name(), "object": "model", "created": 0, "owned_by": "dlm"}],
    }))
}

async fn completions(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    let run = async {
        let request = parse(&body, &engine)?;
        let input = request.prompt()?;
        let prompt = engine.encode(&input)?;
        let echo = match (request.echo, input) {
            (false, _) => None,
            (true, PromptInput::Text(text)) => Some(text),
            (true, PromptInput::Tokens(ids)) => Some(engine.decode(&ids)?),
        };
        respond(&engine, &request, prompt, Shape::Completion { echo }).await
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn tokenizer_info(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    Json(engine.tokenizer_info())
}

/// The body of `POST /tokenize` (vLLM's).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: String,
    /// This tokenizer adds none; accepted for vLLM's clients.
    #[serde(default)]
    add_special_tokens: bool,
}

/// The body of `POST /detokenize` (vLLM's).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

async fn tokenize(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    let run = || {
        let request: TokenizeRequest = parse_body(&body)?;
        check_model(request.model.as_deref(), &engine)?;
        let _ = request.add_special_tokens;
        let tokens = engine.encode(&PromptInput::Text(request.prompt))?;
        Ok::<_, ApiError>(Json(json!({
            "tokens": tokens,
            "count": tokens.len(),
            "max_model_len": engine.max_seq_len(),
        })))
    };
    run().map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

async fn detokenize(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    let run = || {
        let request: DetokenizeRequest = parse_body(&body)?;
        check_model(request.model.as_deref(), &engine)?;
        let tokens = engine.checked_ids(&request.tokens, "tokens")?;
        Ok::<_, ApiError>(Json(json!({"prompt": engine.decode(tokens)?})))
    };
    run().map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

async fn chat_completions(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    let run = async {
        let request = parse(&body, &engine)?;
        let messages = request
            .messages()?
            .iter()
            .map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() })
            .collect();
        if matches!(request.logprobs, Some(Logprobs::Count(_))) {
            return Err(ApiError::invalid("logprobs", "a chat completion takes true or false"));
        }
        let prompt = engine.encode(&PromptInput::Text(engine.chat_prompt(messages)?))?;
        respond(&engine, &request, prompt, Shape::Chat).await
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The request body, with the field at fault named when it does not parse, and the model name
/// checked.
fn parse(body: &[u8], engine: &Engine) -> Result<GenerationRequest, ApiError> {
    let request: GenerationRequest = parse_body(body)?;
    check_model(request.model.as_deref(), engine)?;
    Ok(request)
}

/// A 404 for a model other than the served one.
fn check_model(model: Option<&str>, engine: &Engine) -> Result<(), ApiError> {
    match model.filter(|&m| m != engine.model_name()) {
        Some(model) => Err(ApiError::not_found(format!(
            "model {model:?}: this server serves {:?}",
            engine.model_name()
        ))),
        None => Ok(()),
    }
}

/// A JSON body, with the field at fault named when it does not parse.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // An unknown field is reported at its parent; its name is in the message.
        let param = unknown_field(&message).map(str::to_string).unwrap_or(path);
        if param == "." { ApiError::rejected(message) } else { ApiError::invalid(param, message) }
    })
}

/// The field named by serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// Which API a response follows.
#[derive(Debug, Clone)]
enum Shape {
    Completion { echo: Option<String> },
    Chat,
}

/// Queues the generation and answers: one JSON body, or server-sent events.
async fn respond(
    engine: &Arc<Engine>,
    request: &GenerationRequest,
    prompt: Vec<u32>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let settings = request.settings(engine.defaults())?;
    let mut stop = StopFilter::new(request.stop_strings()?);
    if request.stream_steps && !request.stream {
        return Err(ApiError::invalid("stream_steps", "needs \"stream\": true"));
    }
    let likelihood = request.likelihood()?;
    let echo = matches!(&shape, Shape::Completion { echo: Some(_) });
    let prompt_ids = prompt.clone();
    let steps = request.stream_steps;
    let mut events = engine.submit(Request { prompt, settings, steps, likelihood })?;
    let reply = Reply {
        id: engine.next_id(),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        model: engine.model_name().to_string(),
        shape,
    };
    if !request.stream {
        let mut text = String::new();
        let finished = loop {
            match events.recv().await {
                Some(Event::Text(piece)) => text.push_str(&stop.push(&piece)),
                Some(Event::Step(_)) => {}
                Some(Event::Done(result)) => break result?,
                None => return Err(ApiError::internal("the engine stopped")),
            }
        };
        text.push_str(&stop.finish());
        let logprobs = completion_logprobs(engine, &finished, &prompt_ids, echo)?;
        return Ok(Json(reply.whole(text, &finished, stop.stopped(), logprobs)).into_response());
    }
    // Wait for the first event, so that a request the sampler refuses is still a 400.
    let first = events.recv().await.ok_or_else(|| ApiError::internal("the engine stopped"))?;
    let first = match first {
        Event::Done(Err(err)) => return Err(err),
        event => event,
    };
    let (sender, receiver) = channel::<Result<SseEvent, Infallible>>(16);
    tokio::spawn(async move {
        let send = |value: serde_json::Value| {
            let sender = sender.clone();
            async move { sender.send(Ok(SseEvent::default().data(value.to_string()))).await.is_ok() }
        };
        if let Some(opening) = reply.opening()
            && !send(opening).await
        {
            return;
        }
        let mut pending = Some(first);
        loop {
            let current = match pending.take() {
                Some(event) => event,
                None => match events.recv().await {
                    Some(event) => event,
                    None => break,
                },
            };
            match current {
                Event::Step(step) => {
                    let event = SseEvent::default().event("step").data(step.to_string());
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Event::Text(piece) => {
                    let delta = stop.push(&piece);
                    if !delta.is_empty() && !send(reply.chunk(delta)).await {
                        return;
                    }
                }
                Event::Done(Ok(finished)) => {
                    let rest = stop.finish();
                    if !rest.is_empty() && !send(reply.chunk(rest)).await {
                        return;
                    }
                    if !send(reply.last(&finished, stop.stopped())).await {
                        return;
                    }
                    break;
                }
                Event::Done(Err(err)) => {
                    if !send(err.body()).await {
                        return;
                    }
                    break;
                }
            }
        }
        let _ = sender.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Ok(Sse::new(ReceiverStream::new(receiver)).into_response())
}

/// The scored tokens of a finished request as OpenAI's `logprobs`: the prompt's and the
/// generated ones with `echo`, the generated ones otherwise.
///
/// # Errors
/// [`ApiError`] (400) for ids the tokenizer cannot decode.
fn completion_logprobs(
    engine: &Engine,
    finished: &Finished,
    prompt: &[u32],
    echo: bool,
) -> Result<Option<CompletionLogprobs>, ApiError> {
    let Some(likelihood) = &finished.likelihood else { return Ok(None) };
    let ids = finished.returned_ids(prompt);
    let start = if echo { 0 } else { prompt.len() };
    let mut logprobs =
        CompletionLogprobs { tokens: vec![], token_logprobs: vec![], top_logprobs: vec![] };
    for i in start..ids.len() {
        logprobs.tokens.push(engine.decode(&ids[i..=i])?);
        // The bound covers the prompt only: the generated tokens are not scored.
        let value = likelihood.logprobs.get(i).copied().flatten();
        logprobs.token_logprobs.push(value);
        let top = match value {
            None => None,
            Some(_) => {
                let mut top = std::collections::BTreeMap::new();
                // Best first: of two ids with the same text, the better one's value is kept.
                for &(id, value) in &likelihood.top[i] {
                    top.entry(engine.decode(&[id])?).or_insert(value);
                }
                Some(top)
            }
        };
        logprobs.top_logprobs.push(top);
    }
    Ok(Some(logprobs))
}

/// The fields every chunk and body of one response share.
#[derive(Debug, Clone)]
struct Reply {
    id: u64,
    created: u64,
    model: String,
    shape: Shape,
}

impl Reply {
    fn finish_reason(finished: &Finished, stopped: bool) -> FinishReason {
        if stopped || finished.ended_by_the_model() {
            FinishReason::Stop
        } else {
            FinishReason::Length
        }
    }

    fn usage(finished: &Finished) -> Usage {
        let completion_tokens = finished.generated.tokens.len();
        Usage {
            prompt_tokens: finished.prompt_tokens,
            completion_tokens,
            total_tokens: finished.prompt_tokens + completion_tokens,
        }
    }

    fn cost(finished: &Finished) -> DecodingCost {
        DecodingCost {
            nfe: finished.generated.nfe,
            tokens_per_forward: finished.generated.tokens_per_forward(),
            seconds: finished.generated.seconds,
            scored_rows: finished.likelihood.as_ref().map(|l| l.rows),
        }
    }

    /// A whole, non-streamed response.
    fn whole(
        &self,
        text: String,
        finished: &Finished,
        stopped: bool,
        logprobs: Option<CompletionLogprobs>,
    ) -> serde_json::Value {
        let finish = Some(Self::finish_reason(finished, stopped));
        let (usage, cost) = (Some(Self::usage(finished)), Some(Self::cost(finished)));
        match &self.shape {
            Shape::Completion { echo } => {
                let text = match echo {
                    Some(prompt) => format!("{prompt}{text}"),
                    None => text,
                };
                let mut body = self.completion(text, finish, usage, cost);
                body["choices"][0]["logprobs"] = json!(logprobs);
                body
            }
            Shape::Chat => {
                let message = ResponseMessage { role: Some("assistant"), content: Some(text) };
                self.chat("chat.completion", Some(message), None, finish, usage, cost)
            }
        }
    }

    /// The first event of a stream: chat's role announcement, or completions' echoed prompt.
    fn opening(&self) -> Option<serde_json::Value> {
        match &self.shape {
            Shape::Completion { echo } => {
                echo.clone().map(|prompt| self.completion(prompt, None, None, None))
            }
            Shape::Chat => {
                let delta =
                    ResponseMessage { role: Some("assistant"), content: Some(String::new()) };
                Some(self.chat("chat.completion.chunk", None, Some(delta), None, None, None))
            }
        }
    }

    /// A chunk of final text.
    fn chunk(&self, text: String) -> serde_json::Value {
        match &self.shape {
            Shape::Completion { .. } => self.completion(text, None, None, None),
            Shape::Chat => {
                let delta = ResponseMessage { role: None, content: Some(text) };
                self.chat("chat.completion.chunk", None, Some(delta), None, None, None)
            }
        }
    }

    /// The last chunk: no text, the finish reason, usage and cost.
    fn last(&self, finished: &Finished, stopped: bool) -> serde_json::Value {
        let finish = Some(Self::finish_reason(finished, stopped));
        let (usage, cost) = (Some(Self::usage(finished)), Some(Self::cost(finished)));
        match &self.shape {
            Shape::Completion { .. } => self.completion(String::new(), finish, usage, cost),
            Shape::Chat => {
                let delta = ResponseMessage::default();
                self.chat("chat.completion.chunk", None, Some(delta), finish, usage, cost)
            }
        }
    }

    fn completion(
        &self,
        text: String,
        finish_reason: Option<FinishReason>,
        usage: Option<Usage>,
        dlm: Option<DecodingCost>,
    ) -> serde_json::Value {
        let choice = CompletionChoice { text, index: 0, logprobs: None, finish_reason };
        json!(Completion {
            id: format!("cmpl-{}", self.id),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![choice],
            usage,
            dlm,
        })
    }

    fn chat(
        &self,
        object: &'static str,
        message: Option<ResponseMessage>,
        delta: Option<ResponseMessage>,
        finish_reason: Option<FinishReason>,
        usage: Option<Usage>,
        dlm: Option<DecodingCost>,
    ) -> serde_json::Value {
        let choice = ChatChoice { index: 0, message, delta, finish_reason };
        json!(ChatCompletion {
            id: format!("chatcmpl-{}", self.id),
            object,
            created: self.created,
            model: self.model.clone(),
            choices: vec![choice],
            usage,
            dlm,
        })
    }
}
