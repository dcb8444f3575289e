//! [`StateDict`] for `candle_nn::VarMap`: its variables under their own keys, so a `VarMap`
//! saves to every format ckpt writes and loads, strictly or not, through a `KeyMap`, all or
//! nothing, from every format it reads.

use candle_core::{Tensor as CandleTensor, Var};
use candle_nn::VarMap;

use super::fields::{visit_leaf, visit_tensor};
use super::leaf::candle_error;
use crate::state::{KeyPath, Role, Visitor, VisitorMut};
use crate::state_dict::StateDict;
use crate::tensor::TensorError;

/// The variables under their keys (`fc.weight`, the names `VarBuilder::pp` made), in sorted
/// order so that files are the same from run to run, all parameters. Loading writes each
/// variable in place (`Var::set`), so the layers built from the map and the optimizers
/// holding its variables see the loaded values; keys the map lacks are unexpected (candle's
/// `VarMap::load` skips them) and keys it has that the file lacks are missing, both reported
/// in PyTorch's words, and nothing is written unless everything checks.
///
/// The map's lock is held only while its variables are listed, not while they are read or
/// written.
impl StateDict for VarMap {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        for (key, var) in sorted(self) {
            path.push(&key);
            visit_tensor(var.as_tensor(), path, role, visitor);
            path.pop();
        }
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        for (key, mut var) in sorted(self) {
            path.push(&key);
            let current = var.as_tensor().clone();
            // A variable is always written in place, so `with` is never called; replacing
            // this clone would not reach the map, so it refuses rather than drop the values.
            let with: fn(&Var, CandleTensor) -> Result<Var, TensorError> =
                |var, _| Err(candle_error(var.as_tensor())(not_in_place()));
            visit_leaf(&mut var, current, with, path, role, visitor);
            path.pop();
        }
    }

    fn module_name(&self) -> &'static str {
        "VarMap"
    }
}

fn not_in_place() -> candle_core::Error {
    candle_core::Error::Msg("a VarMap's variable could not be written in place".to_owned())
}

/// The map's keys and variables (clones, sharing their memory), sorted by key.
fn sorted(map: &VarMap) -> Vec<(String, Var)> {
    // A thread that panicked holding the lock leaves a map that is still whole: read it.
    let data = map.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    drop(data);
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}
