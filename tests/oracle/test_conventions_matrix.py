"""Every convention case of docs/conventions.md through every derivative path.

The paths are the list `PATHS` of tests/conventions_paths.py (append a new path there).
Each case is a function at a point where a convention decides the derivative -- an
absolute-zero product (0 * inf, 0 * NaN), a kink (abs, maximum, max/min ties, hypot at
the origin), sqrt at 0, a select whose untaken side is log(0), std of one element, prod
with zeros -- with its gradient and Hessian written out by hand from the conventions.
Every path must give them, traced at the point and replayed there from a trace made
elsewhere; so the paths also agree with each other.
"""
from collections import namedtuple

import numpy as np
import pytest

import fastad as fd
from conventions_paths import PATHS, evaluate

inf = np.inf

# name, f, point, a point to trace at before replaying at `point` (or None), gradient,
# Hessian -- the derivatives by the conventions, worked out in the comment beside each
Case = namedtuple("Case", "name f x x_trace grad hess")

CASES = [
    # f = 0 identically; sqrt'(0) = inf meets the zero adjoint of (x - x)
    Case("sqrt of a zero square", lambda x: np.sum(np.sqrt((x - x) ** 2)),
         [1.0], [2.0], [0.0], [[0.0]]),
    # std of one element: the deviation x - mean(x) is 0 identically, sqrt'(0) = inf
    Case("std of one element", lambda x: np.std(x), [3.5], [-1.0], [0.0], [[0.0]]),
    Case("var-free sqrt, two elements", lambda x: np.std(x[:1]) + x[1] * x[1],
         [3.5, 1.0], [0.5, 2.0], [0.0, 2.0], [[0.0, 0.0], [0.0, 2.0]]),
    # 0 * sqrt(x) at 0: the partial of the product's right side is 0, sqrt'(0) = inf
    Case("zero times sqrt at 0", lambda x: 0.0 * np.sqrt(x[0]) + x[0],
         [0.0], [1.0], [1.0], [[0.0]]),
    # sqrt at 0 itself: f' = 1/(2 sqrt x) = inf, f'' = -1/(4 x^1.5) = -inf
    Case("sqrt at 0", lambda x: np.sqrt(x[0]), [0.0], [1.0], [inf], [[-inf]]),
    # abs'(0) = 1 and abs'' = 0
    Case("abs at the kink", lambda x: np.abs(x[0]), [0.0], [1.0], [1.0], [[0.0]]),
    # (x |x|)' = |x| + x sign(x) = 0 at 0; (x |x|)'' = 2 abs'(0) = 2
    Case("x abs x at the kink", lambda x: x[0] * np.abs(x[0]), [0.0], [0.5], [0.0], [[2.0]]),
    # maximum(x^2, x) at the tie x = 1: half of each slope, 0.5 * 2 + 0.5 * 1; then 0.5 * 2
    Case("maximum tie", lambda x: np.maximum(x[0] ** 2, x[0]), [1.0], [1.5], [1.5], [[1.0]]),
    Case("minimum tie", lambda x: np.minimum(x[0] ** 2, x[0]), [1.0], [1.5], [1.5], [[1.0]]),
    # max of (x0^2, x1^2) at x = (1, -1): a tie, each gets half: 0.5 * 2 x_i; Hessian 0.5 * 2
    Case("max reduction tie", lambda x: np.max(x * x), [1.0, -1.0], [1.0, -2.0],
         [1.0, -1.0], [[1.0, 0.0], [0.0, 1.0]]),
    Case("min reduction tie", lambda x: np.min(x ** 3), [1.0, 1.0], [1.0, 2.0],
         [1.5, 1.5], [[3.0, 0.0], [0.0, 3.0]]),
    # sqrt(max(x) - 1) at (0, 1): an infinite adjoint reaches the max, whose partial for the
    # element that is not the max is 0 -- 0, not inf * 0; f'' = -1/(4 (x1 - 1)^1.5) = -inf
    Case("infinite adjoint into a max", lambda x: np.sqrt(np.max(x) - 1.0), [0.0, 1.0],
         [0.0, 2.0], [0.0, inf], [[0.0, 0.0], [0.0, -inf]]),
    # sqrt(x0 x1) at (0, 1): f_x0 = inf, f_x1 = 0 (inf * 0); H = [[-inf, inf], [inf, 0]], the
    # limits of -x1^2/(4 p^1.5), 1/(4 sqrt p) and -sqrt(x0)/(4 x1^1.5) as x0 -> 0
    Case("infinite adjoint into a prod", lambda x: np.sqrt(np.prod(x)), [0.0, 1.0],
         [2.0, 1.0], [inf, 0.0], [[-inf, inf], [inf, 0.0]]),
    # where(x > 0, log x, 0) at (0, 2): the untaken log'(0) = inf gets adjoint 0
    Case("log at 0 behind a select", lambda x: np.sum(np.where(x > 0, np.log(x), 0.0)),
         [0.0, 2.0], [1.0, 2.0], [0.0, 0.5], [[0.0, 0.0], [0.0, -0.25]]),
    # prod with one zero: d/dx_k = product of the others, exactly (no 0/0)
    Case("prod with one zero", lambda x: np.prod(x), [0.0, 2.0, 3.0], [1.0, 2.0, 3.0],
         [6.0, 0.0, 0.0], [[0.0, 3.0, 2.0], [3.0, 0.0, 0.0], [2.0, 0.0, 0.0]]),
    Case("prod with two zeros", lambda x: np.prod(x), [0.0, 0.0, 3.0], [1.0, 2.0, 3.0],
         [0.0, 0.0, 0.0], [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    # hypot at the origin: derivative 0 (the a/r side is selected away), and so its derivative
    Case("hypot at the origin", lambda x: np.hypot(x[0], x[1]), [0.0, 0.0], [1.0, 2.0],
         [0.0, 0.0], [[0.0, 0.0], [0.0, 0.0]]),
    # 0 ** b with traced base and exponent: d/db = 0 at a base of 0 (not 0 * log 0 = NaN)
    Case("power with a zero base", lambda x: (x[0] - x[0]) ** x[1], [1.0, 2.0], [1.0, 3.0],
         [0.0, 0.0], [[0.0, 0.0], [0.0, 0.0]]),
]


def _check(got, want, what):
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
    ok = (got == want) | np.isclose(got, want, rtol=1e-13, atol=1e-13)
    assert ok.all(), f"{what}: got {got.tolist()}, want {want.tolist()}"


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_convention_case_on_every_path(case, path):
    want = case.grad if path.order == 1 else case.hess
    for k, got in enumerate(evaluate(path, case.f, case.x, case.x_trace)):
        _check(got, want, f"{case.name}, {path.name}, {'traced' if k == 0 else 'replayed'}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_values_agree(case):
    """The function's value at the convention point is the plain numpy value."""
    x = np.array(case.x)
    value = fd.value_and_grad(case.f)(x)[0]
    with np.errstate(all="ignore"):
        assert value == case.f(x)


def test_issue_reproducers():
    """The nested derivatives at a zero first derivative (docs/conventions.md)."""
    assert fd.grad(np.std)(3.5) == 0.0
    assert fd.jvp(fd.grad(np.std), (3.5,), (1.0,)) == (0.0, 0.0)
    assert fd.value_and_grad(lambda v: v * fd.grad(np.std)(3.5))(0.3) == (0.0, 0.0)
    assert fd.grad(lambda v: fd.jvp(np.std, (3.5,), (v,))[1])(0.3) == 0.0
    f = lambda x: np.sqrt((x - x) ** 2)
    assert fd.grad(f)(1.0) == 0.0
    assert fd.value_and_grad(lambda v: v * fd.grad(f)(1.0))(0.3) == (0.0, 0.0)
