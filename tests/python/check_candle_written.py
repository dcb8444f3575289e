"""Loads the .pt file ckpt wrote from a candle ConvNet (tests/fixtures/candle/written/convnet.pt,
by tests/candle/pytorch.rs from the candle twin that loaded convnet.pt) into PyTorch's ConvNet
with load_state_dict(strict=True), and checks its outputs against PyTorch's own (io.pt):
PyTorch -> candle -> PyTorch. candle keeps no batch counter, so num_batches_tracked is 0.

    python tests/python/check_candle_written.py

Without torch it prints SKIP and exits 0, or fails under CI=true (see needs_torch.py).
"""

import pathlib
import sys

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "candle"


def main():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from needs_torch import require_torch

    torch = require_torch()
    from make_candle_fixtures import ConvNet

    net = ConvNet()
    state = torch.load(FIXTURES / "written" / "convnet.pt", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.eval()
    io = torch.load(FIXTURES / "io.pt", weights_only=True)
    with torch.no_grad():
        diff = (net(io["convnet_x"]) - io["convnet_y"]).abs().max().item()
    counter = int(net.bn.num_batches_tracked)
    if diff > 1e-5 or counter != 0:
        print(f"FAIL convnet.pt: max |torch - expected| = {diff:.2e}, num_batches_tracked = {counter}")
        return 1
    print(f"ok   convnet.pt from candle: strict load, max |torch - expected| = {diff:.2e} (torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
