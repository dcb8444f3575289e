use ckpt::StateDict;

#[derive(StateDict)]
union Bits {
    f: f32,
    u: u32,
}

fn main() {}
