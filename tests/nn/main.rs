//! `ckpt::nn` layers against PyTorch's numbers.

#[path = "../common/mod.rs"]
mod common;

mod layers;
