//! Loading into candle tensors: the new values are built whole on the tensor's own device and
//! in its own dtype, then written into a variable's memory or swapped in for a plain tensor.

use candle_core::{Device as CandleDevice, Tensor as CandleTensor, Var};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use super::dtype::to_ckpt;
use super::read::device_of;
use crate::device::{Device, DeviceError};
use crate::dtype::{DType, Element, bytes_mut};
use crate::state::Leaf;
use crate::tensor::{TensorError, TensorView, cast_into};

/// A candle tensor that a model holds, as loads and moves see it: `holder` is what holds it
/// (a tensor field, a `Var`, a `candle_nn` layer) and `current` a clone of the tensor.
pub(super) struct CandleLeaf<'m, H> {
    holder: &'m mut H,
    current: CandleTensor,
    dtype: DType,
    /// `holder` with `new` in place of `current`, for tensors that are not variables.
    with: fn(&H, CandleTensor) -> Result<H, TensorError>,
}

impl<'m, H> CandleLeaf<'m, H> {
    /// A leaf for `current`, held by `holder`, or why ckpt cannot represent it.
    pub(super) fn new(
        holder: &'m mut H,
        current: CandleTensor,
        with: fn(&H, CandleTensor) -> Result<H, TensorError>,
    ) -> Result<Self, String> {
        Ok(CandleLeaf {
            holder,
            dtype: to_ckpt(current.dtype())?,
            current,
            with,
        })
    }
}

impl<H> Leaf for CandleLeaf<'_, H> {
    fn view(&self) -> TensorView<'_> {
        TensorView::foreign(self.current.clone(), self.dtype)
    }

    /// Builds the new values whole before anything changes, then writes them in place: into a
    /// variable's own memory (`Var::set`), so that everything holding the variable (an
    /// optimizer, a `VarMap`, a layer) sees them, and into a plain tensor's where candle allows
    /// it (contiguous, not 0-dimensional), so that tensors sharing its memory stay tied, as
    /// PyTorch's `load_state_dict` copies into parameters. Otherwise the holder takes the new
    /// tensor instead.
    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError> {
        let current = &self.current;
        if src.shape() != current.dims() {
            return Err(TensorError::Shape {
                expected: format!("shape {:?}", current.dims()),
                actual: src.shape().to_vec(),
            });
        }
        if current.elem_count() == 0 {
            return Ok(()); // nothing to write
        }
        let new = build(src, self.dtype, current.device())?;
        let error = candle_error(current);
        if current.is_variable() {
            Var::from_tensor(current)
                .and_then(|var| var.set(&new))
                .map_err(error)
        } else if current.is_contiguous() && current.rank() > 0 {
            current.slice_set(&new, 0, 0).map_err(error)
        } else {
            *self.holder = (self.with)(self.holder, new.clone())?;
            self.current = new;
            Ok(())
        }
    }

    fn device(&self) -> Device {
        device_of(self.current.device())
    }

    /// Only where it is: candle tensors move with candle's `to_device`, which makes new ones.
    fn can_move_to(&self, device: Device) -> bool {
        device == self.device()
    }
}

/// A candle tensor of `dtype` on `device` holding `src`'s values, cast as ckpt casts them. On
/// the CPU the values are written once, into the memory the tensor then owns.
pub(super) fn build(
    src: &TensorView<'_>,
    dtype: DType,
    device: &CandleDevice,
) -> Result<CandleTensor, TensorError> {
    fn typed<T: Element + candle_core::WithDType>(
        src: &TensorView<'_>,
        device: &CandleDevice,
    ) -> Result<CandleTensor, TensorError> {
        let data = match streamed::<T>(src)? {
            Some(data) => data,
            None => {
                let mut array = ArrayD::<T>::default(IxDyn(src.shape()));
                cast_into(src, &mut array.view_mut())?;
                array.into_raw_vec_and_offset().0
            }
        };
        CandleTensor::from_vec(data, src.shape(), device).map_err(|e| {
            TensorError::Device(DeviceError::Foreign {
                device: device_of(device),
                message: format!("while making a candle tensor: {e}"),
            })
        })
    }
    match dtype {
        DType::F64 => typed::<f64>(src, device),
        DType::F32 => typed::<f32>(src, device),
        DType::F16 => typed::<f16>(src, device),
        DType::BF16 => typed::<bf16>(src, device),
        DType::I64 => typed::<i64>(src, device),
        DType::I32 => typed::<i32>(src, device),
        DType::I16 => typed::<i16>(src, device),
        DType::U8 => typed::<u8>(src, device),
        // `to_ckpt` never returns these: candle has no such dtype, or (U32, its float8s) ckpt
        // does not map it yet.
        DType::I8
        | DType::Bool
        | DType::U16
        | DType::U32
        | DType::U64
        | DType::C32
        | DType::C64
        | DType::C128
        | DType::F8E4M3
        | DType::F8E5M2
        | DType::F8E4M3Fnuz
        | DType::F8E5M2Fnuz
        | DType::F8E8M0 => Err(TensorError::DType {
            expected: DType::F32,
            actual: dtype,
        }),
    }
}

/// The elements of `src` streamed straight into a new buffer, when `src` has the dtype `T` and
/// streams rather than lends its bytes (another candle tensor, a GPU tensor): a typed read
/// would make the view keep a host copy of the whole tensor. `None` otherwise, or where the
/// host is big-endian.
fn streamed<T: Element>(src: &TensorView<'_>) -> Result<Option<Vec<T>>, TensorError> {
    if src.dtype() != T::DTYPE || src.lends_bytes() {
        return Ok(None);
    }
    let mut data = vec![T::default(); src.numel()];
    let Some(out) = bytes_mut(&mut data) else {
        return Ok(None);
    };
    let mut at = 0;
    src.stream_le_bytes(&mut |piece| {
        if let Some(to) = out.get_mut(at..at + piece.len()) {
            to.copy_from_slice(piece);
        }
        at += piece.len();
    })?;
    if at != out.len() {
        return Err(TensorError::ByteLength {
            dtype: T::DTYPE,
            shape: src.shape().to_vec(),
            expected: out.len(),
            actual: at,
        });
    }
    Ok(Some(data))
}

/// Turns a candle error about `tensor` into a tensor error.
pub(super) fn candle_error(
    tensor: &CandleTensor,
) -> impl Fn(candle_core::Error) -> TensorError + use<> {
    let device = device_of(tensor.device());
    move |e| {
        TensorError::Device(DeviceError::Foreign {
            device,
            message: format!("while writing a candle tensor: {e}"),
        })
    }
}
