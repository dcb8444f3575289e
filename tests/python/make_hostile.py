"""Makes the whole-model files in tests/fixtures/pytorch/hostile/: checkpoints that torch.load
with weights_only=True refuses, and that ckpt must refuse by name. Run with PyTorch installed:

    python tests/python/make_hostile.py
"""

import pathlib

import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pytorch" / "hostile"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


def main():
    HERE.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    # torch.save(model): the whole nn.Linear object, pickled.
    torch.save(nn.Linear(2, 2), HERE / "whole_model_linear.pt")
    # A user's class from a script: pickled as __main__.Net.
    torch.save(Net(), HERE / "whole_model_main.pt")
    print("wrote", sorted(p.name for p in HERE.iterdir()))


if __name__ == "__main__":
    main()
