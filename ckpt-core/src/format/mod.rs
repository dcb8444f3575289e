//! Reading and writing other frameworks' checkpoint files.

pub mod pytorch;
