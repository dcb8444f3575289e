//! CUDA devices through cudarc's driver API, loaded at run time (`libcuda.so`): building needs
//! no toolkit and no GPU, and a machine without them gets [`DeviceError::CudaUnavailable`].
//!
//! Transfers go through two pinned staging buffers per device: while the GPU copies one, the
//! host fills (or drains) the other, so host memory stays at `2 × STAGING` whatever the
//! tensor's size, and loads read the memory-mapped file straight into the staging buffers.
//!
//! Only [`device_count`] and [`raw_copy_bandwidth`] are public; tensors reach GPUs through
//! [`Tensor::to`](crate::Tensor::to), `model.to(device)` and `map_location`. The tensor layer
//! keeps a GPU tensor's bytes in a `CudaStorage` built on the `Gpu` here.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rayon::iter::{IndexedParallelIterator, ParallelIterator};
use rayon::slice::{ParallelSlice, ParallelSliceMut};

use cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DriverError,
    PinnedHostSlice, result, sys,
};

use super::{Device, DeviceError};

/// The size of each of the two pinned staging buffers of a device: large enough for full
/// copy bandwidth, small against host memory.
pub(crate) const STAGING: usize = 16 << 20;

/// Whether CUDA works here: the number of devices, or why not. Probed once per process.
pub(crate) fn probe() -> Result<usize, String> {
    static PROBE: OnceLock<Result<usize, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            // SAFETY: opens and closes the driver library, calling nothing in it.
            if !unsafe { sys::is_culib_present() } {
                return Err("the CUDA driver library libcuda.so was not found".to_owned());
            }
            // cudarc panics on a symbol the driver lacks; an old driver must not abort us.
            match catch_unwind(CudaContext::device_count) {
                Ok(Ok(count)) if count > 0 => Ok(count as usize),
                Ok(Ok(_)) => Err("the CUDA driver sees no device".to_owned()),
                Ok(Err(e)) => Err(format!("the CUDA driver failed to start: {e}")),
                Err(_) => Err("the CUDA driver library lacks a required function".to_owned()),
            }
        })
        .clone()
}

/// One GPU: its primary context and its staging buffers, which one transfer at a time uses.
pub(crate) struct Gpu {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    staging: Mutex<Option<Staging>>,
}

/// Two pinned host buffers, the events that say when the GPU is done with each, and the
/// stream the copies run on.
struct Staging {
    stream: Arc<CudaStream>,
    buffers: [PinnedHostSlice<u8>; 2],
    done: [CudaEvent; 2],
}

/// The GPU with this ordinal, opened on first use.
pub(crate) fn context(ordinal: usize) -> Result<Arc<Gpu>, DeviceError> {
    let device = Device::Cuda(ordinal);
    let count = probe().map_err(|reason| DeviceError::CudaUnavailable { device, reason })?;
    if ordinal >= count {
        return Err(DeviceError::NoSuchDevice { device, count });
    }
    static GPUS: Mutex<Vec<Option<Arc<Gpu>>>> = Mutex::new(Vec::new());
    let mut gpus = GPUS.lock().unwrap_or_else(PoisonError::into_inner);
    if gpus.len() <= ordinal {
        gpus.resize(ordinal + 1, None);
    }
    if let Some(gpu) = &gpus[ordinal] {
        return Ok(Arc::clone(gpu));
    }
    let ctx = guarded(device, "opening the device", || CudaContext::new(ordinal))?;
    let gpu = Arc::new(Gpu {
        ordinal,
        ctx,
        staging: Mutex::new(None),
    });
    gpus[ordinal] = Some(Arc::clone(&gpu));
    Ok(gpu)
}

/// Runs a driver operation, turning its error, or a panic inside cudarc, into a typed error.
fn guarded<T>(
    device: Device,
    operation: &'static str,
    f: impl FnOnce() -> Result<T, DriverError>,
) -> Result<T, DeviceError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(DeviceError::Driver {
            device,
            operation,
            message: e.to_string(),
        }),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(DeviceError::Driver {
                device,
                operation,
                message: format!(
                    "panicked ({what}); an old driver library may lack a function cudarc needs"
                ),
            })
        }
    }
}

impl Gpu {
    pub(crate) fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    pub(crate) fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Runs `f` with this device's staging buffers, allocating them on first use.
    fn with_staging<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Staging) -> Result<T, DriverError>,
    ) -> Result<T, DeviceError> {
        let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        guarded(self.device(), operation, || {
            // The raw copies below need the context current on this thread, which may be
            // new (a background save).
            self.ctx.bind_to_thread()?;
            if staging.is_none() {
                *staging = Some(Staging::new(&self.ctx)?);
            }
            let staging = staging.as_mut().expect("allocated above");
            f(staging)
        })
    }

    /// A new device buffer holding `bytes`, copied through the staging buffers.
    pub(crate) fn upload(&self, bytes: &[u8]) -> Result<Option<CudaSlice<u8>>, DeviceError> {
        if bytes.is_empty() {
            // The driver refuses empty allocations; an empty tensor needs no memory.
            return Ok(None);
        }
        self.with_staging("copying to the device", |staging| {
            // SAFETY: every byte is written by the copy below before anyone reads it.
            let mut data = unsafe { staging.stream.alloc::<u8>(bytes.len()) }?;
            staging.htod(bytes, &mut data)?;
            Ok(Some(data))
        })
    }

    /// Overwrites `data` (as long as `bytes`) with `bytes`.
    pub(crate) fn overwrite(
        &self,
        bytes: &[u8],
        data: &mut CudaSlice<u8>,
    ) -> Result<(), DeviceError> {
        self.with_staging("copying to the device", |staging| staging.htod(bytes, data))
    }

    /// Calls `sink` with `data`'s bytes, in order, one staging buffer at a time.
    pub(crate) fn download(
        &self,
        data: &CudaSlice<u8>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DeviceError> {
        self.with_staging("copying from the device", |staging| {
            staging.dtoh(data, sink)
        })
    }

    /// The raw bandwidth of pinned copies between host and device, in bytes per second, over
    /// `bytes` each way: `(host to device, device to host)`. For benchmarks.
    pub(crate) fn raw_bandwidth(&self, bytes: usize) -> Result<(f64, f64), DeviceError> {
        guarded(self.device(), "measuring copy bandwidth", || {
            let stream = self.ctx.new_stream()?;
            // SAFETY: the buffers are only copied between, never read as values.
            let mut host = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }?;
            let mut device = unsafe { stream.alloc::<u8>(bytes) }?;
            stream.memcpy_htod(&host, &mut device)?; // warm up
            stream.synchronize()?;
            let start = std::time::Instant::now();
            stream.memcpy_htod(&host, &mut device)?;
            stream.synchronize()?;
            let h2d = bytes as f64 / start.elapsed().as_secs_f64();
            let start = std::time::Instant::now();
            stream.memcpy_dtoh(&device, &mut host)?;
            stream.synchronize()?;
            let d2h = bytes as f64 / start.elapsed().as_secs_f64();
            Ok((h2d, d2h))
        })
    }
}

impl Staging {
    fn new(ctx: &Arc<CudaContext>) -> Result<Self, DriverError> {
        // Plain pinned memory, not write-combined: the host reads it back on downloads.
        // SAFETY: staging bytes are always written before they are read.
        let buffer = || unsafe { ctx.alloc_pinned_with_flags::<u8>(STAGING, 0) };
        Ok(Staging {
            stream: ctx.new_stream()?,
            buffers: [buffer()?, buffer()?],
            done: [ctx.new_event(None)?, ctx.new_event(None)?],
        })
    }

    /// Host to device: fills one buffer while the GPU copies from the other.
    fn htod(&mut self, src: &[u8], dst: &mut CudaSlice<u8>) -> Result<(), DriverError> {
        assert_eq!(src.len(), dst.len(), "staged copies are whole tensors");
        let stream = Arc::clone(&self.stream);
        let (dst_ptr, _record) = dst.device_ptr_mut(&stream);
        for (i, chunk) in src.chunks(STAGING).enumerate() {
            let k = i % 2;
            // The copy that last read this buffer must be done before it is refilled.
            self.done[k].synchronize()?;
            let staged = &mut self.buffers[k].as_mut_slice()?[..chunk.len()];
            fill(staged, chunk);
            let at = dst_ptr + (i * STAGING) as sys::CUdeviceptr;
            // The raw copy takes the current context; nothing may have changed it, but a
            // copy in the wrong one would fail or worse.
            stream.context().bind_to_thread()?;
            // SAFETY: `staged` is pinned and not touched again until `done[k]` has fired;
            // `at..at + chunk.len()` lies inside `dst`, which `_record` keeps alive.
            unsafe { result::memcpy_htod_async(at, staged, stream.cu_stream()) }?;
            self.done[k].record(&stream)?;
        }
        stream.synchronize()
    }

    /// Device to host: the GPU fills one buffer while the host drains the other.
    fn dtoh(
        &mut self,
        src: &CudaSlice<u8>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DriverError> {
        let stream = Arc::clone(&self.stream);
        let (src_ptr, _record) = src.device_ptr(&stream);
        let len = src.len();
        let chunks = len.div_ceil(STAGING);
        let chunk_len = |i: usize| STAGING.min(len - i * STAGING);
        let issue = |staging: &mut Staging, i: usize| -> Result<(), DriverError> {
            let k = i % 2;
            let staged = &mut staging.buffers[k].as_mut_slice()?[..chunk_len(i)];
            let at = src_ptr + (i * STAGING) as sys::CUdeviceptr;
            stream.context().bind_to_thread()?; // as in `htod`
            // SAFETY: `staged` is pinned and read only after `done[k]` has fired.
            unsafe { result::memcpy_dtoh_async(staged, at, stream.cu_stream()) }?;
            staging.done[k].record(&stream)
        };
        if chunks > 0 {
            issue(self, 0)?;
        }
        for i in 0..chunks {
            if i + 1 < chunks {
                issue(self, i + 1)?;
            }
            let k = i % 2;
            self.done[k].synchronize()?;
            sink(&self.buffers[k].as_slice()?[..chunk_len(i)]);
        }
        Ok(())
    }
}

/// Copies `src` into `dst` (to or from a staging buffer) on several threads.
///
/// One core copies from the page cache at a fraction of what a PCIe-5 link carries (about
/// 10 against 50 GB/s), so a single-threaded fill, not the DMA, would set the pace of loads.
/// The threads stand ready in a pool of their own, [`copy_pool`]: spawning eight threads per
/// 16 MiB chunk took up to 285 µs, against the 330 µs the link needs to carry the chunk.
///
/// The caller holds a device's staging buffers, so it must not run anything else while it
/// waits for the copies. A thread outside rayon blocks plainly on the pool; a thread of a
/// rayon pool would take its own pool's queued jobs while waiting (perhaps a transfer that
/// wants the same buffers, or one that binds another GPU), so it copies alone instead.
pub(crate) fn fill(dst: &mut [u8], src: &[u8]) {
    const PART: usize = 1 << 20;
    match copy_pool() {
        Some(pool) if src.len() > PART && rayon::current_thread_index().is_none() => {
            pool.install(|| {
                dst.par_chunks_mut(PART)
                    .zip(src.par_chunks(PART))
                    .for_each(|(dst, src)| dst.copy_from_slice(src));
            });
        }
        _ => dst.copy_from_slice(src),
    }
}

/// The threads that [`fill`] copies on: up to eight, doing nothing but copy, so that no
/// other work of the program runs on them; `None` on a single core.
fn copy_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ckpt-copy-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// How many CUDA devices this machine has, or why CUDA cannot be used. Never panics, even
/// without a driver; the answer is probed once and kept.
///
/// ```
/// # use ckpt_core as ckpt;
/// match ckpt::cuda::device_count() {
///     Ok(count) => println!("{count} CUDA device(s)"),
///     Err(e) => println!("{e}"), // cannot use cuda:0: CUDA is not available (...)
/// }
/// ```
pub fn device_count() -> Result<usize, DeviceError> {
    probe().map_err(|reason| DeviceError::CudaUnavailable {
        device: Device::Cuda(0),
        reason,
    })
}

/// The raw bandwidth of plain pinned-memory copies on GPU `ordinal`, in bytes per second,
/// `(host to device, device to host)`, each timed over one copy of `bytes`: the ceiling that
/// ckpt's staged transfers are measured against.
pub fn raw_copy_bandwidth(ordinal: usize, bytes: usize) -> Result<(f64, f64), DeviceError> {
    context(ordinal)?.raw_bandwidth(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_copies_every_byte_whatever_the_split() {
        for len in [0, 1, 63, (2 << 20) + 1, STAGING - 3, STAGING] {
            let src: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut dst = vec![0xAAu8; len];
            fill(&mut dst, &src);
            assert!(dst == src, "length {len}");
        }
    }

    #[test]
    fn the_probe_is_cached_and_typed() {
        // No GPU is needed: without one this is the reason, with one the count.
        assert_eq!(probe(), probe());
        if let Err(reason) = probe() {
            let err = context(0).err().expect("no context without CUDA");
            assert_eq!(
                err,
                DeviceError::CudaUnavailable {
                    device: Device::Cuda(0),
                    reason
                }
            );
        }
    }
}
