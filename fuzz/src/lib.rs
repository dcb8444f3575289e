//! What the fuzz targets share: how a checkpoint is used once loaded, the round-trip property
//! every reader must keep, the fixed model of the strict-load target, and the hostile-file
//! generator's containers (zip, shards), which repack a mutated part into a valid file.

use std::io::Cursor;

use ckpt::format::Format;
use ckpt::{Checkpoint, DType, LoadOptions, StateDict, Tensor};
use ndarray::Array1;

/// The generator of `tests/hostile`: its zip writer and sharded layout build valid containers
/// around a fuzzed part.
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/common/hostile.rs"]
pub mod hostile;

/// Options that let mutations past the checksums, into the decoders behind them.
pub fn unverified() -> LoadOptions {
    LoadOptions::new().verify_checksums(false)
}

/// Uses every tensor as a user would: its bytes, and its values when it is small.
pub fn exercise(checkpoint: &Checkpoint) {
    for (_, tensor) in checkpoint.tensors() {
        let _ = tensor.to_le_bytes().map(|bytes| bytes.len());
        if tensor.numel() <= 64 {
            let _ = tensor.to_f64_vec();
        }
    }
}

/// Whatever a reader accepts, `format` writes, and what it wrote reads back and writes again
/// to the same bytes (bytes, not values, so that NaN cannot upset the comparison).
pub fn round_trip(format: &dyn Format, checkpoint: &Checkpoint) {
    let Some(first) = write(format, checkpoint) else {
        return;
    };
    let again = Checkpoint::from_bytes(first.clone(), &LoadOptions::new())
        .unwrap_or_else(|e| panic!("ckpt does not read the {} it wrote: {e}", format.name()));
    let second = write(format, &again).expect("what was read once is written again");
    assert!(
        first == second,
        "{}: write -> read -> write changed the file",
        format.name()
    );
}

/// `checkpoint` written in `format`, or `None` where the format cannot hold what it holds (a
/// typed error: safetensors holds flat tensors only).
fn write(format: &dyn Format, checkpoint: &Checkpoint) -> Option<Vec<u8>> {
    let mut sink = Cursor::new(Vec::new());
    format.write(checkpoint.value(), &mut sink).ok()?;
    Some(sink.into_inner())
}

/// The fixed model of the strict-load target: the keys and shapes of the seeds' control file.
#[derive(StateDict)]
pub struct Tiny {
    pub weight: Tensor,
    pub bias: Array1<f32>,
}

impl Tiny {
    pub fn new() -> Self {
        Tiny {
            weight: Tensor::zeros(DType::F32, &[2, 2]).expect("a small shape"),
            bias: Array1::zeros(2),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = self
            .weight
            .to_le_bytes()
            .expect("a CPU tensor")
            .into_owned();
        bytes.extend(self.bias.iter().flat_map(|x| x.to_le_bytes()));
        bytes
    }
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny::new()
    }
}

/// A strict `load_state_dict` into [`Tiny`]: a failed load leaves the model as it was; a
/// successful one leaves it holding the checkpoint's values.
pub fn strict_load(checkpoint: &Checkpoint) {
    let mut model = Tiny::new();
    let before = model.bytes();
    match model.load_state_dict(checkpoint, true) {
        Err(_) => assert!(model.bytes() == before, "a failed load changed the model"),
        Ok(_) => {
            let loaded = |key: &str| {
                let tensor = checkpoint
                    .value()
                    .tensors()
                    .into_iter()
                    .find(|(k, _)| k == key);
                tensor
                    .and_then(|(_, t)| t.to_f64_vec().ok())
                    .expect("a loaded key is there")
            };
            let weight = model.weight.view().to_f64_vec().expect("a CPU tensor");
            let bias: Vec<f64> = model.bias.iter().map(|&x| f64::from(x)).collect();
            assert_eq!(weight.len(), 4);
            for (got, want) in weight
                .iter()
                .zip(loaded("weight"))
                .chain(bias.iter().zip(loaded("bias")))
            {
                // Cast to f32 as `copy_` does; NaN stays NaN.
                let want = want as f32 as f64;
                assert!(
                    *got == want || (got.is_nan() && want.is_nan()),
                    "loaded {got}, file {want}"
                );
            }
        }
    }
}
