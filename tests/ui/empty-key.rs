use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    #[state(rename = "")]
    weight: Tensor,
}

fn main() {}
