"""Resumes in PyTorch a training checkpoint written by ckpt (tests/pytorch/resume.rs):
loads tests/fixtures/pytorch/written/adam_resume.pt with torch.load(weights_only=True) into
nn.Sequential(Linear(8, 16), ReLU(), Linear(16, 4)) and torch.optim.Adam, takes the saved
fourth step, and compares the parameters with what Rust computed (within 1e-6).

    python tests/python/resume_in_pytorch.py

Without torch it prints SKIP and exits 0, or fails under CI=true (see needs_torch.py).
"""

import pathlib
import sys

from needs_torch import require_torch

FILE = (
    pathlib.Path(__file__).resolve().parent.parent
    / "fixtures" / "pytorch" / "written" / "adam_resume.pt"
)


def main():
    torch = require_torch()
    from torch import nn

    checkpoint = torch.load(FILE, weights_only=True)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    for name, param in model.named_parameters():
        param.grad = checkpoint["next_grads"][name].clone()
    optimizer.step()

    worst = 0.0
    for name, param in model.state_dict().items():
        expected = checkpoint["expected_after_step"][name]
        worst = max(worst, (param - expected).abs().max().item())
    lr = optimizer.param_groups[0]["lr"]
    if worst > 1e-6:
        print(f"FAIL: {FILE.name}: parameters differ from Rust's by {worst:.3g} after the step")
        return 1
    print(
        f"ok   {FILE.name}: PyTorch {torch.__version__} resumed Adam (lr {lr}, step 4); "
        f"max |torch - rust| = {worst:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
