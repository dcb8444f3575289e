use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    weight: Tensor,
    #[state(rename = "weight")]
    weight_v2: Tensor,
}

fn main() {}
