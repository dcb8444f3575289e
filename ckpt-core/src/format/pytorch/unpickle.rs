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
pub(crate) use super::globals::Global;
use super::globals::resolve;
use super::opcode as op;
use crate::dtype::{DType, TorchDType};

/// The most dimensions a tensor may have; PyTorch's own limit is lower in practice.
const MAX_DIMS: usize = 64;
/// The longest device name (`"cuda:0"`, `"mps"`) accepted.
const MAX_DEVICE_NAME: usize = 64;

/// An index into the objects a pickle has built.
pub(crate) type Ix = usize;

/// A tensor as `_rebuild_tensor_v2` and `_v3` describe it: a view into a storage.
#[derive(Clone, Debug)]
pub(crate) struct TensorSpec {
    /// Index into [`Pickle::storages`].
    pub(crate) storage: usize,
    /// In elements, as are the shape and the strides.
    pub(crate) offset: i64,
    pub(crate) shape: Vec<i64>,
    pub(crate) stride: Vec<i64>,
    /// The tensor's negative bit (`x.conj().imag` is saved as the raw imaginary parts with
    /// it): its values are the stored ones negated.
    pub(crate) neg: bool,
    /// The conjugate bit (`x.conj()`): its values are the conjugates of the stored ones.
    pub(crate) conj: bool,
}

/// A storage the pickle refers to by persistent id.
#[derive(Clone, Debug)]
pub(crate) struct StorageRef {
    /// The record name under `data/` (zip) or the key in the storage list (legacy).
    pub(crate) key: String,
    /// The element type: the typed storage's, or for a `torch.storage.UntypedStorage` the
    /// dtype `_rebuild_tensor_v3` first gives it (bytes until then).
    pub(crate) dtype: DType,
    /// The element count: the pickle's, or for an untyped storage its bytes over the size of
    /// the dtype it was given.
    pub(crate) numel: u64,
    /// The storage type and element count the persistent id gives, which every later reference
    /// must repeat.
    declared: (Global, u64),
    /// Whether a `_rebuild_tensor_v3` has given an untyped storage its dtype.
    typed: bool,
}

/// Which dict type a dict is: what `BUILD` and `SETITEMS` may do to it, and what ckpt writes
/// back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DictKind {
    /// `{}`: a plain dict.
    Plain,
    /// `collections.OrderedDict`, which may carry attributes (a state dict's `_metadata`).
    Ordered,
    /// `collections.Counter`.
    Counter,
}

#[derive(Clone, Debug)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64`; kept as its little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    /// An `io.BytesIO` that `NEWOBJ` made and no `BUILD` has filled yet: empty, as in Python.
    /// Only DCP's bytes entries hold one ([`Dialect::DcpItem`]); `BUILD` turns it into bytes.
    BytesIo,
    List(Vec<Ix>),
    Tuple(Vec<Ix>),
    /// Without duplicates, in the order first seen.
    Set(Vec<Ix>),
    Dict(DictKind, Vec<(Ix, Ix)>),
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
    /// The `_metadata` attribute `BUILD` gave an `OrderedDict` (a state dict's module
    /// versions), by the dict.
    pub(crate) metadata: HashMap<Ix, Ix>,
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

/// Which globals a pickle may name beyond PyTorch's `weights_only` allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Exactly `torch.load(weights_only=True)`'s.
    WeightsOnly,
    /// An item of a PyTorch Distributed Checkpoint: also `_io.BytesIO`, which DCP pickles a
    /// `BytesIO` value as (`BytesIO.__setstate__((bytes, position, dict))`), read as its bytes.
    DcpItem,
}

/// Reads one pickle from the start of `data`, stopping at its `STOP`, charging what it builds
/// to `budget`.
pub(crate) fn unpickle(data: &[u8], budget: &mut Budget) -> Result<Pickle, PtError> {
    unpickle_in(data, budget, Dialect::WeightsOnly)
}

/// [`unpickle`], with the globals of `dialect`.
pub(crate) fn unpickle_in(
    data: &[u8],
    budget: &mut Budget,
    dialect: Dialect,
) -> Result<Pickle, PtError> {
    let mut m = Machine {
        dialect,
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
        metadata: HashMap::new(),
    };
    let root = m.run()?;
    Ok(Pickle {
        objs: m.objs,
        root,
        storages: m.storages,
        len: m.pos,
        metadata: m.metadata,
    })
}

struct Machine<'a> {
    dialect: Dialect,
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
    /// See [`Pickle::metadata`].
    metadata: HashMap<Ix, Ix>,
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
            // Exactly the opcodes of PyTorch's weights_only unpickler: a pickle it refuses (any
            // of protocol 4's, say) is refused here too.
            match code {
                op::PROTO => {
                    // PyTorch warns about a protocol other than 2 and reads on; what it cannot
                    // read is refused at the first opcode of that protocol.
                    self.byte("the protocol version")?;
                }
                op::STOP => return self.pop(),
                op::MARK => {
                    self.marks.push(self.stack.len());
                    if self.marks.len() > self.marks_peak {
                        self.marks_peak = self.marks.len();
                        self.budget.charge(16, "the pickle's marks")?;
                    }
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
                op::BINFLOAT => {
                    let b = self.array::<8>("a BINFLOAT")?;
                    self.push(Obj::Float(f64::from_be_bytes(b)))?;
                }
                op::BINUNICODE => {
                    let n = self.length4("a string length")?;
                    self.unicode(n)?;
                }
                op::SHORT_BINSTRING => {
                    // Decoded as `torch.load`'s default encoding, UTF-8, strictly.
                    let n = usize::from(self.byte("a string length")?);
                    self.unicode(n)?;
                }
                op::EMPTY_DICT => self.push(Obj::Dict(DictKind::Plain, Vec::new()))?,
                op::EMPTY_LIST => self.push(Obj::List(Vec::new()))?,
                op::EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new()))?,
                op::EMPTY_SET => self.push(Obj::Set(Vec::new()))?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))?;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    let items = self.pop_n(n)?;
                    self.push(Obj::Tuple(items))?;
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
                    let global = match (self.dialect, module, name) {
                        (Dialect::DcpItem, "_io", "BytesIO") => Global::BytesIo,
                        _ => resolve(module, name)?,
                    };
                    self.push(Obj::Global(global))?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(callable, args)?;
                    self.push_ix(result)?;
                }
                op::NEWOBJ => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let result = self.new_object(class, args)?;
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
        let heap = heap_of(&obj);
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
            Some(Obj::Dict(_, dict)) => {
                dict.extend(pairs);
                Ok(())
            }
            _ => Err(self.error(
                "SETITEM on something that is not a dict, collections.OrderedDict or \
                 collections.Counter"
                    .to_owned(),
            )),
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
        if args.len() > MAX_ARGS {
            return Err(self.error(format!("REDUCE with {} arguments", args.len())));
        }
        let args = args.clone();
        let obj = self.call(global, &args, 0)?;
        self.new_obj(obj)
    }

    /// What calling the allowed `global` with `args` gives, as PyTorch's REDUCE would call it;
    /// `depth` counts the calls `_rebuild_from_type_v2` makes inside one another.
    fn call(&mut self, global: Global, args: &[Ix], depth: usize) -> Result<Called, PtError> {
        let arg = |i: usize| args.get(i).and_then(|&ix| self.objs.get(ix));
        let n = args.len();
        let obj = match global {
            Global::OrderedDict if n == 0 => Obj::Dict(DictKind::Ordered, Vec::new()),
            // `Counter.__reduce__` gives `(Counter, (dict(self),))`.
            Global::Counter if n <= 1 => match arg(0) {
                None => Obj::Dict(DictKind::Counter, Vec::new()),
                Some(Obj::Dict(_, pairs)) => {
                    let pairs = pairs.clone();
                    self.charge_items(pairs.len() * 2)?;
                    Obj::Dict(DictKind::Counter, pairs)
                }
                Some(other) => {
                    return Err(self.error(format!(
                        "collections.Counter of {}: ckpt reads counters made from a dict, as \
                         torch.save writes them",
                        kind(other)
                    )));
                }
            },
            // `set.__reduce__` gives `(set, (list(self),))`.
            Global::Set if n <= 1 => match arg(0) {
                None => Obj::Set(Vec::new()),
                Some(Obj::List(items) | Obj::Tuple(items) | Obj::Set(items)) => {
                    let items = items.clone();
                    self.charge_items(items.len())?;
                    Obj::Set(self.distinct(&items)?)
                }
                Some(other) => {
                    return Err(self.error(format!("builtins.set of {}", kind(other))));
                }
            },
            Global::Complex if n <= 2 => {
                let part = |i: usize| match arg(i) {
                    None => Ok((0.0, 0.0)),
                    Some(Obj::Int(x)) => Ok((*x as f64, 0.0)),
                    Some(Obj::Bool(b)) => Ok((f64::from(u8::from(*b)), 0.0)),
                    Some(Obj::Float(x)) => Ok((*x, 0.0)),
                    Some(Obj::Complex(re, im)) => Ok((*re, *im)),
                    Some(other) => Err(self.error(format!(
                        "builtins.complex of {}: ckpt reads complex numbers from numbers",
                        kind(other)
                    ))),
                };
                // complex(a, b) is a + b·i, for complex a and b too.
                let ((a_re, a_im), (b_re, b_im)) = (part(0)?, part(1)?);
                Obj::Complex(a_re - b_im, a_im + b_re)
            }
            Global::ByteArray if n <= 1 => match arg(0) {
                None => Obj::ByteArray(Vec::new()),
                Some(Obj::Bytes(b) | Obj::ByteArray(b)) => Obj::ByteArray(b.clone()),
                Some(other) => {
                    // `bytearray(n)` would allocate n zeros: never from a file.
                    return Err(self.error(format!(
                        "builtins.bytearray of {}: ckpt reads bytearrays made from bytes, as \
                         torch.save writes them",
                        kind(other)
                    )));
                }
            },
            // Protocol 2 pickles `bytes` as `_codecs.encode(text, 'latin1')`.
            Global::Encode if (1..=3).contains(&n) => {
                let (Some(Obj::Str(text)), encoding, errors) = (arg(0), arg(1), arg(2)) else {
                    return Err(self.error("_codecs.encode needs a string".to_owned()));
                };
                let encoding = match encoding {
                    None => "utf-8",
                    Some(Obj::Str(e)) => e.as_str(),
                    Some(_) => {
                        return Err(
                            self.error("_codecs.encode's encoding is not a string".to_owned())
                        );
                    }
                };
                if !matches!(errors, None | Some(Obj::Str(_)))
                    || matches!(errors, Some(Obj::Str(e)) if e != "strict")
                {
                    return Err(self.error(
                        "_codecs.encode with an error handler other than 'strict'".to_owned(),
                    ));
                }
                Obj::Bytes(encode(text, encoding).map_err(|e| self.error(e))?)
            }
            Global::Size if n == 1 => match (arg(0), args.first()) {
                // Tuples are immutable: the size is its tuple, shared rather than copied.
                (Some(Obj::Tuple(_)), Some(&tuple)) => return Ok(Called::Existing(tuple)),
                _ => return Err(self.error("torch.Size needs a tuple".to_owned())),
            },
            Global::Device if (1..=2).contains(&n) => match (arg(0), arg(1)) {
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
            Global::RebuildTensor if n == 4 => self.tensor("_rebuild_tensor", args, None, None)?,
            Global::RebuildTensorV2 if (6..=7).contains(&n) => {
                self.tensor("_rebuild_tensor_v2", args, None, args.get(6).copied())?
            }
            Global::RebuildTensorV3 if (7..=8).contains(&n) => {
                let Some(Obj::Global(Global::DType(dtype))) = arg(6) else {
                    return Err(self.error("_rebuild_tensor_v3 needs a dtype".to_owned()));
                };
                let dtype = *dtype;
                self.tensor(
                    "_rebuild_tensor_v3",
                    args,
                    Some(dtype),
                    args.get(7).copied(),
                )?
            }
            // A parameter is its data: the tensor object itself. Its `requires_grad`, and the
            // Python attributes `_with_state` carries, are not kept.
            Global::RebuildParameter | Global::RebuildParameterWithState
                if n == 3 + usize::from(global == Global::RebuildParameterWithState) =>
            {
                return match (arg(0), args.first()) {
                    (Some(Obj::Tensor(_)), Some(&data)) => Ok(Called::Existing(data)),
                    _ => Err(self.error(format!("{global:?} needs a tensor"))),
                };
            }
            // `func(*args)`, a plain tensor or a parameter, with Python attributes (dropped).
            Global::RebuildFromTypeV2 if n == 4 => {
                let (Some(Obj::Global(func)), Some(Obj::Global(class)), Some(Obj::Tuple(inner))) =
                    (arg(0), arg(1), arg(2))
                else {
                    return Err(self.error(
                        "_rebuild_from_type_v2 needs a function, a class and a tuple".to_owned(),
                    ));
                };
                let (func, class, inner) = (*func, *class, inner.clone());
                if !matches!(class, Global::TensorClass | Global::ParameterClass) {
                    return Err(self.error(format!(
                        "_rebuild_from_type_v2 of {class:?}, which is not a tensor class"
                    )));
                }
                if depth > 0 || inner.len() > MAX_ARGS {
                    return Err(self.error(
                        "_rebuild_from_type_v2 nested in itself, or with too many arguments"
                            .to_owned(),
                    ));
                }
                let called = self.call(func, &inner, depth + 1)?;
                let is_tensor = match &called {
                    Called::New(obj) => matches!(obj, Obj::Tensor(_)),
                    Called::Existing(ix) => matches!(self.objs.get(*ix), Some(Obj::Tensor(_))),
                };
                if !is_tensor {
                    return Err(self.error(format!(
                        "_rebuild_from_type_v2 of {func:?}, which makes no tensor"
                    )));
                }
                return Ok(called);
            }
            Global::Unrepresentable(what) => {
                return Err(PtErrorKind::Unsupported {
                    what: what.to_owned(),
                }
                .into());
            }
            other => {
                return Err(self.error(format!("cannot call {other:?} with {n} arguments")));
            }
        };
        Ok(Called::New(obj))
    }

    /// `NEWOBJ`, which PyTorch allows for `nn.Parameter(data[, requires_grad])` alone among the
    /// classes ckpt has values for.
    fn new_object(&mut self, class: Ix, args: Ix) -> Result<Ix, PtError> {
        let (Some(Obj::Global(class)), Some(Obj::Tuple(args))) =
            (self.objs.get(class), self.objs.get(args))
        else {
            return Err(self.error("NEWOBJ needs a class and a tuple".to_owned()));
        };
        match (class, args.as_slice()) {
            (Global::BytesIo, []) => self.new_obj(Called::New(Obj::BytesIo)),
            (Global::ParameterClass, [data] | [data, _]) => {
                if let Some(Obj::Tensor(_)) = self.objs.get(*data) {
                    return Ok(*data);
                }
                Err(self.error("nn.Parameter needs a tensor".to_owned()))
            }
            (class, _) => Err(self.error(format!(
                "NEWOBJ of {class:?}; ckpt creates only nn.Parameter objects this way"
            ))),
        }
    }

    /// A tensor rebuilt by `name` from `args` (storage, offset, size, stride, …), its storage
    /// given `dtype` if `_rebuild_tensor_v3` names one, with the conj and neg bits the
    /// metadata dict at `metadata` sets.
    fn tensor(
        &mut self,
        name: &str,
        args: &[Ix],
        dtype: Option<TorchDType>,
        metadata: Option<Ix>,
    ) -> Result<Obj, PtError> {
        let arg = |i: usize| args.get(i).and_then(|&ix| self.objs.get(ix));
        let Some(&Obj::Storage(storage)) = arg(0) else {
            return Err(self.error(format!("{name} needs a storage")));
        };
        let Some(&Obj::Int(offset)) = arg(1) else {
            return Err(self.error(format!("{name} needs an integer offset")));
        };
        let shape = self.ints(args.get(2).copied(), "size")?;
        let stride = self.ints(args.get(3).copied(), "stride")?;
        self.use_storage(storage, dtype)?;
        let (neg, conj) = self.tensor_metadata(metadata)?;
        let is_complex = self
            .storages
            .get(storage)
            .is_some_and(|s| s.dtype.is_complex());
        if conj && !is_complex {
            // PyTorch fails an internal assertion here.
            return Err(self.error(format!(
                "{name}: a conj bit on a tensor that is not complex"
            )));
        }
        Ok(Obj::Tensor(Box::new(TensorSpec {
            storage,
            offset,
            shape,
            stride,
            neg,
            conj,
        })))
    }

    /// Records that a tensor reads `storage` as `dtype` (`_rebuild_tensor_v3`'s argument, or
    /// else the storage's own dtype): an untyped storage takes the dtype of its first tensor,
    /// and every other tensor must read it alike, as `torch.save` ensures.
    fn use_storage(&mut self, storage: usize, dtype: Option<TorchDType>) -> Result<(), PtError> {
        let op_pos = self.op_pos;
        let error = |message: String| -> PtError {
            PtErrorKind::Pickle {
                offset: op_pos,
                message,
            }
            .into()
        };
        let wanted = match dtype {
            None => None,
            Some(torch) => Some(torch.dtype().ok_or_else(|| -> PtError {
                PtErrorKind::Unsupported {
                    what: format!("a tensor of {torch}, a dtype ckpt does not have,"),
                }
                .into()
            })?),
        };
        let Some(s) = self.storages.get_mut(storage) else {
            return Err(error("a tensor whose storage was never loaded".to_owned()));
        };
        let untyped = s.declared.0 == Global::UntypedStorage;
        match wanted {
            Some(dtype) if untyped && !s.typed => {
                let bytes = s.declared.1;
                let item = dtype.size_in_bytes() as u64;
                if bytes % item != 0 {
                    return Err(error(format!(
                        "storage {} of {bytes} bytes is not a whole number of {dtype} elements",
                        s.key
                    )));
                }
                s.dtype = dtype;
                s.numel = bytes / item;
            }
            Some(dtype) if dtype != s.dtype => {
                return Err(error(format!(
                    "storage {} is read as {} and as {dtype}; torch.save writes one dtype per \
                     storage",
                    s.key, s.dtype
                )));
            }
            _ => {}
        }
        s.typed = true;
        Ok(())
    }

    /// The neg and conj bits of `_rebuild_tensor_v2`'s optional last argument, a dict such as
    /// `{'neg': True}`; as in PyTorch, a key that is present sets its bit and others are ignored.
    fn tensor_metadata(&self, metadata: Option<Ix>) -> Result<(bool, bool), PtError> {
        let pairs = match metadata.and_then(|ix| self.objs.get(ix)) {
            None | Some(Obj::None) => return Ok((false, false)),
            Some(Obj::Dict(_, pairs)) => pairs,
            Some(other) => {
                return Err(self.error(format!("tensor metadata is {}, not a dict", kind(other))));
            }
        };
        let has = |name: &str| {
            pairs
                .iter()
                .any(|&(k, _)| matches!(self.objs.get(k), Some(Obj::Str(s)) if s == name))
        };
        Ok((has("neg"), has("conj")))
    }

    /// The items of a set without repeats, as Python's `set(list)` keeps them; an item Python
    /// cannot hash (a list, a dict) is refused as it would be there.
    fn distinct(&mut self, items: &[Ix]) -> Result<Vec<Ix>, PtError> {
        let op_pos = self.op_pos;
        let (objs, budget) = (&self.objs, &mut *self.budget);
        let mut seen_objects = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        for &ix in items {
            // One object listed twice is one item, without comparing it to itself again.
            if !seen_objects.insert(ix) {
                continue;
            }
            let key = hash_key(objs, ix, budget, 0).map_err(|message| -> PtError {
                match message {
                    Ok(message) => PtErrorKind::Pickle {
                        offset: op_pos,
                        message,
                    }
                    .into(),
                    Err(limit) => limit,
                }
            })?;
            if seen.insert(key) {
                out.push(ix);
            }
        }
        Ok(out)
    }

    fn charge_items(&mut self, n: usize) -> Result<(), PtError> {
        self.budget
            .charge(n.saturating_mul(size_of::<Ix>()), "the pickle's objects")
    }

    /// Stores the object a call made, unless it handed back one that exists.
    fn new_obj(&mut self, called: Called) -> Result<Ix, PtError> {
        match called {
            Called::Existing(ix) => Ok(ix),
            Called::New(obj) => {
                self.budget
                    .charge(OBJ_COST + heap_of(&obj), "the pickle's objects")?;
                self.objs.push(obj);
                Ok(self.objs.len() - 1)
            }
        }
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

    /// `BUILD` sets attributes, on the objects PyTorch allows it for: an `OrderedDict` keeps
    /// them (a state dict's `_metadata`, the per-module versions `load_state_dict` reads);
    /// the other allowed types may be built with no state at all, as pickle does for them.
    fn build(&mut self, target: Ix, state: Ix) -> Result<(), PtError> {
        let state_obj = self.objs.get(state);
        let empty = match state_obj {
            Some(Obj::None) => true,
            Some(Obj::Dict(_, pairs)) => pairs.is_empty(),
            _ => false,
        };
        match self.objs.get(target) {
            // `inst.__dict__.update(state)`.
            Some(Obj::Dict(DictKind::Ordered, _)) => match state_obj {
                // Of the attributes, a state dict's `_metadata` is kept; PyTorch sets no other.
                Some(Obj::Dict(_, pairs)) => {
                    let metadata = pairs.iter().find(|&&(k, _)| {
                        matches!(self.objs.get(k), Some(Obj::Str(name)) if name == "_metadata")
                    });
                    if let Some(&(_, value)) = metadata {
                        self.budget.charge(MEMO_COST, "the pickle's objects")?;
                        self.metadata.insert(target, value);
                    }
                    Ok(())
                }
                _ => Err(self
                    .error("BUILD of an OrderedDict with a state that is not a dict".to_owned())),
            },
            Some(
                Obj::Dict(DictKind::Counter, _)
                | Obj::Set(_)
                | Obj::Complex(..)
                | Obj::ByteArray(_),
            ) if empty => Ok(()),
            // `BytesIO.__setstate__((value, position, dict))`: its bytes are the value.
            Some(Obj::BytesIo) => {
                let value = match state_obj {
                    Some(Obj::Tuple(fields)) if fields.len() == 3 => {
                        fields.first().and_then(|&ix| self.objs.get(ix))
                    }
                    _ => None,
                };
                let Some(Obj::Bytes(bytes)) = value else {
                    return Err(self.error(
                        "BUILD of an io.BytesIO with a state that is not (bytes, position, dict)"
                            .to_owned(),
                    ));
                };
                let bytes = bytes.clone();
                // The copy is charged like any other bytes object.
                self.budget.charge(bytes.len(), "the pickle's objects")?;
                if let Some(obj) = self.objs.get_mut(target) {
                    *obj = Obj::Bytes(bytes);
                }
                Ok(())
            }
            Some(Obj::Tensor(_)) => Err(PtErrorKind::Unsupported {
                what: "a tensor built by BUILD (a file of PyTorch before 0.4)".to_owned(),
            }
            .into()),
            Some(other) => Err(self.error(format!(
                "BUILD of {}: PyTorch builds only tensors, parameters, OrderedDicts and \
                 allow-listed types",
                kind(other)
            ))),
            None => Err(self.error("BUILD of nothing".to_owned())),
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
        let storage_type = *storage_type;
        let dtype = match storage_type {
            Global::TypedStorage(torch) => torch.dtype().ok_or_else(|| {
                self.error(format!(
                    "a storage of {torch}, a dtype ckpt does not support"
                ))
            })?,
            Global::UntypedStorage => DType::U8,
            Global::Unrepresentable(what) => {
                return Err(self.error(format!("a persistent storage of {what}")));
            }
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
            if seen.is_some_and(|s| s.declared != (storage_type, numel)) {
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
        self.storages.push(StorageRef {
            key,
            dtype,
            numel,
            declared: (storage_type, numel),
            typed: false,
        });
        Ok(self.storages.len() - 1)
    }
}

/// The most arguments an allowed callable takes (`_rebuild_tensor_v3`'s eight).
const MAX_ARGS: usize = 8;

/// What a call gives: a new object, or one the pickle already has (a parameter is its tensor).
enum Called {
    New(Obj),
    Existing(Ix),
}

/// A set item as Python compares it: `1`, `1.0`, `True` and `1+0j` are one item.
#[derive(PartialEq, Eq, Hash)]
enum HashKey<'o> {
    None,
    Int(i64),
    Float(u64),
    Complex(u64, u64),
    Str(&'o str),
    Bytes(&'o [u8]),
    Tuple(Vec<HashKey<'o>>),
    /// Tensors, storages and globals hash by identity in Python.
    Object(Ix),
}

/// How deep tuples inside a set's items may nest.
const MAX_HASH_DEPTH: usize = 64;

/// The key of the item at `ix`, charging `budget` for every part built (a tuple fetched from
/// the memo many times is compared part by part each time); an item Python cannot hash (a
/// list, a dict) is an error, `Ok(message)`, as it would be there; `Err` is the budget's.
fn hash_key<'o>(
    objs: &'o [Obj],
    ix: Ix,
    budget: &mut Budget,
    depth: usize,
) -> Result<HashKey<'o>, Result<String, PtError>> {
    budget
        .charge(size_of::<HashKey<'_>>(), "comparing a set's items")
        .map_err(Err)?;
    let number = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 9.2e18 {
            HashKey::Int(x as i64)
        } else {
            HashKey::Float(x.to_bits())
        }
    };
    Ok(match objs.get(ix) {
        None | Some(Obj::None) => HashKey::None,
        Some(Obj::Bool(b)) => HashKey::Int(i64::from(*b)),
        Some(Obj::Int(i)) => HashKey::Int(*i),
        Some(Obj::Float(x)) => number(*x),
        Some(Obj::Complex(re, im)) if *im == 0.0 => number(*re),
        Some(Obj::Complex(re, im)) => HashKey::Complex(re.to_bits(), im.to_bits()),
        Some(Obj::Str(s)) => HashKey::Str(s),
        Some(Obj::Bytes(b) | Obj::BigInt(b)) => HashKey::Bytes(b),
        Some(Obj::Tuple(items)) if depth < MAX_HASH_DEPTH => HashKey::Tuple(
            items
                .iter()
                .map(|&i| hash_key(objs, i, budget, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Some(Obj::Tuple(_)) => {
            return Err(Ok(format!(
                "a set item of tuples nested deeper than {MAX_HASH_DEPTH}"
            )));
        }
        Some(Obj::Tensor(_) | Obj::Storage(_) | Obj::Global(_)) => HashKey::Object(ix),
        Some(other) => {
            return Err(Ok(format!(
                "a set item that is {}, which Python cannot hash",
                kind(other)
            )));
        }
    })
}

/// The heap data an object holds, which its charge adds to [`OBJ_COST`].
fn heap_of(obj: &Obj) -> usize {
    match obj {
        Obj::Str(s) => s.len(),
        Obj::Bytes(b) | Obj::ByteArray(b) | Obj::BigInt(b) => b.len(),
        Obj::List(items) | Obj::Tuple(items) | Obj::Set(items) => items.len() * size_of::<Ix>(),
        Obj::Dict(_, pairs) => pairs.len() * size_of::<(Ix, Ix)>(),
        Obj::Tensor(spec) => {
            size_of::<TensorSpec>() + (spec.shape.len() + spec.stride.len()) * size_of::<i64>()
        }
        Obj::None | Obj::Bool(_) | Obj::Int(_) | Obj::Float(_) | Obj::Complex(..) => 0,
        Obj::BytesIo => 0,
        Obj::Global(_) | Obj::Storage(_) => 0,
    }
}

/// What an object is, for messages.
pub(crate) fn kind(obj: &Obj) -> &'static str {
    match obj {
        Obj::None => "None",
        Obj::Bool(_) => "a bool",
        Obj::Int(_) | Obj::BigInt(_) => "an int",
        Obj::Float(_) => "a float",
        Obj::Complex(..) => "a complex",
        Obj::Str(_) => "a string",
        Obj::Bytes(_) => "bytes",
        Obj::ByteArray(_) => "a bytearray",
        Obj::BytesIo => "an io.BytesIO",
        Obj::List(_) => "a list",
        Obj::Tuple(_) => "a tuple",
        Obj::Set(_) => "a set",
        Obj::Dict(DictKind::Plain, _) => "a dict",
        Obj::Dict(DictKind::Ordered, _) => "an OrderedDict",
        Obj::Dict(DictKind::Counter, _) => "a Counter",
        Obj::Global(_) => "a global",
        Obj::Storage(_) => "a storage",
        Obj::Tensor(_) => "a tensor",
    }
}

/// `text.encode(encoding)` for the encodings a pickle of bytes uses; `latin1` is what protocol 2
/// writes. A character the encoding cannot hold is an error, as in Python.
fn encode(text: &str, encoding: &str) -> Result<Vec<u8>, String> {
    let normalized = encoding.to_ascii_lowercase().replace(['-', '_', ' '], "");
    match normalized.as_str() {
        "latin1" | "iso88591" | "l1" | "8859" | "cp819" | "latin" => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("_codecs.encode: {text:?} has a character beyond latin1")),
        "ascii" | "usascii" => match text.is_ascii() {
            true => Ok(text.as_bytes().to_vec()),
            false => Err(format!("_codecs.encode: {text:?} is not ASCII")),
        },
        "utf8" | "u8" | "utf" => Ok(text.as_bytes().to_vec()),
        _ => Err(format!(
            "_codecs.encode with the encoding {encoding:?}; ckpt reads latin1, ASCII and UTF-8"
        )),
    }
}

/// A little-endian two's complement integer, as `LONG1` stores it.
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
