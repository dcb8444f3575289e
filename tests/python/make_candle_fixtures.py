"""Makes the PyTorch fixtures of the candle tests (tests/candle/pytorch.rs): the state dicts
of two small PyTorch nets whose candle twins load them, and inputs with PyTorch's outputs.

- ConvNet: Conv2d, BatchNorm2d (its running statistics after three training batches, so
  `num_batches_tracked` is 3), ReLU, ConvTranspose2d, Linear; saved with torch.save as
  convnet.pt.
- SeqNet: Embedding, Conv1d, LayerNorm, RMSNorm, Linear without bias; saved as a Hugging Face
  safetensors file, seqnet.safetensors.
- io.pt: for each net an input and its output in eval mode.

    /tmp/pt/bin/python tests/python/make_candle_fixtures.py
"""

import pathlib

import torch
from safetensors.torch import save_file
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "candle"


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 8 * 8, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.up(x).flatten(1))


class SeqNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.rms = nn.RMSNorm(8, eps=1e-5)
        self.head = nn.Linear(8, 5, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.head(self.rms(self.norm(x)))


def main():
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)

    conv = ConvNet()
    with torch.no_grad():
        # Affine parameters and running statistics away from their initial 1 and 0.
        conv.bn.weight.uniform_(0.5, 1.5)
        conv.bn.bias.uniform_(-0.5, 0.5)
        conv.train()
        for _ in range(3):
            conv(torch.randn(8, 3, 4, 4) * 2 + 0.5)
    conv.eval()
    assert int(conv.bn.num_batches_tracked) == 3
    torch.save(conv.state_dict(), OUT / "convnet.pt")

    seq = SeqNet()
    with torch.no_grad():
        seq.norm.weight.uniform_(0.5, 1.5)
        seq.norm.bias.uniform_(-0.5, 0.5)
        seq.rms.weight.uniform_(0.5, 1.5)
    seq.eval()
    save_file({k: v.contiguous() for k, v in seq.state_dict().items()}, OUT / "seqnet.safetensors")

    x = torch.randn(2, 3, 4, 4)
    ids = torch.randint(0, 16, (2, 6))
    with torch.no_grad():
        io = {
            "convnet_x": x,
            "convnet_y": conv(x),
            "seqnet_ids": ids,
            "seqnet_y": seq(ids),
        }
    torch.save(io, OUT / "io.pt")
    for path in sorted(OUT.iterdir()):
        print(f"wrote {path.relative_to(OUT.parent.parent.parent)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
