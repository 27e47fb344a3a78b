//! Gradient clipping by the global norm over all parameters.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The L2 norm of every gradient concatenated, `‖g‖` (a parameter reachable twice counts once).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    struct SquaredNorm<'a> {
        grads: &'a GradientsParams,
        ids: Vec<ParamId>,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.ids.contains(&param.id) {
                return;
            }
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let squared = grad.powi_scalar(2).sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + squared,
                    None => squared,
                });
                self.ids.push(param.id);
            }
        }
    }
    let mut visitor = SquaredNorm { grads, ids: Vec::new(), total: None };
    model.visit(&mut visitor);
    visitor.total.map_or(0.0, |total| total.into_scalar::<f64>().sqrt())
}

/// The factor `min(1, max_norm/‖g‖)` of clipping by the global norm (Pascanu et al. 2013,
/// Alg. 1).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if norm > max_norm { max_norm / norm } else { 1.0 }
}

/// Scales all gradients by `min(1, max_norm/‖g‖)` with `‖g‖` the L2 norm of every gradient
/// concatenated (Pascanu et al. 2013, Alg. 1), and returns `‖g‖` before clipping. burn's own
/// clipping acts on each parameter tensor separately.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_norm(model, grads);
    let factor = clip_factor(norm, max_norm);
    if factor < 1.0 {
        scale_gradients(model, grads, factor);
    }
    norm
}

/// Multiplies every gradient of `model`'s parameters by `factor`.
pub fn scale_gradients<M: Module>(model: &M, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        done: Vec<ParamId>,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // A parameter reachable twice is scaled once.
            if !self.done.contains(&param.id)
                && let Some(grad) = self.grads.remove::<D>(param.id)
            {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
                self.done.push(param.id);
            }
        }
    }
    model.visit(&mut Scale { grads, done: Vec::new(), factor });
}
