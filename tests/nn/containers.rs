//! `ModuleList` and `ModuleDict` of mixed layers against PyTorch: the keys (`blocks.0.weight`,
//! `heads.proj.weight`, parameterless modules taking an index and no keys), a strict load of
//! PyTorch's file, and each module's forward pass.

use ckpt::StateDict;
use ckpt::nn::{
    Conv1d, Conv1dConfig, Dropout, Embedding, GroupNorm, LayerNorm, Linear, ModuleDict, ModuleList,
    ReLU, Rng,
};
use ndarray::{Axis, Ix2, Ix3};

use crate::common::fixtures::assert_close;
use crate::reference::load_strictly;

const TOL: f32 = 1e-5;

/// `class Containers(nn.Module)` of `make_nn_fixtures.py`.
#[derive(StateDict)]
struct Containers {
    blocks: ModuleList,
    heads: ModuleDict,
}

fn containers() -> Containers {
    let rng = &mut Rng::seed(1);
    let blocks = ModuleList::new()
        .push(Linear::new(4, 6, rng))
        .push(ReLU)
        .push(Dropout::new(0.1, 0).unwrap())
        .push(LayerNorm::new(&[6]));
    let conv = Conv1d::new(1, 2, 3, Conv1dConfig::default().padding(1), rng).unwrap();
    let embed = Embedding::new(5, 3, rng).with_padding_idx(0).unwrap();
    let heads = ModuleDict::new()
        .insert("proj", Linear::new(6, 3, rng))
        .and_then(|d| d.insert("act", ReLU))
        .and_then(|d| d.insert("conv", conv))
        .and_then(|d| d.insert("norm", GroupNorm::new(2, 2).unwrap()))
        .and_then(|d| d.insert("embed", embed))
        .unwrap();
    Containers { blocks, heads }
}

#[test]
fn mixed_containers_load_pytorchs_file_and_match_its_outputs() {
    let mut model = containers();
    let f = load_strictly(&mut model, "module_list_dict");
    model.eval();
    assert!(!model.is_training());
    assert_eq!(
        model.rng_state().keys().collect::<Vec<_>>(),
        ["blocks.2.rng"]
    );

    let Containers { blocks, heads } = &mut model;
    let x = f.array::<Ix2>("x");
    let x = blocks.get::<Linear>(0).unwrap().forward(&x).unwrap();
    let x = blocks.get::<ReLU>(1).unwrap().forward(&x);
    let x = blocks.get_mut::<Dropout>(2).unwrap().forward(&x);
    let h = blocks.get::<LayerNorm>(3).unwrap().forward(&x).unwrap();
    assert_close("module_list h", &h, &f.array::<Ix2>("h"), TOL);

    let proj = heads.get::<Linear>("proj").unwrap().forward(&h).unwrap();
    let y = heads.get::<ReLU>("act").unwrap().forward(&proj);
    assert_close("module_dict y", &y, &f.array::<Ix2>("y"), TOL);
    let conv = heads.get::<Conv1d>("conv").unwrap();
    let z = conv.forward(&y.clone().insert_axis(Axis(1))).unwrap();
    let z = heads.get::<GroupNorm>("norm").unwrap().forward(&z).unwrap();
    assert_close("module_dict z", &z, &f.array::<Ix3>("z"), TOL);
    let embed = heads.get::<Embedding>("embed").unwrap();
    let e = embed.forward(&f.indices::<Ix2>("idx")).unwrap();
    assert_close("module_dict e", &e, &f.array::<Ix3>("e"), 0.0);
}

#[test]
fn containers_keep_order_replace_in_place_and_refuse_bad_names() {
    let rng = &mut Rng::seed(0);
    let mut heads = ModuleDict::new()
        .insert("b", Linear::new(2, 2, rng))
        .and_then(|d| d.insert("a", ReLU))
        .and_then(|d| d.insert("b", Linear::new(3, 1, rng)))
        .unwrap();
    assert_eq!(
        heads.keys().collect::<Vec<_>>(),
        ["b", "a"],
        "insertion order"
    );
    assert_eq!(
        heads.get::<Linear>("b").unwrap().in_features(),
        3,
        "replaced"
    );
    assert!(heads.get::<ReLU>("b").is_none());
    assert!(heads.remove("b").is_some());
    assert!(heads.state_dict().is_empty());
    assert_eq!(
        ModuleDict::new()
            .insert("", ReLU)
            .err()
            .unwrap()
            .to_string(),
        "ModuleDict: module name can't be empty string \"\""
    );
    assert_eq!(
        ModuleDict::new()
            .insert("enc.fc", ReLU)
            .err()
            .unwrap()
            .to_string(),
        "ModuleDict: module name can't contain \".\", got: enc.fc"
    );

    let mut list = ModuleList::new();
    list.append(ReLU);
    list.append(Linear::new(2, 2, rng));
    assert_eq!(list.len(), 2);
    assert_eq!(
        list.iter()
            .map(|m| m.state_dict().len())
            .collect::<Vec<_>>(),
        [0, 2]
    );
    let err = list.load_state_dict(&heads.state_dict(), true).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Error(s) in loading state_dict for ModuleList"),
        "{err}"
    );
}
