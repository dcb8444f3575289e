//! Optimizers of `torch.optim`: [`Sgd`], [`Adam`] and [`AdamW`], updating a model's parameters
//! (never its buffers) from gradients keyed like
//! [`named_parameters`](crate::StateDict::named_parameters), with state dicts in ckpt's layout
//! (keyed by parameter name) and in PyTorch's (keyed by parameter index).
//!
//! ```
//! use ckpt::StateDict;
//! use ckpt::nn::{Linear, Rng};
//! use ckpt::optim::{Adam, AdamConfig};
//! use indexmap::IndexMap;
//!
//! let mut model = Linear::new(2, 1, &mut Rng::seed(0));
//! let mut adam = Adam::new(&model, AdamConfig::default().lr(0.01));
//! let before = model.weight.clone();
//!
//! // Gradients come from elsewhere (autograd is not part of ckpt), keyed like the parameters.
//! let mut grads = IndexMap::new();
//! grads.insert("weight".to_owned(), ckpt::Tensor::from(ndarray::array![[1.0f32, -1.0]]));
//! adam.step(&mut model, &grads).unwrap();
//! assert!(model.weight[[0, 0]] < before[[0, 0]]); // moved against the gradient
//! assert_eq!(model.bias.as_ref().unwrap().len(), 1); // no gradient, as `grad is None`: untouched
//!
//! let pytorch = adam.pytorch_state_dict();
//! assert_eq!(pytorch["state"][0]["step"].as_tensor().unwrap().shape(), &[] as &[usize]);
//! assert_eq!(pytorch["param_groups"][0]["params"][1].as_i64(), Some(1));
//! ```

mod adam;
mod algorithm;
mod error;
mod lr_scheduler;
mod optimizer;
mod param_group;
mod passthrough;
mod sgd;
mod state_dict;

pub use self::adam::{AdamConfig, AdamWConfig};
pub use self::algorithm::{Algorithm, ParamState};
pub use self::error::OptimError;
pub use self::lr_scheduler::{
    Anneal, CosineAnnealingLr, ExponentialLr, LambdaLr, LinearLr, LrLambda, LrScheduler, Mode,
    MultiStepLr, OneCycleLr, PerGroup, Plateau, Progress, ReduceLrOnPlateau, Schedule, Scheduler,
    SchedulerError, SequentialLr, StateReader, StepLr, ThresholdMode,
};
pub use self::optimizer::Optimizer;
pub use self::param_group::{ParamGroup, ParamGroups};
pub use self::sgd::SgdConfig;

/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay, as
/// `torch.optim.SGD`. State: `momentum_buffer`.
pub type Sgd = Optimizer<SgdConfig>;

/// Adam, as `torch.optim.Adam` (L2 weight decay added to the gradient, optional AMSGrad).
/// State: `step`, `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq` with AMSGrad).
pub type Adam = Optimizer<AdamConfig>;

/// AdamW, as `torch.optim.AdamW`: Adam with weight decay applied to the parameters directly.
pub type AdamW = Optimizer<AdamWConfig>;
