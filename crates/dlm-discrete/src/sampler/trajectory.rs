//! Decoding trajectories: what every step of a sampler changed, as JSON Lines, and their replay.

use serde::{Deserialize, Serialize};

use crate::error::{DiscreteError, ensure_size};

/// A position a step decoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Position in the row.
    pub position: usize,
    /// The token it now holds.
    pub token: i64,
    /// The policy's confidence in it, for policies that rank by one (top-k, threshold, factor,
    /// entropy bound: the negative entropy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// What one step changed in one row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowChanges {
    /// Positions decoded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub committed: Vec<Commit>,
    /// Positions masked again (ReMDM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remasked: Vec<usize>,
    /// Decoded positions given another token ([`super::TokenEditing`]), with the proposal's
    /// probability as the confidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edited: Vec<Commit>,
}

/// Why the tokens changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A denoising step of the policy.
    Denoise,
    /// The last argmax that fills what is still masked (MDLM's noise removal).
    NoiseRemoval,
    /// Positions after a row's stop token set to the padding
    /// ([`super::MaskedSampler::with_stop_tokens`]).
    Padding,
    /// A model call that writes a finished block into a KV cache and changes no token (BD3LM's
    /// block sampler).
    CacheUpdate,
}

/// One step of a trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryStep {
    /// What the step was.
    pub kind: StepKind,
    /// The block it worked on, `[start, end)`.
    pub block: [usize; 2],
    /// Model calls so far, this step's included.
    pub nfe: usize,
    /// The changes, one entry per row.
    pub rows: Vec<RowChanges>,
}

impl TrajectoryStep {
    /// The step that turned `before` into `after` (row-major `[batch, len]`), every changed
    /// position as a commit without a confidence: how the noise removal and the padding are
    /// recorded.
    pub fn between(
        kind: StepKind,
        block: [usize; 2],
        nfe: usize,
        before: &[i64],
        after: &[i64],
        len: usize,
    ) -> Self {
        let rows = before
            .chunks(len)
            .zip(after.chunks(len))
            .map(|(before, after)| RowChanges {
                committed: (0..len)
                    .filter(|&i| before[i] != after[i])
                    .map(|i| Commit { position: i, token: after[i], confidence: None })
                    .collect(),
                ..RowChanges::default()
            })
            .collect();
        Self { kind, block, nfe, rows }
    }

    /// Whether the step changed any token.
    pub fn changes_anything(&self) -> bool {
        self.rows.iter().any(|row| {
            !row.committed.is_empty() || !row.remasked.is_empty() || !row.edited.is_empty()
        })
    }
}

/// The start of a trajectory: the tokens decoding began from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Header {
    batch: usize,
    seq_len: usize,
    mask_id: u32,
    initial: Vec<i64>,
}

/// Everything a sampler did, step by step (record one by passing `&mut Trajectory::default()`
/// as the [`super::Observer`] of [`super::MaskedSampler::sample_observed`]): the starting tokens and, per step, the positions each
/// row committed (with the token and the policy's confidence), edited or masked again. Replaying it
/// ([`Trajectory::replay`]) gives the sampler's tokens, with no model.
///
/// As JSON Lines ([`Trajectory::to_jsonl`]): a first line `{"batch", "seq_len", "mask_id",
/// "initial"}`, then one line per step `{"kind", "block", "nfe", "rows": [{"committed":
/// [{"position", "token", "confidence"}], "remasked": [...], "edited": [...]}]}` (empty lists
/// left out).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trajectory {
    header: Header,
    /// The steps, in order.
    pub steps: Vec<TrajectoryStep>,
}

impl Trajectory {
    pub(crate) fn new(batch: usize, seq_len: usize, mask_id: u32, initial: Vec<i64>) -> Self {
        Self { header: Header { batch, seq_len, mask_id, initial }, steps: Vec::new() }
    }

    /// Rows.
    pub fn batch(&self) -> usize {
        self.header.batch
    }

    /// Positions per row.
    pub fn seq_len(&self) -> usize {
        self.header.seq_len
    }

    /// The tokens decoding started from, row-major `[batch, seq_len]`.
    pub fn initial(&self) -> &[i64] {
        &self.header.initial
    }

    /// Model calls of the whole decoding.
    pub fn nfe(&self) -> usize {
        self.steps.last().map_or(0, |step| step.nfe)
    }

    /// The tokens after every step, row-major `[batch, seq_len]`.
    pub fn replay(&self) -> Vec<i64> {
        let mut tokens = self.header.initial.clone();
        let (len, mask) = (self.header.seq_len, i64::from(self.header.mask_id));
        for step in &self.steps {
            for (row, changes) in tokens.chunks_mut(len).zip(&step.rows) {
                for commit in changes.committed.iter().chain(&changes.edited) {
                    row[commit.position] = commit.token;
                }
                for &position in &changes.remasked {
                    row[position] = mask;
                }
            }
        }
        tokens
    }

    /// The trajectory as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut out = serde_json::to_string(&self.header).expect("plain data serialises");
        out.push('\n');
        for step in &self.steps {
            out.push_str(&serde_json::to_string(step).expect("plain data serialises"));
            out.push('\n');
        }
        out
    }

    /// Reads [`Trajectory::to_jsonl`]'s format back.
    ///
    /// # Errors
    /// [`DiscreteError::Trajectory`] naming the line of a line that does not parse;
    /// [`DiscreteError::Invalid`] for `initial` of another length than `batch · seq_len`, a
    /// step with another number of rows than `batch`, or a position outside the row.
    pub fn from_jsonl(text: &str) -> Result<Self, DiscreteError> {
        let mut lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
        let parse_error = |line: usize, err: serde_json::Error| DiscreteError::Trajectory {
            line: line + 1,
            message: err.to_string(),
        };
        let (number, first) = lines.next().ok_or(DiscreteError::Trajectory {
            line: 1,
            message: "empty: expected a header line".into(),
        })?;
        let header: Header = serde_json::from_str(first).map_err(|e| parse_error(number, e))?;
        const CONTEXT: &str = "trajectory";
        let (batch, len) = (header.batch, header.seq_len);
        let cells = batch.checked_mul(len);
        ensure_size(
            cells == Some(header.initial.len()),
            CONTEXT,
            "initial",
            header.initial.len(),
            format!("batch · seq_len = {batch} · {len}"),
        )?;
        let mut steps = Vec::new();
        for (number, line) in lines {
            let step: TrajectoryStep =
                serde_json::from_str(line).map_err(|e| parse_error(number, e))?;
            ensure_size(
                step.rows.len() == batch,
                CONTEXT,
                "rows",
                step.rows.len(),
                format!("batch = {batch} (line {})", number + 1),
            )?;
            let positions = step.rows.iter().flat_map(|row| {
                let changed = row.committed.iter().chain(&row.edited).map(|c| c.position);
                changed.chain(row.remasked.iter().copied())
            });
            for position in positions {
                ensure_size(
                    position < len,
                    CONTEXT,
                    "position",
                    position,
                    format!("a position below seq_len = {len} (line {})", number + 1),
                )?;
            }
            steps.push(step);
        }
        Ok(Self { header, steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trips_and_bad_lines_are_named() {
        let mut trajectory = Trajectory::new(1, 3, 9, vec![9, 9, 9]);
        trajectory.steps.push(TrajectoryStep {
            kind: StepKind::Denoise,
            block: [0, 3],
            nfe: 1,
            rows: vec![RowChanges {
                committed: vec![Commit { position: 2, token: 4, confidence: Some(0.5) }],
                remasked: vec![],
                edited: vec![],
            }],
        });
        trajectory.steps.push(TrajectoryStep {
            kind: StepKind::Denoise,
            block: [0, 3],
            nfe: 2,
            rows: vec![RowChanges {
                committed: vec![Commit { position: 1, token: 6, confidence: Some(0.7) }],
                remasked: vec![],
                edited: vec![Commit { position: 2, token: 8, confidence: Some(0.95) }],
            }],
        });
        trajectory.steps.push(TrajectoryStep {
            kind: StepKind::Denoise,
            block: [0, 3],
            nfe: 3,
            rows: vec![RowChanges {
                committed: vec![Commit { position: 0, token: 5, confidence: None }],
                remasked: vec![2],
                edited: vec![],
            }],
        });
        let text = trajectory.to_jsonl();
        assert_eq!(text.lines().count(), 4);
        assert_eq!(Trajectory::from_jsonl(&text).unwrap(), trajectory);
        assert_eq!(trajectory.replay(), [5, 6, 9], "committed, edited, then masked again");
        assert_eq!(trajectory.nfe(), 3);

        let bad_line = text.replace("\"nfe\":3", "\"nfe\":\"three\"");
        let err = Trajectory::from_jsonl(&bad_line).unwrap_err();
        assert!(matches!(err, DiscreteError::Trajectory { line: 4, .. }), "{err}");
        let edited_outside =
            text.replace("\"position\":2,\"token\":8", "\"position\":7,\"token\":8");
        assert!(Trajectory::from_jsonl(&edited_outside).is_err(), "edits are checked too");
        let outside = text.replace("\"position\":2", "\"position\":3");
        assert!(Trajectory::from_jsonl(&outside).unwrap_err().to_string().contains("position"));
        let short = text.replace("[9,9,9]", "[9,9]");
        assert!(Trajectory::from_jsonl(&short).unwrap_err().to_string().contains("initial"));
        assert!(Trajectory::from_jsonl("").is_err());
    }
}
