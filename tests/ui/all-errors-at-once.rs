use ckpt::{StateDict, Tensor};

// Three unrelated mistakes: each is reported, not only the first.
#[derive(StateDict)]
struct Net {
    #[state(rename = "")]
    weight: Tensor,
    #[state(skip, buffer)]
    cache: Tensor,
    #[state(bias)]
    bias: Tensor,
}

fn main() {}
