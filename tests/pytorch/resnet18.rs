//! ResNet-18 written with `ckpt::nn` and `#[derive(StateDict)]`, against torchvision: the same
//! state-dict keys, dtypes and shapes in the same order, a strict load of a state dict with
//! exactly torchvision's keys, and the same outputs in eval and train mode.

use ckpt::nn::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Conv2dConfig, Linear, MaxPool2d, NnError, ReLU, Rng,
};
use ckpt::{StateDict, Tensor};
use indexmap::IndexMap;
use ndarray::{Array2, Array4, Axis, Ix2};
use serde::Deserialize;

/// `downsample.0` (a 1×1 convolution) and `downsample.1` (its batch norm), as torchvision's
/// `nn.Sequential`: tuple fields are keyed by position.
#[derive(StateDict)]
struct Downsample(Conv2d, BatchNorm2d);

#[derive(StateDict)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    relu: ReLU,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(inplanes: usize, planes: usize, stride: usize, rng: &mut Rng) -> Self {
        let conv3 = |inp, stride, rng: &mut Rng| {
            let options = Conv2dConfig::default()
                .stride(stride)
                .padding(1)
                .bias(false);
            Conv2d::new(inp, planes, 3, options, rng)
        };
        let downsample = (stride != 1 || inplanes != planes).then(|| {
            let options = Conv2dConfig::default().stride(stride).bias(false);
            Downsample(
                Conv2d::new(inplanes, planes, 1, options, rng),
                BatchNorm2d::new(planes),
            )
        });
        BasicBlock {
            conv1: conv3(inplanes, stride, rng),
            bn1: BatchNorm2d::new(planes),
            relu: ReLU,
            conv2: conv3(planes, 1, rng),
            bn2: BatchNorm2d::new(planes),
            downsample,
        }
    }

    fn forward(&mut self, x: &Array4<f32>) -> Result<Array4<f32>, NnError> {
        let out = self
            .relu
            .forward(&self.bn1.forward(&self.conv1.forward(x)?)?);
        let out = self.bn2.forward(&self.conv2.forward(&out)?)?;
        let identity = match &mut self.downsample {
            Some(Downsample(conv, bn)) => bn.forward(&conv.forward(x)?)?,
            None => x.clone(),
        };
        Ok(self.relu.forward(&(out + identity)))
    }
}

#[derive(StateDict)]
struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    relu: ReLU,
    maxpool: MaxPool2d,
    layer1: Vec<BasicBlock>,
    layer2: Vec<BasicBlock>,
    layer3: Vec<BasicBlock>,
    layer4: Vec<BasicBlock>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl ResNet18 {
    fn new(num_classes: usize, rng: &mut Rng) -> Self {
        let layer = |inplanes, planes, stride, rng: &mut Rng| {
            vec![
                BasicBlock::new(inplanes, planes, stride, rng),
                BasicBlock::new(planes, planes, 1, rng),
            ]
        };
        let stem = Conv2dConfig::default().stride(2).padding(3).bias(false);
        ResNet18 {
            conv1: Conv2d::new(3, 64, 7, stem, rng),
            bn1: BatchNorm2d::new(64),
            relu: ReLU,
            maxpool: MaxPool2d::new(3, 2, 1).unwrap(),
            layer1: layer(64, 64, 1, rng),
            layer2: layer(64, 128, 2, rng),
            layer3: layer(128, 256, 2, rng),
            layer4: layer(256, 512, 2, rng),
            avgpool: AdaptiveAvgPool2d::new((1, 1)),
            fc: Linear::new(512, num_classes, rng),
        }
    }

    fn forward(&mut self, x: &Array4<f32>) -> Result<Array2<f32>, NnError> {
        let x = self
            .relu
            .forward(&self.bn1.forward(&self.conv1.forward(x)?)?);
        let mut x = self.maxpool.forward(&x)?;
        for layer in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ] {
            for block in layer {
                x = block.forward(&x)?;
            }
        }
        let pooled = self.avgpool.forward(&x)?;
        let (n, c) = (pooled.len_of(Axis(0)), pooled.len_of(Axis(1)));
        // The pool's output is [N, C, 1, 1] in standard layout, so the reshape cannot fail.
        let flat = pooled.into_shape_with_order((n, c)).unwrap();
        self.fc.forward(&flat)
    }
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct KeyEntry {
    key: String,
    dtype: String,
    shape: Vec<usize>,
}

fn torchvision_keys() -> Vec<KeyEntry> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/resnet18_keys.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str::<Keys>(&text).unwrap().keys
}

#[test]
fn state_dict_keys_dtypes_and_shapes_are_torchvisions() {
    let model = ResNet18::new(1000, &mut Rng::seed(0));
    let ours: Vec<KeyEntry> = model
        .state_dict()
        .iter()
        .map(|(key, t)| KeyEntry {
            key: key.to_owned(),
            dtype: t.dtype().to_string(),
            shape: t.shape().to_vec(),
        })
        .collect();
    let expected = torchvision_keys();
    assert_eq!(ours.len(), 122);
    assert_eq!(ours, expected);
    let params = model.named_parameters();
    assert_eq!(params.len(), 62, "buffers are not parameters");
    assert!(params.keys().all(|k| !k.contains("running")));
}

/// `make_forward_fixtures.py`'s `pattern`: `n` values in `[-0.5, 0.5)`, exact in `f64`.
fn pattern(k: u64, n: usize) -> impl Iterator<Item = f64> {
    (0..n as u64).map(move |i| ((i * 7919 + k * 104_729) % 1000) as f64 / 1000.0 - 0.5)
}

/// `make_forward_fixtures.py`'s `rule`: the value of the `k`-th state-dict entry.
fn rule(k: u64, entry: &KeyEntry) -> Tensor {
    let name = &entry.key;
    if name.ends_with("num_batches_tracked") {
        return Tensor::scalar(0i64);
    }
    let n: usize = entry.shape.iter().product();
    let fan_in = n / entry.shape[0];
    let values = pattern(k, n)
        .map(|u| {
            if name.ends_with("running_var") {
                1.0 + 0.5 * u
            } else if name.ends_with("running_mean") {
                0.1 * u
            } else if entry.shape.len() == 1 && name.ends_with("weight") {
                1.0 + 0.2 * u
            } else if name.ends_with("bias") {
                0.2 * u
            } else {
                u * 2.0 * (6.0 / fan_in as f64).sqrt()
            }
        })
        .map(|v| v as f32)
        .collect();
    Tensor::from_vec(values, &entry.shape).unwrap()
}

#[test]
fn loads_torchvision_keys_strictly_and_matches_its_outputs() {
    let state: IndexMap<String, Tensor> = torchvision_keys()
        .iter()
        .enumerate()
        .map(|(k, entry)| (entry.key.clone(), rule(k as u64, entry)))
        .collect();
    let mut model = ResNet18::new(1000, &mut Rng::seed(0));
    let report = model.load_state_dict(&state, true).unwrap();
    assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());

    let f = crate::common::fixtures::load_file("resnet18_forward.json");
    let x: Array4<f32> = Array4::from_shape_vec(
        (2, 3, 48, 48),
        pattern(1000, 2 * 3 * 48 * 48)
            .map(|u| (u * 2.0) as f32)
            .collect(),
    )
    .unwrap();
    // 1e-4: float32 rounding through twenty layers. PyTorch's own float32 result is 2.4e-5 from
    // its float64 one on this input.
    model.eval();
    let y_eval = model.forward(&x).unwrap();
    crate::common::fixtures::assert_close(
        "resnet18 y_eval",
        &y_eval,
        &f.array::<Ix2>("y_eval"),
        1e-4,
    );
    model.train();
    let y_train = model.forward(&x).unwrap();
    crate::common::fixtures::assert_close(
        "resnet18 y_train",
        &y_train,
        &f.array::<Ix2>("y_train"),
        1e-4,
    );
    assert_eq!(
        model.state_dict()["layer4.1.bn2.num_batches_tracked"],
        Tensor::scalar(1i64).view()
    );
}
