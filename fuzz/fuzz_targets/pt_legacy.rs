//! Legacy (pre-1.6, non-zip) `.pt` files as bytes: the magic, the protocol and system-info
//! pickles, the object pickle, the storage key list and the storages with their counts. It
//! has no checksums, so a byte mutator reaches all of it.

#![no_main]

use ckpt::Checkpoint;
use ckpt::format::PyTorch;
use ckpt_fuzz::{exercise, round_trip, unverified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(checkpoint) = Checkpoint::from_bytes(data.to_vec(), &unverified()) {
        exercise(&checkpoint);
        round_trip(&PyTorch, &checkpoint);
    }
});
