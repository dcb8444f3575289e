"""Makes the PyTorch seeds of fuzz/corpus/: real files for each fuzz target to mutate.

    python tests/python/make_fuzz_seeds.py

Every target gets `tiny`, the state dict the fuzz crate's fixed model holds (`weight` F32
[2, 2] = 0..3, `bias` F32 [2] = 4, 5), so that mutations start from a file that loads; the
readers' targets also get the committed PyTorch fixtures of their format. The pickle target's
seeds are the `data.pkl` records of those files. ckpt's own seeds (`native/`) are written by
ckpt and kept as they are (`tiny.ckpt` is
`ckpt convert fuzz/corpus/pt_zip/tiny.pt fuzz/corpus/native/tiny.ckpt`).
"""

import json
import pathlib
import shutil
import zipfile

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "pytorch"
CORPUS = ROOT / "fuzz" / "corpus"

ZIP_FIXTURES = [
    "mlp_state_dict.pt",
    "dtypes.pt",
    "views.pt",
    "dataparallel_state_dict.pt",
    "checkpoint_adam.pt",
    "gan_checkpoint.pt",
    "extra/protocol4.pt",
    "extra/parameters.pt",
    "hostile/whole_model_linear.pt",
    "written/tied.pt",
]


def tiny():
    return {
        "weight": torch.arange(4, dtype=torch.float32).reshape(2, 2),
        "bias": torch.tensor([4.0, 5.0]),
    }


def seed(target, name, data):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main():
    for target in ["load", "pt_zip", "pt_legacy", "pt_pickle", "safetensors", "sharded", "strict_load"]:
        shutil.rmtree(CORPUS / target, ignore_errors=True)
    work = CORPUS / ".work"
    work.mkdir(parents=True, exist_ok=True)

    torch.save(tiny(), work / "tiny.pt")
    torch.save(tiny(), work / "tiny_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(
        {"weight": tiny()["weight"].double(), "bias": tiny()["bias"].half()}, work / "tiny_cast.pt"
    )
    save_file(tiny(), work / "tiny.safetensors", metadata={"format": "pt"})
    tiny_pt = (work / "tiny.pt").read_bytes()
    tiny_legacy = (work / "tiny_legacy.pt").read_bytes()
    tiny_st = (work / "tiny.safetensors").read_bytes()

    for target in ["load", "strict_load"]:
        seed(target, "tiny.pt", tiny_pt)
        seed(target, "tiny_legacy.pt", tiny_legacy)
        seed(target, "tiny.safetensors", tiny_st)
        seed(target, "tiny_cast.pt", (work / "tiny_cast.pt").read_bytes())
        for ckpt_seed in sorted((CORPUS / "native").glob("*.ckpt")):
            seed(target, ckpt_seed.name, ckpt_seed.read_bytes())

    seed("pt_zip", "tiny.pt", tiny_pt)
    seed("pt_pickle", "tiny.pkl", zipfile.ZipFile(work / "tiny.pt").read("tiny/data.pkl"))
    for name in ZIP_FIXTURES:
        data = (FIXTURES / name).read_bytes()
        flat = name.replace("/", "_")
        seed("pt_zip", flat, data)
        seed("load", flat, data)
        with zipfile.ZipFile(FIXTURES / name) as archive:
            pickle = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            seed("pt_pickle", flat.removesuffix(".pt") + ".pkl", archive.read(pickle))

    seed("pt_legacy", "tiny_legacy.pt", tiny_legacy)
    seed("pt_legacy", "mlp_legacy_format.pt", (FIXTURES / "mlp_legacy_format.pt").read_bytes())
    torch.manual_seed(0)
    optimizer_state = {"epoch": 3, "loss": 0.25, "model": tiny(), "names": ["a", "b"]}
    torch.save(optimizer_state, work / "checkpoint_legacy.pt", _use_new_zipfile_serialization=False)
    seed("pt_legacy", "checkpoint_legacy.pt", (work / "checkpoint_legacy.pt").read_bytes())

    seed("safetensors", "tiny.safetensors", tiny_st)
    seed("safetensors", "cnn_bn.safetensors", (FIXTURES / "cnn_bn.safetensors").read_bytes())
    seed("load", "cnn_bn.safetensors", (FIXTURES / "cnn_bn.safetensors").read_bytes())

    # The index as Hugging Face writes it (json.dumps, indent 2, sorted keys) for the shard
    # the fuzz target lays down: model-00001-of-00001.safetensors.
    shard = "model-00001-of-00001.safetensors"
    index = {"metadata": {"total_size": 24}, "weight_map": {"bias": shard, "weight": shard}}
    seed("sharded", "index.json", (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
    split = {
        "metadata": {"total_size": 24},
        "weight_map": {"bias": "model-00002-of-00002.safetensors", "weight": shard},
    }
    seed("sharded", "index_two_shards.json", json.dumps(split, indent=2).encode())

    shutil.rmtree(work)


if __name__ == "__main__":
    main()
