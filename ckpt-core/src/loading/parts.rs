//! Loads that involve [`Sharded`] tensors: a model field that holds parts of a global tensor,
//! a source that holds parts of one, or both. The checks find that the source holds every part
//! the model needs; a part read in place from host memory is copied straight into the model
//! when it is written, any other is gathered during the checks, so that writing the model
//! cannot fail half way.

use super::LoadProblem;
use super::pager::{Pager, Runs};
use crate::dtype::DType;
use crate::shard::{Chunk, ShardError, Sharded, assemble, check_len, covers, overlap_runs};
use crate::state::{Leaf, TensorSource};
use crate::tensor::{Tensor, TensorView};

/// What a source holds under a key: the whole tensor, or parts of it.
pub(super) enum Found<'s> {
    Whole(TensorView<'s>),
    Parts(&'s Sharded),
}

impl<'s> Found<'s> {
    pub(super) fn lookup(source: &'s dyn TensorSource, key: &str) -> Option<Self> {
        match source.get_tensor(key) {
            Some(view) => Some(Found::Whole(view)),
            None => source.get_sharded(key).map(Found::Parts),
        }
    }

    /// The global shape.
    pub(super) fn shape(&self) -> Vec<usize> {
        match self {
            Found::Whole(view) => view.shape().to_vec(),
            Found::Parts(s) => s.global_shape().iter().map(|&d| d as usize).collect(),
        }
    }

    pub(super) fn dtype(&self) -> DType {
        match self {
            Found::Whole(view) => view.dtype(),
            Found::Parts(s) => s.dtype(),
        }
    }

    /// Whether the model's slot can take the source's tensor as it is, with no gathering.
    pub(super) fn is_whole(&self) -> bool {
        matches!(self, Found::Whole(_))
    }

    /// Whether the writing half can copy the data straight from the source's memory: every
    /// part is on the host, in C order (a mapped file's, say), so nothing can fail there.
    pub(super) fn in_place(&self) -> bool {
        match self {
            Found::Whole(view) => view.le_bytes_in_place().is_some(),
            Found::Parts(s) => s
                .parts()
                .iter()
                .all(|(_, t)| t.view().le_bytes_in_place().is_some()),
        }
    }

    /// The chunks the model holds (`None`: the whole tensor), as chunks.
    fn targets(&self, chunks: Option<&[Chunk]>) -> Result<Vec<Chunk>, ShardError> {
        match chunks {
            Some(chunks) => Ok(chunks.to_vec()),
            None => {
                let global = self.shape().iter().map(|&d| d as u64).collect();
                Ok(vec![Chunk::whole(global)?])
            }
        }
    }

    /// Checks that the source holds every element of `chunks` (the whole tensor if `None`),
    /// so that gathering or filling them cannot fail.
    pub(super) fn check(&self, key: &str, chunks: Option<&[Chunk]>) -> Result<(), LoadProblem> {
        let Found::Parts(s) = self else {
            return Ok(());
        };
        s.check().map_err(|e| shard(key, e))?;
        let held = || s.parts().iter().map(|(c, _)| c);
        for target in self.targets(chunks).map_err(|e| shard(key, e))? {
            if !covers(held(), &target).map_err(|e| shard(key, e))? {
                return Err(LoadProblem::NotHeld {
                    key: key.to_owned(),
                    needed: Box::new(target),
                    held: held().cloned().collect(),
                });
            }
        }
        Ok(())
    }

    /// The data of each of `chunks` of the tensor (the whole of it if `None`), in the
    /// source's dtype, which [`check`](Found::check) found it holds.
    pub(super) fn gather(
        &self,
        key: &str,
        chunks: Option<&[Chunk]>,
    ) -> Result<Vec<Tensor>, LoadProblem> {
        let targets = self.targets(chunks).map_err(|e| shard(key, e))?;
        targets
            .iter()
            .map(|target| self.assemble(target).map_err(|e| shard(key, e)))
            .collect()
    }

    /// The part `target`, in memory of its own unless a part of the source is exactly it and
    /// read in place (its clone is a reference to the same bytes, on the host, in C order,
    /// as `assemble` makes them).
    fn assemble(&self, target: &Chunk) -> Result<Tensor, ShardError> {
        match self {
            Found::Whole(view) => {
                let all = Chunk::whole(target.global_shape().to_vec())?;
                assemble(view.dtype(), [(&all, view.view())], target)
            }
            Found::Parts(s) => {
                if let Some((_, part)) =
                    s.parts().iter().find(|(c, t)| c == target && t.is_mapped())
                {
                    return Ok(part.clone());
                }
                let pieces = s.parts().iter().map(|(c, t)| (c, t.view()));
                assemble(s.dtype(), pieces, target)
            }
        }
    }

    /// Writes the part `target` into `leaf`, which holds it: straight from the source's
    /// bytes where both lend them in the same dtype ([`in_place`](Found::in_place)), with
    /// `pager`; through a gathered copy of the part otherwise (a cast, a leaf that lends no
    /// bytes). The part was [`check`](Found::check)ed.
    pub(super) fn fill(
        &self,
        key: &str,
        target: &Chunk,
        leaf: &mut dyn Leaf,
        pager: &dyn Pager,
    ) -> Result<(), LoadProblem> {
        let dtype = self.dtype();
        let whole = Chunk::whole(target.global_shape().to_vec()).map_err(|e| shard(key, e))?;
        let pieces: Option<Vec<(&Chunk, &[u8])>> = match self {
            Found::Whole(view) => view.le_bytes_in_place().map(|b| vec![(&whole, b)]),
            Found::Parts(s) => s
                .parts()
                .iter()
                .map(|(c, t)| Some((c, t.view().le_bytes_in_place()?)))
                .collect(),
        };
        let expected = target.nbytes(dtype).map_err(|e| shard(key, e))?;
        if let Some(pieces) = pieces.filter(|_| leaf.view().dtype() == dtype)
            && let Some(to) = leaf
                .contiguous_bytes_mut()
                .filter(|to| to.len() as u64 == expected)
        {
            for (chunk, from) in pieces {
                check_len(dtype, chunk, from.len()).map_err(|e| shard(key, e))?;
                let mut runs = Runs::new(pager, from, to);
                overlap_runs(dtype, chunk, target, |s, d| runs.copy(s, d))
                    .map_err(|e| shard(key, e))?;
            }
            return Ok(());
        }
        let part = self.assemble(target).map_err(|e| shard(key, e))?;
        leaf.copy_from(&part.view())
            .map_err(|error| LoadProblem::Copy {
                key: key.to_owned(),
                error,
            })
    }
}

pub(super) fn shard(key: &str, error: ShardError) -> LoadProblem {
    LoadProblem::Shard {
        key: key.to_owned(),
        error: Box::new(error),
    }
}
