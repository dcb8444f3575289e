//! safetensors past its length prefix: the 8-byte header length is rewritten to end where the
//! mutated JSON object ends, so that mutations of the header reach the JSON parser and the
//! layout checks instead of stopping at a wrong length. Whatever it accepts round-trips.

#![no_main]

use ckpt::Checkpoint;
use ckpt::format::SafeTensors;
use ckpt_fuzz::{exercise, round_trip, unverified};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if let Some(end) = bytes.get(8..).and_then(object_end) {
        bytes[..8].copy_from_slice(&(end as u64).to_le_bytes());
    }
    if let Ok(checkpoint) = Checkpoint::from_bytes(bytes, &unverified()) {
        exercise(&checkpoint);
        round_trip(&SafeTensors, &checkpoint);
    }
});

/// The length of the JSON object `text` starts with: up to its matching `}`, skipping
/// strings and their escapes. `None` if it does not start with `{` or never closes.
fn object_end(text: &[u8]) -> Option<usize> {
    if text.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &byte) in text.iter().enumerate() {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => depth += 1,
            (false, _, b'}' | b']') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}
