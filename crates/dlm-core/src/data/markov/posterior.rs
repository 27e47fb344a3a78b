//! Exact posterior marginals of a [`MarkovSource`] given some observed tokens: the
//! forward–backward algorithm (Rabiner 1989, eqs. 19–27) on the chain of contexts.

use super::{CONTEXT, MarkovSource};
use crate::error::CoreError;
use crate::tokenizer::SpecialTokens;

impl MarkovSource {
    /// `p(x_i | observed)` for every position `i` of a stationary sample, where `observed[i]` is
    /// `Some(token)` for a seen token and `None` for a hidden one: one distribution over the
    /// token vocabulary ([`Self::vocab_size`]; the special tokens get 0) per position.
    ///
    /// The hidden state at position `i ≥ k − 1` is the context `c_i = (x_{i−k+1}, …, x_i)`; it
    /// starts from the stationary law `π` and moves to `(x_{i−k+2}, …, x_{i+1})` with probability
    /// `P(x_{i+1} | c_i)`. With the indicator `e_i(x)` of "`x` agrees with the observation at
    /// `i`", the forward messages are `α_{k−1}(c) = π(c) Π_{j<k} e_j(c_j)` and
    /// `α_{i+1}(c') = Σ_c α_i(c) P(x | c) e_{i+1}(x)` over the `(c, x)` with `c' = (c, x)`'s last
    /// `k` symbols; the backward ones `β_{L−1} = 1`,
    /// `β_i(c) = Σ_x P(x | c) e_{i+1}(x) β_{i+1}(c')`; and `p(c_i | observed) ∝ α_i(c) β_i(c)`,
    /// whose last symbol is `x_i` (the first `k − 1` symbols are read from `c_{k−1}`). Messages
    /// are renormalised at every position; the cost is `O(L · V^k · b)`.
    ///
    /// This is the Bayes-optimal masked-diffusion denoiser for the source: its NELBO equals the
    /// sequence entropy in expectation.
    ///
    /// # Errors
    /// [`CoreError::ImpossibleObservation`] if the observed tokens have probability 0 under the
    /// chain (a token that is not a symbol, or a transition the chain never makes), naming the
    /// first position at which no path remains.
    pub fn posterior(&self, observed: &[Option<u32>]) -> Result<Vec<Vec<f64>>, CoreError> {
        let offset = SpecialTokens::COUNT;
        self.forward_backward(observed.len(), |i, symbol| {
            match observed.get(i).copied().flatten() {
                None => 1.0,
                Some(token) => f64::from(u8::from(token.checked_sub(offset) == Some(symbol))),
            }
        })
    }

    /// `p(x_i | evidence)` under soft evidence: `likelihoods[i][v]` is the probability of what
    /// was observed at position `i` given that the clean token there is `v` (over the token
    /// vocabulary, [`Self::vocab_size`]; the special tokens' entries are never read). A hidden
    /// position has every entry 1, a seen one the indicator of its token ([`Self::posterior`]);
    /// a token seen through a noisy channel (SEDD's uniform graph: kept with probability
    /// `e^{−σ}`, else resampled uniformly) has the channel's row. The same forward–backward pass
    /// as [`Self::posterior`], with `e_i(x)` the likelihood instead of an indicator.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming `likelihoods[i].len()` if a row does not cover the
    /// vocabulary, or a likelihood that is negative or not finite;
    /// [`CoreError::ImpossibleObservation`] if the evidence has probability 0 under the chain.
    pub fn posterior_with_likelihoods(
        &self,
        likelihoods: &[Vec<f64>],
    ) -> Result<Vec<Vec<f64>>, CoreError> {
        let vocab = self.vocab_size();
        for row in likelihoods {
            crate::error::ensure_size(
                row.len() == vocab,
                CONTEXT,
                "likelihoods[i].len()",
                row.len(),
                format!("the vocabulary size {vocab}"),
            )?;
            crate::error::ensure_value(
                row.iter().all(|l| *l >= 0.0 && l.is_finite()),
                CONTEXT,
                "likelihood",
                row.iter().copied().find(|l| !(*l >= 0.0 && l.is_finite())).unwrap_or(0.0),
                "finite and >= 0",
            )?;
        }
        let offset = SpecialTokens::COUNT as usize;
        self.forward_backward(likelihoods.len(), |i, symbol| {
            likelihoods.get(i).map_or(1.0, |row| row[symbol as usize + offset])
        })
    }

    /// Forward–backward over `max(len, k)` positions with evidence `e_i(symbol)` (positions past
    /// `len` are hidden), the marginals of the first `len` positions.
    fn forward_backward(
        &self,
        len: usize,
        evidence: impl Fn(usize, u32) -> f64,
    ) -> Result<Vec<Vec<f64>>, CoreError> {
        let (n, k, b) = (self.config.n_symbols, self.config.order, self.config.branching);
        let n_contexts = self.n_contexts();
        let offset = SpecialTokens::COUNT;
        let observed_len = len;
        // Work on at least `k` positions: a shorter sample is the head of a stationary window.
        let len = len.max(k);
        let weight =
            |i: usize, symbol: u32| if i < observed_len { evidence(i, symbol) } else { 1.0 };
        let digit = |c: usize, j: usize| ((c / n.pow((k - 1 - j) as u32)) % n) as u32;
        let impossible = |position: usize| CoreError::ImpossibleObservation {
            context: CONTEXT,
            position: position.min(observed_len.saturating_sub(1)),
        };

        // alphas[i − (k − 1)] is α_i.
        let mut alphas: Vec<Vec<f64>> = Vec::with_capacity(len - k + 1);
        let first: Vec<f64> = (0..n_contexts)
            .map(|c| self.stationary[c] * (0..k).map(|j| weight(j, digit(c, j))).product::<f64>())
            .collect();
        alphas.push(normalised(first).ok_or_else(|| impossible(k - 1))?);
        for i in k..len {
            let previous = &alphas[alphas.len() - 1];
            let mut alpha = vec![0.0; n_contexts];
            for (c, &mass) in previous.iter().enumerate().filter(|(_, m)| **m > 0.0) {
                for j in 0..b {
                    let symbol = self.next_symbols[c * b + j];
                    let e = weight(i, symbol);
                    if e > 0.0 {
                        alpha[self.successor(c, symbol)] += mass * self.next_probs[c * b + j] * e;
                    }
                }
            }
            alphas.push(normalised(alpha).ok_or_else(|| impossible(i))?);
        }

        let mut marginals = vec![vec![0.0; self.vocab_size()]; len];
        let mut beta = vec![1.0; n_contexts];
        for i in (k - 1..len).rev() {
            if i + 1 < len {
                let next_beta: Vec<f64> = (0..n_contexts)
                    .map(|c| {
                        (0..b)
                            .map(|j| {
                                let symbol = self.next_symbols[c * b + j];
                                self.next_probs[c * b + j]
                                    * weight(i + 1, symbol)
                                    * beta[self.successor(c, symbol)]
                            })
                            .sum()
                    })
                    .collect();
                // Cannot vanish where α does not: α_{i+1} > 0 somewhere was reached from α_i.
                beta = normalised(next_beta).ok_or_else(|| impossible(i + 1))?;
            }
            let gamma = normalised(
                alphas[i + 1 - k]
                    .iter()
                    .zip(&beta)
                    .map(|(forward, backward)| forward * backward)
                    .collect(),
            )
            .ok_or_else(|| impossible(i))?;
            let positions = if i == k - 1 { 0..k } else { i..i + 1 };
            for position in positions {
                let j = position + k - 1 - i;
                for (c, &p) in gamma.iter().enumerate() {
                    marginals[position][(digit(c, j) + offset) as usize] += p;
                }
            }
        }
        marginals.truncate(observed_len);
        Ok(marginals)
    }
}

/// `v / Σ v`, or `None` if the sum is 0.
fn normalised(mut v: Vec<f64>) -> Option<Vec<f64>> {
    let total: f64 = v.iter().sum();
    if total <= 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= total);
    Some(v)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::data::MarkovSourceConfig;

    fn source(n_symbols: usize, order: usize, branching: usize) -> MarkovSource {
        MarkovSource::new(MarkovSourceConfig { n_symbols, order, branching, seed: 5 }).unwrap()
    }

    /// Marginals by enumerating every sequence of `max(len, k)` symbols.
    fn brute_force(source: &MarkovSource, observed: &[Option<u32>]) -> Vec<Vec<f64>> {
        let n = source.config.n_symbols;
        let len = observed.len().max(source.config.order);
        let mut marginals = vec![vec![0.0; source.vocab_size()]; len];
        let mut total = 0.0;
        for index in 0..n.pow(len as u32) {
            let tokens: Vec<u32> = (0..len)
                .map(|i| ((index / n.pow(i as u32)) % n) as u32 + SpecialTokens::COUNT)
                .collect();
            if tokens.iter().zip(observed).any(|(t, o)| o.is_some_and(|o| o != *t)) {
                continue;
            }
            let p = source.log_prob(&tokens).exp();
            total += p;
            for (i, &t) in tokens.iter().enumerate() {
                marginals[i][t as usize] += p;
            }
        }
        marginals.iter_mut().flatten().for_each(|p| *p /= total);
        marginals.truncate(observed.len());
        marginals
    }

    fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>]) {
        for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
            for (x, (pa, pb)) in ra.iter().zip(rb).enumerate() {
                assert!((pa - pb).abs() < 1e-12, "position {i}, token {x}: {pa} vs {pb}");
            }
        }
    }

    #[test]
    fn marginals_match_bayes_rule_by_enumeration() {
        let token = |s: u32| Some(s + SpecialTokens::COUNT);
        for (n, k, b) in [(3, 1, 2), (3, 2, 2), (2, 3, 2), (4, 2, 3)] {
            let source = source(n, k, b);
            let sample = source.sample(7, &mut StdRng::seed_from_u64(n as u64 + k as u64));
            // Hide a scattered set, including the first and last positions and a run.
            for hidden in [vec![0, 2, 3, 6], vec![1, 4, 5], (0..7).collect(), vec![]] {
                let observed: Vec<Option<u32>> = sample
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| if hidden.contains(&i) { None } else { Some(t) })
                    .collect();
                let exact = source.posterior(&observed).unwrap();
                assert_close(&exact, &brute_force(&source, &observed));
                for row in &exact {
                    assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                }
            }
            // Shorter than the order: the head of a stationary window.
            let short = [None, token(1)][..k.min(2)].to_vec();
            assert_close(&source.posterior(&short).unwrap(), &brute_force(&source, &short));
        }
    }

    #[test]
    fn soft_evidence_marginals_match_bayes_rule_by_enumeration() {
        // Every sequence weighted by p(x)·Π_i e_i(x_i); a likelihood that is not multiplied in
        // at one position (or is read at the wrong one) moves the marginals.
        use rand::RngExt;
        for (n, k, b) in [(3, 1, 2), (3, 2, 2), (2, 3, 2)] {
            let source = source(n, k, b);
            let mut rng = StdRng::seed_from_u64(9);
            let vocab = source.vocab_size();
            let likelihoods: Vec<Vec<f64>> =
                (0..6).map(|_| (0..vocab).map(|_| rng.random::<f64>()).collect()).collect();
            let mut expected = vec![vec![0.0; vocab]; 6];
            let mut total = 0.0;
            for index in 0..n.pow(6) {
                let tokens: Vec<u32> = (0..6)
                    .map(|i| ((index / n.pow(i as u32)) % n) as u32 + SpecialTokens::COUNT)
                    .collect();
                let p = source.log_prob(&tokens).exp()
                    * tokens
                        .iter()
                        .enumerate()
                        .map(|(i, &t)| likelihoods[i][t as usize])
                        .product::<f64>();
                total += p;
                for (i, &t) in tokens.iter().enumerate() {
                    expected[i][t as usize] += p;
                }
            }
            expected.iter_mut().flatten().for_each(|p| *p /= total);
            assert_close(&source.posterior_with_likelihoods(&likelihoods).unwrap(), &expected);
        }
    }

    #[test]
    fn malformed_likelihoods_are_errors_naming_the_field() {
        let source = source(3, 2, 2);
        let short = vec![vec![1.0; source.vocab_size() - 1]];
        let err = source.posterior_with_likelihoods(&short).unwrap_err();
        assert!(err.to_string().contains("likelihoods[i].len()"), "{err}");
        let mut negative = vec![vec![1.0; source.vocab_size()]];
        negative[0][SpecialTokens::COUNT as usize] = -0.5;
        let err = source.posterior_with_likelihoods(&negative).unwrap_err();
        assert!(err.to_string().contains("likelihood"), "{err}");
    }

    #[test]
    fn a_fully_hidden_position_follows_the_stationary_law() {
        let source = source(4, 2, 3);
        let marginals = source.posterior(&[None; 5]).unwrap();
        // The symbol frequencies of π (its last symbol) at every position.
        let mut expected = vec![0.0; source.vocab_size()];
        for (c, &p) in source.stationary.iter().enumerate() {
            expected[c % 4 + SpecialTokens::COUNT as usize] += p;
        }
        for row in &marginals {
            assert_close(std::slice::from_ref(row), std::slice::from_ref(&expected));
        }
    }

    #[test]
    fn impossible_observations_are_errors_naming_the_position() {
        let source = source(3, 1, 1); // deterministic: each symbol has one successor
        let sample = source.sample(4, &mut StdRng::seed_from_u64(0));
        let mut observed: Vec<Option<u32>> = sample.iter().map(|&t| Some(t)).collect();
        assert!(source.posterior(&observed).is_ok());
        // Replace the third token by a symbol that cannot follow the second.
        let wrong = (0..3).map(|s| s + SpecialTokens::COUNT).find(|&t| t != sample[2]).unwrap();
        observed[2] = Some(wrong);
        let err = source.posterior(&observed).unwrap_err();
        assert!(matches!(err, CoreError::ImpossibleObservation { position: 2, .. }), "{err}");
        // A special token is never emitted.
        let err = source.posterior(&[Some(0)]).unwrap_err();
        assert!(matches!(err, CoreError::ImpossibleObservation { position: 0, .. }), "{err}");
    }
}
