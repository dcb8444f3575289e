//! Compile errors of `#[derive(StateDict)]`, one case per mistake in `tests/ui/`.
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test compiletest`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
