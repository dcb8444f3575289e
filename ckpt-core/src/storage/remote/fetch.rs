//! Fetching many ranges of one object at once, as a load does. Ranges less than 4 KiB apart are
//! fetched together (a span: the tensors of a sub-tree lie side by side), and every GET
//! streams straight into the buffers of the ranges it covers: a load holds what it fetches
//! and nothing more.
//!
//! How many GETs a span takes depends on the store, measured as it answers. The first span
//! longer than two `download_chunk`s starts with a GET of one `download_chunk` (the probe);
//! once that has received half its bytes (at most 1 MiB), its time to the first byte and its
//! rate since say what a GET costs. A span whose transfer at that rate takes more than twice
//! that latency is split into up to `download_concurrency` GETs of at least `download_chunk`
//! bytes, all in flight at once: a GET costs little beside the transfer, so several
//! connections move the span sooner (S3, GCS and Azure serve each connection at a fraction of
//! what a host can take). Otherwise the span is one GET: each GET costs more than its bytes,
//! as on a server that reads the whole object for every ranged GET (moto, in the tests). Spans
//! too short to split start at once, several in flight, while the probe runs; no GET is ever
//! cut short, so nothing is fetched that the load does not take.
//!
//! A GET is at most 256 MiB, so that each stays well within a request's time limit; a GET
//! whose body breaks is resumed by `object_store` from where it broke, at the same version.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, FuturesUnordered};
use object_store::{GetOptions, GetRange};

use super::error::io_error;
use super::store::Object;

/// Ranges at most this far apart are fetched by one GET: less than a request costs.
const GAP: u64 = 4 << 10;
/// The most one GET fetches, so that each stays well within a request's time limit.
const MAX_PIECE: u64 = 256 << 20;
/// What the probe receives after its first bytes before its rate is taken as measured.
const PROBE: u64 = 1 << 20;

/// The version every GET must find: the object's `ETag` and version when it was opened.
pub(super) type Version = (Option<String>, Option<String>);

/// One GET: the bytes of the object it fetches, and where each part of them goes.
struct Piece<'b> {
    range: Range<u64>,
    /// Destinations by the object offset they start at, in order, not overlapping, covering
    /// the range wholly or in part (gaps between ranges are fetched and dropped).
    into: Vec<(u64, &'b mut [u8])>,
}

impl<'b> Piece<'b> {
    /// Splits off the bytes from `at` on (`range.start < at < range.end`) as a piece of their
    /// own, with the destinations, or the parts of them, that lie there.
    fn split_off(&mut self, at: u64) -> Piece<'b> {
        let keep = self.into.partition_point(|(start, _)| *start < at);
        let mut moved: Vec<(u64, &'b mut [u8])> = self.into.drain(keep..).collect();
        if let Some((start, into)) = self.into.last_mut() {
            let len = into.len() as u64;
            if *start + len > at {
                let (head, tail) = std::mem::take(into).split_at_mut((at - *start) as usize);
                *into = head;
                moved.insert(0, (at, tail));
            }
        }
        let tail = Piece {
            range: at..self.range.end,
            into: moved,
        };
        self.range.end = at;
        tail
    }

    fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// This piece as `n` GETs of equal length (the last may be shorter), in order.
    fn split_into(mut self, n: u64) -> Vec<Piece<'b>> {
        let size = self.len().div_ceil(n.max(1)).max(1);
        let mut tails = Vec::new();
        let mut cut = self.range.start + size * (self.len().div_ceil(size) - 1);
        while cut > self.range.start {
            tails.push(self.split_off(cut));
            cut -= size;
        }
        tails.push(self);
        tails.reverse();
        tails
    }
}

/// What one GET showed of the store: the time to its first bytes, and the rate after them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Profile {
    latency: Duration,
    /// Bytes per second; infinite when the first bytes were all of them (a store in memory).
    rate: f64,
}

impl Profile {
    /// How many GETs a span of `len` bytes takes: as many as `concurrency` allows, each at
    /// least `min_piece` bytes, when moving it on one connection takes more than twice what a
    /// GET costs before its first byte; else one (or one per 256 MiB).
    fn pieces(&self, len: u64, concurrency: usize, min_piece: u64) -> u64 {
        let fewest = len.div_ceil(MAX_PIECE).max(1);
        let alone = len as f64 / self.rate;
        if alone <= 2.0 * self.latency.as_secs_f64() {
            return fewest;
        }
        (len / min_piece.max(1)).min(concurrency as u64).max(fewest)
    }
}

/// Fetches `ranges` (within the object, each at most `usize::MAX` bytes), each into a buffer
/// of its own, at most `concurrency` GETs in flight.
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
        let concurrency = concurrency.max(1);
        let min_piece = min_piece.max(1);
        // Pieces to start, in order (`true` for the probe), and spans waiting for its profile.
        let mut ready: VecDeque<(Piece<'_>, bool)> = VecDeque::new();
        let mut held: Vec<Piece<'_>> = Vec::new();
        for mut piece in plan(&ranges, &mut buffers) {
            if concurrency > 1 && piece.len() > 2 * min_piece {
                if ready.iter().any(|(_, probe)| *probe) {
                    held.push(piece);
                } else {
                    held.push(piece.split_off(piece.range.start + min_piece));
                    ready.push_front((piece, true));
                }
            } else {
                let n = piece.len().div_ceil(MAX_PIECE);
                ready.extend(piece.split_into(n).into_iter().map(|p| (p, false)));
            }
        }
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < concurrency
                && let Some((piece, probe)) = ready.pop_front()
            {
                running.push(work(&object, &version, Work::Start(piece, probe)));
            }
            let Some(step) = running.next().await else {
                break;
            };
            let profile = match step? {
                Step::Done(profile) => profile,
                Step::Measured(get, profile) => {
                    running.push(work(&object, &version, Work::Resume(get)));
                    Some(profile)
                }
            };
            if let Some(profile) = profile {
                for piece in held.drain(..) {
                    let n = profile.pieces(piece.len(), concurrency, min_piece);
                    ready.extend(piece.split_into(n).into_iter().map(|p| (p, false)));
                }
            }
        }
    }
    Ok(buffers)
}

/// One piece per span of `ranges`, each with the buffers of its ranges.
fn plan<'b>(ranges: &[Range<u64>], buffers: &'b mut [Vec<u8>]) -> Vec<Piece<'b>> {
    let mut order: Vec<usize> = (0..ranges.len())
        .filter(|&i| ranges[i].start < ranges[i].end)
        .collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut slots: Vec<Option<&'b mut [u8]>> =
        buffers.iter_mut().map(|b| Some(b.as_mut_slice())).collect();
    let mut pieces: Vec<Piece<'b>> = Vec::new();
    for i in order {
        let range = &ranges[i];
        let Some(into) = slots[i].take() else {
            continue;
        };
        // A range overlapping the span before starts a span of its own, so that no two
        // ranges of a span share bytes.
        match pieces.last_mut() {
            Some(piece)
                if range.start >= piece.range.end && range.start - piece.range.end <= GAP =>
            {
                piece.range.end = range.end;
                piece.into.push((range.start, into));
            }
            _ => pieces.push(Piece {
                range: range.clone(),
                into: vec![(range.start, into)],
            }),
        }
    }
    pieces
}

/// What a future of [`work`] is to do.
enum Work<'b> {
    /// Start the GET of a piece (the probe when `true`).
    Start(Piece<'b>, bool),
    /// Go on with a GET under way.
    Resume(Get<'b>),
}

/// Where a future of [`work`] stopped.
enum Step<'b> {
    /// Its GET is done; the store's profile if it was the probe.
    Done(Option<Profile>),
    /// It was the probe, and has received enough to say what the store is like.
    Measured(Get<'b>, Profile),
}

/// A GET under way.
struct Get<'b> {
    piece: Piece<'b>,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    /// The next offset of the object the body brings.
    at: u64,
    /// The first destination not yet full.
    next: usize,
    probe: Option<Probe>,
}

/// The probe's measurements so far.
struct Probe {
    sent: Instant,
    /// When the first bytes came.
    first: Option<Instant>,
    /// Bytes received after the first ones.
    after: u64,
    /// After how many the profile is taken.
    enough: u64,
}

impl Probe {
    fn new(sent: Instant, len: u64) -> Probe {
        Probe {
            sent,
            first: None,
            after: 0,
            enough: PROBE.min(len / 2).max(1),
        }
    }

    /// Counts a chunk of `len` bytes; the profile once enough came.
    fn saw(&mut self, len: usize) -> Option<Profile> {
        match self.first {
            None => self.first = Some(Instant::now()),
            Some(_) => self.after += len as u64,
        }
        (self.after >= self.enough).then(|| self.profile())
    }

    fn profile(&self) -> Profile {
        let first = self.first.unwrap_or(self.sent);
        let rate = if self.after == 0 {
            f64::INFINITY
        } else {
            self.after as f64 / first.elapsed().as_secs_f64()
        };
        Profile {
            latency: first.duration_since(self.sent),
            rate,
        }
    }
}

fn reading(range: &Range<u64>) -> String {
    format!("reading bytes {}..{}", range.start, range.end)
}

/// Starts or goes on with a GET, its body copied into place as it arrives, until it is done
/// or, for the probe, has measured the store.
async fn work<'b>(object: &Object, version: &Version, work: Work<'b>) -> io::Result<Step<'b>> {
    let mut get = match work {
        Work::Start(piece, probe) => {
            let sent = Instant::now();
            let options = GetOptions {
                range: Some(GetRange::Bounded(piece.range.clone())),
                if_match: version.0.clone(),
                version: version.1.clone(),
                ..GetOptions::default()
            };
            let result = object
                .store
                .get_opts(&object.path, options)
                .await
                .map_err(|e| io_error(e, &reading(&piece.range), &object.secrets))?;
            Get {
                at: piece.range.start,
                next: 0,
                probe: probe.then(|| Probe::new(sent, piece.len())),
                body: result.into_stream(),
                piece,
            }
        }
        Work::Resume(get) => get,
    };
    while let Some(chunk) = get.body.next().await {
        let chunk = chunk.map_err(|e| io_error(e, &reading(&get.piece.range), &object.secrets))?;
        get.fill(&chunk)?;
        if let Some(profile) = get.probe.as_mut().and_then(|p| p.saw(chunk.len())) {
            get.probe = None;
            return Ok(Step::Measured(get, profile));
        }
    }
    let range = &get.piece.range;
    if get.at != range.end {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: the store sent {} bytes for {}",
                reading(range),
                get.at - range.start,
                range.end - range.start
            ),
        ));
    }
    Ok(Step::Done(get.probe.map(|p| p.profile())))
}

impl Get<'_> {
    /// Copies the next bytes of the body into the destinations they belong to.
    fn fill(&mut self, chunk: &[u8]) -> io::Result<()> {
        let (at, range) = (self.at, &self.piece.range);
        let end = at + chunk.len() as u64;
        if end > range.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: the store sent more than the {} bytes asked for",
                    reading(range),
                    range.end - range.start
                ),
            ));
        }
        while let Some((start, into)) = self.piece.into.get_mut(self.next) {
            let into_end = *start + into.len() as u64;
            if into_end <= at {
                self.next += 1;
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
            self.next += 1;
        }
        self.at = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each piece's range and the offsets and lengths of its destinations.
    type Shown = Vec<(Range<u64>, Vec<(u64, usize)>)>;

    fn show(pieces: &[Piece<'_>]) -> Shown {
        pieces
            .iter()
            .map(|p| {
                let into = p.into.iter().map(|(at, b)| (*at, b.len())).collect();
                (p.range.clone(), into)
            })
            .collect()
    }

    fn buffers(ranges: &[Range<u64>]) -> Vec<Vec<u8>> {
        ranges
            .iter()
            .map(|r| vec![0; (r.end - r.start) as usize])
            .collect()
    }

    #[test]
    fn near_ranges_share_a_get() {
        // Three tensors side by side (64-byte gaps) and one far away: two spans.
        let ranges = [0..1000, 1064..2000, 2064..3000, 1 << 20..(1 << 20) + 10];
        let mut b = buffers(&ranges);
        assert_eq!(
            show(&plan(&ranges, &mut b)),
            [
                (0..3000, vec![(0, 1000), (1064, 936), (2064, 936)]),
                (1 << 20..(1 << 20) + 10, vec![(1 << 20, 10)]),
            ]
        );
        // A range overlapping the one before starts a span of its own; empty ranges fetch
        // nothing.
        let ranges = [0..100, 50..150, 7..7];
        let mut b = buffers(&ranges);
        assert_eq!(
            show(&plan(&ranges, &mut b)),
            [(0..100, vec![(0, 100)]), (50..150, vec![(50, 100)])]
        );
    }

    #[test]
    fn pieces_split_between_and_inside_destinations() {
        let ranges = [0..1000, 1064..2000, 2064..3000];
        let mut b = buffers(&ranges);
        let piece = plan(&ranges, &mut b).remove(0);
        assert_eq!(
            show(&piece.split_into(4)),
            [
                (0..750, vec![(0, 750)]),
                (750..1500, vec![(750, 250), (1064, 436)]),
                (1500..2250, vec![(1500, 500), (2064, 186)]),
                (2250..3000, vec![(2250, 750)]),
            ]
        );
        // A cut in a gap between ranges, and lengths that do not divide evenly.
        let mut b = buffers(&ranges);
        let mut piece = plan(&ranges, &mut b).remove(0);
        let tail = piece.split_off(1032);
        assert_eq!(show(&[piece]), [(0..1032, vec![(0, 1000)])]);
        assert_eq!(
            show(&tail.split_into(3)),
            [
                (1032..1688, vec![(1064, 624)]),
                (1688..2344, vec![(1688, 312), (2064, 280)]),
                (2344..3000, vec![(2344, 656)]),
            ]
        );
        let mut b = buffers(&ranges[..1]);
        let piece = plan(&ranges[..1], &mut b).remove(0);
        assert_eq!(show(&piece.split_into(1)), [(0..1000, vec![(0, 1000)])]);
    }

    #[test]
    fn a_span_is_split_where_gets_cost_little_beside_their_bytes() {
        const MIB: u64 = 1 << 20;
        let pieces = |latency_ms: u64, rate: f64, len: u64| {
            let profile = Profile {
                latency: Duration::from_millis(latency_ms),
                rate,
            };
            profile.pieces(len, 8, 8 * MIB)
        };
        // S3 across a network: 30 ms to the first byte, 80 MB/s a connection.
        assert_eq!(pieces(30, 80e6, 115 * MIB), 8);
        assert_eq!(pieces(30, 80e6, 20 * MIB), 2); // at least 8 MiB each
        assert_eq!(pieces(30, 80e6, 2 * MIB), 1);
        // moto: every GET reads the whole object first (75 ms), then sends at 1.6 GB/s.
        assert_eq!(pieces(75, 1.6e9, 115 * MIB), 1);
        // A store in memory, and the 256 MiB a GET may take at most.
        assert_eq!(pieces(0, f64::INFINITY, 115 * MIB), 1);
        assert_eq!(pieces(0, f64::INFINITY, 600 * MIB), 3);
        assert_eq!(pieces(30, 80e6, 4000 * MIB), 16);
    }

    #[test]
    fn a_probe_measures_after_its_first_bytes() {
        let sent = Instant::now();
        let mut probe = Probe::new(sent, 8 << 20);
        assert_eq!(probe.enough, PROBE);
        assert!(probe.saw(64 << 10).is_none()); // the first bytes: the latency
        assert!(probe.saw(512 << 10).is_none());
        let profile = probe.saw(512 << 10).expect("1 MiB after the first bytes");
        assert!(profile.rate > 0.0);
        assert!(profile.latency <= sent.elapsed());
        // All at once, as a store in memory answers: nothing to measure a rate by.
        let mut probe = Probe::new(Instant::now(), 100);
        assert!(probe.saw(100).is_none());
        assert_eq!(probe.profile().rate, f64::INFINITY);
    }
}
