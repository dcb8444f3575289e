//! [`Staging`]: the host memory a [`Saver`](super::Saver) copies a rank's tensors into, kept
//! from one save to the next, and [`Staged`], the tensors it holds for one save.
//!
//! One buffer holds every tensor this rank writes, each at a 64-byte-aligned offset. The
//! staged tensors read it in place ([`Tensor::mapped`]), each holding a reference to it, so
//! once the background save has dropped them the buffer is the saver's alone again, and the
//! next save writes into it: no allocation, and no page the kernel has to zero again.

use std::ops::Range;
use std::sync::Arc;

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use super::Error;
use crate::dtype::DType;
use crate::file::threads;
use crate::shard::Sharded;
use crate::state::TensorMap;
use crate::storage::Location;
use crate::tensor::{Backing, Tensor, TensorView};

/// Where each staged tensor starts: a multiple of this, a cache line.
const ALIGN: usize = 64;

/// How much larger than a save needs the buffer may stay and be reused; a buffer larger
/// still is given back and a fitting one allocated, so that the memory held stays within
/// a rank's bytes and a little.
pub(super) const SLACK: usize = 32 << 20;

/// Contiguous data is copied in parts of this size, so that one large tensor spreads over
/// every thread of the pool.
const PART: usize = 4 << 20;

/// The staging memory of one rank: one buffer, reused while it fits.
pub(super) struct Staging {
    buffer: Arc<Buffer>,
    allocations: usize,
}

/// Host memory aligned for every element type (8 bytes), which staged tensors borrow.
#[derive(Clone)]
struct Buffer(Vec<u64>);

impl Backing for Buffer {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl Staging {
    /// No memory yet: the first save allocates it.
    pub(super) fn new() -> Self {
        Staging {
            buffer: Arc::new(Buffer(Vec::new())),
            allocations: 0,
        }
    }

    /// The bytes held.
    pub(super) fn capacity(&self) -> usize {
        self.buffer.0.len() * size_of::<u64>()
    }

    /// How many buffers have been allocated so far.
    #[cfg(test)]
    pub(super) fn allocations(&self) -> usize {
        self.allocations
    }

    /// Where the buffer lies, to tell a reused one from a new one.
    #[cfg(test)]
    pub(super) fn address(&self) -> usize {
        self.buffer.0.as_ptr() as usize
    }

    /// The first `len` bytes of a buffer of its own that fits them: the one held if it fits
    /// and no staged tensor still reads it, else a new one.
    fn reserve(&mut self, len: usize) -> &mut [u8] {
        let fits = (len..=len.saturating_add(SLACK)).contains(&self.capacity());
        if !fits || Arc::get_mut(&mut self.buffer).is_none() {
            // The old buffer goes before the new one comes, so that both are never held.
            self.buffer = Arc::new(Buffer(Vec::new()));
            self.buffer = Arc::new(Buffer(vec![0; len.div_ceil(size_of::<u64>())]));
            self.allocations += 1;
        }
        // Not shared (checked, or just made), so this never copies.
        let buffer = Arc::make_mut(&mut self.buffer);
        &mut bytemuck::cast_slice_mut(&mut buffer.0)[..len]
    }
}

/// A rank's tensors, copied into its staging memory: what a background save writes.
pub(super) struct Staged {
    whole: Vec<(String, Whole)>,
    sharded: Vec<(String, Sharded)>,
}

/// A whole (replicated) tensor: its data on rank 0, which writes it; on the other ranks,
/// which only name it in their manifests, its dtype and shape.
enum Whole {
    Data(Tensor),
    Elsewhere { dtype: DType, shape: Vec<usize> },
}

/// One tensor to stage: its key, its data, and where in the buffer it goes.
struct Source<'a> {
    key: &'a str,
    view: TensorView<'a>,
    range: Range<usize>,
}

impl<'a> Source<'a> {
    /// Adds `view` to `sources`, after the last one, at the next aligned offset.
    fn place(sources: &mut Vec<Source<'a>>, key: &'a str, view: TensorView<'a>) {
        let start = sources
            .last()
            .map_or(0, |last| last.range.end.next_multiple_of(ALIGN));
        sources.push(Source {
            key,
            range: start..start + view.nbytes(),
            view,
        });
    }
}

/// One piece of copying, for one thread of the pool.
enum Copy<'s, 'b> {
    /// Contiguous host bytes.
    Bytes { from: &'s [u8], to: &'b mut [u8] },
    /// A tensor written element by element (strided host data) or streamed (a GPU or
    /// foreign tensor).
    Stream {
        source: &'s Source<'s>,
        to: &'b mut [u8],
    },
}

impl Staged {
    /// Copies what rank `rank` writes of `state` (every whole tensor on rank 0, and this
    /// rank's parts of the sharded ones) into `staging`, on ckpt's pool (`CKPT_THREADS`, else
    /// every core). Checks what a save would refuse first; touches no file.
    pub(super) fn copy(
        state: &TensorMap<'_>,
        dir: &Location,
        rank: usize,
        staging: &mut Staging,
    ) -> Result<Staged, Error> {
        if let Some(problem) = state.defect() {
            return Err(Error::State {
                dir: dir.clone(),
                key: None,
                problem,
            });
        }
        let state_error = |key: &str, problem: String| Error::State {
            dir: dir.clone(),
            key: Some(key.to_owned()),
            problem,
        };
        let mut sources = Vec::new();
        if rank == 0 {
            for (key, view) in state.iter() {
                Source::place(&mut sources, key, view.view());
            }
        }
        for (key, sharded) in state.sharded() {
            sharded
                .check()
                .map_err(|e| state_error(key, e.to_string()))?;
            for (_, tensor) in sharded.parts() {
                Source::place(&mut sources, key, tensor.view());
            }
        }
        let end = sources.last().map_or(0, |source| source.range.end);
        fill(&sources, staging.reserve(end), &state_error)?;

        // The staged tensors, reading the buffer in place.
        let backing: Arc<dyn Backing> = staging.buffer.clone();
        let mut staged = sources.iter().map(|source| {
            Tensor::mapped(
                Arc::clone(&backing),
                source.range.clone(),
                source.view.dtype(),
                source.view.shape(),
            )
            .map_err(|e| state_error(source.key, e.to_string()))
        });
        let mut whole = Vec::with_capacity(state.len());
        for (key, view) in state.iter() {
            let tensor = match rank {
                0 => match staged.next() {
                    Some(tensor) => Whole::Data(tensor?),
                    None => return Err(state_error(key, "was not staged".to_owned())),
                },
                _ => Whole::Elsewhere {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                },
            };
            whole.push((key.to_owned(), tensor));
        }
        let mut sharded = Vec::with_capacity(state.sharded().len());
        for (key, original) in state.sharded() {
            let parts = original
                .parts()
                .iter()
                .map(|(chunk, _)| match staged.next() {
                    Some(tensor) => Ok((chunk.clone(), tensor?)),
                    None => Err(state_error(key, "was not staged".to_owned())),
                })
                .collect::<Result<_, Error>>()?;
            let copy = Sharded::new(original.dtype(), original.global_shape().to_vec(), parts)
                .map_err(|e| state_error(key, e.to_string()))?;
            sharded.push((key.to_owned(), copy));
        }
        Ok(Staged { whole, sharded })
    }

    /// The staged tensors as the state dict they were copied from: the same keys in the
    /// same order (on ranks other than 0, whole tensors of the same dtypes and shapes, which
    /// only rank 0 writes, without data).
    pub(super) fn state(&self, dir: &Location) -> Result<TensorMap<'_>, Error> {
        let mut state = TensorMap::new();
        for (key, whole) in &self.whole {
            let view = match whole {
                Whole::Data(tensor) => tensor.view(),
                Whole::Elsewhere { dtype, shape } => TensorView::placeholder(*dtype, shape)
                    .ok_or_else(|| Error::State {
                        dir: dir.clone(),
                        key: Some(key.clone()),
                        problem: format!("a {dtype} tensor of shape {shape:?} is too large"),
                    })?,
            };
            state.insert(key.clone(), view);
        }
        for (key, sharded) in &self.sharded {
            state.insert_sharded_unique(key.clone(), sharded);
        }
        Ok(state)
    }
}

/// Copies every source into its range of `buffer`, on ckpt's pool.
fn fill(
    sources: &[Source<'_>],
    buffer: &mut [u8],
    state_error: &(dyn Fn(&str, String) -> Error + Sync),
) -> Result<(), Error> {
    let mut copies = Vec::new();
    let mut rest = buffer;
    let mut at = 0;
    for source in sources {
        let (_, tail) = rest.split_at_mut(source.range.start - at);
        let (to, tail) = tail.split_at_mut(source.range.len());
        rest = tail;
        at = source.range.end;
        match source.view.le_bytes_in_place() {
            Some(from) => copies.extend(
                from.chunks(PART)
                    .zip(to.chunks_mut(PART))
                    .map(|(from, to)| Copy::Bytes { from, to }),
            ),
            None => copies.push(Copy::Stream { source, to }),
        }
    }
    threads::run(None, || {
        copies.into_par_iter().try_for_each(|copy| match copy {
            Copy::Bytes { from, to } => {
                to.copy_from_slice(from);
                Ok(())
            }
            Copy::Stream { source, to } => {
                stream(source, to).map_err(|problem| state_error(source.key, problem))
            }
        })
    })
}

/// Copies a tensor that is not one run of host bytes into `to`, which is exactly its size.
fn stream(source: &Source<'_>, to: &mut [u8]) -> Result<(), String> {
    let written = source.view.write_le_bytes(to).map_err(|e| e.to_string())?;
    if written != to.len() {
        return Err(format!(
            "gave {written} bytes of data while being staged, not {}",
            to.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::Chunk;

    fn tensor(values: impl IntoIterator<Item = f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.into_iter().collect(), shape).unwrap()
    }

    #[test]
    fn the_buffer_is_reused_while_it_fits_and_replaced_when_it_does_not() {
        let mut staging = Staging::new();
        staging.reserve(1000);
        let first = staging.address();
        assert_eq!((staging.allocations(), staging.capacity()), (1, 1000));
        staging.reserve(1000);
        staging.reserve(600); // smaller, within the slack
        assert_eq!((staging.allocations(), staging.address()), (1, first));
        staging.reserve(1001); // larger: a new one, just large enough
        assert_eq!((staging.allocations(), staging.capacity()), (2, 1008));
        staging.reserve(SLACK + 2000);
        staging.reserve(1000); // much smaller: the large one goes
        assert_eq!((staging.allocations(), staging.capacity()), (4, 1000));
    }

    #[test]
    fn a_second_staging_of_the_same_sizes_allocates_nothing() {
        let dir = Location::from(std::path::Path::new("step"));
        let rows = Chunk::split(&[4, 3], 0, 2).unwrap();
        let parts = |seed: f32| {
            rows.iter()
                .map(|c| (c.clone(), tensor((0..6).map(|i| seed + i as f32), &[2, 3])))
                .collect()
        };
        let (w, b) = (
            Sharded::new(DType::F32, vec![4, 3], parts(0.0)).unwrap(),
            tensor([1.0, 2.0, 3.0], &[3]),
        );
        fn state<'a>(w: &'a Sharded, b: &'a Tensor) -> TensorMap<'a> {
            let mut state: TensorMap<'_> = [("b", b.view())].into_iter().collect();
            state.insert_sharded_unique("w".to_owned(), w);
            state
        }
        let mut staging = Staging::new();
        let staged = Staged::copy(&state(&w, &b), &dir, 0, &mut staging).unwrap();
        // b at 0, w's parts at 64 and 128: 24 bytes each.
        assert_eq!(staging.capacity(), 152);
        assert_eq!(staged.state(&dir).unwrap(), state(&w, &b));
        let first = staging.address();
        drop(staged);

        let (w2, b2) = (
            Sharded::new(DType::F32, vec![4, 3], parts(10.0)).unwrap(),
            tensor([4.0, 5.0, 6.0], &[3]),
        );
        let staged = Staged::copy(&state(&w2, &b2), &dir, 0, &mut staging).unwrap();
        assert_eq!((staging.allocations(), staging.address()), (1, first));
        assert_eq!(staged.state(&dir).unwrap(), state(&w2, &b2));

        // While a background save still reads the buffer, it is not written: a new one is.
        let again = Staged::copy(&state(&w, &b), &dir, 0, &mut staging).unwrap();
        assert_eq!(staging.allocations(), 2);
        assert_eq!(staged.state(&dir).unwrap(), state(&w2, &b2));
        assert_eq!(again.state(&dir).unwrap(), state(&w, &b));
    }

    #[test]
    fn other_ranks_stage_only_their_parts_and_name_the_whole_tensors() {
        let dir = Location::from(std::path::Path::new("step"));
        let chunk = Chunk::split(&[4, 3], 0, 2).unwrap().remove(1);
        let w = Sharded::new(
            DType::F32,
            vec![4, 3],
            vec![(chunk, tensor((0..6).map(|i| i as f32), &[2, 3]))],
        )
        .unwrap();
        // A strided view: streamed rather than copied as one run of bytes.
        let t = ndarray::Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32);
        let transposed = t.t();
        let mut state: TensorMap<'_> = [("b", crate::tensor::TensorView::from(transposed))]
            .into_iter()
            .collect();
        state.insert_sharded_unique("w".to_owned(), &w);

        let mut staging = Staging::new();
        let staged = Staged::copy(&state, &dir, 1, &mut staging).unwrap();
        assert_eq!(staging.capacity(), 24);
        let back = staged.state(&dir).unwrap();
        assert_eq!(back.get_sharded("w"), Some(&w));
        assert_eq!(
            (back["b"].dtype(), back["b"].shape()),
            (DType::F32, &[3, 2][..])
        );

        let staged = Staged::copy(&state, &dir, 0, &mut staging).unwrap();
        assert_eq!(staged.state(&dir).unwrap(), state);
        let b = staged.state(&dir).unwrap()["b"]
            .to_le_bytes()
            .unwrap()
            .into_owned();
        assert_eq!(b, state["b"].to_le_bytes().unwrap().as_ref());
    }

    #[test]
    fn a_part_of_the_wrong_shape_is_refused_before_anything_is_copied() {
        let dir = Location::from(std::path::Path::new("step-3"));
        let chunk = Chunk::split(&[4, 3], 0, 2).unwrap().remove(0);
        let mut w = Sharded::new(
            DType::F32,
            vec![4, 3],
            vec![(chunk, tensor([0.0; 6], &[2, 3]))],
        )
        .unwrap();
        if let Some((_, part)) = w.parts_mut().next() {
            *part = tensor([0.0; 3], &[3]);
        }
        let mut state = TensorMap::new();
        state.insert_sharded_unique("w".to_owned(), &w);
        let mut staging = Staging::new();
        let err = Staged::copy(&state, &dir, 0, &mut staging).err().unwrap();
        assert!(
            err.to_string().starts_with("step-3: \"w\" cannot be saved"),
            "{err}"
        );
        assert_eq!(staging.allocations(), 0);
    }
}
