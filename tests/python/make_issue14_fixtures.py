"""Makes the real-PyTorch fixtures of issue 14. Run with PyTorch (2.15 was used), numpy and
safetensors installed; CPU only; deterministic (rerunning rewrites identical files):

    python tests/python/make_issue14_fixtures.py [ROOT]     (ROOT: the repository root; default
                                                             the one this file sits in)

Writes, under ROOT/tests/fixtures/:

- pytorch/batchnorm/: a Conv2d+BatchNorm2d+Linear+BatchNorm1d model's state dict saved normally
  (with `_metadata`), rebuilt without metadata or num_batches_tracked (f16 and f32), with
  version-1 metadata, with version-2 metadata but no counter, and with metadata lacking the
  batch norms' entries; batchnorm_load.json says what PyTorch's load_state_dict does with each.
- pytorch/optim_groups/: SGD and Adam checkpoints with two param groups after StepLR was attached
  (groups carry `initial_lr`), the grads of six steps, the parameters after each, and the
  facts of resuming (StepLR(opt, 2, last_epoch=1) needs `initial_lr`).
- schedulers/: for each LR scheduler, NAME.json (constructor, the lr of every group after each
  of 60 steps, get_last_lr(), state_dict() at steps 0, 30 and 60) and NAME_step30.pt
  ({"optimizer", "scheduler", "epoch": 30} at step 30).
- layers/: transformer, multi-head attention, Conv1d, GroupNorm and Embedding(padding_idx)
  references: NAME.pt (the state dict) and NAME.json in the layer-fixture format.
- pytorch/dtypes_all.pt, dtypes_exotic.pt, dtypes_all.safetensors (+ manifests and .json
  sidecars): one small tensor of every dtype torch.save can write.
- pytorch/globals/: one small file per weights_only-allowed global ckpt does not read yet, and
  globals.json saying what each holds.
- fp8_conversions.json: PyTorch's f32 <-> fp8 conversions (decode tables and rounding cases).

Every .pt gets NAME.pt.manifest.json in the form of tests/fixtures/pytorch/*.manifest.json:
every leaf in order, tensors as {key, dtype, shape, sha256 of the C-contiguous little-endian
bytes of the logical values}, plain values as {key, value}. Values JSON has no literal for are
tagged objects: {"$float": "inf"|"-inf"|"nan"}, {"$complex": [re, im]}, {"$bytes": hex},
{"$bytearray": hex}, {"$dtype": "float32"}; a torch.device is its string ("cuda:1"), as ckpt reads
it. Tensors without data (meta, sparse) have "sha256": null. The "typed" trees in the
sidecar JSONs use the same tags plus containers: {"$tuple": [...]}, {"$set": [...]},
{"$counter": [[k, n], ...]}, {"$ordered_dict": [[k, v], ...]}, {"$dict": [[k, v], ...]} (a dict
whose keys are not all strings), {"$size": [...]}, {"$device": "cuda:1"},
{"$tensor": {dtype, shape, sha256}}; a plain dict with string keys is a JSON object. The
"pickled" trees show data.pkl as read without importing anything: {"$global": "module.name"},
{"$call": name, "args": [...], "setitems"/"appends"/"build": ...} for REDUCE, and
{"$persistent_id": [...]}. In layer-format tensors ({"dtype", "shape", "data"}) a non-finite
value is the string "inf", "-inf" or "nan".
"""

import collections
import copy
import hashlib
import io
import json
import math
import os
import pathlib
import pickle
import pickletools
import struct
import sys
import warnings
import zipfile

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
    # beyond ckpt's DType today; safetensors' names where it has one
    torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.complex64: "C64", torch.complex128: "C128", torch.complex32: "C32",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ", torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
    torch.float8_e8m0fnu: "F8_E8M0",
    torch.float4_e2m1fn_x2: "F4_E2M1FN_X2", torch.bcomplex32: "BC32",
    torch.bits8: "BITS8", torch.bits16: "BITS16", torch.bits1x8: "BITS1X8",
    torch.bits2x4: "BITS2X4", torch.bits4x2: "BITS4X2",
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


def typed(obj):
    """A JSON tree that keeps Python's container and scalar types (tags in the module doc)."""
    if isinstance(obj, torch.Tensor):
        return {"$tensor": {"dtype": DTYPE_NAMES[obj.dtype], "shape": list(obj.shape), "sha256": sha256(obj)}}
    if isinstance(obj, collections.Counter):
        return {"$counter": [[typed(k), typed(v)] for k, v in obj.items()]}
    if isinstance(obj, collections.OrderedDict):
        return {"$ordered_dict": [[typed(k), typed(v)] for k, v in obj.items()]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: typed(v) for k, v in obj.items()}
        return {"$dict": [[typed(k), typed(v)] for k, v in obj.items()]}
    if isinstance(obj, torch.Size):
        return {"$size": list(obj)}
    if isinstance(obj, tuple):
        return {"$tuple": [typed(v) for v in obj]}
    if isinstance(obj, list):
        return [typed(v) for v in obj]
    if isinstance(obj, set):
        return {"$set": [typed(v) for v in obj]}
    return scalar_json(obj)


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


def data_pkl(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        return z.read(name)


class GlobalRef:
    """A GLOBAL the pickle names, not imported; calling it (REDUCE) gives a Call."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        return Call(self.name, args)


class Call:
    """What REDUCE made; SETITEM(S), APPEND(S) and BUILD on it are recorded, not run."""

    def __init__(self, name, args):
        self.name, self.args, self.items, self.appended, self.state = name, args, [], [], None

    def __setitem__(self, k, v):
        self.items.append((k, v))

    def append(self, v):
        self.appended.append(v)

    def extend(self, vs):
        self.appended.extend(vs)

    def __setstate__(self, state):
        self.state = state


def pickled(path):
    """data.pkl read without importing or calling anything: every GLOBAL stays a name, every
    REDUCE a {"$call": name, "args": [...]}, every persistent id a {"$persistent_id": [...]}."""
    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            return GlobalRef(f"{module}.{name}")

        def persistent_load(self, pid):
            return {"$persistent_id": list(pid)}

    def conv(o):
        if isinstance(o, GlobalRef):
            return {"$global": o.name}
        if isinstance(o, Call):
            out = {"$call": o.name, "args": [conv(a) for a in o.args]}
            if o.items:
                out["setitems"] = [[conv(k), conv(v)] for k, v in o.items]
            if o.appended:
                out["appends"] = [conv(v) for v in o.appended]
            if o.state is not None:
                out["build"] = conv(o.state)
            return out
        if isinstance(o, dict) and "$persistent_id" in o:
            return {"$persistent_id": [conv(a) for a in o["$persistent_id"]]}
        if isinstance(o, dict):
            if all(isinstance(k, str) for k in o):
                return {k: conv(v) for k, v in o.items()}
            return {"$dict": [[conv(k), conv(v)] for k, v in o.items()]}
        if isinstance(o, tuple):
            return {"$tuple": [conv(v) for v in o]}
        if isinstance(o, list):
            return [conv(v) for v in o]
        return scalar_json(o)

    return conv(Reader(io.BytesIO(data_pkl(path)), encoding="latin1").load())


def pickle_globals(path):
    names = []
    for op, arg, _ in pickletools.genops(data_pkl(path)):
        if op.name == "GLOBAL":
            name = arg.replace(" ", ".")
            if name not in names:
                names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# BatchNorm without _metadata / num_batches_tracked
# ---------------------------------------------------------------------------------------------

def bn_model():
    return nn.Sequential(collections.OrderedDict([
        ("conv", nn.Conv2d(2, 3, 3, padding=1)), ("bn2d", nn.BatchNorm2d(3)), ("relu", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(3, 4)),
        ("bn1d", nn.BatchNorm1d(4))]))


def counters(model):
    return {name: int(m.num_batches_tracked) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def batchnorm():
    out = FIX / "pytorch" / "batchnorm"
    torch.manual_seed(14)
    model = bn_model()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 2, 5, 5) * 1.5 + 0.5)
    model.eval()
    sd = model.state_dict()
    metadata = {k: dict(v) for k, v in sd._metadata.items()}

    half = {k: v.half() for k, v in sd.items() if v.is_floating_point()}
    f32 = {k: v for k, v in sd.items() if v.is_floating_point()}
    v1 = collections.OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    v1._metadata = collections.OrderedDict((k, {**d, "version": 1}) for k, d in sd._metadata.items())
    v2_missing = collections.OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    v2_missing._metadata = copy.deepcopy(sd._metadata)
    no_bn_entry = collections.OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    no_bn_entry._metadata = collections.OrderedDict((k, d) for k, d in sd._metadata.items() if not k.startswith("bn"))

    files = collections.OrderedDict([
        ("bn_state_dict.pt", (sd, "model.state_dict(): an OrderedDict with _metadata")),
        ("bn_half_no_metadata.pt", (half, "{k: v.half() for k, v in sd.items() if v.is_floating_point()}: a plain dict, no _metadata, no num_batches_tracked")),
        ("bn_f32_no_metadata.pt", (f32, "{k: v for k, v in sd.items() if v.is_floating_point()}: a plain dict, no _metadata, no num_batches_tracked")),
        ("bn_metadata_v1.pt", (v1, "OrderedDict without num_batches_tracked whose _metadata gives every module version 1 (as PyTorch < 0.4.1 wrote)")),
        ("bn_metadata_v2_no_counter.pt", (v2_missing, "OrderedDict without num_batches_tracked but with the real _metadata (BatchNorm version 2)")),
        ("bn_metadata_without_bn_entries.pt", (no_bn_entry, "OrderedDict without num_batches_tracked; _metadata present but lacks the 'bn2d' and 'bn1d' entries")),
    ])
    info = collections.OrderedDict()
    for name, (obj, about) in files.items():
        res = save_pt(obj, out / name)
        back = torch.load(out / name, weights_only=True)
        md = getattr(back, "_metadata", None)
        info[name] = {"about": about, "type": type(back).__name__, **res,
                      "keys": [[k, DTYPE_NAMES[v.dtype], list(v.shape)] for k, v in back.items()],
                      "metadata_after_torch_load": None if md is None else {k: dict(v) for k, v in md.items()}}

    x = torch.randn(3, 2, 5, 5)
    tensors = {"x": x}
    loads = []
    for target in ("fresh", "trained"):
        for name in files:
            torch.manual_seed(99)
            m = bn_model()
            if target == "trained":
                m.train()
                with torch.no_grad():
                    for _ in range(5):
                        m(torch.randn(4, 2, 5, 5))
            before = counters(m)
            for strict in (True, False):
                mm = copy.deepcopy(m)
                sdl = torch.load(out / name, weights_only=True)
                keys_before = list(sdl.keys())
                try:
                    r = mm.load_state_dict(sdl, strict=strict)
                    ok, err = True, None
                    missing, unexpected = list(r.missing_keys), list(r.unexpected_keys)
                except RuntimeError as e:
                    ok, err, missing, unexpected = False, str(e), None, None
                entry = {"file": name, "target": target, "strict": strict, "ok": ok, "error": err,
                         "missing_keys": missing, "unexpected_keys": unexpected,
                         "num_batches_tracked_before": before, "num_batches_tracked_after": counters(mm),
                         "caller_dict_unchanged": list(sdl.keys()) == keys_before,
                         "weights_copied": bool(torch.equal(mm.bn2d.weight.detach(), sdl["bn2d.weight"].float())),
                         "param_dtype_after": str(mm.bn2d.weight.dtype)}
                loads.append(entry)
                if ok and strict and target == "fresh":
                    mm.eval()
                    with torch.no_grad():
                        tensors[f"y_eval.{name}"] = mm(x)
    write_json(out / "batchnorm_load.json", {
        "about": "A Conv2d(2,3,3,padding=1)-BatchNorm2d(3)-ReLU-AdaptiveAvgPool2d(1)-Flatten-Linear(3,4)-BatchNorm1d(4) "
                 "nn.Sequential trained 3 batches (num_batches_tracked 3), saved in the ways `files` lists; "
                 "`loads`: what model.load_state_dict(torch.load(f, weights_only=True), strict) does in PyTorch "
                 "for a fresh model (counters 0) and one trained 5 batches (counters 5); tensors: an eval forward "
                 "of x after each successful strict load into a fresh model.",
        "torch": torch.__version__,
        "metadata": metadata,
        "files": info,
        "rule": "torch/nn/modules/batchnorm.py _NormBase._load_from_state_dict: version = local_metadata.get('version'); "
                "if (version is None or version < 2) and self.track_running_stats and prefix+'num_batches_tracked' "
                "not in state_dict: state_dict[key] = self.num_batches_tracked (the module's current counter) if it is "
                "not None and not on the meta device, else torch.tensor(0, dtype=torch.long). local_metadata is "
                "state_dict._metadata.get(prefix[:-1], {}), or {} when the dict has no _metadata.",
        "loads": loads,
        "tensors": {k: data_json(v) for k, v in tensors.items()},
    })


# ---------------------------------------------------------------------------------------------
# Optimizer checkpoints with two param groups and initial_lr
# ---------------------------------------------------------------------------------------------

def two_group_model():
    return nn.Sequential(collections.OrderedDict([("backbone", nn.Linear(4, 3)), ("head", nn.Linear(3, 2))]))


def two_groups(model):
    return [{"params": list(model.backbone.parameters()), "lr": 0.01, "weight_decay": 1e-3},
            {"params": list(model.head.parameters()), "lr": 0.1, "weight_decay": 0.0}]


OPTIMIZERS = {
    "sgd": ("torch.optim.SGD(groups, lr=0.05, momentum=0.9)", lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9)),
    "adam": ("torch.optim.Adam(groups, lr=0.001, betas=(0.9, 0.99))", lambda g: torch.optim.Adam(g, lr=0.001, betas=(0.9, 0.99))),
}


def optim_groups():
    out = FIX / "pytorch" / "optim_groups"
    for name, (ctor, make) in OPTIMIZERS.items():
        torch.manual_seed(140)
        model = two_group_model()
        names = [n for n, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        opt = make(two_groups(model))
        groups_before_scheduler = [sorted(k for k in g if k != "params") for g in opt.param_groups]
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        gen = torch.Generator().manual_seed(141)
        grads = [{n: torch.randn(params[n].shape, generator=gen) for n in names} for _ in range(6)]
        t = {f"initial.{n}": params[n].detach().clone() for n in names}
        lrs = [[g["lr"] for g in opt.param_groups]]
        ckpt = None
        for s in range(6):
            for n in names:
                params[n].grad = grads[s][n].clone()
                t[f"step{s + 1}.grad.{n}"] = grads[s][n]
            opt.step()
            sched.step()
            for n in names:
                t[f"step{s + 1}.param.{n}"] = params[n].detach().clone()
            lrs.append([g["lr"] for g in opt.param_groups])
            if s == 2:
                ckpt = {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(opt.state_dict()),
                        "scheduler": copy.deepcopy(sched.state_dict()), "epoch": 3}
                res = save_pt(ckpt, out / f"{name}_two_groups.pt")

        # Resume from the file in PyTorch and check steps 4..6 match.
        back = torch.load(out / f"{name}_two_groups.pt", weights_only=True)
        torch.manual_seed(7)
        m2 = two_group_model()
        m2.load_state_dict(back["model"])
        o2 = make(two_groups(m2))
        s2 = torch.optim.lr_scheduler.StepLR(o2, step_size=2, gamma=0.5)
        o2.load_state_dict(back["optimizer"])
        s2.load_state_dict(back["scheduler"])
        p2 = dict(m2.named_parameters())
        worst = 0.0
        for s in range(3, 6):
            for n in names:
                p2[n].grad = grads[s][n].clone()
            o2.step()
            s2.step()
            for n in names:
                worst = max(worst, (p2[n] - t[f"step{s + 1}.param.{n}"]).abs().max().item())

        # StepLR(opt, 2, last_epoch=...) on an optimizer without / with initial_lr.
        facts = {}
        torch.manual_seed(7)
        m3 = two_group_model()
        o3 = make(two_groups(m3))
        try:
            torch.optim.lr_scheduler.StepLR(o3, 2, last_epoch=1)
            facts["fresh_optimizer"] = "no error"
        except KeyError as e:
            facts["fresh_optimizer"] = {"raises": "KeyError", "message": e.args[0]}
        for last_epoch in (1, 2):
            o4 = make(two_groups(two_group_model()))
            o4.load_state_dict(back["optimizer"])
            lr_before = [g["lr"] for g in o4.param_groups]
            s4 = torch.optim.lr_scheduler.StepLR(o4, 2, gamma=0.5, last_epoch=last_epoch)
            facts[f"after_load_state_dict_last_epoch_{last_epoch}"] = {
                "ok": True, "lr_before": lr_before, "lr_after_constructor": [g["lr"] for g in o4.param_groups],
                "base_lrs": s4.base_lrs, "scheduler_last_epoch": s4.last_epoch}
        saved_groups = back["optimizer"]["param_groups"]
        write_json(out / f"{name}_two_groups.json", {
            "about": f"nn.Sequential(backbone=Linear(4,3), head=Linear(3,2)); {ctor} with groups "
                     "[{backbone params, lr 0.01, weight_decay 1e-3}, {head params, lr 0.1, weight_decay 0.0}]; "
                     "StepLR(opt, step_size=2, gamma=0.5) attached; each step s sets p.grad = stepS.grad.NAME, "
                     "opt.step(), sched.step(). The .pt is {model, optimizer, scheduler, epoch: 3} after step 3.",
            "torch": torch.__version__,
            "file": f"{name}_two_groups.pt", **res,
            "param_names_in_order": names,
            "group_keys_before_scheduler": groups_before_scheduler,
            "saved_param_groups": typed(saved_groups),
            "saved_scheduler": typed(back["scheduler"]),
            "lr_after_step": lrs,
            "resume": {"how": "new model and optimizer (same constructor), StepLR(opt, 2, gamma=0.5), "
                              "opt.load_state_dict(ckpt['optimizer']), sched.load_state_dict(ckpt['scheduler']), "
                              "steps 4..6 with the same grads",
                       "max_abs_diff_vs_uninterrupted": worst,
                       "note": "load_state_dict replaces each group's hyperparameters with the saved group's "
                               "(every key, initial_lr included, unknown keys kept), keeping only 'params' "
                               "(and param_names) from the live optimizer; __setstate__ then setdefaults the "
                               "option keys a group lacks."},
            "steplr_last_epoch": facts,
            "tensors": {k: data_json(v) for k, v in t.items()},
        })


# ---------------------------------------------------------------------------------------------
# LR schedulers
# ---------------------------------------------------------------------------------------------

class WarmupLambda:
    """A callable object: LambdaLR saves its __dict__ ({'warmup': 5}), not the code."""

    def __init__(self, warmup):
        self.warmup = warmup

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.warmup)


def decay(epoch):
    return 0.95 ** epoch


S = torch.optim.lr_scheduler

# metric for ReduceLROnPlateau.step(metric) at steps 1..60: improves (by more and by less than the
# 5% threshold), plateaus (a reduction after patience+1 bad steps, then a cooldown), improves once
# more at step 23 (inside a cooldown), plateaus until both groups sit at their min_lr.
PLATEAU_METRICS = ([1.0, 0.8, 0.7, 0.65, 0.6, 0.58, 0.59, 0.6, 0.57, 0.58]
                   + [0.58] * 12
                   + [0.5, 0.49, 0.51]
                   + [0.5] * 35)
assert len(PLATEAU_METRICS) == 60

SCHEDULERS = {
    "steplr": ("StepLR(opt, step_size=7, gamma=0.5)", {"step_size": 7, "gamma": 0.5},
               lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
    "multisteplr": ("MultiStepLR(opt, milestones=[10, 25, 25, 40], gamma=0.3)", {"milestones": [10, 25, 25, 40], "gamma": 0.3},
                    lambda o: S.MultiStepLR(o, milestones=[10, 25, 25, 40], gamma=0.3)),
    "exponentiallr": ("ExponentialLR(opt, gamma=0.93)", {"gamma": 0.93}, lambda o: S.ExponentialLR(o, gamma=0.93)),
    "cosineannealinglr": ("CosineAnnealingLR(opt, T_max=20, eta_min=0.001)", {"T_max": 20, "eta_min": 0.001},
                          lambda o: S.CosineAnnealingLR(o, T_max=20, eta_min=0.001)),
    "linearlr": ("LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=12)",
                 {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 12},
                 lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=12)),
    "onecyclelr": ("OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=60) (pct_start 0.3, cos, cycle_momentum, "
                   "base_momentum 0.85, max_momentum 0.95, div_factor 25, final_div_factor 1e4)",
                   {"max_lr": [0.5, 0.05], "total_steps": 60},
                   lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.05], total_steps=60)),
    "onecyclelr_linear_three_phase": (
        "OneCycleLR(opt, max_lr=0.3, total_steps=60, pct_start=0.25, anneal_strategy='linear', three_phase=True, "
        "base_momentum=0.8, max_momentum=0.9, div_factor=10.0, final_div_factor=100.0)",
        {"max_lr": 0.3, "total_steps": 60, "pct_start": 0.25, "anneal_strategy": "linear", "three_phase": True,
         "base_momentum": 0.8, "max_momentum": 0.9, "div_factor": 10.0, "final_div_factor": 100.0},
        lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=60, pct_start=0.25, anneal_strategy="linear",
                               three_phase=True, base_momentum=0.8, max_momentum=0.9, div_factor=10.0,
                               final_div_factor=100.0)),
    "reducelronplateau": ("ReduceLROnPlateau(opt, mode='min', factor=0.5, patience=2, threshold=0.05, "
                          "threshold_mode='rel', cooldown=3, min_lr=[0.01, 0.001], eps=1e-8); step(metrics[i])",
                          {"mode": "min", "factor": 0.5, "patience": 2, "threshold": 0.05, "threshold_mode": "rel",
                           "cooldown": 3, "min_lr": [0.01, 0.001], "eps": 1e-8},
                          lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=0.05,
                                                        threshold_mode="rel", cooldown=3, min_lr=[0.01, 0.001], eps=1e-8)),
    "sequentiallr": ("SequentialLR(opt, [LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=5), "
                     "CosineAnnealingLR(opt, T_max=25, eta_min=0.001), ExponentialLR(opt, gamma=0.9)], milestones=[5, 30])",
                     {"schedulers": [["LinearLR", {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 5}],
                                     ["CosineAnnealingLR", {"T_max": 25, "eta_min": 0.001}],
                                     ["ExponentialLR", {"gamma": 0.9}]], "milestones": [5, 30]},
                     lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
                                                  S.CosineAnnealingLR(o, T_max=25, eta_min=0.001),
                                                  S.ExponentialLR(o, gamma=0.9)], milestones=[5, 30])),
    "lambdalr": ("LambdaLR(opt, lr_lambda=[decay, WarmupLambda(5)]) with decay(e) = 0.95 ** e (a function) and "
                 "WarmupLambda(5)(e) = min(1.0, (e + 1) / 5) (an object with __dict__ {'warmup': 5})",
                 {"lr_lambda": ["0.95 ** epoch", "min(1.0, (epoch + 1) / 5)"]},
                 lambda o: S.LambdaLR(o, lr_lambda=[decay, WarmupLambda(5)])),
}


def sched_optimizer():
    torch.manual_seed(1400)
    p0 = nn.Parameter(torch.randn(2, 2))
    p1 = nn.Parameter(torch.randn(2))
    return torch.optim.SGD([{"params": [p0], "lr": 0.1}, {"params": [p1], "lr": 0.02}], lr=0.1, momentum=0.9)


def sched_record(opt, sched):
    rec = {"last_epoch": sched.last_epoch, "lr": [g["lr"] for g in opt.param_groups],
           "last_lr": list(sched.get_last_lr())}
    if isinstance(sched, S.OneCycleLR):
        rec["momentum"] = [g["momentum"] for g in opt.param_groups]
    if isinstance(sched, S.ReduceLROnPlateau):
        rec.update(best=float_json(sched.best), num_bad_epochs=sched.num_bad_epochs,
                   cooldown_counter=sched.cooldown_counter)
    return rec


def sched_step(sched, opt, i):
    opt.step()  # no grads: changes nothing, but marks the optimizer as stepped
    if isinstance(sched, S.ReduceLROnPlateau):
        sched.step(PLATEAU_METRICS[i - 1])
    else:
        sched.step()


def schedulers():
    out = FIX / "schedulers"
    for name, (ctor, args, make) in SCHEDULERS.items():
        opt = sched_optimizer()
        groups_before = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        sched = make(opt)
        steps = [sched_record(opt, sched)]
        states = {"0": typed(copy.deepcopy(sched.state_dict()))}
        res = None
        for i in range(1, 61):
            sched_step(sched, opt, i)
            steps.append(sched_record(opt, sched))
            if i == 30:
                states["30"] = typed(copy.deepcopy(sched.state_dict()))
                res = save_pt({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": 30},
                              out / f"{name}_step30.pt")
        states["60"] = typed(copy.deepcopy(sched.state_dict()))

        # Resume from the file in PyTorch: the scheduler is built before the optimizer's state is
        # loaded, as PyTorch's docs say.
        back = torch.load(out / f"{name}_step30.pt", weights_only=True)
        o2 = sched_optimizer()
        s2 = make(o2)
        o2.load_state_dict(back["optimizer"])
        s2.load_state_dict(back["scheduler"])
        resumed = [sched_record(o2, s2)]
        for i in range(31, 61):
            sched_step(s2, o2, i)
            resumed.append(sched_record(o2, s2))
        matches = resumed == steps[30:]
        doc = {
            "about": f"torch.optim.lr_scheduler.{ctor} on SGD([{{p0 [2,2], lr 0.1}}, {{p1 [2], lr 0.02}}], lr=0.1, "
                     "momentum=0.9). steps[0] is right after the constructor; steps[i] after the i-th "
                     "opt.step() (no grads, so parameters never change) + scheduler.step()"
                     + ("(metrics[i-1])" if name == "reducelronplateau" else "")
                     + ". lr: each param group's 'lr'; last_lr: scheduler.get_last_lr(). state_dict: "
                       "scheduler.state_dict() after steps 0, 30, 60, in the typed form. The .pt holds "
                       "{'optimizer': opt.state_dict(), 'scheduler': sched.state_dict(), 'epoch': 30} after step 30.",
            "torch": torch.__version__,
            "scheduler": type(sched).__name__,
            "constructor": args,
            "optimizer": {"type": "SGD", "defaults": {"lr": 0.1, "momentum": 0.9},
                          "param_groups_before_scheduler": typed(groups_before),
                          "param_groups_after_constructor": None},
            "checkpoint": f"{name}_step30.pt", **res,
            "resume_in_pytorch": {"how": "new optimizer, same scheduler constructor, opt.load_state_dict, "
                                         "sched.load_state_dict, then steps 31..60", "matches_steps_30_to_60": matches},
            "steps": steps,
            "state_dict": states,
        }
        if name == "reducelronplateau":
            doc["metrics"] = PLATEAU_METRICS
        opt_fresh = sched_optimizer()
        make(opt_fresh)
        doc["optimizer"]["param_groups_after_constructor"] = typed(
            [{k: v for k, v in g.items() if k != "params"} for g in opt_fresh.param_groups])
        write_json(out / f"{name}.json", doc)


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
        assert (r is None and a is None) or torch.equal(r, a), name
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
            fast_diff[o] = (f - r).abs().max().item()
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


# ---------------------------------------------------------------------------------------------
# Dtypes
# ---------------------------------------------------------------------------------------------

F8_VALUES = [0.0, 0.5, -1.5, 3.140625, 448.0, 2.0 ** -9, -0.0, float("nan")]


def dtype_tensors():
    t = collections.OrderedDict()
    t["f64"] = torch.tensor([1.5, -2.25, 1e300], dtype=torch.float64)
    t["f32"] = torch.tensor([[0.1, -0.2, 3.0], [float("inf"), -0.0, 1e-40]], dtype=torch.float32)
    t["f32_scalar"] = torch.tensor(2.5)
    t["f16"] = torch.tensor([1.0, -65504.0, 6e-8, 0.333], dtype=torch.float16)
    t["bf16"] = torch.tensor([1.0, -3.0e38, 0.1], dtype=torch.bfloat16)
    t["i64"] = torch.tensor([-(2 ** 63), 2 ** 63 - 1, 0], dtype=torch.int64)
    t["i32"] = torch.tensor([-(2 ** 31), 2 ** 31 - 1], dtype=torch.int32)
    t["i16"] = torch.tensor([-32768, 32767, 1], dtype=torch.int16)
    t["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    t["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    t["bool"] = torch.tensor([True, False, True])
    t["u16"] = torch.tensor([0, 1, 65535, 32768], dtype=torch.uint16)
    t["u32"] = torch.tensor([0, 1, 4294967295, 2147483648], dtype=torch.uint32)
    t["u64"] = torch.tensor([0, 1, 2 ** 64 - 1, 2 ** 63], dtype=torch.uint64)
    t["c64"] = torch.tensor([1 + 2j, -0.5 - 0.25j, complex(float("inf"), 0)], dtype=torch.complex64)
    t["c128"] = torch.tensor([[1 + 2j, 3 - 4j], [0.1j, -1e300 + 0j]], dtype=torch.complex128)
    t["c32"] = torch.tensor([1 + 2j, -0.5 + 0.25j], dtype=torch.complex32)
    src = torch.tensor(F8_VALUES, dtype=torch.float32)
    t["f8_e4m3fn"] = src.to(torch.float8_e4m3fn).reshape(2, 4)
    t["f8_e5m2"] = torch.tensor(F8_VALUES + [57344.0, float("inf")], dtype=torch.float32).to(torch.float8_e5m2)
    t["f8_e4m3fnuz"] = torch.tensor([0.0, 0.5, -1.5, 240.0, 2.0 ** -10, float("nan")]).to(torch.float8_e4m3fnuz)
    t["f8_e5m2fnuz"] = torch.tensor([0.0, 0.5, -1.5, 57344.0, 2.0 ** -17, float("nan")]).to(torch.float8_e5m2fnuz)
    t["f8_e8m0fnu"] = torch.tensor([1.0, 2.0, 0.5, 2.0 ** -127, 2.0 ** 127, float("nan")]).to(torch.float8_e8m0fnu)
    # a strided view sharing f8_e4m3fn's storage (offset 1, stride (1, 4))
    t["f8_e4m3fn_view"] = t["f8_e4m3fn"].t()[1:]
    t["u16_scalar"] = torch.tensor(513, dtype=torch.uint16)
    return t


def exotic_tensors():
    t = collections.OrderedDict()
    u8 = torch.tensor([0x00, 0x21, 0x7f, 0xf5], dtype=torch.uint8)
    t["f4_e2m1fn_x2"] = u8.clone().view(torch.float4_e2m1fn_x2)
    t["bits8"] = u8.clone().view(torch.bits8)
    t["bits1x8"] = u8.clone().view(torch.bits1x8)
    t["bits2x4"] = u8.clone().view(torch.bits2x4)
    t["bits4x2"] = u8.clone().view(torch.bits4x2)
    t["bits16"] = torch.tensor([0x0102, -1], dtype=torch.int16).view(torch.bits16)
    t["bc32"] = torch.tensor([0x3F80_4000, 0], dtype=torch.int32).view(torch.bcomplex32)  # bf16 pair (2.0, 1.0)
    return t


def values_json(t):
    if t.dtype in (torch.bits8, torch.bits16, torch.bits1x8, torch.bits2x4, torch.bits4x2, torch.float4_e2m1fn_x2):
        return None
    if t.is_complex():
        c = t.to(torch.complex128).reshape(-1).tolist()
        return [[float_json(z.real), float_json(z.imag)] for z in c]
    if t.is_floating_point():
        return [float_json(x) for x in t.double().reshape(-1).tolist()]
    return t.reshape(-1).tolist()


def dtype_sidecar(tensors, path):
    as_pickled = pickled(path.with_suffix(".pt"))
    if "$call" in as_pickled:  # an OrderedDict: REDUCE () then SETITEMS
        as_pickled = dict(as_pickled.get("setitems", []))
    entries = []
    for k, v in tensors.items():
        call = as_pickled[k]
        pid = call["args"][0]["$persistent_id"]
        entries.append({
            "key": k, "torch_dtype": str(v.dtype).removeprefix("torch."), "dtype": DTYPE_NAMES[v.dtype],
            "itemsize": v.dtype.itemsize, "shape": list(v.shape), "stride": list(v.stride()),
            "storage_offset": v.storage_offset(),
            "rebuild": call["$call"], "storage_global": pid[1]["$global"], "storage_key": pid[2],
            "storage_numel_in_pickle": pid[4],
            "dtype_global": call["args"][6]["$global"] if len(call["args"]) > 6 else None,
            "pickled": call,
            "bytes_hex": tensor_bytes(v).hex(),
            "values": values_json(v),
        })
    write_json(path, {"about": "what each tensor of the .pt is and how torch.save pickled it; bytes_hex: the "
                               "C-contiguous little-endian bytes (the manifest's sha256 is of these); values: "
                               "as float64 / [re, im] / ints, null for bit-packed dtypes",
                      "torch": torch.__version__, "globals_in_pickle": pickle_globals(path.with_suffix(".pt")),
                      "entries": entries}, indent=1)


def dtypes():
    out = FIX / "pytorch"
    allt = dtype_tensors()
    res_all = save_pt(allt, out / "dtypes_all.pt")
    dtype_sidecar(allt, out / "dtypes_all.json")
    ex = exotic_tensors()
    res_ex = save_pt(ex, out / "dtypes_exotic.pt")
    dtype_sidecar(ex, out / "dtypes_exotic.json")

    from safetensors.torch import load_file, save_file
    st = collections.OrderedDict()
    refused = {}
    for k, v in list(allt.items()) + list(ex.items()):
        if k == "f8_e4m3fn_view":
            continue
        try:
            save_file({k: v.contiguous()}, "/tmp/_probe.safetensors")
        except Exception as e:  # noqa: BLE001
            refused[k] = f"save_file: {type(e).__name__}: {e}"
            continue
        try:
            load_file("/tmp/_probe.safetensors")
        except Exception as e:  # noqa: BLE001
            refused[k] = f"saves, but load_file fails: {type(e).__name__}: {e}"
            continue
        st[k] = v.contiguous().clone()
    os.remove("/tmp/_probe.safetensors")
    save_file(st, out / "dtypes_all.safetensors")
    os.chmod(out / "dtypes_all.safetensors", 0o644)  # save_file creates it 0600
    raw = open(out / "dtypes_all.safetensors", "rb").read()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    # the file's own dtype names and shapes (F4 counts 4-bit elements: twice torch's shape)
    write_json(out / "dtypes_all.safetensors.manifest.json", {"entries": [
        {"key": k, "dtype": header[k]["dtype"], "shape": header[k]["shape"], "sha256": sha256(v)} for k, v in st.items()]},
        indent=1)
    return {"dtypes_all.pt": res_all, "dtypes_exotic.pt": res_ex,
            "safetensors": {"kept": {k: header[k]["dtype"] for k in st}, "left_out": refused}}


# ---------------------------------------------------------------------------------------------
# weights_only globals ckpt does not read
# ---------------------------------------------------------------------------------------------

def globals_():
    out = FIX / "pytorch" / "globals"
    p = nn.Parameter(torch.arange(3, dtype=torch.float32))
    p.tag = "frozen-in-stage-1"
    p.lr_scale = 0.5
    ts = torch.tensor([1.0, 2.0])
    ts.note = "attribute on a plain tensor"
    files = collections.OrderedDict([
        ("counter.pt", ({"milestones": collections.Counter([10, 25, 25, 40]), "empty": collections.Counter()},
                        "collections.Counter (REDUCE of collections.Counter with a dict argument); as MultiStepLR saves milestones")),
        ("set.pt", ({"ids": {3, 1, 2}, "empty": set()},
                    "builtins.set, pickled by protocol 2 as GLOBAL '__builtin__ set' REDUCE ([items],)")),
        ("complex.pt", ({"z": complex(1.5, -2.0), "j": 1j}, "builtins.complex (GLOBAL '__builtin__ complex', REDUCE (re, im))")),
        ("bytearray.pt", ({"buf": bytearray(b"\x00\x01\xfe\xff")},
                          "builtins.bytearray of _codecs.encode(str, 'latin1') (GLOBAL '__builtin__ bytearray')")),
        ("bytes.pt", ({"raw": b"\x00ab\xff", "one": b"\x80"},
                      "bytes: protocol 2 writes _codecs.encode(latin1-decoded str, 'latin1'); the str is UTF-8 in BINUNICODE")),
        ("bytes_empty.pt", ({"empty": b""},
                            "b'': protocol 2 writes GLOBAL '__builtin__ bytes' REDUCE (), which weights_only refuses "
                            "(builtins.bytes is not allowed); a refusal fixture")),
        ("dtype_objects.pt", ({"dtype": torch.float32, "dtypes": [torch.bfloat16, torch.float8_e4m3fn, torch.uint16, torch.bool]},
                              "torch.dtype objects: a bare GLOBAL 'torch float32' (no REDUCE)")),
        ("size_device.pt", ({"size": torch.Size([2, 3]), "empty_size": torch.Size([]),
                             "devices": [torch.device("cpu"), torch.device("cuda", 1), torch.device("meta")]},
                            "torch.Size((2, 3)) and torch.device('cpu'), ('cuda', 1), ('meta') (REDUCE with 1 or 2 args)")),
        ("tensor_v3.pt", ({"u16": torch.tensor([1, 65535], dtype=torch.uint16),
                           "fp8": torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn),
                           "fp8_tail": torch.tensor([0.5, -2.0, 448.0, 1.0]).to(torch.float8_e5m2)[2:],
                           "u16_tail": torch.tensor([1, 2, 3, 4], dtype=torch.uint16)[1:]},
                          "torch._utils._rebuild_tensor_v3(UntypedStorage, offset, size, stride, requires_grad, hooks, dtype); "
                          "the storage numel in the persistent id is in bytes, the offset in elements of dtype "
                          "(u16_tail: numel 8, offset 1)")),
        ("complex_tensors.pt", ({"c64": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64),
                                 "c128": torch.tensor([0.5j], dtype=torch.complex128)},
                                "complex tensors: _rebuild_tensor_v2 over torch.ComplexFloatStorage / torch.ComplexDoubleStorage")),
        ("conj_neg_bits.pt", ({"conj": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj(),
                               "neg": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj().imag,
                               "plain": torch.tensor([1.0, 2.0])},
                              "_rebuild_tensor_v2 with a 7th argument, the metadata dict {'conj': True} / {'neg': True}: the "
                              "storage holds the values before conjugation / negation. 'neg' is a float32 tensor "
                              "(x.conj().imag) whose logical values are minus its stored bytes")),
        ("neg_bit.pt", ({"neg": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj().imag},
                        "only a float32 tensor with the negative bit (x.conj().imag, logical values [-2, 4]): "
                        "_rebuild_tensor_v2 over FloatStorage (numel 4, offset 1, stride 2) with metadata "
                        "{'neg': True}; the stored floats are [2, -4]. A reader that ignores the 7th argument "
                        "reads [2, -4]")),
        ("parameter_with_state.pt", ({"weight": p},
                                     "torch._utils._rebuild_parameter_with_state(data, requires_grad, hooks, state) for an "
                                     "nn.Parameter with Python attributes; state is {'tag': ..., 'lr_scale': 0.5}")),
        ("tensor_with_state.pt", ({"t": ts},
                                  "torch._tensor._rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, state) for a "
                                  "plain tensor carrying a Python attribute (GLOBAL 'torch Tensor' as the type)")),
        ("meta_tensor.pt", ({"m": torch.empty(2, 3, device="meta"), "m16": torch.empty(4, dtype=torch.float16, device="meta")},
                            "torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad): no storage")),
        ("sparse_coo.pt", ({"s": torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0], (3,))},
                           "torch._utils._rebuild_sparse_tensor(torch.serialization._get_layout('torch.sparse_coo'), "
                           "(indices, values, torch.Size, is_coalesced)) -- exotic; for a refusal test")),
        ("python_values.pt", ({"big": 2 ** 64 - 1, "neg_big": -(2 ** 70), "inf": float("inf"), "neg_inf": float("-inf"),
                               "nan": float("nan"), "neg_zero": -0.0, "tuple": (1, "a", None), "nested_empty": {},
                               "int_keys": {0: "a", -1: "b", 2 ** 40: "c"}, "bool_key": {True: 1}},
                              "plain Python values ckpt already reads, at their edges (LONG1, BINFLOAT inf/nan, int and bool keys)")),
    ])
    info = collections.OrderedDict()
    for name, (obj, about) in files.items():
        res = save_pt(obj, out / name)
        entry = {"about": about, **res, "globals": pickle_globals(out / name), "typed": typed(obj),
                 "pickled": pickled(out / name)}
        if name in ("conj_neg_bits.pt", "neg_bit.pt"):
            entry["stored_bytes_hex"] = {k: bytes(v.untyped_storage()).hex() for k, v in obj.items()}
            entry["logical_bytes_hex"] = {k: tensor_bytes(v).hex() for k, v in obj.items()}
            entry["is_conj_after_load"] = {k: v.is_conj() for k, v in torch.load(out / name, weights_only=True).items()}
            entry["is_neg_after_load"] = {k: v.is_neg() for k, v in torch.load(out / name, weights_only=True).items()}
        if name == "parameter_with_state.pt":
            back = torch.load(out / name, weights_only=True)["weight"]
            entry["after_load"] = {"type": type(back).__name__, "tag": getattr(back, "tag", None),
                                   "lr_scale": getattr(back, "lr_scale", None), "requires_grad": back.requires_grad}
        if name == "tensor_with_state.pt":
            back = torch.load(out / name, weights_only=True)["t"]
            entry["after_load"] = {"type": type(back).__name__, "note": getattr(back, "note", None)}
        info[name] = entry
    write_json(out / "globals.json", {"about": "one file per weights_only-allowed global (or value) that ckpt's "
                                               "unpickler does not accept yet; typed: the saved object",
                                      "torch": torch.__version__, "files": info}, indent=1)


# ---------------------------------------------------------------------------------------------
# fp8 <-> f32
# ---------------------------------------------------------------------------------------------

FP8 = [("float8_e4m3fn", torch.float8_e4m3fn), ("float8_e5m2", torch.float8_e5m2),
       ("float8_e4m3fnuz", torch.float8_e4m3fnuz), ("float8_e5m2fnuz", torch.float8_e5m2fnuz),
       ("float8_e8m0fnu", torch.float8_e8m0fnu)]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def fp8():
    codes = torch.arange(256, dtype=torch.uint8)
    decode = {}
    for name, dt in FP8:
        decode[name] = [int(b) for b in codes.view(dt).float().view(torch.int32).tolist()]
        decode[name] = [b & 0xFFFFFFFF for b in decode[name]]
    # inputs: every finite code's value, the midpoints between neighbours and one f32 ulp either side,
    # specials, and seeded log-uniform randoms
    inputs = set()
    for name, dt in FP8:
        vals = sorted({struct.unpack("<f", struct.pack("<I", b))[0] for b in decode[name]
                       if math.isfinite(struct.unpack("<f", struct.pack("<I", b))[0])})
        for v in vals:
            inputs.add(f32_bits(v))
        for a, b in zip(vals, vals[1:]):
            mid = torch.tensor([(a + b) / 2], dtype=torch.float32)
            for m in (mid, torch.nextafter(mid, torch.tensor([-math.inf])), torch.nextafter(mid, torch.tensor([math.inf]))):
                inputs.add(int(m.view(torch.int32).item()) & 0xFFFFFFFF)
    for x in [0.1, 448.0, 500.0, 1e-9, float("inf"), float("-inf"), -0.0, 1e38, 3e38, 2.0 ** -149, 2.0 ** -127,
              2.0 ** -128, 61440.0, 65536.0]:
        inputs.add(f32_bits(x))
    inputs.update([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF])  # NaNs, both signs
    gen = torch.Generator().manual_seed(1450)
    rnd = (torch.rand(800, generator=gen) * 60 - 40)
    sign = torch.where(torch.rand(800, generator=gen) < 0.5, -1.0, 1.0)
    for v in (sign * torch.exp2(rnd)).tolist():
        inputs.add(f32_bits(v))
    inputs = sorted(inputs)
    x = torch.tensor([b - 2 ** 32 if b >= 2 ** 31 else b for b in inputs], dtype=torch.int32).view(torch.float32)
    assert [int(b) & 0xFFFFFFFF for b in x.view(torch.int32).tolist()] == inputs
    encode = {name: bytes(x.to(dt).view(torch.uint8).tolist()).hex() for name, dt in FP8}

    table_inputs = [0.1, 0.3, 1.0625, 1.125, 448.0, 464.0, 480.0, 500.0, 240.0, 248.0, 57344.0, 61440.0, 1e-9,
                    2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -11, 2.0 ** -16, 2.0 ** -17, 3.0, 0.75, float("nan"),
                    -float("nan"), float("inf"), float("-inf"), -0.0, -500.0]
    table = []
    for v in table_inputs:
        row = {"f32": float_json(v), "f32_bits": f"0x{f32_bits(v):08x}"}
        for name, dt in FP8:
            y = torch.tensor([v], dtype=torch.float32).to(dt)
            back = y.float().item()
            row[name] = {"byte": f"0x{y.view(torch.uint8).item():02x}", "back": float_json(back)}
        table.append(row)
    write_json(FIX / "fp8_conversions.json", {
        "about": "PyTorch's conversions between float32 and its fp8 dtypes (x.to(dtype) and y.float(), CPU). "
                 "decode[dtype][code]: the f32 bit pattern of code (0..255) as float; encode[dtype]: hex, one byte "
                 "per inputs_f32_bits entry, of torch.tensor(inputs).to(dtype); table: a few readable cases. "
                 "Conversions from f64/f16/bf16 go through f32 (checked for e4m3fn and e4m3fnuz).",
        "torch": torch.__version__,
        "decode_f32_bits": decode,
        "inputs_f32_bits": inputs,
        "encode": encode,
        "table": table,
    })
    return table


def main():
    batchnorm()
    optim_groups()
    schedulers()
    layers()
    res = dtypes()
    write_json(FIX / "pytorch" / "dtypes_all.safetensors.json", res["safetensors"], indent=1)
    globals_()
    fp8()
    files = sorted(p for p in FIX.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files, {total} bytes, under {FIX}")


if __name__ == "__main__":
    main()
