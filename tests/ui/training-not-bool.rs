use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    weight: Tensor,
    #[state(training)]
    mode: u8,
}

fn main() {}
