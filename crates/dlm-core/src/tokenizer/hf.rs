//! Hugging Face `tokenizers`: load a `tokenizer.json`, or train a byte-level BPE offline.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, TokenizerBuilder};

use super::SpecialTokens;
use crate::backbone::MAX_VOCAB_SIZE;
use crate::error::{CoreError, ensure_size};

/// A Hugging Face tokenizer with the ids of its special tokens.
#[derive(Debug, Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    source: String,
    vocab_size: usize,
}

/// Names under which a loaded tokenizer may spell each special token.
const PAD: &[&str] = &["[PAD]", "<pad>"];
const BOS: &[&str] = &["[BOS]", "<s>", "[CLS]", "<|endoftext|>"];
const EOS: &[&str] = &["[EOS]", "</s>", "[SEP]", "<|endoftext|>"];
const MASK: &[&str] = &["[MASK]", "<mask>"];

fn tokenizer_error(what: &str) -> impl FnOnce(tokenizers::Error) -> CoreError + '_ {
    move |e| CoreError::Tokenizer { what: what.into(), message: e.to_string() }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown cause");
    format!("malformed file (the tokenizers crate panicked: {text})")
}

/// [`CoreError::Io`] (not found) unless `path` is a file.
fn ensure_file(path: &Path, message: &str) -> Result<(), CoreError> {
    if path.is_file() {
        return Ok(());
    }
    let source = std::io::Error::new(std::io::ErrorKind::NotFound, message);
    Err(CoreError::Io { path: path.into(), source })
}

impl HfTokenizer {
    /// Loads a `tokenizer.json`; padding and truncation stored in it are switched off. The
    /// special tokens are looked up by name (`[PAD]`/`<pad>`, `[BOS]`/`<s>`/`[CLS]`,
    /// `[EOS]`/`</s>`/`[SEP]`, `[MASK]`/`<mask>`).
    ///
    /// # Errors
    /// [`CoreError::Io`] for a missing file, [`CoreError::Tokenizer`] for one `tokenizers`
    /// cannot read, [`CoreError::MissingSpecialToken`] if a special token is absent.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let (inner, what) = Self::read(path)?;
        Self::with_specials(inner, what)
    }

    /// Loads a `tokenizer.json` whose special tokens are given by id (an imported checkpoint's
    /// `config.json` names them: LLaDA's `<|mdm_mask|>`, Dream's `<|mask|>` are not among the
    /// names [`HfTokenizer::load`] looks for).
    ///
    /// # Errors
    /// As [`HfTokenizer::load`] for the file; [`CoreError::Invalid`] naming the special token
    /// whose id is outside the tokenizer's id space.
    pub fn load_with_special(path: &Path, special: SpecialTokens) -> Result<Self, CoreError> {
        let (inner, what) = Self::read(path)?;
        let tokenizer = Self::with_id_space(inner, special, what)?;
        for (name, id) in [
            ("pad", special.pad),
            ("bos", special.bos),
            ("eos", special.eos),
            ("mask", special.mask),
        ] {
            ensure_size(
                (id as usize) < tokenizer.vocab_size,
                "tokenizer special tokens",
                name,
                id as usize,
                format!("an id below the tokenizer's vocab_size = {}", tokenizer.vocab_size),
            )?;
        }
        Ok(tokenizer)
    }

    fn read(path: &Path) -> Result<(tokenizers::Tokenizer, String), CoreError> {
        ensure_file(path, "no tokenizer file here")?;
        let what = path.display().to_string();
        // `tokenizers` panics on some malformed files (an `unwrap` in its decoder parsing): the
        // boundary turns that into the same typed error as the files it rejects.
        let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_file(path));
        let mut inner = parsed
            .map_err(|panic| CoreError::Tokenizer {
                what: what.clone(),
                message: panic_message(&panic),
            })?
            .map_err(tokenizer_error(&what))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tokenizer_error(&what))?;
        Ok((inner, what))
    }

    /// A WordPiece tokenizer from a BERT `vocab.txt` (one token per line, id = line number), as
    /// Hugging Face's `BertTokenizer` with `do_lower_case = False`: split on whitespace and
    /// punctuation, then greedy longest-match word pieces, `[UNK]` for what does not match.
    /// Checkpoints that ship only a `vocab.txt` (AntiBERTy: one token per amino acid, fed
    /// space-separated residues) are read with it.
    ///
    /// # Errors
    /// [`CoreError::Io`] for a missing file, [`CoreError::Tokenizer`] for one that is not a
    /// vocabulary, [`CoreError::MissingSpecialToken`] if a special token is absent.
    pub fn from_wordpiece_vocab(path: &Path) -> Result<Self, CoreError> {
        ensure_file(path, "no vocabulary file here")?;
        let what = path.display().to_string();
        let model = WordPiece::from_file(&what)
            .unk_token("[UNK]".into())
            .build()
            .map_err(tokenizer_error(&what))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter(|name| inner.token_to_id(name).is_some())
            .map(|name| AddedToken::from(*name, true))
            .collect();
        inner.add_special_tokens(specials).map_err(tokenizer_error(&what))?;
        Self::with_specials(inner, what)
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of `id`, if there is one.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn with_specials(inner: tokenizers::Tokenizer, source: String) -> Result<Self, CoreError> {
        let find = |names: &'static [&'static str]| {
            names.iter().find_map(|n| inner.token_to_id(n)).ok_or_else(|| {
                CoreError::MissingSpecialToken { what: source.clone(), names: names.to_vec() }
            })
        };
        let special =
            SpecialTokens { pad: find(PAD)?, bos: find(BOS)?, eos: find(EOS)?, mask: find(MASK)? };
        Self::with_id_space(inner, special, source)
    }

    fn with_id_space(
        inner: tokenizers::Tokenizer,
        special: SpecialTokens,
        source: String,
    ) -> Result<Self, CoreError> {
        // The id space, not the number of tokens: with gaps in the ids the largest id is what a
        // model's embedding must cover.
        let vocab_size =
            inner.get_vocab(true).values().map(|&id| id as usize + 1).max().unwrap_or(0);
        ensure_size(
            vocab_size <= MAX_VOCAB_SIZE,
            "tokenizer",
            "vocab_size",
            vocab_size,
            format!("at most MAX_VOCAB_SIZE = {MAX_VOCAB_SIZE} (the largest id + 1)"),
        )?;
        Ok(Self { inner, special, source, vocab_size })
    }

    /// Trains a byte-level BPE (GPT-2 style pre-tokenisation) of `vocab_size` tokens on local
    /// text files, with the project's special tokens reserved as ids `0..4`.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `vocab_size` cannot hold the byte alphabet and the special
    /// tokens, [`CoreError::Io`] for a missing file, [`CoreError::Tokenizer`] if training fails.
    pub fn train_bpe(files: &[PathBuf], vocab_size: usize) -> Result<Self, CoreError> {
        let minimum = 256 + SpecialTokens::COUNT as usize;
        let cap = crate::backbone::MAX_VOCAB_SIZE;
        crate::error::ensure_size(
            (minimum..=cap).contains(&vocab_size),
            "BPE training",
            "vocab_size",
            vocab_size,
            format!("between {minimum} (bytes and special tokens) and {cap}"),
        )?;
        for file in files {
            ensure_file(file, "no corpus file here")?;
        }
        let specials = SpecialTokens::NAMES.iter().map(|n| AddedToken::from(*n, true)).collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let what = "BPE training";
        let mut builder =
            TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
                .with_model(BPE::default())
                .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
                .with_post_processor(Some(ByteLevel::default()))
                .with_decoder(Some(ByteLevel::default()))
                .build()
                .map_err(tokenizer_error(what))?;
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        builder.train_from_files(&mut trainer, files).map_err(tokenizer_error(what))?;
        Self::with_specials(builder.into(), format!("BPE({vocab_size})"))
    }

    /// Token ids of `text` (no special tokens added).
    ///
    /// # Errors
    /// [`CoreError::Tokenizer`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CoreError> {
        let encoding = self.inner.encode(text, false).map_err(tokenizer_error(&self.source))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    ///
    /// # Errors
    /// [`CoreError::Tokenizer`].
    pub fn decode(&self, ids: &[u32]) -> Result<String, CoreError> {
        self.inner.decode(ids, true).map_err(tokenizer_error(&self.source))
    }

    /// The size of the id space, added tokens included: the largest id + 1, so that every id
    /// the tokenizer emits is below it even when its ids have gaps (a model's vocabulary must be
    /// at least this).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The special tokens' ids.
    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// The `tokenizer.json` text.
    ///
    /// # Errors
    /// [`CoreError::Tokenizer`].
    pub fn to_json(&self) -> Result<String, CoreError> {
        self.inner.to_string(false).map_err(tokenizer_error(&self.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_sched::InvalidInput;

    fn corpus(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dlm-tokenizer-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corpus.txt");
        let verse =
            "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n";
        std::fs::write(&path, verse.repeat(50)).unwrap();
        path
    }

    #[test]
    fn trained_bpe_reserves_specials_and_round_trips() {
        let path = corpus("bpe");
        let t = HfTokenizer::train_bpe(std::slice::from_ref(&path), 300).unwrap();
        assert_eq!(t.special(), SpecialTokens::reserved());
        assert!(t.vocab_size() <= 300 && t.vocab_size() > 260);
        let text = "Thou art more lovely than a summer's day.";
        let ids = t.encode(text).unwrap();
        assert!(ids.len() < text.len(), "merges shorten the text");
        assert_eq!(t.decode(&ids).unwrap(), text);
        // Saved and loaded, it is the same tokenizer.
        let saved = path.with_file_name("tokenizer.json");
        std::fs::write(&saved, t.to_json().unwrap()).unwrap();
        let loaded = HfTokenizer::load(&saved).unwrap();
        assert_eq!(loaded.encode(text).unwrap(), ids);
        assert_eq!(loaded.special(), t.special());
    }

    #[test]
    fn bad_files_and_sizes_give_typed_errors() {
        let missing = std::env::temp_dir().join("dlm-no-such-tokenizer.json");
        assert!(matches!(HfTokenizer::load(&missing), Err(CoreError::Io { .. })));
        let garbage = corpus("garbage").with_file_name("garbage.json");
        std::fs::write(&garbage, "{ not json").unwrap();
        assert!(matches!(HfTokenizer::load(&garbage), Err(CoreError::Tokenizer { .. })));
        assert!(matches!(
            HfTokenizer::train_bpe(&[corpus("small")], 100),
            Err(CoreError::Invalid(InvalidInput { name: "vocab_size", .. }))
        ));
        assert!(matches!(HfTokenizer::train_bpe(&[missing], 300), Err(CoreError::Io { .. })));
    }

    #[test]
    fn ids_with_gaps_count_to_the_largest_and_a_huge_id_is_refused() {
        let json = |b_id: u64| {
            format!(
                r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
                "post_processor": null, "decoder": null,
                "model": {{"type": "WordLevel", "unk_token": "[PAD]", "vocab":
                {{"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "[MASK]": 3, "a": 4, "b": {b_id}}}}}}}"#
            )
        };
        let path = corpus("gaps").with_file_name("gaps.json");
        std::fs::write(&path, json(9)).unwrap();
        let t = HfTokenizer::load(&path).unwrap();
        assert_eq!(t.encode("a b").unwrap(), [4, 9]);
        assert_eq!(t.vocab_size(), 10, "six tokens, ids up to 9");
        std::fs::write(&path, json(1 << 30)).unwrap();
        assert!(matches!(
            HfTokenizer::load(&path),
            Err(CoreError::Invalid(InvalidInput { name: "vocab_size", .. }))
        ));
    }

    #[test]
    fn wordpiece_vocab_files_map_lines_to_ids() {
        let path = corpus("wordpiece").with_file_name("vocab.txt");
        std::fs::write(&path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nA\nC\nD\n").unwrap();
        let t = HfTokenizer::from_wordpiece_vocab(&path).unwrap();
        assert_eq!(t.special(), SpecialTokens { pad: 0, bos: 2, eos: 3, mask: 4 });
        // Residues separated by spaces, an unknown one → [UNK]; case is kept.
        assert_eq!(t.encode("A D C Z a").unwrap(), [5, 7, 6, 1, 1]);
        assert_eq!(t.encode("[MASK] A").unwrap(), [4, 5]);
        assert_eq!((t.token_to_id("D"), t.id_to_token(6).as_deref()), (Some(7), Some("C")));
        std::fs::write(&path, "A\nC\n").unwrap();
        assert!(matches!(
            HfTokenizer::from_wordpiece_vocab(&path),
            Err(CoreError::MissingSpecialToken { .. })
        ));
        let missing = path.with_file_name("no-vocab.txt");
        assert!(matches!(HfTokenizer::from_wordpiece_vocab(&missing), Err(CoreError::Io { .. })));
    }
}
