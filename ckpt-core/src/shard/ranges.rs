//! The byte ranges of a stored chunk that another chunk needs: what a ranged read fetches.

use std::ops::Range;

use super::runs::for_each_run;
use super::{Chunk, ShardError};
use crate::dtype::DType;

/// The byte ranges of `stored`'s row-major data (counted from its first byte) that hold the
/// elements `needed` shares with it, ascending and with adjacent ranges merged; empty if they
/// share nothing.
///
/// Read and concatenated in order, the ranges are exactly the data of the overlap
/// (`stored.intersect(needed)`) in row-major order, ready for [`copy_overlap`](super::copy_overlap)
/// from the overlap into `needed`. Their total is the overlap's size, so a reader that fetches
/// them reads nothing it does not need; [`coalesce`] trades a little of that for fewer requests.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::DType;
/// use ckpt::shard::{Chunk, byte_ranges};
///
/// // A stored 4 × 4 f32 tensor; a rank needs columns 2..4 of rows 1..3.
/// let stored = Chunk::whole(vec![4, 4])?;
/// let needed = Chunk::new(vec![4, 4], vec![1, 2], vec![2, 2])?;
/// assert_eq!(byte_ranges(DType::F32, &stored, &needed)?, [24..32, 40..48]);
///
/// // Whole rows are one range.
/// let rows = Chunk::new(vec![4, 4], vec![1, 0], vec![2, 4])?;
/// assert_eq!(byte_ranges(DType::F32, &stored, &rows)?, [16..48]);
/// # Ok::<(), ckpt::shard::ShardError>(())
/// ```
pub fn byte_ranges(
    dtype: DType,
    stored: &Chunk,
    needed: &Chunk,
) -> Result<Vec<Range<u64>>, ShardError> {
    stored.nbytes(dtype)?;
    let Some(overlap) = stored.intersect(needed)? else {
        return Ok(Vec::new());
    };
    let item = dtype.size_in_bytes() as u64;
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for_each_run(&overlap, [stored], |[start], len| {
        let (start, end) = (start * item, (start + len) * item);
        match ranges.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => ranges.push(start..end),
        }
    });
    Ok(ranges)
}

/// Merges ascending, disjoint `ranges` whose gaps are at most `max_gap` bytes, so a reader
/// makes one request where it would make many small ones, reading the gaps too.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::shard::coalesce;
///
/// assert_eq!(coalesce(&[0..4, 6..8, 100..104], 16), [0..8, 100..104]);
/// ```
pub fn coalesce(ranges: &[Range<u64>], max_gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start >= last.end && r.start - last.end <= max_gap => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r.clone()),
        }
    }
    out
}
