//! The [`StateDict`] trait and the vocabulary its implementations speak: key paths, roles,
//! visitors and leaves.

use std::collections::HashMap;
use std::fmt;

use crate::TensorMap;
use crate::device::{Device, DeviceError};
use crate::load::{self, LoadError, LoadOptions, LoadReport};
use crate::source::TensorSource;
use crate::tensor::{Tensor, TensorError, TensorView};

/// A model, a layer, or a container of them, whose tensors have dotted key paths
/// (`encoder.layers.0.weight`) as in PyTorch's `state_dict()`.
///
/// Derive it with `#[derive(StateDict)]`; implement it by hand only for unusual containers. The
/// two required methods walk the tensors in declaration order, read-only and mutably; everything
/// else (`state_dict`, `load_state_dict`, `train`, `eval`) is built on them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is neither a tensor nor a module that implements `StateDict`",
    label = "not a tensor leaf or a `StateDict` module",
    note = "fields must be `ckpt::Tensor`, owned ndarray arrays, types deriving `StateDict`, or `Vec`, arrays, `Option`, `Box` and `BTreeMap`/`IndexMap<String, _>` of them",
    note = "mark fields that hold no tensors (sizes, rates, caches) with `#[state(skip)]`"
)]
pub trait StateDict {
    /// Calls `visitor` with every tensor below `path`, in declaration order.
    ///
    /// `role` is what the enclosing fields make of these tensors; a field may only strengthen it
    /// (a parameter inside a buffer field is a buffer), see [`Role::at_least`].
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>);

    /// Calls `visitor` with every tensor below `path` as a mutable [`Leaf`], in the same order as
    /// [`visit`](StateDict::visit).
    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut);

    /// Sets training (`true`) or evaluation (`false`) mode here and in every nested module.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// This module's mode: its own flag if it has one (`#[state(training)]`), else whether any
    /// nested module is training; `None` if nothing below keeps a mode.
    fn training_mode(&self) -> Option<bool> {
        None
    }

    /// The name used in error messages, as PyTorch uses the class name (`Net`).
    fn module_name(&self) -> &'static str {
        short_type_name(std::any::type_name::<Self>())
    }

    /// The persistent tensors (parameters and persistent buffers) by key, in declaration order,
    /// borrowed from `self`: no tensor data is copied.
    ///
    /// # Panics
    ///
    /// If two tensors map to the same key, which only a `#[state(flatten)]` field or a
    /// hand-written implementation can cause; the message names the key.
    fn state_dict(&self) -> TensorMap<'_> {
        collect(self, Role::is_persistent)
    }

    /// The parameters (tensors that are not buffers) by key, for optimizers.
    fn named_parameters(&self) -> TensorMap<'_> {
        collect(self, |role| role == Role::Parameter)
    }

    /// The buffers, persistent or not, by key.
    fn named_buffers(&self) -> TensorMap<'_> {
        collect(self, |role| role != Role::Parameter)
    }

    /// Copies tensors from `state` into this model, as PyTorch's `load_state_dict`.
    ///
    /// With `strict`, every key of the model must be in `state` and nothing else; without it,
    /// missing and unexpected keys are reported in the returned [`LoadReport`]. Shape and dtype
    /// mismatches are errors either way. Everything is checked before anything is written, so
    /// after an error the model is exactly as it was.
    fn load_state_dict(
        &mut self,
        state: &dyn TensorSource,
        strict: bool,
    ) -> Result<LoadReport, LoadError> {
        load::load_into(self, state, &LoadOptions::new().strict(strict))
    }

    /// [`load_state_dict`](StateDict::load_state_dict) with every option.
    fn load_state_dict_with(
        &mut self,
        state: &dyn TensorSource,
        options: &LoadOptions,
    ) -> Result<LoadReport, LoadError> {
        load::load_into(self, state, options)
    }

    /// Loads a state dict file straight into this model, as
    /// `model.load_state_dict(torch.load(path))`, without holding a second copy of the
    /// tensors: each is copied from the memory-mapped file into the model and its pages
    /// released. Checksums are verified first (unless `options` says not to), and the load is
    /// checked whole before anything is written, as `load_state_dict` is.
    fn load_from(
        &mut self,
        path: impl AsRef<std::path::Path>,
        options: &LoadOptions,
    ) -> Result<LoadReport, crate::Error>
    where
        Self: Sized,
    {
        crate::file::load_from(self, path.as_ref(), options)
    }

    /// Moves every tensor, non-persistent buffers included, to `device`, as `model.to(device)`
    /// in PyTorch.
    ///
    /// Checked before anything moves, in this order: fields that can only hold host memory
    /// (ndarray arrays; use [`Tensor`](crate::Tensor) for fields that should go to a GPU) make
    /// a move to a GPU an error naming every one of them, on any machine; then the device must
    /// exist (CUDA available, the ordinal present). Moving to [`Device::Cpu`] always works.
    ///
    /// Every tensor is copied to `device` before the model changes, so a move that fails part
    /// way, such as one running out of GPU memory, leaves the model whole where it was (unlike
    /// PyTorch's, which leaves it split) and frees the copies already made; the error names
    /// the tensor that could not move. Tensors already on `device` are not copied; tied
    /// tensors (clones sharing their data) are copied once and stay tied.
    ///
    /// ```
    /// use ckpt_core::{Device, DeviceError, StateDict, Tensor};
    /// # struct Net { w: Tensor, b: ndarray::Array1<f32> }
    /// # impl StateDict for Net {
    /// #     fn visit<'a>(&'a self, p: &mut ckpt_core::KeyPath, r: ckpt_core::Role, v: &mut dyn ckpt_core::Visitor<'a>) {
    /// #         p.push("w"); self.w.visit(p, r, v); p.pop(); p.push("b"); self.b.visit(p, r, v); p.pop();
    /// #     }
    /// #     fn visit_mut(&mut self, p: &mut ckpt_core::KeyPath, r: ckpt_core::Role, v: &mut dyn ckpt_core::VisitorMut) {
    /// #         p.push("w"); self.w.visit_mut(p, r, v); p.pop(); p.push("b"); self.b.visit_mut(p, r, v); p.pop();
    /// #     }
    /// # }
    /// let mut net = Net { w: Tensor::scalar(1.0f32), b: ndarray::Array1::zeros(2) };
    /// net.to(Device::Cpu)?;
    /// let err = net.to(Device::Cuda(0)).unwrap_err();
    /// assert_eq!(err, DeviceError::HostOnly { keys: vec!["b".into()], device: Device::Cuda(0) });
    /// # Ok::<(), DeviceError>(())
    /// ```
    fn to(&mut self, device: Device) -> Result<(), DeviceError> {
        let mut host_only = Vec::new();
        self.visit_mut(
            &mut KeyPath::new(),
            Role::Parameter,
            &mut |key: &str, leaf: &mut dyn Leaf, _: Role| {
                if !leaf.can_move_to(device) {
                    host_only.push(key.to_owned());
                }
            },
        );
        if !host_only.is_empty() {
            return Err(DeviceError::HostOnly {
                keys: host_only,
                device,
            });
        }
        crate::device::check(device)?;
        let mut copies = Vec::new();
        // Tied tensors (clones sharing their data, as an embedding and an output layer may)
        // are copied once and stay tied, as PyTorch's shared parameters do.
        let mut tied = HashMap::new();
        let mut failure = None;
        self.visit_mut(
            &mut KeyPath::new(),
            Role::Parameter,
            &mut |key: &str, leaf: &mut dyn Leaf, _: Role| {
                if failure.is_some() {
                    return;
                }
                let id = leaf.view().storage_id();
                if let Some(copy) = id.as_ref().and_then(|id| tied.get(id)) {
                    copies.push((key.to_owned(), Some(Tensor::clone(copy))));
                    return;
                }
                match leaf.copy_to(device) {
                    Ok(copy) => {
                        if let (Some(id), Some(copy)) = (id, &copy) {
                            tied.insert(id, copy.clone());
                        }
                        copies.push((key.to_owned(), copy));
                    }
                    Err(source) => {
                        failure = Some(DeviceError::Moving {
                            key: key.to_owned(),
                            device,
                            source: Box::new(source),
                        });
                    }
                }
            },
        );
        if let Some(err) = failure {
            return Err(err); // dropping `copies` frees them
        }
        // The second walk meets the same leaves in the same order: nothing changed between.
        let mut copies = copies.into_iter();
        self.visit_mut(
            &mut KeyPath::new(),
            Role::Parameter,
            &mut |key: &str, leaf: &mut dyn Leaf, _: Role| {
                if let Some((copied, copy)) = copies.next() {
                    debug_assert_eq!(copied, key, "visit_mut walked the model differently");
                    if let Some(copy) = copy {
                        leaf.adopt(copy);
                    }
                }
            },
        );
        Ok(())
    }

    /// Training mode: dropout drops, batch norm uses and updates batch statistics.
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Evaluation mode: dropout is the identity, batch norm uses its running statistics.
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// Whether the module is in training mode; modules that keep no mode report `true`, the
    /// mode every PyTorch module starts in.
    fn is_training(&self) -> bool {
        self.training_mode().unwrap_or(true)
    }
}

fn collect<M: StateDict + ?Sized>(module: &M, keep: impl Fn(Role) -> bool) -> TensorMap<'_> {
    let mut map = TensorMap::new();
    module.visit(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, tensor, role| {
            if keep(role) {
                let key = key.to_owned();
                if map.contains_key(&key) {
                    panic!(
                        "two tensors of {} map to the key {key:?}",
                        module.module_name()
                    );
                }
                map.insert(key, tensor);
            }
        },
    );
    map
}

/// `a::b::Net<c::T>` -> `Net`.
fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Combines the modes of two parts of a module: training if either part is.
#[doc(hidden)]
pub fn merge_modes(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a || b),
        (a, b) => a.or(b),
    }
}

/// What a tensor is to its module.
///
/// Ordered by strength: a field can make its tensors buffers or non-persistent, never the other
/// way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A learnable parameter: saved, loaded and updated by optimizers.
    Parameter,
    /// A buffer (running statistics, counters): saved and loaded, never updated by optimizers.
    Buffer,
    /// A buffer that follows device moves and modes but is never saved or loaded.
    NonPersistent,
}

impl Role {
    /// Whether tensors of this role are saved and loaded.
    pub fn is_persistent(self) -> bool {
        self != Role::NonPersistent
    }

    /// The stronger of the two roles.
    #[must_use]
    pub fn at_least(self, other: Role) -> Role {
        self.max(other)
    }
}

/// A dotted key path under construction (`encoder.layers.0.weight`).
///
/// ```
/// use ckpt_core::KeyPath;
///
/// let mut path = KeyPath::new();
/// path.push("layers");
/// path.push_index(3);
/// path.push("weight");
/// assert_eq!(path.as_str(), "layers.3.weight");
/// path.pop();
/// path.pop();
/// assert_eq!(path.as_str(), "layers");
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeyPath {
    key: String,
    marks: Vec<usize>,
}

impl KeyPath {
    /// An empty path.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one segment: a field name, a map key, an index.
    pub fn push(&mut self, segment: impl fmt::Display) {
        use std::fmt::Write;
        self.marks.push(self.key.len());
        if !self.key.is_empty() {
            self.key.push('.');
        }
        // Writing to a String cannot fail.
        let _ = write!(self.key, "{segment}");
    }

    /// Appends a list index as a segment.
    pub fn push_index(&mut self, index: usize) {
        self.push(index);
    }

    /// Removes the segment pushed last.
    pub fn pop(&mut self) {
        if let Some(len) = self.marks.pop() {
            self.key.truncate(len);
        }
    }

    /// The path so far.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// Receives tensors from [`StateDict::visit`]. Closures `FnMut(&str, TensorView<'a>, Role)`
/// are visitors.
pub trait Visitor<'a> {
    /// One tensor and its key path.
    fn tensor(&mut self, key: &str, tensor: TensorView<'a>, role: Role);
}

impl<'a, F: FnMut(&str, TensorView<'a>, Role)> Visitor<'a> for F {
    fn tensor(&mut self, key: &str, tensor: TensorView<'a>, role: Role) {
        self(key, tensor, role);
    }
}

/// Receives tensors from [`StateDict::visit_mut`]. Closures `FnMut(&str, &mut dyn Leaf, Role)`
/// are visitors.
pub trait VisitorMut {
    /// One tensor, as a mutable leaf, and its key path.
    fn tensor(&mut self, key: &str, leaf: &mut dyn Leaf, role: Role);
}

impl<F: FnMut(&str, &mut dyn Leaf, Role)> VisitorMut for F {
    fn tensor(&mut self, key: &str, leaf: &mut dyn Leaf, role: Role) {
        self(key, leaf, role);
    }
}

/// A model field that holds one tensor: a [`Tensor`](crate::Tensor) or an owned ndarray array.
pub trait Leaf {
    /// The current contents.
    fn view(&self) -> TensorView<'_>;

    /// Overwrites the contents with `src`, which has the same shape, casting as
    /// [`Tensor::to_dtype`](crate::Tensor::to_dtype) does.
    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError>;

    /// The contents as writable little-endian bytes in C order, when the leaf can lend them
    /// (host memory, a dtype other than `BOOL`): lets loaders read a file straight into the
    /// model, in chunks, without an intermediate copy. `None` makes them use `copy_from`.
    fn contiguous_bytes_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    /// The device the contents live on.
    fn device(&self) -> Device {
        Device::Cpu
    }

    /// Whether the contents can move to `device`. By default only the CPU: the leaf holds
    /// host memory, as ndarray arrays do.
    fn can_move_to(&self, device: Device) -> bool {
        device == Device::Cpu
    }

    /// The first half of a move to `device`: a copy of the contents there, leaving them as
    /// they are, or `None` when there is nothing to copy. [`StateDict::to`] copies every leaf
    /// of a model before it hands any copy over with [`adopt`](Leaf::adopt), so that a
    /// failed move changes nothing. By default host memory stays where it is and the CPU is
    /// the only device accepted.
    fn copy_to(&self, device: Device) -> Result<Option<Tensor>, DeviceError> {
        if self.can_move_to(device) {
            Ok(None)
        } else {
            Err(DeviceError::HostOnly {
                keys: Vec::new(),
                device,
            })
        }
    }

    /// The second half of a move: takes the copy that [`copy_to`](Leaf::copy_to) made. Only
    /// ever given a copy this leaf returned, so a leaf that overrides one overrides both.
    ///
    /// # Panics
    ///
    /// By default, always: the default `copy_to` never returns a copy, so reaching this means
    /// `copy_to` was overridden without it, and the copy would be lost.
    fn adopt(&mut self, copy: Tensor) {
        drop(copy);
        unreachable!(
            "{} returns copies from `Leaf::copy_to` but does not override `Leaf::adopt`",
            std::any::type_name::<Self>()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_type_name("a::b::Net<c::T, u8>"), "Net");
        assert_eq!(short_type_name("Net"), "Net");
        assert_eq!(short_type_name("alloc::vec::Vec<x::Y>"), "Vec");
    }

    #[test]
    fn modes_merge() {
        assert_eq!(merge_modes(None, None), None);
        assert_eq!(merge_modes(None, Some(false)), Some(false));
        assert_eq!(merge_modes(Some(false), Some(true)), Some(true));
        assert_eq!(merge_modes(Some(false), Some(false)), Some(false));
    }

    #[test]
    fn roles_only_strengthen() {
        assert_eq!(Role::Buffer.at_least(Role::Parameter), Role::Buffer);
        assert_eq!(
            Role::Parameter.at_least(Role::NonPersistent),
            Role::NonPersistent
        );
        assert!(!Role::NonPersistent.is_persistent());
    }
}
