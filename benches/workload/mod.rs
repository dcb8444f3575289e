//! Workload W: a GPT-2-medium-shaped f32 state dict (292 tensors, 1.32 GiB), what the
//! benchmarks save and load; `Gpt2::new(Some(mb))` scales it down.
#![allow(dead_code)]

use ckpt::StateDict;
use ndarray::{Array, Array1, Array2, Dimension, IntoDimension};

#[derive(StateDict)]
pub(crate) struct Embedding {
    pub(crate) weight: Array2<f32>,
}

#[derive(StateDict)]
pub(crate) struct Norm {
    pub(crate) weight: Array1<f32>,
    pub(crate) bias: Array1<f32>,
}

/// GPT-2's `Conv1D`: weight [in, out].
#[derive(StateDict)]
pub(crate) struct Conv1D {
    pub(crate) weight: Array2<f32>,
    pub(crate) bias: Array1<f32>,
}

#[derive(StateDict)]
pub(crate) struct Attention {
    pub(crate) c_attn: Conv1D,
    pub(crate) c_proj: Conv1D,
}

#[derive(StateDict)]
pub(crate) struct Mlp {
    pub(crate) c_fc: Conv1D,
    pub(crate) c_proj: Conv1D,
}

#[derive(StateDict)]
pub(crate) struct Block {
    pub(crate) ln_1: Norm,
    pub(crate) attn: Attention,
    pub(crate) ln_2: Norm,
    pub(crate) mlp: Mlp,
}

#[derive(StateDict)]
pub(crate) struct Gpt2 {
    pub(crate) wte: Embedding,
    pub(crate) wpe: Embedding,
    pub(crate) h: Vec<Block>,
    pub(crate) ln_f: Norm,
}

/// Non-zero, non-repeating values, so no layer of the system can shortcut zero pages.
fn filled<D: Dimension>(shape: impl IntoDimension<Dim = D>, seed: u32) -> Array<f32, D> {
    let shape = shape.into_dimension();
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    Array::from_iter((0..shape.size()).map(|_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }))
    .into_shape_with_order(shape)
    .expect("element count matches the shape")
}

impl Gpt2 {
    const FULL_VOCAB: usize = 50257;
    const FULL_BLOCKS: usize = 24;
    const D: usize = 1024;

    /// GPT-2 medium scaled to about `mb` megabytes (`None`: full size).
    pub(crate) fn new(mb: Option<f64>) -> Self {
        let full = Self::full_bytes() as f64 / 1e6;
        let scale = mb.map_or(1.0, |mb| (mb / full).min(1.0));
        let blocks = ((Self::FULL_BLOCKS as f64 * scale).round() as usize).max(1);
        let vocab = ((Self::FULL_VOCAB as f64 * scale).round() as usize).max(1024);
        let d = Self::D;
        let mut seed = 0;
        let mut next = || {
            seed += 1;
            seed
        };
        let mut norm = || Norm {
            weight: filled(d, next()),
            bias: filled(d, next()),
        };
        let ln_f = norm();
        let conv = |i: usize, o: usize, s: u32| Conv1D {
            weight: filled((i, o), s),
            bias: filled(o, s + 1),
        };
        let h = (0..blocks)
            .map(|b| {
                let s = 1000 + 100 * b as u32;
                Block {
                    ln_1: Norm {
                        weight: filled(d, s),
                        bias: filled(d, s + 2),
                    },
                    attn: Attention {
                        c_attn: conv(d, 3 * d, s + 4),
                        c_proj: conv(d, d, s + 6),
                    },
                    ln_2: Norm {
                        weight: filled(d, s + 8),
                        bias: filled(d, s + 10),
                    },
                    mlp: Mlp {
                        c_fc: conv(d, 4 * d, s + 12),
                        c_proj: conv(4 * d, d, s + 14),
                    },
                }
            })
            .collect();
        Gpt2 {
            wte: Embedding {
                weight: filled((vocab, d), 1),
            },
            wpe: Embedding {
                weight: filled((1024, d), 2),
            },
            h,
            ln_f,
        }
    }

    /// Every array's elements, in a fixed order (the same for any two models of one size).
    pub(crate) fn arrays(&self) -> Vec<&[f32]> {
        let mut out: Vec<&[f32]> = vec![self.wte.weight.as_slice().unwrap()];
        out.push(self.wpe.weight.as_slice().unwrap());
        for b in &self.h {
            out.extend([
                b.ln_1.weight.as_slice().unwrap(),
                b.ln_1.bias.as_slice().unwrap(),
                b.attn.c_attn.weight.as_slice().unwrap(),
                b.attn.c_attn.bias.as_slice().unwrap(),
                b.attn.c_proj.weight.as_slice().unwrap(),
                b.attn.c_proj.bias.as_slice().unwrap(),
                b.ln_2.weight.as_slice().unwrap(),
                b.ln_2.bias.as_slice().unwrap(),
                b.mlp.c_fc.weight.as_slice().unwrap(),
                b.mlp.c_fc.bias.as_slice().unwrap(),
                b.mlp.c_proj.weight.as_slice().unwrap(),
                b.mlp.c_proj.bias.as_slice().unwrap(),
            ]);
        }
        out.extend([
            self.ln_f.weight.as_slice().unwrap(),
            self.ln_f.bias.as_slice().unwrap(),
        ]);
        out
    }

    /// [`arrays`](Self::arrays), writable.
    pub(crate) fn arrays_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out: Vec<&mut [f32]> = vec![self.wte.weight.as_slice_mut().unwrap()];
        out.push(self.wpe.weight.as_slice_mut().unwrap());
        for b in &mut self.h {
            out.extend([
                b.ln_1.weight.as_slice_mut().unwrap(),
                b.ln_1.bias.as_slice_mut().unwrap(),
                b.attn.c_attn.weight.as_slice_mut().unwrap(),
                b.attn.c_attn.bias.as_slice_mut().unwrap(),
                b.attn.c_proj.weight.as_slice_mut().unwrap(),
                b.attn.c_proj.bias.as_slice_mut().unwrap(),
                b.ln_2.weight.as_slice_mut().unwrap(),
                b.ln_2.bias.as_slice_mut().unwrap(),
                b.mlp.c_fc.weight.as_slice_mut().unwrap(),
                b.mlp.c_fc.bias.as_slice_mut().unwrap(),
                b.mlp.c_proj.weight.as_slice_mut().unwrap(),
                b.mlp.c_proj.bias.as_slice_mut().unwrap(),
            ]);
        }
        out.extend([
            self.ln_f.weight.as_slice_mut().unwrap(),
            self.ln_f.bias.as_slice_mut().unwrap(),
        ]);
        out
    }

    pub(crate) fn full_bytes() -> usize {
        let d = Self::D;
        let block = 2 * d
            + (d * 3 * d + 3 * d)
            + (d * d + d)
            + 2 * d
            + (d * 4 * d + 4 * d)
            + (4 * d * d + d);
        4 * (Self::FULL_VOCAB * d + 1024 * d + Self::FULL_BLOCKS * block + 2 * d)
    }
}
