"""HIPS autograd: autograd.value_and_grad on the autograd.numpy spelling of each problem."""
import pytest

pytest.importorskip("autograd", reason="HIPS autograd not installed (pip install autograd)")

import peers  # noqa: E402
from harness import ALL, checked, params  # noqa: E402


@params(ALL)
def test_autograd(bench, problem):
    vg, args = peers.make_autograd(problem)
    checked(problem, "autograd", vg, args)
    t = checked(problem, "autograd", vg, args)
    bench(problem, "autograd", vg, args, t_est=t)
