//! Helpers for tests (this crate's and, with the `testing` feature, those of crates built on it).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};

/// Gives every parameter a random value `N(0, 0.2²)`, so that zero-initialised heads and gates do
/// not hide a broken path.
pub fn randomised<M: Module>(model: M, device: &Device) -> M {
    randomised_with_std(model, 0.2, device)
}

/// Gives every parameter a random value `N(0, std²)`.
pub fn randomised_with_std<M: Module>(model: M, std: f64, device: &Device) -> M {
    struct Randomise<'a>(&'a Device, f64);
    impl ModuleMapper for Randomise<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let shape = param.val().shape();
            param.map(|_| Tensor::random(shape, Distribution::Normal(0.0, self.1), self.0))
        }
    }
    model.map(&mut Randomise(device, std))
}
