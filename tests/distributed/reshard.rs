//! Saves from several ranks (threads of this process, each its own `Job`) and loads into
//! other numbers of ranks and other shardings.

use std::path::Path;

use ckpt::distributed::{self, Error, Job, Status};
use ckpt::shard::{Chunk, Sharded};
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor};

use super::{holds, parts, whole, zeros};

#[derive(StateDict)]
pub(crate) struct Net {
    pub(crate) w: Sharded,
    pub(crate) b: Tensor,
}

/// Saves `states[r]` as rank r of a job of `states.len()` ranks, each on its own thread.
pub(crate) fn save_job(dir: &Path, states: &[Net]) -> Vec<Result<(), Error>> {
    save_job_within(dir, states, 60)
}

/// [`save_job`], the ranks waiting for one another at most `seconds`.
pub(crate) fn save_job_within(dir: &Path, states: &[Net], seconds: u64) -> Vec<Result<(), Error>> {
    let n = states.len();
    std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(rank, net)| {
                s.spawn(move || {
                    let job = Job::new(rank, n).timeout(std::time::Duration::from_secs(seconds));
                    distributed::save(&net.state_dict(), dir, &job, &SaveOptions::new())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn net(seed: u64, shape: &[u64], chunks: Vec<Chunk>) -> Net {
    Net {
        w: parts(seed, shape, chunks),
        b: whole(seed + 1, &[shape[1]]),
    }
}

fn fresh(shape: &[u64], chunks: Vec<Chunk>) -> Net {
    Net {
        w: zeros(shape, chunks),
        b: Tensor::zeros(DType::F32, &[shape[1] as usize]).unwrap(),
    }
}

#[test]
fn four_ranks_by_rows_load_into_three_reading_little_more_than_they_need() {
    let shape = [8192u64, 1024]; // 32 MiB of f32
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("step-1");
    let saved: Vec<Net> = Chunk::split(&shape, 0, 4)
        .unwrap()
        .into_iter()
        .map(|c| net(7, &shape, vec![c]))
        .collect();
    for result in save_job(&dir, &saved) {
        result.unwrap();
    }
    assert_eq!(
        distributed::status(&dir).unwrap(),
        Status::Complete { world_size: 4 }
    );
    for (rank, chunk) in Chunk::split(&shape, 0, 3).unwrap().into_iter().enumerate() {
        let mut model = fresh(&shape, vec![chunk]);
        let loaded = distributed::load(&mut model, &dir, &StateDictOptions::new()).unwrap();
        assert!(holds(&model.w, 7), "rank {rank}");
        assert_eq!(model.b, whole(8, &[1024]));
        assert_eq!(loaded.report.loaded_keys, ["w", "b"]);
        let ratio = loaded.bytes_read as f64 / loaded.bytes_needed as f64;
        eprintln!(
            "rank {rank} of 3: read {} bytes for {} needed ({ratio:.3}×)",
            loaded.bytes_read, loaded.bytes_needed
        );
        assert!(ratio <= 1.1, "rank {rank}: {ratio}");
    }
}

#[test]
fn four_ranks_by_rows_load_into_three_by_columns_reading_little_more_than_they_need() {
    let shape = [1024u64, 4096]; // 16 MiB of f32, rows of 16 KiB
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("step-1");
    let saved: Vec<Net> = Chunk::split(&shape, 0, 4)
        .unwrap()
        .into_iter()
        .map(|c| net(5, &shape, vec![c]))
        .collect();
    save_job(&dir, &saved).into_iter().for_each(|r| r.unwrap());
    for (rank, chunk) in Chunk::split(&shape, 1, 3).unwrap().into_iter().enumerate() {
        let mut model = fresh(&shape, vec![chunk]);
        let loaded = distributed::load(&mut model, &dir, &StateDictOptions::new()).unwrap();
        assert!(holds(&model.w, 5), "rank {rank}");
        assert_eq!(model.b, whole(6, &[4096]));
        let ratio = loaded.bytes_read as f64 / loaded.bytes_needed as f64;
        eprintln!(
            "rank {rank} of 3 by columns: read {} bytes for {} needed ({ratio:.3}×)",
            loaded.bytes_read, loaded.bytes_needed
        );
        assert!(ratio <= 1.1, "rank {rank}: {ratio}");
    }
}

/// 2-D blocks, the uneven ones too, read little more than they need: a tile's row band is
/// a few rows, so a block's edges inside tiles cost little.
#[test]
fn four_ranks_by_rows_load_into_grids_reading_little_more_than_they_need() {
    let shape = [1024u64, 4096];
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("step-1");
    let saved: Vec<Net> = Chunk::split(&shape, 0, 4)
        .unwrap()
        .into_iter()
        .map(|c| net(5, &shape, vec![c]))
        .collect();
    save_job(&dir, &saved).into_iter().for_each(|r| r.unwrap());
    for grid in [[2u64, 2], [3, 3], [2, 3]] {
        for chunk in Chunk::grid(&shape, &grid).unwrap() {
            let mut model = fresh(&shape, vec![chunk.clone()]);
            let loaded = distributed::load(&mut model, &dir, &StateDictOptions::new()).unwrap();
            assert!(holds(&model.w, 5), "{chunk}");
            let ratio = loaded.bytes_read as f64 / loaded.bytes_needed as f64;
            assert!(
                ratio <= 1.1,
                "{grid:?} {chunk}: read {ratio:.3} x what it needs"
            );
        }
    }
}

#[test]
fn blocks_columns_uneven_splits_whole_and_back() {
    let shape = [37u64, 23];
    let dir = tempfile::tempdir().unwrap();
    // Saved as a 2 × 2 grid of uneven blocks by 4 ranks.
    let blocks = dir.path().join("blocks");
    let saved: Vec<Net> = Chunk::grid(&shape, &[2, 2])
        .unwrap()
        .into_iter()
        .map(|c| net(3, &shape, vec![c]))
        .collect();
    save_job(&blocks, &saved)
        .into_iter()
        .for_each(|r| r.unwrap());
    // Into 3 ranks by columns, and into 2 ranks holding two row pieces each.
    for chunk in Chunk::split(&shape, 1, 3).unwrap() {
        let mut model = fresh(&shape, vec![chunk]);
        distributed::load(&mut model, &blocks, &StateDictOptions::new()).unwrap();
        assert!(holds(&model.w, 3));
    }
    let rows = Chunk::split(&shape, 0, 4).unwrap();
    let mut model = fresh(&shape, vec![rows[0].clone(), rows[3].clone()]);
    distributed::load(&mut model, &blocks, &StateDictOptions::new()).unwrap();
    assert!(holds(&model.w, 3));

    // Sharded → whole, in one process.
    #[derive(StateDict)]
    struct Whole {
        w: Tensor,
        b: Tensor,
    }
    let mut one = Whole {
        w: Tensor::zeros(DType::F32, &[37, 23]).unwrap(),
        b: Tensor::zeros(DType::F32, &[23]).unwrap(),
    };
    distributed::load(&mut one, &blocks, &StateDictOptions::new()).unwrap();
    assert_eq!(one.w, whole(3, &shape));
    assert_eq!(one.b, whole(4, &[23]));

    // Whole → sharded: one process saves plain tensors; two ranks load halves.
    let single = dir.path().join("single");
    let job = Job::new(0, 1);
    distributed::save(&one.state_dict(), &single, &job, &SaveOptions::new()).unwrap();
    for chunk in Chunk::split(&shape, 0, 2).unwrap() {
        let mut model = fresh(&shape, vec![chunk]);
        distributed::load(&mut model, &single, &StateDictOptions::new()).unwrap();
        assert!(holds(&model.w, 3));
    }
}

/// Parts lent in place from the mapped files, parts read into memory, and parts cast to
/// the model's dtype give the same values, for every sharding into every other.
#[test]
fn mapped_read_and_cast_loads_agree() {
    let shape = [61u64, 29];
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    let saved: Vec<Net> = Chunk::grid(&shape, &[3, 2])
        .unwrap()
        .into_iter()
        .map(|c| net(9, &shape, vec![c]))
        .collect();
    save_job(&blocks, &saved)
        .into_iter()
        .for_each(|r| r.unwrap());
    let read = ckpt::LoadOptions::new().mmap(false);
    let layouts = [
        Chunk::split(&shape, 0, 4).unwrap(),
        Chunk::split(&shape, 1, 3).unwrap(),
        Chunk::grid(&shape, &[2, 2]).unwrap(),
    ];
    for chunks in layouts {
        for chunk in chunks {
            for files in [ckpt::LoadOptions::new(), read.clone()] {
                let mut model = fresh(&shape, vec![chunk.clone()]);
                distributed::load_with(&mut model, &blocks, &StateDictOptions::new(), &files)
                    .unwrap();
                assert!(holds(&model.w, 9), "{chunk:?}");
                assert_eq!(model.b, whole(10, &[29]));
            }
            // Into f64 parts: cast, value for value.
            let mut wide = Net {
                w: Sharded::zeros(DType::F64, shape.to_vec(), vec![chunk.clone()]).unwrap(),
                b: Tensor::zeros(DType::F64, &[29]).unwrap(),
            };
            let loaded = distributed::load(&mut wide, &blocks, &StateDictOptions::new()).unwrap();
            assert_eq!(loaded.report.cast_keys, ["w", "b"]);
            let expected = parts(9, &shape, vec![chunk.clone()]);
            let (got, want) = (&wide.w.parts()[0].1, &expected.parts()[0].1);
            assert_eq!(
                got.view().to_f64_vec().unwrap(),
                want.view().to_f64_vec().unwrap()
            );
        }
    }
}

#[test]
fn the_report_is_load_state_dicts_over_global_keys() {
    let shape = [8u64, 4];
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("ckpt");
    let saved: Vec<Net> = Chunk::split(&shape, 0, 2)
        .unwrap()
        .into_iter()
        .map(|c| net(1, &shape, vec![c]))
        .collect();
    save_job(&dir, &saved).into_iter().for_each(|r| r.unwrap());

    #[derive(StateDict)]
    struct Other {
        w: Sharded,
        extra: Tensor,
    }
    let make = || Other {
        w: zeros(&shape, Chunk::split(&shape, 1, 2).unwrap()),
        extra: Tensor::zeros(DType::F32, &[2]).unwrap(),
    };
    // The same load from the whole state, in memory.
    let mut expected_model = make();
    let mut whole_state = indexmap::IndexMap::new();
    whole_state.insert("w".to_owned(), whole(1, &shape));
    whole_state.insert("b".to_owned(), whole(2, &[4]));
    let lenient = StateDictOptions::new().strict(false);
    let expected = expected_model
        .load_state_dict_with(&whole_state, &lenient)
        .unwrap();

    let mut model = make();
    let loaded = distributed::load(&mut model, &dir, &lenient).unwrap();
    assert_eq!(loaded.report, expected);
    assert_eq!(loaded.report.missing_keys, ["extra"]);
    assert_eq!(loaded.report.unexpected_keys, ["b"]);
    assert!(holds(&model.w, 1));

    let mut model = make();
    let strict = distributed::load(&mut model, &dir, &StateDictOptions::new()).unwrap_err();
    let expected = make()
        .load_state_dict(&whole_state, true)
        .unwrap_err()
        .to_string();
    assert_eq!(strict.to_string(), expected);
    assert_eq!(model.w, make().w, "a failed load changes nothing");
}

#[test]
fn the_commit_checks_tiling_and_dtypes_across_ranks() {
    let shape = [8u64, 4];
    let dir = tempfile::tempdir().unwrap();
    // Rank 1 holds rows 2..4 where it should hold 4..8: a gap.
    let gap = dir.path().join("gap");
    let rows = Chunk::split(&shape, 0, 4).unwrap();
    let states = [
        net(1, &shape, vec![rows[0].clone()]),
        net(1, &shape, vec![rows[1].clone()]),
    ];
    let results = save_job_within(&gap, &states, 1);
    let err = results.into_iter().next().unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Tiling { key, .. } if key == "w"),
        "{err}"
    );
    assert!(matches!(
        distributed::status(&gap).unwrap(),
        Status::Incomplete { .. }
    ));

    // Rank 1 has w in f64.
    let dtypes = dir.path().join("dtypes");
    let halves = Chunk::split(&shape, 0, 2).unwrap();
    let f64_part = Sharded::from_whole(
        &whole(1, &shape).to_dtype(DType::F64).unwrap().view(),
        vec![halves[1].clone()],
    )
    .unwrap();
    let states = [
        net(1, &shape, vec![halves[0].clone()]),
        Net {
            w: f64_part,
            b: whole(2, &[4]),
        },
    ];
    let mut results = save_job_within(&dtypes, &states, 1);
    let err = results.remove(0).unwrap_err();
    assert!(matches!(results[0], Err(Error::NotCommitted { .. })));
    assert!(
        err.to_string()
            .contains("\"w\" is F32 of shape [8, 4] on rank 0 but F64 of shape [8, 4] on rank 1"),
        "{err}"
    );
}

/// A whole tensor whose key is what the data file calls a sharded tensor's part (`w#0`)
/// keeps its own data, and the part its own.
#[test]
fn a_whole_tensor_named_like_a_part_keeps_its_data() {
    #[derive(StateDict)]
    struct Named {
        w: Sharded,
        #[state(rename = "w#0")]
        other: Tensor,
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    let shape = [4u64, 2];
    let rows = Chunk::split(&shape, 0, 2).unwrap();
    std::thread::scope(|s| {
        for (rank, chunk) in rows.iter().enumerate() {
            let dir = &dir;
            s.spawn(move || {
                let named = Named {
                    w: parts(5, &shape, vec![chunk.clone()]),
                    other: whole(6, &[3]),
                };
                let job = Job::new(rank, 2).timeout(std::time::Duration::from_secs(60));
                distributed::save(&named.state_dict(), dir, &job, &SaveOptions::new()).unwrap();
            });
        }
    });
    let mut fresh = Named {
        w: zeros(&shape, vec![Chunk::whole(shape.to_vec()).unwrap()]),
        other: Tensor::zeros(DType::F32, &[3]).unwrap(),
    };
    distributed::load(&mut fresh, &dir, &StateDictOptions::new()).unwrap();
    assert!(holds(&fresh.w, 5));
    assert_eq!(fresh.other, whole(6, &[3]));
}
