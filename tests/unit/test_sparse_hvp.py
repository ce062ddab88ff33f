"""Sparse Hessians by forward over reverse on f's own tape (docs/sparse.md, "Hessians on
the original tape"): values against dense Hessians, closed forms and the recorded-gradient
path they replace, on every op of the table, the structural records, generated programs,
kinks, guards and the fallback for records without a second-order lane rule."""
import numpy as np
import pytest

import fastad as fd
from fastad import sparse, _sparsity
from fastad.ops import NAME

pytest.importorskip("scipy.sparse")
special = pytest.importorskip("scipy.special")
from hypothesis import given, settings, HealthCheck  # noqa: E402

from test_sparse import programs, scalar_fn  # noqa: E402  (tests/unit is on sys.path)


@pytest.fixture(autouse=True)
def forward_over_reverse(monkeypatch):
    """These tests are about forward over reverse: route to it where its rule says (the
    default, FOR_HESSIAN = False, keeps the recorded-gradient path; docs/sparse.md), and
    keep the compiled colour lanes (tested in test_sparse_compiled.py) out of the way."""
    monkeypatch.setattr(sparse, "FOR_HESSIAN", True)
    monkeypatch.setattr(sparse, "COMPILED_LANES", False)


def test_default_is_the_recorded_gradient_path(monkeypatch):
    monkeypatch.undo()
    assert sparse.FOR_HESSIAN is False
    x = np.random.default_rng(3).uniform(-1, 1, 20)
    H = sparse.SparseHessian(rosen)
    np.testing.assert_allclose(H(x).toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-12)
    assert uses_lanes(H) and not routed_to_lanes(H)
    assert "FOR_HESSIAN is False" in H.info()["note"]


def both_paths(f, x):
    """(gradient, Hessian nonzeros) of forward over reverse on f's tape and of the
    recorded-gradient path, on the same tape and colouring, and the SparseHessian."""
    H = sparse.SparseHessian(f)
    H(x)
    e = H._last
    plan = e.plan
    slots, _ = _sparsity.hv_check(e.tape, e.hi)
    how = "columns" if plan["dense"] else "star"
    new = old = None
    if slots >= 0:
        g, B = _sparsity.hessian_lanes(e.tape, x, e.col, plan["colours"], plan["ncolours"],
                                       e.hi, e.fslot, slots, _sparsity.Lanes(),
                                       _sparsity.Lanes())
        new = (g, sparse._recover(e, B, how))
    g, B = _sparsity.compressed(e.tape, x, e.col, plan["colours"], plan["ncolours"], e.outs,
                                False)
    old = (g, sparse._recover(e, B, how))
    return new, old, H


def assert_close_to_old(new, old, rtol=1e-14):
    """Equal up to the order of sums: |new - old| <= rtol * the entry's scale, where the
    scale is the largest |value| of its row of terms (here: of both results).  Non-finite
    entries must be the same."""
    for a, b in zip(new, old):
        assert a.shape == b.shape
        fin = np.isfinite(b)
        assert np.array_equal(np.isfinite(a), fin)
        assert np.array_equal(a[~fin], b[~fin], equal_nan=True)
        scale = max(np.abs(b[fin]).max(initial=0.0), 1e-300)
        assert np.abs(a[fin] - b[fin]).max(initial=0.0) <= rtol * scale * 4, (a, b)


def uses_lanes(H):
    """Can f's tape be swept by forward over reverse (every record has a lane rule)?"""
    return H._last.plan.get("hv_slots", -1) >= 0


def routed_to_lanes(H):
    """Did the last call take forward over reverse?"""
    return H._last.plan.get("hv", -1) >= 0


def rosen(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_hessian(x):
    n = len(x)
    H = np.zeros((n, n))
    i = np.arange(n - 1)
    H[i, i] += 1200 * x[:-1] ** 2 - 400 * x[1:] + 2
    H[i + 1, i + 1] += 200
    H[i, i + 1] = H[i + 1, i] = -400 * x[:-1]
    return H


def test_rosenbrock_closed_form_and_old_path():
    x = np.random.default_rng(1).uniform(-1.5, 1.5, 200)
    new, old, H = both_paths(rosen, x)
    assert routed_to_lanes(H) and H._last.plan["ncolours"] == 3
    np.testing.assert_allclose(H(x).toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-11)
    assert_close_to_old(new, old)
    assert "second-order adjoint lanes" in H.info()["direction"]
    assert H.info()["note"] == ""


# every elementwise op of the table that numpy or scipy.special reaches, unary and binary,
# as ranged records (arrays) and scalar records (a Python loop)
UNARY = [np.sin, np.cos, np.tan, np.exp, np.exp2, np.expm1, np.log, np.log2, np.log10,
         np.log1p, np.sqrt, np.cbrt, np.reciprocal, np.square, np.arcsin, np.arccos,
         np.arctan, np.sinh, np.cosh, np.tanh, np.arcsinh, lambda v: np.arccosh(1.5 + v),
         np.arctanh, np.abs, np.negative, special.erf, special.erfc, special.expit,
         special.logit, special.gammaln, special.digamma, special.erfinv, special.ndtr,
         special.log_ndtr]
BINARY = [np.add, np.subtract, np.multiply, np.divide, np.power, np.arctan2, np.hypot,
          np.maximum, np.minimum, np.fmax, np.fmin, np.logaddexp, special.xlogy,
          special.xlog1py, special.gammainc, special.gammaincc,
          lambda a, b: np.where(a > 0.5, a * b, b)]


@pytest.mark.parametrize("op", range(len(UNARY) + len(BINARY)))
def test_every_op_ranged_and_scalar(op):
    rng = np.random.default_rng(op)
    x = rng.uniform(0.1, 0.9, 8)

    def ranged(x):
        a, b = x[:4], x[4:]
        if op < len(UNARY):
            y = UNARY[op](a * b + 0.01) * b
        else:
            y = BINARY[op - len(UNARY)](a, b + 0.05) * (a + 1.0)
        return np.sum(y * y + y)

    def scalar(x):
        total = 0.0
        for k in range(4):
            a, b = x[k], x[4 + k]
            if op < len(UNARY):
                y = UNARY[op](a * b + 0.01) * b
            else:
                y = BINARY[op - len(UNARY)](a, b + 0.05) * (a + 1.0)
            total = total + y * y + y
        return total

    for f in (ranged, scalar):
        new, old, H = both_paths(f, x)
        assert uses_lanes(H)
        assert routed_to_lanes(H) == (f is ranged)
        assert_close_to_old(new, old)
        np.testing.assert_allclose(H(x).toarray(), fd.hessian(f)(x), rtol=1e-11, atol=1e-11)
        # finite differences of the exact gradient, an independent reference
        g = fd.grad(f)
        h = 1e-6
        fdh = np.array([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(8)])
        np.testing.assert_allclose(H(x).toarray(), fdh, rtol=1e-5, atol=1e-5)


M = np.random.default_rng(7).uniform(-1, 1, (5, 6))


def structural(x):
    """gather (slices, fancy indexing, broadcasts), sum, max, min, cumsum, matmul."""
    y = M @ np.tanh(x[:6])                              # matmul with a constant
    A = x[:6].reshape(2, 3)
    B = x[6:12].reshape(3, 2)
    C = A @ B                                           # matmul of two variables
    z = np.cumsum(x[2:9] * x[3:10])
    return (np.sum(y ** 2) + np.sum(C * C) + np.sum(z * np.sin(z)) + np.max(x[:5] ** 2)
            + np.min(np.cos(x[4:])) * x[0] + np.sum(x[[1, 1, 3]] ** 3) + np.sum(x * x[0]))


def test_structural_records():
    x = np.random.default_rng(3).uniform(-1, 1, 12)
    new, old, H = both_paths(structural, x)
    assert routed_to_lanes(H)
    assert_close_to_old(new, old)
    np.testing.assert_allclose(H(x).toarray(), fd.hessian(structural)(x), rtol=1e-11,
                               atol=1e-11)
    np.testing.assert_allclose(new[0], fd.grad(structural)(x), rtol=1e-13, atol=1e-13)


def test_many_colours_take_several_passes_and_lanes_are_reused():
    """A dense Hessian of 40 columns: 40 colours, passes of at most 16 lanes; the lane
    memory is reused between calls (left zero on every slot a later call reads)."""
    H = sparse.SparseHessian(lambda x: np.sum(x) ** 3 + np.sum(np.cos(x) * x[::-1]))
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = rng.uniform(-1, 1, 40)
        ref = fd.hessian(lambda x: np.sum(x) ** 3 + np.sum(np.cos(x) * x[::-1]))(x)
        np.testing.assert_allclose(H(x).toarray(), ref, rtol=1e-12, atol=1e-12)
        assert routed_to_lanes(H)


def test_kinks_and_absolute_zero_products_follow_the_conventions():
    """abs'(0) = 1, a tie of maximum shares 0.5/0.5, the untaken side of a select and a
    zero times an infinite partial do not poison the Hessian (docs/conventions.md): the
    same values as the recorded-gradient path, closed forms below."""
    def f(x):
        return (np.sum(np.abs(x[:2]) * x[2]) + np.sum(np.maximum(x[3], x[4]) ** 2)
                + np.sum(np.where(x[5] > 0, np.sqrt(x[5]), 0.0) * x[6])
                + np.sum(0.0 * np.sqrt(x[7]) * x[6]))
    x = np.array([0.0, -2.0, 3.0, 1.5, 1.5, 0.0, 2.0, 0.0])
    new, old, H = both_paths(f, x)
    assert new is not None
    assert uses_lanes(H)
    assert_close_to_old(new, old)
    D = H(x).toarray()
    Hl = sparse.SparseHessian(f)
    sparse.FOR_HESSIAN = "always"
    try:
        np.testing.assert_allclose(Hl(x).toarray(), D, rtol=1e-14, atol=0)
    finally:
        sparse.FOR_HESSIAN = True
    assert D[0, 2] == 1.0 and D[1, 2] == -1.0           # abs'(0) = 1, abs'(-2) = -1
    assert D[3, 3] == D[4, 4] == D[3, 4] == 0.5         # d2/dx2 of max(x3, x4)^2, shared
    assert np.isfinite(D).all()


def test_guards_retrace_and_each_branch_is_right():
    def f(x):
        if x[0] > 0:
            return np.sum(x ** 3)
        return np.sum(np.sin(x) * x[1])
    H = sparse.SparseHessian(f)
    for x0 in (1.0, -1.0, 2.0):
        x = np.array([x0, 0.5, -0.3])
        np.testing.assert_allclose(H(x).toarray(), fd.hessian(f)(x), rtol=1e-13, atol=1e-13)
        assert routed_to_lanes(H)
    assert H.info()["traces"] == 2


def test_records_without_a_lane_rule_keep_the_recorded_gradient_path():
    """prod (its partials carry a guard), linear algebra, callbacks: the tangent sweeps over
    the recorded gradient, said in info(), with the right values."""
    @fd.custom_vjp
    def cube(x):
        return x ** 3

    cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (3 * x ** 2 * g,))
    x = np.array([0.7, 1.3, 0.4])
    cases = [(lambda x: np.prod(x) + np.sum(x ** 2), "prod"),
             (lambda x: np.sum(np.linalg.solve(np.diag(x) + 2 * np.eye(3), x)), "solve")]
    for f, name in cases:
        H = sparse.SparseHessian(f)
        np.testing.assert_allclose(H(x).toarray(), fd.hessian(f)(x), rtol=1e-12, atol=1e-12)
        assert not uses_lanes(H) and not routed_to_lanes(H)
        assert f"a {name} record has no second-order lane rule" in H.info()["note"]
        assert "recorded gradient" in H.info()["direction"]


def test_hv_check_names_the_first_unsupported_record():
    H = sparse.SparseHessian(lambda x: np.sum(x ** 2) * np.prod(x))
    H(np.array([1.0, 2.0]))
    e = H._last
    slots, op = _sparsity.hv_check(e.tape, e.hi)
    assert slots == -1 and NAME[op] == "prod"
    assert _sparsity.hv_check(e.tape, e.hi + 10 ** 6) == (-1, -1)


def test_switch_restores_the_old_path(monkeypatch):
    x = np.random.default_rng(2).uniform(-1, 1, 30)
    H = sparse.SparseHessian(rosen)
    new = H(x).toarray()
    assert routed_to_lanes(H)
    monkeypatch.setattr(sparse, "FOR_HESSIAN", False)
    old = H(x).toarray()
    assert not routed_to_lanes(H) and "FOR_HESSIAN is False" in H.info()["note"]
    np.testing.assert_allclose(new, old, rtol=1e-14, atol=1e-12)


def test_scalar_record_tapes_keep_the_recorded_gradient_lanes(monkeypatch):
    """A program written as a Python loop (scalar records): the recorded gradient's tangent
    lanes were measured faster there (docs/sparse.md), so they run, said in info();
    FOR_HESSIAN = "always" takes forward over reverse, with the same values."""
    def f(x):
        total = 0.0
        for k in range(len(x) - 1):
            total = total + np.exp(0.3 * x[k]) * x[k + 1] ** 2
        return total
    x = np.linspace(-1, 1, 12)
    H = sparse.SparseHessian(f)
    ref = fd.hessian(f)(x)
    np.testing.assert_allclose(H(x).toarray(), ref, rtol=1e-13, atol=1e-13)
    assert uses_lanes(H) and not routed_to_lanes(H)
    assert "measured faster on tapes of scalar records" in H.info()["note"]
    monkeypatch.setattr(sparse, "FOR_HESSIAN", "always")
    np.testing.assert_allclose(H(x).toarray(), ref, rtol=1e-13, atol=1e-13)
    assert routed_to_lanes(H) and H.info()["note"] == ""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_generated_programs_equal_dense_and_old_path(prog):
    x = prog[3]
    f = scalar_fn(prog)
    new, old, H = both_paths(f, x)
    dense = np.atleast_2d(fd.hessian(f)(x))
    np.testing.assert_allclose(H(x).toarray(), dense, rtol=1e-10, atol=1e-10)
    has_prod = any(s[0] == "prod" for s in prog[1])
    assert uses_lanes(H) or has_prod
    if new is not None:
        assert_close_to_old(new, old)


def test_linear_and_trivial_functions():
    """No colours (a zero Hessian), and f an input itself: the gradient and zeros."""
    x = np.array([0.5, -1.0, 2.0])
    for f, grad in ((lambda x: np.sum(3.0 * x) + 1.0, [3.0, 3.0, 3.0]),
                    (lambda x: x[1], [0.0, 1.0, 0.0])):
        H = sparse.SparseHessian(f)
        for _ in range(2):
            g, data, _ = H.values(x)
            np.testing.assert_array_equal(g, grad)
            assert not data.any()
        assert H(x).toarray().shape == (3, 3) and not H(x).toarray().any()
