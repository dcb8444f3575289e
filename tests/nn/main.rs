//! `ckpt::nn` layers against PyTorch's numbers.

#[path = "../common/mod.rs"]
mod common;

mod attention;
mod containers;
mod conv1d;
mod embedding;
mod groupnorm;
mod layers;
mod reference;
mod rng_state;
mod transformer;
