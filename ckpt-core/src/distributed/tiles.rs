//! [`Tiles`]: checksums over column bands of a stored chunk's rows, beside the checksums of
//! its blocks, so that a rank that needs some columns of each row reads and checks little
//! more than those columns.
//!
//! A chunk's data is row-major: its rows (the first dimension) of `row` bytes each, one after
//! another. Blocks cover consecutive bytes, so a rank that holds a third of the columns
//! touches every block, and reads three times what it needs. Tiles cut each row into bands
//! of `band` bytes (the last band of a row shorter) and group `rows` rows: the tile of row
//! band `i` and column band `j` is the bytes of band `j` of rows `i * rows ..`, row after
//! row. Its checksum is the xxh3 of the xxh3s of its rows' pieces (little-endian, one after
//! another), so that short pieces hash at the one-shot speed; the checksums are in row-major
//! order of `(i, j)`. A load uses the tiles or the blocks of a chunk, whichever reads fewer
//! bytes for what it needs.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::dtype::DType;
use crate::shard::Chunk;

/// The most column bands of a row: with 64, a rank holding a third of the columns reads at
/// most 2 × 1/64 of a row beyond its third, under 10 %.
const MAX_BANDS: u64 = 64;

/// How many tiles are about as many bytes as a checksum block: small enough that a rank
/// holding a block of rows and columns whose edges fall inside tiles reads little beyond it
/// (a tile of 4 KiB is 16 rows of 256 bytes, by default), large enough that the checksums
/// stay under 0.2 % of the data.
const TILES_PER_BLOCK: u64 = 64;

/// The narrowest band worth a checksum of its own: below it, hashing the short pieces of each
/// row costs more than reading the whole row.
const MIN_BAND: u64 = 64;

/// The column tiles of one stored chunk (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tiles {
    /// The bytes of a row in each band but the last of the row.
    pub(super) band: u64,
    /// The rows of each tile but the last row band's.
    pub(super) rows: u64,
    /// The checksum of each tile (see the module's documentation), in row-major order of
    /// (row band, column band).
    pub(super) checksums: Vec<u64>,
}

/// A chunk's data seen as rows: how many, and the bytes of each. `None` for a chunk with
/// fewer than two dimensions or no data.
pub(super) fn rows_of(chunk: &Chunk, dtype: DType) -> Option<(u64, u64)> {
    let sizes = chunk.sizes();
    if sizes.len() < 2 || sizes.contains(&0) {
        return None;
    }
    let row = sizes[1..]
        .iter()
        .try_fold(dtype.size_in_bytes() as u64, |n, &d| n.checked_mul(d))?;
    Some((sizes[0], row))
}

impl Tiles {
    /// The tiles of `data`, the row-major data of `chunk`, for checksum blocks of
    /// `block_size` bytes (each tile about [`TILES_PER_BLOCK`] times smaller); `None` where bands would be too narrow to help (rows under
    /// 128 bytes, or a single row).
    pub(super) fn of(chunk: &Chunk, dtype: DType, data: &[u8], block_size: u64) -> Option<Self> {
        let (rows, row) = rows_of(chunk, dtype)?;
        let bands = (row / MIN_BAND).min(MAX_BANDS);
        if rows < 2 || bands < 2 || data.len() as u64 != rows.checked_mul(row)? {
            return None;
        }
        // Whole elements in every band.
        let item = dtype.size_in_bytes() as u64;
        let band = row.div_ceil(bands).div_ceil(item) * item;
        let mut tiles = Tiles {
            band,
            rows: (block_size / TILES_PER_BLOCK / band).max(1),
            checksums: Vec::new(),
        };
        let layout = Layout::new(&tiles, rows, row)?;
        tiles.checksums = (0..layout.count())
            .map(|tile| layout.hash(tile, data))
            .collect();
        Some(tiles)
    }
}

/// Where the tiles of a chunk lie in its data.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    band: u64,
    rows_per_tile: u64,
    rows: u64,
    row: u64,
    bands: u64,
}

impl Layout {
    /// The layout of `tiles` over a chunk of `rows` rows of `row` bytes; `None` if they do
    /// not fit together (a band of 0 bytes, or wider than a row; no rows per tile).
    pub(super) fn new(tiles: &Tiles, rows: u64, row: u64) -> Option<Self> {
        if tiles.band == 0 || tiles.band > row || tiles.rows == 0 {
            return None;
        }
        Some(Layout {
            band: tiles.band,
            rows_per_tile: tiles.rows,
            rows,
            row,
            bands: row.div_ceil(tiles.band),
        })
    }

    /// How many tiles there are.
    pub(super) fn count(&self) -> u64 {
        self.rows.div_ceil(self.rows_per_tile) * self.bands
    }

    /// The rows and the byte columns of a row that tile `tile` covers.
    fn extent(&self, tile: u64) -> (Range<u64>, Range<u64>) {
        let (i, j) = (tile / self.bands, tile % self.bands);
        let rows = i * self.rows_per_tile..((i + 1) * self.rows_per_tile).min(self.rows);
        let columns = j * self.band..((j + 1) * self.band).min(self.row);
        (rows, columns)
    }

    /// The byte ranges of the chunk's data that tile `tile` covers, one per row, in order.
    pub(super) fn ranges(&self, tile: u64) -> impl Iterator<Item = Range<u64>> + use<> {
        let (rows, columns) = self.extent(tile);
        let row = self.row;
        rows.map(move |r| r * row + columns.start..r * row + columns.end)
    }

    /// The row band tile `tile` lies in.
    pub(super) fn row_band(&self, tile: u64) -> u64 {
        tile / self.bands
    }

    /// The bytes of the chunk's data that the rows of row band `band` hold, every column.
    pub(super) fn row_band_span(&self, band: u64) -> Range<u64> {
        let rows = band * self.rows_per_tile..((band + 1) * self.rows_per_tile).min(self.rows);
        rows.start * self.row..rows.end * self.row
    }

    /// The bytes of the chunk's data from tile `tile`'s first to its last.
    pub(super) fn span(&self, tile: u64) -> Range<u64> {
        let (rows, columns) = self.extent(tile);
        rows.start * self.row + columns.start..(rows.end - 1) * self.row + columns.end
    }

    /// The bytes of tile `tile`.
    pub(super) fn len(&self, tile: u64) -> u64 {
        let (rows, columns) = self.extent(tile);
        (rows.end - rows.start) * (columns.end - columns.start)
    }

    /// The checksum of tile `tile` of `data`, the chunk's data.
    pub(super) fn hash(&self, tile: u64, data: &[u8]) -> u64 {
        let rows = self
            .ranges(tile)
            .map(|r| xxh3_64(&data[r.start as usize..r.end as usize]));
        combine(rows)
    }

    /// The tiles that hold some byte of `ranges` (byte ranges of the chunk's data).
    pub(super) fn touched(&self, ranges: &[Range<u64>]) -> BTreeSet<u64> {
        let mut tiles = BTreeSet::new();
        for range in ranges.iter().filter(|r| !r.is_empty()) {
            let (first, last) = (range.start / self.row, (range.end - 1) / self.row);
            let bands = if first == last {
                range.start % self.row / self.band..=(range.end - 1) % self.row / self.band
            } else {
                0..=self.bands - 1
            };
            for i in first / self.rows_per_tile..=last / self.rows_per_tile {
                tiles.extend(bands.clone().map(|j| i * self.bands + j));
            }
        }
        tiles
    }
}

/// A tile's checksum from the xxh3s of its rows' pieces, in order.
fn combine(rows: impl Iterator<Item = u64>) -> u64 {
    let sums: Vec<u8> = rows.flat_map(u64::to_le_bytes).collect();
    xxh3_64(&sums)
}

/// The checksums of a chunk's tiles, computed from its data read in order, piece by piece,
/// with one hasher per column band: how [`verify`](super::verify) checks tiles in the same
/// pass as blocks.
pub(super) struct Streaming<'l> {
    layout: &'l Layout,
    /// For each band: the hash of the piece of the row being read, and the hashes of the
    /// pieces of the tile's rows read so far.
    bands: Vec<(Xxh3, Vec<u64>)>,
    /// The bytes of the data fed so far.
    at: u64,
}

impl<'l> Streaming<'l> {
    pub(super) fn new(layout: &'l Layout) -> Self {
        Streaming {
            layout,
            bands: (0..layout.bands)
                .map(|_| (Xxh3::new(), Vec::new()))
                .collect(),
            at: 0,
        }
    }

    /// Feeds the next bytes of the data; `done(tile, checksum)` is called for each tile
    /// whose last byte they hold.
    pub(super) fn feed(&mut self, mut bytes: &[u8], done: &mut dyn FnMut(u64, u64)) {
        let Layout {
            band,
            rows_per_tile,
            rows,
            row,
            bands,
        } = *self.layout;
        while !bytes.is_empty() && self.at < rows * row {
            let (r, column) = (self.at / row, self.at % row);
            let j = column / band;
            let piece_ends = ((j + 1) * band).min(row);
            let segment = (piece_ends - column).min(bytes.len() as u64);
            let (now, rest) = bytes.split_at(segment as usize);
            let (hasher, sums) = &mut self.bands[j as usize];
            hasher.update(now);
            bytes = rest;
            self.at += segment;
            if self.at == r * row + piece_ends {
                sums.push(hasher.digest());
                hasher.reset();
            }
            let band_ends = ((r / rows_per_tile + 1) * rows_per_tile).min(rows) * row;
            if self.at == band_ends {
                let i = r / rows_per_tile;
                for (j, (_, sums)) in self.bands.iter_mut().enumerate() {
                    done(i * bands + j as u64, combine(sums.drain(..)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn tiles_cover_every_byte_once_and_hash_their_rows_bands() {
        // 300 rows of 200 f32 (800 bytes): 12 bands of 68 bytes (the last 52), tiles of 60
        // rows (about 4 KiB): 5 row bands.
        let chunk = Chunk::whole(vec![300, 200]).unwrap();
        let bytes = data(300 * 800);
        let tiles = Tiles::of(&chunk, DType::F32, &bytes, 64 * 4096).unwrap();
        assert_eq!((tiles.band, tiles.rows), (68, 60));
        let layout = Layout::new(&tiles, 300, 800).unwrap();
        assert_eq!(layout.count(), 5 * 12);
        assert_eq!(tiles.checksums.len(), 60);
        let mut seen = vec![0u8; bytes.len()];
        for tile in 0..layout.count() {
            let mut sums = Vec::new();
            let mut len = 0;
            for r in layout.ranges(tile) {
                seen[r.start as usize..r.end as usize]
                    .iter_mut()
                    .for_each(|s| *s += 1);
                sums.extend(xxh3_64(&bytes[r.start as usize..r.end as usize]).to_le_bytes());
                len += r.end - r.start;
            }
            assert_eq!(len, layout.len(tile));
            assert_eq!(xxh3_64(&sums), tiles.checksums[tile as usize]);
        }
        assert!(seen.iter().all(|&s| s == 1));

        // The same checksums from the data read in pieces of any size.
        for piece in [1, 7, 799, 800, 4096, bytes.len()] {
            let mut streamed = vec![0u64; 60];
            let mut streaming = Streaming::new(&layout);
            for part in bytes.chunks(piece) {
                streaming.feed(part, &mut |tile, sum| streamed[tile as usize] = sum);
            }
            assert_eq!(streamed, tiles.checksums, "pieces of {piece}");
        }
    }

    #[test]
    fn a_column_touches_only_its_bands() {
        // 64 rows of 1024 bytes, bands of 256 bytes, 8 rows per tile: 8 row bands × 4.
        let tiles = Tiles {
            band: 256,
            rows: 8,
            checksums: Vec::new(),
        };
        let layout = Layout::new(&tiles, 64, 1024).unwrap();
        // Bytes 300..600 of every row: bands 1 and 2 of every row band.
        let ranges: Vec<_> = (0..64u64).map(|r| r * 1024 + 300..r * 1024 + 600).collect();
        let touched = layout.touched(&ranges);
        let expected: BTreeSet<u64> = (0..8).flat_map(|i| [i * 4 + 1, i * 4 + 2]).collect();
        assert_eq!(touched, expected);
        // Whole rows 10..12: every band of row band 1.
        assert_eq!(
            layout.touched(std::slice::from_ref(&(10 * 1024..12 * 1024))),
            (4..8).collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn narrow_rows_and_single_rows_get_no_tiles() {
        let narrow = Chunk::whole(vec![100, 16]).unwrap(); // 64-byte rows of f32
        assert!(Tiles::of(&narrow, DType::F32, &data(100 * 64), 4096).is_none());
        let one = Chunk::whole(vec![1, 4096]).unwrap();
        assert!(Tiles::of(&one, DType::F32, &data(4096 * 4), 4096).is_none());
        let flat = Chunk::whole(vec![4096]).unwrap();
        assert!(Tiles::of(&flat, DType::F32, &data(4096 * 4), 4096).is_none());
    }
}
