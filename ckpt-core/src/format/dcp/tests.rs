//! A resharded read takes from each stored item the bytes of the part it needs and no more,
//! counted through a source that is read by ranges only (as an object store's is).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{METADATA, commit, plan, read, write_rank};
use crate::shard::Chunk;
use crate::storage::atomic::Commit;
use crate::storage::{self, Location, ObjectStoreOptions, Source};
use crate::tensor::Tensor;
use crate::value::Value;

/// A source that lends nothing in place and counts the bytes read from it.
struct Counted {
    inner: Arc<dyn Source>,
    read: Arc<AtomicU64>,
}

impl Source for Counted {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_at(offset, buf)
    }
}

/// `w`, 512 × 256 f32, saved by two ranks of 256 rows each (256 KiB items).
fn saved(dir: &std::path::Path) -> Vec<f32> {
    let all: Vec<f32> = (0..512 * 256).map(|i| i as f32).collect();
    let remote = ObjectStoreOptions::default();
    let options = Commit {
        fsync: false,
        remote: &remote,
        size_hint: 0,
    };
    let location = Location::from(dir);
    let mut parts = Vec::new();
    for (rank, rows) in Chunk::split(&[512, 256], 0, 2)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        let half = all[rank * 256 * 256..(rank + 1) * 256 * 256].to_vec();
        let state = Value::from_iter([(
            "w",
            Value::from(Tensor::from_vec(half, &[256, 256]).unwrap()),
        )]);
        let chunks = HashMap::from([("w".to_owned(), rows)]);
        let plan = plan(&location, rank, &state, &chunks).unwrap();
        parts.push(write_rank(&location, &plan, &state, &options).unwrap());
    }
    commit(&location, &parts, &options).unwrap();
    all
}

/// The bytes a read of `target` of `w` takes from the data files, and what it gives.
fn read_counted(dir: &std::path::Path, target: &Chunk) -> (u64, Vec<f64>) {
    let read = Arc::new(AtomicU64::new(0));
    let open = |location: &Location| -> io::Result<Arc<dyn Source>> {
        let inner = storage::open(location, false, &ObjectStoreOptions::default())?;
        Ok(Arc::new(Counted {
            inner,
            read: Arc::clone(&read),
        }))
    };
    let metadata = Location::from(dir.join(METADATA).as_path());
    let source = storage::open(&metadata, false, &ObjectStoreOptions::default()).unwrap();
    let opened = read::open(source, &open).unwrap();
    let before = read.load(Ordering::Relaxed);
    let tensor = opened.shard("w", target).unwrap();
    (
        read.load(Ordering::Relaxed) - before,
        tensor.view().to_f64_vec().unwrap(),
    )
}

/// Each item's zip records and pickle, read to find where its tensor lies.
const RECORDS: u64 = 4 << 10;

#[test]
fn a_shard_reads_only_the_bytes_of_its_part() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let all = saved(&dir);
    let all = &all;
    let expect = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| -> Vec<f64> {
        rows.flat_map(|r| cols.clone().map(move |c| f64::from(all[r * 256 + c])))
            .collect()
    };

    // Rows 16..48, inside rank 0's item: 32 KiB of its 256 KiB.
    let rows = Chunk::new(vec![512, 256], vec![16, 0], vec![32, 256]).unwrap();
    let (read, values) = read_counted(&dir, &rows);
    assert_eq!(values, expect(16..48, 0..256));
    assert!((32 << 10..=(32 << 10) + RECORDS).contains(&read), "{read}");

    // Columns 0..64 of every row: 128 KiB in runs of 256 bytes, half of each item.
    let cols = Chunk::new(vec![512, 256], vec![0, 0], vec![512, 64]).unwrap();
    let (read, values) = read_counted(&dir, &cols);
    assert_eq!(values, expect(0..512, 0..64));
    assert!(
        (128 << 10..=(128 << 10) + 2 * RECORDS).contains(&read),
        "{read}"
    );

    // The whole tensor reads both items' data, once.
    let whole = Chunk::whole(vec![512, 256]).unwrap();
    let (read, values) = read_counted(&dir, &whole);
    assert_eq!(values, expect(0..512, 0..256));
    assert!(
        (512 << 10..=(512 << 10) + 2 * RECORDS).contains(&read),
        "{read}"
    );
}
