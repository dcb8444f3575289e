"""Checks that real PyTorch loads a Distributed Checkpoint (DCP) directory -- one ckpt wrote --
and finds the values its manifest gives, loading into world sizes other than the one that wrote
it. Exits 1 on any mismatch, 0 when everything matches.

    python tests/python/check_dcp_load.py                     # every tests/fixtures/dcp/written/NAME/
    python tests/python/check_dcp_load.py --fixtures          # the PyTorch-made fixtures (self-test)
    python tests/python/check_dcp_load.py DIR MANIFEST [--worlds 1,3]

Without DIR it checks each directory NAME under tests/fixtures/dcp/written/ (where ckpt's tests
are to write their DCP checkpoints) against NAME.manifest.json beside it, and fails when there
is none. Prints a SKIP message and exits 0 when torch is not importable, like the other scripts
in tests/python (needs_torch.py: under CI=true a missing torch fails). The default worlds are 1 and 3 (2 when the checkpoint was written by 3).

MANIFEST is the JSON format tests/python/make_dcp_fixtures.py writes ("entries": for every
flattened key, its "path", and "kind": "tensor" with "dtype", "shape", "sha256" and optionally
"values", or "kind": "value" with "type" and "value"). Its "world_size" is the world that wrote
the checkpoint.

What is checked:

1. .metadata, unpickled with a restricted unpickler that allows only the globals real PyTorch
   writes there (ALLOWED_GLOBALS): its keys, dtypes and global shapes match the manifest; every
   tensor's chunks are in bounds, do not overlap and cover the tensor (dcp.save checks this,
   dcp.load does not); every chunk has a storage_data entry whose [offset, offset + length)
   lies inside an existing file; the items .metadata names fill the data files exactly (an item
   several ranks hold, such as a replicated tensor, is stored once); planner_data, when present,
   joins back to the keys.
2. World 1 (no process group, the no_dist path): torch.distributed.checkpoint.load into a
   state dict of plain tensors (prefilled with a sentinel) and placeholders for plain values;
   then torch.distributed.checkpoint.format_utils.dcp_to_torch_save, whose nested result is
   walked along each entry's "path" (this is where planner_data matters).
3. World N >= 2 (N gloo processes on the CPU, torch.multiprocessing.spawn): every tensor is a
   DTensor on a 1-D mesh of N ranks, sharded on dim (i % ndim) for the i-th tensor (0-d ones
   replicated), so the load reshards rows and columns unevenly; every rank compares its local
   shard with the matching slice of the manifest's tensor, and its plain values.

Values are compared bit for bit (SHA-256 of the C-contiguous little-endian bytes).
"""

import argparse
import hashlib
import io
import json
import logging
import math
import os
import pathlib
import pickle
import socket
import sys
import tempfile
import warnings

from needs_torch import require_torch

try:
    import torch
except ImportError:  # main() calls require_torch(), which says SKIP or fails under CI
    torch = None

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "dcp"


def _dtypes():
    return {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }


DTYPES = _dtypes() if torch is not None else {}
NAMES = {v: k for k, v in DTYPES.items()}

# Every global that torch 2.15's FileSystemWriter puts into .metadata (module, name). The dtypes
# are globals of module torch ("torch", "float32", ...), added below.
ALLOWED_GLOBALS = {
    ("torch.distributed.checkpoint.metadata", "Metadata"),
    ("torch.distributed.checkpoint.metadata", "TensorStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "BytesStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "ChunkStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "TensorProperties"),
    ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
    ("torch.distributed.checkpoint.metadata", "MetadataIndex"),
    ("torch.distributed.checkpoint.metadata", "StorageMeta"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib._local", "PosixPath"),  # Python >= 3.13
    ("pathlib._local", "WindowsPath"),
} | {("torch", str(d).removeprefix("torch.")) for d in DTYPES.values()}



class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS (here to torch's real classes); anything else is an error."""

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f".metadata references the global {module}.{name}, "
                                         "which real PyTorch does not write there")
        return super().find_class(module, name)


def short(exc):
    """One line for an exception; dcp's CheckpointException carries every rank's traceback, and
    the last line of those is the error that matters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"


def tensor_sha(t):
    t = t.detach().cpu().contiguous()
    data = b"" if t.numel() == 0 else t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def plain_json(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [plain_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain_json(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, io.BytesIO):
        return v.getvalue().hex()
    return f"<{type(v).__name__}>"


def plain_type(v):
    if v is None:
        return "none"
    if isinstance(v, io.BytesIO):
        return "bytesio"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "tuple",
            dict: "dict", bytes: "bytes"}.get(type(v), type(v).__name__)


def expected_tensor(e):
    """The global tensor an entry describes (from "values"), or None when it only has a hash."""
    if "values" not in e:
        return None
    return torch.tensor(e["values"], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])


def sentinel(shape, dtype):
    if dtype.is_floating_point:
        return torch.full(shape, float("nan"), dtype=dtype)
    if dtype == torch.bool:
        return torch.zeros(shape, dtype=dtype)
    return torch.full(shape, 0x5A, dtype=dtype)


def compare_tensor(where, e, actual, expected_slice=None):
    errors = []
    if actual.dtype != DTYPES[e["dtype"]]:
        return [f"{where}: dtype {actual.dtype}, expected {e['dtype']}"]
    want = expected_slice if expected_slice is not None else None
    if want is None:
        if list(actual.shape) != e["shape"]:
            return [f"{where}: shape {list(actual.shape)}, expected {e['shape']}"]
        if tensor_sha(actual) != e["sha256"]:
            errors.append(f"{where}: values differ (sha256 {tensor_sha(actual)}, expected {e['sha256']})")
            want = expected_tensor(e)
    elif list(actual.shape) != list(want.shape) or tensor_sha(actual) != tensor_sha(want):
        errors.append(f"{where}: local shard {list(actual.shape)} differs from the expected slice "
                      f"{list(want.shape)}")
    if errors and want is not None and list(actual.shape) == list(want.shape):
        a, w = actual.flatten(), want.flatten()
        for i in range(a.numel()):
            if not (a[i] == w[i] or (a[i] != a[i] and w[i] != w[i])):
                errors.append(f"{where}: first difference at flat index {i}: {a[i].item()} != {w[i].item()}")
                break
    return errors


def compare_value(where, e, actual):
    if plain_type(actual) != e["type"] or plain_json(actual) != e["value"]:
        return [f"{where}: got {plain_type(actual)} {plain_json(actual)!r}, "
                f"expected {e['type']} {e['value']!r}"]
    return []


# ----------------------------------------------------------------------------- 1. metadata


def check_metadata(ckpt_dir, manifest):
    ckpt_dir = pathlib.Path(ckpt_dir)
    errors = []
    try:
        with open(ckpt_dir / ".metadata", "rb") as f:
            md = RestrictedUnpickler(f).load()
    except Exception as exc:  # noqa: BLE001 -- report whatever goes wrong
        return [f".metadata: {short(exc)}"]
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    entries = {e["key"]: e for e in manifest["entries"]}
    sdm = md.state_dict_metadata
    if set(sdm) != set(entries):
        errors.append(f".metadata keys differ: only in checkpoint {sorted(set(sdm) - set(entries))}, "
                      f"only in manifest {sorted(set(entries) - set(sdm))}")
    storage = md.storage_data or {}
    if md.storage_data is None:
        errors.append(".metadata: storage_data is None (dcp.load refuses that)")
    by_fqn = {}
    for idx, info in storage.items():
        by_fqn.setdefault(idx.fqn, {})[tuple(idx.offset) if idx.offset is not None else None] = info
        path = ckpt_dir / info.relative_path
        if not path.is_file():
            errors.append(f"{idx.fqn}: storage file {info.relative_path} is missing")
        elif info.offset < 0 or info.length < 0 or info.offset + info.length > path.stat().st_size:
            errors.append(f"{idx.fqn}: [{info.offset}, {info.offset + info.length}) is outside "
                          f"{info.relative_path} ({path.stat().st_size} bytes)")
        if getattr(info, "transform_descriptors", None):
            errors.append(f"{idx.fqn}: transform_descriptors {info.transform_descriptors} (unexpected)")
    # Every byte of every data file is an item .metadata names: an item held by several ranks
    # (a replicated tensor, a plain value) was written once, as dcp.save's dedup writes it.
    stored = {}
    for info in storage.values():
        stored[info.relative_path] = stored.get(info.relative_path, 0) + info.length
    for path in sorted(ckpt_dir.glob("*.distcp")):
        if stored.get(path.name, 0) != path.stat().st_size:
            errors.append(f"{path.name}: {path.stat().st_size} bytes, of which .metadata names "
                          f"{stored.get(path.name, 0)} (an item written twice, or bytes no item owns)")
    for key, m in sdm.items():
        e = entries.get(key)
        if e is None:
            continue
        if isinstance(m, BytesStorageMetadata):
            if e["kind"] != "value":
                errors.append(f"{key}: a bytes entry in .metadata, a {e['kind']} in the manifest")
            if None not in by_fqn.get(key, {}):
                errors.append(f"{key}: no storage_data entry (MetadataIndex with offset None)")
            continue
        if not isinstance(m, TensorStorageMetadata):
            errors.append(f"{key}: unexpected metadata type {type(m).__name__}")
            continue
        if e["kind"] != "tensor":
            errors.append(f"{key}: tensor metadata in .metadata, a plain value in the manifest")
            continue
        if NAMES.get(m.properties.dtype) != e["dtype"] or list(m.size) != e["shape"]:
            errors.append(f"{key}: .metadata says {m.properties.dtype} {list(m.size)}, "
                          f"manifest {e['dtype']} {e['shape']}")
            continue
        errors += check_chunks(key, list(m.size), m.chunks)
        for c in m.chunks:
            if tuple(c.offsets) not in by_fqn.get(key, {}):
                errors.append(f"{key}: chunk at {list(c.offsets)} has no storage_data entry")
    if md.planner_data is not None:
        for key, path in md.planner_data.items():
            if ".".join(map(str, path)) != key:
                errors.append(f"planner_data[{key!r}] = {path!r} does not join back to the key")
            elif key in entries and "path" in entries[key] and list(path) != entries[key]["path"]:
                errors.append(f"planner_data[{key!r}] = {list(path)}, manifest path {entries[key]['path']}")
    return errors


def check_chunks(key, size, chunks):
    errors = []
    if not chunks:
        return [f"{key}: no chunks"]
    volume = 0
    boxes = []
    for c in chunks:
        off, sz = list(c.offsets), list(c.sizes)
        if len(off) != len(size) or len(sz) != len(size):
            errors.append(f"{key}: chunk {off}/{sz} has the wrong rank for {size}")
            continue
        if any(o < 0 or s < 0 or o + s > d for o, s, d in zip(off, sz, size)):
            errors.append(f"{key}: chunk at {off} of {sz} is out of bounds of {size}")
        volume += math.prod(sz)
        boxes.append((off, sz))
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (o0, s0), (o1, s1) = boxes[i], boxes[j]
            if math.prod(s0) and math.prod(s1) and all(
                    a < b + t and b < a + s for a, s, b, t in zip(o0, s0, o1, s1)):
                errors.append(f"{key}: chunks at {o0} and {o1} overlap")
    if volume != math.prod(size):
        errors.append(f"{key}: chunks hold {volume} elements, the tensor {math.prod(size)}")
    return errors


# ----------------------------------------------------------------------------- 2. one process


def check_single_process(ckpt_dir, manifest):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    warnings.filterwarnings("ignore")
    errors = []
    state = {}
    for e in manifest["entries"]:
        state[e["key"]] = sentinel(e["shape"], DTYPES[e["dtype"]]) if e["kind"] == "tensor" else None
    try:
        dcp.load(state, checkpoint_id=str(ckpt_dir), no_dist=True)
    except BaseException as exc:  # noqa: BLE001 -- dcp's CheckpointException is a BaseException
        return errors + [f"world 1: dcp.load failed: {short(exc)}"]
    for e in manifest["entries"]:
        where = f"world 1: {e['key']}"
        actual = state[e["key"]]
        if e["kind"] == "tensor":
            errors += compare_tensor(where, e, actual)
        else:
            errors += compare_value(where, e, actual)

    with tempfile.TemporaryDirectory() as tmp:
        target = pathlib.Path(tmp) / "consolidated.pt"
        try:
            dcp_to_torch_save(ckpt_dir, target)
            nested = torch.load(target, weights_only=False)
        except BaseException as exc:  # noqa: BLE001
            return errors + [f"dcp_to_torch_save failed: {short(exc)}"]
    for e in manifest["entries"]:
        where = f"dcp_to_torch_save: {e['key']}"
        node = nested
        try:
            for part in e.get("path", [e["key"]]):
                node = node[part]
        except (KeyError, IndexError, TypeError):
            errors.append(f"{where}: nothing at path {e.get('path')}")
            continue
        errors += compare_tensor(where, e, node) if e["kind"] == "tensor" else compare_value(where, e, node)
    return errors


# ----------------------------------------------------------------------------- 3. N processes


def _load_in_group(rank, world, ckpt_dir, manifest):
    """One checkpoint, inside an initialised gloo group of `world` ranks; returns errors."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    errors = []
    mesh = init_device_mesh("cpu", (world,))
    state, slices = {}, {}
    tensor_index = 0
    for e in manifest["entries"]:
        if e["kind"] != "tensor":
            state[e["key"]] = None
            continue
        shape, dtype = e["shape"], DTYPES[e["dtype"]]
        placement = Shard(tensor_index % len(shape)) if shape else Replicate()
        tensor_index += 1
        local_shape, offset = compute_local_shape_and_global_offset(shape, mesh, [placement])
        local = sentinel(list(local_shape), dtype)
        state[e["key"]] = DTensor.from_local(local, mesh, [placement], run_check=False,
                                             shape=torch.Size(shape),
                                             stride=torch.empty(shape).stride())
        slices[e["key"]] = (placement, list(local_shape), list(offset))
    dcp.load(state, checkpoint_id=str(ckpt_dir))
    for e in manifest["entries"]:
        where = f"world {world} rank {rank}: {e['key']}"
        actual = state[e["key"]]
        if e["kind"] != "tensor":
            errors += compare_value(where, e, actual)
            continue
        placement, local_shape, offset = slices[e["key"]]
        full = expected_tensor(e)
        if full is None:  # only a hash: gather (floats and ints only) and compare the whole
            errors += compare_tensor(where, e, actual.full_tensor())
            continue
        want = full
        for d, (o, n) in enumerate(zip(offset, local_shape)):
            want = want.narrow(d, o, n)
        errors += compare_tensor(f"{where} {placement}", e, actual.to_local(), want)
    return errors


def _worker(rank, world, port, jobs, result_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    warnings.filterwarnings("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)  # gloo/DTensor performance notes
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = []
    try:
        for ckpt_dir, manifest in jobs:
            try:
                results.append(_load_in_group(rank, world, ckpt_dir, manifest))
            except BaseException as exc:  # noqa: BLE001 -- dcp's CheckpointException is a BaseException
                results.append([f"world {world} rank {rank}: dcp.load failed: {short(exc)}"])
            dist.barrier()
    finally:
        (pathlib.Path(result_dir) / f"rank{rank}.json").write_text(json.dumps(results))
        dist.destroy_process_group()


def check_world(jobs, world):
    """Loads each (dir, manifest) of `jobs` in one group of `world` gloo processes; returns one
    error list per job."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    jobs = [(str(d), m) for d, m in jobs]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.spawn(_worker, args=(world, port, jobs, tmp), nprocs=world, join=True)
        except Exception as exc:  # noqa: BLE001
            return [[f"world {world}: a process failed: {exc}"] for _ in jobs]
        per_job = [[] for _ in jobs]
        for r in range(world):
            p = pathlib.Path(tmp) / f"rank{r}.json"
            results = json.loads(p.read_text()) if p.exists() else None
            for i in range(len(jobs)):
                if results is None or i >= len(results):
                    per_job[i].append(f"world {world} rank {r}: no result")
                else:
                    per_job[i] += results[i]
        return per_job


def default_worlds(manifest):
    return [1, 2 if manifest.get("world_size") == 3 else 3]


def check_many(pairs, worlds=None):
    """pairs: [(dir, manifest path)]. Prints a report; returns the number of failed checkpoints."""
    jobs = [(pathlib.Path(d), json.loads(pathlib.Path(m).read_text())) for d, m in pairs]
    errors = {d: check_metadata(d, m) for d, m in jobs}
    for d, m in jobs:
        print(f"{d}: .metadata: {'OK' if not errors[d] else f'{len(errors[d])} error(s)'}")
    wanted = sorted({w for _, m in jobs for w in (worlds or default_worlds(m))})
    for world in wanted:
        todo = [(d, m) for d, m in jobs if world in (worlds or default_worlds(m))]
        if world == 1:
            found = [check_single_process(d, m) for d, m in todo]
        else:
            found = check_world(todo, world)
        for (d, m), errs in zip(todo, found):
            note = " (the world size that wrote it)" if world == m.get("world_size") else ""
            print(f"{d}: world {world}{note}: {'OK' if not errs else f'{len(errs)} error(s)'}")
            errors[d] += errs
    failed = 0
    for d, _ in jobs:
        if errors[d]:
            failed += 1
            print(f"FAIL {d}:")
            for e in errors[d]:
                print("  " + e)
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=pathlib.Path, nargs="?", help="the DCP directory")
    parser.add_argument("manifest", type=pathlib.Path, nargs="?", help="its JSON manifest")
    parser.add_argument("--worlds", help="comma-separated world sizes to load into (default 1,3)")
    parser.add_argument("--fixtures", action="store_true",
                        help=f"check the PyTorch-made fixtures in {FIXTURES} instead")
    args = parser.parse_args(argv)
    require_torch()  # SKIP without torch, except under CI=true, where it fails
    worlds = [int(w) for w in args.worlds.split(",") if w] if args.worlds else None
    if args.dir is not None:
        if args.manifest is None:
            parser.error("DIR needs its MANIFEST")
        return 1 if check_many([(args.dir, args.manifest)], worlds) else 0
    root = FIXTURES if args.fixtures else FIXTURES / "written"
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "written") if root.is_dir() else []
    if not dirs:
        print(f"FAIL: no DCP directories in {root}")
        return 1
    pairs, failed = [], 0
    for d in dirs:
        manifest = d.with_name(d.name + ".manifest.json")
        if manifest.is_file():
            pairs.append((d, manifest))
        else:
            print(f"FAIL {d}: no {manifest.name} beside it")
            failed += 1
    failed += check_many(pairs, worlds)
    print(f"{len(dirs) - failed} of {len(dirs)} DCP checkpoint(s) load in PyTorch {torch.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
