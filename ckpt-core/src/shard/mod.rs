//! The geometry of sharded tensors: a [`Chunk`] of a global tensor, the intersection of two
//! chunks, copying the elements they share between their row-major buffers
//! ([`copy_overlap`]), whether chunks tile a tensor exactly ([`check_tiling`]), and the byte
//! ranges of a stored chunk that another one needs ([`byte_ranges`]), which is what a
//! resharding reader fetches; and [`Sharded`], the parts of a global tensor that one
//! process holds, as a field of a model.
//!
//! All of it works on shapes in `u64` with checked arithmetic, so geometry read from an
//! untrusted file is validated ([`Chunk::new`]) before anything is allocated for it. Buffers
//! are little-endian row-major bytes; only the element size of a [`DType`]
//! matters here.
//!
//! Resharding a tensor saved as two row halves into a rank that holds its right column half:
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::DType;
//! use ckpt::shard::{Chunk, byte_ranges, check_tiling, copy_overlap};
//!
//! let global = [4u64, 4];
//! let saved = Chunk::split(&global, 0, 2)?; // rows 0..2 and 2..4
//! check_tiling(&global, &saved)?;
//! let data: Vec<Vec<u8>> = vec![(0..8).collect(), (8..16).collect()]; // u8 elements
//!
//! let mine = Chunk::split(&global, 1, 2)?.remove(1); // columns 2..4
//! let mut local = vec![0u8; mine.buffer_len(DType::U8)?];
//! for (chunk, bytes) in saved.iter().zip(&data) {
//!     // Fetch only the ranges this rank needs: they are the overlap, row-major.
//!     let Some(overlap) = chunk.intersect(&mine)? else { continue };
//!     let fetched: Vec<u8> = byte_ranges(DType::U8, chunk, &mine)?
//!         .into_iter()
//!         .flat_map(|r| bytes[r.start as usize..r.end as usize].to_vec())
//!         .collect();
//!     copy_overlap(DType::U8, &overlap, &fetched, &mine, &mut local)?;
//! }
//! assert_eq!(local, [2, 3, 6, 7, 10, 11, 14, 15]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chunk;
mod copy;
mod ranges;
mod runs;
mod sharded;
mod tiling;

pub use self::chunk::Chunk;
pub use self::copy::copy_overlap;
pub(crate) use self::copy::{check_len, overlap_runs};
pub use self::ranges::{byte_ranges, coalesce};
pub use self::sharded::Sharded;
pub(crate) use self::sharded::{assemble, covers, in_place, local_shape};
pub use self::tiling::check_tiling;

use crate::dtype::DType;

/// What is wrong with a chunk, a pair of chunks, or a set of chunks meant to tile a tensor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// Offsets and sizes do not have one entry per dimension of the global shape.
    #[error(
        "a chunk of global shape {global:?} needs {} offsets and sizes, got {offsets} offsets and {sizes} sizes",
        global.len()
    )]
    Rank {
        /// The global shape.
        global: Vec<u64>,
        /// How many offsets were given.
        offsets: usize,
        /// How many sizes were given.
        sizes: usize,
    },
    /// The chunk reaches past the end of the global shape in some dimension.
    #[error(
        "chunk at offsets {offsets:?} with sizes {sizes:?} does not fit in global shape {global:?}: dimension {dim} ends at {}, past {}",
        u128::from(offsets[*dim]) + u128::from(sizes[*dim]),
        global[*dim]
    )]
    OutOfBounds {
        /// The global shape.
        global: Vec<u64>,
        /// The chunk's offsets.
        offsets: Vec<u64>,
        /// The chunk's sizes.
        sizes: Vec<u64>,
        /// The first dimension that does not fit.
        dim: usize,
    },
    /// The element or byte count of a shape does not fit in 64 bits (or, for a buffer in
    /// memory, in `usize`).
    #[error("shape {shape:?} of {dtype} is too large: its size in bytes overflows")]
    Overflow {
        /// The shape whose size overflowed.
        shape: Vec<u64>,
        /// The element type (`U8` when only the element count was asked for).
        dtype: DType,
    },
    /// Two chunks that should be parts of one tensor have different global shapes.
    #[error("chunks of different tensors: global shapes {left:?} and {right:?}")]
    GlobalShape {
        /// The first chunk's global shape.
        left: Vec<u64>,
        /// The second chunk's global shape.
        right: Vec<u64>,
    },
    /// A buffer does not hold exactly the bytes of its chunk.
    #[error("the buffer of chunk {chunk} holds {actual} bytes; {dtype} needs {expected}")]
    BufferLength {
        /// The chunk the buffer stands for.
        chunk: Chunk,
        /// The element type.
        dtype: DType,
        /// Element count × item size.
        expected: u64,
        /// The buffer's length.
        actual: usize,
    },
    /// Two chunks of a set that should tile a tensor overlap.
    #[error("chunks {first} and {second} overlap at {overlap}")]
    Overlap {
        /// One chunk.
        first: Box<Chunk>,
        /// Another chunk, which overlaps the first.
        second: Box<Chunk>,
        /// Where they overlap.
        overlap: Box<Chunk>,
    },
    /// A set of chunks that should tile a tensor leaves some of it uncovered.
    #[error("chunks cover {covered} of the {total} elements of global shape {global:?}")]
    Gap {
        /// The global shape.
        global: Vec<u64>,
        /// Elements the chunks cover.
        covered: u128,
        /// Elements of the global tensor.
        total: u64,
    },
    /// A part of a [`Sharded`] tensor holds data of another shape or dtype than its chunk.
    #[error(
        "the data of chunk {chunk} is {actual_dtype} of shape {actual_shape:?}; the chunk needs {dtype} of shape {:?}",
        chunk.sizes()
    )]
    PartData {
        /// The chunk.
        chunk: Chunk,
        /// The sharded tensor's dtype.
        dtype: DType,
        /// The data's dtype.
        actual_dtype: DType,
        /// The data's shape.
        actual_shape: Vec<usize>,
    },
    /// Tensor data could not be read (a GPU failed a copy).
    #[error("the tensor data could not be read: {0}")]
    Device(#[source] crate::device::DeviceError),
    /// A part's tensor could not be made.
    #[error("a part could not be made: {0}")]
    Tensor(#[source] crate::tensor::TensorError),
}

#[cfg(test)]
mod tests;
