"""fastad.vmap: batched replay in C, checked point by point against closed forms
(docs/scale.md).

Tolerances: every quantity below is a short float64 computation (a few correctly rounded
+,-,* and libm or numpy-SIMD exp/sin/cos, each within ~1 ulp), so results agree with the
closed forms to a few ulp; RTOL = 64 eps leaves room for the SIMD loops of the batched
sweep differing from libm in the last bits.  Threads are compared bit for bit.
"""
import itertools

import numpy as np
import pytest

import fastad as fd
from reference import EPS, rosen_grad, rosen_hess, rosen_loop

RTOL = 64 * EPS


def close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol,
                               atol=rtol * max(1.0, np.nanmax(np.abs(b), initial=1.0)))


def notes_f(x1, x2):
    return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)


def notes_grad(x1, x2):         # closed form
    e = np.exp(x1 * x2)
    return x2 + x2 * e, x1 + x1 * e - np.cos(x2)


def branchy(x):
    if x[0] > 0:
        return x[0] ** 2 * x[1]
    elif x[1] > 0:
        return np.sin(x[0]) * x[1]
    return x[0] - 3.0 * x[1]


def branchy_grad(x):
    if x[0] > 0:
        return np.array([2 * x[0] * x[1], x[0] ** 2])
    if x[1] > 0:
        return np.array([np.cos(x[0]) * x[1], np.sin(x[0])])
    return np.array([1.0, -3.0])


RNG = np.random.default_rng(7)
X2 = RNG.normal(size=(2000, 2))


def test_value_and_grad_notes_f_two_scalar_arguments():
    a, b = X2[:, 0].copy(), X2[:, 1].copy()
    vals, (g1, g2) = fd.vmap(fd.value_and_grad(notes_f, argnums=(0, 1)))(a, b)
    close(vals, notes_f(a, b))
    r1, r2 = notes_grad(a, b)
    close(g1, r1)
    close(g2, r2)


def test_grad_rosenbrock_loop_matches_closed_form():
    X = RNG.uniform(-2, 2, size=(300, 20))
    G = fd.vmap(fd.grad(rosen_loop))(X)
    close(G, np.array([rosen_grad(x) for x in X]), rtol=1e-13)


def test_branches_exact_per_point_and_traced_once_per_pattern():
    g = fd.grad(branchy)
    G = fd.vmap(g)(X2)
    close(G, np.array([branchy_grad(x) for x in X2]))
    assert g.cache_info()["traces"] == 3         # three outcome patterns, each traced once
    before = g.cache_info()["traces"]
    fd.vmap(g)(X2[::-1].copy())
    assert g.cache_info()["traces"] == before    # every pattern now has its tape


def test_workers_bit_identical_and_auto():
    X = RNG.normal(size=(5000, 2))
    g = fd.grad(branchy)
    one = fd.vmap(g)(X)
    two = fd.vmap(g, workers=2)(X)
    auto = fd.vmap(g, workers="auto")(X)
    assert np.array_equal(one, two) and np.array_equal(one, auto)
    close(one, np.array([branchy_grad(x) for x in X]))
    vals1, G1 = fd.vmap(fd.value_and_grad(rosen_loop))(RNG.normal(size=(700, 30)))
    with pytest.raises(ValueError, match="workers"):
        fd.vmap(g, workers=0)


def test_workers_stop_at_a_failing_callback_and_recover():
    # a custom_vjp callback that raises at one early row of a batch swept lane by lane in
    # pieces by two threads: the error reaches the caller, the other thread stops after
    # its piece (without that it would sweep the whole batch: ~40000 calls), and the next
    # batch is right
    calls = itertools.count()

    @fd.custom_vjp
    def cube(t):
        next(calls)
        if t > 50.0:
            raise FloatingPointError("cube: out of range")
        return t ** 3

    cube.defvjp(lambda t: (cube(t), t), lambda t, gbar: (3 * t ** 2 * gbar,))

    def f(x):
        return cube(x[0]) + x[1] * x[0]

    g = fd.vmap(fd.grad(f), workers=2)
    X = RNG.normal(size=(40000, 2))
    want = np.stack([3 * X[:, 0] ** 2 + X[:, 1], X[:, 0]], axis=1)
    close(g(X), want)
    bad = X.copy()
    bad[100, 0] = 60.0
    before = next(calls)
    with pytest.raises(FloatingPointError, match="out of range"):
        g(bad)
    assert next(calls) - before < 10000
    close(g(X), want)


def test_rows_on_lane_by_lane_path_array_program():
    # a vectorized (ranged-record) program: swept lane by lane, same results
    def f(x):
        return np.sum(np.sin(x) * x ** 2)
    X = RNG.normal(size=(100, 5))
    vals, G = fd.vmap(fd.value_and_grad(f), workers=2)(X)
    close(vals, np.sum(np.sin(X) * X ** 2, axis=1))
    close(G, np.cos(X) * X ** 2 + 2 * X * np.sin(X))


def test_in_axes_none_broadcast_and_axis_1_and_out_axes():
    def f(x, c):
        return np.sum(c * x ** 2)
    C = np.array([1.0, 2.0, 3.0])
    X = RNG.normal(size=(3, 40))                    # batch along axis 1
    G = fd.vmap(fd.grad(f), in_axes=(1, None), out_axes=1)(X, C)
    assert G.shape == (3, 40)
    close(G, 2 * C[:, None] * X)


def test_jacobian_and_hessian_batched():
    def f(x):
        return np.sin(x) * x[0]
    X = RNG.normal(size=(50, 3))
    J = fd.vmap(fd.jacobian(f))(X)
    ref = np.array([np.diag(np.sin(x) * 0 + np.cos(x) * x[0]) + np.outer(np.sin(x), [1, 0, 0])
                    for x in X])
    close(J, ref)
    H = fd.vmap(fd.hessian(rosen_loop))(RNG.uniform(-2, 2, size=(20, 6)))
    Xr = RNG.uniform(-2, 2, size=(20, 6))
    close(fd.vmap(fd.hessian(rosen_loop))(Xr), np.array([rosen_hess(x) for x in Xr]), rtol=1e-12)
    assert H.shape == (20, 6, 6)
    Jr = fd.vmap(fd.jacrev(f))(X)
    close(Jr, ref)


def test_plain_function_values_and_pytree_output():
    def f(x, y):
        return {"s": np.sin(x) * y, "p": (x * y).sum()}
    X, Y = RNG.normal(size=(30, 4)), RNG.normal(size=(30, 4))
    out = fd.vmap(f)(X, Y)
    close(out["s"], np.sin(X) * Y)
    close(out["p"], (X * Y).sum(1))


def test_hvp_and_jvp_inside_vmap():
    X, V = RNG.uniform(-2, 2, size=(25, 5)), RNG.normal(size=(25, 5))
    Hv = fd.vmap(fd.hvp(rosen_loop))(X, V)
    close(Hv, np.array([rosen_hess(x) @ v for x, v in zip(X, V)]), rtol=1e-12)
    out, tan = fd.vmap(lambda x, v: fd.jvp(rosen_loop, (x,), (v,)))(X, V)
    close(out, [rosen_loop(x) for x in X], rtol=1e-13)
    close(tan, [rosen_grad(x) @ v for x, v in zip(X, V)], rtol=1e-12)


def test_nested_vmap():
    A = RNG.normal(size=(4, 6, 2))
    G = fd.vmap(fd.vmap(fd.grad(branchy)))(A)
    close(G, np.array([[branchy_grad(x) for x in row] for row in A]))


def test_pytree_argument_goes_through_the_loop():
    def f(p):
        return p["a"] * np.sum(p["b"] ** 2)
    P = {"a": RNG.normal(size=7), "b": RNG.normal(size=(7, 3))}
    g = fd.vmap(fd.grad(f))(P)
    close(g["a"], np.sum(P["b"] ** 2, axis=1))
    close(g["b"], 2 * P["a"][:, None] * P["b"])


# ---------------------------------------------------------------------- bad input
def test_different_batch_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        fd.vmap(fd.grad(notes_f))(np.ones(3), np.ones(4))


def test_in_axes_mismatch():
    with pytest.raises(ValueError, match="in_axes has 1 entries"):
        fd.vmap(fd.grad(notes_f), in_axes=(0,))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="no axis 2"):
        fd.vmap(fd.grad(branchy), in_axes=2)(np.ones((3, 2)))
    with pytest.raises(TypeError, match="in_axes must be"):
        fd.vmap(fd.grad(branchy), in_axes="rows")
    with pytest.raises(ValueError, match="all None"):
        fd.vmap(fd.grad(branchy), in_axes=None)(np.ones((3, 2)))


def test_non_array_batch():
    with pytest.raises(TypeError, match="pass a numpy array"):
        fd.vmap(fd.grad(notes_f))(1.5, np.ones(3))
    with pytest.raises(TypeError, match="pass a numpy array"):
        fd.vmap(fd.grad(branchy))([[1.0, 2.0], [3.0, 4.0]])


def test_empty_batch_shapes():
    vals, G = fd.vmap(fd.value_and_grad(rosen_loop))(np.zeros((0, 4)))
    assert vals.shape == (0,) and G.shape == (0, 4)
    assert fd.vmap(fd.hessian(rosen_loop))(np.zeros((0, 3))).shape == (0, 3, 3)


def test_nan_rows_stay_in_their_rows():
    X = RNG.normal(size=(600, 2))
    X[[3, 400], 0] = np.nan
    G = fd.vmap(fd.grad(branchy), workers=2)(X)
    # NaN fails `x[0] > 0`: those rows take the branches Python takes, and NaN stays in them
    close(G, np.array([branchy_grad(x) for x in X]))
    ok = np.ones(600, bool)
    ok[[3, 400]] = False
    assert np.isfinite(G[ok]).all()
    vals, (g1, g2) = fd.vmap(fd.value_and_grad(notes_f, argnums=(0, 1)))(X[:, 0].copy(),
                                                                          X[:, 1].copy())
    assert np.isnan(vals[[3, 400]]).all() and np.isfinite(np.delete(vals, [3, 400])).all()


def test_vjp_inside_vmap():
    def f(x):
        return np.sin(x) * x[0]
    X, C = RNG.normal(size=(40, 3)), RNG.normal(size=(40, 3))
    (ct_x,) = fd.vmap(lambda x, ct: fd.vjp(f, x)[1](ct))(X, C)
    ref = C * np.cos(X) * X[:, :1]
    ref[:, 0] += np.sum(C * np.sin(X), axis=1)          # d out_i / d x0 = sin(x_i) (+ diagonal)
    close(ct_x, ref)
    with pytest.raises(ValueError, match="cotangent of the output's shape"):
        fd.vmap(lambda x, ct: fd.vjp(f, x)[1](ct))(X, C[:, :2].copy())


def test_lane_by_lane_and_batch_major_agree():
    # the same scalar tapes forced onto the lane-by-lane sweep (no block fits 1 double)
    from fastad import _batch
    X = RNG.normal(size=(300, 2))
    Xr = RNG.uniform(-2, 2, size=(30, 5))
    batch_major = (fd.vmap(fd.grad(branchy))(X), fd.vmap(fd.hessian(rosen_loop))(Xr))
    _batch.set_block_limits(16, 16, 1)
    try:
        lanes = (fd.vmap(fd.grad(branchy), workers=2)(X), fd.vmap(fd.hessian(rosen_loop))(Xr))
    finally:
        _batch.set_block_limits()
    close(lanes[0], batch_major[0])
    close(lanes[1], batch_major[1], rtol=1e-13)
    close(lanes[0], np.array([branchy_grad(x) for x in X]))
    with pytest.raises(ValueError, match="block limits"):
        _batch.set_block_limits(0)


def test_out_axes_none_returns_a_shared_output_once():
    """docs/scale.md: out_axes=None gives an output that is the same at every point once;
    an output that depends on a mapped argument is refused, as JAX refuses it."""
    def f(x, c):
        return np.sum(x * c) ** 2, np.sum(c ** 2)
    X = np.arange(6.0).reshape(3, 2)
    c = np.array([1.0, 2.0])
    a, b = fd.vmap(f, in_axes=(0, None), out_axes=(0, None))(X, c)
    np.testing.assert_array_equal(a, (X @ c) ** 2)          # (x0 + 2 x1)^2 per row
    assert b == 5.0 and np.ndim(b) == 0                      # 1 + 4, once
    g = fd.vmap(fd.grad(lambda x, c: np.sum(c ** 2) + np.sum(x), argnums=1),
                in_axes=(0, None), out_axes=None)(X, c)
    np.testing.assert_array_equal(g, 2 * c)                  # d/dc sum(c^2), the same per row
    with pytest.raises(ValueError, match="differs from point to point"):
        fd.vmap(fd.grad(lambda x: np.sum(x ** 2)), out_axes=None)(X)
    with pytest.raises(ValueError, match="batch is empty"):
        fd.vmap(fd.grad(lambda x: np.sum(x ** 2)), out_axes=None)(np.zeros((0, 2)))
