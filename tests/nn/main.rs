//! `ckpt::nn` layers and `ckpt::optim` optimizers against PyTorch's numbers.

#[path = "../common/mod.rs"]
mod common;

mod layers;
mod optim;
mod rng_state;
