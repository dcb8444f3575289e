//! PyTorch's five 8-bit float types, converted to and from `f32` exactly as PyTorch 2.15
//! converts them (`torch/headeronly/util/Float8_*.h`), checked against every code and 3578
//! rounding cases PyTorch itself produced (`tests/fixtures/fp8_conversions.json`).
//!
//! - [`F8E4M3`] (`torch.float8_e4m3fn`): round to nearest even; **saturating**: a finite value
//!   beyond 448 and ±inf give ±448; NaN is `0x7f`/`0xff`; no infinity.
//! - [`F8E5M2`] (`torch.float8_e5m2`): round to nearest even; overflow gives ±inf.
//! - [`F8E4M3Fnuz`], [`F8E5M2Fnuz`]: round to nearest even; one zero; any overflow, ±inf and
//!   NaN give `0x80`, the only NaN.
//! - [`F8E8M0`] (`torch.float8_e8m0fnu`): a power of two, `2^(code - 127)`; the sign is dropped,
//!   the exponent rounds on the mantissa (1.5 and above round up), NaN and ±inf give `0xff`, and
//!   code 0 is 2^-127, not zero.
//!
//! `f64` values convert through `f32`, as PyTorch converts them (so they round twice).
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::dtype::{F8E4M3, F8E5M2, F8E8M0};
//!
//! assert_eq!(F8E4M3::from_f32(0.1).to_f32(), 0.1015625);
//! assert_eq!(F8E4M3::from_f32(500.0).to_f32(), 448.0); // saturates, as PyTorch 2.15 does
//! assert_eq!(F8E5M2::from_f32(61440.0).to_f32(), f32::INFINITY);
//! assert_eq!(F8E8M0::from_f32(-3.0).to_f32(), 4.0);
//! ```

use core::fmt;

/// `2^e` as an `f64`, for exponents within the range of these formats.
fn pow2(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

/// `floor(log2(x))` of a positive, finite, normal `f64`.
fn exponent(x: f64) -> i32 {
    ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// `x` (finite, at least 0) rounded to the nearest value with `man` mantissa bits whose
/// exponent is at least `min_exp` (the smallest normal's: below it, subnormals' fixed
/// spacing), ties to even. Exact: every step is a power-of-two scaling of an `f64`.
fn round(x: f64, man: i32, min_exp: i32) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let e = exponent(x).max(min_exp);
    let quantum = pow2(e - man);
    (x / quantum).round_ties_even() * quantum
}

/// The sign-less code of `v`, a value `round` gave that the format holds: exponent field and
/// mantissa for a normal, mantissa alone for a subnormal.
fn encode(v: f64, man: i32, bias: i32) -> u8 {
    let min_exp = 1 - bias;
    if v < pow2(min_exp) {
        return (v / pow2(min_exp - man)) as u8;
    }
    let e = exponent(v);
    let mantissa = ((v / pow2(e) - 1.0) * pow2(man)) as u8;
    (((e + bias) as u8) << man) | mantissa
}

/// The value of the sign-less code `mag`.
fn decode(mag: u8, man: i32, bias: i32) -> f32 {
    let field = i32::from(mag >> man);
    let mantissa = f64::from(mag & ((1 << man) - 1));
    let value = if field == 0 {
        mantissa * pow2(1 - bias - man)
    } else {
        (1.0 + mantissa / pow2(man)) * pow2(field - bias)
    };
    value as f32
}

fn sign_of(x: f32) -> u8 {
    if x.is_sign_negative() { 0x80 } else { 0 }
}

fn with_sign(value: f32, code: u8) -> f32 {
    if code & 0x80 != 0 { -value } else { value }
}

macro_rules! float8 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(transparent)]
        pub struct $name(u8);

        impl $name {
            /// The value whose code is `bits`.
            pub const fn from_bits(bits: u8) -> Self {
                $name(bits)
            }

            /// The code.
            pub const fn to_bits(self) -> u8 {
                self.0
            }

            /// `value` converted as PyTorch converts it.
            pub fn from_f32(value: f32) -> Self {
                $name(Self::encode_f32(value))
            }

            /// `value` converted through `f32`, as PyTorch converts it.
            pub fn from_f64(value: f64) -> Self {
                Self::from_f32(value as f32)
            }

            /// The value, exactly.
            pub fn to_f32(self) -> f32 {
                Self::decode_bits(self.0)
            }

            /// The value, exactly.
            pub fn to_f64(self) -> f64 {
                f64::from(self.to_f32())
            }

            /// Whether this is the format's NaN.
            pub fn is_nan(self) -> bool {
                self.to_f32().is_nan()
            }
        }

        impl PartialEq for $name {
            /// By value: NaN is not equal to itself, and the zeros are equal.
            fn eq(&self, other: &Self) -> bool {
                self.to_f32() == other.to_f32()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.to_f32(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.to_f32(), f)
            }
        }

        impl From<$name> for f32 {
            fn from(x: $name) -> f32 {
                x.to_f32()
            }
        }

        impl From<$name> for f64 {
            fn from(x: $name) -> f64 {
                x.to_f64()
            }
        }
    };
}

float8!(
    /// `torch.float8_e4m3fn`: 4 exponent bits (bias 7), 3 mantissa bits, no infinity, one NaN
    /// pattern; at most ±448. safetensors calls it `F8_E4M3`.
    F8E4M3
);
float8!(
    /// `torch.float8_e5m2`: 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like infinities
    /// and NaNs; at most ±57344.
    F8E5M2
);
float8!(
    /// `torch.float8_e4m3fnuz`: 4 exponent bits (bias 8), 3 mantissa bits, one zero, and `0x80`
    /// the only NaN; at most ±240.
    F8E4M3Fnuz
);
float8!(
    /// `torch.float8_e5m2fnuz`: 5 exponent bits (bias 16), 2 mantissa bits, one zero, and
    /// `0x80` the only NaN; at most ±57344.
    F8E5M2Fnuz
);
float8!(
    /// `torch.float8_e8m0fnu`: an unsigned power of two, `2^(code - 127)`, with `0xff` the NaN;
    /// the scales of the MX formats. safetensors calls it `F8_E8M0`.
    F8E8M0
);

impl F8E4M3 {
    fn encode_f32(x: f32) -> u8 {
        let sign = sign_of(x);
        if x.is_nan() {
            return 0x7f | sign;
        }
        let v = round(f64::from(x.abs()), 3, -6);
        // Saturating: what rounds past 448, ±inf included, is ±448.
        if v > 448.0 {
            return 0x7e | sign;
        }
        encode(v, 3, 7) | sign
    }

    fn decode_bits(code: u8) -> f32 {
        match code & 0x7f {
            0x7f => with_sign(f32::NAN, code),
            mag => with_sign(decode(mag, 3, 7), code),
        }
    }
}

impl F8E5M2 {
    fn encode_f32(x: f32) -> u8 {
        let sign = sign_of(x);
        if x.is_nan() {
            return 0x7f | sign;
        }
        let v = round(f64::from(x.abs()), 2, -14);
        if v > 57344.0 {
            return 0x7c | sign;
        }
        encode(v, 2, 15) | sign
    }

    fn decode_bits(code: u8) -> f32 {
        match code & 0x7f {
            0x7c => with_sign(f32::INFINITY, code),
            0x7d..=0x7f => with_sign(f32::NAN, code),
            mag => with_sign(decode(mag, 2, 15), code),
        }
    }
}

impl F8E4M3Fnuz {
    fn encode_f32(x: f32) -> u8 {
        if x.is_nan() {
            return 0x80;
        }
        let v = round(f64::from(x.abs()), 3, -7);
        if v > 240.0 {
            return 0x80;
        }
        // One zero: a negative value that rounds to zero is `0x00`.
        if v == 0.0 {
            0
        } else {
            encode(v, 3, 8) | sign_of(x)
        }
    }

    fn decode_bits(code: u8) -> f32 {
        match code {
            0x80 => f32::NAN,
            _ => with_sign(decode(code & 0x7f, 3, 8), code),
        }
    }
}

impl F8E5M2Fnuz {
    fn encode_f32(x: f32) -> u8 {
        if x.is_nan() {
            return 0x80;
        }
        let v = round(f64::from(x.abs()), 2, -15);
        if v > 57344.0 {
            return 0x80;
        }
        if v == 0.0 {
            0
        } else {
            encode(v, 2, 16) | sign_of(x)
        }
    }

    fn decode_bits(code: u8) -> f32 {
        match code {
            0x80 => f32::NAN,
            _ => with_sign(decode(code & 0x7f, 2, 16), code),
        }
    }
}

impl F8E8M0 {
    /// PyTorch's `fp8e8m0fnu_from_fp32_value`: the exponent of `x`, rounded up when the
    /// mantissa's guard bit is set and the round or sticky bits or the implied bit are.
    fn encode_f32(x: f32) -> u8 {
        let bits = x.to_bits();
        let exponent = (bits >> 23) & 0xff;
        if exponent == 0xff {
            return 0xff;
        }
        let guard = bits & 0x40_0000 != 0;
        let round = bits & 0x20_0000 != 0;
        let sticky = bits & 0x1f_ffff != 0;
        let lsb = exponent > 0;
        let up = guard && (round || sticky || lsb);
        (exponent + u32::from(up)).min(0xff) as u8
    }

    fn decode_bits(code: u8) -> f32 {
        match code {
            0 => f32::from_bits(0x0040_0000),
            0xff => f32::NAN,
            _ => f32::from_bits(u32::from(code) << 23),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_table_of_pytorch_2_15() {
        // (input, e4m3fn, e5m2, e4m3fnuz, e5m2fnuz, e8m0fnu) codes, from PyTorch.
        let cases: [(f32, [u8; 5]); 8] = [
            (0.1, [0x1d, 0x2e, 0x25, 0x32, 0x7c]),
            (464.0, [0x7e, 0x5f, 0x80, 0x63, 0x88]),
            (248.0, [0x78, 0x5c, 0x80, 0x60, 0x87]),
            (61440.0, [0x7e, 0x7c, 0x80, 0x80, 0x8f]),
            (f32::INFINITY, [0x7e, 0x7c, 0x80, 0x80, 0xff]),
            (-0.0, [0x80, 0x80, 0x00, 0x00, 0x00]),
            (-500.0, [0xfe, 0xe0, 0x80, 0xe4, 0x88]),
            (7.629_395e-6, [0x00, 0x01, 0x00, 0x01, 0x6e]),
        ];
        for (x, codes) in cases {
            let got = [
                F8E4M3::from_f32(x).to_bits(),
                F8E5M2::from_f32(x).to_bits(),
                F8E4M3Fnuz::from_f32(x).to_bits(),
                F8E5M2Fnuz::from_f32(x).to_bits(),
                F8E8M0::from_f32(x).to_bits(),
            ];
            assert_eq!(got, codes, "{x}");
        }
        assert_eq!(F8E8M0::from_bits(0).to_f32(), 2f32.powi(-127));
    }
}
