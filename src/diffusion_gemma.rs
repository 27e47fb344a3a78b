//! Generating with a DiffusionGemma checkpoint: what `dlm generate` runs on a directory whose
//! `config.json` says `model_type: diffusion_gemma`.
//!
//! [`GemmaCheckpoint::load`] reads the directory (config, generation config, sharded weights,
//! `tokenizer.json`, chat template); [`GemmaCheckpoint::generate`] runs the canvas sampler of
//! `dlm_block::canvas` with the checkpoint's settings under the caller's.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use dlm_block::canvas::{CanvasSampler, CanvasSettings, CanvasStep, SeededNoise};
use dlm_core::diffusion_gemma::DiffusionGemma;
use dlm_core::tokenizer::{ChatMessage, ChatTemplate, HfTokenizer, SpecialTokens};

use crate::generate::GenerateError;

/// Whether the model directory `dir` holds a DiffusionGemma checkpoint (its `config.json`
/// says `model_type: diffusion_gemma`); `false` when it cannot tell.
pub fn is_diffusion_gemma(dir: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct ModelType {
        model_type: String,
    }
    dlm_core::hf::read_json::<ModelType>(&dir.join("config.json"))
        .is_ok_and(|config| config.model_type == "diffusion_gemma")
}

/// A DiffusionGemma directory, ready to generate.
#[derive(Debug)]
pub struct GemmaCheckpoint {
    /// The network and what its files say.
    pub gemma: DiffusionGemma,
    /// Its `tokenizer.json`.
    pub tokenizer: HfTokenizer,
    /// Its chat template, if it has one.
    pub chat_template: Option<ChatTemplate>,
}

/// What [`GemmaCheckpoint::generate`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmaGenerated {
    /// The generated text, cut at the first end of text (and at `max_new_tokens`: canvases are
    /// generated whole).
    pub text: String,
    /// The generated ids, cut likewise.
    pub tokens: Vec<u32>,
    /// Decoder passes (the encoder's one pass per canvas is not counted, as transformers does
    /// not count it).
    pub decoder_passes: usize,
    /// Generated tokens (padding excluded) per decoder pass, as transformers reports it.
    pub tokens_per_forward: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Every denoising step.
    pub steps: Vec<CanvasStep>,
}

impl GemmaCheckpoint {
    /// Loads `dir`.
    ///
    /// # Errors
    /// As [`DiffusionGemma::from_dir`], [`HfTokenizer::load_with_special`] and
    /// [`ChatTemplate::from_model_dir`].
    pub fn load(dir: &Path, device: &Device) -> Result<Self, GenerateError> {
        let gemma = DiffusionGemma::from_dir(dir, device)?;
        let info = &gemma.info;
        let eos = info.eos_ids.first().copied().unwrap_or(0);
        let pad = info.pad_id.unwrap_or(eos);
        // DiffusionGemma has no mask token: its noise is uniform. The padding id fills the slot.
        let special = SpecialTokens { pad, bos: info.bos_id.unwrap_or(eos), eos, mask: pad };
        let tokenizer = HfTokenizer::load_with_special(&dir.join("tokenizer.json"), special)?;
        let chat_template = ChatTemplate::from_model_dir(dir)?;
        Ok(Self { gemma, tokenizer, chat_template })
    }

    /// The settings of the checkpoint's `generation_config.json` (transformers' defaults where
    /// it is silent).
    pub fn default_settings(&self) -> CanvasSettings {
        CanvasSettings::from_checkpoint(&self.gemma.info.generation)
    }

    /// `user` rendered with the checkpoint's chat template, the model's turn opened.
    ///
    /// # Errors
    /// [`GenerateError::Unsupported`] without a template; [`dlm_core::CoreError::Template`] if it
    /// fails to render.
    pub fn chat_prompt(&self, user: &str) -> Result<String, GenerateError> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            GenerateError::Unsupported("this checkpoint has no chat template".into())
        })?;
        Ok(template.render(&[ChatMessage::user(user)], true)?)
    }

    /// Generates after `prompt` (opened with the beginning-of-text id if it does not start with
    /// it, as Gemma's tokenizer does) with `settings`, every draw from `seed`.
    ///
    /// # Errors
    /// [`GenerateError::Unsupported`] for a prompt holding the image placeholder (the vision
    /// tower is not implemented); the tokenizer's and the sampler's errors (an empty prompt, a
    /// generation beyond the context, bad settings).
    pub fn generate(
        &self,
        prompt: &str,
        settings: CanvasSettings,
        seed: u64,
    ) -> Result<GemmaGenerated, GenerateError> {
        let info = &self.gemma.info;
        let mut ids = self.tokenizer.encode(prompt)?;
        // Gemma's tokenizer opens every text with <bos> (the chat template writes it itself).
        if let Some(bos) = info.bos_id.filter(|&bos| ids.first() != Some(&bos)) {
            ids.insert(0, bos);
        }
        if let Some(image) = info.image_token_id.filter(|id| ids.contains(id)) {
            return Err(GenerateError::Unsupported(format!(
                "the prompt holds the image placeholder (id {image}); DiffusionGemma's vision \
                 tower is not implemented"
            )));
        }
        let max_new_tokens = settings.max_new_tokens;
        let sampler = CanvasSampler::new(settings, info.eos_ids.clone(), info.pad_id)?;
        let start = Instant::now();
        let generation = sampler.generate(
            &self.gemma.model,
            std::slice::from_ref(&ids),
            &mut SeededNoise::new(seed),
        )?;
        let seconds = start.elapsed().as_secs_f64();
        // Whole canvases were generated; the caller asked for `max_new_tokens`.
        let mut tokens = generation.sequences[0][ids.len()..].to_vec();
        tokens.truncate(max_new_tokens);
        if let Some(end) = tokens.iter().position(|id| info.eos_ids.contains(id)) {
            tokens.truncate(end);
        }
        Ok(GemmaGenerated {
            text: self.tokenizer.decode(&tokens)?,
            tokens,
            decoder_passes: generation.decoder_passes[0],
            tokens_per_forward: generation.tokens_per_forward[0],
            seconds,
            steps: generation.steps,
        })
    }
}
