//! `ckpt diff`: what differs between two checkpoints.

use std::collections::BTreeMap;
use std::fmt;

use ckpt::{Checkpoint, Value};

use crate::progress::Progress;

pub(crate) struct Report {
    only_a: Vec<String>,
    only_b: Vec<String>,
    /// Key, then A's and B's dtype and shape.
    changed_layout: Vec<(String, String, String)>,
    /// Key and the largest absolute difference, for tensors of equal shape.
    differences: Vec<(String, f64)>,
    /// Key, A's value, B's value.
    changed_values: Vec<(String, String, String)>,
}

impl Report {
    pub(crate) fn is_same(&self) -> bool {
        self.only_a.is_empty()
            && self.only_b.is_empty()
            && self.changed_layout.is_empty()
            && self.changed_values.is_empty()
            && self.differences.iter().all(|(_, d)| *d == 0.0)
    }
}

fn leaves(checkpoint: &Checkpoint) -> BTreeMap<String, &Value<'static>> {
    let mut out = BTreeMap::new();
    checkpoint
        .value()
        .walk(&mut ckpt::state::KeyPath::new(), &mut |key, leaf| {
            out.insert(key.to_owned(), leaf);
        });
    out
}

pub(crate) fn diff(a: &Checkpoint, b: &Checkpoint) -> Report {
    let (la, lb) = (leaves(a), leaves(b));
    let mut report = Report {
        only_a: la
            .keys()
            .filter(|k| !lb.contains_key(*k))
            .cloned()
            .collect(),
        only_b: lb
            .keys()
            .filter(|k| !la.contains_key(*k))
            .cloned()
            .collect(),
        changed_layout: Vec::new(),
        differences: Vec::new(),
        changed_values: Vec::new(),
    };
    let total: usize = a.tensors().iter().map(|(_, t)| t.nbytes()).sum();
    let mut progress = Progress::bytes(total as u64, "comparing");
    for (key, va) in &la {
        let Some(vb) = lb.get(key) else { continue };
        match (va.as_tensor(), vb.as_tensor()) {
            (Some(ta), Some(tb)) => {
                progress.advance(ta.nbytes() as u64);
                if ta.dtype() != tb.dtype() || ta.shape() != tb.shape() {
                    report.changed_layout.push((
                        key.clone(),
                        format!("{} {:?}", ta.dtype(), ta.shape()),
                        format!("{} {:?}", tb.dtype(), tb.shape()),
                    ));
                }
                if let Ok(d) = ta.max_abs_diff(&tb) {
                    report.differences.push((key.clone(), d));
                }
            }
            _ if va != vb => report
                .changed_values
                .push((key.clone(), describe(va), describe(vb))),
            _ => {}
        }
    }
    report
}

fn describe(value: &Value<'_>) -> String {
    match value.as_tensor() {
        Some(t) => format!("tensor {} {:?}", t.dtype(), t.shape()),
        None => format!("{value:?}"),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for key in &self.only_a {
            writeln!(f, "only in A: {key}")?;
        }
        for key in &self.only_b {
            writeln!(f, "only in B: {key}")?;
        }
        for (key, a, b) in &self.changed_layout {
            writeln!(f, "changed: {key}: {a} -> {b}")?;
        }
        for (key, a, b) in &self.changed_values {
            writeln!(f, "value: {key}: {a} -> {b}")?;
        }
        let differing: Vec<_> = self.differences.iter().filter(|(_, d)| *d != 0.0).collect();
        for (key, d) in &differing {
            writeln!(f, "max |a-b| {key}: {d:e}")?;
        }
        writeln!(
            f,
            "{} tensors compared, {} equal, {} differ; {} only in A, {} only in B",
            self.differences.len(),
            self.differences.len() - differing.len(),
            differing.len(),
            self.only_a.len(),
            self.only_b.len()
        )
    }
}
