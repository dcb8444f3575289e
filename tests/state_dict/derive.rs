//! `#[derive(StateDict)]`: key paths, containers, attributes, modes and generics.

use std::collections::BTreeMap;

use ckpt::state::Role;
use ckpt::{DType, StateDict, Tensor};
use indexmap::IndexMap;
use ndarray::{Array1, Array2, ArrayD, array};

fn keys(model: &dyn StateDict) -> Vec<String> {
    model.state_dict().keys().map(str::to_owned).collect()
}

#[derive(StateDict, Clone)]
struct Linear {
    weight: Array2<f32>,
    bias: Array1<f32>,
}

impl Linear {
    fn new(out: usize, inp: usize, seed: f32) -> Self {
        Linear {
            weight: Array2::from_shape_fn((out, inp), |(i, j)| seed + (i * inp + j) as f32),
            bias: Array1::from_shape_fn(out, |i| -seed - i as f32),
        }
    }
}

#[derive(StateDict)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    #[state(buffer)]
    running_mean: Tensor,
    #[state(buffer)]
    running_var: Tensor,
    #[state(buffer)]
    num_batches_tracked: Tensor,
    #[state(training)]
    training: bool,
}

impl BatchNorm {
    fn new(n: usize) -> Self {
        BatchNorm {
            weight: Tensor::from(Array1::<f32>::ones(n)),
            bias: Tensor::from(Array1::<f32>::zeros(n)),
            running_mean: Tensor::from(Array1::<f32>::zeros(n)),
            running_var: Tensor::from(Array1::<f32>::ones(n)),
            num_batches_tracked: Tensor::scalar(0i64),
            training: true,
        }
    }
}

#[derive(StateDict)]
struct Encoder {
    layers: Vec<Linear>,
    norm: BatchNorm,
}

#[derive(StateDict)]
struct Net {
    encoder: Encoder,
    #[state(rename = "fc")]
    head: Linear,
    extra: Option<Linear>,
    #[state(skip)]
    hidden: usize,
    #[state(buffer, persistent = false)]
    mask: Array1<u8>,
}

fn net(seed: f32) -> Net {
    Net {
        encoder: Encoder {
            layers: vec![Linear::new(3, 2, seed), Linear::new(3, 3, seed + 10.0)],
            norm: BatchNorm::new(3),
        },
        head: Linear::new(1, 3, seed + 20.0),
        extra: None,
        hidden: 3,
        mask: array![1, 0, 1],
    }
}

#[test]
fn keys_follow_fields_in_declaration_order() {
    let model = net(0.0);
    let keys = keys(&model);
    assert_eq!(
        keys,
        [
            "encoder.layers.0.weight",
            "encoder.layers.0.bias",
            "encoder.layers.1.weight",
            "encoder.layers.1.bias",
            "encoder.norm.weight",
            "encoder.norm.bias",
            "encoder.norm.running_mean",
            "encoder.norm.running_var",
            "encoder.norm.num_batches_tracked",
            "fc.weight",
            "fc.bias",
        ]
    );
    assert_eq!(model.hidden, 3);
}

#[test]
fn state_dict_borrows_without_copying() {
    let model = net(1.0);
    let state = model.state_dict();
    let view = &state["fc.weight"];
    assert_eq!(view.dtype(), DType::F32);
    assert_eq!(view.shape(), &[1, 3]);
    let data = view.array::<f32>().unwrap();
    assert_eq!(data.as_ptr(), model.head.weight.as_ptr(), "same memory");
    assert_eq!(
        state["encoder.norm.num_batches_tracked"].dtype(),
        DType::I64
    );
    assert!(
        state["encoder.norm.weight"].shares_storage(&model.encoder.norm.weight.view()),
        "tensor leaves lend their storage too"
    );
}

#[test]
fn roles_split_parameters_and_buffers() {
    let model = net(0.0);
    let params: Vec<String> = model.named_parameters().keys().map(str::to_owned).collect();
    assert!(params.contains(&"encoder.norm.weight".to_owned()));
    assert!(!params.iter().any(|k| k.contains("running")));
    let buffers: Vec<String> = model.named_buffers().keys().map(str::to_owned).collect();
    assert_eq!(
        buffers,
        [
            "encoder.norm.running_mean",
            "encoder.norm.running_var",
            "encoder.norm.num_batches_tracked",
            "mask",
        ]
    );
    let mut roles = Vec::new();
    model.visit(
        &mut ckpt::state::KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, _: ckpt::tensor::TensorView<'_>, role: Role| {
            roles.push((key.to_owned(), role));
        },
    );
    assert_eq!(
        roles.last().unwrap(),
        &("mask".to_owned(), Role::NonPersistent)
    );
}

#[test]
fn option_some_adds_keys() {
    let mut model = net(0.0);
    model.extra = Some(Linear::new(2, 2, 5.0));
    let state = model.state_dict();
    assert!(state.contains_key("extra.weight"));
    assert_eq!(state.len(), 13);
}

#[test]
fn train_and_eval_reach_nested_modules() {
    let mut model = net(0.0);
    assert!(model.is_training());
    model.eval();
    assert!(!model.is_training());
    assert!(!model.encoder.norm.training);
    model.train();
    assert!(model.encoder.norm.training);
    assert!(model.encoder.is_training());
}

#[derive(StateDict)]
struct Tuple(Linear, #[state(buffer)] Tensor);

#[derive(StateDict)]
struct Unit;

#[derive(StateDict)]
struct Flattened {
    #[state(flatten)]
    inner: Linear,
    scale: Array1<f64>,
}

#[test]
fn tuple_unit_and_flattened_structs() {
    let t = Tuple(Linear::new(1, 1, 0.0), Tensor::scalar(1.0f32));
    assert_eq!(keys(&t), ["0.weight", "0.bias", "1"]);
    assert!(Unit.state_dict().is_empty());
    assert_eq!(Unit.training_mode(), None);
    let f = Flattened {
        inner: Linear::new(1, 1, 0.0),
        scale: array![2.0],
    };
    assert_eq!(keys(&f), ["weight", "bias", "scale"]);
}

#[derive(StateDict)]
struct Containers {
    arr: [Linear; 2],
    boxed: Box<Linear>,
    by_name: BTreeMap<String, Linear>,
    ordered: IndexMap<String, ArrayD<i32>>,
    dynamic: Vec<Box<dyn StateDict>>,
}

#[test]
fn containers_key_by_index_and_name() {
    let mut by_name = BTreeMap::new();
    by_name.insert("zeta".to_owned(), Linear::new(1, 1, 0.0));
    by_name.insert("alpha".to_owned(), Linear::new(1, 1, 0.0));
    let mut ordered = IndexMap::new();
    ordered.insert("z".to_owned(), ArrayD::zeros(vec![2, 1, 2]));
    ordered.insert("a".to_owned(), ArrayD::zeros(vec![]));
    let c = Containers {
        arr: [Linear::new(1, 1, 0.0), Linear::new(1, 1, 0.0)],
        boxed: Box::new(Linear::new(1, 1, 0.0)),
        by_name,
        ordered,
        dynamic: vec![Box::new(BatchNorm::new(1))],
    };
    let keys = keys(&c);
    assert_eq!(
        keys,
        [
            "arr.0.weight",
            "arr.0.bias",
            "arr.1.weight",
            "arr.1.bias",
            "boxed.weight",
            "boxed.bias",
            "by_name.alpha.weight",
            "by_name.alpha.bias",
            "by_name.zeta.weight",
            "by_name.zeta.bias",
            "ordered.z",
            "ordered.a",
            "dynamic.0.weight",
            "dynamic.0.bias",
            "dynamic.0.running_mean",
            "dynamic.0.running_var",
            "dynamic.0.num_batches_tracked",
        ]
    );
    assert_eq!(c.state_dict()["ordered.z"].shape(), &[2, 1, 2]);
    assert!(c.is_training(), "the boxed batch norm keeps its mode");
}

#[derive(StateDict)]
struct Generic<L, const N: usize> {
    layers: Vec<L>,
    #[state(skip)]
    config: std::marker::PhantomData<[u8; N]>,
}

/// `T` appears only in a skipped field, so no `T: StateDict` bound is added.
#[derive(StateDict)]
struct Tagged<T> {
    weight: Array1<f32>,
    #[state(skip)]
    tag: T,
}

#[test]
fn generics_get_bounds_only_where_needed() {
    let g: Generic<Linear, 3> = Generic {
        layers: vec![Linear::new(1, 1, 0.0)],
        config: std::marker::PhantomData,
    };
    assert_eq!(g.state_dict().len(), 2);
    struct NotAModule;
    let t = Tagged {
        weight: array![1.0],
        tag: NotAModule,
    };
    assert_eq!(t.state_dict().len(), 1);
    assert_eq!(t.module_name(), "Tagged");
    assert!(matches!(t.tag, NotAModule));
}

#[derive(StateDict)]
struct Raw {
    r#type: Array1<f32>,
}

#[test]
fn raw_identifiers_lose_their_prefix() {
    let r = Raw {
        r#type: array![1.0],
    };
    assert!(r.state_dict().contains_key("type"));
}
