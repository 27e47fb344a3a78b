//! The device a module computes on.

use burn::module::Module;
use burn::tensor::Device;

/// The device of `model`'s parameters (burn modules report a list, one per device they span;
/// every model of this library lives on one).
///
/// # Panics
/// If the model has no parameters.
pub fn module_device<M: Module>(model: &M) -> Device {
    model.devices().into_iter().next().expect("a model with parameters")
}
