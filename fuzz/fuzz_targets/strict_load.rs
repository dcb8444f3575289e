//! A strict `load_state_dict` into a fixed model, from any bytes in any format: whatever the
//! file, a failed load leaves the model untouched, and a successful one leaves it holding the
//! file's values.

#![no_main]

use ckpt::Checkpoint;
use ckpt_fuzz::{strict_load, unverified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(checkpoint) = Checkpoint::from_bytes(data.to_vec(), &unverified()) {
        strict_load(&checkpoint);
    }
});
