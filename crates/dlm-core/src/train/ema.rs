//! Exponential moving average of model weights.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// `ema ← decay·ema + (1 − decay)·model` for every float parameter, matched by id: the
/// exponential moving average of the weights that MDLM and SEDD evaluate (`decay = 0.9999`).
/// `ema` lives on a device without autodiff; `model` may be on an autodiff device. Everything
/// stays on the device.
///
/// # Panics
/// If a parameter of `model` has no counterpart in `ema` (they must be copies of one model, as
/// [`Trainer`](super::Trainer) keeps them); a silently frozen average would be worse.
pub fn update_ema<M: Module>(ema: M, model: &M, decay: f64) -> M {
    /// The model's parameters, flattened so that tensors of every rank share one map.
    struct Collect(HashMap<ParamId, Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id, param.val().inner().reshape([-1]));
        }
    }
    struct Blend {
        current: HashMap<ParamId, Tensor<1>>,
        decay: f64,
    }
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(current) = self.current.remove(&param.id) else { return param };
            let decay = self.decay;
            param.map(|average| {
                let current = current.reshape(average.shape());
                average.mul_scalar(decay) + current.mul_scalar(1.0 - decay)
            })
        }
    }
    let mut collect = Collect(HashMap::new());
    model.visit(&mut collect);
    let mut blend = Blend { current: collect.0, decay };
    let ema = ema.map(&mut blend);
    assert!(blend.current.is_empty(), "EMA and model parameters do not match (different ids)");
    ema
}
