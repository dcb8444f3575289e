"""Makes tests/fixtures/dcp/: PyTorch Distributed Checkpoint (DCP) directories written by real
PyTorch on the CPU, plus one JSON manifest per checkpoint for ckpt's consolidated-load tests.

    python tests/python/make_dcp_fixtures.py              # all cases
    python tests/python/make_dcp_fixtures.py world4_2d    # only the named cases

Each case is saved with torch.distributed.checkpoint.save (default FileSystemWriter and
DefaultSavePlanner) by N processes started with torch.multiprocessing.spawn on the gloo backend
(MASTER_ADDR=127.0.0.1, a free port), except `single`, saved in this process without a process
group (no_dist). Cases:

- single:          world 1, no process group. Plain tensors of several dtypes (a transposed,
                   non-contiguous one; a 0-d one; an empty one), a list holding a tensor, and
                   plain values of every kind DCP stores as "bytes" entries: int, float, str,
                   bool, None, list, tuple, bytes and io.BytesIO.
- world2_dtensor:  world 2, 1-D DeviceMesh. A two-Linear MLP whose weights are DTensors sharded
                   by rows (Shard(0); 3 rows over 2 ranks is uneven) and whose biases are
                   replicated DTensors, trained 2 Adam steps; model and optimizer state from
                   torch.distributed.checkpoint.state_dict.get_state_dict, plus "epoch" (int),
                   "loss" (float), "tag" (str) and "rng" (io.BytesIO).
- world4_2d:       world 4, DeviceMesh 2x2 ("dp", "tp"). DTensors placed (Shard(0), Shard(1))
                   on a 5x7 matrix (uneven both ways), (Shard(0), Shard(0)) on a 10x3 matrix
                   (4 row blocks), (Shard(0), Shard(0)) on a length-3 vector (one rank holds an
                   empty chunk), (Replicate(), Shard(1)) in bfloat16, (Shard(1), Replicate()) in
                   float16, a replicated float64 vector and an int64 matrix, a plain (non-DTensor)
                   tensor every rank holds, and a plain int.
- world4_fsdp2:    world 4, FSDP2 (torch.distributed.fsdp.fully_shard) on a Linear(3, 5) +
                   Linear(5, 2) MLP, 2 Adam steps, state from get_state_dict. FSDP2 shards dim 0
                   like torch.chunk: 5 rows -> 2, 2, 1, 0 and 2 rows -> 1, 1, 0, 0 (empty chunks).

Outputs, for each case NAME:

- tests/fixtures/dcp/NAME/             the DCP directory (.metadata, __R_0.distcp)
- tests/fixtures/dcp/NAME.manifest.json  for every key of .metadata (flattened FQN, in the
  order of Metadata.state_dict_metadata): its object path (planner_data), and for tensors the
  dtype (ckpt's names: F32, BF16, I64, ...), global shape, the chunks as saved, the full values
  in C order and the SHA-256 of the C-contiguous little-endian bytes of the global tensor; for
  other values a type tag and the value (bytes as hex).

The manifests are computed from the in-memory state (DTensor.full_tensor()), not by reading
the checkpoint back; the script then loads every checkpoint with dcp.load(no_dist=True) in
this process and checks it against its manifest.

Determinism: seeds are fixed, old outputs are removed first, checkpoint_id is the relative
directory name (workers chdir into tests/fixtures/dcp) and DCP's uuid4 save_id is replaced by a
fixed uuid5 per case, so a rerun writes the same bytes (torch.save's serialization_id is a
content hash, so the .distcp files are deterministic anyway).
"""

import hashlib
import io
import json
import logging
import os
import pathlib
import pickle
import shutil
import socket
import sys
import time
import uuid
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "dcp"

DTYPES = {
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
}


# ----------------------------------------------------------------------------- helpers


def fixed_uuid(name):
    """DCP's FileSystemWriter stamps a uuid4 save_id into .metadata; a fixed one per case keeps
    reruns byte-identical. It is still a well-formed UUID string, as DCP writes."""
    value = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ckpt-dcp-fixture:{name}"))
    import torch.distributed.checkpoint.filesystem as fs

    fs._generate_uuid = lambda: value


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_entry(t):
    t = t.detach().cpu().contiguous()
    values = t.flatten().tolist()  # bool -> bool, ints -> int, floats (incl. bf16/f16) -> exact float
    return {
        "kind": "tensor",
        "dtype": DTYPES[t.dtype],
        "shape": list(t.shape),
        "sha256": hashlib.sha256(tensor_bytes(t)).hexdigest(),
        "values": values,
    }


def plain_json(v):
    """JSON-native form of a non-tensor value (tuples become lists; the top-level type is in
    the entry's "type")."""
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
    raise TypeError(f"no JSON form for {type(v)}")


def plain_type(v):
    if v is None:
        return "none"
    if isinstance(v, io.BytesIO):
        return "bytesio"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "tuple",
            dict: "dict", bytes: "bytes"}[type(v)]


def flatten(state_dict):
    """The flattening DCP's DefaultSavePlanner applies (torch.distributed.checkpoint._nested_dict),
    so that manifest keys are exactly the keys of .metadata."""
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict

    return flatten_state_dict(state_dict)


def local_manifest(state_dict):
    """Called on every rank (full_tensor() is a collective); returns the entries on all ranks."""
    from torch.distributed.tensor import DTensor

    flat, mapping = flatten(state_dict)
    entries = {}
    for key, value in flat.items():
        if isinstance(value, DTensor):
            e = tensor_entry(value.full_tensor())
            e["placements"] = [str(p) for p in value.placements]
            e["mesh_shape"] = list(value.device_mesh.shape)
        elif isinstance(value, torch.Tensor):
            e = tensor_entry(value)
        else:
            e = {"kind": "value", "type": plain_type(value), "value": plain_json(value)}
        e["path"] = list(mapping[key])
        entries[key] = e
    return entries


def chunks_from_metadata(ckpt_dir):
    with open(ckpt_dir / ".metadata", "rb") as f:
        md = pickle.load(f)  # our own fresh output; ckpt must use a restricted unpickler
    out = {}
    for key, m in md.state_dict_metadata.items():
        if hasattr(m, "chunks"):
            out[key] = {
                "dtype": DTYPES[m.properties.dtype],
                "shape": list(m.size),
                "chunks": [{"offsets": list(c.offsets), "sizes": list(c.sizes)} for c in m.chunks],
            }
        else:
            out[key] = None
    return list(md.state_dict_metadata), out, md


def write_manifest(name, world, mesh, description, entries):
    """Run in the parent after the workers are done."""
    ckpt_dir = OUT / name
    order, chunks, md = chunks_from_metadata(ckpt_dir)
    if set(order) != set(entries):
        raise SystemExit(f"{name}: metadata keys {sorted(order)} != state keys {sorted(entries)}")
    out_entries = []
    for key in order:
        e = dict(entries[key])
        if e["kind"] == "tensor":
            c = chunks[key]
            if c is None or c["dtype"] != e["dtype"] or c["shape"] != e["shape"]:
                raise SystemExit(f"{name}: {key}: metadata {c} disagrees with {e['dtype']} {e['shape']}")
            e["chunks"] = c["chunks"]
        elif chunks[key] is not None:
            raise SystemExit(f"{name}: {key} is a plain value but .metadata has tensor metadata")
        out_entries.append({"key": key, **dict(sorted(e.items()))})
    files = {p.name: p.stat().st_size for p in sorted(ckpt_dir.iterdir())}
    manifest = {
        "name": name,
        "description": description,
        "torch_version": torch.__version__,
        "world_size": world,
        "mesh_shape": mesh,
        "dcp_version": md.version,
        "files": files,
        "entries": out_entries,
    }
    path = OUT / f"{name}.manifest.json"
    path.write_text(dump_manifest(manifest))
    return manifest


def dump_manifest(manifest):
    """JSON with one line per entry: readable, and diffs stay small."""
    head = {k: v for k, v in manifest.items() if k != "entries"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "entries": [')
    body = [f"    {json.dumps(e)}" for e in manifest["entries"]]
    lines.append(",\n".join(body))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init(rank, world, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    warnings.filterwarnings("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)  # gloo/DTensor performance notes
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def save_and_report(name, state_dict, rank):
    entries = local_manifest(state_dict)
    os.chdir(OUT)  # checkpoint_id -> PosixPath(NAME) in .metadata, not an absolute path
    dcp.save(state_dict, checkpoint_id=name)
    if rank == 0:
        with open(OUT / f".{name}.entries.pkl", "wb") as f:
            pickle.dump(entries, f)
    dist.barrier()


# ----------------------------------------------------------------------------- cases


def case_single(name):
    fixed_uuid(name)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 4, generator=g)
    state = {
        "model": {
            "w": base,
            "w_t": torch.randn(4, 2, generator=g).t(),  # non-contiguous: strides (1, 2)
            "b": torch.arange(5, dtype=torch.int64) - 2,
            "half": torch.linspace(-1, 1, 6).to(torch.float16).reshape(2, 3),
            "bf": torch.linspace(-2, 2, 4).to(torch.bfloat16),
            "f64": torch.tensor([0.1, -2.5, 1e-300], dtype=torch.float64),
            "i32": torch.tensor([[1, -2], [3, 2**31 - 1]], dtype=torch.int32),
            "u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
            "mask": torch.tensor([True, False, True]),
            "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 3),
        },
        "layers": [torch.ones(2), {"gain": torch.full((2,), 0.5)}],
        "epoch": 7,
        "lr": 0.125,
        "name": "single-process",
        "flag": True,
        "nothing": None,
        "milestones": [10, 20],
        "betas": (0.9, 0.999),
        "raw": b"\x00\x01\xfeckpt",
        "blob": io.BytesIO(b"bytes entry \x00\xff"),
    }
    warnings.filterwarnings("ignore")
    entries = local_manifest(state)
    cwd = os.getcwd()
    os.chdir(OUT)
    try:
        dcp.save(state, checkpoint_id=name, no_dist=True)
    finally:
        os.chdir(cwd)
    return entries


def case_world2_dtensor(rank, world, port, name):
    init(rank, world, port)
    fixed_uuid(name)
    from torch import nn
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))

    def partition(mod_name, module, mesh):
        for pname, p in list(module.named_parameters(recurse=False)):
            placement = Shard(0) if pname == "weight" else Replicate()
            module.register_parameter(pname, nn.Parameter(distribute_tensor(p.data, mesh, [placement])))

    def to_dtensor(module, inputs, mesh):
        return tuple(DTensor.from_local(x, mesh, [Replicate()]) if not isinstance(x, DTensor) else x
                     for x in inputs)

    distribute_module(model, mesh, partition_fn=partition, input_fn=to_dtensor)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        x = torch.randn(5, 4, generator=g)
        out = model(x)
        loss = (out * out).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    msd, osd = get_state_dict(model, opt)
    state = {
        "model": msd,
        "optim": osd,
        "epoch": 3,
        "loss": 0.25,
        "tag": "world2",
        "rng": io.BytesIO(bytes(range(16))),
    }
    save_and_report(name, state, rank)
    dist.destroy_process_group()


def case_world4_2d(rank, world, port, name):
    init(rank, world, port)
    fixed_uuid(name)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    g = torch.Generator().manual_seed(3)  # same global values on every rank
    mat = torch.randn(5, 7, generator=g)
    rows = torch.arange(30, dtype=torch.float32).reshape(10, 3) / 4
    vec = torch.tensor([1.5, -2.0, 3.25])
    col = torch.randn(4, 6, generator=g).to(torch.bfloat16)
    half = torch.randn(3, 4, generator=g).to(torch.float16)
    rep = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    ints = torch.arange(12, dtype=torch.int64).reshape(3, 4) * 1000 - 5000
    state = {
        "mat_2d": distribute_tensor(mat, mesh, [Shard(0), Shard(1)]),
        "rows_4way": distribute_tensor(rows, mesh, [Shard(0), Shard(0)]),
        "vec_uneven": distribute_tensor(vec, mesh, [Shard(0), Shard(0)]),
        "nested": {
            "col_bf16": distribute_tensor(col, mesh, [Replicate(), Shard(1)]),
            "half_f16": distribute_tensor(half, mesh, [Shard(1), Replicate()]),
            "rep_f64": distribute_tensor(rep, mesh, [Replicate(), Replicate()]),
            "ints_i64": distribute_tensor(ints, mesh, [Shard(1), Shard(0)]),
        },
        "plain": torch.tensor([4.0, 5.0]),  # an ordinary tensor on every rank: saved once
        "step": 11,
    }
    save_and_report(name, state, rank)
    dist.destroy_process_group()


def case_world4_fsdp2(rank, world, port, name):
    init(rank, world, port)
    fixed_uuid(name)
    from torch import nn
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(4 + rank)  # data parallel: each rank its own batch
    for _ in range(2):
        x = torch.randn(4, 3, generator=g)
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    msd, osd = get_state_dict(model, opt)
    save_and_report(name, {"model": msd, "optim": osd, "epoch": 2}, rank)
    dist.destroy_process_group()


CASES = {
    "single": (1, [], case_single,
               "world 1, no process group: plain tensors of several dtypes, a non-contiguous "
               "one, 0-d and empty ones, and every kind of plain value"),
    "world2_dtensor": (2, [2], case_world2_dtensor,
                       "world 2: MLP with Shard(0) DTensor weights and replicated DTensor biases, "
                       "Adam state after 2 steps (get_state_dict), epoch/loss/tag/rng(BytesIO)"),
    "world4_2d": (4, [2, 2], case_world4_2d,
                  "world 4, DeviceMesh 2x2: (Shard(0), Shard(1)) and other 2-D placements, "
                  "uneven and empty chunks, bf16/f16/f64/i64, a plain tensor, a plain int"),
    "world4_fsdp2": (4, [4], case_world4_fsdp2,
                     "world 4: FSDP2 fully_shard MLP, Adam state after 2 steps (get_state_dict); "
                     "uneven row shards including empty ones"),
}


# ----------------------------------------------------------------------------- self-check


def self_check(name, manifest):
    """Load the checkpoint back in this process (no process group) and compare."""
    import check_dcp_load

    errors = check_dcp_load.check_metadata(OUT / name, manifest)
    errors += check_dcp_load.check_single_process(OUT / name, manifest)
    if errors:
        raise SystemExit(f"{name}: self-check failed:\n  " + "\n  ".join(errors))


def main(argv):
    names = argv or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {list(CASES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    timings = {}
    for name in names:
        world, mesh, fn, description = CASES[name]
        shutil.rmtree(OUT / name, ignore_errors=True)
        (OUT / f"{name}.manifest.json").unlink(missing_ok=True)
        start = time.perf_counter()
        if world == 1:
            entries = fn(name)
        else:
            mp.spawn(fn, args=(world, free_port(), name), nprocs=world, join=True)
            tmp = OUT / f".{name}.entries.pkl"
            with open(tmp, "rb") as f:
                entries = pickle.load(f)
            tmp.unlink()
        manifest = write_manifest(name, world, mesh, description, entries)
        self_check(name, manifest)
        timings[name] = time.perf_counter() - start
        size = sum(manifest["files"].values())
        print(f"{name}: world {world}, {len(manifest['entries'])} keys, {size} bytes "
              f"in {len(manifest['files'])} files, {timings[name]:.1f}s")
    print(f"total {sum(timings.values()):.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
