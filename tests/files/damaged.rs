//! Damaged and hostile files: each is a typed error naming the file and, where known, the
//! tensor; never a panic, a hang, or an allocation larger than the file.

use std::path::{Path, PathBuf};

use crate::common::surgery::Surgery;
use ciborium::Value as Cbor;
use ckpt::format::Corruption;
use ckpt::{Error, LoadOptions, Tensor, dict};
use ndarray::array;

/// A small checkpoint with a few tensors and plain values, and its directory.
fn sample() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.ckpt");
    ckpt::save(
        dict! {
            "epoch" => 3,
            "fc.weight" => Tensor::from(array![[1.0f32, 2.0], [3.0, 4.0]]),
            "fc.bias" => Tensor::from(array![0.5f32, -0.5]),
            "mask" => Tensor::from(array![true, false]),
        },
        &path,
    )
    .unwrap();
    (dir, path)
}

fn corruption(err: &Error) -> (&Option<String>, &Corruption) {
    match err {
        Error::Corrupt { key, problem, .. } => (key, &**problem),
        other => panic!("expected a corruption error, got {other}"),
    }
}

#[test]
fn every_truncation_says_truncated() {
    let (dir, path) = sample();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.ckpt");
    for len in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = ckpt::load(&cut).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: truncated or incomplete file: {len} bytes",
                cut.display()
            )),
            "cut at {len}: {err}"
        );
    }
}

#[test]
fn every_bit_flip_is_caught_or_harmless() {
    let (dir, path) = sample();
    let bytes = std::fs::read(&path).unwrap();
    let original = ckpt::load(&path).unwrap().into_value();
    let flipped = dir.path().join("flipped.ckpt");
    let header_offset = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
    let mut harmless = 0;
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 1 << (i % 8);
        std::fs::write(&flipped, &damaged).unwrap();
        match ckpt::load(&flipped) {
            Err(err) => assert!(
                err.to_string().starts_with(&flipped.display().to_string()),
                "{err}"
            ),
            Ok(loaded) => {
                // Only the zero padding between tensors is not covered by a checksum, and
                // changing it changes nothing that is read.
                assert!(i > 64 && i < header_offset, "flip at {i} went unnoticed");
                assert_eq!(
                    loaded.into_value(),
                    original,
                    "flip at {i} changed the data"
                );
                harmless += 1;
            }
        }
    }
    assert!(harmless > 0 && harmless < bytes.len() / 2);
}

#[test]
fn a_flipped_data_bit_names_the_tensor_unless_checks_are_off() {
    let (_dir, path) = sample();
    let infos = ckpt::inspect(&path).unwrap().tensors;
    assert_eq!(infos[1].key, "fc.bias");
    let mut bytes = std::fs::read(&path).unwrap();
    // fc.weight is 16 bytes at 64; fc.bias comes at the next multiple of 64.
    bytes[128] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = ckpt::load(&path).unwrap_err();
    let (key, problem) = corruption(&err);
    assert_eq!(key.as_deref(), Some("fc.bias"));
    assert!(matches!(problem, Corruption::Checksum { .. }));
    assert!(
        err.to_string().contains("\"fc.bias\": checksum mismatch"),
        "{err}"
    );

    let trusted = ckpt::load_with(&path, &LoadOptions::new().verify_checksums(false)).unwrap();
    assert_ne!(
        trusted["fc.bias"]
            .as_tensor()
            .unwrap()
            .to_f64_vec()
            .unwrap(),
        [0.5, -0.5]
    );
}

#[test]
fn an_invalid_bool_is_refused_even_without_checksums() {
    let (_dir, path) = sample();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[192] = 7; // mask's first element
    std::fs::write(&path, &bytes).unwrap();
    let err = ckpt::load_with(&path, &LoadOptions::new().verify_checksums(false)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("\"mask\": invalid BOOL value 0x07 at element 0: must be 0 or 1"),
        "{err}"
    );
}

#[test]
fn foreign_files_and_newer_versions() {
    let (dir, path) = sample();
    let other = dir.path().join("other.bin");
    std::fs::write(
        &other,
        b"GIF89a this is a picture, not a checkpoint at all, padded out to be long enough",
    )
    .unwrap();
    let err = ckpt::load(&other).unwrap_err();
    assert!(matches!(corruption(&err).1, Corruption::BadMagic { .. }));
    assert!(
        err.to_string().contains(
            "not a checkpoint in any format ckpt reads (ckpt, safetensors, dcp, pytorch)"
        ),
        "{err}"
    );
    // A zip archive is taken for a PyTorch file, and refused as a damaged one.
    std::fs::write(&other, b"PK\x03\x04 this is no real zip archive").unwrap();
    let err = ckpt::load(&other).unwrap_err();
    assert!(matches!(err, Error::PyTorch { .. }), "{err}");
    assert!(
        err.to_string().contains("truncated or incomplete file"),
        "{err}"
    );

    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = ckpt::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: written in ckpt format 2.2, newer than the 1.x this version reads; upgrade ckpt",
            path.display()
        )
    );
}

#[test]
fn a_header_length_past_the_end_is_truncation() {
    let (_dir, path) = sample();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = ckpt::load(&path).unwrap_err();
    assert!(
        matches!(corruption(&err).1, Corruption::HeaderRange { .. }),
        "{err}"
    );
    bytes[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = ckpt::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("truncated or incomplete file"),
        "{err}"
    );
}

/// Applies `edit` to the header, re-checksums it, and returns the load error.
fn edited(edit: impl FnOnce(&mut Surgery)) -> (PathBuf, Error) {
    let (dir, path) = sample();
    let mut file = Surgery::open(&path);
    edit(&mut file);
    file.write(&path);
    let err = ckpt::load(&path).unwrap_err();
    std::mem::forget(dir); // keep the file for the caller's messages
    (path, err)
}

#[test]
fn overlapping_tensor_ranges() {
    let (_, err) = edited(|f| *f.record(1, "offset") = Cbor::Integer(64.into()));
    let (key, problem) = corruption(&err);
    assert_eq!(key.as_deref(), Some("fc.bias"));
    assert_eq!(
        problem,
        &Corruption::Overlap {
            offset: 64,
            len: 8,
            other: "fc.weight".into()
        }
    );
}

#[test]
fn out_of_range_and_misaligned_tensors() {
    let (_, err) = edited(|f| *f.record(0, "offset") = Cbor::Integer((1u64 << 50).into()));
    assert!(
        matches!(corruption(&err).1, Corruption::OutOfRange { .. }),
        "{err}"
    );
    let (_, err) = edited(|f| *f.record(0, "offset") = Cbor::Integer(0.into()));
    assert!(
        matches!(corruption(&err).1, Corruption::OutOfRange { .. }),
        "{err}"
    );
    let (_, err) = edited(|f| *f.record(0, "offset") = Cbor::Integer(65.into()));
    assert_eq!(corruption(&err).1, &Corruption::Misaligned { offset: 65 });
}

#[test]
fn lying_lengths_and_overflowing_shapes() {
    let (_, err) = edited(|f| *f.record(0, "len") = Cbor::Integer(12.into()));
    assert!(
        err.to_string()
            .ends_with("\"fc.weight\": F32 tensor of shape [2, 2] needs 16 bytes, got 12"),
        "{err}"
    );
    let (_, err) = edited(|f| {
        *f.record(0, "shape") = Cbor::Array(vec![
            Cbor::Integer((1u64 << 62).into()),
            Cbor::Integer((1u64 << 62).into()),
        ]);
    });
    assert!(
        err.to_string()
            .contains("is too large: its size in bytes overflows"),
        "{err}"
    );
}

#[test]
fn unknown_dtypes_devices_and_references() {
    let (_, err) = edited(|f| *f.record(0, "dtype") = Cbor::Text("F4_E2M1".into()));
    assert_eq!(
        corruption(&err).1,
        &Corruption::Unknown {
            what: "dtype",
            name: "F4_E2M1".into()
        }
    );
    let (_, err) = edited(|f| *f.record(0, "device") = Cbor::Text("tpu:0".into()));
    assert_eq!(
        corruption(&err).1,
        &Corruption::Unknown {
            what: "device",
            name: "tpu:0".into()
        }
    );
    let (_, err) = edited(|f| {
        *f.field("root") = Cbor::Map(vec![(
            Cbor::Text("Tensor".into()),
            Cbor::Integer(99.into()),
        )]);
    });
    assert_eq!(
        corruption(&err).1,
        &Corruption::BadReference {
            index: 99,
            count: 3
        }
    );
}

#[test]
fn absurd_nesting_depth() {
    let (_, err) = edited(|f| {
        let mut node = Cbor::Text("None".into());
        for _ in 0..300 {
            node = Cbor::Map(vec![(Cbor::Text("List".into()), Cbor::Array(vec![node]))]);
        }
        *f.field("root") = node;
    });
    assert_eq!(corruption(&err).1, &Corruption::TooDeep(128));
}

#[test]
fn garbage_headers_are_invalid_not_panics() {
    let (_, err) = edited(|f| *f.field("tensors") = Cbor::Text("nope".into()));
    assert!(matches!(corruption(&err).1, Corruption::Header(_)), "{err}");
    let (_, err) = edited(|f| f.header = Cbor::Array(vec![]));
    assert!(matches!(corruption(&err).1, Corruption::Header(_)), "{err}");
}

#[test]
fn missing_files_name_the_path() {
    let err = ckpt::load(Path::new("/nonexistent/dir/model.ckpt")).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/dir/model.ckpt: "),
        "{err}"
    );
    assert!(matches!(err, Error::Io { .. }));
}
