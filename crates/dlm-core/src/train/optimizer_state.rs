//! Checks that a saved optimizer state belongs to the model it is restored for.
//!
//! burn's `ModuleOptimizer::load_record` keys states by parameter id and skips, without a word,
//! any state it cannot rebuild; a parameter without a state is re-initialised lazily at the next
//! step. Either way an exact resume breaks silently. These checks make it an error.

use std::collections::{BTreeSet, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::burn_pack::Reader;
use burn::tensor::{Bytes, Tensor};

/// The scalar burn stores once per parameter state, `"{param_id}.__rank"`.
const RANK_SUFFIX: &str = ".__rank";

/// The ids of the parameters that have a state in an optimizer record (a burnpack of
/// `ModuleOptimizer::into_bytes`), and each state tensor's parameter id and shape.
struct SavedStates {
    ids: BTreeSet<u64>,
    tensors: Vec<(String, Option<u64>, Vec<usize>)>,
}

fn saved_states(bytes: &[u8]) -> Result<SavedStates, String> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| format!("not an optimizer record: {e}"))?;
    let ids = reader
        .scalars()
        .keys()
        .filter_map(|name| name.strip_suffix(RANK_SUFFIX)?.parse().ok())
        .collect();
    let tensors = reader
        .into_tensors()
        .map_err(|e| format!("not an optimizer record: {e}"))?
        .into_iter()
        .map(|t| (t.name, t.param_id, t.shape.to_vec()))
        .collect();
    Ok(SavedStates { ids, tensors })
}

/// The shape of every float parameter of `model`, by id.
fn parameter_shapes<M: Module>(model: &M) -> HashMap<u64, Vec<usize>> {
    struct Shapes(HashMap<u64, Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id.val(), param.val().dims().to_vec());
        }
    }
    let mut shapes = Shapes(HashMap::new());
    model.visit(&mut shapes);
    shapes.0
}

/// Checks the saved AdamW state `bytes` against `model` after `step` steps: every state
/// belongs to a parameter of the model, every state tensor has its parameter's shape (AdamW's
/// moments do), and once a step has been taken every parameter has a state.
///
/// # Errors
/// What does not match, in words.
pub(crate) fn check_saved_state<M: Module>(
    bytes: &[u8],
    model: &M,
    step: usize,
) -> Result<(), String> {
    let saved = saved_states(bytes)?;
    let shapes = parameter_shapes(model);
    if let Some(id) = saved.ids.iter().find(|id| !shapes.contains_key(id)) {
        return Err(format!("a state for parameter {id}, which the model does not have"));
    }
    for (name, id, shape) in &saved.tensors {
        let expected = id.and_then(|id| shapes.get(&id));
        if expected != Some(shape) {
            return Err(format!(
                "state tensor `{name}` has shape {shape:?}, its parameter {}",
                expected.map_or("is not in the model".to_string(), |s| format!("has {s:?}"))
            ));
        }
    }
    if step > 0 && saved.ids.len() != shapes.len() {
        return Err(format!(
            "{} of the model's {} parameters have a state after {step} steps",
            saved.ids.len(),
            shapes.len()
        ));
    }
    Ok(())
}

/// Checks that the optimizer restored from `saved` kept every state: `restored` is what it
/// writes back.
///
/// # Errors
/// How many states were dropped.
pub(crate) fn check_restored(saved: &[u8], restored: &[u8]) -> Result<(), String> {
    let (saved, restored) = (saved_states(saved)?.ids.len(), saved_states(restored)?.ids.len());
    if saved == restored {
        Ok(())
    } else {
        Err(format!("{} of {saved} saved states could not be restored", saved.abs_diff(restored)))
    }
}
