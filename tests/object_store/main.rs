//! Checkpoints in object storage. The same suite runs against a real S3 server (moto, which
//! the tests start on 127.0.0.1 and stop), the `memory://` store and `file://` URLs; what
//! only a server shows (bytes on the wire, a server that stops, credentials, a killed upload,
//! memory while uploading 1 GiB) is tested against S3.

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod cli;
mod dcp_ranged;
mod failures;
mod http;
mod memory;
mod moto;
mod proxy;
mod ranged;
mod raw;
mod suite;
