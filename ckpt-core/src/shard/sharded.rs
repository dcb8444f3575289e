//! [`Sharded`]: the chunks of a global tensor that one process holds, as a field of a model.

use super::{Chunk, ShardError, copy_overlap};
use crate::dtype::DType;
use crate::tensor::{Tensor, TensorError, TensorView};

/// The parts of a global tensor that one process (one rank of a job) holds: its global shape
/// and dtype, and one or more [`Chunk`]s of it, each with its local data.
///
/// It is a field of a model like a [`Tensor`]: `#[derive(StateDict)]` and `state_dict()` take
/// it unchanged, under its global key. `load_state_dict` fills its parts from the global
/// tensor (or from another `Sharded` that holds them), checking the global shape, and
/// [`distributed::save`](crate::distributed::save) writes each rank's parts to one sharded
/// checkpoint. A plain `ckpt::save` of a state dict holding one is refused, naming the key:
/// one process holds only part of the tensor.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::shard::{Chunk, Sharded};
/// use ckpt::{DType, Tensor};
///
/// // Rank 1 of 2 holds rows 2..4 of a 4 × 3 tensor.
/// let rows = Chunk::split(&[4, 3], 0, 2)?.remove(1);
/// let local = Tensor::from_vec((6..12).map(|i| i as f32).collect(), &[2, 3])?;
/// let w = Sharded::new(DType::F32, vec![4, 3], vec![(rows, local)])?;
/// assert_eq!(w.global_shape(), [4, 3]);
/// assert_eq!(w.local_nbytes(), 24);
///
/// // A tensor of the wrong shape for its chunk is refused.
/// let rows = Chunk::split(&[4, 3], 0, 2)?.remove(0);
/// assert!(Sharded::new(DType::F32, vec![4, 3], vec![(rows, Tensor::zeros(DType::F32, &[3, 3])?)]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Sharded {
    dtype: DType,
    global: Vec<u64>,
    parts: Vec<(Chunk, Tensor)>,
}

impl Sharded {
    /// The parts `parts` of a tensor of `dtype` and shape `global`: each chunk of that global
    /// shape, with a tensor of `dtype` whose shape is the chunk's sizes. The chunks of one
    /// process must not overlap; a process may hold none.
    pub fn new(
        dtype: DType,
        global: Vec<u64>,
        parts: Vec<(Chunk, Tensor)>,
    ) -> Result<Self, ShardError> {
        let sharded = Sharded {
            dtype,
            global,
            parts,
        };
        sharded.check()?;
        Ok(sharded)
    }

    /// Zero-filled parts `chunks` of a tensor of `dtype`, the chunks' global shape (`global`
    /// when there are none): a model's field before it loads a checkpoint.
    pub fn zeros(dtype: DType, global: Vec<u64>, chunks: Vec<Chunk>) -> Result<Self, ShardError> {
        let parts = chunks
            .into_iter()
            .map(|chunk| {
                let shape = local_shape(&chunk)?;
                let tensor = Tensor::zeros(dtype, &shape).map_err(|_| ShardError::Overflow {
                    shape: chunk.sizes().to_vec(),
                    dtype,
                })?;
                Ok((chunk, tensor))
            })
            .collect::<Result<_, ShardError>>()?;
        Sharded::new(dtype, global, parts)
    }

    /// The parts `chunks` of the whole tensor `whole`, copied out of it: how one process
    /// splits a tensor it holds whole.
    pub fn from_whole(whole: &TensorView<'_>, chunks: Vec<Chunk>) -> Result<Self, ShardError> {
        let dtype = whole.dtype();
        let global: Vec<u64> = whole.shape().iter().map(|&d| d as u64).collect();
        let all = Chunk::whole(global.clone())?;
        let bytes = whole.to_le_bytes().map_err(ShardError::Device)?;
        let parts = chunks
            .into_iter()
            .map(|chunk| {
                let mut local = vec![0u8; chunk.buffer_len(dtype)?];
                copy_overlap(dtype, &all, &bytes, &chunk, &mut local)?;
                let tensor = Tensor::from_le_bytes(dtype, &local_shape(&chunk)?, &local)
                    .map_err(ShardError::Tensor)?;
                Ok((chunk, tensor))
            })
            .collect::<Result<_, ShardError>>()?;
        Sharded::new(dtype, global, parts)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape of the whole tensor.
    pub fn global_shape(&self) -> &[u64] {
        &self.global
    }

    /// The chunks this process holds, with their data, in order.
    pub fn parts(&self) -> &[(Chunk, Tensor)] {
        &self.parts
    }

    /// The local data of each part, mutably (an optimizer's update). A tensor replaced by one
    /// of another shape or dtype makes saving and loading it an error naming the key.
    pub fn parts_mut(&mut self) -> impl Iterator<Item = (&Chunk, &mut Tensor)> + '_ {
        self.parts.iter_mut().map(|(c, t)| (&*c, t))
    }

    /// The bytes of the local data.
    pub fn local_nbytes(&self) -> u64 {
        self.parts.iter().map(|(_, t)| t.nbytes() as u64).sum()
    }

    /// Checks that every part is a chunk of the global shape with data of its sizes and
    /// dtype, and that no two parts overlap.
    pub fn check(&self) -> Result<(), ShardError> {
        Chunk::whole(self.global.clone())?;
        for (i, (chunk, tensor)) in self.parts.iter().enumerate() {
            if chunk.global_shape() != self.global.as_slice() {
                return Err(ShardError::GlobalShape {
                    left: self.global.clone(),
                    right: chunk.global_shape().to_vec(),
                });
            }
            let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
            if shape != chunk.sizes() || tensor.dtype() != self.dtype {
                return Err(ShardError::PartData {
                    chunk: chunk.clone(),
                    dtype: self.dtype,
                    actual_dtype: tensor.dtype(),
                    actual_shape: tensor.shape().to_vec(),
                });
            }
            for (other, _) in &self.parts[..i] {
                if let Some(overlap) = chunk.intersect(other)? {
                    return Err(ShardError::Overlap {
                        first: Box::new(other.clone()),
                        second: Box::new(chunk.clone()),
                        overlap: Box::new(overlap),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A chunk's sizes as a tensor shape.
pub(crate) fn local_shape(chunk: &Chunk) -> Result<Vec<usize>, ShardError> {
    chunk
        .sizes()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| ShardError::Overflow {
            shape: chunk.sizes().to_vec(),
            dtype: DType::U8,
        })
}

/// The part `target` of a tensor of `dtype`, gathered from `pieces`: chunks of that tensor
/// with their data, which do not overlap. Elements no piece holds are zero; see [`covers`].
pub(crate) fn assemble<'p>(
    dtype: DType,
    pieces: impl IntoIterator<Item = (&'p Chunk, TensorView<'p>)>,
    target: &Chunk,
) -> Result<Tensor, ShardError> {
    let mut local = vec![0u8; target.buffer_len(dtype)?];
    for (chunk, data) in pieces {
        if chunk.intersect(target)?.is_none() {
            continue;
        }
        let bytes = data.to_le_bytes().map_err(ShardError::Device)?;
        copy_overlap(dtype, chunk, &bytes, target, &mut local)?;
    }
    in_place(dtype, &local_shape(target)?, local).map_err(ShardError::Tensor)
}

/// A tensor of `bytes` (little-endian), read in place rather than copied where the element
/// type allows it (aligned, on a little-endian host).
pub(crate) fn in_place(
    dtype: DType,
    shape: &[usize],
    bytes: Vec<u8>,
) -> Result<Tensor, TensorError> {
    let len = bytes.len();
    Tensor::mapped(std::sync::Arc::new(bytes), 0..len, dtype, shape)
}

/// Whether the disjoint chunks `held` hold every element of `target`.
pub(crate) fn covers<'c>(
    held: impl IntoIterator<Item = &'c Chunk>,
    target: &Chunk,
) -> Result<bool, ShardError> {
    let mut covered = 0u64;
    for chunk in held {
        if let Some(overlap) = chunk.intersect(target)? {
            covered += overlap.numel();
        }
    }
    Ok(covered == target.numel())
}
