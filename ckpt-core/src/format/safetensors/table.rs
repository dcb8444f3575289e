//! A safetensors header, parsed entry by entry into one packed table: every name in one
//! string, every shape in one vector, a fixed-size row per tensor. A header of many small
//! entries then costs about what its JSON does, where a map of owned entries (or serde's
//! `flatten`, which buffers the whole document first) costs ten times that.
//!
//! Each entry is the `safetensors` crate's own `TensorInfo`, deserialized by the crate; the
//! layout rules checked afterwards are the crate's (`Metadata::validate`): tensors laid end
//! to end in offset order from zero, each exactly as long as its shape and dtype say. One
//! rule is added: a name may appear once (JSON objects may repeat a key; a map keeps the last).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use safetensors::tensor::TensorInfo;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::{METADATA, dtype_from};
use crate::dtype::DType;
use crate::format::Corruption;
use crate::tensor::check_size;

/// The tensors of a header, in file (offset) order, and its `__metadata__` strings.
#[derive(Debug, Default)]
pub(super) struct Table {
    names: String,
    shapes: Vec<usize>,
    rows: Vec<Row>,
    pub(super) metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug)]
struct Row {
    name: Range<usize>,
    shape: Range<usize>,
    dtype: DType,
    offsets: (u64, u64),
}

/// One tensor of a [`Table`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry<'a> {
    pub(super) name: &'a str,
    pub(super) dtype: DType,
    pub(super) shape: &'a [usize],
    /// Its range within the data section.
    pub(super) offsets: (u64, u64),
}

/// What is wrong with a header, and the tensor it concerns, if one.
pub(super) type Problem = (Corruption, Option<String>);

impl Table {
    /// Parses and checks the header's JSON.
    pub(super) fn parse(json: &[u8]) -> Result<Table, Problem> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let mut parsed = Parsed::default();
        let result = de::Deserializer::deserialize_map(&mut deserializer, &mut parsed)
            .and_then(|()| deserializer.end());
        if let Some(problem) = parsed.problem {
            return Err(problem);
        }
        result.map_err(|e| (Corruption::Header(format!("safetensors header: {e}")), None))?;
        let mut table = parsed.table;
        table.refuse_duplicates()?;
        table.rows.sort_by_key(|row| row.offsets);
        table.check_layout()?;
        Ok(table)
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The tensors in offset order.
    pub(super) fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        self.rows.iter().map(|row| Entry {
            name: &self.names[row.name.clone()],
            dtype: row.dtype,
            shape: &self.shapes[row.shape.clone()],
            offsets: row.offsets,
        })
    }

    /// The length of the data section the tensors cover.
    pub(super) fn data_len(&self) -> u64 {
        self.rows.last().map_or(0, |row| row.offsets.1)
    }

    fn name(&self, row: &Row) -> &str {
        &self.names[row.name.clone()]
    }

    fn push(&mut self, name: &str, info: &TensorInfo) -> Result<(), Problem> {
        let problem = |corruption: Corruption| (corruption, Some(name.to_owned()));
        let dtype = dtype_from(info.dtype).ok_or_else(|| {
            problem(Corruption::Unknown {
                what: "dtype",
                name: format!("{:?}", info.dtype),
            })
        })?;
        // The crate checks offsets against the shape, but not the shape itself.
        check_size(dtype, &info.shape).map_err(|e| problem(e.into()))?;
        let (start, stop) = info.data_offsets;
        let name_start = self.names.len();
        self.names.push_str(name);
        let shape_start = self.shapes.len();
        self.shapes.extend_from_slice(&info.shape);
        self.rows.push(Row {
            name: name_start..self.names.len(),
            shape: shape_start..self.shapes.len(),
            dtype,
            offsets: (start as u64, stop as u64),
        });
        Ok(())
    }

    fn refuse_duplicates(&self) -> Result<(), Problem> {
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.name(&self.rows[i as usize]));
        let twice = order.windows(2).find_map(|pair| {
            let (a, b) = (&self.rows[pair[0] as usize], &self.rows[pair[1] as usize]);
            (self.name(a) == self.name(b)).then(|| self.name(a))
        });
        match twice {
            Some(name) => Err((
                Corruption::Header(format!("tensor {name:?} appears twice in the header")),
                Some(name.to_owned()),
            )),
            None => Ok(()),
        }
    }

    /// The crate's rules: end to end from zero, each as long as its shape says.
    fn check_layout(&self) -> Result<(), Problem> {
        let mut end = 0;
        for (row, entry) in self.rows.iter().zip(self.iter()) {
            let problem =
                |message: String| (Corruption::Header(message), Some(entry.name.to_owned()));
            let (start, stop) = row.offsets;
            if start != end || stop < start {
                return Err(problem(format!(
                    "data offsets [{start}, {stop}] do not start where the previous tensor \
                     ends ({end})"
                )));
            }
            let nbytes = check_size(row.dtype, entry.shape)
                .map_err(|e| (e.into(), Some(entry.name.to_owned())))?;
            if stop - start != nbytes as u64 {
                return Err(problem(format!(
                    "data offsets [{start}, {stop}] hold {} bytes, but a {} tensor of shape \
                     {:?} has {nbytes}",
                    stop - start,
                    row.dtype,
                    entry.shape
                )));
            }
            end = stop;
        }
        Ok(())
    }
}

/// The visitor's state: the table so far, and the first problem with an entry (which stops
/// the parse; serde's error cannot carry it).
#[derive(Default)]
struct Parsed {
    table: Table,
    problem: Option<Problem>,
}

impl<'de> Visitor<'de> for &mut Parsed {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensors and __metadata__")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == METADATA {
                if self.table.metadata.is_some() {
                    return Err(de::Error::custom("__metadata__ appears twice"));
                }
                self.table.metadata = Some(map.next_value()?);
                continue;
            }
            let info: TensorInfo = map.next_value_seed(Info(&key))?;
            if let Err(problem) = self.table.push(&key, &info) {
                self.problem = Some(problem);
                return Err(de::Error::custom("a tensor entry is wrong"));
            }
        }
        Ok(())
    }
}

/// A tensor's entry, with its key in serde's error message.
struct Info<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Info<'_> {
    type Value = TensorInfo;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<TensorInfo, D::Error> {
        serde::Deserialize::deserialize(deserializer)
            .map_err(|e: D::Error| de::Error::custom(format!("tensor {:?}: {e}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Table, Problem> {
        Table::parse(json.as_bytes())
    }

    fn message(json: &str) -> (String, Option<String>) {
        let (corruption, key) = parse(json).expect_err("a bad header");
        (corruption.to_string(), key)
    }

    #[test]
    fn entries_come_in_offset_order_with_their_metadata() {
        let table = parse(
            r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},
                "__metadata__":{"format":"pt"},
                "a":{"dtype":"U8","shape":[2,4],"data_offsets":[0,8]},
                "e":{"dtype":"F32","shape":[0,3],"data_offsets":[16,16]}}"#,
        )
        .expect("a good header");
        let names: Vec<&str> = table.iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "e"]);
        let a = table.iter().next().expect("a");
        assert_eq!(
            (a.dtype, a.shape, a.offsets),
            (DType::U8, &[2, 4][..], (0, 8))
        );
        assert_eq!(table.data_len(), 16);
        assert_eq!(
            table
                .metadata
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
    }

    #[test]
    fn a_repeated_name_is_refused_naming_it() {
        let (text, key) = message(
            r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},
                "w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
        );
        assert!(text.contains("\"w\" appears twice"), "{text}");
        assert_eq!(key.as_deref(), Some("w"));
    }

    #[test]
    fn gaps_overlaps_and_wrong_lengths_are_refused_naming_the_tensor() {
        let gap = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        let overlap = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},
                          "b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#;
        let short = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
        for (json, key, says) in [
            (gap, "a", "do not start where"),
            (overlap, "b", "do not start where"),
            (
                short,
                "a",
                "hold 4 bytes, but a F32 tensor of shape [2] has 8",
            ),
        ] {
            let (text, got) = message(json);
            assert!(text.contains(says), "{text}");
            assert_eq!(got.as_deref(), Some(key), "{text}");
        }
    }

    #[test]
    fn a_wrong_entry_names_its_tensor() {
        let (text, _) = message(r#"{"w":{"dtype":"F32","shape":"two","data_offsets":[0,8]}}"#);
        assert!(text.contains("tensor \"w\""), "{text}");
        let (text, key) = message(r#"{"w":{"dtype":"F4","shape":[1],"data_offsets":[0,1]}}"#);
        assert!(text.contains("F4"), "{text}");
        assert_eq!(key.as_deref(), Some("w"));
        let (text, _) = message(r#"[1, 2]"#);
        assert!(text.contains("a JSON object"), "{text}");
        let (text, _) = message(r#"{} trailing"#);
        assert!(text.contains("trailing"), "{text}");
    }

    #[test]
    fn many_small_entries_cost_about_their_json() {
        let json: String =
            std::iter::once("{".to_owned())
                .chain((0..10_000).map(|i| {
                    format!(r#""t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}},"#)
                }))
                .chain(std::iter::once(
                    r#""last":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#.to_owned(),
                ))
                .collect();
        let table = parse(&json).expect("a good header");
        let packed = table.names.capacity()
            + table.shapes.capacity() * size_of::<usize>()
            + table.rows.capacity() * size_of::<Row>();
        assert_eq!(table.len(), 10_001);
        assert!(
            packed < 2 * json.len(),
            "{packed} bytes for {} of JSON",
            json.len()
        );
    }
}
