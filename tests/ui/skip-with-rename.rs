use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    weight: Tensor,
    #[state(skip, rename = "scratch")]
    cache: Vec<f32>,
}

fn main() {}
