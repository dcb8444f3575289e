//! Copying the elements two chunks share from one's buffer into the other's.

use std::ops::Range;

use super::runs::for_each_run;
use super::{Chunk, ShardError};
use crate::dtype::DType;

/// Copies the elements that chunks `src` and `dst` share from `src_data` (the row-major data
/// of `src`) into `dst_data` (the row-major data of `dst`), leaving the rest of `dst_data` as
/// it is. Returns how many elements it copied: 0 if the chunks do not overlap.
///
/// Each contiguous run (the longest that is contiguous in both buffers) is one
/// `copy_from_slice`, so chunks of whole rows copy in one call.
///
/// Fails if the chunks belong to tensors of different shapes or a buffer's length is not its
/// chunk's size in bytes.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::DType;
/// use ckpt::shard::{Chunk, copy_overlap};
///
/// // A 2 × 4 tensor of u8 saved as two column halves, loaded as one row.
/// let left = Chunk::new(vec![2, 4], vec![0, 0], vec![2, 2])?;
/// let right = Chunk::new(vec![2, 4], vec![0, 2], vec![2, 2])?;
/// let row1 = Chunk::new(vec![2, 4], vec![1, 0], vec![1, 4])?;
/// let mut out = [0u8; 4];
/// copy_overlap(DType::U8, &left, &[0, 1, 4, 5], &row1, &mut out)?;
/// copy_overlap(DType::U8, &right, &[2, 3, 6, 7], &row1, &mut out)?;
/// assert_eq!(out, [4, 5, 6, 7]);
/// # Ok::<(), ckpt::shard::ShardError>(())
/// ```
pub fn copy_overlap(
    dtype: DType,
    src: &Chunk,
    src_data: &[u8],
    dst: &Chunk,
    dst_data: &mut [u8],
) -> Result<u64, ShardError> {
    check_len(dtype, src, src_data.len())?;
    check_len(dtype, dst, dst_data.len())?;
    overlap_runs(dtype, src, dst, |s, d| {
        dst_data[d].copy_from_slice(&src_data[s]);
    })
}

/// Calls `f(src_range, dst_range)` for each contiguous run of the elements chunks `src` and
/// `dst` share, with the run's byte ranges in the row-major buffers of `src` and `dst`, in
/// row-major order (so `src_range` ascends). Returns how many elements the chunks share.
///
/// The ranges lie inside buffers of the chunks' sizes in bytes, which the caller checks
/// ([`check_len`]) before indexing with them.
pub(crate) fn overlap_runs(
    dtype: DType,
    src: &Chunk,
    dst: &Chunk,
    mut f: impl FnMut(Range<usize>, Range<usize>),
) -> Result<u64, ShardError> {
    src.nbytes(dtype)?;
    dst.nbytes(dtype)?;
    let Some(overlap) = src.intersect(dst)? else {
        return Ok(0);
    };
    // Offsets below a buffer's element count, times the item size, are below its length,
    // which fits in memory once the buffer is.
    let item = dtype.size_in_bytes();
    for_each_run(&overlap, [src, dst], |[s, d], len| {
        let (s, d, n) = (s as usize * item, d as usize * item, len as usize * item);
        f(s..s + n, d..d + n);
    });
    Ok(overlap.numel())
}

/// Checks that a buffer of `len` bytes holds exactly the data of `chunk` in `dtype`.
pub(crate) fn check_len(dtype: DType, chunk: &Chunk, len: usize) -> Result<(), ShardError> {
    let expected = chunk.nbytes(dtype)?;
    if expected != len as u64 {
        return Err(ShardError::BufferLength {
            chunk: chunk.clone(),
            dtype,
            expected,
            actual: len,
        });
    }
    Ok(())
}
