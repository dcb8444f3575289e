//! ckpt's own sharded checkpoints: `Sharded` fields in models, saves from several ranks
//! (threads here, real processes in `processes.rs`), resharding loads, and damaged files.

mod coordinated;
mod hostile;
mod processes;
mod reshard;
mod saver;
mod stale;
mod state;
mod whole;

use ckpt::shard::{Chunk, Sharded};
use ckpt::{DType, Tensor};

/// The value of element `index` (row-major, of the global tensor) of tensor `seed`.
pub(crate) fn value(seed: u64, index: u64) -> f32 {
    ((index.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 10_007) as f32 - 5_000.0
}

/// The global tensor `seed` of `shape`, whole.
pub(crate) fn whole(seed: u64, shape: &[u64]) -> Tensor {
    let n: u64 = shape.iter().product();
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    Tensor::from_vec((0..n).map(|i| value(seed, i)).collect(), &shape).unwrap()
}

/// The parts `chunks` of the global tensor `seed`.
pub(crate) fn parts(seed: u64, shape: &[u64], chunks: Vec<Chunk>) -> Sharded {
    Sharded::from_whole(&whole(seed, shape).view(), chunks).unwrap()
}

/// Zero-filled parts `chunks` of an f32 tensor of `shape`.
pub(crate) fn zeros(shape: &[u64], chunks: Vec<Chunk>) -> Sharded {
    Sharded::zeros(DType::F32, shape.to_vec(), chunks).unwrap()
}

/// Whether every part of `s` holds the values of tensor `seed`.
pub(crate) fn holds(s: &Sharded, seed: u64) -> bool {
    *s == parts(
        seed,
        s.global_shape(),
        s.parts().iter().map(|(c, _)| c.clone()).collect(),
    )
}
