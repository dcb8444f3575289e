//! Whether a set of chunks is a tensor cut into pieces: every element in exactly one.

use super::{Chunk, ShardError};

/// Checks that `chunks` tile a tensor of shape `global` exactly: all are chunks of it, no two
/// share an element, and together they hold every element. Empty chunks are allowed and
/// ignored.
///
/// The overlap check sweeps along the dimension the chunks are cut most along, so the usual
/// row, column and block shardings cost about `n log n`; it is quadratic only for chunks that
/// all span one another in every dimension, which overlap anyway.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::shard::{Chunk, ShardError, check_tiling};
///
/// let blocks = Chunk::grid(&[6, 4], &[3, 2])?;
/// check_tiling(&[6, 4], &blocks)?;
///
/// // Drop one block: a gap.
/// let err = check_tiling(&[6, 4], &blocks[1..]).unwrap_err();
/// assert!(matches!(err, ShardError::Gap { covered: 20, total: 24, .. }));
/// # Ok::<(), ShardError>(())
/// ```
pub fn check_tiling(global: &[u64], chunks: &[Chunk]) -> Result<(), ShardError> {
    let whole = Chunk::whole(global.to_vec())?;
    let mut covered: u128 = 0;
    for chunk in chunks {
        if chunk.global_shape() != global {
            return Err(ShardError::GlobalShape {
                left: global.to_vec(),
                right: chunk.global_shape().to_vec(),
            });
        }
        covered += u128::from(chunk.numel());
    }

    let mut full: Vec<&Chunk> = chunks.iter().filter(|c| !c.is_empty()).collect();
    if let Some(dim) = sweep_dim(&full) {
        full.sort_by_key(|c| c.offsets()[dim]);
        for (i, a) in full.iter().enumerate() {
            for b in full[i + 1..]
                .iter()
                .take_while(|b| b.offsets()[dim] < a.end(dim))
            {
                if let Some(overlap) = a.intersect(b)? {
                    return Err(ShardError::Overlap {
                        first: Box::new((*a).clone()),
                        second: Box::new((*b).clone()),
                        overlap: Box::new(overlap),
                    });
                }
            }
        }
    } else if full.len() > 1 {
        // A 0-dimensional tensor: every non-empty chunk is the whole of it.
        return Err(ShardError::Overlap {
            first: Box::new(full[0].clone()),
            second: Box::new(full[1].clone()),
            overlap: Box::new(whole),
        });
    }

    // Disjoint boxes inside the tensor cover it exactly when their sizes add up to it.
    if covered != u128::from(whole.numel()) {
        return Err(ShardError::Gap {
            global: global.to_vec(),
            covered,
            total: whole.numel(),
        });
    }
    Ok(())
}

/// The dimension along which the chunks start at the most distinct offsets.
fn sweep_dim(chunks: &[&Chunk]) -> Option<usize> {
    let ndim = chunks.first()?.ndim();
    (0..ndim).max_by_key(|&d| {
        let mut starts: Vec<u64> = chunks.iter().map(|c| c.offsets()[d]).collect();
        starts.sort_unstable();
        starts.dedup();
        starts.len()
    })
}
