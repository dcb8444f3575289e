use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    #[state(rename = "w", rename = "weight")]
    weight: Tensor,
    #[state(buffer)]
    #[state(buffer)]
    running_mean: Tensor,
}

fn main() {}
