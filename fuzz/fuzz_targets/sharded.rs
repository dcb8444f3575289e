//! A sharded safetensors checkpoint's index: the input is `model.safetensors.index.json`,
//! loaded beside a valid shard (the control tensors) and a second shard that is not
//! safetensors at all, and then loaded strictly into the fixed model.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use ckpt_fuzz::hostile::{INDEX_NAME, control_tensors, sharded};
use ckpt_fuzz::{exercise, strict_load};
use libfuzzer_sys::fuzz_target;

/// The directory of the shards, made once per process; the index is rewritten per input.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("ckpt-fuzz-sharded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (_, shards) = sharded(&control_tensors());
    for (name, bytes) in shards {
        std::fs::write(dir.join(name), bytes).expect("the shard is written");
    }
    std::fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        b"not safetensors",
    )
    .expect("the second shard is written");
    dir
});

fuzz_target!(|index: &[u8]| {
    let path = DIR.join(INDEX_NAME);
    std::fs::write(&path, index).expect("the index is written");
    if let Ok(checkpoint) = ckpt::load(&path) {
        exercise(&checkpoint);
        strict_load(&checkpoint);
    }
});
