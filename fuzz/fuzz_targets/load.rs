//! Any bytes, in whatever format they claim to be: an error or a checkpoint whose every tensor
//! can be used, never a panic, a hang or an allocation out of proportion to the input. With
//! and without checksum checks, so that mutations also reach the decoders behind them.

#![no_main]

use ckpt::{Checkpoint, LoadOptions};
use ckpt_fuzz::{exercise, unverified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for options in [LoadOptions::new(), unverified()] {
        if let Ok(checkpoint) = Checkpoint::from_bytes(data.to_vec(), &options) {
            exercise(&checkpoint);
        }
    }
});
