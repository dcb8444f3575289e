"""Makes tests/fixtures/pytorch/extra/: files torch.save writes in less common ways.

    python tests/python/make_extra.py

- protocol2.pt / protocol4.pt: one state dict saved with pickle_protocol=2 (the default) and 4
  (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL); torch.load(weights_only=True) reads only
  the first, and ckpt, whose unpickler has exactly its opcodes, refuses the second as it does.
- parameters.pt: nn.Parameter values (pickled through torch._utils._rebuild_parameter), a
  torch.Size and a torch.device, as training scripts sometimes save them.
"""

import pathlib

import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pytorch" / "extra"


def main():
    HERE.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    state = model.state_dict()
    torch.save(state, HERE / "protocol2.pt")
    torch.save(state, HERE / "protocol4.pt", pickle_protocol=4)
    weight = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    torch.save(
        {
            "weight": weight,
            "frozen": nn.Parameter(torch.ones(2), requires_grad=False),
            "size": torch.Size([2, 3]),
            "device": torch.device("cpu"),
        },
        HERE / "parameters.pt",
    )
    print("wrote", sorted(p.name for p in HERE.iterdir()))


if __name__ == "__main__":
    main()
