//! The restricted unpickler of `.metadata`: the pickle opcodes of protocols 2 to 5 that
//! Python's pickler writes for plain data, and exactly the globals a DCP `.metadata` names.
//!
//! Nothing is ever called. DCP's dataclasses (`Metadata`, `TensorStorageMetadata`, …) are
//! instantiated by `NEWOBJ` as an object of a known [`Class`] whose `BUILD` state is kept as
//! data for [`metadata`](super::metadata) to read; `torch.Size`, `_get_layout`, the
//! memory-format enum and `pathlib` paths are emulated by `REDUCE` (a tuple, a layout name, an
//! integer, a string); a dtype global is the dtype. Any other global is refused by name, and
//! every object, stack slot and memo entry is charged to the file's [`Budget`], as the `.pt`
//! reader does.

use std::collections::HashMap;

use super::error::DcpError;
use crate::dtype::TorchDType;
use crate::format::pytorch::budget::Budget;
use crate::format::pytorch::opcode as op;

/// An index into the objects the pickle has built.
pub(crate) type Ix = usize;

/// A DCP class that `NEWOBJ` may instantiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Metadata,
    TensorStorageMetadata,
    ChunkStorageMetadata,
    BytesStorageMetadata,
    TensorProperties,
    MetadataIndex,
    StorageMeta,
    StorageInfo,
}

/// A global the pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    Class(Class),
    /// `torch.Size(tuple)`: the tuple.
    Size,
    /// `torch.serialization._get_layout(name)`: the name.
    Layout,
    /// `_MEM_FORMAT_ENCODING(value)`: the value.
    MemoryFormat,
    /// `pathlib.PosixPath(*parts)` and kin: the path as a string.
    Path,
}

/// An object the pickle builds.
#[derive(Clone, Debug)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Ix>),
    List(Vec<Ix>),
    Dict(Vec<(Ix, Ix)>),
    DType(TorchDType),
    /// An allowed global not yet called or instantiated.
    Global(Global),
    /// An instance of a DCP class, and the state `BUILD` gave it.
    Object(Class, Option<Ix>),
}

/// The objects of an unpickled `.metadata` and its root.
pub(crate) struct Pickle {
    pub(crate) objs: Vec<Obj>,
    pub(crate) root: Ix,
}

impl Pickle {
    pub(crate) fn obj(&self, ix: Ix) -> &Obj {
        // Indices are only made by pushing, so they are in range; `None` keeps this total.
        self.objs.get(ix).unwrap_or(&Obj::None)
    }
}

/// Which global `module.name` is, if `.metadata` may name it.
fn resolve(module: &str, name: &str) -> Option<Global> {
    const METADATA: &str = "torch.distributed.checkpoint.metadata";
    Some(match (module, name) {
        (METADATA, "Metadata") => Global::Class(Class::Metadata),
        (METADATA, "TensorStorageMetadata") => Global::Class(Class::TensorStorageMetadata),
        (METADATA, "ChunkStorageMetadata") => Global::Class(Class::ChunkStorageMetadata),
        (METADATA, "BytesStorageMetadata") => Global::Class(Class::BytesStorageMetadata),
        (METADATA, "TensorProperties") => Global::Class(Class::TensorProperties),
        (METADATA, "MetadataIndex") => Global::Class(Class::MetadataIndex),
        (METADATA, "StorageMeta") => Global::Class(Class::StorageMeta),
        (METADATA, "_MEM_FORMAT_ENCODING") => Global::MemoryFormat,
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo") => {
            Global::Class(Class::StorageInfo)
        }
        ("torch", "Size") => Global::Size,
        ("torch.serialization", "_get_layout") => Global::Layout,
        // `pathlib._local` on Python 3.13 and later.
        ("pathlib" | "pathlib._local", "PosixPath" | "WindowsPath" | "PurePosixPath") => {
            Global::Path
        }
        _ => return None,
    })
}

/// Reads `.metadata`'s pickle, charging what it builds to `budget`.
pub(crate) fn unpickle(data: &[u8], budget: &mut Budget) -> Result<Pickle, DcpError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_pos: 0,
        objs: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        budget,
    };
    let root = m.run()?;
    if m.pos != data.len() {
        return Err(m.error(format!(
            "{} bytes follow the pickle's STOP",
            data.len() - m.pos
        )));
    }
    Ok(Pickle { objs: m.objs, root })
}

/// What one object costs besides its heap data, as the `.pt` reader counts it.
const OBJ_COST: usize = 2 * size_of::<Obj>() + 8;
/// What one memo entry costs in the hash map, its growth included.
const MEMO_COST: usize = 48;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    objs: Vec<Obj>,
    stack: Vec<Ix>,
    marks: Vec<usize>,
    memo: HashMap<u32, Ix>,
    budget: &'a mut Budget,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Ix, DcpError> {
        loop {
            self.op_pos = self.pos;
            let code = self.byte("an opcode")?;
            match code {
                op::PROTO => {
                    let version = self.byte("the protocol version")?;
                    if !(2..=5).contains(&version) {
                        return Err(self.error(format!("pickle protocol {version}")));
                    }
                }
                // A frame only groups the opcodes that follow, for buffering.
                op::FRAME => {
                    self.take(8, "a FRAME length")?;
                }
                op::STOP => return self.pop(),
                op::MARK => {
                    self.charge(16, "the pickle's marks")?;
                    self.marks.push(self.stack.len());
                }
                op::NONE => self.push(Obj::None)?,
                op::NEWTRUE => self.push(Obj::Bool(true))?,
                op::NEWFALSE => self.push(Obj::Bool(false))?,
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
                    let value = long(bytes)
                        .ok_or_else(|| self.error(format!("an integer of {n} bytes")))?;
                    self.push(Obj::Int(value))?;
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
                    let n = u32::from_le_bytes(self.array::<4>("a string length")?);
                    self.unicode(n as usize)?;
                }
                op::BINUNICODE8 => {
                    let n = u64::from_le_bytes(self.array::<8>("a string length")?);
                    // Checked against the bytes that remain by `take`.
                    self.unicode(usize::try_from(n).unwrap_or(usize::MAX))?;
                }
                op::EMPTY_DICT => self.push(Obj::Dict(Vec::new()))?,
                op::EMPTY_LIST => self.push(Obj::List(Vec::new()))?,
                op::EMPTY_TUPLE => self.push(Obj::Tuple(Vec::new()))?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))?;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let items = self.pop_n(usize::from(code - op::TUPLE1 + 1))?;
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
                    self.extend_dict(&items)?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_dict(&items)?;
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
                        .map_err(|_| self.error("a memo of 2^32 entries".to_owned()))?;
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
                    self.global(module, name)?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(module), Obj::Str(name)) = (self.obj(module), self.obj(name))
                    else {
                        return Err(self.error("STACK_GLOBAL of names that are not strings".into()));
                    };
                    let (module, name) = (module.clone(), name.clone());
                    self.global(&module, &name)?;
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
                    let made = self.new_object(class, args)?;
                    self.push(made)?;
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                other => {
                    return Err(DcpError::Opcode {
                        opcode: other,
                        name: op::name(other),
                        offset: self.op_pos,
                    });
                }
            }
        }
    }

    fn error(&self, message: String) -> DcpError {
        DcpError::Pickle {
            offset: self.op_pos,
            message,
        }
    }

    fn charge(&mut self, bytes: usize, what: &str) -> Result<(), DcpError> {
        self.budget.charge(bytes, what).map_err(DcpError::limit)
    }

    fn obj(&self, ix: Ix) -> &Obj {
        self.objs.get(ix).unwrap_or(&Obj::None)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DcpError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return Err(DcpError::Truncated(format!(
                "the .metadata pickle ends inside {what} at byte {} (needs {n} bytes, {} remain)",
                self.op_pos,
                self.data.len().saturating_sub(self.pos)
            )));
        };
        let bytes = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self, what: &str) -> Result<u8, DcpError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DcpError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn line(&mut self, what: &str) -> Result<&'a str, DcpError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(DcpError::Truncated(format!(
                "the .metadata pickle ends inside {what} at byte {}",
                self.op_pos
            )));
        };
        let bytes = self.take(n + 1, what)?;
        std::str::from_utf8(&bytes[..n]).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    fn unicode(&mut self, n: usize) -> Result<(), DcpError> {
        let bytes = self.take(n, "a string")?;
        let s = std::str::from_utf8(bytes)
            .map_err(|e| self.error(format!("a string that is not UTF-8: {e}")))?;
        self.push(Obj::Str(s.to_owned()))
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), DcpError> {
        if let Some(dtype) = module
            .eq("torch")
            .then(|| TorchDType::from_name(name))
            .flatten()
        {
            return self.push(Obj::DType(dtype));
        }
        let global = resolve(module, name).ok_or_else(|| DcpError::Global {
            name: format!("{module}.{name}"),
        })?;
        self.push(Obj::Global(global))
    }

    /// A new object, charged with its heap data, pushed on the stack.
    fn push(&mut self, obj: Obj) -> Result<(), DcpError> {
        let ix = self.alloc(obj)?;
        self.push_ix(ix)
    }

    /// A new object, charged with its heap data.
    fn alloc(&mut self, obj: Obj) -> Result<Ix, DcpError> {
        let heap = match &obj {
            Obj::Str(s) => s.len(),
            Obj::Tuple(items) | Obj::List(items) => items.len() * size_of::<Ix>(),
            _ => 0,
        };
        self.charge(OBJ_COST + heap, "the pickle's objects")?;
        self.objs.push(obj);
        Ok(self.objs.len() - 1)
    }

    /// Pushes an object on the stack, charging the slot.
    fn push_ix(&mut self, ix: Ix) -> Result<(), DcpError> {
        self.charge(2 * size_of::<Ix>(), "the pickle's stack")?;
        self.stack.push(ix);
        Ok(())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Ix, DcpError> {
        if self.stack.len() <= self.floor() {
            return Err(self.error("stack underflow".to_owned()));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error("stack underflow".to_owned()))
    }

    fn top(&self) -> Result<Ix, DcpError> {
        match self.stack.last() {
            Some(&ix) if self.stack.len() > self.floor() => Ok(ix),
            _ => Err(self.error("stack underflow".to_owned())),
        }
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Ix>, DcpError> {
        let len = self.stack.len();
        if len < self.floor() + n {
            return Err(self.error("stack underflow".to_owned()));
        }
        Ok(self.stack.split_off(len - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Ix>, DcpError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error("no MARK on the stack".to_owned()))?;
        if mark > self.stack.len() {
            return Err(self.error("MARK above the stack".to_owned()));
        }
        Ok(self.stack.split_off(mark))
    }

    fn extend_list(&mut self, items: Vec<Ix>) -> Result<(), DcpError> {
        self.charge(2 * items.len() * size_of::<Ix>(), "the pickle's lists")?;
        let target = self.top()?;
        match self.objs.get_mut(target) {
            Some(Obj::List(list)) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(self.error("APPEND to something that is not a list".to_owned())),
        }
    }

    fn extend_dict(&mut self, items: &[Ix]) -> Result<(), DcpError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("an odd number of items for a dict".to_owned()));
        }
        self.charge(2 * items.len() * size_of::<Ix>(), "the pickle's dicts")?;
        let target = self.top()?;
        match self.objs.get_mut(target) {
            Some(Obj::Dict(dict)) => {
                dict.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => Err(self.error("SETITEM on something that is not a dict".to_owned())),
        }
    }

    fn put(&mut self, index: u32) -> Result<(), DcpError> {
        let top = self.top()?;
        if self.memo.insert(index, top).is_none() {
            self.charge(MEMO_COST, "the pickle's memo")?;
        }
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<(), DcpError> {
        let ix = *self
            .memo
            .get(&index)
            .ok_or_else(|| self.error(format!("memo key {index} was never stored")))?;
        self.push_ix(ix)
    }

    /// `REDUCE` of the globals DCP calls, emulated: nothing is called.
    fn reduce(&mut self, callable: Ix, args: Ix) -> Result<Ix, DcpError> {
        let Obj::Global(global) = *self.obj(callable) else {
            return Err(self.error("REDUCE of something that is not an allowed global".into()));
        };
        let Obj::Tuple(args) = self.obj(args) else {
            return Err(self.error("REDUCE arguments are not a tuple".to_owned()));
        };
        let arg = |i: usize| args.get(i).map(|&ix| self.obj(ix));
        let made = match (global, args.len()) {
            // A size is its tuple, shared rather than copied.
            (Global::Size, 1) => match (arg(0), args.first()) {
                (Some(Obj::Tuple(_)), Some(&tuple)) => return Ok(tuple),
                _ => return Err(self.error("torch.Size of something not a tuple".into())),
            },
            (Global::Layout, 1) => match arg(0) {
                Some(Obj::Str(name)) => Obj::Str(name.clone()),
                _ => return Err(self.error("_get_layout of something not a string".into())),
            },
            (Global::MemoryFormat, 1) => match arg(0) {
                Some(&Obj::Int(value)) => Obj::Int(value),
                _ => {
                    return Err(
                        self.error("_MEM_FORMAT_ENCODING of something not an integer".into())
                    );
                }
            },
            (Global::Path, _) => {
                let mut path = String::new();
                for part in args.iter().map(|&ix| self.obj(ix)) {
                    let Obj::Str(part) = part else {
                        return Err(self.error("a path of parts that are not strings".into()));
                    };
                    if !path.is_empty() && !path.ends_with('/') {
                        path.push('/');
                    }
                    path.push_str(part);
                }
                Obj::Str(path)
            }
            (global, n) => {
                return Err(self.error(format!("cannot call {global:?} with {n} arguments")));
            }
        };
        self.alloc(made)
    }

    /// `NEWOBJ`: `cls.__new__(cls)` of a DCP class, with no arguments, as pickle writes them.
    fn new_object(&self, class: Ix, args: Ix) -> Result<Obj, DcpError> {
        match (self.obj(class), self.obj(args)) {
            (Obj::Global(Global::Class(class)), Obj::Tuple(args)) if args.is_empty() => {
                Ok(Obj::Object(*class, None))
            }
            (Obj::Global(global), _) => Err(self.error(format!(
                "NEWOBJ of {global:?}; only DCP's metadata classes, with no arguments"
            ))),
            _ => Err(self.error("NEWOBJ of something that is not a class".to_owned())),
        }
    }

    /// `BUILD`: the state of an object made by `NEWOBJ`, given once.
    fn build(&mut self, target: Ix, state: Ix) -> Result<(), DcpError> {
        match self.objs.get_mut(target) {
            Some(Obj::Object(_, slot @ None)) => {
                *slot = Some(state);
                Ok(())
            }
            Some(Obj::Object(class, Some(_))) => {
                let class = *class;
                Err(self.error(format!("BUILD of a {class:?} built already")))
            }
            _ => Err(self.error("BUILD of something that is not a DCP object".to_owned())),
        }
    }
}

/// A little-endian two's complement integer, as `LONG1` stores it, if it fits in 64 bits.
fn long(bytes: &[u8]) -> Option<i64> {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    if bytes.len() > 8 && bytes[8..].iter().any(|&b| b != fill) {
        return None;
    }
    let mut out = [fill; 8];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    let value = i64::from_le_bytes(out);
    (bytes.len() <= 8 || (value < 0) == negative).then_some(value)
}
