//! A DCP checkpoint in an object store loads resharded from the bytes each rank needs: the
//! rows or columns of a stored chunk it asks for, in ranged GETs, not the chunk's whole item.
//! Counted as the bytes the S3 server sent, through a proxy.

use std::collections::HashMap;

use ckpt::shard::Chunk;
use ckpt::{LoadOptions, SaveOptions, Tensor, Value, dict};

use crate::backend::{Backend, s3_options};
use crate::proxy::Proxy;

/// What a load may fetch besides what it needs: `.metadata`, the first 4 KiB of each data
/// file, each item's zip records (its pickle and directory), and the HTTP headers of the
/// responses.
const SLACK: u64 = 96 << 10;

/// The value at `(row, col)` of the `rows × cols` test tensor `seed`: distinct everywhere.
fn value(seed: u64, cols: u64, row: u64, col: u64) -> f32 {
    (seed * 10_000_000 + row * cols + col) as f32
}

/// Rows `rows` of the `_ × cols` tensor `seed`.
fn rows_of(seed: u64, cols: u64, rows: std::ops::Range<u64>) -> Tensor {
    let data: Vec<f32> = rows
        .clone()
        .flat_map(|r| (0..cols).map(move |c| value(seed, cols, r, c)))
        .collect();
    Tensor::from_vec(data, &[(rows.end - rows.start) as usize, cols as usize]).unwrap()
}

/// Saves, from two ranks, `w` (2048 × 1024 f32, 8 MiB) and `v` (256 × 4096 f32, 4 MiB), each
/// split by rows, a replicated `b` and `step`, into `dir`.
fn save_two_ranks(dir: &str, options: &SaveOptions) {
    let mut states = Vec::new();
    for rank in 0..2u64 {
        let w_rows = Chunk::split(&[2048, 1024], 0, 2)
            .unwrap()
            .remove(rank as usize);
        let v_rows = Chunk::split(&[256, 4096], 0, 2)
            .unwrap()
            .remove(rank as usize);
        let w = rows_of(1, 1024, 1024 * rank..1024 * (rank + 1));
        let v = rows_of(2, 4096, 128 * rank..128 * (rank + 1));
        let b = Tensor::from_vec((0..1024).map(|i| i as f32).collect(), &[1024]).unwrap();
        let state: Value<'static> = dict! { "w" => w, "v" => v, "b" => b, "step" => 7 };
        let chunks = HashMap::from([("w".to_owned(), w_rows), ("v".to_owned(), v_rows)]);
        let plan = ckpt::dcp::plan_rank(&state, dir, rank as usize, &chunks).unwrap();
        states.push((state, plan));
    }
    let plans: Vec<_> = states.iter().map(|(_, p)| p.clone()).collect();
    let parts: Vec<_> = ckpt::dcp::dedup(&plans)
        .iter()
        .zip(&states)
        .map(|(plan, (state, _))| ckpt::dcp::write_rank(state, dir, plan, options).unwrap())
        .collect();
    ckpt::dcp::commit(dir, &parts, options).unwrap();
}

#[test]
fn a_resharded_dcp_load_fetches_the_bytes_it_needs() {
    let Some(backend) = Backend::s3("dcp_ranged") else {
        return;
    };
    let proxy = Proxy::start(backend.endpoint.as_deref().unwrap());
    let options = LoadOptions::new()
        .object_store(s3_options(&proxy.endpoint, "testing", "testing").download_chunk(1 << 20));
    let dir = backend.url("step-7/");
    save_two_ranks(&dir, &backend.save());

    // (key, the part one rank of another job asks for, its rows and columns, the bytes of the
    // stored items it overlaps)
    let cases = [
        // 512 rows inside rank 0's chunk (a 4 MiB item).
        ("w", [256, 0], [512, 1024], 4 << 20),
        // 512 rows across both chunks.
        ("w", [768, 0], [512, 1024], 8 << 20),
        // Half the columns of every row: 8 KiB runs 8 KiB apart, in both chunks.
        ("v", [0, 0], [256, 2048], 4 << 20),
    ];
    for (key, offsets, sizes, items) in cases {
        let global = if key == "w" {
            [2048, 1024]
        } else {
            [256, 4096]
        };
        let chunk = Chunk::new(global.to_vec(), offsets.to_vec(), sizes.to_vec()).unwrap();
        let wanted = HashMap::from([(key.to_owned(), chunk)]);
        proxy.reset();
        let local = ckpt::dcp::load_shards(&dir, &wanted, &options).unwrap();
        let fetched = proxy.sent();
        let needed = sizes[0] * sizes[1] * 4;
        println!(
            "{key} rows {}..{} columns {}..{}: needed {needed}, items {items}, fetched {fetched}",
            offsets[0],
            offsets[0] + sizes[0],
            offsets[1],
            offsets[1] + sizes[1]
        );
        let (seed, cols) = if key == "w" { (1, 1024) } else { (2, 4096) };
        let expected: Vec<f64> = (offsets[0]..offsets[0] + sizes[0])
            .flat_map(|r| {
                (offsets[1]..offsets[1] + sizes[1]).map(move |c| f64::from(value(seed, cols, r, c)))
            })
            .collect();
        let got = &local[key];
        assert_eq!(got.shape(), [sizes[0] as usize, sizes[1] as usize]);
        assert!(
            got.view().to_f64_vec().unwrap() == expected,
            "{key}: values differ"
        );
        assert!(
            fetched <= needed + needed / 10 + SLACK,
            "{key}: fetched {fetched} for {needed} needed"
        );
        assert!(fetched < items, "{key}: {fetched} >= the items' {items}");
    }

    // The whole checkpoint, consolidated, is what was saved.
    let loaded = ckpt::load_with(&dir, &options).unwrap();
    assert_eq!(
        loaded["w"].as_tensor().unwrap(),
        rows_of(1, 1024, 0..2048).view()
    );
    assert_eq!(
        loaded["v"].as_tensor().unwrap(),
        rows_of(2, 4096, 0..256).view()
    );
    assert_eq!(loaded["step"].as_i64(), Some(7));
}
