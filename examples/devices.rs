//! Devices and `map_location`, as in "Saving & Loading Model Across Devices" of PyTorch's guide
//! to saving models, on a machine without a GPU:
//!
//! ```python
//! torch.device("cuda:1"); str(device)                        # Device parsing and printing
//! model.load_state_dict(torch.load(PATH, map_location="cpu"))
//! torch.load(PATH, map_location={"cuda:1": "cuda:0"})
//! torch.load(PATH, map_location=lambda storage, loc: storage)
//! ```
//!
//! ckpt keeps tensors in host memory and saves them from the CPU; CUDA tensors come with the
//! devices work. Files saved on a GPU record `cuda:N` for their tensors, and loading one
//! without a `map_location` that moves them to the CPU fails with the error shown at the end
//! of this example; ckpt's own saves cannot make such a file yet, so here a `map_location`
//! that sends CPU tensors to CUDA shows the same error.
//!
//! Run it with `cargo run --example devices`; it needs no GPU.

use std::error::Error;

use ckpt::device::MapLocation;
use ckpt::nn::{Linear, Rng};
use ckpt::{Device, LoadOptions, StateDict};

fn main() -> Result<(), Box<dyn Error>> {
    // Devices are written as in PyTorch; "cuda" is "cuda:0".
    for text in ["cpu", "cuda", "cuda:1"] {
        let device: Device = text.parse()?;
        println!("{text:>7} -> {device} (is_cuda: {})", device.is_cuda());
    }
    let err = "gpu".parse::<Device>().unwrap_err();
    println!("    gpu -> error: {err}");
    assert_eq!("cuda:1".parse::<Device>()?, Device::Cuda(1));

    // Where each saved tensor goes: one device, a table, or a function of key and device.
    let to_cpu = MapLocation::from(Device::Cpu);
    let table: MapLocation = "cuda:1->cuda:0, cuda:2->cpu".parse()?;
    let head_on_cpu = MapLocation::with_fn(|key, saved| {
        if key.starts_with("head.") {
            Device::Cpu
        } else {
            saved
        }
    });
    println!("map_location {table:?}:");
    for saved in [
        Device::Cuda(1),
        Device::Cuda(2),
        Device::Cuda(3),
        Device::Cpu,
    ] {
        println!("  saved on {saved} -> {}", table.resolve("w", saved));
    }
    assert_eq!(to_cpu.resolve("w", Device::Cuda(3)), Device::Cpu);
    assert_eq!(
        head_on_cpu.resolve("head.bias", Device::Cuda(0)),
        Device::Cpu
    );
    assert_eq!(
        head_on_cpu.resolve("body.bias", Device::Cuda(0)),
        Device::Cuda(0)
    );

    // Save on the CPU; the file records each tensor's device.
    let model = Linear::new(4, 2, &mut Rng::seed(0));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.ckpt");
    ckpt::save(model.state_dict(), &path)?;
    for info in ckpt::inspect(&path)?.tensors {
        println!("saved {:<6} on {}", info.key, info.device);
        assert_eq!(info.device, Device::Cpu);
    }

    // Every map_location that keeps these tensors on the CPU loads them.
    let identity = MapLocation::with_fn(|_, saved| saved);
    for location in [to_cpu, table, identity] {
        let options = LoadOptions::new().map_location(location.clone());
        let checkpoint = ckpt::load_with(&path, &options)?;
        let mut restored = Linear::new(4, 2, &mut Rng::seed(1));
        let _ = restored.load_state_dict(&checkpoint, true)?;
        assert_eq!(restored.weight, model.weight);
        println!("loaded with map_location {location:?}: weights identical");
    }

    // A tensor bound for CUDA on a machine without it: the error names the tensor, both
    // devices and the fix. A file saved on a GPU and loaded with no map_location fails the same.
    let options = LoadOptions::new().map_location(Device::Cuda(0));
    let Err(err) = ckpt::load_with(&path, &options) else {
        return Err("loading onto cuda:0 should fail without CUDA".into());
    };
    assert!(matches!(err, ckpt::Error::CudaUnavailable { .. }), "{err}");
    println!("loading onto cuda:0 fails:\n  {err}");
    Ok(())
}
