//! Pickling a [`Value`] as `torch.save` does, with protocol 2: state-dict-like maps as
//! `collections.OrderedDict`, tensors through `torch._utils._rebuild_tensor_v2` with one
//! persistent storage each, and tensors that share their data pickled once and referenced again
//! through the memo, so that `torch.load` gives back one tensor.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::error::{PtError, PtErrorKind};
use super::opcode as op;
use super::rebuild::MAX_DEPTH;
use crate::dtype::DType;
use crate::state::Metadata;
use crate::tensor::TensorView;
use crate::value::{Key, Value};

/// A pickled value and the tensors whose data become storage records `data/0`, `data/1`, ….
pub(crate) struct Pickled<'v> {
    pub(crate) pickle: Vec<u8>,
    pub(crate) storages: Vec<TensorView<'v>>,
}

pub(crate) fn pickle<'v>(value: &'v Value<'_>) -> Result<Pickled<'v>, PtError> {
    let mut p = Pickler {
        out: vec![op::PROTO, 2],
        next_memo: 0,
        globals: HashMap::new(),
        written: HashMap::new(),
        storages: Vec::new(),
    };
    p.value(value, 0)?;
    p.out.push(op::STOP);
    Ok(Pickled {
        pickle: p.out,
        storages: p.storages,
    })
}

/// A tensor already pickled, and the memo slot holding it.
type Written<'v> = (TensorView<'v>, u32);

struct Pickler<'v> {
    out: Vec<u8>,
    next_memo: u32,
    /// Memo slots of globals already written.
    globals: HashMap<String, u32>,
    /// Tensors already written, by dtype and shape, with their memo slots.
    written: HashMap<(DType, Vec<usize>), Vec<Written<'v>>>,
    storages: Vec<TensorView<'v>>,
}

impl<'v> Pickler<'v> {
    fn value(&mut self, value: &'v Value<'_>, depth: usize) -> Result<(), PtError> {
        if depth > MAX_DEPTH {
            return Err(PtErrorKind::Unsupported {
                what: format!("writing a value nested deeper than {MAX_DEPTH} levels"),
            }
            .into());
        }
        match value {
            // A defect is refused before writing starts; `None` keeps this total.
            Value::None | Value::Defect(_) => self.out.push(op::NONE),
            Value::Bool(true) => self.out.push(op::NEWTRUE),
            Value::Bool(false) => self.out.push(op::NEWFALSE),
            Value::Int(i) => self.int(*i),
            Value::Float(x) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            Value::String(s) => self.string(s)?,
            Value::List(items) => self.list(items, depth)?,
            Value::Map(map) => {
                let ordered = map.keys().all(|k| matches!(k, Key::Str(_)));
                if ordered {
                    self.global("collections\nOrderedDict\n");
                    self.out.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
                } else {
                    self.out.push(op::EMPTY_DICT);
                }
                self.entries(map, depth)?;
                // Only an OrderedDict has attributes, and every state dict is one.
                if let (true, Some(metadata)) = (ordered, map.metadata()) {
                    self.metadata(metadata)?;
                }
            }
            Value::Tensor(t) => self.tensor(t.view())?,
            // The rest as Python's pickler writes them with protocol 2, which PyTorch's
            // weights_only unpickler reads back as the same objects.
            Value::Set(items) => {
                self.global("__builtin__\nset\n");
                self.list(items, depth)?;
                self.out.extend_from_slice(&[op::TUPLE1, op::REDUCE]);
            }
            Value::Counter(map) => {
                self.global("collections\nCounter\n");
                self.out.push(op::EMPTY_DICT);
                self.entries(map, depth)?;
                self.out.extend_from_slice(&[op::TUPLE1, op::REDUCE]);
            }
            Value::Complex(z) => {
                self.global("__builtin__\ncomplex\n");
                for part in [z.re, z.im] {
                    self.out.push(op::BINFLOAT);
                    self.out.extend_from_slice(&part.to_be_bytes());
                }
                self.out.extend_from_slice(&[op::TUPLE2, op::REDUCE]);
            }
            Value::Bytes(bytes) => self.bytes(bytes)?,
            Value::ByteArray(bytes) => {
                self.global("__builtin__\nbytearray\n");
                self.bytes(bytes)?;
                self.out.extend_from_slice(&[op::TUPLE1, op::REDUCE]);
            }
            Value::DType(dtype) => self.global(&format!("torch\n{}\n", dtype.name())),
        }
        Ok(())
    }

    /// `bytes` as protocol 2 pickles them, `_codecs.encode(text, 'latin1')` with one character
    /// per byte; also for `b''`, which Python itself pickles as `bytes()`, a call PyTorch
    /// refuses.
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), PtError> {
        self.global("_codecs\nencode\n");
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        self.string(&text)?;
        self.string("latin1")?;
        self.out.extend_from_slice(&[op::TUPLE2, op::REDUCE]);
        Ok(())
    }

    fn list(&mut self, items: &'v [Value<'_>], depth: usize) -> Result<(), PtError> {
        self.out.push(op::EMPTY_LIST);
        if !items.is_empty() {
            self.out.push(op::MARK);
            for item in items {
                self.value(item, depth + 1)?;
            }
            self.out.push(op::APPENDS);
        }
        Ok(())
    }

    /// A state dict's module versions, as pickle writes the attributes of an `OrderedDict`
    /// after its items: `{"_metadata": OrderedDict([(prefix, {"version": n}), …])}`, then
    /// `BUILD`, which sets them.
    fn metadata(&mut self, metadata: &Metadata) -> Result<(), PtError> {
        self.out.push(op::EMPTY_DICT);
        self.string("_metadata")?;
        self.global("collections\nOrderedDict\n");
        self.out.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
        if !metadata.is_empty() {
            self.out.push(op::MARK);
            for (prefix, version) in metadata.iter() {
                self.string(prefix)?;
                self.out.push(op::EMPTY_DICT);
                if let Some(version) = version {
                    self.string("version")?;
                    self.int(version);
                    self.out.push(op::SETITEM);
                }
            }
            self.out.push(op::SETITEMS);
        }
        self.out.extend_from_slice(&[op::SETITEM, op::BUILD]);
        Ok(())
    }

    /// The entries of a map after its empty dict: `MARK k v … SETITEMS`.
    fn entries(&mut self, map: &'v IndexMap<Key, Value<'_>>, depth: usize) -> Result<(), PtError> {
        if map.is_empty() {
            return Ok(());
        }
        self.out.push(op::MARK);
        for (k, v) in map {
            match k {
                Key::Str(s) => self.string(s)?,
                Key::Int(i) => self.int(*i),
            }
            self.value(v, depth + 1)?;
        }
        self.out.push(op::SETITEMS);
        Ok(())
    }

    fn tensor(&mut self, view: TensorView<'v>) -> Result<(), PtError> {
        let class = (view.dtype(), view.shape().to_vec());
        if let Some(&(_, slot)) = self
            .written
            .get(&class)
            .and_then(|seen| seen.iter().find(|(v, _)| v.shares_storage(&view)))
        {
            self.get(slot);
            return Ok(());
        }
        let key = self.storages.len().to_string();
        // As torch.save: the dtypes of before PyTorch 2.1 through `_rebuild_tensor_v2` over a
        // typed storage of `numel` elements; the newer ones (`torch.storage._new_dtypes()`)
        // through `_rebuild_tensor_v3` over an untyped storage of `numel` bytes and the dtype.
        let dtype = view.dtype();
        let typed = typed_storage(dtype);
        self.global(match typed {
            Some(_) => "torch._utils\n_rebuild_tensor_v2\n",
            None => "torch._utils\n_rebuild_tensor_v3\n",
        });
        self.out.extend_from_slice(&[op::MARK, op::MARK]);
        self.string("storage")?;
        match typed {
            Some(class) => {
                self.global(&format!("torch\n{class}\n"));
                self.string(&key)?;
                self.string("cpu")?;
                self.usize(view.numel())?;
            }
            None => {
                self.global("torch.storage\nUntypedStorage\n");
                self.string(&key)?;
                self.string("cpu")?;
                self.usize(view.nbytes())?;
            }
        }
        self.out.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
        self.int(0);
        let shape = view.shape().to_vec();
        let mut stride = vec![0usize; shape.len()];
        let mut step = 1usize;
        for (s, &d) in stride.iter_mut().zip(&shape).rev() {
            *s = step;
            step = step.saturating_mul(d);
        }
        self.tuple(&shape)?;
        self.tuple(&stride)?;
        self.out.push(op::NEWFALSE);
        // backward_hooks: an empty OrderedDict, as PyTorch writes it.
        self.global("collections\nOrderedDict\n");
        self.out.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
        if typed.is_none() {
            self.global(&format!("torch\n{}\n", dtype.torch_name()));
        }
        self.out.extend_from_slice(&[op::TUPLE, op::REDUCE]);
        let slot = self.put();
        self.written
            .entry(class)
            .or_default()
            .push((view.clone(), slot));
        self.storages.push(view);
        Ok(())
    }

    fn tuple(&mut self, items: &[usize]) -> Result<(), PtError> {
        match items.len() {
            0 => self.out.push(op::EMPTY_TUPLE),
            n @ 1..=3 => {
                for &i in items {
                    self.usize(i)?;
                }
                self.out.push(op::TUPLE1 + (n as u8 - 1));
            }
            _ => {
                self.out.push(op::MARK);
                for &i in items {
                    self.usize(i)?;
                }
                self.out.push(op::TUPLE);
            }
        }
        Ok(())
    }

    /// Writes a global once and fetches it from the memo afterwards, as Python's pickler does.
    fn global(&mut self, module_and_name: &str) {
        if let Some(&slot) = self.globals.get(module_and_name) {
            self.get(slot);
            return;
        }
        self.out.push(op::GLOBAL);
        self.out.extend_from_slice(module_and_name.as_bytes());
        let slot = self.put();
        self.globals.insert(module_and_name.to_owned(), slot);
    }

    fn put(&mut self) -> u32 {
        let slot = self.next_memo;
        self.next_memo += 1;
        match u8::try_from(slot) {
            Ok(small) => self.out.extend_from_slice(&[op::BINPUT, small]),
            Err(_) => {
                self.out.push(op::LONG_BINPUT);
                self.out.extend_from_slice(&slot.to_le_bytes());
            }
        }
        slot
    }

    fn get(&mut self, slot: u32) {
        match u8::try_from(slot) {
            Ok(small) => self.out.extend_from_slice(&[op::BINGET, small]),
            Err(_) => {
                self.out.push(op::LONG_BINGET);
                self.out.extend_from_slice(&slot.to_le_bytes());
            }
        }
    }

    fn usize(&mut self, i: usize) -> Result<(), PtError> {
        let i = i64::try_from(i).map_err(|_| PtErrorKind::Unsupported {
            what: format!("a size of {i}, beyond i64"),
        })?;
        self.int(i);
        Ok(())
    }

    /// The smallest encoding, as Python's pickler chooses it.
    fn int(&mut self, i: i64) {
        if let Ok(small) = u8::try_from(i) {
            self.out.extend_from_slice(&[op::BININT1, small]);
        } else if let Ok(medium) = u16::try_from(i) {
            self.out.push(op::BININT2);
            self.out.extend_from_slice(&medium.to_le_bytes());
        } else if let Ok(word) = i32::try_from(i) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            // Two's complement, little-endian, without redundant sign bytes.
            let bytes = i.to_le_bytes();
            let mut n = bytes.len();
            while n > 1 {
                let (top, below) = (bytes[n - 1], bytes[n - 2]);
                let redundant =
                    (top == 0 && below & 0x80 == 0) || (top == 0xff && below & 0x80 != 0);
                if !redundant {
                    break;
                }
                n -= 1;
            }
            self.out.extend_from_slice(&[op::LONG1, n as u8]);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }

    fn string(&mut self, s: &str) -> Result<(), PtError> {
        let len = u32::try_from(s.len()).map_err(|_| PtErrorKind::Unsupported {
            what: format!("a string of {} bytes (at most 4 GiB)", s.len()),
        })?;
        self.out.push(op::BINUNICODE);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The legacy typed storage class `torch.save` pickles a tensor of `dtype` with, if it pickles
/// it through one.
fn typed_storage(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F64 => "DoubleStorage",
        DType::F32 => "FloatStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
        DType::C64 => "ComplexFloatStorage",
        DType::C128 => "ComplexDoubleStorage",
        DType::U16
        | DType::U32
        | DType::U64
        | DType::C32
        | DType::F8E4M3
        | DType::F8E5M2
        | DType::F8E4M3Fnuz
        | DType::F8E5M2Fnuz
        | DType::F8E8M0 => return None,
    })
}
