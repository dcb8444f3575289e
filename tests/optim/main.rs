//! `ckpt::optim` against `torch.optim`: optimizers, parameter groups and LR schedulers step as
//! PyTorch's do, and their state dicts go both ways between ckpt and PyTorch.

#[path = "../common/mod.rs"]
mod common;

mod groups;
mod optimizers;
mod resume;
mod schedulers;
mod untrusted;
