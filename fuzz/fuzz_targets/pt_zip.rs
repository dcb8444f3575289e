//! Zip `.pt` files as bytes, CRC checks off so that flipped bits reach the archive walk, the
//! unpickler and the tensor rebuild. Whatever it accepts round-trips to the same bytes.

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
