"""Writes tests/fixtures/pytorch/dtypes_st.safetensors (+ .manifest.json): the tensors of
dtypes_all.pt that safetensors 0.8 stores and ckpt reads, saved by the real safetensors (every
dtype of the file but F4, float4_e2m1fn_x2, which ckpt does not have; dtypes_all.safetensors
keeps it and is the refusal case).

    python tests/python/make_dtype_fixtures.py

The manifest is in the fixtures' form (tests/python/make_pt_fixtures.py): every tensor in
file order as {key, dtype, shape, sha256 of its little-endian bytes}.
"""

import hashlib
import json
import pathlib

import torch
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pytorch"
NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.uint16: "U16", torch.uint32: "U32",
    torch.uint64: "U64", torch.complex64: "C64", torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2", torch.float8_e4m3fnuz: "F8_E4M3FNUZ",
    torch.float8_e5m2fnuz: "F8_E5M2FNUZ", torch.float8_e8m0fnu: "F8_E8M0",
}


def main():
    tensors = torch.load(HERE / "dtypes_all.pt", weights_only=True)
    kept = {k: v.contiguous() for k, v in tensors.items() if v.dtype in NAMES and k != "f8_e4m3fn_view"}
    path = HERE / "dtypes_st.safetensors"
    save_file(kept, path)
    entries = []
    for key, t in kept.items():
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        entries.append({"key": key, "dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "sha256": hashlib.sha256(data).hexdigest()})
    path.with_name(path.name + ".manifest.json").write_text(json.dumps({"entries": entries}, indent=1) + "\n")
    print(f"wrote {path} with {len(kept)} tensors")


if __name__ == "__main__":
    main()
