use ckpt::StateDict;

#[derive(StateDict)]
enum Model {
    Small(ckpt::Tensor),
    Large(ckpt::Tensor),
}

fn main() {}
