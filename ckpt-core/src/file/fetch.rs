//! Loading a file that is not in memory (an object in a store) straight into a model: only
//! the tensors the model takes are fetched, several ranged GETs in flight, and each is checked
//! against its checksum before anything is written.
//!
//! Which tensors a load takes depends on the model, the key map, `auto_prefix` and the shapes,
//! so the load runs twice. First against placeholders (each tensor's dtype and shape over one
//! zero element, no data), which answers every check a load makes without data: a model that
//! does not fit the file is refused before a byte of tensor data is fetched, and otherwise
//! the first pass stops where it would start copying, knowing which tensors it read. Those are
//! fetched and checked, then the load runs for real over them; a model is still never
//! half-written, since every byte it will receive is in memory and verified first. Memory:
//! the tensors loaded, besides the model (a load cannot write before it has checked).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use super::open::File;
use super::place::check_placement;
use super::{Error, LoadOptions};
use crate::format::{Corruption, TensorData};
use crate::loading::{LoadReport, Pager, StateDictOptions};
use crate::state::{Leaf, TensorSource};
use crate::state_dict::{StateDict, load_into_with};
use crate::storage::Location;
use crate::tensor::{Tensor, TensorError, TensorView};

/// One tensor of the file: where its data is, and in which of the file's parts.
struct Entry {
    data: TensorData,
    part: usize,
}

/// Loads `file` into `model`, fetching only what it takes; `None` if a format of the file does
/// not say where its tensors' data lies (then the whole file must be read).
pub(super) fn load_into<M: StateDict + ?Sized>(
    model: &mut M,
    file: &File,
    load: &LoadOptions,
    state: &StateDictOptions,
) -> Result<Option<LoadReport>, Error> {
    let parts = file.parts();
    let mut entries = Vec::new();
    for (part, (_, opened)) in parts.iter().enumerate() {
        let Some(data) = opened.tensor_data() else {
            return Ok(None);
        };
        entries.extend(data.into_iter().map(|data| Entry { data, part }));
    }
    let by_key: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.data.key.as_str(), i))
        .collect();
    let load_error = |source| Error::Load {
        location: file.location.clone(),
        source: Box::new(source),
    };

    // The first pass: the checks, over placeholders.
    let planned = Tensors::new(&entries, &by_key, None);
    let planner = Planning::default();
    let planning = load_into_with(model, &planned, state, &planner);
    match planning {
        Ok(report) => return Ok(Some(report)), // nothing to copy
        Err(e) if !planner.copying.get() => return Err(load_error(e)),
        Err(_) => {}
    }
    let wanted: Vec<usize> = (planned.asked.into_inner().into_iter().enumerate())
        .filter_map(|(i, asked)| asked.then_some(i))
        .collect();
    check_placement(
        wanted.iter().map(|&i| entries[i].data.key.as_str()),
        &file.saved_devices(),
        &file.location,
        &load.map_location,
    )?;

    // The tensors the load reads, fetched part by part, several ranges at once, and checked.
    let mut tensors = HashMap::with_capacity(wanted.len());
    for (part, (source, _)) in parts.iter().enumerate() {
        let mine: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|&i| entries[i].part == part)
            .collect();
        if mine.is_empty() {
            continue;
        }
        // A tensor under several keys (tied weights) is fetched and checked once.
        let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
        let mut slot: HashMap<(u64, u64), usize> = HashMap::new();
        for &i in &mine {
            let range = entries[i].data.range.clone();
            slot.entry((range.start, range.end)).or_insert_with(|| {
                ranges.push(range);
                ranges.len() - 1
            });
        }
        let location = source.location();
        let fetched = source
            .read_ranges(&ranges)
            .map_err(|e| Error::io(location, e))?;
        let mut checked = vec![false; fetched.len()];
        for &i in &mine {
            let data = &entries[i].data;
            let at = slot[&(data.range.start, data.range.end)];
            let (backing, range) = &fetched[at];
            if load.verify_checksums && !checked[at] {
                if let Some(checksum) = &data.checksum {
                    checksum
                        .check(&backing.bytes()[range.clone()])
                        .map_err(|p| Error::corrupt(location, Some(&data.key), p))?;
                }
                checked[at] = true;
            }
            let tensor =
                Tensor::mapped(Arc::clone(backing), range.clone(), data.dtype, &data.shape)
                    .map_err(|e| corrupt_tensor(location, &data.key, e))?;
            tensors.insert(i, tensor);
        }
    }

    // The second pass, for real.
    let fetched = Tensors::new(&entries, &by_key, Some(tensors));
    load_into_with(model, &fetched, state, &Fetched(&fetched.missed))
        .map(Some)
        .map_err(load_error)
}

/// The first pass's writing half: it stops the load at the first write. (Its source holds
/// placeholders, which are never read in place, so every write comes here.)
#[derive(Default)]
struct Planning {
    copying: Cell<bool>,
}

impl Pager for Planning {
    fn tensor(&self, _: &mut dyn Leaf, _: &TensorView<'_>) -> Result<(), TensorError> {
        self.copying.set(true);
        // Stops the load before it writes anything; the error is not shown.
        Err(TensorError::Shape {
            expected: "data".to_owned(),
            actual: Vec::new(),
        })
    }
}

/// The second pass's writing half: tensors fetched into memory, copied as they are.
struct Fetched<'f>(&'f Cell<bool>);

impl Pager for Fetched<'_> {
    fn tensor(&self, leaf: &mut dyn Leaf, src: &TensorView<'_>) -> Result<(), TensorError> {
        if self.0.get() {
            // The checks read a tensor the first pass did not: never copy a placeholder.
            return Err(TensorError::Shape {
                expected: "the tensors the first pass of the load read".to_owned(),
                actual: Vec::new(),
            });
        }
        if leaf.view().dtype() == src.dtype()
            && let Ok(Cow::Borrowed(from)) = src.to_le_bytes()
            && let Some(to) = leaf
                .contiguous_bytes_mut()
                .filter(|to| to.len() == from.len())
        {
            to.copy_from_slice(from);
            return Ok(());
        }
        leaf.copy_from(src)
    }
}

fn corrupt_tensor(location: &Location, key: &str, error: TensorError) -> Error {
    Error::corrupt(location, Some(key), Corruption::Tensor(error))
}

/// The file's tensors as a load sees them: placeholders while planning, then those fetched
/// (and placeholders for the rest, which only a message about a failed load may look at).
struct Tensors<'e> {
    entries: &'e [Entry],
    by_key: &'e HashMap<&'e str, usize>,
    /// `None` while planning.
    fetched: Option<HashMap<usize, Tensor>>,
    /// Which entries a load asked for.
    asked: RefCell<Vec<bool>>,
    /// Whether a load asked for one that was not fetched.
    missed: Cell<bool>,
}

impl<'e> Tensors<'e> {
    fn new(
        entries: &'e [Entry],
        by_key: &'e HashMap<&'e str, usize>,
        fetched: Option<HashMap<usize, Tensor>>,
    ) -> Self {
        Tensors {
            entries,
            by_key,
            fetched,
            asked: RefCell::new(vec![false; entries.len()]),
            missed: Cell::new(false),
        }
    }
}

impl TensorSource for Tensors<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        let &i = self.by_key.get(key)?;
        self.asked.borrow_mut()[i] = true;
        match self.fetched.as_ref().map(|f| f.get(&i)) {
            Some(Some(tensor)) => return Some(tensor.view()),
            Some(None) => self.missed.set(true),
            None => {}
        }
        let data = &self.entries[i].data;
        TensorView::placeholder(data.dtype, &data.shape)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(
            self.entries
                .iter()
                .map(|e| Cow::Borrowed(e.data.key.as_str())),
        )
    }
}

/// Whether `file` must be fetched to be loaded into a model: its bytes are not in memory or
/// mapped (an object in a store).
pub(super) fn is_remote(file: &File) -> bool {
    file.parts()
        .iter()
        .any(|(source, _)| source.backing().is_none() && !source.is_empty())
}
