//! PyTorch Distributed Checkpoint: directories made by real PyTorch (one process, `DTensor`,
//! a 2-D mesh, FSDP2) read into one process, and checkpoints ckpt writes that PyTorch reads
//! (`tests/python/check_dcp_load.py`).

#[path = "../common/mod.rs"]
mod common;

mod chunks;
mod dedup;
mod read;
mod write;
