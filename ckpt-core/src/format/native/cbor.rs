//! A pass over CBOR that counts its data items without building anything, so that a header is
//! refused for its size before it is decoded.
//!
//! ckpt writes headers with definite lengths only; indefinite lengths are refused.

use crate::format::Corruption;

/// The number of data items in `bytes`, which must hold exactly one CBOR item (a map counts
/// its keys and values, an array its elements, a tag the item it tags), nested at most
/// `max_depth` deep.
pub(super) fn count_items(bytes: &[u8], max_depth: usize) -> Result<u64, Corruption> {
    let mut scan = Scan {
        bytes,
        pos: 0,
        items: 0,
    };
    // Items still to read at each open level; the bottom level is the one top item.
    let mut pending: Vec<u64> = vec![1];
    while let Some(&left) = pending.last() {
        if left == 0 {
            pending.pop();
            continue;
        }
        *pending.last_mut().expect("not empty") -= 1;
        if let Some(children) = scan.item()?
            && children > 0
        {
            if pending.len() > max_depth {
                return Err(Corruption::TooDeep(max_depth / 2));
            }
            pending.push(children);
        }
    }
    if scan.pos != bytes.len() {
        return Err(Corruption::Header(format!(
            "{} bytes after the header's value",
            bytes.len() - scan.pos
        )));
    }
    Ok(scan.items)
}

struct Scan<'b> {
    bytes: &'b [u8],
    pos: usize,
    items: u64,
}

impl Scan<'_> {
    /// Reads one item's head (and a string's payload); returns how many items it contains.
    fn item(&mut self) -> Result<Option<u64>, Corruption> {
        self.items += 1;
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let argument = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            27 => u64::from_be_bytes(self.array()?),
            31 => {
                return Err(Corruption::Header(
                    "an indefinite-length item, which ckpt never writes".to_owned(),
                ));
            }
            _ => {
                return Err(Corruption::Header(format!(
                    "reserved additional information {info} at byte {}",
                    self.pos - 1
                )));
            }
        };
        Ok(match major {
            // Integers, and simple values and floats (whose argument is their bits).
            0 | 1 | 7 => None,
            2 | 3 => {
                let len = usize::try_from(argument).map_err(|_| self.truncated())?;
                self.take(len)?;
                None
            }
            4 => Some(argument),
            5 => Some(argument.checked_mul(2).ok_or_else(|| self.truncated())?),
            // A tag applies to the one item after it.
            6 => Some(1),
            _ => unreachable!("three bits"),
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Corruption> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| self.truncated())?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corruption> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn truncated(&self) -> Corruption {
        Corruption::Header(format!(
            "the header ends inside an item at byte {}",
            self.pos
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(value: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    #[test]
    fn counts_every_item() {
        use ciborium::Value as C;
        let value = C::Map(vec![
            (
                C::Text("a".into()),
                C::Array(vec![C::Null, C::Bool(true), C::Float(1.5)]),
            ),
            (C::Integer(7.into()), C::Bytes(vec![1, 2, 3])),
            (
                C::Text("t".into()),
                C::Tag(1, Box::new(C::Integer((-3).into()))),
            ),
        ]);
        // map, "a", array, null, true, 1.5, 7, bytes, "t", tag, -3
        assert_eq!(count_items(&cbor(&value), 16), Ok(11));
    }

    #[test]
    fn refuses_what_it_cannot_count() {
        let nested = (0..20).fold(ciborium::Value::Null, |v, _| {
            ciborium::Value::Array(vec![v])
        });
        assert_eq!(count_items(&cbor(&nested), 8), Err(Corruption::TooDeep(4)));
        let bytes = cbor(&ciborium::Value::Text("hello".into()));
        assert!(count_items(&bytes[..3], 8).is_err());
        assert!(count_items(&[0x9f, 0xff], 8).is_err()); // indefinite-length array
        // A map claiming 2^62 entries in a few bytes.
        let huge = [0xbb, 0x40, 0, 0, 0, 0, 0, 0, 0];
        assert!(count_items(&huge, 8).is_err());
    }
}
