"""Writes tests/fixtures/pytorch/globals/allowed_globals.txt: the default allow-list of
torch.load(weights_only=True), one `module.name` a line, sorted, as the installed PyTorch has it
(144 names in 2.15). ckpt's unpickler must accept exactly these (tests/pytorch/globals.rs).

    python tests/python/make_allowed_globals.py
"""

import pathlib

from torch._weights_only_unpickler import _get_allowed_globals

OUT = (pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pytorch" / "globals"
       / "allowed_globals.txt")


def main():
    names = sorted(_get_allowed_globals())
    OUT.write_text("".join(f"{name}\n" for name in names))
    print(f"wrote {len(names)} names to {OUT}")


if __name__ == "__main__":
    main()
