//! [`ChatTemplate`]: a checkpoint's own Jinja chat template.

use std::path::Path;

use minijinja::{Environment, Error, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (what the template knows).
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
}

/// The Jinja chat template an Instruct checkpoint was trained with (`chat_template` of its
/// `tokenizer_config.json`, or a `chat_template.jinja` file), rendered with minijinja and its
/// Python-compatible methods (`.strip()`, `.items()`, …) as Hugging Face's Rust inference server
/// renders them, with `raise_exception` and the `bos_token`/`eos_token` strings the templates
/// read.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    what: String,
}

/// A special token in `tokenizer_config.json`: a string or an added-token object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenField {
    Text(String),
    Added { content: String },
}

impl TokenField {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) | Self::Added { content: text } => text,
        }
    }
}

/// `chat_template`: one template, or named ones (the `default` is used).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

#[derive(Debug, Deserialize)]
struct TokenizerConfig {
    chat_template: Option<TemplateField>,
    bos_token: Option<TokenField>,
    eos_token: Option<TokenField>,
}

impl ChatTemplate {
    /// A template from its source, checked to compile.
    ///
    /// # Errors
    /// [`CoreError::Template`] naming `what` if it does not compile.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
        what: impl Into<String>,
    ) -> Result<Self, CoreError> {
        let template = Self {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            what: what.into(),
        };
        template.environment()?;
        Ok(template)
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The template of the model in `dir`: `chat_template.jinja` if present, else the
    /// `chat_template` of `tokenizer_config.json` (the one named `default` when there are
    /// several); `None` when the model has none (a Base model).
    ///
    /// # Errors
    /// [`CoreError::Io`] and [`CoreError::Json`] for a file that does not read;
    /// [`CoreError::Template`] for a template that does not compile.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>, CoreError> {
        let config_path = dir.join("tokenizer_config.json");
        let config: Option<TokenizerConfig> = match config_path.is_file() {
            true => Some(crate::hf::read_json(&config_path)?),
            false => None,
        };
        let (bos, eos, field) = match config {
            Some(c) => (c.bos_token, c.eos_token, c.chat_template),
            None => (None, None, None),
        };
        let jinja = dir.join("chat_template.jinja");
        let (source, what) = if jinja.is_file() {
            let text = std::fs::read_to_string(&jinja)
                .map_err(|source| CoreError::Io { path: jinja.clone(), source })?;
            (text, jinja.display().to_string())
        } else {
            let source = match field {
                None => return Ok(None),
                Some(TemplateField::One(text)) => text,
                Some(TemplateField::Named(named)) => {
                    match named.into_iter().find(|t| t.name == "default") {
                        Some(t) => t.template,
                        None => return Ok(None),
                    }
                }
            };
            (source, config_path.display().to_string())
        };
        let text = |field: Option<TokenField>| field.map(TokenField::into_text).unwrap_or_default();
        Self::new(source, text(bos), text(eos), what).map(Some)
    }

    fn environment(&self) -> Result<Environment<'static>, CoreError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", self.source.clone()).map_err(|e| self.error(e))?;
        Ok(env)
    }

    fn error(&self, error: Error) -> CoreError {
        CoreError::Template { what: self.what.clone(), message: error.to_string() }
    }

    /// The prompt text of `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt`.
    ///
    /// # Errors
    /// [`CoreError::Template`] if rendering fails (a role the template refuses, say).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, CoreError> {
        let env = self.environment()?;
        let template = env.get_template("chat").map_err(|e| self.error(e))?;
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| context! { role => m.role.clone(), content => m.content.clone() })
            .collect();
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LLaDA-8B-Instruct's format (Llama 3: the BOS once, headers, `<|eot_id|>`, stripped
    /// contents), written as such a template is.
    const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}<|start_header_id|>\
        {{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>\
        {% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\
        \n\n{% endif %}";

    /// Qwen's ChatML (Dream, SDAR, Tiny-A2D), with a Python method call and an exception.
    const CHATML: &str = "{% for message in messages %}{% if message.role not in ['system', \
        'user', 'assistant'] %}{{ raise_exception('unknown role ' + message.role) }}{% endif %}\
        <|im_start|>{{ message.role }}\n{{ message.content.strip() }}<|im_end|>\n{% endfor %}\
        {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn templates_render_the_formats_the_checkpoints_were_trained_on() {
        let llama3 = ChatTemplate::new(LLAMA3, "<|startoftext|>", "<|eot_id|>", "test").unwrap();
        let messages = [
            ChatMessage { role: "system".into(), content: "Be brief.".into() },
            ChatMessage::user("  What is 2+2? "),
        ];
        assert_eq!(
            llama3.render(&messages, true).unwrap(),
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let chatml = ChatTemplate::new(CHATML, "", "<|im_end|>", "test").unwrap();
        assert_eq!(
            chatml.render(&[ChatMessage::user("hi ")], true).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let odd = [ChatMessage { role: "tool".into(), content: "x".into() }];
        let err = chatml.render(&odd, false).unwrap_err().to_string();
        assert!(err.contains("unknown role tool"), "{err}");
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", "", "test"),
            Err(CoreError::Template { .. })
        ));
    }

    #[test]
    fn a_model_directory_gives_its_template_or_none() {
        let dir = std::env::temp_dir().join(format!("dlm-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(ChatTemplate::from_model_dir(&dir).unwrap().is_none(), "no files: a Base model");
        let config = serde_json::json!({
            "bos_token": {"content": "<|startoftext|>", "special": true},
            "eos_token": "<|eot_id|>",
            "chat_template": [{"name": "default", "template": LLAMA3}, {"name": "tool_use", "template": "x"}],
        });
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
        let template = ChatTemplate::from_model_dir(&dir).unwrap().expect("a template");
        assert!(
            template
                .render(&[ChatMessage::user("hi")], true)
                .unwrap()
                .starts_with("<|startoftext|>")
        );
        std::fs::write(dir.join("chat_template.jinja"), CHATML).unwrap();
        let file = ChatTemplate::from_model_dir(&dir).unwrap().unwrap();
        assert!(file.render(&[ChatMessage::user("hi")], true).unwrap().starts_with("<|im_start|>"));
    }
}
