//! A fake CUDA driver: the part of the driver API that cudarc calls for ckpt, run on host
//! memory, so that the GPU paths of ckpt's `cuda` feature run in CI.
//!
//! It is stricter than a real driver where a real one would only show a bug as rare
//! corruption:
//!
//! - Work queued on a stream runs only when the host waits for it (on the stream, on an
//!   event recorded after it, or on the context), never earlier. A pinned staging buffer
//!   refilled before the copy that reads it has been waited for thus sends the new bytes, and
//!   the test comparing them fails, where a GPU would usually have been fast enough.
//! - Device addresses are not host addresses (dereferencing one faults), every copy is
//!   bounds-checked against a live allocation, and freed addresses are never handed out again.
//! - Asynchronous copies must use pinned host memory (from `cuMemHostAlloc`): a pageable
//!   buffer would make the real copy synchronous and ckpt's overlap a fiction.
//! - Calls that need a current context fail without one, or with another device's current.
//!
//! Set by the environment, read by `cuInit`:
//!
//! - `FAKE_CUDA_DEVICES`: the number of devices (default 2);
//! - `FAKE_CUDA_MEMORY_MB`: the memory of each device (default 1024);
//! - `FAKE_CUDA_MEMORY_POOLS`: 0 for devices without stream-ordered allocation, which makes
//!   cudarc allocate with `cuMemAlloc` and free with `cuMemFree` after a stream sync
//!   (default 1, as on current GPUs);
//! - `FAKE_CUDA_FAIL_AFTER_MB`: once this many MiB have been copied either way, the device is
//!   lost: the copy that would pass the mark and every later call fail with
//!   `CUDA_ERROR_ILLEGAL_ADDRESS`, as after a crash.
//!
//! Only what ckpt needs is here; a function it lacks makes cudarc panic with "Missing symbol",
//! which ckpt turns into an error, so the test that needed it fails and names it.

#![allow(non_snake_case, clippy::missing_safety_doc)]

use std::alloc::{Layout, alloc, dealloc};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::{Mutex, MutexGuard, PoisonError};

type CUresult = c_uint;
type Handle = *mut c_void;
type DevicePtr = u64;

const SUCCESS: CUresult = 0;
const INVALID_VALUE: CUresult = 1;
const OUT_OF_MEMORY: CUresult = 2;
const NOT_INITIALIZED: CUresult = 3;
const INVALID_DEVICE: CUresult = 101;
const INVALID_CONTEXT: CUresult = 201;
const INVALID_HANDLE: CUresult = 400;
const ILLEGAL_ADDRESS: CUresult = 700;

const MEMORY_POOLS_SUPPORTED: c_uint = 115;

/// Context handles are `CONTEXTS + ordinal`; stream and event handles count up from their bases.
/// None is ever dereferenced by cudarc, so none points anywhere.
const CONTEXTS: usize = 0x1000;
const STREAMS: usize = 0x10_0000;
const EVENTS: usize = 0x20_0000;
/// Device memory lives above the canonical user-space addresses: the host faults on it.
const DEVICE_MEMORY: DevicePtr = 0xDEAD_0000_0000;
const DEVICE_ALIGN: u64 = 256;
const PINNED_ALIGN: usize = 4096;

thread_local! {
    /// The ordinal of this thread's current context, plus one; 0 for none.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// One queued operation on a stream.
enum Op {
    HostToDevice {
        dst: DevicePtr,
        src: usize,
        len: usize,
    },
    DeviceToHost {
        dst: usize,
        src: DevicePtr,
        len: usize,
    },
    Free {
        ptr: DevicePtr,
    },
    /// Waits for another stream to have run `upto` operations.
    Wait {
        stream: usize,
        upto: u64,
    },
}

struct Stream {
    device: usize,
    queue: VecDeque<Op>,
    /// Operations queued since creation, and run: the queue holds the difference.
    queued: u64,
    ran: u64,
}

struct Event {
    device: usize,
    /// The stream and the number of its operations that the last record covered.
    recorded: Option<(usize, u64)>,
}

struct Block {
    device: usize,
    data: Vec<u8>,
    /// Freed by a queued `cuMemFreeAsync`: nothing queued later may use it.
    freed: bool,
}

struct Driver {
    devices: usize,
    memory_pools: bool,
    memory: usize,
    used: Vec<usize>,
    blocks: BTreeMap<DevicePtr, Block>,
    next_address: DevicePtr,
    pinned: BTreeMap<usize, usize>,
    streams: HashMap<usize, Stream>,
    events: HashMap<usize, Event>,
    next_handle: usize,
    /// Bytes that may still be copied before the device is lost.
    copies_left: Option<u64>,
    lost: bool,
}

static DRIVER: Mutex<Option<Driver>> = Mutex::new(None);

fn setting(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("fake CUDA: {name}={value:?} is not a number; ignored");
            None
        }
    }
}

fn lock() -> MutexGuard<'static, Option<Driver>> {
    DRIVER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the initialized driver, and returns its error code.
fn with(f: impl FnOnce(&mut Driver) -> Result<(), CUresult>) -> CUresult {
    let mut guard = lock();
    let Some(driver) = guard.as_mut() else {
        return NOT_INITIALIZED;
    };
    if driver.lost {
        return ILLEGAL_ADDRESS;
    }
    match f(driver) {
        Ok(()) => SUCCESS,
        Err(code) => code,
    }
}

/// Writes through an out-pointer the driver API hands us.
unsafe fn put<T>(out: *mut T, value: T) -> Result<(), CUresult> {
    if out.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: the caller passes a pointer to a `T` it owns.
    unsafe { out.write(value) };
    Ok(())
}

fn complain(what: std::fmt::Arguments<'_>) -> CUresult {
    eprintln!("fake CUDA: {what}");
    INVALID_VALUE
}

/// The device of the calling thread's current context.
fn current() -> Result<usize, CUresult> {
    match CURRENT.get() {
        0 => Err(INVALID_CONTEXT),
        n => Ok(n - 1),
    }
}

impl Driver {
    fn handle(&mut self, base: usize) -> usize {
        self.next_handle += 1;
        base + self.next_handle * 16
    }

    /// The key of a stream handle; the null and per-thread streams are the current device's
    /// default stream.
    fn stream_key(&mut self, handle: Handle) -> Result<usize, CUresult> {
        let key = handle as usize;
        if key == 0 || key == 2 {
            let device = current()?;
            let key = device + 1;
            self.streams.entry(key).or_insert_with(|| Stream {
                device,
                queue: VecDeque::new(),
                queued: 0,
                ran: 0,
            });
            return Ok(key);
        }
        if self.streams.contains_key(&key) {
            Ok(key)
        } else {
            Err(INVALID_HANDLE)
        }
    }

    /// The stream, which must belong to the current context's device.
    fn stream_here(&mut self, handle: Handle) -> Result<usize, CUresult> {
        let key = self.stream_key(handle)?;
        let device = current()?;
        if self.streams[&key].device != device {
            return Err(complain(format_args!(
                "stream {key:#x} is on device {}, but device {device}'s context is current",
                self.streams[&key].device
            )));
        }
        Ok(key)
    }

    fn enqueue(&mut self, stream: usize, op: Op) {
        let stream = self
            .streams
            .get_mut(&stream)
            .expect("checked by the caller");
        stream.queue.push_back(op);
        stream.queued += 1;
    }

    /// The live block holding `ptr..ptr + len` on `device`.
    fn check_device(&self, device: usize, ptr: DevicePtr, len: usize) -> Result<(), CUresult> {
        let found = self.blocks.range(..=ptr).next_back();
        match found {
            Some((&base, block))
                if !block.freed
                    && block.device == device
                    && ptr + len as u64 <= base + block.data.len() as u64 =>
            {
                Ok(())
            }
            _ => Err(complain(format_args!(
                "device range {ptr:#x}+{len} on device {device} is not inside a live allocation"
            ))),
        }
    }

    fn check_pinned(&self, ptr: usize, len: usize) -> Result<(), CUresult> {
        match self.pinned.range(..=ptr).next_back() {
            Some((&base, &size)) if ptr + len <= base + size => Ok(()),
            _ => Err(complain(format_args!(
                "asynchronous copy with host range {ptr:#x}+{len}, which is not pinned memory"
            ))),
        }
    }

    fn device_bytes(&mut self, ptr: DevicePtr, len: usize) -> &mut [u8] {
        let (&base, block) = self
            .blocks
            .range_mut(..=ptr)
            .next_back()
            .expect("checked when queued");
        let at = (ptr - base) as usize;
        &mut block.data[at..at + len]
    }

    /// Runs `stream`'s queue until `upto` of its operations have run.
    fn run(&mut self, stream: usize, upto: u64) -> Result<(), CUresult> {
        loop {
            let Some(s) = self.streams.get_mut(&stream) else {
                return Ok(()); // destroyed, after running everything
            };
            if s.ran >= upto {
                return Ok(());
            }
            let op = s.queue.pop_front().expect("queued > ran");
            s.ran += 1;
            self.execute(op)?;
        }
    }

    fn run_all(&mut self, device: Option<usize>) -> Result<(), CUresult> {
        let mut keys: Vec<(usize, u64)> = self
            .streams
            .iter()
            .filter(|(_, s)| device.is_none_or(|d| s.device == d))
            .map(|(&key, s)| (key, s.queued))
            .collect();
        keys.sort_unstable();
        for (key, upto) in keys {
            self.run(key, upto)?;
        }
        Ok(())
    }

    fn copied(&mut self, len: usize) -> Result<(), CUresult> {
        if let Some(left) = &mut self.copies_left {
            let Some(rest) = left.checked_sub(len as u64) else {
                eprintln!("fake CUDA: the device is lost (FAKE_CUDA_FAIL_AFTER_MB)");
                self.lost = true;
                return Err(ILLEGAL_ADDRESS);
            };
            *left = rest;
        }
        Ok(())
    }

    fn execute(&mut self, op: Op) -> Result<(), CUresult> {
        match op {
            Op::HostToDevice { dst, src, len } => {
                self.copied(len)?;
                // SAFETY: `src..src + len` was checked to be pinned memory when queued, and
                // pinned memory is freed only after every queue has run.
                let src = unsafe { std::slice::from_raw_parts(src as *const u8, len) };
                self.device_bytes(dst, len).copy_from_slice(src);
            }
            Op::DeviceToHost { dst, src, len } => {
                self.copied(len)?;
                let src = self.device_bytes(src, len);
                // SAFETY: as above, for the destination.
                let dst = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, len) };
                dst.copy_from_slice(src);
            }
            Op::Free { ptr } => {
                let block = self.blocks.remove(&ptr).expect("checked when queued");
                self.used[block.device] -= block.data.len();
            }
            Op::Wait { stream, upto } => self.run(stream, upto)?,
        }
        Ok(())
    }

    fn allocate(&mut self, device: usize, len: usize) -> Result<DevicePtr, CUresult> {
        if len == 0 {
            return Err(INVALID_VALUE);
        }
        if self.used[device] + len > self.memory {
            // Queued frees may make room, as a memory pool would find.
            self.run_all(Some(device))?;
            if self.used[device] + len > self.memory {
                return Err(OUT_OF_MEMORY);
            }
        }
        let ptr = self.next_address;
        self.next_address += (len as u64).next_multiple_of(DEVICE_ALIGN) + DEVICE_ALIGN;
        self.used[device] += len;
        self.blocks.insert(
            ptr,
            Block {
                device,
                // Not zeroed on a GPU either: a read before a write shows.
                data: vec![0xCD; len],
                freed: false,
            },
        );
        Ok(ptr)
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    if flags != 0 {
        return INVALID_VALUE;
    }
    let mut guard = lock();
    if guard.is_none() {
        let devices = setting("FAKE_CUDA_DEVICES").unwrap_or(2) as usize;
        *guard = Some(Driver {
            devices,
            memory_pools: setting("FAKE_CUDA_MEMORY_POOLS") != Some(0),
            memory: (setting("FAKE_CUDA_MEMORY_MB").unwrap_or(1024) as usize) << 20,
            used: vec![0; devices],
            blocks: BTreeMap::new(),
            next_address: DEVICE_MEMORY,
            pinned: BTreeMap::new(),
            streams: HashMap::new(),
            events: HashMap::new(),
            next_handle: 0,
            copies_left: setting("FAKE_CUDA_FAIL_AFTER_MB").map(|mb| mb << 20),
            lost: false,
        });
    }
    SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    with(|d| unsafe { put(count, d.devices as c_int) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> CUresult {
    with(|d| {
        if ordinal < 0 || ordinal as usize >= d.devices {
            return Err(INVALID_DEVICE);
        }
        unsafe { put(device, ordinal) }
    })
}

fn device_index(d: &Driver, device: c_int) -> Result<usize, CUresult> {
    if device < 0 || device as usize >= d.devices {
        Err(INVALID_DEVICE)
    } else {
        Ok(device as usize)
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    value: *mut c_int,
    attribute: c_uint,
    device: c_int,
) -> CUresult {
    with(|d| {
        device_index(d, device)?;
        let v = match attribute {
            MEMORY_POOLS_SUPPORTED => c_int::from(d.memory_pools),
            _ => 0,
        };
        unsafe { put(value, v) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut Handle, device: c_int) -> CUresult {
    with(|d| {
        let device = device_index(d, device)?;
        unsafe { put(ctx, (CONTEXTS + device) as Handle) }
    })
}

/// Called when opening a device fails after its context was retained (cudarc drops it).
#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(device: c_int) -> CUresult {
    with(|d| device_index(d, device).map(drop))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut Handle) -> CUresult {
    let handle = match CURRENT.get() {
        0 => std::ptr::null_mut(),
        n => (CONTEXTS + n - 1) as Handle,
    };
    match unsafe { put(ctx, handle) } {
        Ok(()) => SUCCESS,
        Err(code) => code,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSetCurrent(ctx: Handle) -> CUresult {
    with(|d| {
        let handle = ctx as usize;
        if handle == 0 {
            CURRENT.set(0);
        } else if (CONTEXTS..CONTEXTS + d.devices).contains(&handle) {
            CURRENT.set(handle - CONTEXTS + 1);
        } else {
            return Err(INVALID_CONTEXT);
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    with(|d| d.run_all(Some(current()?)))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreate(stream: *mut Handle, _flags: c_uint) -> CUresult {
    with(|d| {
        let device = current()?;
        let key = d.handle(STREAMS);
        d.streams.insert(
            key,
            Stream {
                device,
                queue: VecDeque::new(),
                queued: 0,
                ran: 0,
            },
        );
        unsafe { put(stream, key as Handle) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamDestroy_v2(stream: Handle) -> CUresult {
    with(|d| {
        let key = d.stream_key(stream)?;
        // Work already queued completes, as on a GPU.
        let queued = d.streams[&key].queued;
        d.run(key, queued)?;
        d.streams.remove(&key);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize(stream: Handle) -> CUresult {
    with(|d| {
        let key = d.stream_key(stream)?;
        let queued = d.streams[&key].queued;
        d.run(key, queued)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamWaitEvent(stream: Handle, event: Handle, _flags: c_uint) -> CUresult {
    with(|d| {
        let key = d.stream_key(stream)?;
        let event = d.events.get(&(event as usize)).ok_or(INVALID_HANDLE)?;
        if let Some((other, upto)) = event.recorded {
            d.enqueue(
                key,
                Op::Wait {
                    stream: other,
                    upto,
                },
            );
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventCreate(event: *mut Handle, _flags: c_uint) -> CUresult {
    with(|d| {
        let device = current()?;
        let key = d.handle(EVENTS);
        d.events.insert(
            key,
            Event {
                device,
                recorded: None,
            },
        );
        unsafe { put(event, key as Handle) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventDestroy_v2(event: Handle) -> CUresult {
    with(|d| {
        d.events.remove(&(event as usize)).ok_or(INVALID_HANDLE)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventRecord(event: Handle, stream: Handle) -> CUresult {
    with(|d| {
        let key = d.stream_key(stream)?;
        let (device, queued) = (d.streams[&key].device, d.streams[&key].queued);
        let event = d.events.get_mut(&(event as usize)).ok_or(INVALID_HANDLE)?;
        if event.device != device {
            return Err(INVALID_HANDLE);
        }
        event.recorded = Some((key, queued));
        Ok(())
    })
}

fn wait_for_event(d: &mut Driver, event: Handle) -> Result<(), CUresult> {
    let event = d.events.get(&(event as usize)).ok_or(INVALID_HANDLE)?;
    match event.recorded {
        Some((stream, upto)) => d.run(stream, upto),
        None => Ok(()),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventSynchronize(event: Handle) -> CUresult {
    with(|d| wait_for_event(d, event))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(ptr: *mut DevicePtr, len: usize) -> CUresult {
    with(|d| {
        let address = d.allocate(current()?, len)?;
        unsafe { put(ptr, address) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(
    ptr: *mut DevicePtr,
    len: usize,
    stream: Handle,
) -> CUresult {
    with(|d| {
        let key = d.stream_here(stream)?;
        let address = d.allocate(d.streams[&key].device, len)?;
        unsafe { put(ptr, address) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFree_v2(ptr: DevicePtr) -> CUresult {
    with(|d| {
        let device = d.blocks.get(&ptr).map(|b| b.device).ok_or(INVALID_VALUE)?;
        d.check_device(device, ptr, 0)?;
        d.run_all(Some(device))?;
        d.execute(Op::Free { ptr })
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync(ptr: DevicePtr, stream: Handle) -> CUresult {
    with(|d| {
        let key = d.stream_key(stream)?;
        let device = d.streams[&key].device;
        match d.blocks.get_mut(&ptr) {
            Some(block) if !block.freed && block.device == device => block.freed = true,
            _ => {
                return Err(complain(format_args!(
                    "cuMemFreeAsync({ptr:#x}): not a live allocation on device {device}"
                )));
            }
        }
        d.enqueue(key, Op::Free { ptr });
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostAlloc(
    ptr: *mut *mut c_void,
    len: usize,
    _flags: c_uint,
) -> CUresult {
    with(|d| {
        current()?;
        let layout = Layout::from_size_align(len, PINNED_ALIGN).map_err(|_| INVALID_VALUE)?;
        if len == 0 {
            return Err(INVALID_VALUE);
        }
        // SAFETY: the layout has a non-zero size.
        let host = unsafe { alloc(layout) };
        if host.is_null() {
            return Err(OUT_OF_MEMORY);
        }
        // Not zeroed by a real driver either.
        unsafe { host.write_bytes(0xAB, len) };
        d.pinned.insert(host as usize, len);
        unsafe { put(ptr, host.cast()) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeHost(ptr: *mut c_void) -> CUresult {
    with(|d| {
        let len = *d.pinned.get(&(ptr as usize)).ok_or(INVALID_VALUE)?;
        // Copies still queued from or to it run first.
        d.run_all(None)?;
        d.pinned.remove(&(ptr as usize));
        let layout = Layout::from_size_align(len, PINNED_ALIGN).map_err(|_| INVALID_VALUE)?;
        // SAFETY: allocated by `cuMemHostAlloc` with this layout, and freed once.
        unsafe { dealloc(ptr.cast(), layout) };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: DevicePtr,
    src: *const c_void,
    len: usize,
    stream: Handle,
) -> CUresult {
    with(|d| {
        let key = d.stream_here(stream)?;
        d.check_device(d.streams[&key].device, dst, len)?;
        d.check_pinned(src as usize, len)?;
        let src = src as usize;
        d.enqueue(key, Op::HostToDevice { dst, src, len });
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: DevicePtr,
    len: usize,
    stream: Handle,
) -> CUresult {
    with(|d| {
        let key = d.stream_here(stream)?;
        d.check_device(d.streams[&key].device, src, len)?;
        d.check_pinned(dst as usize, len)?;
        let dst = dst as usize;
        d.enqueue(key, Op::DeviceToHost { dst, src, len });
        Ok(())
    })
}

/// The driver's description of each code the fake returns.
fn description(code: CUresult) -> Option<&'static CStr> {
    Some(match code {
        SUCCESS => c"no error",
        INVALID_VALUE => c"invalid argument",
        OUT_OF_MEMORY => c"out of memory",
        NOT_INITIALIZED => c"initialization error",
        INVALID_DEVICE => c"invalid device ordinal",
        INVALID_CONTEXT => c"invalid device context",
        INVALID_HANDLE => c"invalid resource handle",
        ILLEGAL_ADDRESS => c"an illegal memory access was encountered",
        _ => return None,
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(code: CUresult, text: *mut *const c_char) -> CUresult {
    let Some(description) = description(code) else {
        return INVALID_VALUE;
    };
    match unsafe { put(text, description.as_ptr()) } {
        Ok(()) => SUCCESS,
        Err(code) => code,
    }
}
