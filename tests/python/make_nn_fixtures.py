"""Makes the real-PyTorch references of the layers in tests/nn/ added for issue 14. Run with
PyTorch (2.15 was used) and numpy installed; CPU only; deterministic (rerunning rewrites
identical files):

    python tests/python/make_nn_fixtures.py [ROOT]     (ROOT: the repository root; default the
                                                        one this file sits in)

Writes, under ROOT/tests/fixtures/layers/, for each reference NAME.pt (the module's state dict,
saved by torch.save with default settings), NAME.pt.manifest.json (every leaf in order, as
tests/fixtures/pytorch/*.manifest.json) and NAME.json in the layer-fixture format:
{"about", "module", "config", "forward": {"args", "kwargs", "outputs", "outputs_that_are_none"},
"state_dict": [{key, dtype, shape}], "state_dict_file", "weights_only", "fastpath",
"tensors": {"state.KEY" and the inputs and outputs: {"dtype", "shape", "data"}}}. In "data" a
non-finite value is the string "inf", "-inf" or "nan"; bool tensors (masks: True = not allowed)
are "BOOL" with JSON booleans.

Every output is the plain computation, with PyTorch's fused fast paths off
(torch.backends.mha.set_fastpath_enabled(False)); "fastpath" says how far the no_grad fast path
is from it, and where that is above 1e-5 its output is stored as NAME_fastpath. Parameters are
seeded values set by reinit() (PyTorch's init leaves attention biases at zero and gives every
layer of a TransformerEncoder/Decoder the same weights), except for embeddings, which keep
PyTorch's init so that the padding row is zero.

layers() makes the first 22 layer references (it began as the layer part of the issue-14
research generator, which this script and make_pt_fixtures.py / make_scheduler_fixtures.py
replace); more_layers() adds what those leave out: rows
whose every key is masked (NaN with need_weights=True, zeros without), add_bias_kv and
add_zero_attn with a float key padding mask, bias=False, and ModuleList/ModuleDict of mixed
layers.
"""

import copy
import hashlib
import json
import math
import pathlib
import sys
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore")

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent.parent)
FIX = ROOT / "tests" / "fixtures"

# ---------------------------------------------------------------------------------------------
# Names, encodings, manifests
# ---------------------------------------------------------------------------------------------

DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def tensor_bytes(t):
    """The C-contiguous little-endian bytes of t's logical values (conj/neg bits resolved)."""
    t = t.detach()
    if t.is_complex():
        t = t.resolve_conj()
    t = t.resolve_neg().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def sha256(t):
    """None for tensors without data (meta) or not strided (sparse)."""
    if t.device.type == "meta" or t.layout != torch.strided:
        return None
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


def float_json(x):
    if math.isfinite(x):
        return float(x)
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def scalar_json(v):
    """A leaf that is not a tensor: JSON where it has a literal, a tagged object otherwise."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return float_json(v)
    if isinstance(v, complex):
        return {"$complex": [float_json(v.real), float_json(v.imag)]}
    if isinstance(v, bytearray):
        return {"$bytearray": bytes(v).hex()}
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, torch.dtype):
        return {"$dtype": str(v).removeprefix("torch.")}
    if isinstance(v, torch.device):
        return {"$device": str(v)}
    raise TypeError(f"no JSON form for {type(v)}")


def walk(obj, prefix=""):
    """Every leaf in order, keyed by its dotted path (as tests/python/check_written.py walks)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
        return
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple, set)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        yield prefix, obj
        return
    for k, v in items:
        yield from walk(v, f"{prefix}.{k}" if prefix else k)


def manifest(obj):
    entries = []
    for key, leaf in walk(obj):
        if isinstance(leaf, torch.Tensor):
            entries.append({"key": key, "dtype": DTYPE_NAMES[leaf.dtype], "shape": list(leaf.shape),
                            "sha256": sha256(leaf)})
        elif isinstance(leaf, torch.device):
            entries.append({"key": key, "value": str(leaf)})  # as ckpt reads a device today: its string
        else:
            entries.append({"key": key, "value": scalar_json(leaf)})
    return entries


def data_json(t):
    """Layer-fixture form of a tensor: {"dtype", "shape", "data"} (non-finite as strings)."""
    t = t.detach().contiguous()
    if t.dtype == torch.bool:
        data = t.reshape(-1).tolist()
    elif t.is_floating_point():
        data = [x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
                for x in t.reshape(-1).tolist()]
    else:
        data = t.reshape(-1).tolist()
    return {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data": data}


def write_json(path, obj, indent=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent, allow_nan=False)
        f.write("\n")


def save_pt(obj, path):
    """torch.save with default settings, a manifest beside it, and whether weights_only loads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    entries = manifest(obj)
    write_json(path.with_name(path.name + ".manifest.json"), {"entries": entries}, indent=1)
    try:
        back = torch.load(path, weights_only=True)
        if manifest(back) != entries:
            return {"weights_only": "loads, but the leaves differ"}
        return {"weights_only": True}
    except Exception as e:  # noqa: BLE001
        text = str(e)
        line = next((l.strip() for l in text.splitlines() if "WeightsUnpickler error:" in l), text.splitlines()[0])
        return {"weights_only": False, "error": f"{type(e).__name__}: {line}"}

# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

def reinit(module, seed):
    """Seeded values for every parameter (PyTorch's own init leaves biases at zero and repeats
    the weights of cloned layers): norm scales 1 + 0.1 n, other vectors 0.1 n, matrices
    n / sqrt(fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in module.modules():
            for pname, p in mod.named_parameters(recurse=False):
                n = torch.randn(p.shape, generator=gen)
                if isinstance(mod, (nn.LayerNorm, nn.GroupNorm)) and pname == "weight":
                    p.copy_(1 + 0.1 * n)
                elif p.dim() == 1:
                    p.copy_(0.1 * n)
                else:
                    p.copy_(n / math.sqrt(p[0].numel()))


def causal_float(n):
    return nn.Transformer.generate_square_subsequent_mask(n)


def causal_bool(n):
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)


def padding(lengths, n):
    return torch.arange(n)[None, :] >= torch.tensor(lengths)[:, None]


def run_forward(module, inputs, kwargs, fn):
    """The reference output (fast paths off), and the no_grad output with fast paths on."""
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        ref = fn(module, inputs, kwargs)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    with torch.no_grad():
        fast = fn(module, inputs, kwargs)
    return ref, fast


def same(a, b):
    """Equal, NaN where the other is NaN (fully masked attention rows are NaN)."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


def max_abs_diff(a, b):
    """max |a - b| over the elements that are not NaN in both; a string if NaNs differ."""
    if not torch.equal(a.isnan(), b.isnan()):
        return "NaN in different places"
    d = (a.nan_to_num(0.0) - b.nan_to_num(0.0)).abs()
    return d.max().item() if d.numel() else 0.0


def as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def layer_fixture(name, module_name, about, config, module, inputs, call_args, call_kwargs, out_names, fn=None,
                  seed=0, keep_init=False):
    out = FIX / "layers"
    if not keep_init:
        reinit(module, seed)
    module.eval()
    sd = module.state_dict()
    res = save_pt(sd, out / f"{name}.pt")
    if fn is None:
        def fn(m, inp, kw):
            return m(*[inp[a] for a in call_args], **{k: (inp[v] if isinstance(v, str) and v in inp else v)
                                                     for k, v in kw.items()})
    ref, fast = run_forward(module, inputs, call_kwargs, fn)
    ref, fast = as_tuple(ref), as_tuple(fast)
    # the file alone reproduces the outputs: zero a copy, load the .pt strictly, run again
    check = copy.deepcopy(module)
    with torch.no_grad():
        for t in check.state_dict().values():
            t.zero_()
    check.load_state_dict(torch.load(out / f"{name}.pt", weights_only=True), strict=True)
    again, _ = run_forward(check, inputs, call_kwargs, fn)
    for r, a in zip(ref, as_tuple(again)):
        assert (r is None and a is None) or same(r, a), name
    tensors = {f"state.{k}": v for k, v in sd.items()}
    tensors.update(inputs)
    fast_diff = {}
    none_outputs = []
    for o, r, f in zip(out_names, ref, fast):
        if o is None:
            continue
        if r is None:
            none_outputs.append(o)
            continue
        tensors[o] = r.detach()
        if f is not None and f.shape == r.shape:
            fast_diff[o] = max_abs_diff(f, r)
        elif f is not None:
            fast_diff[o] = f"shape {list(f.shape)}"
    fastpath = {"max_abs_diff_no_grad_fastpath_vs_reference": fast_diff}
    big = {o: d for o, d in fast_diff.items() if isinstance(d, float) and d > 1e-5}
    if big:
        for o, f in zip(out_names, fast):
            if o in big:
                tensors[f"{o}_fastpath"] = f.detach()
        fastpath["note"] = ("under torch.no_grad() in eval mode PyTorch takes its fused fast path, which gives "
                            "other values; they are stored as NAME_fastpath")
    doc = {
        "about": about + " Parameters: seeded values (reinit() in the generator), not PyTorch's init."
        if not keep_init else about,
        "module": module_name,
        "config": config,
        "forward": {"args": call_args, "kwargs": call_kwargs, "outputs": [o for o in out_names if o],
                    "outputs_that_are_none": none_outputs},
        "state_dict": [{"key": k, "dtype": DTYPE_NAMES[v.dtype], "shape": list(v.shape)} for k, v in sd.items()],
        "state_dict_file": f"{name}.pt", **res,
        "fastpath": fastpath,
        "tensors": {k: data_json(v) for k, v in tensors.items()},
    }
    write_json(out / f"{name}.json", doc)


def layers():
    D, H, FF = 8, 2, 16

    def rn(*shape):
        return torch.randn(*shape)

    # --- TransformerEncoderLayer
    torch.manual_seed(1401)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="relu", batch_first=True, norm_first=False)
    layer_fixture("transformer_encoder_layer_post_relu_bf", "torch.nn.TransformerEncoderLayer",
                  "nn.TransformerEncoderLayer(8, 2, 16, 0.1, 'relu', batch_first=True, norm_first=False), eval; "
                  "y = m(src, src_key_padding_mask=kpm) (True = padding; batch 1 has 3 real tokens).",
                  cfg, nn.TransformerEncoderLayer(**cfg),
                  {"src": rn(2, 5, D), "kpm": padding([5, 3], 5)}, ["src"], {"src_key_padding_mask": "kpm"}, ["y"], seed=1)
    torch.manual_seed(1402)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="gelu", batch_first=False, norm_first=True)
    layer_fixture("transformer_encoder_layer_pre_gelu_sf", "torch.nn.TransformerEncoderLayer",
                  "nn.TransformerEncoderLayer(8, 2, 16, 0.1, 'gelu', batch_first=False, norm_first=True), eval; "
                  "y = m(src, src_mask=mask) with the float causal mask (0 / -inf) of "
                  "nn.Transformer.generate_square_subsequent_mask(5); src is [seq 5, batch 2, 8].",
                  cfg, nn.TransformerEncoderLayer(**cfg),
                  {"src": rn(5, 2, D), "mask": causal_float(5)}, ["src"], {"src_mask": "mask"}, ["y"], seed=2)
    torch.manual_seed(1403)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.0, activation="relu", batch_first=True, norm_first=True,
               layer_norm_eps=1e-6)
    bool_mask = torch.tensor([[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 1, 0, 0]],
                             dtype=torch.bool)
    layer_fixture("transformer_encoder_layer_pre_relu_bf_masks", "torch.nn.TransformerEncoderLayer",
                  "nn.TransformerEncoderLayer(8, 2, 16, 0.0, 'relu', layer_norm_eps=1e-6, batch_first=True, "
                  "norm_first=True), eval; y = m(src, src_mask=mask, src_key_padding_mask=kpm) with a bool "
                  "mask (True = not allowed) and a bool padding mask (batch 0 has 4 real tokens).",
                  cfg, nn.TransformerEncoderLayer(**cfg),
                  {"src": rn(2, 5, D), "mask": bool_mask, "kpm": padding([4, 5], 5)}, ["src"],
                  {"src_mask": "mask", "src_key_padding_mask": "kpm"}, ["y"], seed=3)

    # --- TransformerEncoder (2 layers + final norm)
    torch.manual_seed(1404)
    lcfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="relu", batch_first=True, norm_first=False)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(**lcfg), num_layers=2, norm=nn.LayerNorm(D))
    layer_fixture("transformer_encoder_post_relu_bf_padding", "torch.nn.TransformerEncoder",
                  "nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.1, 'relu', batch_first=True, "
                  "norm_first=False), num_layers=2, norm=nn.LayerNorm(8)) (enable_nested_tensor=True, the "
                  "default), eval; y = m(src, src_key_padding_mask=kpm) (batch 1 has 3 real tokens). Under "
                  "no_grad PyTorch runs it on a nested tensor and gives 0 before the final norm at padded "
                  "positions (y_fastpath); y is the plain computation.",
                  {"layer": lcfg, "num_layers": 2, "norm": "LayerNorm(8)", "enable_nested_tensor": True},
                  enc, {"src": rn(2, 5, D), "kpm": padding([5, 3], 5)}, ["src"], {"src_key_padding_mask": "kpm"},
                  ["y"], seed=4)
    torch.manual_seed(1405)
    lcfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="gelu", batch_first=False, norm_first=True)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(**lcfg), num_layers=2, norm=nn.LayerNorm(D),
                                enable_nested_tensor=False)
    layer_fixture("transformer_encoder_pre_gelu_sf_causal", "torch.nn.TransformerEncoder",
                  "nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.1, 'gelu', batch_first=False, "
                  "norm_first=True), num_layers=2, norm=nn.LayerNorm(8), enable_nested_tensor=False), eval; "
                  "y = m(src, mask=causal) with the float causal mask; src is [seq 5, batch 2, 8].",
                  {"layer": lcfg, "num_layers": 2, "norm": "LayerNorm(8)", "enable_nested_tensor": False},
                  enc, {"src": rn(5, 2, D), "causal": causal_float(5)}, ["src"], {"mask": "causal"}, ["y"], seed=5)

    # --- TransformerDecoderLayer
    torch.manual_seed(1406)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="relu", batch_first=True, norm_first=False)
    layer_fixture("transformer_decoder_layer_post_relu_bf", "torch.nn.TransformerDecoderLayer",
                  "nn.TransformerDecoderLayer(8, 2, 16, 0.1, 'relu', batch_first=True, norm_first=False), eval; "
                  "y = m(tgt, memory, tgt_mask=causal, memory_key_padding_mask=mem_kpm); tgt [2, 4, 8], "
                  "memory [2, 5, 8], float causal tgt mask, memory batch 0 has 3 real tokens.",
                  cfg, nn.TransformerDecoderLayer(**cfg),
                  {"tgt": rn(2, 4, D), "memory": rn(2, 5, D), "causal": causal_float(4), "mem_kpm": padding([3, 5], 5)},
                  ["tgt", "memory"], {"tgt_mask": "causal", "memory_key_padding_mask": "mem_kpm"}, ["y"], seed=6)
    torch.manual_seed(1407)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="gelu", batch_first=False, norm_first=True)
    layer_fixture("transformer_decoder_layer_pre_gelu_sf", "torch.nn.TransformerDecoderLayer",
                  "nn.TransformerDecoderLayer(8, 2, 16, 0.1, 'gelu', batch_first=False, norm_first=True), eval; "
                  "y = m(tgt, memory, tgt_mask=causal, memory_mask=mem_mask, tgt_key_padding_mask=tgt_kpm); "
                  "tgt [4, 2, 8], memory [5, 2, 8], bool causal tgt mask, float additive memory mask [4, 5], "
                  "tgt batch 1 has 3 real tokens.",
                  cfg, nn.TransformerDecoderLayer(**cfg),
                  {"tgt": rn(4, 2, D), "memory": rn(5, 2, D), "causal": causal_bool(4), "mem_mask": rn(4, 5),
                   "tgt_kpm": padding([4, 3], 4)},
                  ["tgt", "memory"], {"tgt_mask": "causal", "memory_mask": "mem_mask", "tgt_key_padding_mask": "tgt_kpm"},
                  ["y"], seed=7)

    # --- TransformerDecoder (2 layers + final norm)
    torch.manual_seed(1408)
    lcfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(**lcfg), num_layers=2, norm=nn.LayerNorm(D))
    layer_fixture("transformer_decoder_pre_gelu_bf_masks", "torch.nn.TransformerDecoder",
                  "nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, 0.1, 'gelu', batch_first=True, "
                  "norm_first=True), num_layers=2, norm=nn.LayerNorm(8)), eval; y = m(tgt, memory, "
                  "tgt_mask=causal, memory_key_padding_mask=mem_kpm); bool causal mask, memory batch 1 has 4 "
                  "real tokens.",
                  {"layer": lcfg, "num_layers": 2, "norm": "LayerNorm(8)"}, dec,
                  {"tgt": rn(2, 4, D), "memory": rn(2, 5, D), "causal": causal_bool(4), "mem_kpm": padding([5, 4], 5)},
                  ["tgt", "memory"], {"tgt_mask": "causal", "memory_key_padding_mask": "mem_kpm"}, ["y"], seed=8)
    torch.manual_seed(1409)
    lcfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="relu", batch_first=False, norm_first=False)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(**lcfg), num_layers=2, norm=nn.LayerNorm(D))
    layer_fixture("transformer_decoder_post_relu_sf", "torch.nn.TransformerDecoder",
                  "nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, 0.1, 'relu', batch_first=False, "
                  "norm_first=False), num_layers=2, norm=nn.LayerNorm(8)), eval; y = m(tgt, memory), no masks; "
                  "tgt [4, 2, 8], memory [5, 2, 8].",
                  {"layer": lcfg, "num_layers": 2, "norm": "LayerNorm(8)"}, dec,
                  {"tgt": rn(4, 2, D), "memory": rn(5, 2, D)}, ["tgt", "memory"], {}, ["y"], seed=9)

    # --- MultiheadAttention
    torch.manual_seed(1410)
    cfg = dict(embed_dim=D, num_heads=H, batch_first=True)
    layer_fixture("mha_float_mask_cross", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, batch_first=True), eval; y, attn_weights = m(query, key, value, "
                  "attn_mask=mask) with a float additive mask [4, 5]; need_weights=True, average_attn_weights=True.",
                  cfg, nn.MultiheadAttention(**cfg),
                  {"query": rn(2, 4, D), "key": rn(2, 5, D), "value": rn(2, 5, D), "mask": rn(4, 5)},
                  ["query", "key", "value"], {"attn_mask": "mask", "need_weights": True}, ["y", "attn_weights"], seed=10)
    torch.manual_seed(1411)
    cfg = dict(embed_dim=D, num_heads=H, dropout=0.1, batch_first=False)
    x = rn(5, 2, D)
    layer_fixture("mha_bool_mask_padding_dropout", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, dropout=0.1), eval (dropout inactive); self-attention on x "
                  "[seq 5, batch 2, 8]: y, attn_weights = m(x, x, x, key_padding_mask=kpm, attn_mask=causal) "
                  "with a bool causal mask and a bool padding mask (True = ignore; batch 0 has 4 real tokens).",
                  cfg, nn.MultiheadAttention(**cfg), {"x": x, "kpm": padding([4, 5], 5), "causal": causal_bool(5)},
                  ["x", "x", "x"], {"key_padding_mask": "kpm", "attn_mask": "causal"}, ["y", "attn_weights"], seed=11)
    torch.manual_seed(1412)
    cfg = dict(embed_dim=D, num_heads=H, dropout=0.2, batch_first=True)
    layer_fixture("mha_need_weights_false", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, dropout=0.2, batch_first=True), eval; self-attention: "
                  "y, attn_weights = m(x, x, x, key_padding_mask=kpm, need_weights=False) -> attn_weights is None "
                  "(batch 1 has 2 real tokens).",
                  cfg, nn.MultiheadAttention(**cfg), {"x": rn(2, 5, D), "kpm": padding([5, 2], 5)},
                  ["x", "x", "x"], {"key_padding_mask": "kpm", "need_weights": False}, ["y", "attn_weights"], seed=12)
    torch.manual_seed(1413)
    cfg = dict(embed_dim=D, num_heads=H, batch_first=True)
    layer_fixture("mha_3d_mask_per_head_weights", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, batch_first=True), eval; y, attn_weights = m(x, x, x, "
                  "attn_mask=mask, average_attn_weights=False) with a float mask [batch*heads 4, 5, 5] "
                  "(index b*2 + h); attn_weights is [2, 2, 5, 5].",
                  cfg, nn.MultiheadAttention(**cfg), {"x": rn(2, 5, D), "mask": rn(4, 5, 5)},
                  ["x", "x", "x"], {"attn_mask": "mask", "need_weights": True, "average_attn_weights": False},
                  ["y", "attn_weights"], seed=13)
    torch.manual_seed(1414)
    cfg = dict(embed_dim=D, num_heads=H, kdim=6, vdim=4, batch_first=True)
    layer_fixture("mha_kdim_vdim", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True), eval (separate q/k/v "
                  "projection weights, one in_proj_bias); y, attn_weights = m(query [2,3,8], key [2,5,6], "
                  "value [2,5,4]).",
                  cfg, nn.MultiheadAttention(**cfg), {"query": rn(2, 3, D), "key": rn(2, 5, 6), "value": rn(2, 5, 4)},
                  ["query", "key", "value"], {}, ["y", "attn_weights"], seed=14)

    # --- Conv1d
    for i, (name, cfg, shape, about) in enumerate([
        ("conv1d_stride_padding", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1), (2, 4, 9),
         "nn.Conv1d(4, 6, 3, stride=2, padding=1); y = m(x), x [2, 4, 9]."),
        ("conv1d_dilation_groups_nobias", dict(in_channels=4, out_channels=6, kernel_size=3, stride=1, padding=2,
                                               dilation=2, groups=2, bias=False), (2, 4, 9),
         "nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2, bias=False); y = m(x), x [2, 4, 9]."),
        ("conv1d_same_even_kernel_depthwise", dict(in_channels=4, out_channels=8, kernel_size=4, padding="same",
                                                   groups=4), (2, 4, 7),
         "nn.Conv1d(4, 8, 4, padding='same', groups=4): an even kernel, so PyTorch pads 1 left and 2 right; "
         "y = m(x), x [2, 4, 7]."),
        ("conv1d_reflect_stride_dilation", dict(in_channels=3, out_channels=2, kernel_size=3, stride=3, padding=2,
                                                dilation=2, padding_mode="reflect"), (2, 3, 10),
         "nn.Conv1d(3, 2, 3, stride=3, padding=2, dilation=2, padding_mode='reflect'); y = m(x), x [2, 3, 10]."),
    ]):
        torch.manual_seed(1420 + i)
        layer_fixture(name, "torch.nn.Conv1d", about, cfg, nn.Conv1d(**cfg), {"x": rn(*shape)}, ["x"], {}, ["y"],
                      seed=20 + i)

    # --- GroupNorm
    torch.manual_seed(1430)
    cfg = dict(num_groups=2, num_channels=6)
    layer_fixture("groupnorm", "torch.nn.GroupNorm", "nn.GroupNorm(2, 6); y = m(x), x [2, 6, 5] * 2 + 0.5.",
                  cfg, nn.GroupNorm(**cfg), {"x": rn(2, 6, 5) * 2 + 0.5}, ["x"], {}, ["y"], seed=30)
    torch.manual_seed(1431)
    cfg = dict(num_groups=3, num_channels=6, eps=1e-3, affine=False)
    layer_fixture("groupnorm_no_affine_4d", "torch.nn.GroupNorm",
                  "nn.GroupNorm(3, 6, eps=1e-3, affine=False) (empty state dict); y = m(x), x [2, 6, 2, 3].",
                  cfg, nn.GroupNorm(**cfg), {"x": rn(2, 6, 2, 3)}, ["x"], {}, ["y"], seed=31)

    # --- Embedding with padding_idx (PyTorch's own init: N(0, 1) with the padding row zero)
    torch.manual_seed(1440)
    cfg = dict(num_embeddings=10, embedding_dim=4, padding_idx=0)
    layer_fixture("embedding_padding_idx", "torch.nn.Embedding",
                  "nn.Embedding(10, 4, padding_idx=0) with PyTorch's init (row 0 is zero); y = m(idx).",
                  cfg, nn.Embedding(**cfg), {"idx": torch.tensor([[0, 3, 9, 0, 1], [2, 0, 0, 7, 5]])}, ["idx"], {}, ["y"],
                  keep_init=True)
    torch.manual_seed(1441)
    cfg = dict(num_embeddings=6, embedding_dim=3, padding_idx=-1)
    m = nn.Embedding(**cfg)
    layer_fixture("embedding_padding_idx_negative", "torch.nn.Embedding",
                  f"nn.Embedding(6, 3, padding_idx=-1) (stored as m.padding_idx = {m.padding_idx}) with PyTorch's "
                  "init (row 5 is zero); y = m(idx).",
                  {**cfg, "padding_idx_normalized": m.padding_idx}, m,
                  {"idx": torch.tensor([[5, 0, 1], [4, 5, 2]])}, ["idx"], {}, ["y"], keep_init=True)



def more_layers():
    D, H, FF = 8, 2, 16

    def rn(*shape):
        return torch.randn(*shape)

    # --- MultiheadAttention: rows with every key masked. The weights path (need_weights=True)
    # softmaxes a row of -inf into NaN; the scaled_dot_product_attention path (need_weights=False,
    # what the transformer layers call) gives such rows zero weight, so their output is out_proj.bias.
    torch.manual_seed(1450)
    cfg = dict(embed_dim=D, num_heads=H, batch_first=True)
    mask = causal_bool(5)
    mask[0, 0] = True  # query 0 may see no key at all
    inputs = {"x": rn(2, 5, D), "mask": mask, "kpm": padding([5, 2], 5)}

    def both(m, inp, kw):
        y_weights, w = m(inp["x"], inp["x"], inp["x"], attn_mask=inp["mask"], key_padding_mask=inp["kpm"])
        y, _ = m(inp["x"], inp["x"], inp["x"], attn_mask=inp["mask"], key_padding_mask=inp["kpm"],
                 need_weights=False)
        return y_weights, w, y

    layer_fixture("mha_fully_masked_rows", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, batch_first=True), eval; self-attention on x [2, 5, 8] with a bool "
                  "causal attn_mask whose row 0 masks every key, and a bool key padding mask (batch 1 has 2 real "
                  "tokens): y_weights, attn_weights = m(x, x, x, attn_mask=mask, key_padding_mask=kpm) (rows with "
                  "every key masked are NaN), y = m(..., need_weights=False)[0] (those rows are out_proj.bias).",
                  cfg, nn.MultiheadAttention(**cfg), inputs, ["x", "x", "x"],
                  {"attn_mask": "mask", "key_padding_mask": "kpm"}, ["y_weights", "attn_weights", "y"], fn=both,
                  seed=50)

    # --- MultiheadAttention with add_bias_kv and add_zero_attn: two more key positions (the
    # learned bias, then zeros), which the masks do not mask; a float (additive) key padding mask.
    torch.manual_seed(1451)
    cfg = dict(embed_dim=D, num_heads=H, add_bias_kv=True, add_zero_attn=True, batch_first=True)
    layer_fixture("mha_bias_kv_zero_attn", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 2, add_bias_kv=True, add_zero_attn=True, batch_first=True), eval; "
                  "y, attn_weights = m(query [2, 4, 8], key [2, 5, 8], value [2, 5, 8], attn_mask=mask, "
                  "key_padding_mask=kpm, average_attn_weights=False) with a float attn_mask [4, 5] and a float "
                  "key padding mask [2, 5]; attn_weights is [2, 2, 4, 7].",
                  cfg, nn.MultiheadAttention(**cfg),
                  {"query": rn(2, 4, D), "key": rn(2, 5, D), "value": rn(2, 5, D), "mask": rn(4, 5),
                   "kpm": rn(2, 5)},
                  ["query", "key", "value"], {"attn_mask": "mask", "key_padding_mask": "kpm",
                                             "average_attn_weights": False}, ["y", "attn_weights"], seed=51)

    # --- MultiheadAttention without biases, sequence-first cross-attention
    torch.manual_seed(1452)
    cfg = dict(embed_dim=D, num_heads=4, bias=False)
    layer_fixture("mha_no_bias_seq_first", "torch.nn.MultiheadAttention",
                  "nn.MultiheadAttention(8, 4, bias=False), eval: no in_proj_bias, no out_proj.bias; "
                  "y, attn_weights = m(query [seq 3, batch 2, 8], key [5, 2, 8], value [5, 2, 8]).",
                  cfg, nn.MultiheadAttention(**cfg), {"query": rn(3, 2, D), "key": rn(5, 2, D), "value": rn(5, 2, D)},
                  ["query", "key", "value"], {}, ["y", "attn_weights"], seed=52)

    # --- TransformerEncoderLayer with bias=False (its LayerNorms have no bias either)
    torch.manual_seed(1453)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="gelu", batch_first=True,
               norm_first=False, bias=False)
    layer_fixture("transformer_encoder_layer_no_bias", "torch.nn.TransformerEncoderLayer",
                  "nn.TransformerEncoderLayer(8, 2, 16, 0.1, 'gelu', batch_first=True, norm_first=False, bias=False), "
                  "eval; y = m(src, src_key_padding_mask=kpm) (batch 0 has 4 real tokens).",
                  cfg, nn.TransformerEncoderLayer(**cfg), {"src": rn(2, 5, D), "kpm": padding([4, 5], 5)}, ["src"],
                  {"src_key_padding_mask": "kpm"}, ["y"], seed=53)

    # --- TransformerDecoderLayer where whole rows are masked: left padding under a causal mask
    # leaves query 0 of batch 0 no key in self-attention, and batch 1's memory is all padding.
    torch.manual_seed(1454)
    cfg = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation="relu", batch_first=True,
               norm_first=True)
    tgt_kpm = torch.tensor([[True, False, False, False], [False, False, False, False]])
    mem_kpm = torch.tensor([[False, False, False, True, True], [True, True, True, True, True]])
    layer_fixture("transformer_decoder_layer_fully_masked_rows", "torch.nn.TransformerDecoderLayer",
                  "nn.TransformerDecoderLayer(8, 2, 16, 0.1, 'relu', batch_first=True, norm_first=True), eval; "
                  "y = m(tgt [2, 4, 8], memory [2, 5, 8], tgt_mask=causal, tgt_key_padding_mask=tgt_kpm, "
                  "memory_key_padding_mask=mem_kpm) with a bool causal mask, batch 0's first target position "
                  "padded (so its self-attention row masks every key) and batch 1's memory all padding. The "
                  "layers attend with need_weights=False, so such rows get zero weight, not NaN.",
                  cfg, nn.TransformerDecoderLayer(**cfg),
                  {"tgt": rn(2, 4, D), "memory": rn(2, 5, D), "causal": causal_bool(4), "tgt_kpm": tgt_kpm,
                   "mem_kpm": mem_kpm},
                  ["tgt", "memory"], {"tgt_mask": "causal", "tgt_key_padding_mask": "tgt_kpm",
                                      "memory_key_padding_mask": "mem_kpm"}, ["y"], seed=54)

    # --- ModuleList and ModuleDict of mixed layers, parameterless ones included
    class Containers(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.1), nn.LayerNorm(6)])
            self.heads = nn.ModuleDict({
                "proj": nn.Linear(6, 3),
                "act": nn.ReLU(),
                "conv": nn.Conv1d(1, 2, 3, padding=1),
                "norm": nn.GroupNorm(2, 2),
                "embed": nn.Embedding(5, 3, padding_idx=0),
            })

        def forward(self, x, idx):
            for block in self.blocks:
                x = block(x)
            y = self.heads["act"](self.heads["proj"](x))
            z = self.heads["norm"](self.heads["conv"](y.unsqueeze(1)))
            return x, y, z, self.heads["embed"](idx)

    torch.manual_seed(1455)
    layer_fixture("module_list_dict", "Containers",
                  "class Containers(nn.Module): blocks = nn.ModuleList([Linear(4, 6), ReLU(), Dropout(0.1), "
                  "LayerNorm(6)]); heads = nn.ModuleDict({'proj': Linear(6, 3), 'act': ReLU(), 'conv': "
                  "Conv1d(1, 2, 3, padding=1), 'norm': GroupNorm(2, 2), 'embed': Embedding(5, 3, padding_idx=0)}); "
                  "eval; h = the blocks in order on x [2, 4]; y = act(proj(h)); z = norm(conv(y[:, None])); "
                  "e = embed(idx).",
                  {"blocks": ["Linear(4, 6)", "ReLU()", "Dropout(0.1)", "LayerNorm(6)"],
                   "heads": {"proj": "Linear(6, 3)", "act": "ReLU()", "conv": "Conv1d(1, 2, 3, padding=1)",
                             "norm": "GroupNorm(2, 2)", "embed": "Embedding(5, 3, padding_idx=0)"}},
                  Containers(), {"x": rn(2, 4), "idx": torch.tensor([[0, 4, 2], [1, 0, 3]])}, ["x", "idx"], {},
                  ["h", "y", "z", "e"], seed=55)


def main():
    layers()
    more_layers()
    files = sorted(p for p in (FIX / "layers").iterdir() if p.is_file())
    print(f"{len(files)} files under {FIX / 'layers'}")


if __name__ == "__main__":
    main()
