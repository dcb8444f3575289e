//! Loads on several threads: checksums and copies spread over a pool, a huge tensor over many
//! chunks. Whatever the thread count, the model ends byte for byte as the serial load leaves
//! it, and a damaged file is refused with the same error before anything is written.

use std::path::{Path, PathBuf};

use ckpt::{Error, LoadFrom, LoadOptions, StateDict, StateDictOptions};
use ndarray::{Array1, Array2};

/// A model with one tensor of many loading chunks (1 MiB each) and some small ones.
#[derive(StateDict, Debug, Clone, PartialEq)]
struct Model {
    huge: Array1<f32>,
    weight: Array2<f32>,
    bias: Array1<f32>,
}

/// Elements of `huge`: 9.5 MiB, so its checksum and copy cross ten chunk boundaries.
const HUGE: usize = 2_490_368;

impl Model {
    fn new() -> Self {
        Model {
            // Distinct values, so any 16 bytes of the tensor occur once in the file.
            huge: Array1::from_shape_fn(HUGE, |i| i as f32),
            weight: Array2::from_shape_fn((300, 700), |(i, j)| ((i * 700 + j) as f32).sin()),
            bias: Array1::from_shape_fn(300, |i| -(i as f32)),
        }
    }

    fn zeros() -> Self {
        Model {
            huge: Array1::zeros(HUGE),
            weight: Array2::zeros((300, 700)),
            bias: Array1::zeros(300),
        }
    }
}

const THREADS: [usize; 4] = [1, 2, 3, 8];

/// The model saved in each format that checks its data (ckpt's xxh3, PyTorch's CRC-32) and in
/// safetensors, which checks nothing.
fn saved(dir: &Path) -> Vec<PathBuf> {
    let model = Model::new();
    ["w.ckpt", "w.pt", "w.safetensors"]
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            ckpt::save(model.state_dict(), &path).unwrap();
            path
        })
        .collect()
}

#[test]
fn every_thread_count_loads_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let saved_model = Model::new();
    for path in saved(dir.path()) {
        for verify in [true, false] {
            for threads in THREADS {
                let mut model = Model::zeros();
                let options = LoadOptions::new().threads(threads).verify_checksums(verify);
                let report = model
                    .load_from_with(&path, &options, &StateDictOptions::new())
                    .unwrap();
                assert_eq!(report.loaded_keys.len(), 3);
                assert_eq!(
                    model,
                    saved_model,
                    "{} on {threads} thread(s)",
                    path.display()
                );
            }
        }
        for threads in THREADS {
            let loaded = ckpt::load_with(&path, &LoadOptions::new().threads(threads)).unwrap();
            let huge = loaded["huge"].as_tensor().unwrap().to_le_bytes().unwrap();
            let expected: &[u8] = bytemuck::cast_slice(saved_model.huge.as_slice().unwrap());
            assert!(
                *huge == *expected,
                "{} on {threads} thread(s)",
                path.display()
            );
        }
    }
}

/// Flips one byte in the middle of `huge`'s data, found by its unique bytes.
fn damage_huge(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let probe: Vec<u8> = (HUGE / 2..HUGE / 2 + 4)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let at = bytes
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the tensor's middle is in the file");
    bytes[at + 5] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_chunk_of_a_huge_tensor_is_refused_on_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let paths = saved(dir.path());
    for path in &paths[..2] {
        damage_huge(path);
        let mut first = None;
        for threads in THREADS {
            let mut model = Model::zeros();
            let options = LoadOptions::new().threads(threads);
            let err = model
                .load_from_with(path, &options, &StateDictOptions::new())
                .unwrap_err();
            assert_eq!(model, Model::zeros(), "{err}: the model was written to");
            let message = err.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "{message}"
            );
            match (&err, path.extension().unwrap().to_str().unwrap()) {
                (Error::Corrupt { key, .. }, "ckpt") => {
                    assert_eq!(key.as_deref(), Some("huge"), "{message}");
                }
                (_, "pt") => assert!(message.contains("CRC-32"), "{message}"),
                _ => panic!("unexpected error for {}: {message}", path.display()),
            }
            let err = ckpt::load_with(path, &options).unwrap_err();
            assert_eq!(
                err.to_string(),
                message,
                "ckpt::load on {threads} thread(s)"
            );
            // The same error, whatever the number of threads.
            assert_eq!(*first.get_or_insert_with(|| message.clone()), message);
        }
        // A trusted load skips the check, and so takes the damaged bytes.
        let mut model = Model::zeros();
        let trusted = LoadOptions::new().verify_checksums(false).threads(2);
        let _ = model
            .load_from_with(path, &trusted, &StateDictOptions::new())
            .unwrap();
        assert_ne!(model, Model::new());
        assert_eq!(model.bias, Model::new().bias);
    }
}

#[test]
fn of_several_damaged_tensors_the_first_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.ckpt");
    let model = Model::new();
    ckpt::save(model.state_dict(), &path).unwrap();
    damage_huge(&path);
    // And the last bytes of `bias`, whose record follows in the file.
    let mut bytes = std::fs::read(&path).unwrap();
    let probe: Vec<u8> = (297..300)
        .flat_map(|i| (-(i as f32)).to_le_bytes())
        .collect();
    let at = bytes.windows(probe.len()).position(|w| w == probe).unwrap();
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let header = ckpt::inspect(&path).unwrap();
    let first = &header.tensors[0].key;
    for threads in THREADS {
        let err = ckpt::load_with(&path, &LoadOptions::new().threads(threads)).unwrap_err();
        let Error::Corrupt { key, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(key.as_ref(), Some(first), "{threads} thread(s): {err}");
    }
}
