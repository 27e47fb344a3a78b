//! The corpus pipeline on a real text (Alice in Wonderland from the Canterbury corpus).
//!
//! Needs `scripts/fetch-data.sh canterbury`; `.ci/run` fetches it and runs these tests with
//! `cargo test --workspace --test real_corpus --test bert_parity -- --ignored`.

use std::path::PathBuf;

use dlm_core::data::{read_documents, split_corpus, tokenize_documents};
use dlm_core::tokenizer::{CharTokenizer, HfTokenizer, Tokenizer};

fn alice() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/canterbury/alice29.txt");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-data.sh canterbury", path.display());
    path
}

#[test]
#[ignore = "needs data/ from scripts/fetch-data.sh"]
fn bpe_round_trips_alice_and_compresses_it() {
    let files = [alice()];
    let documents = read_documents(&files).unwrap();
    let tokenizer = HfTokenizer::train_bpe(&files, 2048).unwrap();
    let ids = tokenizer.encode(&documents[0]).unwrap();
    assert_eq!(tokenizer.decode(&ids).unwrap(), documents[0]);
    // 152 kB of English in a 2k BPE: well under half a token per byte.
    let ratio = ids.len() as f64 / documents[0].len() as f64;
    assert!(ratio < 0.4, "{ratio}");
}

#[test]
#[ignore = "needs data/ from scripts/fetch-data.sh"]
fn alice_splits_into_sequences_with_cached_ids() {
    let files = [alice()];
    let documents = read_documents(&files).unwrap();
    let tokenizer =
        Tokenizer::Char(CharTokenizer::from_texts(documents.iter().map(String::as_str)).unwrap());
    let cache = std::env::temp_dir().join(format!("dlm-real-corpus-{}", std::process::id()));
    let ids = tokenize_documents(&documents, &tokenizer, Some(&cache)).unwrap();
    assert_eq!(ids[0].len(), documents[0].chars().count());
    assert_eq!(tokenize_documents(&documents, &tokenizer, Some(&cache)).unwrap(), ids);
    let splits = split_corpus(&ids, &tokenizer, 256, 0.05, 0.05).unwrap();
    let total = splits.train.len() + splits.valid.len() + splits.test.len();
    assert_eq!(total, (ids[0].len() + 2) / 256);
    assert!(splits.valid.len() >= 20 && splits.test.len() >= 20);
}
