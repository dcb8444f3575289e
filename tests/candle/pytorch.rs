//! PyTorch's files into candle twins (`tests/python/make_candle_fixtures.py`): strict loads
//! with PyTorch's keys, PyTorch's outputs within 1e-5, ckpt's report on mismatch, and back.

use ckpt::candle_core::{DType, Device, Tensor};
use ckpt::candle_nn::{VarBuilder, VarMap};
use ckpt::{LoadFrom, StateDict};

use crate::common::candle::{ConvNet, SeqNet, fixture, max_abs_diff, to_candle, values};

fn io(key: &str) -> Tensor {
    let io = ckpt::load(fixture("io.pt")).unwrap();
    to_candle(&io[key].as_tensor().unwrap())
}

#[test]
fn a_pytorch_conv_net_runs_in_its_candle_twin() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut net = ConvNet::new(vb, 5).unwrap();
    let report = net.load_from(fixture("convnet.pt")).unwrap();
    assert!(report.is_complete());
    let saved = ckpt::inspect(fixture("convnet.pt")).unwrap();
    let keys: Vec<&str> = saved.tensors.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        net.state_dict().keys().collect::<Vec<_>>(),
        keys,
        "PyTorch's keys, in order"
    );

    let y = net.forward(&io("convnet_x"), false).unwrap();
    let diff = max_abs_diff(&y, &io("convnet_y"));
    assert!(diff < 1e-5, "max |candle - torch| = {diff}");
    // Built from a VarMap, the layers hold its variables: the map has the weights too.
    let data = varmap.data().lock().unwrap();
    let checkpoint = ckpt::load(fixture("convnet.pt")).unwrap();
    let running_var = to_candle(&checkpoint["bn.running_var"].as_tensor().unwrap());
    assert_eq!(
        values(data["bn.running_var"].as_tensor()),
        values(&running_var)
    );
}

#[test]
fn a_hugging_face_safetensors_file_runs_in_a_twin_of_plain_tensors() {
    // `VarBuilder::zeros` gives plain tensors, not variables: they are written in place.
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let mut net = SeqNet::new(vb).unwrap();
    let report = net.load_from(fixture("seqnet.safetensors")).unwrap();
    assert_eq!(report.loaded_keys.len(), 7);
    let ids = io("seqnet_ids").to_dtype(DType::U32).unwrap();
    let y = net.forward(&ids).unwrap();
    let diff = max_abs_diff(&y, &io("seqnet_y"));
    assert!(diff < 1e-5, "max |candle - torch| = {diff}");
}

#[test]
fn a_twin_that_differs_gets_every_problem_in_pytorchs_words() {
    use ckpt::candle_nn::{self, Conv1dConfig};
    #[derive(StateDict)]
    struct Drifted {
        embed: candle_nn::Embedding, // 20 tokens, not 16
        conv: candle_nn::Conv1d,
        norm: candle_nn::LayerNorm,
        rms: candle_nn::RmsNorm,
        #[state(rename = "haed")]
        head: candle_nn::Linear,
    }
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let padded = Conv1dConfig {
        padding: 1,
        ..Default::default()
    };
    let mut net = Drifted {
        embed: candle_nn::embedding(20, 8, vb.pp("embed")).unwrap(),
        conv: candle_nn::conv1d(8, 8, 3, padded, vb.pp("conv")).unwrap(),
        norm: candle_nn::layer_norm(8, 1e-5, vb.pp("norm")).unwrap(),
        rms: candle_nn::rms_norm(8, 1e-5, vb.pp("rms")).unwrap(),
        head: candle_nn::linear_no_bias(8, 5, vb.pp("head")).unwrap(),
    };
    let err = net.load_from(fixture("seqnet.safetensors")).unwrap_err();
    let message = err.to_string();
    assert!(
        message.ends_with(
            "Error(s) in loading state_dict for Drifted:\n\tMissing key(s) in state_dict: \
             \"haed.weight\".\n\tUnexpected key(s) in state_dict: \"head.weight\".\n\tsize \
             mismatch for embed.weight: copying a param with shape [16, 8] from checkpoint, the \
             shape in current model is [20, 8].\n\tDid you mean \"head.weight\" for missing \
             \"haed.weight\"?"
        ),
        "{message}"
    );
    assert!(
        message.starts_with(&fixture("seqnet.safetensors")),
        "{message}"
    );
    assert_eq!(
        values(net.conv.weight()),
        vec![0.0; 8 * 8 * 3],
        "nothing was written"
    );
}

#[test]
fn batch_norm_takes_pytorchs_counter_and_saves_one_pytorch_accepts() {
    let checkpoint = ckpt::load(fixture("convnet.pt")).unwrap();
    let counter = checkpoint["bn.num_batches_tracked"].as_tensor().unwrap();
    assert_eq!(counter.to_f64_vec().unwrap(), [3.0]);
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let mut net = ConvNet::new(vb, 5).unwrap();
    let _ = net.load_state_dict(&checkpoint, true).unwrap();
    // candle keeps no counter: the state dict reports 0, a tensor of its own per layer.
    let state = net.state_dict();
    let saved = &state["bn.num_batches_tracked"];
    assert_eq!((saved.dtype(), saved.shape()), (ckpt::DType::I64, &[][..]));
    assert_eq!(saved.to_f64_vec().unwrap(), [0.0]);

    // Back to a .pt file: every other tensor as PyTorch saved it. The file is committed, for
    // tests/python/check_candle_written.py to load into PyTorch's ConvNet strictly.
    let path = fixture("written/convnet.pt");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("convnet.pt");
    ckpt::save(net.state_dict(), &fresh).unwrap();
    if std::env::var_os("CKPT_REGENERATE").is_some() {
        std::fs::create_dir_all(fixture("written")).unwrap();
        std::fs::copy(&fresh, &path).unwrap();
    }
    assert!(
        std::fs::read(&path).unwrap() == std::fs::read(&fresh).unwrap(),
        "written/convnet.pt is stale: run with CKPT_REGENERATE=1"
    );
    let back = ckpt::load(&path).unwrap();
    for (key, tensor) in checkpoint.value().tensors() {
        let written = back[key.as_str()].as_tensor().unwrap();
        if key == "bn.num_batches_tracked" {
            assert_eq!(written.to_f64_vec().unwrap(), [0.0]);
        } else {
            assert_eq!(written, tensor, "{key}");
        }
    }
}
