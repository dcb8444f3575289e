//! Fetching many ranges of one object at once, as a load does. Ranges less than 4 KiB apart are
//! fetched together (a span: the tensors of a sub-tree lie side by side), each span is split
//! into up to `download_concurrency` GETs of at least `download_chunk` bytes (and at most
//! 256 MiB), and every GET
//! streams straight into the buffers of the ranges it covers: a load holds what it fetches
//! and nothing more.
//!
//! Few long GETs rather than many short ones: each costs a round trip, and some servers (moto,
//! in the tests) read the whole object for every ranged GET. Several in flight at once is what
//! makes a load as fast as the store allows; a GET whose body breaks is resumed by
//! `object_store` from where it broke, at the same version.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::{GetOptions, GetRange};

use super::error::io_error;
use super::store::Object;

/// Ranges at most this far apart are fetched by one GET: less than a request costs.
const GAP: u64 = 4 << 10;
/// The most one GET fetches, so that each stays well within a request's time limit.
const MAX_PIECE: u64 = 256 << 20;

/// The version every GET must find: the object's `ETag` and version when it was opened.
pub(super) type Version = (Option<String>, Option<String>);

/// One GET: the bytes of the object it fetches, and where each part of them goes.
struct Piece<'b> {
    range: Range<u64>,
    /// Destinations by the object offset they start at, in order, not overlapping.
    into: Vec<(u64, &'b mut [u8])>,
}

/// Fetches `ranges` (within the object, each at most `usize::MAX` bytes), each into a buffer
/// of its own.
pub(super) async fn ranges(
    object: Arc<Object>,
    version: Version,
    ranges: Vec<Range<u64>>,
    concurrency: usize,
    min_piece: u64,
) -> io::Result<Vec<Vec<u8>>> {
    let mut buffers: Vec<Vec<u8>> = ranges
        .iter()
        .map(|r| vec![0; (r.end - r.start) as usize])
        .collect();
    {
        // The futures are made first: a closure mapping the stream would have to be generic
        // over the buffers' lifetime, which the compiler cannot prove `Send`.
        let fetches: Vec<_> = plan(&ranges, &mut buffers, concurrency, min_piece)
            .into_iter()
            .map(|piece| fetch(&object, &version, piece))
            .collect();
        stream::iter(fetches)
            .buffer_unordered(concurrency)
            .try_for_each(|()| async { Ok(()) })
            .await?;
    }
    Ok(buffers)
}

/// The GETs that fill `buffers` with `ranges`.
fn plan<'b>(
    ranges: &[Range<u64>],
    buffers: &'b mut [Vec<u8>],
    concurrency: usize,
    min_piece: u64,
) -> Vec<Piece<'b>> {
    let mut order: Vec<usize> = (0..ranges.len())
        .filter(|&i| ranges[i].start < ranges[i].end)
        .collect();
    order.sort_by_key(|&i| ranges[i].start);
    // Spans of ranges in order; a range overlapping the span before starts a span of its own,
    // so that no two ranges of a span share bytes.
    let mut spans: Vec<(Range<u64>, Vec<usize>)> = Vec::new();
    for i in order {
        let range = &ranges[i];
        match spans.last_mut() {
            Some((span, members)) if range.start >= span.end && range.start - span.end <= GAP => {
                span.end = range.end;
                members.push(i);
            }
            _ => spans.push((range.clone(), vec![i])),
        }
    }
    let mut slots: Vec<Option<&'b mut [u8]>> =
        buffers.iter_mut().map(|b| Some(b.as_mut_slice())).collect();
    let mut pieces = Vec::new();
    for (span, members) in spans {
        let len = span.end - span.start;
        let size = len
            .div_ceil(concurrency as u64)
            .min(MAX_PIECE)
            .max(min_piece)
            .max(1);
        let first = pieces.len();
        let mut at = span.start;
        while at < span.end {
            let end = (at + size).min(span.end);
            pieces.push(Piece {
                range: at..end,
                into: Vec::new(),
            });
            at = end;
        }
        for m in members {
            let Some(mut rest) = slots[m].take() else {
                continue;
            };
            let mut at = ranges[m].start;
            while at < ranges[m].end {
                let index = first + ((at - span.start) / size) as usize;
                let piece_end = pieces[index].range.end;
                let take = (piece_end.min(ranges[m].end) - at) as usize;
                let (head, tail) = rest.split_at_mut(take);
                pieces[index].into.push((at, head));
                rest = tail;
                at += take as u64;
            }
        }
    }
    pieces
}

/// One GET, its body copied into place as it arrives.
async fn fetch(object: &Object, version: &Version, mut piece: Piece<'_>) -> io::Result<()> {
    let range = piece.range.clone();
    let doing = format!("reading bytes {}..{}", range.start, range.end);
    let error = |e| io_error(e, &doing, &object.secrets);
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        if_match: version.0.clone(),
        version: version.1.clone(),
        ..GetOptions::default()
    };
    let result = object
        .store
        .get_opts(&object.path, options)
        .await
        .map_err(error)?;
    let mut body = result.into_stream();
    let mut at = range.start;
    let mut next = 0; // the first destination not yet full
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(error)?;
        let end = at + chunk.len() as u64;
        if end > range.end {
            break;
        }
        while let Some((start, into)) = piece.into.get_mut(next) {
            let into_end = *start + into.len() as u64;
            if into_end <= at {
                next += 1;
                continue;
            }
            if *start >= end {
                break;
            }
            let from = at.max(*start);
            let to = end.min(into_end);
            into[(from - *start) as usize..(to - *start) as usize]
                .copy_from_slice(&chunk[(from - at) as usize..(to - at) as usize]);
            if to < into_end {
                break;
            }
            next += 1;
        }
        at = end;
    }
    if at != range.end {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{doing}: the store sent {} bytes for {}",
                at - range.start,
                range.end - range.start
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(ranges: &[Range<u64>], concurrency: usize, min: u64) -> Vec<(Range<u64>, Vec<u64>)> {
        let mut buffers: Vec<Vec<u8>> = ranges
            .iter()
            .map(|r| vec![0; (r.end - r.start) as usize])
            .collect();
        plan(ranges, &mut buffers, concurrency, min)
            .into_iter()
            .map(|p| (p.range, p.into.iter().map(|(at, _)| *at).collect()))
            .collect()
    }

    #[test]
    fn near_ranges_share_gets_and_large_spans_split() {
        // Three tensors side by side (64-byte gaps) and one far away: two spans, the first in
        // GETs of the least size.
        let ranges = [0..1000, 1064..2000, 2064..3000, 1 << 20..(1 << 20) + 10];
        assert_eq!(
            planned(&ranges, 4, 1000),
            [
                (0..1000, vec![0]),
                (1000..2000, vec![1064]),
                (2000..3000, vec![2064]),
                (1 << 20..(1 << 20) + 10, vec![1 << 20]),
            ]
        );
        // A range overlapping the one before starts a span of its own.
        assert_eq!(
            planned(&[0..100, 50..150], 4, 1000),
            [(0..100, vec![0]), (50..150, vec![50])]
        );
        // The whole span in `concurrency` GETs when that beats the least size.
        assert_eq!(
            planned(std::slice::from_ref(&(0..10_000)), 4, 1000),
            [
                (0..2500, vec![0]),
                (2500..5000, vec![2500]),
                (5000..7500, vec![5000]),
                (7500..10_000, vec![7500]),
            ]
        );
        assert!(planned(std::slice::from_ref(&(5..5)), 4, 1).is_empty());
    }
}
