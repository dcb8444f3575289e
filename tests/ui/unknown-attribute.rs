use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    #[state(parameter)]
    weight: Tensor,
}

fn main() {}
