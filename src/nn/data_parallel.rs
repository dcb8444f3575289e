//! [`DataParallel`]: `torch.nn.DataParallel`'s wrapper, with its `module.` keys.

use ndarray::ArrayD;

use crate::nn::{Layer, NnError};
use crate::{Device, StateDict};

/// A model wrapped as `torch.nn.DataParallel` wraps it: the model is the field `module`, so
/// every key of its state dict gains `module.` exactly as PyTorch's do, and `train()`, `eval()`
/// and forward passes go through to it.
///
/// Save `dp.module.state_dict()`, as PyTorch's recipe recommends, and the file loads into a
/// plain model. A file saved from the wrapper itself (keys `module.…`) loads into a plain model,
/// and a plain file into a wrapper, with
/// [`StateDictOptions::auto_prefix`](crate::StateDictOptions::auto_prefix) or
/// [`KeyMap::data_parallel`](crate::keymap::KeyMap::data_parallel); without them the load error's hint
/// names the option.
///
/// ```
/// use ckpt::nn::{Linear, Rng};
/// use ckpt::{StateDict, StateDictOptions};
/// use ckpt::nn::DataParallel;
///
/// let rng = &mut Rng::seed(0);
/// let dp = DataParallel::with_device_ids(Linear::new(4, 2, rng), vec![0, 1]);
/// assert_eq!(dp.state_dict().keys().collect::<Vec<_>>(), ["module.weight", "module.bias"]);
/// assert_eq!(dp.devices()[1].to_string(), "cuda:1");
///
/// let mut plain = Linear::new(4, 2, rng);
/// let _ = plain.load_state_dict_with(&dp.state_dict(), &StateDictOptions::new().auto_prefix(true))?;
/// assert_eq!(plain.weight, dp.module.weight);
/// # Ok::<(), ckpt::LoadError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct DataParallel<M> {
    /// The wrapped model, keyed `module`.
    pub module: M,
    /// The CUDA devices the model is replicated on, as ordinals (`cuda:N`); the first holds the
    /// parameters. Empty when no CUDA device is used. Recorded only: ckpt runs models on the
    /// CPU.
    #[state(skip)]
    pub device_ids: Vec<usize>,
}

impl<M> DataParallel<M> {
    /// Wraps `module` with no CUDA devices, as `nn.DataParallel(module)` on a machine without
    /// them.
    pub fn new(module: M) -> Self {
        Self::with_device_ids(module, Vec::new())
    }

    /// Wraps `module` for the CUDA devices `device_ids`, as
    /// `nn.DataParallel(module, device_ids=[...])`.
    pub fn with_device_ids(module: M, device_ids: Vec<usize>) -> Self {
        DataParallel { module, device_ids }
    }

    /// The devices of [`device_ids`](DataParallel::device_ids): `cuda:0`, `cuda:1`, ….
    pub fn devices(&self) -> Vec<Device> {
        self.device_ids.iter().map(|&id| Device::Cuda(id)).collect()
    }

    /// The device that holds the parameters and gathers outputs: the first of `device_ids`,
    /// or the CPU when there are none.
    pub fn output_device(&self) -> Device {
        self.device_ids
            .first()
            .map_or(Device::Cpu, |&id| Device::Cuda(id))
    }

    /// The wrapped model.
    pub fn into_inner(self) -> M {
        self.module
    }
}

impl<M: Layer> Layer for DataParallel<M> {
    /// The wrapped model's forward pass: with the model on the CPU there is nothing to scatter.
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        self.module.forward_dyn(x)
    }
}
