//! The log-likelihood of a token sequence under a masked denoiser, split over its tokens: what an
//! evaluation harness reads from `/v1/completions` with `echo` and `logprobs` to score the answers
//! of a multiple-choice task.
//!
//! A masked diffusion model has no single factorisation of `log p(x)`; two splits are offered
//! ([`LikelihoodSplit`]), each a sum over tokens that is, for any prefix, the likelihood of what
//! follows it:
//!
//! - **Chain** — the left-to-right chain rule of the model read as an any-order autoregressive
//!   model (Ou et al. 2024): token `i` scores `log p_θ(x_i | x_{<i})`, the model's prediction at
//!   `i` with `x_{<i}` visible and every later position masked. One row per token; the sum over
//!   the tokens after any split point is the exact log-probability of that continuation under the
//!   left-to-right factorisation, so a client can choose the split (an OpenAI-style harness sends
//!   context and continuation as one prompt).
//! - **NELBO** — the masked-diffusion bound of the tokens from `context` on given the ones before
//!   (LLaDA's conditional likelihood bound, Nie et al. 2025, eq. 6, with the lower-variance
//!   estimator of their `get_log_likelihood.py` that draws the number of masked tokens):
//!   `log p(x_c | x_{<c}) ≥ E_l [ (L/l) Σ_{i ∈ M_l} log p_θ(x_i | x_{∖M_l}) ]` with `L` tokens to
//!   score, `l ~ U{1..L}` and `M_l` a uniformly random set of `l` of them. Token `i`'s share is
//!   the average of `(L/l_j) · 1[i ∈ M_j] · log p_θ(x_i | ·)` over the samples `j`; the shares
//!   sum to the Monte-Carlo bound, and each weight `(L/l)·1[i ∈ M_l]` has expectation 1. The `l_j`
//!   are stratified as in the reference (`l_j = ((round(k + j·L/K) − 1) mod L) + 1`, one uniform
//!   `k`), and the masks of one sequence are consecutive windows of one random order of the `L`
//!   positions, so each mask alone is a uniformly random set of its size (the estimator stays
//!   unbiased) and together they cover every position once `K ≥ 3` (or `K ≥ L`).
//!
//! For a block-causal model (SDAR, BD3LM), both read each block given the clean blocks before it
//! (Arriola et al. 2025, eq. 8: `log p(x) = Σ_b log p(x_b | x_{<b})`), and the sequence is padded
//! with masks to whole blocks (the positions past its end stay masked, as in generation, which
//! marginalises them); the NELBO then draws its masks block by block.
//!
//! Beside each token's share, [`TokenLikelihood::top`] lists the best alternatives at its position
//! under the same weights (the chain: the model's distribution at `i`; the NELBO: the weighted
//! sum `Σ_j (L/(l_j K)) 1[i ∈ M_j] log p_θ(v | ·)` of its predictions at `i`, not a
//! log-probability but ranked as their average is), so "is the scored token the top choice at
//! every position" — a harness's greedy check — compares like with like.

use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use dlm_sched::InvalidInput;
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size};

/// How a sequence's log-likelihood is split over its tokens (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikelihoodSplit {
    /// `log p_θ(x_i | x_{<i})` for every token from `from` on, later positions masked (tokens
    /// before `from` are not scored, and cost nothing).
    Chain {
        /// The first scored position.
        from: usize,
    },
    /// The Monte-Carlo masked-diffusion bound of the tokens from `context` on, given the tokens
    /// before, from `samples` masks per block.
    Nelbo {
        /// Tokens given, not scored.
        context: usize,
        /// Masks drawn per block (`K`).
        samples: usize,
    },
}

/// The log-likelihood of a sequence, token by token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLikelihood {
    /// Each token's share of `log p` (nats); `None` for the tokens given, not scored.
    pub logprobs: Vec<Option<f64>>,
    /// Each scored position's best alternatives under the same weights, best first (`(token,
    /// value)`); empty where the token is not scored.
    pub top: Vec<Vec<(u32, f64)>>,
    /// Sequences the model read.
    pub rows: usize,
    /// Model calls (batches of rows).
    pub calls: usize,
}

impl TokenLikelihood {
    /// The sum of the scored tokens' shares: `log p` of the scored part (chain) or its bound
    /// (NELBO).
    pub fn total(&self) -> f64 {
        self.logprobs.iter().flatten().sum()
    }

    /// Whether every scored token is its position's best alternative.
    pub fn is_greedy(&self, tokens: &[u32]) -> bool {
        tokens.iter().zip(&self.top).all(|(token, top)| top.first().is_none_or(|(t, _)| t == token))
    }
}

/// Scores sequences under a masked denoiser ([`LikelihoodSplit`]), a fixed number of rows per
/// model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLikelihoods {
    block_size: Option<usize>,
    rows_per_call: usize,
    top: usize,
}

/// A sequence for the model to read and the positions of it that are scored, with their weights.
struct Row {
    tokens: Vec<u32>,
    scored: Vec<(usize, f64)>,
}

impl TokenLikelihoods {
    /// For a full-attention model (`block_size = None`) or a block-causal one, reading
    /// `rows_per_call` sequences per model call and listing `top` alternatives per position.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `block_size = Some(0)` or `rows_per_call = 0`.
    pub fn new(
        block_size: Option<usize>,
        rows_per_call: usize,
        top: usize,
    ) -> Result<Self, DiscreteError> {
        const CONTEXT: &str = "token likelihoods";
        if let Some(b) = block_size {
            ensure_size(b > 0, CONTEXT, "block_size", b, "at least 1")?;
        }
        ensure_size(rows_per_call > 0, CONTEXT, "rows_per_call", rows_per_call, "at least 1")?;
        Ok(Self { block_size, rows_per_call, top })
    }

    /// `tokens` scored by `model`, split as `split`; `rng` draws the NELBO's masks.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming `tokens` for an empty sequence, a token outside the
    /// model's vocabulary or the mask itself, or a sequence (padded to whole blocks) longer than
    /// the model reads; naming `context` when no token is left to score, and `samples` for fewer
    /// than `min(3, L)` masks per block of `L` scored tokens (some token would never be masked).
    pub fn score<D: MaskedDenoiser + ?Sized>(
        &self,
        model: &D,
        tokens: &[u32],
        split: LikelihoodSplit,
        rng: &mut StdRng,
    ) -> Result<TokenLikelihood, DiscreteError> {
        const CONTEXT: &str = "token likelihoods";
        let n = tokens.len();
        ensure_size(n > 0, CONTEXT, "tokens", n, "at least one token")?;
        let mask_id = model.mask_id();
        let vocab_size = model.vocab_size();
        if let Some((i, &t)) =
            tokens.iter().enumerate().find(|(_, t)| **t == mask_id || **t as usize >= vocab_size)
        {
            return Err(InvalidInput::size_element(
                CONTEXT,
                "tokens",
                i,
                t as usize,
                format!("a token id below {vocab_size}, not the mask {mask_id}"),
            )
            .into());
        }
        let padded = self.block_size.map_or(n, |b| n.div_ceil(b) * b);
        if let Some(max) = model.max_seq_len() {
            ensure_size(
                padded <= max,
                CONTEXT,
                "tokens",
                padded,
                format!("at most the model's max_seq_len = {max} (padded to whole blocks)"),
            )?;
        }
        let rows = match split {
            LikelihoodSplit::Chain { from } => self.chain_rows(tokens, padded, mask_id, from),
            LikelihoodSplit::Nelbo { context, samples } => {
                ensure_size(context < n, CONTEXT, "context", context, format!("below {n} tokens"))?;
                self.nelbo_rows(tokens, padded, mask_id, context, samples, rng)?
            }
        };
        Ok(self.read(model, tokens, padded, &rows))
    }

    /// Row `i`: `x_{<i}` and masks from `i` on; it scores position `i` with weight 1.
    fn chain_rows(&self, tokens: &[u32], padded: usize, mask_id: u32, from: usize) -> Vec<Row> {
        (from.min(tokens.len())..tokens.len())
            .map(|i| {
                let mut row = vec![mask_id; padded];
                row[..i].copy_from_slice(&tokens[..i]);
                Row { tokens: row, scored: vec![(i, 1.0)] }
            })
            .collect()
    }

    /// `samples` rows per block holding scored positions: the blocks before it clean, its scored
    /// positions masked in windows of a random order (module docs), later blocks masked.
    fn nelbo_rows(
        &self,
        tokens: &[u32],
        padded: usize,
        mask_id: u32,
        context: usize,
        samples: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<Row>, DiscreteError> {
        let n = tokens.len();
        let block = self.block_size.unwrap_or(padded);
        let mut rows = Vec::new();
        for start in (0..padded).step_by(block) {
            let end = start + block;
            let mut order: Vec<usize> = (start.max(context)..end.min(n)).collect();
            let len = order.len();
            if len == 0 {
                continue;
            }
            ensure_size(
                samples >= len.min(3),
                "token likelihoods",
                "samples",
                samples,
                format!(
                    "at least {} so that each of the {len} scored tokens is masked",
                    len.min(3)
                ),
            )?;
            order.shuffle(rng);
            let k = rng.random_range(1..=len);
            let mut next = 0;
            for l in stratified_mask_counts(k, len, samples) {
                let mut row = vec![mask_id; padded];
                row[..end.min(n)].copy_from_slice(&tokens[..end.min(n)]);
                let weight = len as f64 / (l as f64 * samples as f64);
                let scored: Vec<(usize, f64)> =
                    (0..l).map(|t| (order[(next + t) % len], weight)).collect();
                for &(i, _) in &scored {
                    row[i] = mask_id;
                }
                next += l;
                rows.push(Row { tokens: row, scored });
            }
        }
        Ok(rows)
    }

    /// Reads `rows` in batches and accumulates, per position, the weighted log-probabilities
    /// `Σ_r w_{r,i} log p_θ(· | row r)` (added into a `[n, vocab]` table).
    fn read<D: MaskedDenoiser + ?Sized>(
        &self,
        model: &D,
        tokens: &[u32],
        padded: usize,
        rows: &[Row],
    ) -> TokenLikelihood {
        let n = tokens.len();
        let device = model.device();
        let mask_id = model.mask_id();
        let mut scored = vec![false; n];
        let mut accumulated: Option<Tensor<2>> = None;
        let mut calls = 0;
        for batch in batches(rows, self.rows_per_call, MAX_PICKS_PER_CALL) {
            let b = batch.len();
            let ids: Vec<i64> =
                batch.iter().flat_map(|r| r.tokens.iter().map(|&t| i64::from(t))).collect();
            let z_t = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, padded]), &device);
            // The masked share of each row: the log-linear schedule's time for it (read only by
            // time-conditioned models).
            let t: Vec<f32> = batch
                .iter()
                .map(|r| r.tokens.iter().filter(|&&x| x == mask_id).count() as f32 / padded as f32)
                .collect();
            let t = Tensor::<1>::from_data(TensorData::new(t, [b]), &device);
            let picks: Vec<(usize, usize, f64)> = batch
                .iter()
                .enumerate()
                .flat_map(|(r, row)| row.scored.iter().map(move |&(i, w)| (r, i, w)))
                .collect();
            let flat: Vec<i64> = picks.iter().map(|&(r, i, _)| (r * padded + i) as i64).collect();
            let flat = Tensor::<1, Int>::from_data(TensorData::new(flat, [picks.len()]), &device);
            let log_probs = model.row_log_probs(z_t, t, flat);
            let vocab = log_probs.dims()[1];
            let weights: Vec<f32> = picks.iter().map(|&(_, _, w)| w as f32).collect();
            let weights = Tensor::<1>::from_data(TensorData::new(weights, [picks.len()]), &device);
            let positions: Vec<i64> = picks.iter().map(|&(_, i, _)| i as i64).collect();
            let positions =
                Tensor::<1, Int>::from_data(TensorData::new(positions, [picks.len()]), &device);
            for &(_, i, _) in &picks {
                scored[i] = true;
            }
            // Σ_r w_{r,i} log p(· | row r) added into position i's row (a weight of 1 adds the
            // values unchanged).
            let weighted = log_probs * weights.unsqueeze_dim::<2>(1);
            let acc = accumulated.unwrap_or_else(|| Tensor::zeros([n, vocab], &device));
            accumulated = Some(acc.select_assign(0, positions, weighted, IndexingUpdateOp::Add));
            calls += 1;
        }
        let Some(accumulated) = accumulated else {
            return TokenLikelihood {
                logprobs: vec![None; n],
                top: vec![Vec::new(); n],
                rows: 0,
                calls,
            };
        };
        let targets: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
        let own: Vec<f32> =
            accumulated.clone().gather(1, targets).into_data().iter::<f32>().collect();
        let vocab = accumulated.dims()[1];
        let k = self.top.min(vocab);
        let top: Vec<Vec<(u32, f64)>> = if k == 0 {
            vec![Vec::new(); n]
        } else {
            let (values, indices) = accumulated.topk_with_indices(k, 1);
            let values: Vec<f32> = values.into_data().iter::<f32>().collect();
            let indices: Vec<i64> = indices.into_data().iter::<i64>().collect();
            (0..n)
                .map(|i| {
                    (0..k)
                        .map(|j| (indices[i * k + j] as u32, f64::from(values[i * k + j])))
                        .collect()
                })
                .collect()
        };
        TokenLikelihood {
            logprobs: (0..n).map(|i| scored[i].then_some(f64::from(own[i]))).collect(),
            top: top
                .into_iter()
                .zip(&scored)
                .map(|(t, &s)| if s { t } else { Vec::new() })
                .collect(),
            rows: rows.len(),
            calls,
        }
    }
}

/// Scored positions per model call at most (each is a `vocab`-wide row of log-probabilities),
/// unless one row alone has more.
const MAX_PICKS_PER_CALL: usize = 512;

/// Consecutive runs of `rows`, each of at most `max_rows` rows and, unless a row alone has more,
/// `max_picks` scored positions.
fn batches(rows: &[Row], max_rows: usize, max_picks: usize) -> Vec<&[Row]> {
    let mut out = Vec::new();
    let (mut start, mut picks) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let full = i - start == max_rows || picks + row.scored.len() > max_picks;
        if i > start && full {
            out.push(&rows[start..i]);
            (start, picks) = (i, 0);
        }
        picks += row.scored.len();
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// The numbers of masked tokens of `samples` stratified draws out of `len` (LLaDA's
/// `get_log_likelihood.py`): `l_j = ((round(k + j·len/samples) − 1) mod len) + 1` for one
/// uniform `k ∈ 1..=len`, each in `1..=len`, together spread evenly over it.
pub fn stratified_mask_counts(k: usize, len: usize, samples: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    (0..samples)
        .map(|j| {
            let x = (k as f64 + j as f64 * len as f64 / samples as f64).round() as usize;
            (x - 1) % len + 1
        })
        .collect()
}

#[cfg(test)]
mod tests;
