//! The entry points users call: [`save`] and [`load`] (`torch.save` and `torch.load`),
//! [`inspect`], [`save_async`], loading a file straight into a model ([`LoadFrom`]), the
//! loaded [`Checkpoint`], their options, and the [`Error`] they all return.
//!
//! Files are opened through the storage seam ([`storage`](crate::storage)), their format
//! detected in the [`Registry`](crate::format::Registry), read by the format, and their
//! tensors placed where `map_location` says.

mod checkpoint;
pub mod dcp;
mod error;
mod fetch;
mod load;
mod open;
mod options;
pub(crate) mod paged;
mod place;
mod save;
pub(crate) mod threads;

pub use self::checkpoint::Checkpoint;
pub use self::error::Error;
pub use self::load::{LoadFrom, inspect, inspect_with, load, load_with};
pub use self::options::{LoadOptions, SaveOptions};
pub use self::save::{SaveHandle, save, save_async, save_async_with, save_with};
