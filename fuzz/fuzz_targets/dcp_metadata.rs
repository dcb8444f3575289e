//! A PyTorch Distributed Checkpoint's `.metadata`: the input is the pickle, loaded beside the
//! control checkpoint's data file (`weight` in two row chunks and `bias`, as the hostile
//! generator builds them), consolidated, and then loaded strictly into the fixed model. Seeds
//! are the `.metadata` of the control checkpoint, of real PyTorch's fixtures and of the
//! checkpoints ckpt writes.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use ckpt_fuzz::hostile::{DCP_DATA, DCP_METADATA, dcp_control_files};
use ckpt_fuzz::{exercise, strict_load};
use libfuzzer_sys::fuzz_target;

/// The checkpoint's directory, made once per process; `.metadata` is rewritten per input.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("ckpt-fuzz-dcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (_, data) = dcp_control_files();
    std::fs::write(dir.join(DCP_DATA), data).expect("the data file is written");
    dir
});

fuzz_target!(|metadata: &[u8]| {
    std::fs::write(DIR.join(DCP_METADATA), metadata).expect(".metadata is written");
    if let Ok(checkpoint) = ckpt::load(&*DIR) {
        exercise(&checkpoint);
        strict_load(&checkpoint);
    }
});
