use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    weight: Tensor,
    #[state(training)]
    training: bool,
    #[state(training)]
    also_training: bool,
}

fn main() {}
