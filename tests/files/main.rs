//! Files: save and load, atomic commits, damaged files, safetensors and whole models.

#[path = "../common/mod.rs"]
mod common;

mod atomic;
mod damaged;
mod file;
mod parallel;
mod safetensors;
mod toy_format;
mod whole_model;
