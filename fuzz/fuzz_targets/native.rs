//! ckpt's own format past its checksums: the prefix checksum is recomputed over the mutated
//! input and tensor checksums are skipped, so mutations reach the CBOR header decoder and
//! every record check. Whatever it accepts round-trips to the same bytes.

#![no_main]

use ckpt::Checkpoint;
use ckpt::format::Native;
use ckpt_fuzz::{exercise, round_trip, unverified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    reseal(&mut bytes);
    if let Ok(checkpoint) = Checkpoint::from_bytes(bytes, &unverified()) {
        exercise(&checkpoint);
        round_trip(&Native, &checkpoint);
    }
});

/// Recomputes the prefix checksum: XXH3-64 of prefix bytes 8..32 and of the header, which
/// runs from the offset at bytes 16..24 to the end of the file.
fn reseal(bytes: &mut [u8]) {
    let Some(offset) = bytes
        .get(16..24)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    else {
        return;
    };
    let Some(header) = usize::try_from(offset)
        .ok()
        .filter(|&o| o >= 40)
        .and_then(|o| bytes.get(o..))
    else {
        return;
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&bytes[8..32]);
    hasher.update(header);
    let digest = hasher.digest().to_le_bytes();
    bytes[32..40].copy_from_slice(&digest);
}
