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
            param.map(|old| {
                let tracked = old.is_require_grad();
                Tensor::random(shape, Distribution::Normal(0.0, self.1), self.0)
                    .set_require_grad(tracked)
            })
        }
    }
    model.map(&mut Randomise(device, std))
}

/// Gives every parameter a value `N(0, std²)` drawn from a host RNG seeded with `seed` (Box–Muller
/// on uniforms), so the model is the same whatever else draws from the device's generator: for
/// tests that run in parallel and need one fixed model.
pub fn randomised_seeded<M: Module>(model: M, std: f64, seed: u64, device: &Device) -> M {
    use rand::{RngExt, SeedableRng};
    struct Randomise<'a>(&'a Device, f64, rand::rngs::StdRng);
    impl ModuleMapper for Randomise<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let shape = param.val().shape();
            let values: Vec<f32> = (0..shape.num_elements())
                .map(|_| {
                    let (u, v): (f64, f64) = (1.0 - self.2.random::<f64>(), self.2.random());
                    (self.1 * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
                })
                .collect();
            let device = self.0;
            param.map(|old| {
                let tracked = old.is_require_grad();
                Tensor::<D>::from_data(burn::tensor::TensorData::new(values, shape), device)
                    .set_require_grad(tracked)
            })
        }
    }
    model.map(&mut Randomise(device, std, rand::rngs::StdRng::seed_from_u64(seed)))
}

/// The gradients of `model`'s float parameters, flattened in the order the model visits them
/// (a parameter without a gradient contributes nothing).
pub fn flat_gradients<M: Module>(model: &M, grads: &burn::optim::GradientsParams) -> Vec<f32> {
    struct Collect<'a>(&'a burn::optim::GradientsParams, Vec<f32>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.0.get::<D>(param.id) {
                self.1.extend(grad.into_data().iter::<f32>());
            }
        }
    }
    let mut collect = Collect(grads, Vec::new());
    model.visit(&mut collect);
    collect.1
}

/// The largest `|a_i − b_i|` relative to the largest `|b_i|`; panics on different lengths.
pub fn max_relative_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared vectors have different lengths");
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs())).max(f64::MIN_POSITIVE);
    a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs()).fold(0.0, f64::max) / scale
}
