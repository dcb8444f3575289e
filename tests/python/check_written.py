"""Loads the files ckpt wrote (tests/fixtures/pytorch/written/*.pt) with real PyTorch,
torch.load(path, weights_only=True), and compares them with their manifests: every leaf in
order, tensors by dtype, shape and SHA-256 of their C-contiguous little-endian bytes, plain
values by equality, state dicts as OrderedDicts, and tied tensors still sharing one storage;
a manifest's "metadata" is the state dict's _metadata, and batchnorm.pt loads strictly into the
PyTorch model it is the state dict of, with the _metadata PyTorch writes for it.

    python tests/python/check_written.py

Values JSON has no literal for are compared as the manifests tag them: {"$complex": [re, im]},
{"$bytes": hex}, {"$bytearray": hex}, {"$dtype": "float32"}, {"$float": "inf"}; a Counter walks
like a dict and a set like a list in ascending order, and the manifest's "types" says which keys
must come back as a collections.Counter or a set.

Without torch it prints SKIP and exits 0, or fails under CI=true (see needs_torch.py).
"""

import collections
import hashlib
import json
import math
import pathlib
import pickletools
import sys
import zipfile

from needs_torch import require_torch

WRITTEN = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pytorch" / "written"


def main():
    torch = require_torch()

    dtypes = {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
        torch.uint16: "U16",
        torch.uint32: "U32",
        torch.uint64: "U64",
        torch.complex32: "C32",
        torch.complex64: "C64",
        torch.complex128: "C128",
        torch.float8_e4m3fn: "F8_E4M3",
        torch.float8_e5m2: "F8_E5M2",
        torch.float8_e4m3fnuz: "F8_E4M3FNUZ",
        torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
        torch.float8_e8m0fnu: "F8_E8M0",
    }
    # What torch.save pickles through _rebuild_tensor_v3 over an untyped storage; the rest go
    # through _rebuild_tensor_v2 over a typed one.
    new_dtypes = set(torch.storage._new_dtypes())

    def pickled(path):
        """The protocol and the GLOBALs of the file's data.pkl."""
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
        ops = list(pickletools.genops(data))
        proto = ops[0][1] if ops and ops[0][0].name == "PROTO" else None
        globals_ = {arg.replace(" ", ".") for op, arg, _ in ops if op.name == "GLOBAL"}
        return proto, globals_

    def leaves(obj, prefix=""):
        if isinstance(obj, dict):
            items = ((str(k), v) for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            items = ((str(i), v) for i, v in enumerate(obj))
        elif isinstance(obj, (set, frozenset)):
            items = ((str(i), v) for i, v in enumerate(sorted(obj)))
        else:
            yield prefix, obj
            return
        for k, v in items:
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)

    def entry(key, leaf):
        if isinstance(leaf, torch.Tensor):
            data = leaf.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            return {
                "key": key,
                "dtype": dtypes[leaf.dtype],
                "shape": list(leaf.shape),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        return {"key": key, "value": tagged(leaf)}

    def number(x):
        if isinstance(x, float) and not math.isfinite(x):
            return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
        return x

    def tagged(leaf):
        if isinstance(leaf, torch.dtype):
            return {"$dtype": str(leaf).removeprefix("torch.")}
        if isinstance(leaf, complex):
            return {"$complex": [number(leaf.real), number(leaf.imag)]}
        if isinstance(leaf, bytearray):
            return {"$bytearray": leaf.hex()}
        if isinstance(leaf, bytes):
            return {"$bytes": leaf.hex()}
        return number(leaf)

    def at(obj, key):
        for part in key.split(".") if key else []:
            if isinstance(obj, dict):
                obj = obj[next(k for k in obj if str(k) == part)]
            elif isinstance(obj, (set, frozenset)):
                obj = sorted(obj)[int(part)]
            else:
                obj = obj[int(part)]
        return obj

    python_types = {"Counter": collections.Counter, "set": set}

    failures = 0
    # Every file with a manifest; checkpoints PyTorch resumes (tests/fixtures/pytorch/resume/)
    # have scripts of their own.
    files = sorted(p.with_name(p.name.removesuffix(".manifest.json"))
                   for p in WRITTEN.glob("*.pt.manifest.json"))
    if not files:
        print(f"FAIL: no files in {WRITTEN}")
        return 1
    for path in files:
        manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
        obj = torch.load(path, weights_only=True)
        flat = dict(leaves(obj))
        actual = [entry(k, v) for k, v in leaves(obj)]
        problems = []
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if unsafe:
            problems.append(f"globals outside the weights_only allow-list: {unsafe}")
        if actual != manifest["entries"]:
            for a, e in zip(actual, manifest["entries"]):
                if a != e:
                    problems.append(f"{a} != {e}")
                    break
            if len(actual) != len(manifest["entries"]):
                problems.append(f"{len(actual)} leaves, manifest lists {len(manifest['entries'])}")
        for a, b in manifest["tied"]:
            ta, tb = flat[a], flat[b]
            if ta.untyped_storage().data_ptr() != tb.untyped_storage().data_ptr():
                problems.append(f"{a} and {b} do not share storage")
        proto, globals_ = pickled(path)
        if proto != 2:
            problems.append(f"pickle protocol {proto}, not 2 as torch.save writes")
        tensors = [v for _, v in leaves(obj) if isinstance(v, torch.Tensor)]
        if any(t.dtype in new_dtypes for t in tensors) and not {
                "torch._utils._rebuild_tensor_v3", "torch.storage.UntypedStorage"} <= globals_:
            problems.append("new dtypes not pickled through _rebuild_tensor_v3 over UntypedStorage")
        if any(t.dtype not in new_dtypes for t in tensors) and "torch._utils._rebuild_tensor_v2" not in globals_:
            problems.append("classic dtypes not pickled through _rebuild_tensor_v2")
        for expected in manifest.get("types", []):
            found = type(at(obj, expected["key"]))
            if found is not python_types[expected["type"]]:
                problems.append(f"{expected['key']} is a {found.__name__}, not a {expected['type']}")
        if "metadata" in manifest:
            found = getattr(obj, "_metadata", None)
            found = None if found is None else {k: dict(v) for k, v in found.items()}
            if found != manifest["metadata"]:
                problems.append(f"_metadata is {found}, manifest lists {manifest['metadata']}")
        if path.name == "batchnorm.pt":
            problems += batchnorm_problems(torch, obj)
        for key in ("model_state_dict",):
            if isinstance(obj, dict) and key in obj and type(obj[key]) is not collections.OrderedDict:
                problems.append(f"{key} is a {type(obj[key]).__name__}, not an OrderedDict")
        if problems:
            failures += 1
            print(f"FAIL {path.name}: " + "; ".join(problems))
        else:
            tied = f", {len(manifest['tied'])} tied pair(s) sharing storage" if manifest["tied"] else ""
            print(f"ok   {path.name}: {len(actual)} leaves match{tied} (torch {torch.__version__})")
    return 1 if failures else 0


def batchnorm_problems(torch, sd):
    """What is wrong with the state dict ckpt wrote for the model of make_pt_fixtures.py's
    batchnorm(): its _metadata must be what PyTorch writes for that model, and it must load
    into it strictly, every tensor copied."""
    nn = torch.nn
    model = nn.Sequential(collections.OrderedDict([
        ("conv", nn.Conv2d(2, 3, 3, padding=1)), ("bn2d", nn.BatchNorm2d(3)), ("relu", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(3, 4)),
        ("bn1d", nn.BatchNorm1d(4))]))
    problems = []
    want = {k: dict(v) for k, v in model.state_dict()._metadata.items()}
    found = {k: dict(v) for k, v in getattr(sd, "_metadata", {}).items()}
    if found != want:
        problems.append(f"_metadata {found} is not PyTorch's {want}")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        return problems + [f"strict load_state_dict failed: {e}"]
    for key, value in model.state_dict().items():
        if not torch.equal(value, sd[key]):
            problems.append(f"{key} was not copied")
    return problems


if __name__ == "__main__":
    sys.exit(main())
