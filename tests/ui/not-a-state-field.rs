use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    weight: Tensor,
    hidden_size: usize,
}

fn main() {}
