//! [`StateDict`] for candle's tensors and variables as model fields, and the helpers the
//! layers' implementations share.

use candle_core::{Tensor as CandleTensor, Var};

use super::leaf::{CandleLeaf, candle_error};
use super::read::view;
use crate::state::{KeyPath, Role, Visitor, VisitorMut};
use crate::state_dict::StateDict;
use crate::tensor::TensorError;

/// A `candle_core::Tensor` field is one tensor. Loading writes a variable in place; a plain
/// tensor is written in place too where candle allows it (contiguous, not 0-dimensional), so
/// that tensors sharing its memory stay tied as in PyTorch, and is replaced otherwise.
impl StateDict for CandleTensor {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        visit_tensor(self, path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        let current = self.clone();
        visit_leaf(self, current, |_, new| Ok(new), path, role, visitor);
    }
}

/// A `candle_core::Var` field is one tensor, loaded in place (`Var::set`): an optimizer
/// holding the variable sees the loaded values.
impl StateDict for Var {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        visit_tensor(self.as_tensor(), path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        let current = self.as_tensor().clone();
        // A variable is always written in place; `with` is never called.
        let with = |_: &Var, new: CandleTensor| Var::from_tensor(&new).map_err(candle_error(&new));
        visit_leaf(self, current, with, path, role, visitor);
    }
}

/// Hands `tensor` to `visitor` under `path`, or says why it cannot.
pub(super) fn visit_tensor<'a>(
    tensor: &CandleTensor,
    path: &mut KeyPath,
    role: Role,
    visitor: &mut dyn Visitor<'a>,
) {
    match view(tensor) {
        Ok(view) => visitor.tensor(path.as_str(), view, role),
        Err(why) => visitor.unsupported(path.as_str(), &why, role),
    }
}

/// Hands `current`, a tensor that `holder` holds, to `visitor` under `path` as a leaf;
/// `with` makes `holder` with a new tensor instead, for tensors that cannot be written in
/// place. Tensors ckpt cannot represent are left out: a load refused them already.
pub(super) fn visit_leaf<H>(
    holder: &mut H,
    current: CandleTensor,
    with: fn(&H, CandleTensor) -> Result<H, TensorError>,
    path: &mut KeyPath,
    role: Role,
    visitor: &mut dyn VisitorMut,
) {
    if let Ok(mut leaf) = CandleLeaf::new(holder, current, with) {
        visitor.tensor(path.as_str(), &mut leaf, role);
    }
}
