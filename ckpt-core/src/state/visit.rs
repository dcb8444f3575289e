//! What a walk over a model's tensors hands out: the [`Role`] of each tensor, and the
//! [`Visitor`] and [`VisitorMut`] that receive them.

use super::Leaf;
use crate::shard::Sharded;
use crate::tensor::TensorView;

/// What a tensor is to its module.
///
/// Ordered by strength: a field can make its tensors buffers or non-persistent, never the other
/// way round, and a generator's state stays one whatever field holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A learnable parameter: saved, loaded and updated by optimizers.
    Parameter,
    /// A buffer (running statistics, counters): saved and loaded, never updated by optimizers.
    Buffer,
    /// A buffer that follows device moves and modes but is never saved or loaded.
    NonPersistent,
    /// The state of a random generator (where dropout draws its masks): not in the state dict,
    /// which keeps PyTorch's keys, but saved and restored on its own, so that a resumed run
    /// draws the numbers an uninterrupted one would.
    RngState,
}

impl Role {
    /// Whether tensors of this role are in the state dict: saved and loaded with it.
    pub fn is_persistent(self) -> bool {
        matches!(self, Role::Parameter | Role::Buffer)
    }

    /// The stronger of the two roles.
    #[must_use]
    pub fn at_least(self, other: Role) -> Role {
        self.max(other)
    }
}

/// Receives tensors from [`StateDict::visit`](crate::StateDict::visit). Closures `FnMut(&str, TensorView<'a>, Role)`
/// are visitors.
pub trait Visitor<'a> {
    /// One tensor and its key path.
    fn tensor(&mut self, key: &str, tensor: TensorView<'a>, role: Role);

    /// A tensor that cannot be handed out as a view, because ckpt has no dtype for its
    /// elements (a candle `U32` tensor); `why` says so in a user's words. Skipped by default;
    /// [`state_dict`](crate::StateDict::state_dict) records it, so that saving or loading the
    /// map is an error naming it, and a load into the model is refused.
    fn unsupported(&mut self, key: &str, why: &str, role: Role) {
        let _ = (key, why, role);
    }

    /// A tensor this process holds only parts of (a [`Sharded`] field), under its global key.
    /// By default each part's local data goes to [`tensor`](Visitor::tensor) under that key,
    /// so a visitor that looks at data (counting parameters, hashing) sees what this process
    /// holds; [`state_dict`](crate::StateDict::state_dict) and loads keep it whole, as a
    /// sharded tensor.
    fn sharded(&mut self, key: &str, tensor: &'a Sharded, role: Role) {
        for (_, part) in tensor.parts() {
            self.tensor(key, part.view(), role);
        }
    }
}

impl<'a, F: FnMut(&str, TensorView<'a>, Role)> Visitor<'a> for F {
    fn tensor(&mut self, key: &str, tensor: TensorView<'a>, role: Role) {
        self(key, tensor, role);
    }
}

/// Receives tensors from [`StateDict::visit_mut`](crate::StateDict::visit_mut). Closures `FnMut(&str, &mut dyn Leaf, Role)`
/// are visitors.
pub trait VisitorMut {
    /// One tensor, as a mutable leaf, and its key path.
    fn tensor(&mut self, key: &str, leaf: &mut dyn Leaf, role: Role);

    /// A tensor this process holds only parts of (a [`Sharded`] field), under its global key.
    /// By default each part's local data goes to [`tensor`](VisitorMut::tensor) as a leaf
    /// under that key (moves to a device, in-place updates); loads fill the parts from the
    /// global tensor.
    fn sharded(&mut self, key: &str, tensor: &mut Sharded, role: Role) {
        for (_, part) in tensor.parts_mut() {
            self.tensor(key, part, role);
        }
    }
}

impl<F: FnMut(&str, &mut dyn Leaf, Role)> VisitorMut for F {
    fn tensor(&mut self, key: &str, leaf: &mut dyn Leaf, role: Role) {
        self(key, leaf, role);
    }
}
