//! Token-to-token editing (LLaDA 2.1's joint threshold): decoded tokens the model now predicts
//! otherwise, with confidence, are replaced.

use serde::{Deserialize, Serialize};

use crate::error::{DiscreteError, ensure_value};

/// LLaDA 2.1's token-to-token rule (T2T, its "joint threshold" beside the mask-to-token rule):
/// at every step, each decoded free position of the current block whose proposal differs from
/// its token, with the proposal's probability `> threshold`, takes the proposal. Decoded means
/// decoded when the step began (the reference compares with the block as it was before the step,
/// so a step both fills masks and edits). Once a block has no masked position left, up to
/// `max_post_steps` more model calls edit it, stopping at the first that changes nothing.
///
/// Editing reads the model's own prediction at decoded positions, which SUBS replaces by the
/// current token ([`crate::MaskedDenoiser::region_predictions`]); the mask-to-token rule is the
/// sampler's [`super::Unmasking`] policy (LLaDA 2.1's is [`super::Unmasking::Threshold`] at 0.95).
/// Defaults ([`Default`]): threshold 0.9 and 16 post steps, the model's `generate` and dllm's
/// `LLaDA21Sampler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct TokenEditing {
    threshold: f64,
    max_post_steps: usize,
}

dlm_sched::serde_validated!(TokenEditing);

impl Default for TokenEditing {
    fn default() -> Self {
        Self { threshold: 0.9, max_post_steps: 16 }
    }
}

impl TokenEditing {
    /// Editing above `threshold`, with at most `max_post_steps` edit-only calls per block.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `0 ≤ threshold < 1` (a probability is never `> 1`, so
    /// `1` would edit nothing).
    pub fn new(threshold: f64, max_post_steps: usize) -> Result<Self, DiscreteError> {
        ensure_value(
            (0.0..1.0).contains(&threshold),
            "token editing",
            "threshold",
            threshold,
            "a value in [0, 1)",
        )?;
        Ok(Self { threshold, max_post_steps })
    }

    pub(crate) fn validate(&self) -> Result<(), DiscreteError> {
        Self::new(self.threshold, self.max_post_steps).map(drop)
    }

    /// The probability a differing proposal must exceed.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Edit-only model calls per block once it has no mask left.
    pub fn max_post_steps(&self) -> usize {
        self.max_post_steps
    }

    /// The positions of one row to edit: `decoded` (free, decoded when the step began) where the
    /// proposal differs from the token and its probability exceeds the threshold (compared in
    /// `f32`, the probabilities' precision, as the reference's float32 tensors).
    pub(crate) fn select(
        &self,
        decoded: &[bool],
        tokens: &[i64],
        proposals: &[i64],
        probability: &[f32],
    ) -> Vec<bool> {
        (0..decoded.len())
            .map(|i| {
                decoded[i] && proposals[i] != tokens[i] && probability[i] > self.threshold as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_need_a_decoded_position_a_new_token_and_the_threshold() {
        let editing = TokenEditing::new(0.8, 16).unwrap();
        let decoded = [true, true, true, false, true];
        let tokens = [4, 5, 6, 9, 7];
        let proposals = [4, 8, 2, 3, 1];
        let probability = [0.99, 0.85, 0.8, 0.99, 0.5];
        // 0: same token; 1: differs, 0.85 > 0.8; 2: 0.8 is not > 0.8; 3: masked; 4: too unsure.
        let edit = editing.select(&decoded, &tokens, &proposals, &probability);
        assert_eq!(edit, [false, true, false, false, false]);
        let eager = TokenEditing::new(0.0, 16).unwrap();
        let edit = eager.select(&decoded, &tokens, &proposals, &probability);
        assert_eq!(edit, [false, true, true, false, true], "SGLang's τ = 0: any change");
    }

    #[test]
    fn thresholds_outside_a_probability_are_refused() {
        for bad in [1.0, -0.1, f64::NAN] {
            let err = TokenEditing::new(bad, 4).unwrap_err().to_string();
            assert!(err.contains("threshold"), "{err}");
        }
        let read =
            serde_json::from_str::<TokenEditing>(r#"{"threshold": 1.5, "max_post_steps": 2}"#);
        assert!(read.is_err());
    }
}
