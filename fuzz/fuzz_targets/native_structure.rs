//! The ckpt-format loader past its checksums: the input's prefix checksum is recomputed
//! before loading, and tensor checksums are skipped, so mutations reach the header decoder
//! and every record check.

#![no_main]

use ckpt::{Checkpoint, LoadOptions};
use ckpt::state::TensorSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if bytes.len() >= 64 {
        // The checksum covers bytes 8..32 of the prefix and the header, which ends the file.
        let offset = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
        if let Some(header) = usize::try_from(offset).ok().and_then(|o| bytes.get(o..)) {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            hasher.update(&data[8..32]);
            hasher.update(header);
            bytes[32..40].copy_from_slice(&hasher.digest().to_le_bytes());
        }
    }
    let options = LoadOptions::new().verify_checksums(false);
    if let Ok(checkpoint) = Checkpoint::from_bytes(bytes, &options) {
        for key in checkpoint.tensor_keys() {
            if let Some(t) = checkpoint.get_tensor(&key) {
                let _ = t.to_le_bytes().len();
            }
        }
    }
});
