//! A seeded sparse Markov source whose entropy rate is known exactly.

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, ensure_size};
use crate::tokenizer::SpecialTokens;
use dlm_sched::InvalidInput;

mod posterior;

const CONTEXT: &str = "Markov source";
/// The largest number of contexts `V^k` a source may have.
const MAX_CONTEXTS: usize = 1 << 20;

/// Parameters of a [`MarkovSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkovSourceConfig {
    /// Number of symbols `V`.
    pub n_symbols: usize,
    /// Order `k`: the next symbol depends on the last `k`.
    pub order: usize,
    /// Number of possible next symbols per context (sparsity), `1 ≤ b ≤ V`.
    pub branching: usize,
    /// Seed of the transition table.
    pub seed: u64,
}

/// An order-`k` Markov chain over `V` symbols in which each context allows `b` next symbols
/// with random probabilities, and whose entropy rate is computed exactly:
///
/// `H = −Σ_c π(c) Σ_x P(x | c) ln P(x | c)` nats/token (Cover & Thomas 2006, Thm. 4.2.4),
///
/// with `π` the stationary distribution over the `V^k` contexts. One of the `b` symbols allowed
/// after each context is the one that follows it in a de Bruijn sequence `B(V, k)`, so the chain
/// visits every context: it is irreducible and `π` is unique. `π` is found by power iteration on
/// the lazy chain `(I + P)/2`, which has the same `π` and converges even when `P` is periodic.
/// Sequences start from `π`, so every window is stationary.
///
/// It is the ground truth of the project's likelihood experiments: a model's NLL per token on
/// positions with a full context is bounded below by `H`, and `sequence_entropy(L)` is the exact
/// entropy of a whole sample. Symbols are emitted as token ids `SpecialTokens::COUNT + x`.
#[derive(Debug, Clone)]
pub struct MarkovSource {
    config: MarkovSourceConfig,
    /// `next_symbols[c·b + j]`, the `j`-th allowed symbol after context `c`.
    next_symbols: Vec<u32>,
    /// `next_probs[c·b + j]`, its probability.
    next_probs: Vec<f64>,
    /// Stationary distribution over contexts.
    stationary: Vec<f64>,
}

impl MarkovSource {
    /// Builds the chain.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for `V < 2`, `k = 0`, `b ∉ [1, V]` or `V^k > 2²⁰`.
    pub fn new(config: MarkovSourceConfig) -> Result<Self, CoreError> {
        let MarkovSourceConfig { n_symbols, order, branching, seed } = config;
        ensure_size(n_symbols >= 2, CONTEXT, "n_symbols", n_symbols, "at least 2")?;
        ensure_size(order >= 1, CONTEXT, "order", order, "at least 1")?;
        ensure_size(
            (1..=n_symbols).contains(&branching),
            CONTEXT,
            "branching",
            branching,
            format!("between 1 and n_symbols = {n_symbols}"),
        )?;
        let n_contexts = n_symbols
            .checked_pow(order as u32)
            .filter(|&n| n <= MAX_CONTEXTS)
            .ok_or_else(|| {
                CoreError::Invalid(InvalidInput::size(
                    CONTEXT,
                    "order",
                    order,
                    format!("n_symbols^order <= {MAX_CONTEXTS} contexts"),
                ))
            })?;
        let cycle = de_bruijn_successors(n_symbols, order);
        debug_assert_eq!(cycle.len(), n_contexts);
        let mut rng = StdRng::seed_from_u64(seed);
        let (next_symbols, next_probs) = random_table(&cycle, n_symbols, branching, &mut rng);
        let source = Self { config, next_symbols, next_probs, stationary: Vec::new() };
        let stationary = source.stationary_distribution();
        Ok(Self { stationary, ..source })
    }

    /// The parameters.
    pub fn config(&self) -> MarkovSourceConfig {
        self.config
    }

    /// Vocabulary size of the emitted tokens: the symbols plus the reserved special tokens.
    pub fn vocab_size(&self) -> usize {
        self.config.n_symbols + SpecialTokens::COUNT as usize
    }

    fn n_contexts(&self) -> usize {
        self.next_symbols.len() / self.config.branching
    }

    fn successor(&self, context: usize, symbol: u32) -> usize {
        (context * self.config.n_symbols + symbol as usize) % self.n_contexts()
    }

    /// `π` by power iteration of the lazy chain `π ← (π + πP)/2` from uniform, until the L1
    /// change is below `1e-15` (or 10⁶ iterations).
    fn stationary_distribution(&self) -> Vec<f64> {
        let n = self.n_contexts();
        let b = self.config.branching;
        let mut pi = vec![1.0 / n as f64; n];
        for _ in 0..1_000_000 {
            let mut next: Vec<f64> = pi.iter().map(|p| 0.5 * p).collect();
            for (c, &mass) in pi.iter().enumerate() {
                for j in 0..b {
                    next[self.successor(c, self.next_symbols[c * b + j])] +=
                        0.5 * mass * self.next_probs[c * b + j];
                }
            }
            let change: f64 = pi.iter().zip(&next).map(|(a, b)| (a - b).abs()).sum();
            pi = next;
            if change < 1e-15 {
                break;
            }
        }
        pi
    }

    /// The entropy rate `H` in nats per token.
    pub fn entropy_rate(&self) -> f64 {
        let b = self.config.branching;
        self.stationary
            .iter()
            .enumerate()
            .map(|(c, &pi)| {
                let h: f64 = self.next_probs[c * b..(c + 1) * b]
                    .iter()
                    .filter(|&&p| p > 0.0)
                    .map(|&p| -p * p.ln())
                    .sum();
                pi * h
            })
            .sum()
    }

    /// The exact entropy `H(x_1, …, x_L)` in nats of a sample of length `len`: the entropy of
    /// its first `min(L, k)` symbols under `π`, plus `H` for each later one.
    pub fn sequence_entropy(&self, len: usize) -> f64 {
        let k = self.config.order;
        let head = len.min(k);
        // Marginal of the first `head` symbols: contexts grouped by their leading symbols.
        let group = self.config.n_symbols.pow((k - head) as u32);
        let mut marginal = vec![0.0; self.n_contexts() / group];
        for (c, &pi) in self.stationary.iter().enumerate() {
            marginal[c / group] += pi;
        }
        let head_entropy: f64 = marginal.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum();
        head_entropy + len.saturating_sub(k) as f64 * self.entropy_rate()
    }

    /// The exact entropy per token of a whole sample of length `len`, `H(x_1, …, x_L)/L`: what a
    /// likelihood bound on whole sequences (an NELBO) is compared with. 0 for `len = 0`.
    pub fn entropy_per_token(&self, len: usize) -> f64 {
        if len == 0 {
            return 0.0;
        }
        self.sequence_entropy(len) / len as f64
    }

    /// The exact entropy per token of positions `2..L` given the ones before them,
    /// `(H(x_1, …, x_L) − H(x_1))/(L − 1)` by the chain rule: what an autoregressive model
    /// scored from the second position on is compared with (the first position has no context).
    /// 0 for `len ≤ 1`.
    pub fn conditional_entropy_per_token(&self, len: usize) -> f64 {
        if len <= 1 {
            return 0.0;
        }
        (self.sequence_entropy(len) - self.sequence_entropy(1)) / (len - 1) as f64
    }

    /// Scores a token sequence under the true chain: the transitions after the first `k` tokens,
    /// their summed log-probability over the possible ones, and how many are impossible (a token
    /// the chain never emits after its context, or not a symbol at all). A sampler that draws
    /// from the chain scores `−log_prob/possible ≈ H` and no impossible transition.
    pub fn score(&self, tokens: &[u32]) -> MarkovScore {
        let (n, k, b) = (self.config.n_symbols, self.config.order, self.config.branching);
        let symbol = |t: u32| t.checked_sub(SpecialTokens::COUNT).filter(|&s| (s as usize) < n);
        let mut score = MarkovScore { log_prob: 0.0, possible: 0, impossible: 0 };
        for window in tokens.windows(k + 1) {
            let symbols: Option<Vec<u32>> = window.iter().map(|&t| symbol(t)).collect();
            let Some(symbols) = symbols else {
                score.impossible += 1;
                continue;
            };
            let context = symbols[..k].iter().fold(0usize, |c, &s| c * n + s as usize);
            let next = symbols[k];
            match (0..b).find(|&j| self.next_symbols[context * b + j] == next) {
                Some(j) => {
                    score.log_prob += self.next_probs[context * b + j].ln();
                    score.possible += 1;
                }
                None => score.impossible += 1,
            }
        }
        score
    }

    /// `ln p(x_1, …, x_L)` of a token sequence under the stationary chain: `ln π` of its first
    /// `min(L, k)` symbols (summed over the contexts they begin) plus the log-probabilities of its
    /// transitions; `−∞` if the chain cannot produce it. Its mean over samples is
    /// `−sequence_entropy(L)`.
    pub fn log_prob(&self, tokens: &[u32]) -> f64 {
        let (n, k) = (self.config.n_symbols, self.config.order);
        let head = tokens.len().min(k);
        let symbols: Option<Vec<usize>> = tokens[..head]
            .iter()
            .map(|&t| t.checked_sub(SpecialTokens::COUNT).map(|s| s as usize).filter(|&s| s < n))
            .collect();
        let Some(symbols) = symbols else {
            return f64::NEG_INFINITY;
        };
        let prefix = symbols.iter().fold(0, |c, &s| c * n + s);
        let group = n.pow((k - head) as u32);
        let p_head: f64 = self.stationary[prefix * group..(prefix + 1) * group].iter().sum();
        let transitions = self.score(tokens);
        if transitions.impossible > 0 || p_head == 0.0 {
            f64::NEG_INFINITY
        } else {
            p_head.ln() + transitions.log_prob
        }
    }

    /// Draws a sequence of `len` tokens, starting from the stationary distribution.
    pub fn sample<R: Rng + ?Sized>(&self, len: usize, rng: &mut R) -> Vec<u32> {
        let (n, k, b) = (self.config.n_symbols, self.config.order, self.config.branching);
        let mut context = draw(&self.stationary, rng.random::<f64>());
        // The context's k symbols, oldest first.
        let mut symbols: Vec<u32> =
            (0..k).rev().map(|i| ((context / n.pow(i as u32)) % n) as u32).collect();
        while symbols.len() < len {
            let j = draw(&self.next_probs[context * b..(context + 1) * b], rng.random::<f64>());
            let symbol = self.next_symbols[context * b + j];
            symbols.push(symbol);
            context = self.successor(context, symbol);
        }
        symbols.truncate(len);
        symbols.into_iter().map(|x| x + SpecialTokens::COUNT).collect()
    }
}

/// For every context `c` (the base-`V` number of its `k` symbols), the symbol that follows it in
/// the de Bruijn sequence `B(V, k)`, which contains every context exactly once (cyclically).
/// The sequence is built by the FKM algorithm (concatenating the Lyndon words whose length
/// divides `k`, in lexicographic order; Fredricksen & Maiorana 1978).
fn de_bruijn_successors(n_symbols: usize, order: usize) -> Vec<u32> {
    let mut sequence = Vec::with_capacity(n_symbols.pow(order as u32));
    let mut word = vec![0usize; order + 1];
    let mut t = 1;
    loop {
        if order.is_multiple_of(t) {
            sequence.extend_from_slice(&word[1..=t]);
        }
        // Next pre-necklace: increment the last non-maximal symbol, repeat the prefix.
        t = order;
        while t > 0 && word[t] == n_symbols - 1 {
            t -= 1;
        }
        if t == 0 {
            break;
        }
        word[t] += 1;
        for j in t + 1..=order {
            word[j] = word[j - t];
        }
    }
    let len = sequence.len();
    let mut successor = vec![0u32; len];
    for i in 0..len {
        let context = (0..order).fold(0, |c, j| c * n_symbols + sequence[(i + j) % len]);
        successor[context] = sequence[(i + order) % len] as u32;
    }
    successor
}

/// How a sequence scores under the true chain (see [`MarkovSource::score`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarkovScore {
    /// Summed log-probability of the possible transitions.
    pub log_prob: f64,
    /// Transitions the chain allows.
    pub possible: usize,
    /// Transitions it never makes.
    pub impossible: usize,
}

impl MarkovScore {
    /// Mean negative log-probability of the possible transitions (0 when there are none).
    pub fn nll_of_possible(&self) -> f64 {
        if self.possible == 0 { 0.0 } else { -self.log_prob / self.possible as f64 }
    }

    /// Fraction of the scored transitions the chain never makes (0 when none were scored).
    pub fn impossible_fraction(&self) -> f64 {
        let total = self.possible + self.impossible;
        if total == 0 { 0.0 } else { self.impossible as f64 / total as f64 }
    }
}

impl std::iter::Sum for MarkovScore {
    /// The score of several sequences: log-probabilities and counts add.
    fn sum<I: Iterator<Item = Self>>(scores: I) -> Self {
        scores.fold(Self { log_prob: 0.0, possible: 0, impossible: 0 }, |a, b| Self {
            log_prob: a.log_prob + b.log_prob,
            possible: a.possible + b.possible,
            impossible: a.impossible + b.impossible,
        })
    }
}

/// `b` distinct next symbols per context, the de Bruijn successor among them, with probabilities
/// uniform on the simplex.
fn random_table(
    cycle: &[u32],
    n_symbols: usize,
    branching: usize,
    rng: &mut StdRng,
) -> (Vec<u32>, Vec<f64>) {
    let mut symbols = Vec::with_capacity(cycle.len() * branching);
    let mut probs = Vec::with_capacity(cycle.len() * branching);
    for &forced in cycle {
        // The forced symbol, then b − 1 others drawn from the remaining V − 1.
        let others = rand::seq::index::sample(rng, n_symbols - 1, branching - 1);
        let chosen = std::iter::once(forced)
            .chain(others.iter().map(|x| if x as u32 >= forced { x as u32 + 1 } else { x as u32 }));
        // Normalised exponentials: a Dirichlet(1, …, 1) draw.
        let weights: Vec<f64> = (0..branching).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
        let total: f64 = weights.iter().sum();
        for (x, w) in chosen.zip(weights) {
            symbols.push(x);
            probs.push(w / total);
        }
    }
    (symbols, probs)
}

/// Inverse-CDF draw of an index from `probs` with the uniform `u`.
fn draw(probs: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    for (i, p) in probs.iter().enumerate() {
        cumulative += p;
        if u < cumulative {
            return i;
        }
    }
    probs.len() - 1
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn source(n_symbols: usize, order: usize, branching: usize) -> MarkovSource {
        MarkovSource::new(MarkovSourceConfig { n_symbols, order, branching, seed: 3 }).unwrap()
    }

    #[test]
    fn stationary_distribution_is_invariant() {
        let s = source(6, 2, 3);
        let (n, b) = (s.n_contexts(), 3);
        let mut next = vec![0.0; n];
        for c in 0..n {
            for j in 0..b {
                next[s.successor(c, s.next_symbols[c * b + j])] +=
                    s.stationary[c] * s.next_probs[c * b + j];
            }
        }
        assert!((s.stationary.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for (a, b) in s.stationary.iter().zip(next) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn empirical_conditional_entropy_matches_the_entropy_rate() {
        // Plug-in estimate of H(x_t | last k symbols) from one long sample.
        let s = source(5, 2, 3);
        let mut rng = StdRng::seed_from_u64(9);
        let xs = s.sample(400_000, &mut rng);
        let mut counts: HashMap<(u32, u32), HashMap<u32, usize>> = HashMap::new();
        for w in xs.windows(3) {
            *counts.entry((w[0], w[1])).or_default().entry(w[2]).or_default() += 1;
        }
        let total = (xs.len() - 2) as f64;
        let estimate: f64 = counts
            .values()
            .map(|next| {
                let n: usize = next.values().sum();
                let h: f64 = next
                    .values()
                    .map(|&c| {
                        let p = c as f64 / n as f64;
                        -p * p.ln()
                    })
                    .sum();
                n as f64 / total * h
            })
            .sum();
        let exact = s.entropy_rate();
        assert!((estimate - exact).abs() < 0.01, "{estimate} vs {exact}");
        assert!(exact > 0.2 && exact < 3f64.ln(), "{exact}");
    }

    #[test]
    fn samples_score_at_the_entropy_rate_and_shuffles_do_not() {
        let s = source(8, 2, 3);
        let xs = s.sample(100_000, &mut StdRng::seed_from_u64(3));
        let score = s.score(&xs);
        assert_eq!(score.impossible, 0);
        assert_eq!(score.impossible_fraction(), 0.0);
        let nll = score.nll_of_possible();
        assert!((nll - s.entropy_rate()).abs() < 0.02, "{nll} vs {}", s.entropy_rate());
        let reversed: Vec<u32> = xs.iter().rev().copied().collect();
        assert!(s.score(&reversed).impossible > 10_000);
        assert_eq!(s.score(&[0, 1, 2]).impossible, 1, "special tokens are not symbols");
    }

    #[test]
    fn scores_of_pieces_sum_to_the_score_of_the_whole() {
        let s = source(8, 2, 3);
        let mut xs = s.sample(2_000, &mut StdRng::seed_from_u64(4));
        xs[1_500] = xs[1_499]; // Likely an impossible transition or two.
        let whole = s.score(&xs);
        // Pieces overlapping by the order score every transition exactly once.
        let summed: MarkovScore = [&xs[..1_000], &xs[998..]].iter().map(|p| s.score(p)).sum();
        assert_eq!((summed.possible, summed.impossible), (whole.possible, whole.impossible));
        assert!((summed.log_prob - whole.log_prob).abs() < 1e-9);
        let total = (whole.possible + whole.impossible) as f64;
        assert_eq!(whole.impossible_fraction(), whole.impossible as f64 / total);
        let empty = MarkovScore { log_prob: 0.0, possible: 0, impossible: 0 };
        assert_eq!((empty.nll_of_possible(), empty.impossible_fraction()), (0.0, 0.0));
    }

    #[test]
    fn sequence_entropy_adds_the_head_and_the_rate() {
        let s = source(4, 2, 2);
        let rate = s.entropy_rate();
        // Past the order, every symbol adds exactly H.
        assert!((s.sequence_entropy(10) - s.sequence_entropy(9) - rate).abs() < 1e-12);
        // The head never exceeds k·ln V and the first symbol's entropy is at most ln V.
        assert!(s.sequence_entropy(2) <= 2.0 * 4f64.ln() + 1e-12);
        assert!(s.sequence_entropy(1) <= 4f64.ln() + 1e-12);
        assert!(s.sequence_entropy(0).abs() < 1e-12);
    }

    #[test]
    fn per_token_entropies_match_an_enumeration_of_every_sequence() {
        // H(x_1..L) and H(x_1) by brute force over all V^L sequences, for a source whose head
        // (order 2) and tail (L − k = 2 transitions) both count.
        let (n, len) = (3, 4);
        let source = source(n, 2, 2);
        let sequences = (0..n.pow(len as u32)).map(|index| {
            (0..len)
                .map(|i| ((index / n.pow(i as u32)) % n) as u32 + SpecialTokens::COUNT)
                .collect::<Vec<u32>>()
        });
        let mut whole = 0.0;
        let mut first = vec![0.0; n];
        for tokens in sequences {
            let p = source.log_prob(&tokens).exp();
            if p > 0.0 {
                whole -= p * p.ln();
            }
            first[(tokens[0] - SpecialTokens::COUNT) as usize] += p;
        }
        let first: f64 = first.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum();
        let per_token = whole / len as f64;
        let conditional = (whole - first) / (len - 1) as f64;
        assert!((source.entropy_per_token(len) - per_token).abs() < 1e-12);
        assert!((source.conditional_entropy_per_token(len) - conditional).abs() < 1e-12);
        assert!(conditional < per_token, "context lowers the entropy");
        assert_eq!(source.entropy_per_token(0), 0.0);
        assert_eq!(source.conditional_entropy_per_token(1), 0.0);
        // Far past the order, both tend to the entropy rate.
        let rate = source.entropy_rate();
        assert!((source.conditional_entropy_per_token(100_000) - rate).abs() < 1e-4);
    }

    #[test]
    fn log_probs_sum_to_one_and_average_to_minus_the_entropy() {
        for (n, k, b, len) in [(3, 2, 2, 5), (2, 3, 2, 2), (4, 1, 3, 4)] {
            let source = source(n, k, b);
            let total: f64 = (0..n.pow(len as u32))
                .map(|index| {
                    let tokens: Vec<u32> = (0..len)
                        .map(|i| ((index / n.pow(i as u32)) % n) as u32 + SpecialTokens::COUNT)
                        .collect();
                    source.log_prob(&tokens).exp()
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-12, "({n}, {k}, {b}, {len}): {total}");
        }
        let source = source(8, 2, 3);
        let mut rng = StdRng::seed_from_u64(4);
        let samples = 20_000;
        let mean: f64 =
            (0..samples).map(|_| -source.log_prob(&source.sample(12, &mut rng))).sum::<f64>()
                / samples as f64;
        let exact = source.sequence_entropy(12);
        assert!((mean / exact - 1.0).abs() < 0.01, "{mean} vs {exact}");
        assert_eq!(source.log_prob(&[0, 5, 6]), f64::NEG_INFINITY);
    }

    #[test]
    fn samples_are_seeded_tokens_in_range() {
        let s = source(7, 3, 2);
        let a = s.sample(50, &mut StdRng::seed_from_u64(1));
        let b = s.sample(50, &mut StdRng::seed_from_u64(1));
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        assert!(a.iter().all(|&t| t >= SpecialTokens::COUNT && (t as usize) < s.vocab_size()));
        assert_eq!(s.sample(2, &mut StdRng::seed_from_u64(1)).len(), 2);
    }

    #[test]
    fn de_bruijn_cycle_visits_every_context_once() {
        for (n, k) in [(2, 3), (3, 2), (4, 3), (5, 1)] {
            let successor = de_bruijn_successors(n, k);
            let contexts = n.pow(k as u32);
            let (mut context, mut seen) = (0, vec![false; contexts]);
            for _ in 0..contexts {
                assert!(!seen[context], "V = {n}, k = {k}: revisited {context}");
                seen[context] = true;
                context = (context * n + successor[context] as usize) % contexts;
            }
            assert_eq!(context, 0, "V = {n}, k = {k}: not a cycle");
        }
    }

    #[test]
    fn a_deterministic_cycle_has_zero_entropy_and_uniform_stationary_law() {
        // b = 1 is the de Bruijn permutation itself: periodic, yet π is found (uniform).
        let s = source(3, 2, 1);
        assert!(s.entropy_rate().abs() < 1e-12);
        assert!(s.stationary.iter().all(|p| (p - 1.0 / 9.0).abs() < 1e-12));
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad = |n_symbols, order, branching| {
            MarkovSource::new(MarkovSourceConfig { n_symbols, order, branching, seed: 0 })
        };
        assert!(matches!(
            bad(1, 1, 1),
            Err(CoreError::Invalid(InvalidInput { name: "n_symbols", .. }))
        ));
        assert!(matches!(
            bad(4, 0, 2),
            Err(CoreError::Invalid(InvalidInput { name: "order", .. }))
        ));
        assert!(matches!(
            bad(4, 1, 5),
            Err(CoreError::Invalid(InvalidInput { name: "branching", .. }))
        ));
        assert!(matches!(
            bad(4, 1, 0),
            Err(CoreError::Invalid(InvalidInput { name: "branching", .. }))
        ));
        assert!(matches!(
            bad(64, 4, 2),
            Err(CoreError::Invalid(InvalidInput { name: "order", .. }))
        ));
    }
}
