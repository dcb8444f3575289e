//! `#[derive(StateDict)]`, re-exported and documented by the [ckpt](https://docs.rs/ckpt) crate.

mod ast;
mod attr;
mod expand;
mod generics;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `ckpt::StateDict`; see the `ckpt` crate for the attributes.
#[proc_macro_derive(StateDict, attributes(state))]
pub fn derive_state_dict(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
