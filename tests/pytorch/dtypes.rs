//! Every dtype `torch.save` writes with one number per element: the 8-bit floats' conversions
//! bit for bit as PyTorch 2.15's (`fp8_conversions.json`), files PyTorch and safetensors wrote
//! with each dtype, and each dtype through every format ckpt writes.

use std::io::Cursor;

use crate::common::pytorch::*;
use ckpt::dtype::{F8E4M3, F8E4M3Fnuz, F8E5M2, F8E5M2Fnuz, F8E8M0};
use ckpt::format::{Format, Native, PyTorch, SafeTensors};
use ckpt::{Checkpoint, DType, LoadOptions, Tensor, Value, dict};
use serde_json::Value as Json;

fn conversions() -> Json {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fp8_conversions.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

type Codec = (&'static str, fn(f32) -> u8, fn(u8) -> f32);

const CODECS: [Codec; 5] = [
    (
        "float8_e4m3fn",
        |x| F8E4M3::from_f32(x).to_bits(),
        |b| F8E4M3::from_bits(b).to_f32(),
    ),
    (
        "float8_e5m2",
        |x| F8E5M2::from_f32(x).to_bits(),
        |b| F8E5M2::from_bits(b).to_f32(),
    ),
    (
        "float8_e4m3fnuz",
        |x| F8E4M3Fnuz::from_f32(x).to_bits(),
        |b| F8E4M3Fnuz::from_bits(b).to_f32(),
    ),
    (
        "float8_e5m2fnuz",
        |x| F8E5M2Fnuz::from_f32(x).to_bits(),
        |b| F8E5M2Fnuz::from_bits(b).to_f32(),
    ),
    (
        "float8_e8m0fnu",
        |x| F8E8M0::from_f32(x).to_bits(),
        |b| F8E8M0::from_bits(b).to_f32(),
    ),
];

/// All 256 codes of each type decode to PyTorch's `f32` (NaNs by NaN-ness: PyTorch's NaN
/// payloads are not canonical), and all 3578 inputs PyTorch converted (every code's value,
/// every midpoint and one ulp either side, the specials, 800 random) encode to its byte.
#[test]
fn fp8_conversions_match_pytorch_bit_for_bit() {
    let json = conversions();
    assert_eq!(json["torch"], "2.15.0+cu132");
    let inputs: Vec<f32> = json["inputs_f32_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
        .collect();
    assert_eq!(inputs.len(), 3578);
    for (name, encode, decode) in CODECS {
        let table = json["decode_f32_bits"][name].as_array().unwrap();
        for (code, bits) in table.iter().enumerate() {
            let expected = f32::from_bits(bits.as_u64().unwrap() as u32);
            let actual = decode(code as u8);
            if expected.is_nan() {
                assert!(actual.is_nan(), "{name} {code:#04x}: {actual}");
            } else {
                assert_eq!(actual.to_bits(), expected.to_bits(), "{name} {code:#04x}");
            }
        }
        let hex = json["encode"][name].as_str().unwrap();
        for (i, &x) in inputs.iter().enumerate() {
            let expected = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            assert_eq!(encode(x), expected, "{name}: {x:e} ({:#010x})", x.to_bits());
        }
    }
}

/// The saturation of 2.15, pinned: e4m3fn turns overflow and infinities into ±448, never NaN
/// (older PyTorch releases gave NaN); the fnuz types turn them into their NaN.
#[test]
fn e4m3fn_saturates_as_pytorch_2_15_does() {
    for x in [448.0f32, 464.0, 480.0, 500.0, 1e30, f32::INFINITY] {
        assert_eq!(F8E4M3::from_f32(x).to_f32(), 448.0, "{x}");
        assert_eq!(F8E4M3::from_f32(-x).to_f32(), -448.0, "{x}");
    }
    assert!(F8E4M3::from_f32(f32::NAN).is_nan());
    assert!(F8E4M3Fnuz::from_f32(f32::INFINITY).is_nan());
    // f64 converts through f32, so it can round twice as in PyTorch.
    let tensor = Tensor::from(ndarray::array![0.1f64, 1e300, -0.0]);
    let f8 = tensor.to_dtype(DType::F8E4M3).unwrap();
    assert_eq!(f8.to_le_bytes().unwrap().as_ref(), [0x1d, 0x7e, 0x80]);
    assert_eq!(
        f8.to_dtype(DType::F32).unwrap(),
        Tensor::from(ndarray::array![0.1015625f32, 448.0, -0.0])
    );
}

#[test]
fn every_dtype_pytorch_saves_reads_as_pytorch_reads_it() {
    let value = read(&fixture("dtypes_all.pt")).unwrap();
    assert_matches_manifest(&value, "dtypes_all.pt.manifest.json");
    let dtypes: Vec<DType> = value.tensors().iter().map(|(_, t)| t.dtype()).collect();
    for dtype in DType::ALL {
        assert!(dtypes.contains(&dtype), "{dtype} is in dtypes_all.pt");
    }
    // An e4m3fn view of an untyped storage, by element offset and strides.
    let view = value["f8_e4m3fn_view"].as_tensor().unwrap();
    assert_eq!(view.shape(), &[3, 2]);
    for name in ["tensor_v3", "complex_tensors", "conj_neg_bits"] {
        let value = read(&fixture(&format!("globals/{name}.pt"))).unwrap();
        assert_matches_manifest(&value, &format!("globals/{name}.pt.manifest.json"));
    }
    // The conj bit: the stored (1+2j, 3-4j) are (1-2j, 3+4j).
    let conj = read(&fixture("globals/conj_neg_bits.pt")).unwrap();
    let c64 = conj["conj"].as_tensor().unwrap().to_tensor().unwrap();
    let values: Vec<ckpt::dtype::Complex<f32>> = c64
        .array::<ckpt::dtype::Complex<f32>>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(
        values,
        [
            ckpt::dtype::Complex::new(1.0, -2.0),
            ckpt::dtype::Complex::new(3.0, 4.0)
        ]
    );
}

#[test]
fn dtypes_ckpt_does_not_have_are_refused_by_name() {
    let err = read(&fixture("dtypes_exotic.pt")).unwrap_err();
    assert!(
        err.to_string()
            .contains("a tensor of torch.float4_e2m1fn_x2, a dtype ckpt does not have"),
        "{err}"
    );
    let options = LoadOptions::new().format(SafeTensors);
    let err = ckpt::load_with(fixture_path("dtypes_all.safetensors"), &options).unwrap_err();
    assert!(err.to_string().contains("F4"), "{err}");
}

/// A safetensors file of every dtype safetensors and ckpt share, as the real safetensors wrote
/// it (`tests/python/make_dtype_fixtures.py`).
#[test]
fn every_safetensors_dtype_reads_as_safetensors_wrote_it() {
    let options = LoadOptions::new().format(SafeTensors);
    let value = ckpt::load_with(fixture_path("dtypes_st.safetensors"), &options)
        .unwrap()
        .into_value();
    let manifest: Json =
        serde_json::from_slice(&fixture("dtypes_st.safetensors.manifest.json")).unwrap();
    let mut expected: Vec<Json> = manifest["entries"].as_array().unwrap().clone();
    let mut actual = manifest_of(&value);
    let by_key = |e: &Json| e["key"].as_str().unwrap().to_owned();
    expected.sort_by_key(by_key);
    actual.sort_by_key(by_key);
    assert_eq!(actual, expected);
    // And it is what PyTorch's own file holds.
    let pt = read(&fixture("dtypes_all.pt")).unwrap();
    for (key, tensor) in value.tensors() {
        // Bytes, not values: NaN is not equal to itself.
        let theirs = pt[key.as_str()].as_tensor().unwrap();
        assert_eq!(theirs.dtype(), tensor.dtype(), "{key}");
        assert_eq!(
            theirs.to_le_bytes().unwrap(),
            tensor.to_le_bytes().unwrap(),
            "{key}"
        );
    }
}

fn round_trip(format: &dyn Format, value: &Value<'_>) -> Value<'static> {
    let mut out = Cursor::new(Vec::new());
    format.write(value, &mut out).unwrap();
    Checkpoint::from_bytes(out.into_inner(), &LoadOptions::new())
        .unwrap()
        .into_value()
}

/// One tensor of each of the new dtypes, with telling values.
pub(crate) fn new_dtypes() -> Value<'static> {
    use ckpt::dtype::Complex;
    use half::f16;
    let f8 = |f: fn(f32) -> u8, xs: &[f32]| xs.iter().map(|&x| f(x)).collect::<Vec<u8>>();
    let bytes = |dtype, shape: &[usize], data: &[u8]| {
        Value::from(Tensor::from_le_bytes(dtype, shape, data).unwrap())
    };
    dict! {
        "u16" => Tensor::from_vec(vec![0u16, 1, 65535], &[3]).unwrap(),
        "u32" => Tensor::from_vec(vec![0u32, 7, u32::MAX], &[3]).unwrap(),
        "u64" => Tensor::from_vec(vec![0u64, u64::MAX, 1 << 63], &[3]).unwrap(),
        "c32" => Tensor::from_vec(vec![Complex::new(f16::ONE, f16::NEG_ONE)], &[1]).unwrap(),
        "c64" => Tensor::from_vec(vec![Complex::new(1.5f32, -2.0), Complex::new(0.0, 1.0)], &[2]).unwrap(),
        "c128" => Tensor::from_vec(vec![Complex::new(1e300f64, -1e-300)], &[1, 1]).unwrap(),
        "f8_e4m3fn" => bytes(DType::F8E4M3, &[2, 2], &f8(CODECS[0].1, &[0.1, 448.0, -0.0, f32::NAN])),
        "f8_e5m2" => bytes(DType::F8E5M2, &[3], &f8(CODECS[1].1, &[0.1, f32::INFINITY, -57344.0])),
        "f8_e4m3fnuz" => bytes(DType::F8E4M3Fnuz, &[2], &f8(CODECS[2].1, &[240.0, f32::NAN])),
        "f8_e5m2fnuz" => bytes(DType::F8E5M2Fnuz, &[2], &f8(CODECS[3].1, &[-1.5, 1e-5])),
        "f8_e8m0fnu" => bytes(DType::F8E8M0, &[3], &f8(CODECS[4].1, &[1.0, 3.0, 2f32.powi(-127)])),
        "u16_scalar" => Tensor::scalar(513u16),
    }
}

#[test]
fn every_new_dtype_survives_every_format_bit_for_bit() {
    let value = new_dtypes();
    let bits = |v: &Value<'_>| -> Vec<(String, DType, Vec<usize>, Vec<u8>)> {
        v.tensors()
            .into_iter()
            .map(|(k, t)| {
                let bytes = t.to_le_bytes().unwrap().into_owned();
                (k, t.dtype(), t.shape().to_vec(), bytes)
            })
            .collect()
    };
    assert_eq!(bits(&round_trip(&PyTorch, &value)), bits(&value), ".pt");
    assert_eq!(bits(&round_trip(&Native, &value)), bits(&value), ".ckpt");
    // safetensors has no complex32 and complex128, and says so by key.
    let mut out = Cursor::new(Vec::new());
    let err = SafeTensors.write(&value, &mut out).unwrap_err();
    assert!(
        err.to_string()
            .contains("safetensors has no dtype for C32 (torch.complex32)"),
        "{err}"
    );
    let mut shared = value.clone();
    if let Value::Map(map) = &mut shared {
        map.shift_remove(&ckpt::value::Key::from("c32"));
        map.shift_remove(&ckpt::value::Key::from("c128"));
    }
    let sorted = |v: &Value<'_>| {
        let mut b = bits(v);
        b.sort();
        b
    };
    assert_eq!(
        sorted(&round_trip(&SafeTensors, &shared)),
        sorted(&shared),
        ".safetensors"
    );
}

/// Casting keeps PyTorch's rules: complex to complex keeps both parts, real to complex has no
/// imaginary part, complex to real keeps the real part; unsigned integers check their range.
#[test]
fn casts_between_the_new_dtypes_follow_pytorch() {
    use ckpt::dtype::Complex;
    let c = Tensor::from(ndarray::array![Complex::new(1.5f32, -2.0)]);
    let c128 = c.to_dtype(DType::C128).unwrap();
    assert_eq!(
        c128.array::<Complex<f64>>().unwrap()[[0]],
        Complex::new(1.5, -2.0)
    );
    let real = c.to_dtype(DType::F32).unwrap();
    assert_eq!(real, Tensor::from(ndarray::array![1.5f32]));
    let from_real = Tensor::from(ndarray::array![2.0f32])
        .to_dtype(DType::C64)
        .unwrap();
    assert_eq!(
        from_real.array::<Complex<f32>>().unwrap()[[0]],
        Complex::new(2.0, 0.0)
    );
    let err = Tensor::from(ndarray::array![-1i64])
        .to_dtype(DType::U64)
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert_eq!(
        Tensor::from(ndarray::array![u64::MAX])
            .to_dtype(DType::F8E5M2)
            .unwrap()
            .to_le_bytes()
            .unwrap()
            .as_ref(),
        [0x7c]
    );
}
