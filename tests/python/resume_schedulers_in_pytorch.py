"""Resumes in PyTorch the optimizers and LR schedulers that ckpt saved (tests/optim/resume.rs):

- tests/fixtures/pytorch/resume/schedulers_step30.pt: for each of ten schedulers, the optimizer
  and scheduler states ckpt reached after 30 steps. Each is loaded with
  torch.load(weights_only=True) into a new torch.optim.SGD and the same torch.optim.lr_scheduler
  constructor (those of tests/python/make_scheduler_fixtures.py), through load_state_dict; its
  state must have the keys, in order, and the types (MultiStepLR's Counter included) that
  PyTorch's own scheduler has; steps 31..60 must give the learning rates of
  schedulers_step30.json (ckpt's), equal or within 1e-12.
- tests/fixtures/pytorch/resume/optim_groups_step4.pt: SGD and Adam with two parameter groups,
  which ckpt loaded from PyTorch's checkpoint, stepped once and saved. Each resumes in
  nn.Sequential(backbone=Linear(4, 3), head=Linear(3, 2)) with StepLR(step_size=2, gamma=0.5):
  steps 5 and 6 with the saved gradients must give ckpt's parameters (within 1e-6) and learning
  rates; and StepLR(opt, 2, last_epoch=1) (and =3, the checkpoint's epoch) must work on an
  optimizer that loaded the state: its groups kept `initial_lr`, the base learning rates.

    python tests/python/resume_schedulers_in_pytorch.py

Without torch it prints SKIP and exits 0, or fails under CI=true (see needs_torch.py).
"""

import collections
import json
import math
import pathlib
import sys

from needs_torch import require_torch

RESUME = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pytorch" / "resume"


class WarmupLambda:
    """The fixtures' callable object: LambdaLR saves and loads its __dict__ ({'warmup': 5})."""

    def __init__(self, warmup):
        self.warmup = warmup

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.warmup)


def decay(epoch):
    return 0.95 ** epoch


def schedulers(torch):
    S = torch.optim.lr_scheduler
    return {
        "steplr": lambda o: S.StepLR(o, step_size=7, gamma=0.5),
        "multisteplr": lambda o: S.MultiStepLR(o, milestones=[10, 25, 25, 40], gamma=0.3),
        "exponentiallr": lambda o: S.ExponentialLR(o, gamma=0.93),
        "cosineannealinglr": lambda o: S.CosineAnnealingLR(o, T_max=20, eta_min=0.001),
        "linearlr": lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=12),
        "onecyclelr": lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.05], total_steps=60),
        "onecyclelr_linear_three_phase": lambda o: S.OneCycleLR(
            o, max_lr=0.3, total_steps=60, pct_start=0.25, anneal_strategy="linear", three_phase=True,
            base_momentum=0.8, max_momentum=0.9, div_factor=10.0, final_div_factor=100.0),
        "reducelronplateau": lambda o: S.ReduceLROnPlateau(
            o, mode="min", factor=0.5, patience=2, threshold=0.05, threshold_mode="rel", cooldown=3,
            min_lr=[0.01, 0.001], eps=1e-8),
        "sequentiallr": lambda o: S.SequentialLR(
            o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
                S.CosineAnnealingLR(o, T_max=25, eta_min=0.001), S.ExponentialLR(o, gamma=0.9)],
            milestones=[5, 30]),
        "lambdalr": lambda o: S.LambdaLR(o, lr_lambda=[decay, WarmupLambda(5)]),
    }


def sched_optimizer(torch):
    p0 = torch.nn.Parameter(torch.zeros(2, 2))
    p1 = torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [p0], "lr": 0.1}, {"params": [p1], "lr": 0.02}], lr=0.1, momentum=0.9)


def kind(value):
    """A value's Python type as a state dict's reader sees it: ckpt writes every dict as an
    OrderedDict, which load_state_dict takes as the dict it is."""
    if isinstance(value, collections.Counter):
        return "Counter"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def close(actual, expected):
    """Equal, or within 1e-12 of ckpt's (relative); returns (ok, bit-identical)."""
    if len(actual) != len(expected):
        return False, False
    same = all(a == e for a, e in zip(actual, expected))
    return same or all(math.isclose(a, e, rel_tol=1e-12, abs_tol=0.0) for a, e in zip(actual, expected)), same


def resume_schedulers(torch):
    back = torch.load(RESUME / "schedulers_step30.pt", weights_only=True)
    manifest = json.loads((RESUME / "schedulers_step30.json").read_text())
    metrics = manifest["metrics"]
    failures = 0
    makers = schedulers(torch)
    for name, make in makers.items():
        saved = back[name]
        opt = sched_optimizer(torch)
        sched = make(opt)
        own = sched.state_dict()
        own_kinds = {key: kind(value) for key, value in own.items()}
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        problems = []
        if list(saved["scheduler"]) != list(own):
            problems.append(f"state keys {list(saved['scheduler'])} != PyTorch's {list(own)}")
        kinds = {key: kind(value) for key, value in saved["scheduler"].items()}
        if kinds != own_kinds:
            wrong = {k: (v, own_kinds.get(k)) for k, v in kinds.items() if own_kinds.get(k) != v}
            problems.append(f"state types (ckpt's, PyTorch's): {wrong}")
        if sched.last_epoch != saved["epoch"]:
            problems.append(f"last_epoch {sched.last_epoch} after loading, not {saved['epoch']}")
        exact = True
        for i, expected in zip(range(31, 61), manifest["schedulers"][name]["steps"]):
            opt.step()
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(metrics[i - 1])
            else:
                sched.step()
            got = {"lr": [g["lr"] for g in opt.param_groups], "last_lr": list(sched.get_last_lr())}
            if "momentum" in expected:
                got["momentum"] = [g["momentum"] for g in opt.param_groups]
            for key, values in got.items():
                ok, same = close(values, expected[key])
                exact = exact and same
                if not ok:
                    problems.append(f"step {i} {key}: {values} != ckpt's {expected[key]}")
            if sched.last_epoch != expected["last_epoch"]:
                problems.append(f"step {i}: last_epoch {sched.last_epoch} != {expected['last_epoch']}")
            if problems:
                break
        if problems:
            failures += 1
            print(f"FAIL {name}: " + "; ".join(problems[:3]))
        else:
            how = "bit for bit" if exact else "within 1e-12"
            print(f"ok   {name}: PyTorch resumed ckpt's step-30 state; steps 31..60 match {how}")
    return failures


GROUP_OPTIMIZERS = {
    "sgd": lambda torch, g: torch.optim.SGD(g, lr=0.05, momentum=0.9),
    "adam": lambda torch, g: torch.optim.Adam(g, lr=0.001, betas=(0.9, 0.99)),
}


def two_group_model(torch):
    from torch import nn
    return nn.Sequential(collections.OrderedDict([("backbone", nn.Linear(4, 3)), ("head", nn.Linear(3, 2))]))


def two_groups(model):
    return [{"params": list(model.backbone.parameters()), "lr": 0.01, "weight_decay": 1e-3},
            {"params": list(model.head.parameters()), "lr": 0.1, "weight_decay": 0.0}]


def resume_groups(torch):
    back = torch.load(RESUME / "optim_groups_step4.pt", weights_only=True)
    manifest = json.loads((RESUME / "optim_groups_step4.json").read_text())
    StepLR = torch.optim.lr_scheduler.StepLR
    failures = 0
    for name, make in GROUP_OPTIMIZERS.items():
        entry, facts = back[name], manifest[name]
        checkpoint = entry["checkpoint"]
        problems = []
        model = two_group_model(torch)
        model.load_state_dict(checkpoint["model"])
        opt = make(torch, two_groups(model))
        sched = StepLR(opt, step_size=2, gamma=0.5)
        own_keys = [sorted(g) for g in opt.state_dict()["param_groups"]]
        saved_keys = [sorted(g) for g in checkpoint["optimizer"]["param_groups"]]
        if saved_keys != own_keys:
            problems.append(f"group keys {saved_keys} != PyTorch's {own_keys}")
        opt.load_state_dict(checkpoint["optimizer"])
        sched.load_state_dict(checkpoint["scheduler"])
        params = dict(model.named_parameters())
        worst = 0.0
        for grads, expected, lrs in zip(entry["next_grads"], entry["expected_after"], facts["lr_after"]):
            for key, grad in grads.items():
                params[key].grad = grad.clone()
            opt.step()
            sched.step()
            for key, value in model.state_dict().items():
                worst = max(worst, (value - expected[key]).abs().max().item())
            ok, _ = close(sched.get_last_lr(), lrs)
            if not ok:
                problems.append(f"lr {sched.get_last_lr()} != ckpt's {lrs}")
        if worst > 1e-6:
            problems.append(f"parameters differ from ckpt's by {worst:.3g}")

        # The scheduler's other resume: through last_epoch, which needs initial_lr in every
        # group. The constructor takes a step, to last_epoch + 1, halving the saved lr when
        # that is even: StepLR(opt, 2, last_epoch=1) as the issue has it, and the resume at
        # the checkpoint's own epoch.
        saved_lrs = [g["lr"] for g in checkpoint["optimizer"]["param_groups"]]
        for last_epoch in (1, checkpoint["epoch"] - 1):
            again = make(torch, two_groups(two_group_model(torch)))
            again.load_state_dict(checkpoint["optimizer"])
            try:
                resumed = StepLR(again, 2, gamma=0.5, last_epoch=last_epoch)
            except KeyError as e:
                problems.append(f"StepLR(last_epoch={last_epoch}) raised KeyError {e}")
                continue
            if resumed.base_lrs != facts["base_lrs"]:
                problems.append(f"StepLR(last_epoch={last_epoch}): base_lrs {resumed.base_lrs} "
                                f"!= initial_lr {facts['base_lrs']}")
            factor = 0.5 if (last_epoch + 1) % 2 == 0 else 1.0
            expected_lrs = [lr * factor for lr in saved_lrs]
            got_lrs = [g["lr"] for g in again.param_groups]
            if resumed.last_epoch != last_epoch + 1 or got_lrs != expected_lrs:
                problems.append(f"StepLR(last_epoch={last_epoch}): last_epoch {resumed.last_epoch}, "
                                f"lr {got_lrs}, expected {last_epoch + 1} and {expected_lrs}")
        if problems:
            failures += 1
            print(f"FAIL {name}_groups: " + "; ".join(problems))
        else:
            print(f"ok   {name}_groups: PyTorch resumed ckpt's two-group {name} and StepLR (steps 5, 6: "
                  f"max |torch - ckpt| = {worst:.3g}); StepLR(last_epoch=1) and "
                  f"(last_epoch={checkpoint['epoch'] - 1}) find initial_lr {facts['base_lrs']}")
    return failures


def main():
    torch = require_torch()
    import warnings
    warnings.filterwarnings("ignore")
    failures = resume_schedulers(torch) + resume_groups(torch)
    print(f"{'FAIL' if failures else 'ok  '} torch {torch.__version__}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
