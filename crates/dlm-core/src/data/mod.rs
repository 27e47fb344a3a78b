//! Data: synthetic sources with a known entropy rate, fixed-length sequence
//! datasets, text corpora (cached token ids, deterministic splits), document wrapping and padding,
//! seeded batching.

mod corpus;
mod dataset;
mod markov;
mod pairs;
mod words;

pub use corpus::{CorpusSplits, read_documents, split_corpus, text_files, tokenize_documents};
pub use dataset::{
    BatchCursor, MAX_DATASET_TOKENS, SequenceDataset, pad_documents, wrap_documents,
};
pub use markov::{MarkovScore, MarkovSource, MarkovSourceConfig};
pub use pairs::{PairsScore, PairsTask, PairsTaskConfig};
pub use words::{WordsTask, WordsTaskConfig};
