//! The `[data]` section of a recipe: a text corpus with its tokenizer, or a synthetic source with
//! an exact entropy rate.

use std::path::PathBuf;

use dlm_core::data::{
    MarkovSource, MarkovSourceConfig, PairsTask, PairsTaskConfig, SequenceDataset, WordsTask,
    WordsTaskConfig, read_documents, split_corpus, text_files, tokenize_documents,
};
use dlm_core::tokenizer::{CharTokenizer, HfTokenizer, Tokenizer};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::RecipeError;

/// Where the sequences come from.
///
/// ```toml
/// [data]
/// source = "corpus"
/// files = ["assets/alice29.txt"]   # files, or folders of .txt files; from the directory
///                                  # `dlm train` runs in
/// tokenizer = "char"               # "char", "byte", { bpe = { vocab_size = 512 } }
///                                  # or { file = "tokenizer.json" }
/// seq_len = 128
/// valid_fraction = 0.05            # the last 5 % of the sequences but the test set
/// test_fraction = 0.05             # the last 5 %
/// ```
///
/// or `source = "markov"` with `seq_len` and optionally `n_symbols` (16), `order` (2),
/// `branching` (4), `seed` (0), `train_sequences` (16 384), `valid_sequences` (256) and
/// `test_sequences` (512): the sparse Markov chain of the ladders, whose entropy rate is known
/// exactly; `source = "pairs"` with `n_symbols` (32) and `n_pairs` (48), the two-token phrases
/// of the parallel-decoding experiments (`PairsTask`); `source = "words"` with `n_words` (16) and
/// `word_len` (4), the lexicon of the block-speed experiments (`WordsTask`). The synthetic
/// sources take `seed` and the three sequence counts alike, and have exact entropies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// UTF-8 text files, one document each.
    Corpus {
        /// The files; a folder stands for its `.txt` files in name order.
        files: Vec<PathBuf>,
        /// How text becomes ids.
        tokenizer: TokenizerSpec,
        /// Tokens per sequence.
        seq_len: usize,
        /// Share of the sequences for validation.
        #[serde(default = "default_fraction")]
        valid_fraction: f64,
        /// Share of the sequences for the test set.
        #[serde(default = "default_fraction")]
        test_fraction: f64,
        /// A folder for the token ids (reused when the files and tokenizer are unchanged).
        #[serde(default)]
        cache: Option<PathBuf>,
    },
    /// The sparse Markov source ([`MarkovSource`]).
    Markov {
        /// Tokens per sequence.
        seq_len: usize,
        /// Symbols of the chain.
        #[serde(default = "default_symbols")]
        n_symbols: usize,
        /// Order of the chain.
        #[serde(default = "default_order")]
        order: usize,
        /// Successors per context.
        #[serde(default = "default_branching")]
        branching: usize,
        /// Seed of the chain's transition table.
        #[serde(default)]
        seed: u64,
        /// Training sequences (drawn with seed 1).
        #[serde(default = "default_train_sequences")]
        train_sequences: usize,
        /// Validation sequences (seed 2).
        #[serde(default = "default_valid_sequences")]
        valid_sequences: usize,
        /// Test sequences (seed 3).
        #[serde(default = "default_test_sequences")]
        test_sequences: usize,
    },
    /// Two-token phrases from a fixed list of valid pairs ([`PairsTask`]).
    Pairs {
        /// Tokens per sequence.
        seq_len: usize,
        /// Symbols (even): the first half start phrases, the second half end them.
        #[serde(default = "default_pair_symbols")]
        n_symbols: usize,
        /// Valid pairs.
        #[serde(default = "default_pairs")]
        n_pairs: usize,
        /// Seed of the pair list.
        #[serde(default)]
        seed: u64,
        /// Training sequences (drawn with seed 1).
        #[serde(default = "default_train_sequences")]
        train_sequences: usize,
        /// Validation sequences (seed 2).
        #[serde(default = "default_valid_sequences")]
        valid_sequences: usize,
        /// Test sequences (seed 3).
        #[serde(default = "default_test_sequences")]
        test_sequences: usize,
    },
    /// Words of a fixed lexicon ([`WordsTask`]).
    Words {
        /// Tokens per sequence.
        seq_len: usize,
        /// Words of the lexicon.
        #[serde(default = "default_words")]
        n_words: usize,
        /// Tokens per word.
        #[serde(default = "default_word_len")]
        word_len: usize,
        /// Seed of the lexicon.
        #[serde(default)]
        seed: u64,
        /// Training sequences (drawn with seed 1).
        #[serde(default = "default_train_sequences")]
        train_sequences: usize,
        /// Validation sequences (seed 2).
        #[serde(default = "default_valid_sequences")]
        valid_sequences: usize,
        /// Test sequences (seed 3).
        #[serde(default = "default_test_sequences")]
        test_sequences: usize,
    },
}

/// A synthetic source of a recipe, whose entropy is exact.
#[derive(Debug, Clone)]
pub enum SyntheticSource {
    /// The sparse Markov chain.
    Markov(MarkovSource),
    /// The pairs task.
    Pairs(PairsTask),
    /// The words task.
    Words(WordsTask),
}

impl SyntheticSource {
    /// The exact entropy of a sample of `len` tokens, in nats.
    pub fn sequence_entropy(&self, len: usize) -> f64 {
        match self {
            Self::Markov(source) => source.sequence_entropy(len),
            Self::Pairs(task) => task.sequence_entropy(len),
            Self::Words(task) => task.sequence_entropy(len),
        }
    }

    /// Entropy per token of positions `2..L` given the ones before, `(H(x_1..x_L) − H(x_1))/(L
    /// − 1)` by the chain rule (what an autoregressive model scored from the second position on
    /// is compared with); 0 for `len ≤ 1`.
    pub fn conditional_entropy_per_token(&self, len: usize) -> f64 {
        if len <= 1 {
            return 0.0;
        }
        (self.sequence_entropy(len) - self.sequence_entropy(1)) / (len - 1) as f64
    }

    /// Entropy per token of a whole sample of `len` tokens; 0 for `len = 0`.
    pub fn entropy_per_token(&self, len: usize) -> f64 {
        if len == 0 {
            return 0.0;
        }
        self.sequence_entropy(len) / len as f64
    }

    fn vocab_size(&self) -> usize {
        match self {
            Self::Markov(source) => source.vocab_size(),
            Self::Pairs(task) => task.vocab_size(),
            Self::Words(task) => task.vocab_size(),
        }
    }

    fn sample(&self, len: usize, rng: &mut StdRng) -> Vec<u32> {
        match self {
            Self::Markov(source) => source.sample(len, rng),
            Self::Pairs(task) => task.sample(len, rng),
            Self::Words(task) => task.sample(len, rng),
        }
    }
}

fn default_fraction() -> f64 {
    0.05
}
fn default_symbols() -> usize {
    16
}
fn default_order() -> usize {
    2
}
fn default_branching() -> usize {
    4
}
fn default_pair_symbols() -> usize {
    32
}
fn default_pairs() -> usize {
    48
}
fn default_words() -> usize {
    16
}
fn default_word_len() -> usize {
    4
}
fn default_train_sequences() -> usize {
    16_384
}
fn default_valid_sequences() -> usize {
    256
}
fn default_test_sequences() -> usize {
    512
}

/// How a corpus becomes token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenizerSpec {
    /// One id per character of the corpus's alphabet.
    Char,
    /// One id per byte.
    Byte,
    /// Byte-level BPE trained on the corpus (offline, Hugging Face `tokenizers`).
    Bpe {
        /// Ids, special tokens included.
        vocab_size: usize,
    },
    /// A `tokenizer.json`.
    File(PathBuf),
}

/// The sequences of a recipe.
#[derive(Debug, Clone)]
pub struct RecipeData {
    /// Training sequences.
    pub train: SequenceDataset,
    /// Validation sequences (scored during training).
    pub valid: SequenceDataset,
    /// Test sequences (`dlm eval`).
    pub test: SequenceDataset,
    /// Ids of the model's vocabulary, special tokens included.
    pub vocab_size: usize,
    /// The corpus's tokenizer; `None` for a synthetic source (its samples are printed as ids).
    pub tokenizer: Option<Tokenizer>,
    /// The synthetic source, whose entropies are exact.
    pub synthetic: Option<SyntheticSource>,
}

impl RecipeData {
    /// A sample's text, or its ids for a synthetic source.
    pub fn show(&self, tokens: &[u32]) -> String {
        match &self.tokenizer {
            Some(tokenizer) => tokenizer.decode(tokens).unwrap_or_else(|e| format!("({e})")),
            None => format!("{tokens:?}"),
        }
    }
}

impl DataSpec {
    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        match self {
            Self::Corpus { seq_len, .. }
            | Self::Markov { seq_len, .. }
            | Self::Pairs { seq_len, .. }
            | Self::Words { seq_len, .. } => *seq_len,
        }
    }

    /// The files and folders a corpus lists (none for a synthetic source).
    pub fn files(&self) -> &[PathBuf] {
        match self {
            Self::Corpus { files, .. } => files,
            Self::Markov { .. } | Self::Pairs { .. } | Self::Words { .. } => &[],
        }
    }

    /// Reads or draws the sequences.
    ///
    /// # Errors
    /// [`RecipeError::Invalid`] naming the key for a zero `seq_len` or sequence count;
    /// the data layer's errors (files, tokenizer, fractions, chain settings).
    pub fn load(&self) -> Result<RecipeData, RecipeError> {
        let seq_len = self.seq_len();
        if seq_len == 0 {
            return Err(RecipeError::invalid("data.seq_len", "0", "at least 1"));
        }
        match self {
            Self::Corpus { files, tokenizer, valid_fraction, test_fraction, cache, .. } => {
                if files.is_empty() {
                    return Err(RecipeError::invalid("data.files", "[]", "at least one file"));
                }
                let files = text_files_of(files)?;
                let documents = read_documents(&files)?;
                let tokenizer = match tokenizer {
                    TokenizerSpec::Char => Tokenizer::Char(CharTokenizer::from_texts(
                        documents.iter().map(String::as_str),
                    )?),
                    TokenizerSpec::Byte => Tokenizer::Byte(Default::default()),
                    TokenizerSpec::Bpe { vocab_size } => {
                        HfTokenizer::train_bpe(&files, *vocab_size)?.into()
                    }
                    TokenizerSpec::File(path) => HfTokenizer::load(path)?.into(),
                };
                let ids = tokenize_documents(&documents, &tokenizer, cache.as_deref())?;
                let splits =
                    split_corpus(&ids, &tokenizer, seq_len, *valid_fraction, *test_fraction)?;
                Ok(RecipeData {
                    train: splits.train,
                    valid: splits.valid,
                    test: splits.test,
                    vocab_size: tokenizer.vocab_size(),
                    tokenizer: Some(tokenizer),
                    synthetic: None,
                })
            }
            Self::Markov { n_symbols, order, branching, seed, .. } => {
                let config = MarkovSourceConfig {
                    n_symbols: *n_symbols,
                    order: *order,
                    branching: *branching,
                    seed: *seed,
                };
                synthetic(
                    SyntheticSource::Markov(MarkovSource::new(config)?),
                    seq_len,
                    self.counts(),
                )
            }
            Self::Pairs { n_symbols, n_pairs, seed, .. } => {
                let config =
                    PairsTaskConfig { n_symbols: *n_symbols, n_pairs: *n_pairs, seed: *seed };
                synthetic(SyntheticSource::Pairs(PairsTask::new(config)?), seq_len, self.counts())
            }
            Self::Words { n_words, word_len, seed, .. } => {
                let config =
                    WordsTaskConfig { n_words: *n_words, word_len: *word_len, seed: *seed };
                synthetic(SyntheticSource::Words(WordsTask::new(config)?), seq_len, self.counts())
            }
        }
    }

    /// The training, validation and test sequences a synthetic source draws (none for a corpus,
    /// which is split by fractions).
    fn counts(&self) -> [usize; 3] {
        match self {
            Self::Corpus { .. } => [0; 3],
            Self::Markov { train_sequences, valid_sequences, test_sequences, .. }
            | Self::Pairs { train_sequences, valid_sequences, test_sequences, .. }
            | Self::Words { train_sequences, valid_sequences, test_sequences, .. } => {
                [*train_sequences, *valid_sequences, *test_sequences]
            }
        }
    }
}

/// The three splits of a synthetic source, drawn with seeds 1, 2 and 3.
///
/// # Errors
/// [`RecipeError::Invalid`] naming the count that is 0.
fn synthetic(
    source: SyntheticSource,
    seq_len: usize,
    counts: [usize; 3],
) -> Result<RecipeData, RecipeError> {
    let vocab = source.vocab_size();
    let sample = |len: usize, rng: &mut StdRng| source.sample(len, rng);
    let mut splits = Vec::new();
    let keys = ["data.train_sequences", "data.valid_sequences", "data.test_sequences"];
    for ((key, count), split_seed) in keys.into_iter().zip(counts).zip(1..) {
        if count == 0 {
            return Err(RecipeError::invalid(key, "0", "at least 1"));
        }
        splits.push(SequenceDataset::generate(count, seq_len, vocab, split_seed, sample)?);
    }
    let [train, valid, test] =
        <[SequenceDataset; 3]>::try_from(splits).expect("three splits were drawn");
    Ok(RecipeData {
        train,
        valid,
        test,
        vocab_size: vocab,
        tokenizer: None,
        synthetic: Some(source),
    })
}

/// `paths` with every folder replaced by its `.txt` files in name order.
fn text_files_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RecipeError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(text_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}
