"""Makes the real-PyTorch fixtures of ckpt's optimizers with parameter groups and its LR
schedulers. Run with PyTorch (2.15 was used) and numpy installed; CPU only; deterministic
(rerunning rewrites identical files):

    python tests/python/make_scheduler_fixtures.py [ROOT]    (ROOT: the repository root; default
                                                              the one this file sits in)

The optimizer and scheduler parts of issue 14's fixture generator, plus the closed forms and
`last_epoch` resumes. Writes, under ROOT/tests/fixtures/:

- pytorch/optim_groups/: SGD and Adam checkpoints with two param groups after StepLR was attached
  (groups carry `initial_lr`), the grads of six steps, the parameters after each, and the
  facts of resuming (StepLR(opt, 2, last_epoch=1) needs `initial_lr`).
- schedulers/: for each LR scheduler, NAME.json (constructor, the lr of every group after each
  of 60 steps, get_last_lr(), state_dict() at steps 0, 30 and 60) and NAME_step30.pt
  ({"optimizer", "scheduler", "epoch": 30} at step 30); closed_form.json (the deprecated
  `step(epoch)`, which uses `_get_closed_form_lr`, at a list of epochs on a fresh scheduler);
  last_epoch.json (each scheduler built with `last_epoch=29` on an optimizer loaded from
  NAME_step30.pt, then stepped 30 times).

Every .pt gets NAME.pt.manifest.json: every leaf in order, tensors as {key, dtype, shape, sha256
of the C-contiguous little-endian bytes of the logical values}, plain values as {key, value}.
Values JSON has no literal for are tagged objects: {"$float": "inf"|"-inf"|"nan"}. The "typed"
trees in the sidecar JSONs keep Python's types with tags: {"$tuple": [...]}, {"$counter":
[[k, n], ...]}, {"$dict": [[k, v], ...]} (a dict whose keys are not all strings), {"$tensor":
{dtype, shape, sha256}}; a plain dict with string keys is a JSON object. Layer-format tensors
are {"dtype", "shape", "data"}.
"""

import collections
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
               lambda o, **kw: S.StepLR(o, step_size=7, gamma=0.5, **kw)),
    "multisteplr": ("MultiStepLR(opt, milestones=[10, 25, 25, 40], gamma=0.3)", {"milestones": [10, 25, 25, 40], "gamma": 0.3},
                    lambda o, **kw: S.MultiStepLR(o, milestones=[10, 25, 25, 40], gamma=0.3, **kw)),
    "exponentiallr": ("ExponentialLR(opt, gamma=0.93)", {"gamma": 0.93}, lambda o, **kw: S.ExponentialLR(o, gamma=0.93, **kw)),
    "cosineannealinglr": ("CosineAnnealingLR(opt, T_max=20, eta_min=0.001)", {"T_max": 20, "eta_min": 0.001},
                          lambda o, **kw: S.CosineAnnealingLR(o, T_max=20, eta_min=0.001, **kw)),
    "linearlr": ("LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=12)",
                 {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 12},
                 lambda o, **kw: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=12, **kw)),
    "onecyclelr": ("OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=60) (pct_start 0.3, cos, cycle_momentum, "
                   "base_momentum 0.85, max_momentum 0.95, div_factor 25, final_div_factor 1e4)",
                   {"max_lr": [0.5, 0.05], "total_steps": 60},
                   lambda o, **kw: S.OneCycleLR(o, max_lr=[0.5, 0.05], total_steps=60, **kw)),
    "onecyclelr_linear_three_phase": (
        "OneCycleLR(opt, max_lr=0.3, total_steps=60, pct_start=0.25, anneal_strategy='linear', three_phase=True, "
        "base_momentum=0.8, max_momentum=0.9, div_factor=10.0, final_div_factor=100.0)",
        {"max_lr": 0.3, "total_steps": 60, "pct_start": 0.25, "anneal_strategy": "linear", "three_phase": True,
         "base_momentum": 0.8, "max_momentum": 0.9, "div_factor": 10.0, "final_div_factor": 100.0},
        lambda o, **kw: S.OneCycleLR(o, max_lr=0.3, total_steps=60, pct_start=0.25, anneal_strategy="linear",
                               three_phase=True, base_momentum=0.8, max_momentum=0.9, div_factor=10.0,
                               final_div_factor=100.0, **kw)),
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
                 lambda o, **kw: S.LambdaLR(o, lr_lambda=[decay, WarmupLambda(5)], **kw)),
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


# Closed forms: the deprecated `step(epoch)` sets last_epoch and calls `_get_closed_form_lr`.
CLOSED_FORM = ["steplr", "multisteplr", "exponentiallr", "cosineannealinglr", "linearlr"]
CLOSED_FORM_EPOCHS = [3, 7, 10, 0, 25, 26, 59, 40, 14, 21, 12, 1]


def closed_form():
    doc = {"about": "A fresh scheduler (constructor as in NAME.json, on the same optimizer) is given "
                    "sched.step(epoch) for each epoch in turn; lr[i] is every group's lr after the i-th call. "
                    "step(epoch) uses _get_closed_form_lr, which reads base_lrs, not the current lr.",
           "torch": torch.__version__, "epochs": CLOSED_FORM_EPOCHS, "schedulers": {}}
    for name in CLOSED_FORM:
        _, args, make = SCHEDULERS[name]
        opt = sched_optimizer()
        sched = make(opt)
        lrs = []
        for e in CLOSED_FORM_EPOCHS:
            opt.step()
            sched.step(e)
            assert sched.last_epoch == e
            lrs.append([g["lr"] for g in opt.param_groups])
        doc["schedulers"][name] = {"constructor": args, "lr": lrs}
    write_json(FIX / "schedulers" / "closed_form.json", doc)


# Resuming through the constructor: `last_epoch=29` needs `initial_lr` in every group (loaded with
# the optimizer's state) and takes a step, to epoch 30; base_lrs come from `initial_lr`.
LAST_EPOCH = ["steplr", "multisteplr", "exponentiallr", "cosineannealinglr", "linearlr", "onecyclelr",
              "onecyclelr_linear_three_phase", "lambdalr"]


def last_epoch():
    doc = {"about": "A new optimizer loads NAME_step30.pt's optimizer state, then the scheduler is built "
                    "with last_epoch=29 (constructor as in NAME.json plus last_epoch); steps[0] is right after "
                    "the constructor, steps[i] after i more opt.step() + sched.step().",
           "torch": torch.__version__, "last_epoch": 29, "schedulers": {}}
    for name in LAST_EPOCH:
        _, args, make = SCHEDULERS[name]
        back = torch.load(FIX / "schedulers" / f"{name}_step30.pt", weights_only=True)
        opt = sched_optimizer()
        opt.load_state_dict(back["optimizer"])
        sched = make(opt, last_epoch=29)
        steps = [sched_record(opt, sched)]
        for i in range(31, 61):
            sched_step(sched, opt, i)
            steps.append(sched_record(opt, sched))
        doc["schedulers"][name] = {"constructor": args, "steps": steps,
                                   "state_dict_at_end": typed(copy.deepcopy(sched.state_dict()))}
    write_json(FIX / "schedulers" / "last_epoch.json", doc)


def main():
    optim_groups()
    schedulers()
    closed_form()
    last_epoch()
    files = sorted(p for d in ("pytorch/optim_groups", "schedulers") for p in (FIX / d).rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files, {total} bytes, under {FIX}")


if __name__ == "__main__":
    main()
