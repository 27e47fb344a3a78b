//! Fixed-length token sequences: building them from documents, splitting, batching.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, ensure_size};
use crate::tokenizer::SpecialTokens;
use dlm_sched::InvalidInput;

const CONTEXT: &str = "sequence dataset";

/// `n` token sequences of one length, stored row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceDataset {
    seq_len: usize,
    vocab_size: usize,
    tokens: Vec<u32>,
    /// XXH3-64 of the length, the vocabulary and the ids, computed once (the ids never change).
    fingerprint: u64,
    /// The special tokens of the tokenizer that produced the ids, when one did.
    special: Option<SpecialTokens>,
}

/// XXH3-64 of a dataset's shape and ids.
fn fingerprint(seq_len: usize, vocab_size: usize, tokens: &[u32]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&(seq_len as u64).to_le_bytes());
    hasher.update(&(vocab_size as u64).to_le_bytes());
    for chunk in tokens.chunks(1 << 14) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|t| t.to_le_bytes()).collect();
        hasher.update(&bytes);
    }
    hasher.digest()
}

/// The most tokens a padded dataset may hold (`2³²`, 16 GiB of ids): a padding length past it is
/// a size bomb.
pub const MAX_DATASET_TOKENS: usize = 1 << 32;

impl SequenceDataset {
    /// Wraps row-major `tokens` as sequences of `seq_len`.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `seq_len == 0`, the data is empty, its length is not a
    /// multiple of `seq_len`, or a token id is `≥ vocab_size` (the error names the first one).
    pub fn new(seq_len: usize, vocab_size: usize, tokens: Vec<u32>) -> Result<Self, CoreError> {
        ensure_size(seq_len > 0, CONTEXT, "seq_len", seq_len, "at least 1")?;
        ensure_size(!tokens.is_empty(), CONTEXT, "tokens.len()", 0, "at least one sequence")?;
        ensure_size(
            tokens.len().is_multiple_of(seq_len),
            CONTEXT,
            "tokens.len()",
            tokens.len(),
            format!("a multiple of seq_len = {seq_len}"),
        )?;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(CoreError::Invalid(InvalidInput::size(
                CONTEXT,
                "token id",
                bad as usize,
                format!("below vocab_size = {vocab_size}"),
            )));
        }
        let fingerprint = fingerprint(seq_len, vocab_size, &tokens);
        Ok(Self { seq_len, vocab_size, tokens, fingerprint, special: None })
    }

    /// `n_sequences` sequences drawn by `sample(len, rng)` from one RNG seeded with `seed`.
    ///
    /// # Errors
    /// As [`SequenceDataset::new`] (e.g. a sampler that emits ids `≥ vocab_size`).
    pub fn generate(
        n_sequences: usize,
        seq_len: usize,
        vocab_size: usize,
        seed: u64,
        mut sample: impl FnMut(usize, &mut StdRng) -> Vec<u32>,
    ) -> Result<Self, CoreError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let tokens = (0..n_sequences).flat_map(|_| sample(seq_len, &mut rng)).collect();
        Self::new(seq_len, vocab_size, tokens)
    }

    /// Records the special tokens of the tokenizer that produced the ids, so that an objective
    /// can check its mask id against the tokenizer's ([`wrap_documents`] and [`pad_documents`]
    /// do it; splits keep it).
    pub fn with_special(self, special: SpecialTokens) -> Self {
        Self { special: Some(special), ..self }
    }

    /// The special tokens of the tokenizer that produced the ids, if known.
    pub fn special(&self) -> Option<SpecialTokens> {
        self.special
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.tokens.len() / self.seq_len
    }

    /// Whether there is no sequence (never true for a constructed dataset).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Length of every sequence.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Vocabulary size the ids were checked against.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The relative frequency of each id over every sequence, `n_v / N` for `v < vocab_size`
    /// (they sum to 1): what a data-dependent schedule such as D3PM's mutual-information one
    /// reads.
    pub fn token_frequencies(&self) -> Vec<f64> {
        let mut counts = vec![0u64; self.vocab_size];
        for &t in &self.tokens {
            counts[t as usize] += 1;
        }
        let total = self.tokens.len() as f64;
        counts.into_iter().map(|c| c as f64 / total).collect()
    }

    /// The first flat position (`sequence · seq_len + i`) that holds `token`, if any: how an
    /// objective finds a reserved token (the mask) inside the data.
    pub fn position_of(&self, token: u32) -> Option<usize> {
        self.tokens.iter().position(|&t| t == token)
    }

    /// A 64-bit fingerprint of the sequences (XXH3 of the length, the vocabulary and every id):
    /// what a checkpoint stores so that a run resumes on the data it started on.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Sequence `i`.
    ///
    /// # Panics
    /// If `i ≥ len()`.
    pub fn sequence(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// Splits off consecutive parts with the given numbers of sequences, in order (e.g. train,
    /// valid, test); the last part takes the rest.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if the sizes leave a part empty.
    pub fn split(&self, sizes: &[usize]) -> Result<Vec<SequenceDataset>, CoreError> {
        let mut parts = Vec::with_capacity(sizes.len() + 1);
        let mut start = 0;
        for &size in sizes {
            ensure_size(
                size > 0 && start + size < self.len(),
                CONTEXT,
                "split size",
                size,
                format!("at least 1 and leaving sequences for the last part (of {})", self.len()),
            )?;
            parts.push(self.slice(start, size));
            start += size;
        }
        parts.push(self.slice(start, self.len() - start));
        Ok(parts)
    }

    fn slice(&self, start: usize, count: usize) -> Self {
        let tokens = self.tokens[start * self.seq_len..(start + count) * self.seq_len].to_vec();
        let fingerprint = fingerprint(self.seq_len, self.vocab_size, &tokens);
        Self {
            seq_len: self.seq_len,
            vocab_size: self.vocab_size,
            tokens,
            fingerprint,
            special: self.special,
        }
    }

    /// The sequences `indices` as a `[indices.len(), seq_len]` tensor.
    ///
    /// # Panics
    /// If an index is `≥ len()`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<2, Int> {
        let data: Vec<i64> =
            indices.iter().flat_map(|&i| self.sequence(i).iter().map(|&t| i64::from(t))).collect();
        Tensor::from_data(TensorData::new(data, [indices.len(), self.seq_len]), device)
    }

    /// Consecutive batches of at most `batch_size` sequences, in order (for evaluation).
    pub fn ordered_batches(&self, batch_size: usize) -> impl Iterator<Item = Vec<usize>> + '_ {
        let indices: Vec<usize> = (0..self.len()).collect();
        indices.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect::<Vec<_>>().into_iter()
    }
}

/// A position in an endless, seeded shuffle of a dataset: epoch `e` visits the sequences in the
/// order of a permutation seeded with `(seed, e)`, in batches of `batch_size` (the last partial
/// batch of an epoch is dropped). The cursor is plain data, so a checkpoint stores it and a
/// resumed run sees exactly the batches the uninterrupted run would have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BatchCursorParams")]
pub struct BatchCursor {
    /// Seed of the shuffles.
    pub seed: u64,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Current epoch.
    pub epoch: u64,
    /// Index of the next batch within the epoch.
    pub batch_in_epoch: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchCursorParams {
    seed: u64,
    batch_size: usize,
    epoch: u64,
    batch_in_epoch: usize,
}

impl TryFrom<BatchCursorParams> for BatchCursor {
    type Error = CoreError;
    fn try_from(p: BatchCursorParams) -> Result<Self, Self::Error> {
        Ok(Self {
            epoch: p.epoch,
            batch_in_epoch: p.batch_in_epoch,
            ..Self::new(p.seed, p.batch_size)?
        })
    }
}

impl BatchCursor {
    /// A cursor at the start of epoch 0.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `batch_size == 0`.
    pub fn new(seed: u64, batch_size: usize) -> Result<Self, CoreError> {
        ensure_size(batch_size > 0, "batch cursor", "batch_size", batch_size, "at least 1")?;
        Ok(Self { seed, batch_size, epoch: 0, batch_in_epoch: 0 })
    }

    /// The indices of the next batch, advancing the cursor.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if the dataset has fewer sequences than one batch.
    pub fn next_batch(&mut self, dataset: &SequenceDataset) -> Result<Vec<usize>, CoreError> {
        let batches_per_epoch = dataset.len() / self.batch_size;
        ensure_size(
            batches_per_epoch > 0,
            "batch cursor",
            "batch_size",
            self.batch_size,
            format!("at most the dataset size {}", dataset.len()),
        )?;
        if self.batch_in_epoch >= batches_per_epoch {
            self.epoch += 1;
            self.batch_in_epoch = 0;
        }
        let mut order: Vec<usize> = (0..dataset.len()).collect();
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ self.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        let start = self.batch_in_epoch * self.batch_size;
        self.batch_in_epoch += 1;
        Ok(order[start..start + self.batch_size].to_vec())
    }
}

/// MDLM's wrapping (Sahoo et al. 2024, App. C, OpenWebText): every document becomes
/// `[BOS] tokens [EOS]`, the documents are concatenated and cut into sequences of `seq_len`;
/// the incomplete tail is dropped.
///
/// # Errors
/// [`CoreError::Invalid`] if the documents do not fill one sequence, or as
/// [`SequenceDataset::new`].
pub fn wrap_documents(
    documents: &[Vec<u32>],
    seq_len: usize,
    vocab_size: usize,
    special: SpecialTokens,
) -> Result<SequenceDataset, CoreError> {
    let mut stream = Vec::new();
    for document in documents {
        stream.push(special.bos);
        stream.extend_from_slice(document);
        stream.push(special.eos);
    }
    ensure_size(
        seq_len > 0 && stream.len() >= seq_len,
        CONTEXT,
        "seq_len",
        seq_len,
        format!("at least 1 and at most the wrapped corpus length {}", stream.len()),
    )?;
    stream.truncate(stream.len() / seq_len * seq_len);
    Ok(SequenceDataset::new(seq_len, vocab_size, stream)?.with_special(special))
}

/// One sequence per document: `[BOS] tokens [EOS]`, truncated to `seq_len` or padded with
/// `[PAD]` (MDLM's LM1B setting).
///
/// # Errors
/// [`CoreError::Invalid`] if there is no document, or as [`SequenceDataset::new`].
pub fn pad_documents(
    documents: &[Vec<u32>],
    seq_len: usize,
    vocab_size: usize,
    special: SpecialTokens,
) -> Result<SequenceDataset, CoreError> {
    ensure_size(!documents.is_empty(), CONTEXT, "documents.len()", 0, "at least 1")?;
    let cap = crate::backbone::MAX_SEQ_LEN;
    ensure_size(
        seq_len > 0 && seq_len <= cap,
        CONTEXT,
        "seq_len",
        seq_len,
        format!("between 1 and MAX_SEQ_LEN = {cap}"),
    )?;
    let total = documents.len().checked_mul(seq_len).filter(|&n| n <= MAX_DATASET_TOKENS);
    ensure_size(
        total.is_some(),
        CONTEXT,
        "documents.len() · seq_len",
        documents.len().saturating_mul(seq_len),
        format!("at most {MAX_DATASET_TOKENS} padded tokens"),
    )?;
    let mut tokens = Vec::with_capacity(documents.len() * seq_len);
    for document in documents {
        let mut row: Vec<u32> = std::iter::once(special.bos)
            .chain(document.iter().copied())
            .chain(std::iter::once(special.eos))
            .take(seq_len)
            .collect();
        row.resize(seq_len, special.pad);
        tokens.extend(row);
    }
    Ok(SequenceDataset::new(seq_len, vocab_size, tokens)?.with_special(special))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SpecialTokens = SpecialTokens::reserved();

    #[test]
    fn token_frequencies_count_every_id_over_every_sequence() {
        let data = SequenceDataset::new(2, 5, vec![4, 4, 1, 4, 0, 1, 4, 4]).unwrap();
        assert_eq!(data.token_frequencies(), [1.0 / 8.0, 2.0 / 8.0, 0.0, 0.0, 5.0 / 8.0]);
    }

    #[test]
    fn wrapping_concatenates_with_bos_eos_and_drops_the_tail() {
        let docs = vec![vec![4, 5, 6], vec![7], vec![8, 9]];
        let wrapped = wrap_documents(&docs, 4, 10, S).unwrap();
        // [1 4 5 6 2 1 7 2 1 8 9 2] → 3 sequences of 4.
        assert_eq!(wrapped.len(), 3);
        assert_eq!(wrapped.sequence(0), &[1, 4, 5, 6]);
        assert_eq!(wrapped.sequence(1), &[2, 1, 7, 2]);
        assert_eq!(wrapped.sequence(2), &[1, 8, 9, 2]);
        let wrapped = wrap_documents(&docs, 5, 10, S).unwrap();
        assert_eq!(wrapped.len(), 2);
    }

    #[test]
    fn padding_truncates_and_pads() {
        let docs = vec![vec![4, 5, 6, 7, 8], vec![9]];
        let padded = pad_documents(&docs, 4, 10, S).unwrap();
        assert_eq!(padded.sequence(0), &[1, 4, 5, 6]);
        assert_eq!(padded.sequence(1), &[1, 9, 2, 0]);
    }

    #[test]
    fn splits_are_consecutive_and_cover_everything() {
        let data = SequenceDataset::new(2, 10, (0..20).map(|i| i % 10).collect()).unwrap();
        let parts = data.split(&[6, 2]).unwrap();
        assert_eq!(parts.iter().map(SequenceDataset::len).collect::<Vec<_>>(), [6, 2, 2]);
        assert_eq!(parts[1].sequence(0), data.sequence(6));
        assert!(data.split(&[10]).is_err());
        assert!(data.split(&[0, 3]).is_err());
    }

    #[test]
    fn cursor_visits_each_sequence_once_per_epoch_and_resumes_exactly() {
        let data = SequenceDataset::new(1, 100, (0..12).collect()).unwrap();
        let mut cursor = BatchCursor::new(7, 4).unwrap();
        let mut seen: Vec<usize> = (0..3).flat_map(|_| cursor.next_batch(&data).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        // The cursor as a checkpoint stores it (JSON) continues identically.
        let mut resumed: BatchCursor =
            serde_json::from_str(&serde_json::to_string(&cursor).unwrap()).unwrap();
        assert!(
            serde_json::from_str::<BatchCursor>(
                r#"{"seed": 1, "batch_size": 0, "epoch": 0, "batch_in_epoch": 0}"#
            )
            .is_err()
        );
        let a: Vec<Vec<usize>> = (0..5).map(|_| cursor.next_batch(&data).unwrap()).collect();
        let b: Vec<Vec<usize>> = (0..5).map(|_| resumed.next_batch(&data).unwrap()).collect();
        assert_eq!(a, b);
        assert_eq!(cursor.epoch, 2);
        // Different epochs shuffle differently.
        let mut fresh = BatchCursor::new(7, 12).unwrap();
        assert_ne!(fresh.next_batch(&data).unwrap(), fresh.next_batch(&data).unwrap());
    }

    #[test]
    fn bad_input_is_rejected_with_the_field_named() {
        let err = SequenceDataset::new(2, 5, vec![1, 2, 3, 9]).unwrap_err().to_string();
        assert!(err.contains("token id") && err.contains('9'), "{err}");
        assert!(SequenceDataset::new(3, 5, vec![1, 2, 3, 4]).is_err());
        assert!(SequenceDataset::new(3, 5, vec![]).is_err());
        assert!(wrap_documents(&[vec![4]], 8, 10, S).is_err());
        assert!(pad_documents(&[], 8, 10, S).is_err());
        let small = SequenceDataset::new(1, 5, vec![1, 2]).unwrap();
        assert!(BatchCursor::new(0, 3).unwrap().next_batch(&small).is_err());
        assert!(BatchCursor::new(0, 0).is_err());
    }
}
