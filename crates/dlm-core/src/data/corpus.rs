//! Text corpora: files → documents → token ids (cached on disk) → train/valid/test sequences.

use std::path::{Path, PathBuf};

use super::dataset::{SequenceDataset, wrap_documents};
use crate::checkpoint::{read_sections, write_sections};
use crate::error::{CoreError, ensure_value};
use crate::tokenizer::Tokenizer;

/// The `.txt` files of the folder `dir` (not its subfolders), in name order: a corpus fetched
/// as one file per document.
///
/// # Errors
/// [`CoreError::Io`] naming `dir` when it cannot be read; [`CoreError::EmptyCorpus`] when it
/// holds no `.txt` file.
pub fn text_files(dir: &Path) -> Result<Vec<PathBuf>, CoreError> {
    let io = |source| CoreError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "txt") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(CoreError::EmptyCorpus { what: format!("{}: no .txt file", dir.display()) });
    }
    files.sort();
    Ok(files)
}

/// Reads UTF-8 text files, one document per file.
///
/// # Errors
/// [`CoreError::Io`] for an unreadable file, [`CoreError::NotUtf8`] for a file that is not
/// UTF-8, [`CoreError::EmptyCorpus`] if there are no files or they hold only whitespace.
pub fn read_documents(paths: &[PathBuf]) -> Result<Vec<String>, CoreError> {
    let mut documents = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes =
            std::fs::read(path).map_err(|source| CoreError::Io { path: path.clone(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| CoreError::NotUtf8 {
            path: path.clone(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        documents.push(text);
    }
    if documents.iter().all(|d| d.trim().is_empty()) {
        let what = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(CoreError::EmptyCorpus {
            what: if what.is_empty() { "no files".into() } else { what },
        });
    }
    Ok(documents)
}

/// FNV-1a over several byte strings, each terminated by its length.
fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&(part.len() as u64).to_le_bytes()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Token ids of every document, read from `cache_dir` when an entry for exactly these texts and
/// this tokenizer exists, else computed and stored there (atomically, with a checksum).
///
/// # Errors
/// Tokenizer errors; [`CoreError::Io`] if the cache cannot be written. A damaged cache entry is
/// recomputed, not trusted.
pub fn tokenize_documents(
    documents: &[String],
    tokenizer: &Tokenizer,
    cache_dir: Option<&Path>,
) -> Result<Vec<Vec<u32>>, CoreError> {
    let tokenizer_id = tokenizer.fingerprint()?;
    let key = fingerprint(
        std::iter::once(tokenizer_id.as_bytes()).chain(documents.iter().map(String::as_bytes)),
    );
    let entry = cache_dir.map(|dir| dir.join(format!("{key:016x}.tokens")));
    let cached =
        entry.as_deref().and_then(|e| read_cache(e, documents.len(), tokenizer.vocab_size()));
    if let Some(tokens) = cached {
        return Ok(tokens);
    }
    let tokens = documents.iter().map(|d| tokenizer.encode(d)).collect::<Result<Vec<_>, _>>()?;
    if let Some(entry) = &entry {
        let mut bytes = (tokens.len() as u64).to_le_bytes().to_vec();
        for doc in &tokens {
            bytes.extend_from_slice(&(doc.len() as u64).to_le_bytes());
        }
        for id in tokens.iter().flatten() {
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        write_sections(entry, &[("tokens", &bytes)])?;
    }
    Ok(tokens)
}

/// The ids of a cache entry, if it reads as `n_docs` documents of ids below `vocab_size`
/// (anything else, a damaged or foreign entry, is recomputed by the caller). Every length read
/// from the file is checked before it sizes an allocation or an offset.
fn read_cache(path: &Path, n_docs: usize, vocab_size: usize) -> Option<Vec<Vec<u32>>> {
    let sections = read_sections(path).ok()?;
    let bytes = sections.get("tokens").ok()?;
    let word = |i: usize| {
        let at = i.checked_mul(8)?;
        bytes.get(at..at.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().expect("8")))
    };
    if usize::try_from(word(0)?).ok()? != n_docs {
        return None;
    }
    let lens: Vec<usize> = (1..=n_docs)
        .map(|i| word(i).and_then(|w| usize::try_from(w).ok()))
        .collect::<Option<_>>()?;
    let mut at = (n_docs + 1).checked_mul(8)?;
    let mut documents = Vec::with_capacity(n_docs);
    for len in lens {
        let end = len.checked_mul(4).and_then(|n| at.checked_add(n))?;
        let chunk = bytes.get(at..end)?;
        let ids: Vec<u32> =
            chunk.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4"))).collect();
        if ids.iter().any(|&id| id as usize >= vocab_size) {
            return None;
        }
        documents.push(ids);
        at = end;
    }
    (at == bytes.len()).then_some(documents)
}

/// Train, validation and test sequences of one corpus.
#[derive(Debug, Clone)]
pub struct CorpusSplits {
    /// Training sequences.
    pub train: SequenceDataset,
    /// Validation sequences.
    pub valid: SequenceDataset,
    /// Test sequences.
    pub test: SequenceDataset,
}

/// Wraps the documents into sequences of `seq_len` (see [`wrap_documents`]) and splits them
/// deterministically: the last `test_fraction` of the sequences are the test set, the
/// `valid_fraction` before them the validation set, the rest (the beginning of the corpus) the
/// training set.
///
/// # Errors
/// [`CoreError::Invalid`] for fractions outside `(0, 0.5)`, or if
/// a split would be empty or the corpus is shorter than one sequence.
pub fn split_corpus(
    documents: &[Vec<u32>],
    tokenizer: &Tokenizer,
    seq_len: usize,
    valid_fraction: f64,
    test_fraction: f64,
) -> Result<CorpusSplits, CoreError> {
    for (name, f) in [("valid_fraction", valid_fraction), ("test_fraction", test_fraction)] {
        ensure_value(f > 0.0 && f < 0.5, "corpus split", name, f, "a value in (0, 0.5)")?;
    }
    let all = wrap_documents(documents, seq_len, tokenizer.vocab_size(), tokenizer.special())?;
    let n = all.len();
    let n_test = ((n as f64 * test_fraction).round() as usize).max(1);
    let n_valid = ((n as f64 * valid_fraction).round() as usize).max(1);
    let n_train = n.saturating_sub(n_test + n_valid);
    let mut parts = all.split(&[n_train, n_valid])?.into_iter();
    let (train, valid, test) = (parts.next(), parts.next(), parts.next());
    Ok(CorpusSplits {
        train: train.expect("three parts"),
        valid: valid.expect("three parts"),
        test: test.expect("three parts"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{ByteTokenizer, CharTokenizer};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dlm-corpus-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn text_files_lists_the_txt_files_in_name_order() {
        let dir = scratch("listing");
        for name in ["b.txt", "a.txt", "notes.md", "c.txt"] {
            std::fs::write(dir.join(name), "text").unwrap();
        }
        std::fs::create_dir_all(dir.join("sub.txt")).unwrap();
        let names: Vec<String> = text_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.txt", "b.txt", "c.txt"]);
        let empty = scratch("listing-empty");
        assert!(matches!(text_files(&empty), Err(CoreError::EmptyCorpus { .. })));
        match text_files(&dir.join("absent")) {
            Err(CoreError::Io { path, .. }) => assert!(path.ends_with("absent")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reads_caches_and_splits() {
        let dir = scratch("ok");
        let files: Vec<PathBuf> = (0..3)
            .map(|i| {
                let path = dir.join(format!("doc{i}.txt"));
                std::fs::write(&path, format!("document {i}: ").repeat(40)).unwrap();
                path
            })
            .collect();
        let docs = read_documents(&files).unwrap();
        let tokenizer =
            Tokenizer::Char(CharTokenizer::from_texts(docs.iter().map(String::as_str)).unwrap());
        let cache = dir.join("cache");
        let first = tokenize_documents(&docs, &tokenizer, Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        let cached = tokenize_documents(&docs, &tokenizer, Some(&cache)).unwrap();
        assert_eq!(first, cached);
        // Another tokenizer gets its own entry.
        let bytes =
            tokenize_documents(&docs, &Tokenizer::Byte(ByteTokenizer), Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        assert_ne!(bytes, first);
        // A damaged entry is recomputed.
        for entry in std::fs::read_dir(&cache).unwrap() {
            std::fs::write(entry.unwrap().path(), b"DLMCKPT\0garbage").unwrap();
        }
        assert_eq!(tokenize_documents(&docs, &tokenizer, Some(&cache)).unwrap(), first);

        let splits = split_corpus(&first, &tokenizer, 16, 0.1, 0.1).unwrap();
        let total = splits.train.len() + splits.valid.len() + splits.test.len();
        // "document i: " is 12 characters; each document gains [BOS] and [EOS].
        assert_eq!(total, (3 * (12 * 40 + 2)) / 16);
        assert_eq!(splits.test.len(), (total as f64 * 0.1).round() as usize);
        assert_eq!(splits.train.sequence(0)[0], tokenizer.special().bos);
    }

    #[test]
    fn bad_corpora_give_typed_errors() {
        let dir = scratch("bad");
        let latin1 = dir.join("latin1.txt");
        std::fs::write(&latin1, b"caf\xe9").unwrap();
        assert!(matches!(read_documents(&[latin1]), Err(CoreError::NotUtf8 { offset: 3, .. })));
        let blank = dir.join("blank.txt");
        std::fs::write(&blank, "  \n").unwrap();
        assert!(matches!(read_documents(&[blank]), Err(CoreError::EmptyCorpus { .. })));
        assert!(matches!(read_documents(&[]), Err(CoreError::EmptyCorpus { .. })));
        assert!(matches!(read_documents(&[dir.join("absent.txt")]), Err(CoreError::Io { .. })));
        let tokenizer = Tokenizer::Byte(ByteTokenizer);
        let short = vec![vec![5u32; 10]];
        assert!(split_corpus(&short, &tokenizer, 64, 0.1, 0.1).is_err());
        assert!(split_corpus(&short, &tokenizer, 2, 0.0, 0.1).is_err());
    }
}
