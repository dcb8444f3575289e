//! What the integration tests share: small models, PyTorch's reference fixtures, hand-made
//! files. Each test binary includes this module and uses a part of it.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "candle")]
pub mod candle;
pub mod dcp;
pub mod entries;
pub mod fixtures;
pub mod hostile;
pub mod models;
pub mod optim;
pub mod probe;
pub mod pytorch;
pub mod surgery;

/// The name libtest gives the test `function` of the module `module` (from `module_path!()`),
/// for a test that runs its own binary again with `--exact`.
pub fn test_name(module: &str, function: &str) -> String {
    match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{function}"),
        None => function.to_owned(),
    }
}
