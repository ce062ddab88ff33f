"""PyTorch eager: forward on tensors sharing the numpy inputs' memory, torch.autograd.grad."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch==2.13.0)")
torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set in this process
    pass

import peers  # noqa: E402
from harness import ALL, checked, params  # noqa: E402


@params(ALL)
def test_torch(bench, problem):
    vg, args = peers.make_torch(problem)
    checked(problem, "torch", vg, args)  # warm-up + check
    t = checked(problem, "torch", vg, args)
    bench(problem, "torch", vg, args, t_est=t)
