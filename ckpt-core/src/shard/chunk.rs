//! [`Chunk`]: a box of a global tensor, validated once so every later computation on it is
//! free of overflow.

use core::fmt;

use serde::{Deserialize, Serialize};

use super::ShardError;
use crate::dtype::DType;

/// A chunk of a global tensor: the box `offsets[d] .. offsets[d] + sizes[d]` in every
/// dimension `d` of the global shape.
///
/// Every `Chunk` is valid by construction ([`Chunk::new`], and deserialization goes through
/// the same checks): one offset and one size per dimension, the box inside the global shape,
/// and the global element count fits in a `u64`. So a chunk's element count, any offset in it
/// and the intersection of two chunks never overflow. A chunk may be empty (a size of 0), as
/// the last ranks of an uneven split are.
///
/// A chunk's data is stored row-major (C order) over its own `sizes`.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::shard::Chunk;
///
/// // Rows 2..4 of an 8 × 3 tensor.
/// let rows = Chunk::new(vec![8, 3], vec![2, 0], vec![2, 3])?;
/// assert_eq!(rows.numel(), 6);
/// assert_eq!(rows.to_string(), "[2..4, 0..3] of [8, 3]");
///
/// // A chunk must lie inside its tensor.
/// assert!(Chunk::new(vec![8, 3], vec![7, 0], vec![2, 3]).is_err());
/// # Ok::<(), ckpt::shard::ShardError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawChunk")]
pub struct Chunk {
    global: Vec<u64>,
    offsets: Vec<u64>,
    sizes: Vec<u64>,
}

/// A chunk as written in a file, before its checks.
#[derive(Deserialize)]
struct RawChunk {
    global: Vec<u64>,
    offsets: Vec<u64>,
    sizes: Vec<u64>,
}

impl TryFrom<RawChunk> for Chunk {
    type Error = ShardError;

    fn try_from(raw: RawChunk) -> Result<Self, ShardError> {
        Chunk::new(raw.global, raw.offsets, raw.sizes)
    }
}

impl Chunk {
    /// The chunk at `offsets` with `sizes` of a tensor of shape `global`.
    ///
    /// Fails if the three do not have the same length, if the chunk reaches past the global
    /// shape, or if the global shape has more than `u64::MAX` elements.
    pub fn new(global: Vec<u64>, offsets: Vec<u64>, sizes: Vec<u64>) -> Result<Self, ShardError> {
        if offsets.len() != global.len() || sizes.len() != global.len() {
            return Err(ShardError::Rank {
                offsets: offsets.len(),
                sizes: sizes.len(),
                global,
            });
        }
        for dim in 0..global.len() {
            let fits = offsets[dim]
                .checked_add(sizes[dim])
                .is_some_and(|end| end <= global[dim]);
            if !fits {
                return Err(ShardError::OutOfBounds {
                    global,
                    offsets,
                    sizes,
                    dim,
                });
            }
        }
        if numel(&global).is_none() {
            return Err(ShardError::Overflow {
                shape: global,
                dtype: DType::U8,
            });
        }
        Ok(Chunk {
            global,
            offsets,
            sizes,
        })
    }

    /// The whole of a tensor of shape `global`, as one chunk: what an unsharded (or
    /// replicated) tensor is.
    pub fn whole(global: Vec<u64>) -> Result<Self, ShardError> {
        let offsets = vec![0; global.len()];
        let sizes = global.clone();
        Chunk::new(global, offsets, sizes)
    }

    /// Splits dimension `dim` of a tensor of shape `global` into `parts` chunks whose sizes
    /// differ by at most one, the larger ones first (`numpy.array_split`); the other
    /// dimensions are whole. Parts past the length of the dimension are empty.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::shard::Chunk;
    ///
    /// let parts = Chunk::split(&[10, 4], 0, 3)?;
    /// let rows: Vec<_> = parts.iter().map(|c| (c.offsets()[0], c.sizes()[0])).collect();
    /// assert_eq!(rows, [(0, 4), (4, 3), (7, 3)]);
    /// # Ok::<(), ckpt::shard::ShardError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `dim` is not a dimension of `global` or `parts` is 0.
    pub fn split(global: &[u64], dim: usize, parts: u64) -> Result<Vec<Chunk>, ShardError> {
        assert!(dim < global.len(), "dimension {dim} of a shape {global:?}");
        assert!(parts > 0, "a split into 0 parts");
        let (base, extra) = (global[dim] / parts, global[dim] % parts);
        let mut offset = 0;
        (0..parts)
            .map(|part| {
                let size = base + u64::from(part < extra);
                let mut offsets = vec![0; global.len()];
                let mut sizes = global.to_vec();
                offsets[dim] = offset;
                sizes[dim] = size;
                offset += size;
                Chunk::new(global.to_vec(), offsets, sizes)
            })
            .collect()
    }

    /// Splits dimension `dim` of a tensor of shape `global` into `parts` chunks by
    /// `torch.chunk`'s rule, the one PyTorch's `DTensor` `Shard(dim)` and FSDP2 use: each
    /// part has `ceil(len / parts)` rows of the dimension, the last ones fewer or none (an
    /// empty part starts at the end). A job that shards as its PyTorch counterpart does, so
    /// that each rank's rows are the same on both sides, splits with this rather than
    /// [`Chunk::split`].
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::shard::Chunk;
    ///
    /// let parts = Chunk::split_like_torch(&[5, 3], 0, 4)?;
    /// let rows: Vec<_> = parts.iter().map(|c| (c.offsets()[0], c.sizes()[0])).collect();
    /// assert_eq!(rows, [(0, 2), (2, 2), (4, 1), (5, 0)]);
    /// # Ok::<(), ckpt::shard::ShardError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `dim` is not a dimension of `global` or `parts` is 0.
    pub fn split_like_torch(
        global: &[u64],
        dim: usize,
        parts: u64,
    ) -> Result<Vec<Chunk>, ShardError> {
        assert!(dim < global.len(), "dimension {dim} of a shape {global:?}");
        assert!(parts > 0, "a split into 0 parts");
        let len = global[dim];
        let each = len.div_ceil(parts);
        (0..parts)
            .map(|part| {
                let start = part.saturating_mul(each).min(len);
                let end = start.saturating_add(each).min(len);
                let mut offsets = vec![0; global.len()];
                let mut sizes = global.to_vec();
                offsets[dim] = start;
                sizes[dim] = end - start;
                Chunk::new(global.to_vec(), offsets, sizes)
            })
            .collect()
    }

    /// Splits a tensor of shape `global` into a grid: dimension `d` into `parts[d]` pieces as
    /// [`Chunk::split`] does, every combination once, in row-major order of the grid (a 2-D
    /// block sharding is `grid(&[rows, cols], &[2, 2])`).
    ///
    /// # Panics
    ///
    /// If `parts` does not have one entry per dimension or an entry is 0.
    pub fn grid(global: &[u64], parts: &[u64]) -> Result<Vec<Chunk>, ShardError> {
        assert_eq!(parts.len(), global.len(), "one part count per dimension");
        let mut chunks = vec![Chunk::whole(global.to_vec())?];
        for (dim, &n) in parts.iter().enumerate() {
            let pieces = Chunk::split(global, dim, n)?;
            chunks = chunks
                .iter()
                .flat_map(|c| {
                    pieces.iter().map(move |p| {
                        let mut c = c.clone();
                        c.offsets[dim] = p.offsets[dim];
                        c.sizes[dim] = p.sizes[dim];
                        c
                    })
                })
                .collect();
        }
        Ok(chunks)
    }

    /// The shape of the whole tensor.
    pub fn global_shape(&self) -> &[u64] {
        &self.global
    }

    /// Where the chunk starts, per dimension.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// How long the chunk is, per dimension: the shape of its local data.
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.global.len()
    }

    /// The number of elements in the chunk (1 for a chunk of a 0-dimensional tensor).
    pub fn numel(&self) -> u64 {
        // A chunk lies inside its global shape, whose count was checked to fit.
        self.sizes.iter().product()
    }

    /// Whether the chunk has no elements.
    pub fn is_empty(&self) -> bool {
        self.numel() == 0
    }

    /// Whether the chunk is the whole tensor.
    pub fn is_whole(&self) -> bool {
        self.sizes == self.global
    }

    /// The size in bytes of the chunk's data in `dtype`.
    pub fn nbytes(&self, dtype: DType) -> Result<u64, ShardError> {
        self.numel()
            .checked_mul(dtype.size_in_bytes() as u64)
            .ok_or_else(|| ShardError::Overflow {
                shape: self.sizes.clone(),
                dtype,
            })
    }

    /// The size in bytes of the chunk's data in `dtype`, as a length of a buffer in memory.
    pub fn buffer_len(&self, dtype: DType) -> Result<usize, ShardError> {
        let bytes = self.nbytes(dtype)?;
        usize::try_from(bytes).map_err(|_| ShardError::Overflow {
            shape: self.sizes.clone(),
            dtype,
        })
    }

    /// The part of the tensor both chunks hold, or `None` if they share no element.
    ///
    /// Fails if the chunks belong to tensors of different shapes.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::shard::Chunk;
    ///
    /// let rows = Chunk::new(vec![4, 6], vec![0, 0], vec![2, 6])?; // rows 0..2
    /// let cols = Chunk::new(vec![4, 6], vec![0, 3], vec![4, 3])?; // columns 3..6
    /// let both = rows.intersect(&cols)?.unwrap();
    /// assert_eq!((both.offsets(), both.sizes()), (&[0, 3][..], &[2, 3][..]));
    /// # Ok::<(), ckpt::shard::ShardError>(())
    /// ```
    pub fn intersect(&self, other: &Chunk) -> Result<Option<Chunk>, ShardError> {
        if self.global != other.global {
            return Err(ShardError::GlobalShape {
                left: self.global.clone(),
                right: other.global.clone(),
            });
        }
        let mut offsets = Vec::with_capacity(self.ndim());
        let mut sizes = Vec::with_capacity(self.ndim());
        for d in 0..self.ndim() {
            let start = self.offsets[d].max(other.offsets[d]);
            let end = self.end(d).min(other.end(d));
            if end <= start {
                return Ok(None);
            }
            offsets.push(start);
            sizes.push(end - start);
        }
        Ok(Some(Chunk {
            global: self.global.clone(),
            offsets,
            sizes,
        }))
    }

    /// Whether `other` lies entirely inside this chunk (an empty chunk lies inside any chunk
    /// of its tensor).
    pub fn contains(&self, other: &Chunk) -> bool {
        self.global == other.global
            && (other.is_empty()
                || (0..self.ndim())
                    .all(|d| self.offsets[d] <= other.offsets[d] && other.end(d) <= self.end(d)))
    }

    /// Where the chunk ends in dimension `d` (exclusive); cannot overflow, see [`Chunk::new`].
    pub(super) fn end(&self, d: usize) -> u64 {
        self.offsets[d] + self.sizes[d]
    }
}

/// The element count of a shape, or `None` if it overflows.
fn numel(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
}

impl fmt::Display for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for d in 0..self.ndim() {
            if d > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}..{}", self.offsets[d], self.end(d))?;
        }
        write!(f, "] of {:?}", self.global)
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chunk({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry() {
        assert!(matches!(
            Chunk::new(vec![4, 4], vec![0], vec![4, 4]),
            Err(ShardError::Rank { .. })
        ));
        let err = Chunk::new(vec![4, 4], vec![0, 3], vec![4, 2]).unwrap_err();
        assert!(matches!(err, ShardError::OutOfBounds { dim: 1, .. }));
        assert!(
            err.to_string().contains("dimension 1 ends at 5, past 4"),
            "{err}"
        );
        // Offsets near u64::MAX: the end is computed without wrapping.
        assert!(matches!(
            Chunk::new(vec![4], vec![u64::MAX], vec![2]),
            Err(ShardError::OutOfBounds { .. })
        ));
        assert!(matches!(
            Chunk::whole(vec![u64::MAX, 2]),
            Err(ShardError::Overflow { .. })
        ));
        // Large but countable: fine, and the byte count reports its own overflow.
        let big = Chunk::whole(vec![1 << 62, 2]).unwrap();
        assert_eq!(big.numel(), 1 << 63);
        assert!(big.nbytes(DType::F32).is_err());
        assert_eq!(big.nbytes(DType::U8).unwrap(), 1 << 63);
    }

    #[test]
    fn scalars_and_empty_chunks() {
        let scalar = Chunk::whole(vec![]).unwrap();
        assert_eq!(scalar.numel(), 1);
        assert!(scalar.is_whole());
        assert_eq!(scalar.intersect(&scalar).unwrap(), Some(scalar.clone()));
        assert_eq!(scalar.to_string(), "[] of []");

        let empty = Chunk::new(vec![4, 4], vec![4, 0], vec![0, 4]).unwrap();
        assert!(empty.is_empty());
        let whole = Chunk::whole(vec![4, 4]).unwrap();
        assert_eq!(whole.intersect(&empty).unwrap(), None);
        assert!(whole.contains(&empty));
    }

    #[test]
    fn intersections() {
        let a = Chunk::new(vec![10, 10], vec![2, 2], vec![5, 5]).unwrap();
        let b = Chunk::new(vec![10, 10], vec![6, 0], vec![4, 3]).unwrap();
        let ab = a.intersect(&b).unwrap().unwrap();
        assert_eq!(ab.to_string(), "[6..7, 2..3] of [10, 10]");
        assert_eq!(b.intersect(&a).unwrap().unwrap(), ab);
        assert!(a.contains(&ab) && b.contains(&ab));
        // Touching boxes share nothing.
        let c = Chunk::new(vec![10, 10], vec![7, 2], vec![3, 5]).unwrap();
        assert_eq!(a.intersect(&c).unwrap(), None);
        let other = Chunk::whole(vec![10, 11]).unwrap();
        assert!(matches!(
            a.intersect(&other),
            Err(ShardError::GlobalShape { .. })
        ));
    }

    #[test]
    fn splits_and_grids() {
        let parts = Chunk::split(&[2, 5], 0, 4).unwrap();
        let sizes: Vec<u64> = parts.iter().map(|c| c.sizes()[0]).collect();
        assert_eq!(sizes, [1, 1, 0, 0]);
        let grid = Chunk::grid(&[5, 4], &[2, 3]).unwrap();
        let shown: Vec<String> = grid.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "[0..3, 0..2] of [5, 4]",
                "[0..3, 2..3] of [5, 4]",
                "[0..3, 3..4] of [5, 4]",
                "[3..5, 0..2] of [5, 4]",
                "[3..5, 2..3] of [5, 4]",
                "[3..5, 3..4] of [5, 4]",
            ]
        );
    }

    #[test]
    fn deserializing_checks_the_geometry() {
        let good: Chunk =
            serde_json::from_str(r#"{"global":[4,4],"offsets":[0,2],"sizes":[4,2]}"#).unwrap();
        assert_eq!(good.to_string(), "[0..4, 2..4] of [4, 4]");
        let bad =
            serde_json::from_str::<Chunk>(r#"{"global":[4,4],"offsets":[0,3],"sizes":[4,2]}"#)
                .unwrap_err();
        assert!(bad.to_string().contains("does not fit"), "{bad}");
    }
}
