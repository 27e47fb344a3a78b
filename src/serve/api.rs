//! The request and response bodies of the OpenAI-compatible API, and how a request becomes
//! [`GenerateSettings`].

use serde::{Deserialize, Serialize};

use dlm_discrete::likelihood::LikelihoodSplit;

use super::error::ApiError;
use crate::generate::{Cache, GenerateSettings, Policy};

/// One prompt, as text or token ids, or a list holding one (the server decodes one prompt per
/// request).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A prompt.
    One(String),
    /// Prompts; exactly one is accepted.
    Many(Vec<String>),
    /// A prompt's token ids (what evaluation harnesses send).
    Tokens(Vec<u32>),
    /// Prompts as token ids; exactly one is accepted.
    ManyTokens(Vec<Vec<u32>>),
}

/// A request's prompt: text, or token ids of the served tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// Text, tokenised by the server.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// What a request asks to be scored ([`crate::generate::Checkpoint::token_likelihoods`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LikelihoodRequest {
    /// Alternatives per position (`logprobs`, at most 5).
    pub top: usize,
    /// Whether the prompt's tokens are returned (and scored) too (`echo`).
    pub echo: bool,
    /// The bound of the prompt's tokens from `context` on, with `samples` masks per block
    /// (`nelbo_from`, `nelbo_samples`); the chain rule when `None`.
    pub nelbo: Option<(usize, usize)>,
}

impl LikelihoodRequest {
    /// The split of the scored sequence and the sequence itself: the chain rule over the prompt,
    /// the generated tokens and the end-of-text token that ended them (from the first returned
    /// position), or the bound over the prompt alone (a generated token after it would be
    /// conditioned on).
    pub fn split(&self, prompt: &[u32], returned: &[u32]) -> (LikelihoodSplit, Vec<u32>) {
        match self.nelbo {
            Some((context, samples)) => {
                (LikelihoodSplit::Nelbo { context, samples }, prompt.to_vec())
            }
            None => {
                let from = if self.echo { 0 } else { prompt.len() };
                (LikelihoodSplit::Chain { from }, returned.to_vec())
            }
        }
    }

    /// Sequences the scoring reads at most, for a prompt of `prompt` tokens and `max_tokens`
    /// more (the chain: one per returned token; the bound: `samples` per block).
    pub fn rows(&self, prompt: usize, max_tokens: usize, block_size: Option<usize>) -> usize {
        match self.nelbo {
            Some((_, samples)) => samples * block_size.map_or(1, |b| prompt.div_ceil(b).max(1)),
            None if self.echo => prompt + max_tokens + 1,
            None => max_tokens + 1,
        }
    }
}

/// One stop string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Up to four stop strings (OpenAI's limit).
    Many(Vec<String>),
}

/// Whether log-probabilities were asked for: a count (completions) or a flag (chat).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Logprobs {
    /// Top candidates per token (completions).
    Count(usize),
    /// Yes or no (chat).
    Flag(bool),
}

/// The body of `POST /v1/completions` and `POST /v1/chat/completions`: OpenAI's fields, and
/// dlm's sampler settings beside them (absent ones take the server's defaults, `dlm serve
/// --config`). Unknown fields are errors naming the field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// The model name (checked against the served one when given).
    pub model: Option<String>,
    /// The prompt (completions).
    pub prompt: Option<Prompt>,
    /// The conversation (chat).
    pub messages: Option<Vec<RequestMessage>>,
    /// Tokens to generate.
    pub max_tokens: Option<usize>,
    /// Tokens to generate (chat's newer name; wins over `max_tokens`).
    pub max_completion_tokens: Option<usize>,
    /// Proposal temperature (0: greedy).
    pub temperature: Option<f64>,
    /// Nucleus mass; only 1 (no truncation) is served.
    pub top_p: Option<f64>,
    /// The seed of every draw.
    pub seed: Option<u64>,
    /// Completions per prompt; only 1 is served.
    pub n: Option<usize>,
    /// Send text as blocks become final (server-sent events).
    #[serde(default)]
    pub stream: bool,
    /// Also send every decoding step as an event named `step` (dlm's; needs `stream`).
    #[serde(default)]
    pub stream_steps: bool,
    /// Return the prompt in front of the completion (completions).
    #[serde(default)]
    pub echo: bool,
    /// Log-probabilities of the returned tokens, with this many alternatives per position
    /// (completions, at most 5); each token's share of the sequence's log-likelihood
    /// ([`crate::generate::Checkpoint::token_likelihoods`]).
    pub logprobs: Option<Logprobs>,
    /// With `echo` and `logprobs`: score the tokens from this position of the prompt on by the
    /// Monte-Carlo masked-diffusion bound given the ones before (dlm's; the chain rule otherwise).
    pub nelbo_from: Option<usize>,
    /// The bound's masks per block (dlm's; default 32, at most 256).
    pub nelbo_samples: Option<usize>,
    /// Text at which the completion ends (not included).
    pub stop: Option<Stop>,
    /// The caller's id (accepted, unused).
    pub user: Option<String>,
    /// The unmasking rule.
    pub policy: Option<Policy>,
    /// Steps per block.
    pub steps: Option<usize>,
    /// Semi-autoregressive block length.
    pub block_length: Option<usize>,
    /// Confidence threshold of the threshold rule.
    pub threshold: Option<f64>,
    /// The entropy bound `γ`.
    pub gamma: Option<f64>,
    /// The cache.
    pub cache: Option<Cache>,
    /// Classifier-free guidance scale (LLaDA's `cfg_scale`).
    pub cfg_scale: Option<f64>,
    /// Token editing above this probability (LLaDA 2.1).
    pub edit_threshold: Option<f64>,
}

/// A chat message of a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// The author's name (accepted, unused).
    pub name: Option<String>,
}

impl GenerationRequest {
    /// The settings of this request: the server's `defaults`, overridden field by field.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `n`, `top_p`, `max_tokens`, `temperature`, `logprobs` or
    /// `stop` for values this server does not serve; the sampler's own checks run when the
    /// generation starts.
    pub(crate) fn settings(
        &self,
        defaults: &GenerateSettings,
    ) -> Result<GenerateSettings, ApiError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::invalid("n", format!("n = {n}: one completion per request")));
        }
        if let Some(top_p) = self.top_p.filter(|&p| p != 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("top_p = {top_p}: only 1 (no nucleus truncation) is served"),
            ));
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        let name = if self.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        if max_tokens == Some(0) {
            return Err(ApiError::invalid(name, format!("{name} = 0: at least 1")));
        }
        if let Some(t) = self.temperature.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(ApiError::invalid(
                "temperature",
                format!("temperature = {t}: a value >= 0"),
            ));
        }
        self.stop_strings()?;
        Ok(GenerateSettings {
            policy: self.policy.unwrap_or(defaults.policy),
            steps: self.steps.unwrap_or(defaults.steps),
            block_length: self.block_length.or(defaults.block_length),
            threshold: self.threshold.unwrap_or(defaults.threshold),
            gamma: self.gamma.unwrap_or(defaults.gamma),
            cache: self.cache.unwrap_or(defaults.cache),
            temperature: self.temperature.unwrap_or(defaults.temperature),
            seed: self.seed.unwrap_or(defaults.seed),
            gen_length: max_tokens.unwrap_or(defaults.gen_length),
            cfg_scale: self.cfg_scale.unwrap_or(defaults.cfg_scale),
            edit_threshold: self.edit_threshold.or(defaults.edit_threshold),
            adaptive_stopping: defaults.adaptive_stopping,
        })
    }

    /// What to score, from `logprobs`, `nelbo_from` and `nelbo_samples`: `None` when no
    /// log-probabilities are asked for.
    ///
    /// # Errors
    /// [`ApiError`] (400) naming `logprobs` for more than 5 alternatives, for chat (`true`), or
    /// with `stream` or `stop` (the tokens scored are the tokens returned, and a stream or a cut
    /// text would part them); `nelbo_from` without `echo` and `logprobs`; `nelbo_samples` outside
    /// `1..=256` or without `nelbo_from`.
    pub(crate) fn likelihood(&self) -> Result<Option<LikelihoodRequest>, ApiError> {
        const MAX_TOP: usize = 5;
        const MAX_SAMPLES: usize = 256;
        let top = match self.logprobs {
            None | Some(Logprobs::Flag(false)) => None,
            Some(Logprobs::Flag(true)) => {
                return Err(ApiError::invalid(
                    "logprobs",
                    "a number of alternatives per token (0 to 5); log-probabilities of a chat \
                     reply are not served",
                ));
            }
            Some(Logprobs::Count(k)) if k > MAX_TOP => {
                return Err(ApiError::invalid(
                    "logprobs",
                    format!("logprobs = {k}: at most {MAX_TOP} alternatives per token"),
                ));
            }
            Some(Logprobs::Count(k)) => Some(k),
        };
        if self.nelbo_samples.is_some() && self.nelbo_from.is_none() {
            return Err(ApiError::invalid("nelbo_samples", "needs nelbo_from"));
        }
        let Some(top) = top else {
            if self.nelbo_from.is_some() {
                return Err(ApiError::invalid("nelbo_from", "needs logprobs and echo"));
            }
            return Ok(None);
        };
        if self.stream {
            return Err(ApiError::invalid("logprobs", "not served with stream"));
        }
        if self.stop.is_some() {
            return Err(ApiError::invalid(
                "logprobs",
                "not served with stop strings: the tokens scored are the tokens returned",
            ));
        }
        let nelbo = match self.nelbo_from {
            None => None,
            Some(_) if !self.echo => {
                return Err(ApiError::invalid(
                    "nelbo_from",
                    "needs echo: it scores the prompt's tokens",
                ));
            }
            Some(context) => {
                let samples = self.nelbo_samples.unwrap_or(32);
                if !(1..=MAX_SAMPLES).contains(&samples) {
                    return Err(ApiError::invalid(
                        "nelbo_samples",
                        format!("nelbo_samples = {samples}: a value in 1..={MAX_SAMPLES}"),
                    ));
                }
                Some((context, samples))
            }
        };
        Ok(Some(LikelihoodRequest { top, echo: self.echo, nelbo }))
    }

    /// The stop strings, checked: at most four, none empty.
    ///
    /// # Errors
    /// [`ApiError`] naming `stop`.
    pub(crate) fn stop_strings(&self) -> Result<Vec<String>, ApiError> {
        let stops = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop.clone()],
            Some(Stop::Many(stops)) => stops.clone(),
        };
        if stops.len() > 4 || stops.iter().any(String::is_empty) {
            return Err(ApiError::invalid("stop", "at most 4 stop strings, none empty"));
        }
        Ok(stops)
    }

    /// The one prompt of a completion request.
    ///
    /// # Errors
    /// [`ApiError`] naming `prompt` when it is missing or a list of other than one prompt,
    /// `messages` when present.
    pub(crate) fn prompt(&self) -> Result<PromptInput, ApiError> {
        if self.messages.is_some() {
            return Err(ApiError::invalid("messages", "a completion takes a prompt, not messages"));
        }
        let many =
            |n: usize| ApiError::invalid("prompt", format!("{n} prompts: one prompt per request"));
        match &self.prompt {
            None => Err(ApiError::invalid("prompt", "missing")),
            Some(Prompt::One(prompt)) => Ok(PromptInput::Text(prompt.clone())),
            Some(Prompt::Many(prompts)) if prompts.len() == 1 => {
                Ok(PromptInput::Text(prompts[0].clone()))
            }
            Some(Prompt::Many(prompts)) => Err(many(prompts.len())),
            Some(Prompt::Tokens(ids)) => Ok(PromptInput::Tokens(ids.clone())),
            Some(Prompt::ManyTokens(lists)) if lists.len() == 1 => {
                Ok(PromptInput::Tokens(lists[0].clone()))
            }
            Some(Prompt::ManyTokens(lists)) => Err(many(lists.len())),
        }
    }

    /// The conversation of a chat request.
    ///
    /// # Errors
    /// [`ApiError`] naming `messages` when it is missing, empty or has an unknown role, `prompt`
    /// or `echo` when present.
    pub(crate) fn messages(&self) -> Result<&[RequestMessage], ApiError> {
        if self.prompt.is_some() {
            return Err(ApiError::invalid(
                "prompt",
                "a chat completion takes messages, not a prompt",
            ));
        }
        if self.echo {
            return Err(ApiError::invalid("echo", "not a chat completion field"));
        }
        let messages = self.messages.as_deref().unwrap_or_default();
        if messages.is_empty() {
            return Err(ApiError::invalid("messages", "missing or empty"));
        }
        if let Some(message) =
            messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
        {
            return Err(ApiError::invalid(
                "messages",
                format!("role {:?}: one of system, user, assistant", message.role),
            ));
        }
        Ok(messages)
    }
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model committed an end-of-text token, or the text reached a stop string.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (up to the end of text).
    pub completion_tokens: usize,
    /// Both.
    pub total_tokens: usize,
}

/// What the decoding cost, beside OpenAI's fields.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DecodingCost {
    /// Model calls.
    pub nfe: usize,
    /// Generated tokens per model call.
    pub tokens_per_forward: f64,
    /// Wall time of the generation.
    pub seconds: f64,
    /// Sequences the model read to score `logprobs` (in batches; not in `nfe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored_rows: Option<usize>,
}

/// A choice of a text completion.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    /// The text (a delta when streamed).
    pub text: String,
    /// Always 0.
    pub index: usize,
    /// The returned tokens' log-probabilities, when asked for.
    pub logprobs: Option<CompletionLogprobs>,
    /// Set on the last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// OpenAI's `logprobs` of a completion choice: per returned token (the prompt's too with
/// `echo`), its text, its share of the log-likelihood (`null` where not scored: the tokens a
/// bound is conditioned on, a shifted model's first token) and the best alternatives at its
/// position under the same weights, as `{text: value}`.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionLogprobs {
    /// Each token's text.
    pub tokens: Vec<String>,
    /// Each token's log-probability (nats).
    pub token_logprobs: Vec<Option<f64>>,
    /// Each position's best alternatives (`null` where not scored).
    pub top_logprobs: Vec<Option<std::collections::BTreeMap<String, f64>>>,
}

/// A text completion, or one chunk of a streamed one.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The served model.
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (the last chunk of a stream, and a whole response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Model calls and time (same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlm: Option<DecodingCost>,
}

/// A message of a chat response, or the delta of a chunk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResponseMessage {
    /// `assistant` (the first chunk and a whole response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A choice of a chat completion.
#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice {
    /// Always 0.
    pub index: usize,
    /// The whole message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<ResponseMessage>,
    /// The chunk's delta.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<ResponseMessage>,
    /// Set on the last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// A chat completion, or one chunk of a streamed one.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion` or `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The served model.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts (the last chunk of a stream, and a whole response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Model calls and time (same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlm: Option<DecodingCost>,
}
