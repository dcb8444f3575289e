//! Any bytes given to the loader, whatever format they claim to be (ckpt's own, safetensors):
//! an error or a checkpoint, never a panic, a hang or an allocation beyond the input's size.

#![no_main]

use ckpt::{Checkpoint, LoadOptions};
use ckpt::state::TensorSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for verify in [true, false] {
        let options = LoadOptions::new().verify_checksums(verify);
        if let Ok(checkpoint) = Checkpoint::from_bytes(data.to_vec(), &options) {
            // Touch every tensor's data, as a user would.
            for key in checkpoint.tensor_keys() {
                if let Some(t) = checkpoint.get_tensor(&key) {
                    let _ = t.to_le_bytes().len();
                }
            }
        }
    }
});
