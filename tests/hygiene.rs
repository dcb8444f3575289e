//! The expansion uses absolute paths only and warns about nothing, whatever is in scope.

#![deny(warnings)]
#![no_implicit_prelude]
#![allow(dead_code, non_camel_case_types)]

extern crate ckpt;
extern crate ndarray;
extern crate std;

// Traps: names the expansion must not pick up.
struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct KeyPath;
struct Role;
struct bool;
struct str;
mod core {}
mod __private {}
trait StateDict {}

#[derive(ckpt::StateDict)]
struct Layer {
    weight: ndarray::Array2<f32>,
    #[state(buffer)]
    count: ckpt::Tensor,
    #[state(training)]
    training: ::core::primitive::bool,
}

#[derive(ckpt::StateDict)]
struct Net<L> {
    layers: std::vec::Vec<L>,
    #[state(rename = "head")]
    fc: std::option::Option<L>,
    #[state(buffer, persistent = false)]
    mask: ckpt::Tensor,
}

#[derive(ckpt::StateDict)]
struct Empty {}

#[derive(ckpt::StateDict)]
struct Unit;

#[derive(ckpt::StateDict)]
struct Tuple(Layer, #[state(skip)] usize);

#[test]
fn expands_in_a_hostile_scope() {
    let layer = Layer {
        weight: ndarray::Array2::zeros((2, 2)),
        count: ckpt::Tensor::scalar(0i64),
        training: true,
    };
    std::assert_eq!(ckpt::StateDict::state_dict(&layer).len(), 2);
    std::assert!(ckpt::StateDict::is_training(&Empty {}));
}
