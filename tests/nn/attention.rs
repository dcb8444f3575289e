//! `MultiheadAttention` against PyTorch: bool and float masks (2-D and per head), key padding,
//! cross-attention, `kdim`/`vdim`, `bias=False`, `add_bias_kv` and `add_zero_attn`,
//! `need_weights` and `average_attn_weights`, rows whose every key is masked, and dropout.

use ckpt::nn::{AttentionOptions, Mask, MultiheadAttention, MultiheadAttentionConfig, Rng};
use ckpt::{DType, StateDict};
use ndarray::{Array3, ArrayD, Ix3, IxDyn};

use crate::common::fixtures::{Fixture, assert_close};
use crate::reference::load_strictly;

const TOL: f32 = 1e-5;

/// The fixture's tensor `key` as a mask, boolean or additive as PyTorch was given it.
pub(crate) fn mask(f: &Fixture, key: &str) -> Mask<'static> {
    if f.tensor(key).dtype() == DType::Bool {
        Mask::from(f.mask(key))
    } else {
        Mask::from(f.array::<IxDyn>(key))
    }
}

/// Loads `name` into a layer built with `config`, runs `forward(query, key, value, options)` in
/// evaluation mode, and compares `y` and, where the fixture has them, `attn_weights`.
fn check(
    name: &str,
    num_heads: usize,
    config: MultiheadAttentionConfig,
    inputs: [&str; 3],
    options: impl Fn(&Fixture) -> AttentionOptions<'static>,
) -> (Array3<f32>, Option<ArrayD<f32>>) {
    let mut mha = MultiheadAttention::new(8, num_heads, config, &mut Rng::seed(1)).unwrap();
    let f = load_strictly(&mut mha, name);
    mha.eval();
    let [q, k, v] = inputs.map(|key| f.array::<Ix3>(key));
    let options = options(&f);
    let (y, weights) = mha.forward(&q, &k, &v, &options).unwrap();
    assert_close(&format!("{name} y"), &y, &f.array::<Ix3>("y"), TOL);
    match &weights {
        Some(w) => {
            let expected = f.array::<IxDyn>("attn_weights");
            assert_close(&format!("{name} attn_weights"), w, &expected, TOL);
        }
        None => assert!(!f.has("attn_weights"), "{name}: weights expected"),
    }
    (y, weights)
}

fn batch_first() -> MultiheadAttentionConfig {
    MultiheadAttentionConfig::default().batch_first(true)
}

#[test]
fn float_mask_cross_attention_matches_pytorch() {
    check(
        "mha_float_mask_cross",
        2,
        batch_first(),
        ["query", "key", "value"],
        |f| AttentionOptions::default().attn_mask(mask(f, "mask")),
    );
}

/// Sequence-first, a bool causal mask with a bool key padding mask; dropout 0.1 does nothing in
/// evaluation mode.
#[test]
fn bool_masks_with_padding_match_pytorch() {
    check(
        "mha_bool_mask_padding_dropout",
        2,
        MultiheadAttentionConfig::default().dropout(0.1),
        ["x", "x", "x"],
        |f| {
            AttentionOptions::default()
                .key_padding_mask(mask(f, "kpm"))
                .attn_mask(mask(f, "causal"))
        },
    );
}

#[test]
fn need_weights_false_returns_no_weights() {
    let (_, weights) = check(
        "mha_need_weights_false",
        2,
        batch_first().dropout(0.2),
        ["x", "x", "x"],
        |f| {
            AttentionOptions::default()
                .key_padding_mask(mask(f, "kpm"))
                .need_weights(false)
        },
    );
    assert!(weights.is_none());
}

/// A `[N * heads, L, S]` float mask (plane `n * heads + h`), weights per head `[N, H, L, S]`.
#[test]
fn per_head_masks_and_weights_match_pytorch() {
    let (_, weights) = check(
        "mha_3d_mask_per_head_weights",
        2,
        batch_first(),
        ["x", "x", "x"],
        |f| {
            AttentionOptions::default()
                .attn_mask(mask(f, "mask"))
                .average_attn_weights(false)
        },
    );
    assert_eq!(weights.unwrap().shape(), [2, 2, 5, 5]);
}

/// `kdim` and `vdim`: separate `q/k/v_proj_weight` instead of `in_proj_weight`.
#[test]
fn kdim_vdim_match_pytorch() {
    check(
        "mha_kdim_vdim",
        2,
        batch_first().kdim(6).vdim(4),
        ["query", "key", "value"],
        |_| AttentionOptions::default(),
    );
}

#[test]
fn no_bias_sequence_first_matches_pytorch() {
    check(
        "mha_no_bias_seq_first",
        4,
        MultiheadAttentionConfig::default().bias(false),
        ["query", "key", "value"],
        |_| AttentionOptions::default(),
    );
}

/// Two more keys (`bias_k`, then zeros) that no mask masks; a float key padding mask.
#[test]
fn bias_kv_and_zero_attention_match_pytorch() {
    let (_, weights) = check(
        "mha_bias_kv_zero_attn",
        2,
        batch_first().add_bias_kv(true).add_zero_attn(true),
        ["query", "key", "value"],
        |f| {
            AttentionOptions::default()
                .attn_mask(mask(f, "mask"))
                .key_padding_mask(mask(f, "kpm"))
                .average_attn_weights(false)
        },
    );
    assert_eq!(weights.unwrap().shape(), [2, 2, 4, 7]);
}

/// A query whose every key is masked: NaN with the weights, as PyTorch's weights path gives;
/// `out_proj.bias` without them, as its `scaled_dot_product_attention` path gives.
#[test]
fn fully_masked_rows_are_nan_with_weights_and_zero_attention_without() {
    let name = "mha_fully_masked_rows";
    let mut mha = MultiheadAttention::new(8, 2, batch_first(), &mut Rng::seed(1)).unwrap();
    let f = load_strictly(&mut mha, name);
    mha.eval();
    let x = f.array::<Ix3>("x");
    let options = AttentionOptions::default()
        .attn_mask(mask(&f, "mask"))
        .key_padding_mask(mask(&f, "kpm"));
    let (y, w) = mha.forward(&x, &x, &x, &options).unwrap();
    assert!(y[[0, 0, 0]].is_nan() && !y[[0, 1, 0]].is_nan());
    assert_close(
        "masked rows y_weights",
        &y,
        &f.array::<Ix3>("y_weights"),
        TOL,
    );
    let w = w.unwrap();
    assert_close(
        "masked rows weights",
        &w,
        &f.array::<IxDyn>("attn_weights"),
        TOL,
    );
    let (y, w) = mha
        .forward(&x, &x, &x, &options.need_weights(false))
        .unwrap();
    assert!(w.is_none());
    assert_close("masked rows y", &y, &f.array::<Ix3>("y"), TOL);
    let bias = mha.out_proj.bias.as_ref().unwrap();
    assert_eq!(
        y.slice(ndarray::s![0, 0, ..]),
        bias,
        "row 0 is out_proj.bias"
    );
}

#[test]
fn the_old_single_fixture_still_matches() {
    let f = crate::common::fixtures::load("multihead_attention");
    let mut mha = MultiheadAttention::new(8, 2, batch_first(), &mut Rng::seed(1)).unwrap();
    let _ = mha.load_state_dict(&f.state("state"), true).unwrap();
    let x = f.array::<Ix3>("x");
    let (y, w) = mha
        .forward(&x, &x, &x, &AttentionOptions::default())
        .unwrap();
    assert_close("multihead_attention y", &y, &f.array::<Ix3>("y"), TOL);
    assert_close(
        "multihead_attention w",
        &w.unwrap(),
        &f.array::<IxDyn>("attn_weights"),
        TOL,
    );
}

/// In training mode the weights go through dropout: zeros and `1 / (1 - p)`-scaled values,
/// a new mask each call, none in evaluation mode; the masks come from `dropout.rng`.
#[test]
fn attention_dropout_drops_weights_in_training_only() {
    let config = batch_first().dropout(0.5);
    let mut mha = MultiheadAttention::new(8, 2, config, &mut Rng::seed(4)).unwrap();
    assert_eq!(mha.rng_state().keys().collect::<Vec<_>>(), ["dropout.rng"]);
    let x = Array3::from_shape_fn((2, 6, 8), |(b, i, j)| {
        ((b * 48 + i * 8 + j) as f32 * 0.37).sin()
    });
    let per_head = AttentionOptions::default().average_attn_weights(false);
    mha.eval();
    let (y_eval, w_eval) = mha.forward(&x, &x, &x, &per_head).unwrap();
    let w_eval = w_eval.unwrap();
    mha.train();
    let (y1, w1) = mha.forward(&x, &x, &x, &per_head).unwrap();
    let (y2, _) = mha.forward(&x, &x, &x, &per_head).unwrap();
    assert_ne!(y1, y2, "a new mask each call");
    assert_ne!(y1, y_eval);
    let w1 = w1.unwrap();
    let dropped = w1.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (w1.len() / 4..w1.len() * 3 / 4).contains(&dropped),
        "{dropped} of {}",
        w1.len()
    );
    for (&kept, &full) in w1.iter().zip(&w_eval) {
        assert!(kept == 0.0 || (kept - 2.0 * full).abs() < 1e-6);
    }
    mha.eval();
    assert_eq!(mha.forward(&x, &x, &x, &per_head).unwrap().0, y_eval);
}

#[test]
fn mistakes_are_errors_in_pytorchs_words() {
    let rng = &mut Rng::seed(0);
    assert_eq!(
        MultiheadAttention::new(6, 4, batch_first(), rng)
            .unwrap_err()
            .to_string(),
        "MultiheadAttention: embed_dim must be divisible by num_heads"
    );
    assert_eq!(
        MultiheadAttention::new(8, 2, batch_first().dropout(1.5), rng)
            .unwrap_err()
            .to_string(),
        "MultiheadAttention: dropout probability has to be between 0 and 1, but got 1.5"
    );
    let mut mha = MultiheadAttention::new(8, 2, batch_first(), rng).unwrap();
    let x = Array3::<f32>::zeros((2, 5, 8));
    let wrong = Array3::<f32>::zeros((2, 5, 7));
    let err = mha
        .forward(&x, &wrong, &wrong, &AttentionOptions::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MultiheadAttention: expected input of shape key [2, S, 8], got [2, 5, 7]"
    );
    let causal4 = Mask::causal(4);
    let err = mha
        .forward(&x, &x, &x, &AttentionOptions::default().attn_mask(causal4))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MultiheadAttention: expected input of shape attn_mask [L, S] = [5, 5] or \
         [N * num_heads, L, S] = [4, 5, 5], got [4, 4]"
    );
    let padding = ndarray::Array2::from_elem((5, 2), false);
    let err = mha
        .forward(
            &x,
            &x,
            &x,
            &AttentionOptions::default().key_padding_mask(Mask::bool(&padding)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MultiheadAttention: expected input of shape key_padding_mask [N, S] = [2, 5], got [5, 2]"
    );
}

/// Sequence-first is batch-first transposed, and the keys follow the options.
#[test]
fn layouts_and_keys_follow_the_options() {
    let f = crate::common::fixtures::load("multihead_attention");
    let mut bf = MultiheadAttention::new(8, 2, batch_first(), &mut Rng::seed(1)).unwrap();
    let _ = bf.load_state_dict(&f.state("state"), true).unwrap();
    let mut sf =
        MultiheadAttention::new(8, 2, MultiheadAttentionConfig::default(), &mut Rng::seed(2))
            .unwrap();
    let _ = sf.load_state_dict(&bf.state_dict(), true).unwrap();
    let x = f.array::<Ix3>("x");
    let xt = x.view().permuted_axes([1, 0, 2]);
    let options = AttentionOptions::default();
    let (y, w) = bf.forward(&x, &x, &x, &options).unwrap();
    let (yt, wt) = sf.forward(&xt, &xt, &xt, &options).unwrap();
    assert_close("seq-first y", &yt.permuted_axes([1, 0, 2]), &y, 1e-6);
    assert_close("seq-first w", &wt.unwrap(), &w.unwrap(), 1e-6);

    let keys = |config: MultiheadAttentionConfig| {
        let mha = MultiheadAttention::new(8, 2, config, &mut Rng::seed(0)).unwrap();
        assert_eq!(mha.config(), config);
        mha.state_dict()
            .keys()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let defaults = MultiheadAttentionConfig::default();
    assert_eq!(
        keys(defaults.add_bias_kv(true)),
        [
            "in_proj_weight",
            "in_proj_bias",
            "bias_k",
            "bias_v",
            "out_proj.weight",
            "out_proj.bias"
        ]
    );
    assert_eq!(
        keys(defaults.bias(false)),
        ["in_proj_weight", "out_proj.weight"]
    );
    assert_eq!(
        keys(defaults.kdim(3)),
        [
            "q_proj_weight",
            "k_proj_weight",
            "v_proj_weight",
            "in_proj_bias",
            "out_proj.weight",
            "out_proj.bias"
        ]
    );
}
