use ckpt::{StateDict, Tensor};

#[derive(StateDict)]
struct Net {
    #[state(persistent = false)]
    mask: Tensor,
}

fn main() {}
