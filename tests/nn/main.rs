//! `ckpt::nn` layers and `ckpt::optim` optimizers against PyTorch's numbers.

#[path = "../common/mod.rs"]
mod common;

mod attention;
mod containers;
mod conv1d;
mod embedding;
mod groupnorm;
mod layers;
mod optim;
mod reference;
mod rng_state;
mod transformer;
