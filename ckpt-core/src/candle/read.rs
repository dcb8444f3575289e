//! Reading candle tensors: their bytes lent in place under candle's lock
//! ([`ForeignTensor`]), and views of them.

use candle_core::{CpuStorage, DeviceLocation, Storage, Tensor as CandleTensor};

use super::dtype::to_ckpt;
use crate::device::{Device, DeviceError};
use crate::tensor::{ForeignTensor, TensorView};

/// The most bytes copied to host memory at once from a tensor that cannot lend its own: on a
/// GPU, or not laid out in C order.
const PIECE: usize = 16 << 20;

/// A view of `tensor`, holding a clone of it (which shares its data), or why ckpt cannot
/// represent it.
pub(super) fn view(tensor: &CandleTensor) -> Result<TensorView<'static>, String> {
    let dtype = to_ckpt(tensor.dtype())?;
    Ok(TensorView::foreign(tensor.clone(), dtype))
}

/// The ckpt device of a candle device. ckpt has no Metal device: Metal tensors are recorded as
/// on the CPU, where saving copies them.
pub(super) fn device_of(device: &candle_core::Device) -> Device {
    match device.location() {
        DeviceLocation::Cuda { gpu_id } => Device::Cuda(gpu_id),
        DeviceLocation::Cpu | DeviceLocation::Metal { .. } => Device::Cpu,
    }
}

impl ForeignTensor for CandleTensor {
    fn shape(&self) -> &[usize] {
        self.dims()
    }

    fn device(&self) -> Device {
        device_of(self.device())
    }

    fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError> {
        {
            // The read lock is held only while `sink` writes: candle's writers (`Var::set`, an
            // optimizer step) wait for one write at most, and ckpt never writes under it.
            let (storage, layout) = self.storage_and_layout();
            if let (Storage::Cpu(cpu), Some((start, end))) =
                (&*storage, layout.contiguous_offsets())
            {
                sink_le(
                    cpu_bytes(cpu, start, end),
                    self.dtype().size_in_bytes(),
                    sink,
                );
                return Ok(());
            }
        }
        stream_pieces(self, sink).map_err(|e| DeviceError::Foreign {
            device: device_of(self.device()),
            message: format!("while copying a candle tensor to host memory: {e}"),
        })
    }

    fn storage_id(&self) -> Option<(usize, Vec<isize>)> {
        let (storage, layout) = self.storage_and_layout();
        let strides = layout.stride().iter().map(|&s| s as isize);
        match &*storage {
            // The address of the first element, as host views are told apart.
            Storage::Cpu(cpu) => {
                let start = layout.start_offset();
                let bytes = cpu_bytes(cpu, start, start);
                Some((bytes.as_ptr() as usize, strides.collect()))
            }
            // Device memory has no host address: the storage's own, with the offset in it.
            other => {
                let address = std::ptr::from_ref(other) as usize;
                let start = layout.start_offset() as isize;
                Some((address, std::iter::once(start).chain(strides).collect()))
            }
        }
    }
}

/// Copies `tensor` to host memory in C order a few rows at a time, each piece at most
/// [`PIECE`] bytes (or one row, if a row is larger), and hands each to `sink`.
fn stream_pieces(tensor: &CandleTensor, sink: &mut dyn FnMut(&[u8])) -> candle_core::Result<()> {
    let size = tensor.dtype().size_in_bytes();
    let Some((&rows, rest)) = tensor.dims().split_first() else {
        return host_piece(tensor, size, sink); // 0-dimensional: one element
    };
    let row_bytes = rest.iter().product::<usize>() * size;
    let step = (PIECE / row_bytes.max(1)).max(1);
    let mut row = 0;
    while row < rows {
        let n = step.min(rows - row);
        host_piece(&tensor.narrow(0, row, n)?, size, sink)?;
        row += n;
    }
    Ok(())
}

/// `piece` copied into fresh contiguous memory on its device, then to the host, and lent.
fn host_piece(
    piece: &CandleTensor,
    size: usize,
    sink: &mut dyn FnMut(&[u8]),
) -> candle_core::Result<()> {
    let host = piece
        .force_contiguous()?
        .to_device(&candle_core::Device::Cpu)?;
    let (storage, layout) = host.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((start, end))) => {
            sink_le(cpu_bytes(cpu, start, end), size, sink);
            Ok(())
        }
        _ => candle_core::bail!("candle returned a host copy that is not contiguous"),
    }
}

/// Hands `bytes`, elements of `size` bytes in host order, to `sink` little-endian.
fn sink_le(bytes: &[u8], size: usize, sink: &mut dyn FnMut(&[u8])) {
    if cfg!(target_endian = "little") || size == 1 {
        sink(bytes);
    } else {
        let mut swapped = bytes.to_vec();
        swapped.chunks_exact_mut(size).for_each(<[u8]>::reverse);
        sink(&swapped);
    }
}

/// The bytes of elements `start..end` of `cpu`; empty for the dtypes ckpt cannot represent,
/// which never get a view.
fn cpu_bytes(cpu: &CpuStorage, start: usize, end: usize) -> &[u8] {
    fn bytes<T: bytemuck::Pod>(elements: &[T], start: usize, end: usize) -> &[u8] {
        bytemuck::cast_slice(elements.get(start..end).unwrap_or(&[]))
    }
    match cpu {
        CpuStorage::U8(v) => bytes(v, start, end),
        CpuStorage::I16(v) => bytes(v, start, end),
        CpuStorage::I32(v) => bytes(v, start, end),
        CpuStorage::I64(v) => bytes(v, start, end),
        CpuStorage::F16(v) => bytes(v, start, end),
        CpuStorage::BF16(v) => bytes(v, start, end),
        CpuStorage::F32(v) => bytes(v, start, end),
        CpuStorage::F64(v) => bytes(v, start, end),
        CpuStorage::U32(_)
        | CpuStorage::F8E4M3(_)
        | CpuStorage::F6E2M3(_)
        | CpuStorage::F6E3M2(_)
        | CpuStorage::F4(_)
        | CpuStorage::F8E8M0(_) => &[],
    }
}
