//! PyTorch interop: `.pt` files read and written, fixtures made by real PyTorch, resuming
//! across the two, and a torchvision ResNet-18.

#[path = "../common/mod.rs"]
mod common;

mod batchnorm;
mod dtypes;
mod globals;
mod interop;
mod read;
mod resnet18;
mod resume;
mod write;
