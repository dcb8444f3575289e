//! Feeds arbitrary bytes to the `.pt` reader: it must return, never panic, hang or exhaust
//! memory. Whatever it accepts must survive a write and a second read unchanged (compared as
//! written bytes, which NaN values cannot upset).
#![no_main]

use std::io::Cursor;

use ckpt_core::format::pytorch::{self, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Without CRC checks, bit flips reach the pickle and the tensors instead of stopping at the
    // checksum.
    let Ok(value) = pytorch::read_with(data, &ReadOptions::new().verify_crc(false)) else {
        return;
    };
    let mut first = Cursor::new(Vec::new());
    pytorch::write(&value, &mut first).expect("a value read from a file can be written");
    let again = pytorch::read(first.get_ref()).expect("ckpt reads what it writes");
    let mut second = Cursor::new(Vec::new());
    pytorch::write(&again, &mut second).expect("a value read from a file can be written");
    assert!(
        first.get_ref() == second.get_ref(),
        "write -> read -> write changed the file"
    );
});
