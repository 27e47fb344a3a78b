//! The words of a text, to check whether a character-level model spells: the share of a
//! sample's words that are words of its training text is an exact, readable quality figure for a
//! small character model, read beside the same share for held-out text of the corpus (what a
//! perfect model scores) and for letters drawn by their frequencies (what a model that learned
//! only the alphabet scores).

use std::collections::HashSet;

/// The words of a text: its maximal runs of alphabetic characters, lowercased (an apostrophe or a
/// hyphen ends a word, so `don't` is `don` and `t`).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// How many of a text's words a [`Lexicon`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WordCount {
    /// Words in the text.
    pub words: usize,
    /// Those in the lexicon.
    pub known: usize,
}

impl WordCount {
    /// `known / words`; `None` for a text without words.
    pub fn share(&self) -> Option<f64> {
        (self.words > 0).then(|| self.known as f64 / self.words as f64)
    }
}

impl std::ops::Add for WordCount {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self { words: self.words + other.words, known: self.known + other.known }
    }
}

/// The set of [`words`] of a reference text.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    words: HashSet<String>,
}

impl Lexicon {
    /// The words of `text`.
    pub fn from_text(text: &str) -> Self {
        Self { words: words(text).collect() }
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the reference text had no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether `word` (lowercased) is one of them.
    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(&word.to_lowercase())
    }

    /// The words of `text` of two letters or more and how many of them the lexicon holds
    /// (one-letter words are left out: every letter is one in some text, and a sample of
    /// scattered letters would score with them).
    pub fn count(&self, text: &str) -> WordCount {
        let long = words(text).filter(|w| w.chars().nth(1).is_some());
        long.fold(WordCount::default(), |count, word| WordCount {
            words: count.words + 1,
            known: count.known + usize::from(self.words.contains(&word)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_letter_runs() {
        let found: Vec<String> = words("`Curiouser and curiouser!' cried Alice—don't").collect();
        assert_eq!(found, ["curiouser", "and", "curiouser", "cried", "alice", "don", "t"]);
        assert_eq!(words(" 12, ... ").count(), 0);
    }

    #[test]
    fn the_count_is_of_words_not_distinct_words() {
        let lexicon = Lexicon::from_text("the cat sat on the mat");
        assert_eq!(lexicon.len(), 5);
        assert!(lexicon.contains("Cat") && !lexicon.contains("dog"));
        let count = lexicon.count("The dog sat, the dog ran a b");
        assert_eq!(count, WordCount { words: 6, known: 3 }, "one-letter words are not counted");
        assert_eq!(count.share(), Some(0.5));
        assert_eq!(lexicon.count("?!").share(), None);
        assert_eq!((count + count).known, 6);
    }
}
