//! The `.pt` unpickler and tensor rebuild, past the zip around them: the input is a
//! `data.pkl`, packed into a valid archive (right sizes, offsets and CRCs) beside storages
//! `0` to `23` of 512 bytes each (as many and as large as the seeds need). Seeds are the
//! pickles of real PyTorch files.

#![no_main]

use std::sync::LazyLock;

use ckpt::format::PyTorch;
use ckpt::{Checkpoint, LoadOptions};
use ckpt_fuzz::hostile::pt_zip_pickle;
use ckpt_fuzz::{exercise, round_trip, strict_load};
use libfuzzer_sys::fuzz_target;

/// Storages a pickle may refer to: counting bytes, so that views of them differ.
static STORAGES: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(|| {
    (0..24u8)
        .map(|key| {
            (
                key.to_string(),
                (0..512u32).map(|i| (i as u8) ^ key).collect(),
            )
        })
        .collect()
});

fuzz_target!(|pickle: &[u8]| {
    let file = pt_zip_pickle(pickle, &STORAGES);
    if let Ok(checkpoint) = Checkpoint::from_bytes(file, &LoadOptions::new()) {
        exercise(&checkpoint);
        strict_load(&checkpoint);
        round_trip(&PyTorch, &checkpoint);
    }
});
