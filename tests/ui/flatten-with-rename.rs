use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Inner {
    weight: Tensor,
}

#[derive(StateDict)]
struct Net {
    #[state(flatten, rename = "inner")]
    inner: Inner,
}

fn main() {}
