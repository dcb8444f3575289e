//! A restricted unpickler: PyTorch's `weights_only=True` allow-list and nothing more.
//!
//! It builds plain data (numbers, strings, lists, dicts, tensor descriptions) and never calls
//! anything: an allowed global such as `collections.OrderedDict` is a tag that `REDUCE` turns into
//! the data it stands for, and every other global is refused by name. Every length is checked
//! against the bytes that remain, every container is built from items already read, and every
//! object, stack slot and memo entry is charged to the file's [`Budget`]; `None`, `True` and
//! `False` are one shared object each. The loop runs once per opcode byte.

use std::collections::HashMap;

use super::budget::Budget;
use super::error::{PtError, PtErrorKind, truncated};
use super::opcode as op;
use crate::dtype::DType;

/// The most dimensions a tensor may have; PyTorch's own limit is lower in practice.
const MAX_DIMS: usize = 64;
/// The longest device name (`"cuda:0"`, `"mps"`) accepted.
const MAX_DEVICE_NAME: usize = 64;

/// An index into the objects a pickle has built.
pub(crate) type Ix = usize;

/// The allowed globals, as the tags `REDUCE` and `BINPERSID` dispatch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`: called with no arguments for an empty dict.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`.
    RebuildParameter,
    /// A typed storage class (`torch.FloatStorage`), naming the dtype of a persistent storage.
    Storage(DType),
    /// `torch.UntypedStorage`: bytes.
    UntypedStorage,
    /// `torch.Size(tuple)`.
    Size,
    /// `torch.device(type[, index])`.
    Device,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view into a storage.
#[derive(Clone, Debug)]
pub(crate) struct TensorSpec {
    /// Index into [`Pickle::storages`].
    pub(crate) storage: usize,
    pub(crate) offset: i64,
    pub(crate) shape: Vec<i64>,
    pub(crate) stride: Vec<i64>,
}

/// A storage the pickle refers to by persistent id.
#[derive(Clone, Debug)]
pub(crate) struct StorageRef {
    /// The record name under `data/` (zip) or the key in the storage list (legacy).
    pub(crate) key: String,
    pub(crate) dtype: DType,
    /// The element count the pickle gives.
    pub(crate) numel: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64`; kept as its little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Ix>),
    Tuple(Vec<Ix>),
    Dict(Vec<(Ix, Ix)>),
    Global(Global),
    Storage(usize),
    /// Boxed: a tensor is rare next to the ints and strings around it, and `Obj` stays small.
    Tensor(Box<TensorSpec>),
}

/// The objects every pickle starts with, shared by every `NONE`, `NEWTRUE` and `NEWFALSE`.
const NONE: Ix = 0;
const TRUE: Ix = 1;
const FALSE: Ix = 2;

/// An unpickled object graph, its root, and the storages it refers to.
#[derive(Debug)]
pub(crate) struct Pickle {
    pub(crate) objs: Vec<Obj>,
    pub(crate) root: Ix,
    pub(crate) storages: Vec<StorageRef>,
    /// Bytes of input the pickle occupied, `STOP` included.
    pub(crate) len: usize,
}

impl Pickle {
    /// The root object.
    pub(crate) fn root(&self) -> &Obj {
        self.obj(self.root)
    }

    pub(crate) fn obj(&self, ix: Ix) -> &Obj {
        // Indices are only ever made by pushing, so they are in range; `None` keeps this total.
        self.objs.get(ix).unwrap_or(&Obj::None)
    }
}

/// Reads one pickle from the start of `data`, stopping at its `STOP`, charging what it builds
/// to `budget`.
pub(crate) fn unpickle(data: &[u8], budget: &mut Budget) -> Result<Pickle, PtError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_pos: 0,
        objs: vec![Obj::None, Obj::Bool(true), Obj::Bool(false)],
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
        storage_index: HashMap::new(),
        budget,
        stack_peak: 0,
        marks_peak: 0,
    };
    let root = m.run()?;
    Ok(Pickle {
        objs: m.objs,
        root,
        storages: m.storages,
        len: m.pos,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the opcode being executed starts, for messages.
    op_pos: usize,
    objs: Vec<Obj>,
    stack: Vec<Ix>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Ix>,
    storages: Vec<StorageRef>,
    storage_index: HashMap<String, usize>,
    budget: &'a mut Budget,
    /// The deepest the stack and the marks have been: what their memory has grown to.
    stack_peak: usize,
    marks_peak: usize,
}

/// What one object costs besides its heap data: the object, twice over for the arena's
/// doubling, and a slot where it is kept.
const OBJ_COST: usize = 2 * size_of::<Obj>() + 8;
/// What one memo entry costs in the hash map, its growth included.
const MEMO_COST: usize = 48;

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Ix, PtError> {
        loop {
            self.op_pos = self.pos;
            let code = self.byte("an opcode")?;
            match code {
                op::PROTO => {
                    let version = self.byte("the protocol version")?;
                    if version > 5 {
                        return Err(self.error(format!("unknown pickle protocol {version}")));
                    }
                }
                op::FRAME => {
                    // Frames only help buffered readers; the whole pickle is in memory.
                    self.take(8, "a frame length")?;
                }
                op::STOP => return self.pop(),
                op::MARK => {
                    self.marks.push(self.stack.len());
                    if self.marks.len() > self.marks_peak {
                        self.marks_peak = self.marks.len();
                        self.budget.charge(16, "the pickle's marks")?;
                    }
                }
                op::POP => {
                    self.pop()?;
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let top = self.top()?;
                    self.push_ix(top)?;
                }
                op::NONE => self.push_ix(NONE)?,
                op::NEWTRUE => self.push_ix(TRUE)?,
                op::NEWFALSE => self.push_ix(FALSE)?,
                op::BININT => {
                    let b = self.array::<4>("a BININT")?;
                    self.push(Obj::Int(i64::from(i32::from_le_bytes(b))))?;
                }
                op::BININT1 => {
                    let b = self.byte("a BININT1")?;
                    self.push(Obj::Int(i64::from(b)))?;
                }
                op::BININT2 => {
                    let b = self.array::<2>("a BININT2")?;
                    self.push(Obj::Int(i64::from(u16::from_le_bytes(b))))?;
                }
                op::LONG1 => {
                    let n = usize::from(self.byte("a LONG1 length")?);
                    let bytes = self.take(n, "a LONG1")?;
                    self.push(long(bytes))?;
                }
                op::LONG4 => {
                    let n = self.length4("a LONG4 length")?;
                    let bytes = self.take(n, "a LONG4")?;
                    self.push(long(bytes))?;
                }
                op::BINFLOAT => {
                    let b = self.array::<8>("a BINFLOAT")?;
                    self.push(Obj::Float(f64::from_be_bytes(b)))?;
                }
                op::SHORT_BINUNICODE => {
                    let n = usize::from(self.byte("a string length")?);
                    self.unicode(n)?;
                }
                op::BINUNICODE => {
                    let n = self.length4("a string length")?;
                    self.unicode(n)?;
                }
                op::BINUNICODE8 => {
                    let n = self.length8("a string length")?;
                    self.unicode(n)?;
                }
                op::SHORT_BINSTRING => {
                    let n = usize::from(self.byte("a string length")?);
                    let bytes = self.take(n, "a string")?;
                    self.push(string_or_bytes(bytes))?;
                }
                op::BINSTRING => {
                    let n = self.length4("a string length")?;
                    let bytes = self.take(n, "a string")?;
                    self.push(string_or_bytes(bytes))?;
                }
                op::SHORT_BINBYTES => {
                    let n = usize::from(self.byte("a bytes length")?);
                    let bytes = self.take(n, "bytes")?;
                    self.push(Obj::Bytes(bytes.to_vec()))?;
                }
                op::BINBYTES => {
                    let n = self.length4("a bytes length")?;
                    let bytes = self.take(n, "bytes")?;
                    self.push(Obj::Bytes(bytes.to_vec()))?;
                }
                op::BINBYTES8 => {
                    let n = self.length8("a bytes length")?;
                    let bytes = self.take(n, "bytes")?;
                    self.push(Obj::Bytes(bytes.to_vec()))?;
                }
                op::EMPTY_DICT => self.push(Obj::Dict(Vec::new()))?,
                op::EMPTY_LIST => self.push(Obj::List(Vec::new()))?,
                op::EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new()))?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))?;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    let items = self.pop_n(n)?;
                    self.push(Obj::Tuple(items))?;
                }
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items))?;
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    self.push(Obj::Dict(pairs))?;
                }
                op::APPEND => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                op::SETITEM => {
                    let items = self.pop_n(2)?;
                    let pairs = self.pairs(&items)?;
                    self.extend_dict(pairs)?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    self.extend_dict(pairs)?;
                }
                op::BINPUT => {
                    let i = self.byte("a memo index")?;
                    self.put(u32::from(i))?;
                }
                op::LONG_BINPUT => {
                    let i = u32::from_le_bytes(self.array::<4>("a memo index")?);
                    self.put(i)?;
                }
                op::MEMOIZE => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| self.error("memo full".to_owned()))?;
                    self.put(i)?;
                }
                op::BINGET => {
                    let i = self.byte("a memo index")?;
                    self.get(u32::from(i))?;
                }
                op::LONG_BINGET => {
                    let i = u32::from_le_bytes(self.array::<4>("a memo index")?);
                    self.get(i)?;
                }
                op::GLOBAL => {
                    let module = self.line("a GLOBAL module name")?;
                    let name = self.line("a GLOBAL name")?;
                    let global = self.resolve(module, name)?;
                    self.push(Obj::Global(global))?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(Obj::Str(module)), Some(Obj::Str(name))) =
                        (self.objs.get(module), self.objs.get(name))
                    else {
                        return Err(self.error("STACK_GLOBAL needs two strings".to_owned()));
                    };
                    let global = self.resolve(module, name)?;
                    self.push(Obj::Global(global))?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(callable, args)?;
                    self.push_ix(result)?;
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(Obj::Storage(storage))?;
                }
                other => {
                    return Err(PtErrorKind::UnsupportedOpcode {
                        opcode: other,
                        name: op::name(other),
                        offset: self.op_pos,
                    }
                    .into());
                }
            }
        }
    }

    fn error(&self, message: String) -> PtError {
        PtErrorKind::Pickle {
            offset: self.op_pos,
            message,
        }
        .into()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], PtError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return Err(truncated(format!(
                "the pickle ends inside {what} at byte {} (needs {n} bytes, {} remain)",
                self.op_pos,
                self.data.len().saturating_sub(self.pos)
            )));
        };
        let bytes = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self, what: &str) -> Result<u8, PtError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PtError> {
        let bytes = self.take(N, what)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A 4-byte length; checked against the input by the `take` that follows.
    fn length4(&mut self, what: &str) -> Result<usize, PtError> {
        let n = u32::from_le_bytes(self.array::<4>(what)?);
        usize::try_from(n).map_err(|_| self.error(format!("length {n} does not fit in memory")))
    }

    fn length8(&mut self, what: &str) -> Result<usize, PtError> {
        let n = u64::from_le_bytes(self.array::<8>(what)?);
        usize::try_from(n).map_err(|_| truncated(format!("{what} of {n} bytes")))
    }

    fn line(&mut self, what: &str) -> Result<&'a str, PtError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(truncated(format!(
                "the pickle ends inside {what} at byte {}",
                self.op_pos
            )));
        };
        let bytes = self.take(n + 1, what)?;
        let text = bytes.get(..n).unwrap_or_default();
        std::str::from_utf8(text).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    fn unicode(&mut self, n: usize) -> Result<(), PtError> {
        let bytes = self.take(n, "a string")?;
        let s = std::str::from_utf8(bytes)
            .map_err(|e| self.error(format!("string is not valid UTF-8: {e}")))?;
        self.push(Obj::Str(s.to_owned()))?;
        Ok(())
    }

    /// A new object, charged with its heap data, pushed on the stack.
    fn push(&mut self, obj: Obj) -> Result<(), PtError> {
        let heap = match &obj {
            Obj::Str(s) => s.len(),
            Obj::Bytes(b) | Obj::BigInt(b) => b.len(),
            Obj::List(items) | Obj::Tuple(items) => items.len() * size_of::<Ix>(),
            Obj::Dict(pairs) => pairs.len() * size_of::<(Ix, Ix)>(),
            Obj::Tensor(spec) => {
                size_of::<TensorSpec>() + (spec.shape.len() + spec.stride.len()) * size_of::<i64>()
            }
            Obj::None | Obj::Bool(_) | Obj::Int(_) | Obj::Float(_) => 0,
            Obj::Global(_) | Obj::Storage(_) => 0,
        };
        self.budget
            .charge(OBJ_COST + heap, "the pickle's objects")?;
        self.objs.push(obj);
        self.push_ix(self.objs.len() - 1)
    }

    /// Pushes an existing object on the stack, charging the stack's growth.
    fn push_ix(&mut self, ix: Ix) -> Result<(), PtError> {
        self.stack.push(ix);
        if self.stack.len() > self.stack_peak {
            self.stack_peak = self.stack.len();
            // A vector grows by doubling: count its slack too.
            self.budget
                .charge(2 * size_of::<Ix>(), "the pickle's stack")?;
        }
        Ok(())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Ix, PtError> {
        if self.stack.len() <= self.floor() {
            return Err(self.error("stack underflow".to_owned()));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error("stack underflow".to_owned()))
    }

    fn top(&self) -> Result<Ix, PtError> {
        if self.stack.len() <= self.floor() {
            return Err(self.error("stack underflow".to_owned()));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.error("stack underflow".to_owned()))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Ix>, PtError> {
        let len = self.stack.len();
        if len < self.floor() + n {
            return Err(self.error("stack underflow".to_owned()));
        }
        Ok(self.stack.split_off(len - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Ix>, PtError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error("no MARK on the stack".to_owned()))?;
        if mark > self.stack.len() {
            return Err(self.error("MARK above the stack".to_owned()));
        }
        Ok(self.stack.split_off(mark))
    }

    fn pairs(&self, items: &[Ix]) -> Result<Vec<(Ix, Ix)>, PtError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("odd number of items for a dict".to_owned()));
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    fn extend_list(&mut self, items: Vec<Ix>) -> Result<(), PtError> {
        self.budget
            .charge(2 * items.len() * size_of::<Ix>(), "the pickle's lists")?;
        let target = self.top()?;
        match self.objs.get_mut(target) {
            Some(Obj::List(list)) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(self.error("APPEND to something that is not a list".to_owned())),
        }
    }

    fn extend_dict(&mut self, pairs: Vec<(Ix, Ix)>) -> Result<(), PtError> {
        self.budget.charge(
            2 * pairs.len() * size_of::<(Ix, Ix)>(),
            "the pickle's dicts",
        )?;
        let target = self.top()?;
        match self.objs.get_mut(target) {
            Some(Obj::Dict(dict)) => {
                dict.extend(pairs);
                Ok(())
            }
            _ => Err(self.error("SETITEM on something that is not a dict".to_owned())),
        }
    }

    fn put(&mut self, index: u32) -> Result<(), PtError> {
        let top = self.top()?;
        if self.memo.insert(index, top).is_none() {
            self.budget.charge(MEMO_COST, "the pickle's memo")?;
        }
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<(), PtError> {
        let ix = *self
            .memo
            .get(&index)
            .ok_or_else(|| self.error(format!("memo key {index} was never stored")))?;
        self.push_ix(ix)
    }

    /// The allow-list of `torch._weights_only_unpickler`, reduced to what ckpt can represent.
    fn resolve(&self, module: &str, name: &str) -> Result<Global, PtError> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", "UntypedStorage") | ("torch.storage", "UntypedStorage") => {
                Global::UntypedStorage
            }
            ("torch", "Size") => Global::Size,
            ("torch", "device") => Global::Device,
            ("torch", storage) if storage.ends_with("Storage") => match storage_dtype(storage) {
                Some(dtype) => Global::Storage(dtype),
                None => {
                    return Err(self.error(format!(
                        "torch.{storage} holds a dtype ckpt does not support"
                    )));
                }
            },
            _ => {
                return Err(PtErrorKind::UnsupportedGlobal {
                    name: format!("{module}.{name}"),
                }
                .into());
            }
        };
        Ok(global)
    }

    fn reduce(&mut self, callable: Ix, args: Ix) -> Result<Ix, PtError> {
        let Some(Obj::Global(global)) = self.objs.get(callable) else {
            return Err(self.error("REDUCE of something that is not an allowed global".to_owned()));
        };
        let global = *global;
        let Some(Obj::Tuple(args)) = self.objs.get(args) else {
            return Err(self.error("REDUCE arguments are not a tuple".to_owned()));
        };
        // No allowed callable takes more; checked before the copy so that a huge tuple fetched
        // again and again from the memo costs nothing.
        if args.len() > 7 {
            return Err(self.error(format!("REDUCE with {} arguments", args.len())));
        }
        let args = args.clone();
        let arg = |i: usize| args.get(i).and_then(|&ix| self.objs.get(ix));
        let obj = match global {
            Global::OrderedDict if args.is_empty() => Obj::Dict(Vec::new()),
            Global::RebuildTensorV2 if (6..=7).contains(&args.len()) => {
                let Some(Obj::Storage(storage)) = arg(0) else {
                    return Err(self.error("_rebuild_tensor_v2 needs a storage".to_owned()));
                };
                let Some(Obj::Int(offset)) = arg(1) else {
                    return Err(self.error("_rebuild_tensor_v2 needs an integer offset".to_owned()));
                };
                let shape = self.ints(args.get(2).copied(), "size")?;
                let stride = self.ints(args.get(3).copied(), "stride")?;
                Obj::Tensor(Box::new(TensorSpec {
                    storage: *storage,
                    offset: *offset,
                    shape,
                    stride,
                }))
            }
            Global::RebuildParameter if args.len() == 3 => {
                if let (Some(Obj::Tensor(_)), Some(&data)) = (arg(0), args.first()) {
                    // A parameter is its data: hand back the tensor object itself.
                    return Ok(data);
                }
                return Err(self.error("_rebuild_parameter needs a tensor".to_owned()));
            }
            Global::Size if args.len() == 1 => match (arg(0), args.first()) {
                // Tuples are immutable: the size is its tuple, shared rather than copied.
                (Some(Obj::Tuple(_)), Some(&tuple)) => return Ok(tuple),
                _ => return Err(self.error("torch.Size needs a tuple".to_owned())),
            },
            Global::Device if (1..=2).contains(&args.len()) => match (arg(0), arg(1)) {
                (Some(Obj::Str(kind)), _) if kind.len() > MAX_DEVICE_NAME => {
                    return Err(self.error(format!(
                        "torch.device name of {} bytes (at most {MAX_DEVICE_NAME})",
                        kind.len()
                    )));
                }
                (Some(Obj::Str(kind)), None) => Obj::Str(kind.clone()),
                (Some(Obj::Str(kind)), Some(Obj::Int(index))) => {
                    Obj::Str(format!("{kind}:{index}"))
                }
                _ => return Err(self.error("torch.device needs a string".to_owned())),
            },
            other => {
                return Err(self.error(format!(
                    "cannot call {other:?} with {} arguments",
                    args.len()
                )));
            }
        };
        self.budget.charge(OBJ_COST, "the pickle's objects")?;
        self.objs.push(obj);
        Ok(self.objs.len() - 1)
    }

    fn ints(&self, ix: Option<Ix>, what: &str) -> Result<Vec<i64>, PtError> {
        let Some(Obj::Tuple(items)) = ix.and_then(|ix| self.objs.get(ix)) else {
            return Err(self.error(format!("tensor {what} is not a tuple")));
        };
        if items.len() > MAX_DIMS {
            return Err(self.error(format!(
                "tensor {what} has {} dimensions (at most {MAX_DIMS})",
                items.len()
            )));
        }
        items
            .iter()
            .map(|&ix| match self.objs.get(ix) {
                Some(Obj::Int(i)) => Ok(*i),
                _ => Err(self.error(format!("tensor {what} holds a non-integer"))),
            })
            .collect()
    }

    /// `BUILD` sets attributes. PyTorch uses it to attach `_metadata` (per-module versions) to a
    /// state dict's `OrderedDict`; ckpt keeps the items and drops the attributes, as
    /// `load_state_dict` needs only the items.
    fn build(&mut self, target: Ix, state: Ix) -> Result<(), PtError> {
        match (self.objs.get(target), self.objs.get(state)) {
            (Some(Obj::Dict(_)), Some(Obj::Dict(_) | Obj::None)) => Ok(()),
            // `(state, slotstate)`, as `__reduce_ex__` gives it.
            (Some(Obj::Dict(_)), Some(Obj::Tuple(parts)))
                if parts.len() == 2
                    && parts
                        .iter()
                        .all(|&p| matches!(self.objs.get(p), Some(Obj::Dict(_) | Obj::None))) =>
            {
                Ok(())
            }
            _ => Err(self.error("BUILD on something other than a dict".to_owned())),
        }
    }

    /// `('storage', storage_type, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: Ix) -> Result<usize, PtError> {
        let Some(Obj::Tuple(fields)) = self.objs.get(pid) else {
            return Err(self.error("persistent id is not a tuple".to_owned()));
        };
        let field = |i: usize| fields.get(i).and_then(|&ix| self.objs.get(ix));
        let (Some(Obj::Str(tag)), Some(Obj::Global(storage_type)), Some(key), Some(Obj::Str(_))) =
            (field(0), field(1), field(2), field(3))
        else {
            return Err(self
                .error("persistent id is not ('storage', type, key, location, numel)".to_owned()));
        };
        if tag != "storage" || !(5..=6).contains(&fields.len()) {
            return Err(self.error(format!("unknown persistent id {tag:?}")));
        }
        // Borrowed until a new storage is recorded: a long key fetched from the memo for every
        // tensor is not copied each time.
        let key: std::borrow::Cow<'_, str> = match key {
            Obj::Str(s) => s.as_str().into(),
            Obj::Int(i) => i.to_string().into(),
            _ => return Err(self.error("storage key is not a string".to_owned())),
        };
        let dtype = match storage_type {
            Global::Storage(dtype) => *dtype,
            Global::UntypedStorage => DType::U8,
            _ => return Err(self.error("persistent id names no storage type".to_owned())),
        };
        let numel = match field(4) {
            Some(Obj::Int(n)) => u64::try_from(*n)
                .map_err(|_| self.error(format!("storage {key} has negative size {n}")))?,
            _ => return Err(self.error("storage size is not an integer".to_owned())),
        };
        if !matches!(field(5), None | Some(Obj::None)) {
            return Err(self.error(format!(
                "storage {key} is a view of another storage (a pre-0.4 file); not supported"
            )));
        }
        if let Some(&i) = self.storage_index.get(&*key) {
            let seen = self.storages.get(i);
            if seen.is_some_and(|s| s.dtype != dtype || s.numel != numel) {
                return Err(self.error(format!(
                    "storage {key} is used with two different types or sizes"
                )));
            }
            return Ok(i);
        }
        let key = key.into_owned();
        self.budget.charge(
            size_of::<StorageRef>() + 2 * key.len() + MEMO_COST,
            "the pickle's storages",
        )?;
        self.storage_index.insert(key.clone(), self.storages.len());
        self.storages.push(StorageRef { key, dtype, numel });
        Ok(self.storages.len() - 1)
    }
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "DoubleStorage" => DType::F64,
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// A little-endian two's complement integer, as `LONG1`/`LONG4` store it.
fn long(bytes: &[u8]) -> Obj {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    if bytes.len() > 8
        && bytes
            .get(8..)
            .is_some_and(|rest| rest.iter().any(|&b| b != fill))
    {
        return Obj::BigInt(bytes.to_vec());
    }
    let mut out = [fill; 8];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    let value = i64::from_le_bytes(out);
    // Sign extension beyond 8 bytes must agree with bit 63.
    if bytes.len() > 8 && (value < 0) != negative {
        return Obj::BigInt(bytes.to_vec());
    }
    Obj::Int(value)
}

fn string_or_bytes(bytes: &[u8]) -> Obj {
    match std::str::from_utf8(bytes) {
        Ok(s) => Obj::Str(s.to_owned()),
        Err(_) => Obj::Bytes(bytes.to_vec()),
    }
}
