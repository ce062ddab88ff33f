"""Numpy code on traced arrays (docs/numpy.md) against independent references.

Every test differentiates ordinary numpy code with fd.value_and_grad / fd.grad / fd.jvp and
compares with numpy_ref.py: hand-written derivatives (the textbook formulas, themselves
cross-checked against central differences below), the exact Jacobian-transpose of linear
maps built from plain numpy on unit vectors, or hand-written backprop.  The value is
compared with the same function evaluated by plain numpy.

A non-scalar operation op is tested through the loss  sum(W * op(...))  with fixed random
weights W of op's output shape, so a wrong adjoint anywhere (wrong element, wrong axis,
missed broadcast sum) changes the gradient.

`check` calls each wrapper at least twice: the first call traces, the second replays the
tape in C; data arguments (numpy arrays / floats not in argnums) are tape inputs, so
calling again with new data must give the new gradient without a retrace.

Tolerances.  RTOL = 1e-10, ATOL = 1e-12 * max(1, max|expected|): fastad and the reference
are two float64 evaluations of the same exact derivative, by possibly different formulas
(1 - tanh^2 vs 1/cosh^2) and summation orders; each elementary step is good to a few ulp
and the sums here have at most ~1000 terms, so they agree to ~1e-13 relative to the
gradient's scale, while a wrong derivative rule or a misplaced adjoint is off by O(1).
"""
import math
import zlib

import numpy as np
import pytest

import fastad as fd
from numpy_ref import (BINARY, UNARY, central_diff, grad_cumsum, grad_extreme,
                       grad_mean, grad_prod, grad_std, grad_sum, grad_var, linear_grad,
                       mlp_backprop, mlp_loss, rosen, rosen_grad, sample, unbroadcast)

RTOL = 1e-10
ATOL = 1e-12


def rng_for(*key):
    """A generator seeded by the test's parameters (deterministic, different per case)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def close(got, exp, rtol=RTOL, atol=ATOL, what=""):
    exp = np.asarray(exp, dtype=np.float64)
    got_a = np.asarray(got)
    assert got_a.shape == exp.shape, f"{what}: shape {got_a.shape} != expected {exp.shape}"
    assert got_a.dtype == np.float64, f"{what}: dtype {got_a.dtype}"
    scale = max(1.0, float(np.max(np.abs(exp)))) if exp.size and np.all(np.isfinite(exp)) else 1.0
    np.testing.assert_allclose(got_a, exp, rtol=rtol, atol=atol * scale, err_msg=what)


def plain(fun, args):
    with np.errstate(all="ignore"):
        return fun(*args)


def _is_float_arg(a):
    return isinstance(a, float) or (isinstance(a, np.ndarray) and a.dtype == np.float64)


def check(fun, args, argnums, ref_grad, *, more_args=(), rtol=RTOL, atol=ATOL, jvp=True,
          one_trace=True):
    """fd.value_and_grad and fd.grad of fun at args (and at each tuple of more_args, fed to
    the same wrappers, i.e. replayed) against ref_grad(*args); fd.jvp along a random
    tangent against <ref gradient, tangent>.  one_trace: the body ran once in total."""
    many = isinstance(argnums, tuple)
    nums = argnums if many else (argnums,)
    vg = fd.value_and_grad(fun, argnums)
    g = fd.grad(fun, argnums)
    for k, a in enumerate((args, args) + tuple(more_args)):
        what = f"call {k}"
        val, gr = vg(*a)
        assert isinstance(val, float), f"{what}: value is {type(val)}"
        close(val, plain(fun, a), rtol, atol, what + " value")
        exp = ref_grad(*a)
        exps = exp if many else (exp,)
        grs = gr if many else (gr,)
        assert isinstance(grs, tuple) and len(grs) == len(nums), what
        for i, (got_i, exp_i) in enumerate(zip(grs, exps)):
            close(got_i, exp_i, rtol, atol, f"{what} value_and_grad[{i}]")
        g2 = g(*a)
        for i, (got_i, exp_i) in enumerate(zip(g2 if many else (g2,), exps)):
            close(got_i, exp_i, rtol, atol, f"{what} grad[{i}]")
    if one_trace:
        assert vg.cache_info()["traces"] == 1, vg.cache_info()
        assert vg.cache_info()["replays"] >= 1 + len(more_args), vg.cache_info()
    if jvp and all(_is_float_arg(a) for a in args):
        exp = ref_grad(*args)
        exps = exp if many else (exp,)
        r = rng_for("jvp", len(args))
        tans, dd = [], 0.0
        for i, a in enumerate(args):
            if i in nums:
                t = float(r.normal()) if isinstance(a, float) else r.normal(size=np.shape(a))
                dd += float(np.sum(np.asarray(exps[nums.index(i)]) * t))
            else:
                t = 0.0 if isinstance(a, float) else np.zeros(np.shape(a))
            tans.append(t)
        for _ in range(2):       # trace, then replay
            val, d = fd.jvp(fun, tuple(args), tuple(tans))
            close(val, plain(fun, args), rtol, atol, "jvp value")
            scale = sum(float(np.sum(np.abs(np.asarray(e)))) for e in exps) * 5
            np.testing.assert_allclose(d, dd, rtol=rtol, atol=atol * max(1.0, scale),
                                       err_msg="jvp tangent")


# ============================================================================ the reference

@pytest.mark.parametrize("name", sorted(UNARY))
def test_reference_unary_table_matches_central_differences(name):
    # h = 1e-6 relative; the functions and their third derivatives are O(1)..O(100) on the
    # sampled domains, so the truncation error h^2 f''' <= 1e-10 and rounding eps*f/h ~ 1e-10:
    # rtol 1e-6 is a wide margin, and a wrong formula is off by O(1).
    f, df, dom = UNARY[name]
    x = sample(rng_for(name), (6,), dom)
    num = central_diff(lambda v: np.sum(f(v)), x)
    np.testing.assert_allclose(df(x), num, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_reference_binary_table_matches_central_differences(name):
    f, dfa, dfb, dom = BINARY[name]
    r = rng_for(name)
    a, b = sample(r, (6,), dom), sample(r, (6,), dom)
    np.testing.assert_allclose(dfa(a, b), central_diff(lambda v: np.sum(f(v, b)), a),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dfb(a, b), central_diff(lambda v: np.sum(f(a, v)), b),
                               rtol=1e-6, atol=1e-6)


def _prod_ref_fd_case():
    return np.array([[0.7, -1.2, 1.5], [0.9, 1.1, -0.6]])


REF_PROGRAMS = {
    # name -> (plain numpy loss, its hand-written gradient, point)
    "rosen": (rosen, rosen_grad, np.array([0.3, -1.1, 1.7, 0.2, -0.5])),
    "prod_axis1": (lambda x: np.sum(np.array([1.0, -2.0]) * np.prod(x, axis=1)),
                   lambda x: grad_prod(x, 1, False, np.array([1.0, -2.0])), _prod_ref_fd_case()),
    "var_ddof1_axis0": (lambda x: np.sum(np.array([1.0, 2.0, -1.0]) * np.var(x, 0, ddof=1)),
                        lambda x: grad_var(x, 0, False, np.array([1.0, 2.0, -1.0]), ddof=1),
                        _prod_ref_fd_case()),
    "std_keepdims": (lambda x: np.sum(np.array([[1.0], [3.0]]) * np.std(x, 1, keepdims=True)),
                     lambda x: grad_std(x, 1, True, np.array([[1.0], [3.0]])),
                     _prod_ref_fd_case()),
    "max_axis0": (lambda x: np.sum(np.array([1.0, 2.0, -1.0]) * np.max(x, 0)),
                  lambda x: grad_extreme(x, 0, False, np.array([1.0, 2.0, -1.0]), "max"),
                  _prod_ref_fd_case()),
    "cumsum_axis1": (lambda x: np.sum(np.arange(6.0).reshape(2, 3) * np.cumsum(x, 1)),
                     lambda x: grad_cumsum(x, 1, np.arange(6.0).reshape(2, 3)),
                     _prod_ref_fd_case()),
}


@pytest.mark.parametrize("name", sorted(REF_PROGRAMS))
def test_reference_gradients_match_central_differences(name):
    # same step/tolerance argument as above: every function here is a low-degree
    # polynomial or sqrt of one on O(1) inputs, so h = 1e-6 gives errors ~1e-10
    f, g, x = REF_PROGRAMS[name]
    np.testing.assert_allclose(g(x), central_diff(f, x), rtol=1e-6, atol=1e-6)


def test_reference_mlp_backprop_matches_central_differences():
    r = rng_for("mlp-fd")
    P = [r.normal(size=(3, 4)), r.normal(size=4), r.normal(size=(4, 2)), r.normal(size=2)]
    X, y = r.normal(size=(6, 3)), r.normal(size=(6, 2))
    grads = mlp_backprop(*P, X, y)
    for i in range(4):
        def f(v, i=i):
            Q = list(P)
            Q[i] = v
            return mlp_loss(*Q, X, y)
        np.testing.assert_allclose(grads[i], central_diff(f, P[i]), rtol=1e-6, atol=1e-7)


def test_reference_covers_supported():
    assert set(UNARY) | set(BINARY) == set(fd.SUPPORTED)


# ============================================================================ elementwise

SHAPES1 = [(3,), (2, 3), ()]


def _w(r, shape):
    w = r.normal(size=shape)
    return float(w) if shape == () else w


def _arg(r, shape, dom):
    x = sample(r, shape, dom)
    return np.asarray(x) if shape == () else x     # a 0-d float64 ndarray for shape ()


@pytest.mark.parametrize("spelling", ["np", "fd"])
@pytest.mark.parametrize("shape", SHAPES1, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, shape, spelling):
    f, df, dom = UNARY[name]
    r = rng_for(name, shape, spelling)
    x = _arg(r, shape, dom)
    W = _w(r, shape)
    op = getattr(fd, name) if spelling == "fd" else f

    def fun(x):
        return np.sum(W * op(x))

    check(fun, (x,), 0, lambda x: W * df(x), more_args=[(_arg(r, shape, dom),)])


BCAST = [((3,), (3,)), ((2, 3), (3,)), ((3,), (2, 3)), ((2, 1), (1, 3)), ((), (2, 3)),
         ((2, 3), ()), ((), ())]


def _bcast_ids(p):
    return f"{p[0]}x{p[1]}".replace(" ", "")


@pytest.mark.parametrize("shapes", BCAST, ids=_bcast_ids)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_traced_traced(name, shapes):
    f, dfa, dfb, dom = BINARY[name]
    sa, sb = shapes
    r = rng_for(name, shapes)
    a, b = _arg(r, sa, dom), _arg(r, sb, dom)
    out = np.broadcast_shapes(sa, sb)
    W = _w(r, out)

    def fun(a, b):
        return np.sum(W * f(a, b))

    def ref(a, b):
        return unbroadcast(W * dfa(a, b), sa), unbroadcast(W * dfb(a, b), sb)

    check(fun, (a, b), (0, 1), ref, more_args=[(_arg(r, sa, dom), _arg(r, sb, dom))])


@pytest.mark.parametrize("side", ["traced_left", "traced_right"])
@pytest.mark.parametrize("shapes", BCAST, ids=_bcast_ids)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_constant_array(name, shapes, side):
    """The other operand is a numpy array (0-d: a numpy scalar) fixed in the closure."""
    f, dfa, dfb, dom = BINARY[name]
    sa, sb = shapes
    r = rng_for(name, shapes, side)
    a, b = sample(r, sa, dom), sample(r, sb, dom)
    W = _w(r, np.broadcast_shapes(sa, sb))
    if side == "traced_left":
        const = b[()] if sb == () else b          # np.float64 scalar for 0-d

        def fun(x):
            return np.sum(W * f(x, const))

        ref = lambda x: unbroadcast(W * dfa(x, b), sa)
        args = (np.asarray(a),)
    else:
        const = a[()] if sa == () else a

        def fun(x):
            return np.sum(W * f(const, x))

        ref = lambda x: unbroadcast(W * dfb(a, x), sb)
        args = (np.asarray(b),)
    check(fun, args, 0, ref, more_args=[(np.asarray(sample(r, args[0].shape, dom)),)])


@pytest.mark.parametrize("side", ["traced_left", "traced_right"])
@pytest.mark.parametrize("shapes", BCAST, ids=_bcast_ids)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_data_argument_replayed(name, shapes, side):
    """The other operand is a data argument (not in argnums): a tape input, so calling
    again with new data (no retrace) must use the new values.  0-d data is a Python float."""
    f, dfa, dfb, dom = BINARY[name]
    sa, sb = shapes
    r = rng_for(name, shapes, side, "data")
    W = _w(r, np.broadcast_shapes(sa, sb))

    def draw(shape):
        v = sample(r, shape, dom)
        return float(v) if shape == () else v

    def fun(a, b):
        return np.sum(W * f(a, b))

    if side == "traced_left":
        num = 0
        ref = lambda a, b: unbroadcast(W * dfa(np.asarray(a), np.asarray(b)), sa)
        mk = lambda: (np.asarray(sample(r, sa, dom)), draw(sb))
    else:
        num = 1
        ref = lambda a, b: unbroadcast(W * dfb(np.asarray(a), np.asarray(b)), sb)
        mk = lambda: (draw(sa), np.asarray(sample(r, sb, dom)))
    check(fun, mk(), num, ref, more_args=[mk(), mk()])


@pytest.mark.parametrize("shape", SHAPES1, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_python_scalar(name, shape):
    f, dfa, dfb, dom = BINARY[name]
    r = rng_for(name, shape, "pyscalar")
    c = float(sample(r, (), dom))
    W = _w(r, shape)

    def fun(x):
        return np.sum(W * f(x, c)) + np.sum(W * f(c, x))

    ref = lambda x: W * dfa(x, c) + W * dfb(c, x)
    check(fun, (_arg(r, shape, dom),), 0, ref, more_args=[(_arg(r, shape, dom),)])


@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_traced_scalar(name, shape):
    """f(x[0], x) and f(x, x[0]): a traced scalar broadcast against its own array."""
    f, dfa, dfb, dom = BINARY[name]
    r = rng_for(name, shape, "tracedscalar")
    W1, W2 = r.normal(size=shape), r.normal(size=shape)
    first = (0,) * len(shape)

    def fun(x):
        s = x[first]
        return np.sum(W1 * f(s, x)) + np.sum(W2 * f(x, s))

    def ref(x):
        s = x[first]
        g = W1 * dfb(s, x) + W2 * dfa(x, s)
        g[first] += np.sum(W1 * dfa(s, x)) + np.sum(W2 * dfb(x, s))
        return g

    check(fun, (sample(r, shape, dom),), 0, ref, more_args=[(sample(r, shape, dom),)])


@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
def test_binary_ties_split_half(name):
    f = getattr(np, name)
    a = np.array([1.0, -2.0, 3.0])
    b = np.array([1.0, 5.0, -3.0])       # tie at element 0
    W = np.array([2.0, 3.0, 5.0])
    ga, gb = fd.grad(lambda a, b: np.sum(W * f(a, b)), (0, 1))(a, b)
    big = name in ("maximum", "fmax")
    close(ga, [1.0, 3.0 * (not big), 5.0 * big])
    close(gb, [1.0, 3.0 * big, 5.0 * (not big)])


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_fmax_fmin_ignore_nan_operand(name):
    f = getattr(np, name)
    a = np.array([np.nan, 2.0])
    b = np.array([1.0, np.nan])
    val, (ga, gb) = fd.value_and_grad(lambda a, b: np.sum(f(a, b)), (0, 1))(a, b)
    assert val == 3.0
    close(ga, [0.0, 1.0])
    close(gb, [1.0, 0.0])


def test_operators_and_reflected_forms():
    r = rng_for("ops")
    x = r.uniform(0.5, 2.0, size=(2, 3))
    c = r.uniform(0.5, 2.0, size=(3,))

    def fun(x):
        y = (x + c) * (2.0 - x) / (x - 0.25) + 3.0 / x - (-x) + abs(x - 1.0) + (+x)
        return np.sum(y ** 1.5 + 2.0 ** x + x ** 2 + c ** x)

    def ref(x):
        y = (x + c) * (2.0 - x) / (x - 0.25) + 3.0 / x + x + np.abs(x - 1.0) + x
        dy = ((2.0 - x) - (x + c)) / (x - 0.25) - (x + c) * (2.0 - x) / (x - 0.25) ** 2 \
            - 3.0 / x ** 2 + 2.0 + np.sign(x - 1.0)
        return 1.5 * y ** 0.5 * dy + np.log(2.0) * 2.0 ** x + 2 * x + np.log(c) * c ** x

    check(fun, (x,), 0, ref, more_args=[(r.uniform(0.5, 2.0, size=(2, 3)),)])


def test_comparison_masks_in_arithmetic():
    """x > 0 on arrays is a 0/1 mask (not a guard): usable in arithmetic and replayed."""
    x = np.array([-1.5, 0.5, 2.0, -0.25])

    def fun(x):
        return np.sum((x > 0) * x ** 2 + (x <= 0) * np.sin(x))

    ref = lambda x: np.where(x > 0, 2 * x, np.cos(x))
    check(fun, (x,), 0, ref, more_args=[(-x,), (x * 3,)])


# ============================================================================ reductions

AXES = [None, 0, 1, (0, 1), -1, -2]
RED_REF = {
    "sum": (np.sum, grad_sum),
    "mean": (np.mean, grad_mean),
    "prod": (np.prod, grad_prod),
    "max": (np.max, lambda x, a, k, w: grad_extreme(x, a, k, w, "max")),
    "min": (np.min, lambda x, a, k, w: grad_extreme(x, a, k, w, "min")),
    "var": (np.var, grad_var),
    "std": (np.std, grad_std),
}


def _red_call(name, spelling, x, axis, keepdims, **kw):
    if spelling == "np":
        return RED_REF[name][0](x, axis=axis, keepdims=keepdims, **kw)
    return getattr(x, name)(axis=axis, keepdims=keepdims, **kw)


def _red_check(name, spelling, x, axis, keepdims, more, **kw):
    r = rng_for(name, spelling, axis, keepdims, x.shape)
    out_shape = np.shape(RED_REF[name][0](x, axis=axis, keepdims=keepdims, **kw))
    W = _w(r, out_shape)

    def fun(x):
        return np.sum(W * _red_call(name, spelling, x, axis, keepdims, **kw))

    if name in ("var", "std"):
        ref = lambda x: RED_REF[name][1](x, axis, keepdims, W, **kw)
    else:
        ref = lambda x: RED_REF[name][1](x, axis, keepdims, W)
    check(fun, (x,), 0, ref, more_args=[(m,) for m in more])


@pytest.mark.parametrize("spelling", ["np", "method"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", sorted(RED_REF))
def test_reduction(name, axis, keepdims, spelling):
    r = rng_for(name, axis, keepdims, spelling, "x")
    x = r.uniform(0.5, 1.5, size=(3, 4)) * r.choice([-1.0, 1.0], size=(3, 4))
    _red_check(name, spelling, x, axis, keepdims, [r.normal(size=(3, 4))])


@pytest.mark.parametrize("axis", [None, 1, (0, 2), -1, (-3, -1)], ids=str)
@pytest.mark.parametrize("name", sorted(RED_REF))
def test_reduction_3d(name, axis):
    r = rng_for(name, axis, "3d")
    x = r.uniform(0.5, 1.5, size=(2, 3, 4))
    _red_check(name, "np", x, axis, False, [r.uniform(0.5, 1.5, size=(2, 3, 4))])


@pytest.mark.parametrize("ddof", [0, 1, 2])
@pytest.mark.parametrize("axis", [None, 0, 1, -1], ids=str)
@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("spelling", ["np", "method"])
def test_var_std_ddof(name, axis, ddof, spelling):
    r = rng_for(name, axis, ddof, spelling)
    x = r.normal(size=(4, 5))
    _red_check(name, spelling, x, axis, False, [r.normal(size=(4, 5))], ddof=ddof)


@pytest.mark.parametrize("spelling", ["np", "method"])
@pytest.mark.parametrize("axis", [None, 0, 1], ids=str)
@pytest.mark.parametrize("case", ["one_zero", "two_zeros", "zero_column"])
def test_prod_with_zeros(case, axis, spelling):
    x = {"one_zero": np.array([[2.0, 0.0, 3.0], [1.5, -2.0, 0.5]]),
         "two_zeros": np.array([[0.0, 0.0, 3.0], [1.5, 0.0, 0.5]]),
         "zero_column": np.array([[0.0, 4.0, 3.0], [0.0, -2.0, 0.5]])}[case]
    _red_check("prod", spelling, x, axis, False, [x[::-1].copy(), x + 1.0])


def test_prod_with_zeros_exact():
    # d/dx prod(x) at x = (2, 0, 3): (0, 6, 0); at (0, 0, 3): all 0
    g = fd.grad(lambda x: np.prod(x))
    close(g(np.array([2.0, 0.0, 3.0])), [0.0, 6.0, 0.0], rtol=0, atol=0)
    close(g(np.array([0.0, 0.0, 3.0])), [0.0, 0.0, 0.0], rtol=0, atol=0)
    close(g(np.array([0.0, 5.0, 3.0])), [15.0, 0.0, 0.0], rtol=0, atol=0)


TIES = np.array([[1.0, 3.0, 3.0, 0.0],
                 [2.0, 2.0, 2.0, -1.0],
                 [5.0, 1.0, 5.0, 5.0]])


@pytest.mark.parametrize("spelling", ["np", "method"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1], ids=str)
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_ties_split_equally(name, axis, keepdims, spelling):
    x = TIES if name == "max" else -TIES
    _red_check(name, spelling, x, axis, keepdims, [x.T.copy().reshape(3, 4), x * 2.0])


def test_max_ties_exact_values():
    g = fd.grad(lambda x: np.max(x))
    close(g(np.array([1.0, 3.0, 3.0])), [0.0, 0.5, 0.5], rtol=0, atol=0)
    close(g(np.array([2.0, 2.0, 2.0])), [1 / 3, 1 / 3, 1 / 3], rtol=1e-15, atol=0)
    close(g(np.array([4.0, 2.0, 2.0])), [1.0, 0.0, 0.0], rtol=0, atol=0)
    gm = fd.grad(lambda x: x.min(axis=0).sum())
    close(gm(np.array([[1.0, 2.0], [1.0, 0.0]])), [[0.5, 0.0], [0.5, 1.0]], rtol=0, atol=0)


@pytest.mark.parametrize("spelling", ["np", "method"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1], ids=str)
def test_cumsum(axis, spelling):
    r = rng_for("cumsum", axis, spelling)
    x = r.normal(size=(3, 4))
    W = r.normal(size=np.cumsum(x, axis=axis).shape)

    def fun(x):
        c = np.cumsum(x, axis=axis) if spelling == "np" else x.cumsum(axis=axis)
        return np.sum(W * np.sin(c))

    ref = lambda x: grad_cumsum(x, axis, W * np.cos(np.cumsum(x, axis=axis)))
    check(fun, (x,), 0, ref, more_args=[(r.normal(size=(3, 4)),)])


def test_cumsum_1d():
    x = np.array([1.0, -2.0, 0.5, 4.0])
    W = np.array([1.0, 2.0, 3.0, 4.0])
    check(lambda x: np.sum(W * np.cumsum(x)), (x,), 0, lambda x: np.array([10.0, 9.0, 7.0, 4.0]))


NORMS = {
    "vector": (lambda x: np.linalg.norm(x), (5,), lambda x: x / np.sqrt(np.sum(x * x))),
    "vector_ord2": (lambda x: np.linalg.norm(x, 2), (5,), lambda x: x / np.sqrt(np.sum(x * x))),
    "vector_ord1": (lambda x: np.linalg.norm(x, 1), (5,), np.sign),
    "vector_ordinf": (lambda x: np.linalg.norm(x, np.inf), (5,),
                      lambda x: np.sign(x) * (np.abs(x) == np.max(np.abs(x)))),
    "fro_default": (lambda x: np.linalg.norm(x), (3, 4), lambda x: x / np.sqrt(np.sum(x * x))),
    "fro": (lambda x: np.linalg.norm(x, "fro"), (3, 4), lambda x: x / np.sqrt(np.sum(x * x))),
    "axis0": (lambda x: np.sum(np.array([1.0, -2.0, 0.5, 3.0]) * np.linalg.norm(x, axis=0)),
              (3, 4), lambda x: np.array([1.0, -2.0, 0.5, 3.0]) * x / np.sqrt(np.sum(x * x, 0))),
    "axis1": (lambda x: np.sum(np.array([1.0, -2.0, 0.5]) * np.linalg.norm(x, axis=1)),
              (3, 4), lambda x: np.array([[1.0], [-2.0], [0.5]]) * x
              / np.sqrt(np.sum(x * x, 1, keepdims=True))),
    "axis-1_keepdims": (lambda x: np.sum(np.array([[1.0], [-2.0], [0.5]])
                                         * np.linalg.norm(x, axis=-1, keepdims=True)),
                        (3, 4), lambda x: np.array([[1.0], [-2.0], [0.5]]) * x
                        / np.sqrt(np.sum(x * x, 1, keepdims=True))),
    "axis_tuple": (lambda x: np.linalg.norm(x, axis=(0, 1)), (3, 4),
                   lambda x: x / np.sqrt(np.sum(x * x))),
}


@pytest.mark.parametrize("case", sorted(NORMS))
def test_norm(case):
    fun, shape, ref = NORMS[case]
    r = rng_for("norm", case)
    check(fun, (r.normal(size=shape),), 0, ref, more_args=[(r.normal(size=shape),)])


def test_logaddexp_function_and_large_arguments():
    a = np.array([1000.0, -1000.0, 0.5])
    b = np.array([999.0, -1001.0, 0.5])
    ga, gb = fd.grad(lambda a, b: np.sum(np.logaddexp(a, b)), (0, 1))(a, b)
    e = 1.0 / (1.0 + np.exp(-1.0))
    close(ga, [e, e, 0.5])
    close(gb, [1 - e, 1 - e, 0.5])
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))


CLIPS = {
    "np_both": (lambda x: np.clip(x, -0.5, 0.8), lambda x: ((x > -0.5) & (x < 0.8)) * 1.0),
    "method": (lambda x: x.clip(-0.5, 0.8), lambda x: ((x > -0.5) & (x < 0.8)) * 1.0),
    "max_only": (lambda x: np.clip(x, None, 0.3), lambda x: (x < 0.3) * 1.0),
    "min_only": (lambda x: np.clip(x, -0.2, None), lambda x: (x > -0.2) * 1.0),
    "array_bounds": (lambda x: np.clip(x, np.array([-1.0, -0.1, 0.0, -0.3, -2.0, 0.2]), 0.4),
                     lambda x: ((x > np.array([-1.0, -0.1, 0.0, -0.3, -2.0, 0.2])) & (x < 0.4))
                     * 1.0),
}


@pytest.mark.parametrize("case", sorted(CLIPS))
def test_clip(case):
    fun, mask = CLIPS[case]
    W = np.array([1.0, 2.0, -3.0, 0.5, 4.0, -1.5])
    x = np.array([-1.3, -0.27, 0.11, 0.55, 1.7, 0.33])
    check(lambda x: np.sum(W * np.sin(fun(x))), (x,), 0,
          lambda x: W * np.cos(fun(x)) * mask(x), more_args=[(x[::-1].copy(),), (x * 0.1,)])


@pytest.mark.parametrize("spelling", ["sum", "mean", "max", "min", "prod", "var", "std"])
def test_methods_without_arguments(spelling):
    r = rng_for("method", spelling)
    x = r.uniform(0.5, 1.5, size=(2, 3))
    ref = RED_REF[spelling][1]
    check(lambda x: getattr(x, spelling)(), (x,), 0, lambda x: ref(x, None, False, 1.0),
          more_args=[(r.uniform(0.5, 1.5, size=(2, 3)),)])


# ============================================================================ products

# name -> (op, shape a, shape b)
PRODUCTS = {
    "matmul_1d_1d": (np.matmul, (3,), (3,)),
    "matmul_2d_1d": (np.matmul, (2, 3), (3,)),
    "matmul_1d_2d": (np.matmul, (3,), (3, 4)),
    "matmul_2d_2d": (np.matmul, (2, 3), (3, 4)),
    "matmul_3d_3d": (np.matmul, (2, 2, 3), (2, 3, 4)),
    "matmul_3d_2d_bcast": (np.matmul, (2, 2, 3), (3, 4)),
    "matmul_2d_3d_bcast": (np.matmul, (2, 3), (2, 3, 4)),
    "matmul_3d_1d": (np.matmul, (2, 2, 3), (3,)),
    "at_1d_1d": (lambda a, b: a @ b, (3,), (3,)),
    "at_2d_1d": (lambda a, b: a @ b, (2, 3), (3,)),
    "at_1d_2d": (lambda a, b: a @ b, (3,), (3, 4)),
    "at_2d_2d": (lambda a, b: a @ b, (2, 3), (3, 4)),
    "at_3d_3d": (lambda a, b: a @ b, (2, 2, 3), (2, 3, 4)),
    "dot_1d_1d": (np.dot, (3,), (3,)),
    "dot_2d_1d": (np.dot, (2, 3), (3,)),
    "dot_1d_2d": (np.dot, (3,), (3, 4)),
    "dot_2d_2d": (np.dot, (2, 3), (3, 4)),
    "dot_scalar": (np.dot, (), (2, 3)),
    "dot_3d_3d": (np.dot, (2, 2, 3), (2, 3, 4)),
    "dot_method": (lambda a, b: a.dot(b), (2, 3), (3, 4)),
    "inner_1d": (np.inner, (3,), (3,)),
    "inner_2d": (np.inner, (2, 3), (4, 3)),
    "outer": (np.outer, (3,), (4,)),
    "outer_2d_ravelled": (np.outer, (2, 2), (3,)),
    "tensordot_1": (lambda a, b: np.tensordot(a, b, axes=1), (2, 3), (3, 4)),
    "tensordot_pairs": (lambda a, b: np.tensordot(a, b, axes=([0, 2], [1, 0])), (2, 3, 4),
                        (4, 2, 5)),
    "einsum_ij,jk->ik": (lambda a, b: np.einsum("ij,jk->ik", a, b), (2, 3), (3, 4)),
    "einsum_ij,j->i": (lambda a, b: np.einsum("ij,j->i", a, b), (2, 3), (3,)),
    "einsum_bij,bjk->bik": (lambda a, b: np.einsum("bij,bjk->bik", a, b), (2, 2, 3),
                            (2, 3, 4)),
    "einsum_i,i->": (lambda a, b: np.einsum("i,i->", a, b), (3,), (3,)),
    "einsum_implicit_ij,jk": (lambda a, b: np.einsum("ij,jk", a, b), (2, 3), (3, 4)),
    "einsum_ij,ij->i": (lambda a, b: np.einsum("ij,ij->i", a, b), (2, 3), (2, 3)),
    "einsum_ij,kj->ki": (lambda a, b: np.einsum("ij,kj->ki", a, b), (2, 3), (4, 3)),
    "einsum_i,j->ij": (lambda a, b: np.einsum("i,j->ij", a, b), (3,), (4,)),
}


def _prod_setup(case, extra=""):
    op, sa, sb = PRODUCTS[case]
    r = rng_for(case, extra)
    a, b = np.asarray(r.normal(size=sa)), np.asarray(r.normal(size=sb))
    W = _w(r, np.shape(op(a, b)))
    return op, a, b, W, r


@pytest.mark.parametrize("case", sorted(PRODUCTS))
def test_product_both_traced(case):
    op, a, b, W, r = _prod_setup(case)

    def fun(a, b):
        return np.sum(W * op(a, b))

    def ref(a, b):
        return (linear_grad(lambda e: op(e, b), a, W), linear_grad(lambda e: op(a, e), b, W))

    check(fun, (a, b), (0, 1), ref,
          more_args=[(r.normal(size=a.shape), r.normal(size=b.shape))])


# ndarray.dot(traced) is numpy's own method and dispatches nothing: no const_left for it
CONST_SIDES = [(c, s) for c in sorted(PRODUCTS) for s in ("const_right", "const_left")
               if not (c == "dot_method" and s == "const_left")]


@pytest.mark.parametrize("case,side", CONST_SIDES)
def test_product_with_constant(case, side):
    op, a, b, W, r = _prod_setup(case, side)
    if side == "const_right":
        fun = lambda x: np.sum(W * np.tanh(op(x, b)))
        ref = lambda x: linear_grad(lambda e: op(e, b), x, W / np.cosh(op(x, b)) ** 2)
        arg = a
    else:
        fun = lambda x: np.sum(W * np.tanh(op(a, x)))
        ref = lambda x: linear_grad(lambda e: op(a, e), x, W / np.cosh(op(a, x)) ** 2)
        arg = b
    check(fun, (arg,), 0, ref, more_args=[(r.normal(size=arg.shape),)])


@pytest.mark.parametrize("side", ["data_right", "data_left"])
@pytest.mark.parametrize("case", ["matmul_2d_2d", "matmul_2d_1d", "matmul_3d_3d", "dot_1d_2d",
                                  "einsum_ij,jk->ik", "inner_2d", "outer"])
def test_product_with_data_argument_replayed(case, side):
    op, a, b, W, r = _prod_setup(case, side)
    fun = lambda a, b: np.sum(W * op(a, b))
    if side == "data_right":
        ref = lambda a, b: linear_grad(lambda e: op(e, b), a, W)
        num = 0
    else:
        ref = lambda a, b: linear_grad(lambda e: op(a, e), b, W)
        num = 1
    check(fun, (a, b), num, ref, more_args=[(r.normal(size=a.shape), r.normal(size=b.shape))
                                            for _ in range(2)])


def test_matmul_hand_written_adjoints():
    """C = A @ B, L = sum(W * C): dA = W @ B.T, dB = A.T @ W (textbook)."""
    r = rng_for("matmul-hand")
    A, B, W = r.normal(size=(5, 3)), r.normal(size=(3, 4)), r.normal(size=(5, 4))
    check(lambda A, B: np.sum(W * (A @ B)), (A, B), (0, 1), lambda A, B: (W @ B.T, A.T @ W))


# single-operand contractions: name -> (op, shape)
UNARY_LINEAR = {
    "einsum_ij->ji": (lambda x: np.einsum("ij->ji", x), (2, 3)),
    "einsum_ii->": (lambda x: np.einsum("ii->", x), (3, 3)),
    "einsum_ii": (lambda x: np.einsum("ii", x), (3, 3)),
    "einsum_ij->i": (lambda x: np.einsum("ij->i", x), (2, 3)),
    "einsum_ij->j": (lambda x: np.einsum("ij->j", x), (2, 3)),
    "einsum_ii->i": (lambda x: np.einsum("ii->i", x), (3, 3)),
    "einsum_ij->": (lambda x: np.einsum("ij->", x), (2, 3)),
    "einsum_ijk->kij": (lambda x: np.einsum("ijk->kij", x), (2, 3, 4)),
    "trace": (np.trace, (3, 3)),
    "trace_rect_offset": (lambda x: np.trace(x, offset=1), (3, 4)),
    "trace_method": (lambda x: x.trace(), (3, 3)),
    "diag_1d_to_2d": (np.diag, (3,)),
    "diag_1d_to_2d_k1": (lambda x: np.diag(x, 1), (3,)),
    "diag_1d_to_2d_k-2": (lambda x: np.diag(x, -2), (3,)),
    "diag_2d_to_1d": (np.diag, (3, 3)),
    "diag_2d_to_1d_rect": (np.diag, (3, 5)),
    "diag_2d_to_1d_k1": (lambda x: np.diag(x, 1), (3, 3)),
    "diagonal": (np.diagonal, (3, 4)),
    "diagonal_method": (lambda x: x.diagonal(), (4, 3)),
}


@pytest.mark.parametrize("case", sorted(UNARY_LINEAR))
def test_single_operand_contraction(case):
    op, shape = UNARY_LINEAR[case]
    r = rng_for(case)
    x = r.normal(size=shape)
    W = _w(r, np.shape(op(x)))
    check(lambda x: np.sum(W * np.sin(op(x))), (x,), 0,
          lambda x: linear_grad(op, x, W * np.cos(op(x))), more_args=[(r.normal(size=shape),)])


def test_trace_and_diag_exact():
    x = np.arange(9.0).reshape(3, 3)
    close(fd.grad(np.trace)(x), np.eye(3), rtol=0, atol=0)
    close(fd.grad(lambda v: np.sum(np.diag(v) * np.arange(9.0).reshape(3, 3)))(
        np.array([1.0, 2.0, 3.0])), [0.0, 4.0, 8.0], rtol=0, atol=0)


# ============================================================================ shapes

A12 = (12,)
M34 = (3, 4)
T234 = (2, 3, 4)
C3 = np.array([0.5, -1.5, 2.0])
MASK12 = np.array([True, False, True, True, False, False, True, False, False, True, True,
                   False])
MASK34 = MASK12.reshape(3, 4)

# name -> (op on a plain or traced array, input shape)
SHAPE_OPS = {
    "reshape_np": (lambda x: np.reshape(x, (3, 4)), A12),
    "reshape_method": (lambda x: x.reshape(4, 3), A12),
    "reshape_method_tuple": (lambda x: x.reshape((2, -1)), A12),
    "reshape_2d_to_3d": (lambda x: x.reshape(2, 2, 3), M34),
    "ravel_np": (np.ravel, M34),
    "ravel_method": (lambda x: x.ravel(), T234),
    "flatten": (lambda x: x.flatten(), M34),
    "T": (lambda x: x.T, M34),
    "T_3d": (lambda x: x.T, T234),
    "transpose_np": (np.transpose, M34),
    "transpose_axes": (lambda x: np.transpose(x, (1, 2, 0)), T234),
    "transpose_method": (lambda x: x.transpose(1, 0), M34),
    "transpose_method_tuple": (lambda x: x.transpose((2, 0, 1)), T234),
    "swapaxes": (lambda x: np.swapaxes(x, 0, 2), T234),
    "moveaxis": (lambda x: np.moveaxis(x, 0, -1), T234),
    "squeeze": (np.squeeze, (1, 3, 1)),
    "squeeze_axis": (lambda x: np.squeeze(x, axis=0), (1, 3, 1)),
    "squeeze_method": (lambda x: x.squeeze(), (1, 3, 1)),
    "expand_dims_0": (lambda x: np.expand_dims(x, 0), (3,)),
    "expand_dims_-1": (lambda x: np.expand_dims(x, -1), M34),
    "newaxis": (lambda x: x[:, None, :], M34),
    "concatenate": (lambda x: np.concatenate([x, x[::-1], C3]), (3,)),
    "concatenate_axis1": (lambda x: np.concatenate([x, 2.0 * x[:, :1]], axis=1), M34),
    "concatenate_axis0_const": (lambda x: np.concatenate([np.ones((1, 4)), x], axis=0), M34),
    "stack": (lambda x: np.stack([x, 3.0 * x[::-1]]), (3,)),
    "stack_axis1": (lambda x: np.stack([x[0], x[1], C3], axis=1), (2, 3)),
    "stack_axis-1": (lambda x: np.stack([x, x * 3.0], axis=-1), M34),
    "hstack": (lambda x: np.hstack([x, C3, x[:1]]), (3,)),
    "hstack_2d": (lambda x: np.hstack([x, x[:, ::-1]]), M34),
    "vstack": (lambda x: np.vstack([x, C3]), (3,)),
    "vstack_2d": (lambda x: np.vstack([x, x[:1]]), M34),
    "broadcast_to": (lambda x: np.broadcast_to(x, (4, 3)), (3,)),
    "broadcast_to_col": (lambda x: np.broadcast_to(x, (3, 5)), (3, 1)),
    "slice_step2": (lambda x: x[::2], A12),
    "slice_reverse": (lambda x: x[::-1], A12),
    "slice_1_-1_3": (lambda x: x[1:-1:3], A12),
    "slice_neg_step": (lambda x: x[-2:2:-3], A12),
    "slice_tail": (lambda x: x[1:], A12),
    "slice_head": (lambda x: x[:-1], A12),
    "slice_2d_rows_step": (lambda x: x[1:, ::2], M34),
    "slice_2d_column": (lambda x: x[:, 1], M34),
    "slice_2d_row": (lambda x: x[2], M34),
    "slice_2d_reversed": (lambda x: x[::-1, 1:3], M34),
    "slice_3d": (lambda x: x[1, ::-1, 1::2], T234),
    "ellipsis": (lambda x: x[..., 0], T234),
    "intidx_repeated": (lambda x: x[[0, 2, 2]], A12),
    "intidx_array": (lambda x: x[np.array([3, 0, 0, 0, -1])], A12),
    "intidx_2d_pairs": (lambda x: x[[0, 2, 2], [1, 1, 1]], M34),
    "intidx_2d_columns": (lambda x: x[:, [2, 0, 2]], M34),
    "intidx_2d_array_shape": (lambda x: x[np.array([[0, 1], [1, 1]])], A12),
    "take": (lambda x: np.take(x, [1, 1, 5]), A12),
    "boolmask": (lambda x: x[MASK12], A12),
    "boolmask_3": (lambda x: x[np.array([True, False, True])], (3,)),
    "boolmask_2d": (lambda x: x[MASK34], M34),
    "boolmask_rows": (lambda x: x[np.array([True, False, True])], M34),
    "flip": (lambda x: np.flip(x, 0), M34),
    "repeat": (lambda x: np.repeat(x, 2), (3,)),
    "tile": (lambda x: np.tile(x, 2), (3,)),
    "triu": (np.triu, (3, 3)),
    "tril": (lambda x: np.tril(x, -1), (3, 3)),
    "roll": (lambda x: np.roll(x, 2), A12),
    "atleast_2d": (np.atleast_2d, (3,)),
}


@pytest.mark.parametrize("case", sorted(SHAPE_OPS))
def test_shape_op(case):
    """sum(W * sin(op(x))): gradient op^T(W * cos(op(x))), op^T from op on unit vectors."""
    op, shape = SHAPE_OPS[case]
    r = rng_for(case)
    x = r.normal(size=shape)
    W = _w(r, np.shape(op(x)))
    check(lambda x: np.sum(W * np.sin(op(x))), (x,), 0,
          lambda x: linear_grad(op, x, W * np.cos(op(x))), more_args=[(r.normal(size=shape),)])


def test_repeated_integer_index_accumulates():
    g = fd.grad(lambda x: np.sum(x[[0, 2, 2]] * np.array([1.0, 2.0, 3.0])))
    close(g(np.array([1.0, 2.0, 3.0])), [1.0, 0.0, 5.0], rtol=0, atol=0)
    g2 = fd.grad(lambda x: np.sum(x[[1, 1, 1, 1]] ** 2))
    close(g2(np.array([1.0, 2.0, 3.0])), [0.0, 16.0, 0.0], rtol=0, atol=0)


def test_index_and_mask_as_data_arguments():
    """Integer and boolean arrays passed as arguments are static (part of the cache key):
    a new index/mask retraces, and each gives its own right gradient."""
    x = np.array([1.0, 2.0, 3.0, 4.0])

    def fun(x, idx, m):
        return np.sum(np.sin(x[idx])) + np.sum(x[m] ** 2)

    g = fd.grad(fun)
    for idx, m in [(np.array([0, 0, 3]), np.array([True, False, True, False])),
                   (np.array([2, 1]), np.array([False, False, False, True])),
                   (np.array([0, 0, 3]), np.array([True, False, True, False]))]:
        exp = np.zeros(4)
        np.add.at(exp, idx, np.cos(x[idx]))
        exp[m] += 2 * x[m]
        close(g(x, idx, m), exp)


# ============================================================================ where

WHERE_CASES = {
    # name -> (fun, reference gradient, x)
    "traced_cond": (lambda x: np.sum(np.where(x > 0, x ** 2, np.sin(x))),
                    lambda x: np.where(x > 0, 2 * x, np.cos(x))),
    "relu_scalar_branch": (lambda x: np.sum(np.where(x > 0, x, 0.0) * np.arange(1.0, 6.0)),
                           lambda x: np.where(x > 0, np.arange(1.0, 6.0), 0.0)),
    "scalar_true_branch": (lambda x: np.sum(np.where(x < 0.5, -1.0, x ** 3)),
                           lambda x: np.where(x < 0.5, 0.0, 3 * x ** 2)),
    "cond_on_other_expr": (lambda x: np.sum(np.where(np.sin(x) >= x[0], x, 2.0 * x)),
                           lambda x: np.where(np.sin(x) >= x[0], 1.0, 2.0)),
    "const_cond": (lambda x: np.sum(np.where(np.array([True, False, True, False, True]),
                                             np.exp(x), x ** 2)),
                   lambda x: np.where(np.array([True, False, True, False, True]), np.exp(x),
                                      2 * x)),
    "const_cond_broadcast": (lambda x: np.sum(np.where(np.array([[True], [False]]), x, -3.0 * x)),
                             lambda x: np.full(5, -2.0)),
    "cond_and_or": (lambda x: np.sum(np.where((x > -1.0) & (x < 1.0), x ** 2, 0.0)
                                     + np.where((x < -1.0) | ~(x < 2.0), 3.0 * x, 0.0)),
                    lambda x: np.where((x > -1.0) & (x < 1.0), 2 * x, 0.0)
                    + np.where((x < -1.0) | (x >= 2.0), 3.0, 0.0)),
    "where_2d_traced_other": (lambda x: np.sum(np.where(x.reshape(1, 5) > np.zeros((2, 1)),
                                                        np.outer(np.array([1.0, 2.0]), x),
                                                        x[0])),
                              None),
}


def _where_cond_2d_ref(x):
    g = np.where(x > 0, 3.0, 0.0)
    g[0] += 2.0 * np.sum(x <= 0)
    return g


@pytest.mark.parametrize("case", sorted(WHERE_CASES))
def test_where(case):
    fun, ref = WHERE_CASES[case]
    if ref is None:
        ref = _where_cond_2d_ref
    x = np.array([-2.5, 0.7, -0.3, 1.9, 2.6])
    check(fun, (x,), 0, ref, more_args=[(-x,), (x[::-1] * 1.3,)])


@pytest.mark.parametrize("x", [np.array([0.0, -1.0, 4.0, 0.25, -0.0]),
                               np.array([-3.0, -2.0, -1.0]),
                               np.array([0.0])], ids=["mixed", "all_negative", "zero"])
@pytest.mark.parametrize("fn", ["sqrt", "log", "reciprocal", "arcsin_shifted"])
def test_where_trap_untaken_side_gets_exact_zero(fn, x):
    """grad of np.where(x > 0, f(x), 0).sum() where f is inf/NaN (or has an inf/NaN
    derivative) on the untaken side: exactly 0 there, never 0 * inf = NaN."""
    f, df = {"sqrt": (np.sqrt, lambda x: 0.5 / np.sqrt(x)),
             "log": (np.log, lambda x: 1.0 / x),
             "reciprocal": (lambda x: 1.0 / x, lambda x: -1.0 / x ** 2),
             "arcsin_shifted": (lambda x: np.arcsin(x - 1.0),
                                lambda x: 1.0 / np.sqrt(1.0 - (x - 1.0) ** 2))}[fn]
    if fn == "arcsin_shifted":     # domain (0, 2): untaken outside
        fun = lambda x: np.sum(np.where((x > 0) & (x < 2), f(x), 0.0))
        taken = (x > 0) & (x < 2)
    else:
        fun = lambda x: np.sum(np.where(x > 0, f(x), 0.0))
        taken = x > 0
    with np.errstate(all="ignore"):
        exp = np.where(taken, df(x), 0.0)
    val, g = fd.value_and_grad(fun)(x)
    assert np.all(np.isfinite(g)), g
    assert np.all(g[~taken] == 0.0), g
    close(g, exp)
    close(val, plain(fun, (x,)))
    val2, g2 = fd.value_and_grad(fun)(x)      # fresh wrapper, then replay on the same one
    vg = fd.value_and_grad(fun)
    vg(np.abs(x) + 1.0)
    val3, g3 = vg(x)
    assert np.all(np.isfinite(g3)) and np.all(g3[~taken] == 0.0), g3
    close(g3, exp)
    # forward mode too: tangent through the untaken side is exactly 0
    v = np.ones_like(x)
    val_j, d = fd.jvp(fun, (x,), (v,))
    assert math.isfinite(d), d
    close(d, float(np.sum(exp)))


def test_where_trap_issue_examples_exact():
    x = np.array([0.0, -1.0, 4.0])
    g = fd.grad(lambda x: np.where(x > 0, np.sqrt(x), 0.0).sum())(x)
    assert g.tolist() == [0.0, 0.0, 0.25]
    g = fd.grad(lambda x: np.where(x > 0, np.log(x), 0.0).sum())(x)
    assert g.tolist() == [0.0, 0.0, 0.25]


def test_where_constant_condition_on_data_argument():
    """A bool array argument is static: each mask gets its own tape."""
    x = np.array([1.0, 2.0, 3.0])
    g = fd.grad(lambda x, c: np.sum(np.where(c, np.sin(x), x ** 3)))
    for c in ([True, False, True], [False, False, True], [True, False, True]):
        c = np.array(c)
        close(g(x, c), np.where(c, np.cos(x), 3 * x ** 2))


# ============================================================ np.array / np.stack of traced scalars

@pytest.mark.parametrize("builder", ["np.array", "np.asarray", "np.stack"])
def test_np_array_of_traced_scalars_is_a_traced_array(builder):
    """np.array / np.stack of a list of traced scalars differentiates, numpy ufuncs
    included.  np.stack gives a TracedArray; np.array and np.asarray cannot be intercepted
    by numpy's protocols and give an object array of traced scalars, which fastad still
    differentiates (docs/numpy.md)."""
    build = {"np.array": np.array, "np.asarray": np.asarray, "np.stack": np.stack}[builder]
    seen = []

    def fun(x):
        v = build([x[0], x[1] * 2.0, x[0]])
        seen.append(type(v))
        return np.sum(np.exp(v))

    g = fd.grad(fun)(np.array([0.5, -0.25]))
    if builder == "np.stack":
        assert seen == [fd.TracedArray], seen
    else:
        assert len(seen) == 1 and seen[0] is np.ndarray, seen
    close(g, [2 * np.exp(0.5), 2 * np.exp(-0.5)])


def test_jvp_with_0d_array_primal():
    """fd.jvp where a primal is a 0-d float ndarray and its tangent a 0-d ndarray too
    ("each tangent has its primal's type and shape")."""
    val, d = fd.jvp(lambda x: np.sin(x) * 1.0, (np.array(0.5),), (np.array(2.0),))
    close(val, np.sin(0.5))
    close(d, 2.0 * np.cos(0.5))


def test_np_array_of_traced_scalars():
    W = np.array([1.0, -2.0, 3.0, 0.5])

    def fun(x):
        v = np.array([x[0] * x[1], np.sin(x[2]), x[0], 2.0])
        return np.sum(W * v ** 2)

    def ref(x):
        v = np.array([x[0] * x[1], np.sin(x[2]), x[0], 2.0])
        a = 2 * W * v
        return np.array([a[0] * x[1] + a[2], a[0] * x[0], a[1] * np.cos(x[2])])

    check(fun, (np.array([0.3, -1.2, 0.8]),), 0, ref, more_args=[(np.array([2.0, 0.5, -1.0]),)])


def test_np_array_nested_lists_then_matmul():
    B = np.array([[1.0, 2.0], [-0.5, 3.0]])

    def fun(x):
        M = np.array([[x[0], x[1] ** 2], [1.5, x[0] * x[1]]])
        return np.sum(np.tanh(M @ B))

    def ref(x):
        M = np.array([[x[0], x[1] ** 2], [1.5, x[0] * x[1]]])
        dM = (1.0 / np.cosh(M @ B) ** 2) @ B.T
        return np.array([dM[0, 0] + dM[1, 1] * x[1], dM[0, 1] * 2 * x[1] + dM[1, 1] * x[0]])

    check(fun, (np.array([0.3, -1.2]),), 0, ref, more_args=[(np.array([1.1, 0.4]),)])


@pytest.mark.parametrize("builder", ["np.stack", "np.array", "np.asarray", "np.hstack"])
def test_stack_of_traced_scalars_from_a_loop(builder):
    build = {"np.stack": np.stack, "np.array": np.array, "np.asarray": np.asarray,
             "np.hstack": np.hstack}[builder]
    W = np.array([[1.0, 2.0, 3.0, 4.0]])

    def fun(x):
        parts = [x[i] * x[i + 1] for i in range(len(x) - 1)]
        v = build(parts)
        return np.sum(W @ np.exp(v[:, None]))

    def ref(x):
        e = W[0] * np.exp(x[:-1] * x[1:])
        g = np.zeros_like(x)
        g[:-1] += e * x[1:]
        g[1:] += e * x[:-1]
        return g

    check(fun, (np.array([0.1, 0.5, -0.3, 0.8, 0.2]),), 0, ref,
          more_args=[(np.array([0.4, -0.5, 0.3, 0.1, 1.0]),)])


def test_np_array_of_traced_rows():
    def fun(x):
        M = np.array([x, 2.0 * x, x ** 2])
        return np.sum(M * np.arange(9.0).reshape(3, 3))

    ref = lambda x: np.arange(0.0, 3.0) + 2 * np.arange(3.0, 6.0) + 2 * x * np.arange(6.0, 9.0)
    check(fun, (np.array([1.0, -2.0, 0.5]),), 0, ref)


# ============================================================================ the issue's programs

@pytest.mark.parametrize("n", [2, 10, 1000])
def test_rosenbrock_vectorized(n):
    r = rng_for("rosen", n)
    x = r.uniform(-2.0, 2.0, size=n)
    check(rosen, (x,), 0, rosen_grad, more_args=[(r.uniform(-2.0, 2.0, size=n),),
                                                  (np.ones(n),)])
    assert fd.grad(rosen)(np.ones(n)).tolist() == [0.0] * n       # the minimum


@pytest.mark.parametrize("out", ["vector", "matrix"])
def test_mlp_loss_vs_backprop_replayed_with_new_data(out):
    r = rng_for("mlp", out)
    n, d, hdim = 32, 4, 8
    W1, b1 = r.normal(size=(d, hdim)) * 0.5, r.normal(size=hdim) * 0.1
    if out == "vector":
        W2, b2 = r.normal(size=hdim), 0.3                     # b2 a float parameter
        ys = lambda: r.normal(size=n)
    else:
        W2, b2 = r.normal(size=(hdim, 2)), r.normal(size=2)
        ys = lambda: r.normal(size=(n, 2))
    X, y = r.normal(size=(n, d)), ys()
    more = [(W1, b1, W2, b2, r.normal(size=(n, d)), ys()),
            (W1 * 1.1, b1 - 0.2, W2 * 0.9, b2, r.normal(size=(n, d)), ys())]
    check(mlp_loss, (W1, b1, W2, b2, X, y), (0, 1, 2, 3), mlp_backprop, more_args=more)


def test_mlp_issue_signature_with_params_tuple_unpacked():
    """The issue's mlp_loss(params, X, y) written with the parameters as argnums."""
    r = rng_for("mlp-issue")
    W1, b1, W2, b2 = r.normal(size=(3, 5)), r.normal(size=5), r.normal(size=5), 0.1
    X, y = r.normal(size=(10, 3)), r.normal(size=10)

    def loss(W1, b1, W2, b2, X, y):
        params = (W1, b1, W2, b2)
        W1, b1, W2, b2 = params
        h = np.tanh(X @ W1 + b1)
        return np.mean((h @ W2 + b2 - y) ** 2)

    check(loss, (W1, b1, W2, b2, X, y), (0, 1, 2, 3), mlp_backprop,
          more_args=[(W1, b1, W2, b2, r.normal(size=(10, 3)), r.normal(size=10))])


# ==================================================================== mixing scalar and vector code

def test_scalar_loop_mixed_with_vectorized_ops():
    def fun(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + x[i] * x[i + 1]
        return s * np.sum(np.sin(x)) + x[0] * np.dot(x, x) + np.mean(x ** 2) * x[-1]

    def ref(x):
        n = len(x)
        s = np.sum(x[:-1] * x[1:])
        ds = np.zeros(n)
        ds[:-1] += x[1:]
        ds[1:] += x[:-1]
        S = np.sum(np.sin(x))
        g = ds * S + s * np.cos(x) + x[0] * 2 * x + 2 * x / n * x[-1]
        g[0] += np.dot(x, x)
        g[-1] += np.mean(x ** 2)
        return g

    r = rng_for("mix")
    check(fun, (r.normal(size=7),), 0, ref, more_args=[(r.normal(size=7),)])


def test_scalar_branch_mixed_with_vectorized_ops():
    """A Python `if` on a traced scalar (a guard) around vectorized code: retraces when the
    branch flips, and each branch's gradient is right."""
    def fun(x):
        if x[0] > 0:
            return np.sum(x[1:] ** 2) * x[0]
        return np.sum(np.exp(x)) - x[0]

    def ref(x):
        if x[0] > 0:
            g = 2 * x * x[0]
            g[0] = np.sum(x[1:] ** 2)
            return g
        g = np.exp(x)
        g[0] -= 1.0
        return g

    x = np.array([0.5, 1.0, -2.0])
    g = fd.grad(fun)
    for p in (x, -x, x * 2, -x * 2):
        close(g(p), ref(p))
    assert g.cache_info()["traces"] == 2, g.cache_info()


def test_vectorized_result_fed_to_scalar_loop_with_data():
    """Vector ops produce an array that a scalar loop consumes; data array replayed."""
    def fun(x, d):
        z = np.tanh(x * d)
        acc = 0.0
        for i in range(len(z)):
            acc = acc + z[i] * (i + 1.0)
        return acc

    ref = lambda x, d: np.arange(1.0, len(x) + 1) * d / np.cosh(x * d) ** 2
    r = rng_for("vec-scalar")
    check(fun, (r.normal(size=5), r.normal(size=5)), 0, ref,
          more_args=[(r.normal(size=5), r.normal(size=5)) for _ in range(2)])


def test_iteration_over_traced_array_rows():
    def fun(x):
        return sum(np.sum(row) * np.prod(row) for row in x)

    def ref(x):
        S, P = x.sum(1, keepdims=True), x.prod(1, keepdims=True)
        return P + S * P / x

    r = rng_for("rows")
    check(fun, (r.uniform(0.5, 1.5, size=(3, 4)),), 0, ref,
          more_args=[(r.uniform(0.5, 1.5, size=(3, 4)),)])
