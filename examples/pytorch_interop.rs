//! Talking to PyTorch: load a model PyTorch saved (`torch.save(gru.state_dict())` along with
//! its inputs and outputs), run it in Rust, and get PyTorch's outputs; then save a checkpoint
//! that `torch.load(path, weights_only=True)` reads.
//!
//! The file is `tests/fixtures/layers/gru.pt`, written by PyTorch 2.15 for
//! `nn.GRU(4, 5, num_layers=2, bidirectional=True)`: `state.*` holds the layer's state dict,
//! `x` and `h0` the inputs, `y` and `h_n` PyTorch's outputs.
//!
//! Run it with `cargo run --example pytorch_interop`.

use ckpt::StateDictOptions;
use ckpt::keymap::KeyMap;
use ckpt::nn::{GRU, Rng, RnnConfig};
use ckpt::{StateDict, dict};
use ndarray::{Array3, Ix3};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/layers/gru.pt");
    let file = ckpt::load(path)?; // torch.load(path): the format comes from the bytes
    println!(
        "{path}: {} tensors, {} format",
        file.tensors().len(),
        file.format().name()
    );

    let options = RnnConfig {
        num_layers: 2,
        bidirectional: true,
        ..RnnConfig::default()
    };
    let mut gru = GRU::new(4, 5, options, &mut Rng::seed(0))?;
    // Only the `state.` entries are the layer's; the rest are inputs and outputs.
    let report = gru.load_state_dict_with(
        &file,
        &StateDictOptions::new().key_map(KeyMap::new().select_prefix("state.")),
    )?;
    println!("loaded {} tensors of the GRU", report.loaded_keys.len());

    let tensor = |key: &str| file[key].as_tensor().ok_or(format!("no tensor {key}"));
    let x: Array3<f32> = tensor("x")?.to_array::<f32, Ix3>()?;
    let h0: Array3<f32> = tensor("h0")?.to_array::<f32, Ix3>()?;
    let (y, h_n) = gru.forward(&x, Some(h0.view()))?;

    let y_diff = ckpt::tensor::TensorView::from(y.view()).max_abs_diff(&tensor("y")?);
    let h_diff = ckpt::tensor::TensorView::from(h_n.view()).max_abs_diff(&tensor("h_n")?);
    println!("max |rust - pytorch|: output {y_diff:?}, h_n {h_diff:?}");
    for diff in [y_diff, h_diff] {
        match diff {
            Ok(d) if d <= 1e-5 => {}
            other => return Err(format!("outputs differ from PyTorch's: {other:?}").into()),
        }
    }

    // And back: a checkpoint PyTorch loads with torch.load(path, weights_only=True).
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("gru_checkpoint.pt");
    ckpt::save(
        dict! { "epoch" => 1, "model_state_dict" => gru.state_dict() },
        &out,
    )?;
    let again = ckpt::load(&out)?;
    let mut reloaded = GRU::new(4, 5, options, &mut Rng::seed(1))?;
    let _ = reloaded.load_state_dict(&again["model_state_dict"], true)?;
    let (y2, _) = reloaded.forward(&x, Some(h0.view()))?;
    if y2 != y {
        return Err("the .pt written by ckpt does not round-trip".into());
    }
    println!(
        "wrote {} for PyTorch and read it back: same outputs",
        out.display()
    );
    Ok(())
}
