use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    #[state(rename = "fc.weight")]
    weight: Tensor,
    #[state(rename = "out proj")]
    out: Tensor,
}

fn main() {}
