use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
#[state(rename = "net")]
struct Net {
    weight: Tensor,
}

fn main() {}
