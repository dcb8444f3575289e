//! The plainest code that moves W's bytes, what every ckpt figure is held against: one-thread
//! and every-core copies, the file read once, one hash pass over it, plain writes, and the
//! safetensors crate.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::ThreadPool;
use rayon::iter::{IntoParallelIterator, ParallelIterator};

use ckpt::StateDict;
use ckpt::state::{KeyPath, Leaf, Role};

use super::workload::Gpt2;

/// What the parallel anchors cut their work into, as ckpt's loads do: every thread holds one
/// part at a time.
pub(crate) const PART: usize = 1 << 20;

/// A pool of `threads` threads, for the parallel anchors.
pub(crate) fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Copies `source` into `target`, tensor by tensor, on one thread: what a loader that copies
/// from memory on one core can at best do.
pub(crate) fn memcpy(target: &mut Gpt2, source: &Gpt2) {
    for (to, from) in target.arrays_mut().into_iter().zip(source.arrays()) {
        to.copy_from_slice(from);
    }
}

/// The same copy on every thread of `pool`, parts of [`PART`]: the memory's limit for any
/// load into a model.
pub(crate) fn memcpy_parallel(target: &mut Gpt2, source: &Gpt2, pool: &ThreadPool) {
    let mut pairs: Vec<(&mut [u8], &[u8])> = Vec::new();
    for (to, from) in target.arrays_mut().into_iter().zip(source.arrays()) {
        let (to, from): (&mut [u8], &[u8]) =
            (bytemuck::cast_slice_mut(to), bytemuck::cast_slice(from));
        pairs.extend(to.chunks_mut(PART).zip(from.chunks(PART)));
    }
    pool.install(|| {
        pairs
            .into_par_iter()
            .for_each(|(to, from)| to.copy_from_slice(from));
    });
}

/// A snapshot's copy: every tensor into memory allocated for it, as `save_async` must.
pub(crate) fn memcpy_fresh(source: &Gpt2) -> Vec<Vec<f32>> {
    source.arrays().into_iter().map(<[f32]>::to_vec).collect()
}

/// Reads the file at `path` once from the page cache with `pread`, into one part-sized buffer
/// per thread that stays in the CPU's cache: the file's bytes cross memory once. With `hash`,
/// each part is hashed (xxh3) as it arrives: a checksum pass fused with the page-in.
pub(crate) fn raw_read(path: &Path, pool: &ThreadPool, hash: bool) -> u64 {
    thread_local!(static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; PART]));
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    pool.install(|| {
        (0..len.div_ceil(PART))
            .into_par_iter()
            .map(|part| {
                BUF.with_borrow_mut(|buf| {
                    let start = part * PART;
                    let buf = &mut buf[..PART.min(len - start)];
                    file.read_exact_at(buf, start as u64).unwrap();
                    if hash {
                        xxhash_rust::xxh3::xxh3_64(buf)
                    } else {
                        u64::from(buf[0])
                    }
                })
            })
            .reduce(|| 0, u64::wrapping_add)
    })
}

/// One hash pass over the mapped file, each part mapped in one call (`MADV_POPULATE_READ`),
/// hashed and let go, as ckpt's checksum pass reads it.
pub(crate) fn hash_mapped(path: &Path, pool: &ThreadPool, crc: bool) -> u64 {
    let file = File::open(path).unwrap();
    // SAFETY: the benchmark's own file, not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    pool.install(|| {
        (0..map.len().div_ceil(PART))
            .into_par_iter()
            .map(|part| {
                let start = part * PART;
                let n = PART.min(map.len() - start);
                let _ = map.advise_range(memmap2::Advice::PopulateRead, start, n);
                let bytes = &map[start..start + n];
                let h = if crc {
                    u64::from(crc32fast::hash(bytes))
                } else {
                    xxhash_rust::xxh3::xxh3_64(bytes)
                };
                // SAFETY: a read-only shared mapping: touched again, the pages are re-read
                // from the page cache.
                let _ = unsafe {
                    map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, n)
                };
                h
            })
            .reduce(|| 0, u64::wrapping_add)
    })
}

/// Plain `write` calls of every tensor's bytes into a new file.
pub(crate) fn raw_write(model: &Gpt2, path: &Path, fsync: bool) {
    let mut file = File::create(path).unwrap();
    for (_, tensor) in model.state_dict().iter() {
        file.write_all(&tensor.to_le_bytes().unwrap()).unwrap();
    }
    if fsync {
        file.sync_all().unwrap();
    }
}

struct St<'a> {
    shape: Vec<usize>,
    data: &'a [u8],
}

impl safetensors::View for St<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The safetensors crate's save.
pub(crate) fn safetensors_save(model: &Gpt2, path: &Path) {
    let state = model.state_dict();
    let views: Vec<(String, St<'_>)> = state
        .iter()
        .map(|(k, v)| {
            let data = match v.to_le_bytes() {
                Ok(Cow::Borrowed(b)) => b,
                _ => unreachable!("contiguous host arrays lend their bytes"),
            };
            (
                k.to_owned(),
                St {
                    shape: v.shape().to_vec(),
                    data,
                },
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// The safetensors crate's load, mapped, copied into the model: it checks nothing.
pub(crate) fn safetensors_load_into(model: &mut Gpt2, path: &Path) {
    let file = File::open(path).unwrap();
    // SAFETY: the benchmark's own file, not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&map).unwrap();
    model.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, _| {
            let data = tensors.tensor(key).unwrap().data();
            leaf.contiguous_bytes_mut().unwrap().copy_from_slice(data);
        },
    );
}
