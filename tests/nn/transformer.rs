//! The transformer layers and stacks against PyTorch: post- and pre-norm, `ReLU` and `GELU`,
//! batch- and sequence-first, bool and float masks, key padding, `bias=False`, a custom eps,
//! rows whose every key is masked, and the final norm of the stacks; each loaded strictly
//! from PyTorch's file. Then dropout in training, and a resume that draws the same masks.

use ckpt::StateDict;
use ckpt::nn::{
    Activation, DecoderMasks, EncoderMasks, LayerNorm, Rng, TransformerDecoder,
    TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer, TransformerLayerConfig,
};
use ndarray::{Array3, Ix3, s};

use crate::attention::mask;
use crate::common::fixtures::{Fixture, assert_close};
use crate::reference::load_strictly;

const TOL: f32 = 1e-5;

/// `TransformerLayerConfig(8, 2, 16, ...)` as the fixtures build them.
fn config(activation: Activation, batch_first: bool, norm_first: bool) -> TransformerLayerConfig {
    TransformerLayerConfig::default()
        .dim_feedforward(16)
        .activation(activation)
        .batch_first(batch_first)
        .norm_first(norm_first)
}

fn encoder_layer(config: TransformerLayerConfig) -> TransformerEncoderLayer {
    TransformerEncoderLayer::new(8, 2, config, &mut Rng::seed(1)).unwrap()
}

fn decoder_layer(config: TransformerLayerConfig) -> TransformerDecoderLayer {
    TransformerDecoderLayer::new(8, 2, config, &mut Rng::seed(1)).unwrap()
}

fn encoder(config: TransformerLayerConfig) -> TransformerEncoder {
    let rng = &mut Rng::seed(2);
    let layer = TransformerEncoderLayer::new(8, 2, config, rng).unwrap();
    TransformerEncoder::new(layer, 2, Some(LayerNorm::new(&[8])), rng)
}

fn decoder(config: TransformerLayerConfig) -> TransformerDecoder {
    let rng = &mut Rng::seed(2);
    let layer = TransformerDecoderLayer::new(8, 2, config, rng).unwrap();
    TransformerDecoder::new(layer, 2, Some(LayerNorm::new(&[8])), rng)
}

fn encoder_masks(
    f: &Fixture,
    mask_key: Option<&str>,
    padding: Option<&str>,
) -> EncoderMasks<'static> {
    EncoderMasks {
        src_mask: mask_key.map(|k| mask(f, k)),
        src_key_padding_mask: padding.map(|k| mask(f, k)),
    }
}

fn check_encoder_layer(
    name: &str,
    mut layer: TransformerEncoderLayer,
    mask_key: Option<&str>,
    padding: Option<&str>,
) {
    let f = load_strictly(&mut layer, name);
    layer.eval();
    let y = layer
        .forward(
            &f.array::<Ix3>("src"),
            &encoder_masks(&f, mask_key, padding),
        )
        .unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y"), TOL);
}

#[test]
fn post_norm_relu_encoder_layer_with_padding_matches_pytorch() {
    let layer = encoder_layer(config(Activation::Relu, true, false));
    check_encoder_layer(
        "transformer_encoder_layer_post_relu_bf",
        layer,
        None,
        Some("kpm"),
    );
}

#[test]
fn pre_norm_gelu_sequence_first_encoder_layer_with_a_float_causal_mask_matches_pytorch() {
    let layer = encoder_layer(config(Activation::Gelu, false, true));
    check_encoder_layer(
        "transformer_encoder_layer_pre_gelu_sf",
        layer,
        Some("mask"),
        None,
    );
}

#[test]
fn encoder_layer_with_bool_masks_and_a_custom_eps_matches_pytorch() {
    let config = config(Activation::Relu, true, true)
        .dropout(0.0)
        .layer_norm_eps(1e-6);
    check_encoder_layer(
        "transformer_encoder_layer_pre_relu_bf_masks",
        encoder_layer(config),
        Some("mask"),
        Some("kpm"),
    );
}

/// `bias=False`: no bias in the attention, the linear layers or the layer norms.
#[test]
fn encoder_layer_without_biases_matches_pytorch() {
    let layer = encoder_layer(config(Activation::Gelu, true, false).bias(false));
    let keys: Vec<_> = layer.state_dict().keys().map(str::to_owned).collect();
    assert_eq!(
        keys,
        [
            "self_attn.in_proj_weight",
            "self_attn.out_proj.weight",
            "linear1.weight",
            "linear2.weight",
            "norm1.weight",
            "norm2.weight"
        ]
    );
    check_encoder_layer(
        "transformer_encoder_layer_no_bias",
        layer,
        None,
        Some("kpm"),
    );
}

/// Two layers and the final norm. PyTorch's `no_grad` fast path (`y_fastpath`) agrees at every
/// position that is not padding.
#[test]
fn encoder_stack_with_padding_matches_pytorch() {
    let name = "transformer_encoder_post_relu_bf_padding";
    let mut encoder = encoder(config(Activation::Relu, true, false));
    let f = load_strictly(&mut encoder, name);
    encoder.eval();
    let masks = encoder_masks(&f, None, Some("kpm"));
    let y = encoder.forward(&f.array::<Ix3>("src"), &masks).unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y"), TOL);
    let fast = f.array::<Ix3>("y_fastpath");
    let padding = f.mask("kpm");
    for ((b, t), &padded) in padding.indexed_iter().map(|(i, p)| ((i[0], i[1]), p)) {
        if !padded {
            let what = format!("{name} fast path at [{b}, {t}]");
            assert_close(
                &what,
                &y.slice(s![b, t, ..]),
                &fast.slice(s![b, t, ..]),
                TOL,
            );
        }
    }
}

#[test]
fn pre_norm_encoder_stack_with_a_causal_mask_matches_pytorch() {
    let name = "transformer_encoder_pre_gelu_sf_causal";
    let mut encoder = encoder(config(Activation::Gelu, false, true));
    let f = load_strictly(&mut encoder, name);
    encoder.eval();
    let y = encoder
        .forward(
            &f.array::<Ix3>("src"),
            &encoder_masks(&f, Some("causal"), None),
        )
        .unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y"), TOL);
}

fn decoder_masks(f: &Fixture, keys: [Option<&str>; 4]) -> DecoderMasks<'static> {
    let [tgt, memory, tgt_padding, memory_padding] = keys.map(|k| k.map(|k| mask(f, k)));
    DecoderMasks {
        tgt_mask: tgt,
        memory_mask: memory,
        tgt_key_padding_mask: tgt_padding,
        memory_key_padding_mask: memory_padding,
    }
}

fn check_decoder_layer(name: &str, mut layer: TransformerDecoderLayer, keys: [Option<&str>; 4]) {
    let f = load_strictly(&mut layer, name);
    layer.eval();
    let (tgt, memory) = (f.array::<Ix3>("tgt"), f.array::<Ix3>("memory"));
    let y = layer
        .forward(&tgt, &memory, &decoder_masks(&f, keys))
        .unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y"), TOL);
}

#[test]
fn post_norm_decoder_layer_with_a_float_causal_mask_and_memory_padding_matches_pytorch() {
    check_decoder_layer(
        "transformer_decoder_layer_post_relu_bf",
        decoder_layer(config(Activation::Relu, true, false)),
        [Some("causal"), None, None, Some("mem_kpm")],
    );
}

#[test]
fn pre_norm_gelu_decoder_layer_with_every_mask_kind_matches_pytorch() {
    check_decoder_layer(
        "transformer_decoder_layer_pre_gelu_sf",
        decoder_layer(config(Activation::Gelu, false, true)),
        [Some("causal"), Some("mem_mask"), Some("tgt_kpm"), None],
    );
}

/// Left padding under a causal mask leaves a query no key, and one sample's memory is all
/// padding: zero attention there, not NaN, as in PyTorch's layers.
#[test]
fn decoder_layer_with_fully_masked_rows_matches_pytorch() {
    check_decoder_layer(
        "transformer_decoder_layer_fully_masked_rows",
        decoder_layer(config(Activation::Relu, true, true)),
        [Some("causal"), None, Some("tgt_kpm"), Some("mem_kpm")],
    );
}

fn check_decoder(name: &str, mut decoder: TransformerDecoder, keys: [Option<&str>; 4]) {
    let f = load_strictly(&mut decoder, name);
    decoder.eval();
    let (tgt, memory) = (f.array::<Ix3>("tgt"), f.array::<Ix3>("memory"));
    let y = decoder
        .forward(&tgt, &memory, &decoder_masks(&f, keys))
        .unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y"), TOL);
}

#[test]
fn pre_norm_decoder_stack_with_masks_matches_pytorch() {
    check_decoder(
        "transformer_decoder_pre_gelu_bf_masks",
        decoder(config(Activation::Gelu, true, true)),
        [Some("causal"), None, None, Some("mem_kpm")],
    );
}

#[test]
fn post_norm_decoder_stack_without_masks_matches_pytorch() {
    check_decoder(
        "transformer_decoder_post_relu_sf",
        decoder(config(Activation::Relu, false, false)),
        [None; 4],
    );
}

/// The stacks copy their layer (same weights, as PyTorch's deep copy), but every copy drops
/// with a generator of its own; a stack without norm has no `norm.*` keys.
#[test]
fn stacks_copy_weights_but_not_generators() {
    let config = config(Activation::Relu, true, false);
    let rng = &mut Rng::seed(5);
    let layer = TransformerEncoderLayer::new(8, 2, config, rng).unwrap();
    let mut encoder = TransformerEncoder::new(layer, 3, None, rng);
    let state = encoder.state_dict();
    assert_eq!(state.len(), 36);
    assert!(!state.contains_key("norm.weight"));
    assert_eq!(
        state["layers.0.linear1.weight"],
        state["layers.2.linear1.weight"]
    );
    let generators = encoder.rng_state();
    assert_eq!(generators.len(), 12);
    assert_eq!(
        generators.keys().take(4).collect::<Vec<_>>(),
        [
            "layers.0.self_attn.dropout.rng",
            "layers.0.dropout.rng",
            "layers.0.dropout1.rng",
            "layers.0.dropout2.rng"
        ]
    );
    assert_ne!(
        generators["layers.0.dropout.rng"],
        generators["layers.1.dropout.rng"]
    );
    drop((state, generators));
    // In training the layers drop; two calls draw two masks; evaluation is deterministic.
    let x = Array3::from_shape_fn((2, 5, 8), |(b, i, j)| {
        ((b * 40 + i * 8 + j) as f32 * 0.3).cos()
    });
    let none = EncoderMasks::default();
    let (a, b) = (
        encoder.forward(&x, &none).unwrap(),
        encoder.forward(&x, &none).unwrap(),
    );
    assert_ne!(a, b);
    encoder.eval();
    assert_eq!(
        encoder.forward(&x, &none).unwrap(),
        encoder.forward(&x, &none).unwrap()
    );
}

#[test]
fn construction_errors_name_the_layer() {
    let bad_heads =
        TransformerEncoderLayer::new(8, 3, TransformerLayerConfig::default(), &mut Rng::seed(0));
    assert_eq!(
        bad_heads.unwrap_err().to_string(),
        "TransformerEncoderLayer: embed_dim must be divisible by num_heads"
    );
    let bad_dropout = TransformerDecoderLayer::new(
        8,
        2,
        TransformerLayerConfig::default().dropout(-0.1),
        &mut Rng::seed(0),
    );
    assert_eq!(
        bad_dropout.unwrap_err().to_string(),
        "TransformerDecoderLayer: dropout probability has to be between 0 and 1, but got -0.1"
    );
}

/// An encoder-decoder model trained with dropout, checkpointed, and resumed in a model built
/// from another seed: the outputs after the resume are those of the run that never stopped.
#[test]
fn a_resumed_transformer_draws_the_same_dropout_masks() {
    #[derive(StateDict)]
    struct Seq2Seq {
        encoder: TransformerEncoder,
        decoder: TransformerDecoder,
    }
    let build = |seed: u64| {
        let rng = &mut Rng::seed(seed);
        let config = config(Activation::Gelu, true, true).dropout(0.3);
        let enc = TransformerEncoderLayer::new(8, 2, config, rng).unwrap();
        let dec = TransformerDecoderLayer::new(8, 2, config, rng).unwrap();
        Seq2Seq {
            encoder: TransformerEncoder::new(enc, 2, Some(LayerNorm::new(&[8])), rng),
            decoder: TransformerDecoder::new(dec, 2, Some(LayerNorm::new(&[8])), rng),
        }
    };
    let step = |model: &mut Seq2Seq, i: usize| {
        let src = Array3::from_shape_fn((2, 5, 8), |(b, t, e)| {
            ((i * 7 + b * 5 + t * 3 + e) as f32 * 0.21).sin()
        });
        let tgt = Array3::from_shape_fn((2, 4, 8), |(b, t, e)| {
            ((i * 5 + b * 3 + t * 7 + e) as f32 * 0.17).cos()
        });
        let memory = model
            .encoder
            .forward(&src, &EncoderMasks::default())
            .unwrap();
        let masks = DecoderMasks::default().tgt_mask(ckpt::nn::Mask::causal(4));
        let y = model.decoder.forward(&tgt, &memory, &masks).unwrap();
        // A stand-in for an optimizer step: the output nudges the final norm, so the masks of
        // one step reach the weights of the next.
        if let Some(norm) = &mut model.decoder.norm {
            let mean = y
                .mean_axis(ndarray::Axis(0))
                .unwrap()
                .mean_axis(ndarray::Axis(0))
                .unwrap();
            norm.weight.scaled_add(-0.01, &mean.into_dyn());
        }
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let mut reference = build(0);
    let expected: Vec<_> = (0..6).map(|i| step(&mut reference, i)).collect();

    let mut first = build(0);
    for (i, expected) in expected.iter().enumerate().take(3) {
        assert_eq!(step(&mut first, i), *expected);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq2seq.ckpt");
    ckpt::save(
        ckpt::dict! { "model" => first.state_dict(), "rng_state" => first.rng_state() },
        &path,
    )
    .unwrap();
    drop(first);
    let checkpoint = ckpt::load(&path).unwrap();
    let mut resumed = build(99);
    let _ = resumed.load_state_dict(&checkpoint["model"], true).unwrap();
    let report = resumed.load_rng_state(&checkpoint["rng_state"]).unwrap();
    assert_eq!(report.loaded_keys.len(), 4 * 2 + 6 * 2);
    for (i, expected) in expected.iter().enumerate().skip(3) {
        assert_eq!(step(&mut resumed, i), *expected, "step {i}");
    }
    // The control: without the generators the first step after the resume differs.
    let mut without = build(99);
    let _ = without.load_state_dict(&checkpoint["model"], true).unwrap();
    assert_ne!(step(&mut without, 3), expected[3]);
}
