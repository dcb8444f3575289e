//! Loads that involve [`Sharded`] tensors: a model field that holds parts of a global tensor,
//! a source that holds parts of one, or both. Each part the model needs is gathered from the
//! source during the checks, so that writing the model afterwards cannot fail half way.

use super::LoadProblem;
use crate::dtype::DType;
use crate::shard::{Chunk, Sharded, assemble, covers};
use crate::state::TensorSource;
use crate::tensor::{Tensor, TensorError, TensorView};

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

    /// Whether every value fits `dtype`, as [`TensorView::check_cast`] checks.
    pub(super) fn check_cast(&self, dtype: DType) -> Result<(), TensorError> {
        match self {
            Found::Whole(view) => view.check_cast(dtype),
            Found::Parts(s) => s
                .parts()
                .iter()
                .try_for_each(|(_, t)| t.view().check_cast(dtype)),
        }
    }

    /// Whether the model's slot can take the source's tensor as it is, with no gathering.
    pub(super) fn is_whole(&self) -> bool {
        matches!(self, Found::Whole(_))
    }

    /// The data of each of `chunks` of the tensor (the whole of it if `None`), in the
    /// source's dtype, or why it cannot be had.
    pub(super) fn gather(
        &self,
        key: &str,
        chunks: Option<&[Chunk]>,
    ) -> Result<Vec<Tensor>, LoadProblem> {
        let shard = |error| LoadProblem::Shard {
            key: key.to_owned(),
            error: Box::new(error),
        };
        let global: Vec<u64> = self.shape().iter().map(|&d| d as u64).collect();
        let whole;
        let targets = match chunks {
            Some(chunks) => chunks,
            None => {
                whole = [Chunk::whole(global.clone()).map_err(shard)?];
                &whole[..]
            }
        };
        match self {
            Found::Whole(view) => {
                let all = Chunk::whole(global).map_err(shard)?;
                targets
                    .iter()
                    .map(|target| {
                        assemble(view.dtype(), [(&all, view.view())], target).map_err(shard)
                    })
                    .collect()
            }
            Found::Parts(s) => {
                s.check().map_err(shard)?;
                let held = || s.parts().iter().map(|(c, _)| c);
                targets
                    .iter()
                    .map(|target| {
                        if !covers(held(), target).map_err(shard)? {
                            return Err(LoadProblem::NotHeld {
                                key: key.to_owned(),
                                needed: Box::new(target.clone()),
                                held: held().cloned().collect(),
                            });
                        }
                        // A part that is the target, read in place: shared, not copied
                        // (its clone is a reference to the same bytes, on the host, in
                        // C order, as `assemble` makes them).
                        if let Some((_, part)) =
                            s.parts().iter().find(|(c, t)| c == target && t.is_mapped())
                        {
                            return Ok(part.clone());
                        }
                        let pieces = s.parts().iter().map(|(c, t)| (c, t.view()));
                        assemble(s.dtype(), pieces, target).map_err(shard)
                    })
                    .collect()
            }
        }
    }
}
