"""vjp, Jacobians, Hessians, Hessian-vector products, nested derivatives, has_aux, pytrees
and stop_gradient, each against a reference that does not use fastad.

References are closed forms wherever one exists (Rosenbrock's gradient and Hessian, the
Jacobian of M sin(x), the n-th derivatives of sin, exp, powers and log), and otherwise
mpmath's numerical differentiation at 50 significant digits (mpmath.diff: its error is far
below double rounding, so it is exact for our purposes).  Tolerances: a closed form and
fastad evaluate the same real number by differently ordered float64 operations, a handful
of roundings each; every comparison allows a few hundred ulps of the largest entry
(rtol 1e-13 elementwise, atol 1e-13 times the array's scale), which is far tighter than
any real error (a wrong term, sign or factor) could hide in.
"""
import collections
import math

import numpy as np
import pytest

import fastad as fd
from fastad.pytree import tree_flatten

RTOL = 1e-13


def close(got, want, rtol=RTOL):
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


class Counter:
    """Wraps a function and counts how often its Python body runs (i.e. traces)."""

    def __init__(self, f):
        self.f, self.n = f, 0
        self.__name__ = getattr(f, "__name__", "f")

    def __call__(self, *a, **k):
        self.n += 1
        return self.f(*a, **k)


# ------------------------------------------------------------------------------ problems

from reference import rosen, rosen_grad, rosen_hess, rosen_loop  # noqa: E402  (shared problem)


def test_references_are_right():
    """The closed forms themselves, loosely, against central differences."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4)
    h = 1e-6
    E = np.eye(4)
    g_fd = np.array([(rosen(x + h * e) - rosen(x - h * e)) / (2 * h) for e in E])
    H_fd = np.array([(rosen_grad(x + h * e) - rosen_grad(x - h * e)) / (2 * h) for e in E])
    np.testing.assert_allclose(g_fd, rosen_grad(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(H_fd, rosen_hess(x), rtol=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------ vjp

def vec_fun(x):
    return np.stack([x[0] * x[1], np.sin(x[2]) * x[0], np.exp(x[1] - x[2]), x[0] ** 3])


def vec_fun_jac(x):
    e = math.exp(x[1] - x[2])
    return np.array([[x[1], x[0], 0.0],
                     [math.sin(x[2]), 0.0, x[0] * math.cos(x[2])],
                     [0.0, e, -e],
                     [3.0 * x[0] ** 2, 0.0, 0.0]])


def test_vjp_is_jacobian_transpose_times_v():
    rng = np.random.default_rng(1)
    body = Counter(vec_fun)
    for _ in range(4):          # first call traces, the others replay at new points
        x, v = rng.standard_normal(3), rng.standard_normal(4)
        out, f_vjp = fd.vjp(body, x)
        close(out, [x[0] * x[1], math.sin(x[2]) * x[0], math.exp(x[1] - x[2]), x[0] ** 3])
        (ct,) = f_vjp(v)
        close(ct, vec_fun_jac(x).T @ v)
        # several cotangents against the same linearization point
        for w in np.eye(4):
            close(f_vjp(w)[0], vec_fun_jac(x)[np.argmax(w)])
    assert body.n == 1


def test_vjp_function_keeps_its_point():
    """A vjp_fn made earlier still uses its own linearization point after new calls."""
    f = lambda x: np.sin(x) * x[0]
    x1, x2 = np.array([0.3, 1.2]), np.array([-0.7, 2.0])
    _, vjp1 = fd.vjp(f, x1)
    _, vjp2 = fd.vjp(f, x2)
    v = np.array([1.0, -2.0])

    def ref(x):   # J = diag(x0 cos x) + e_0-column of sin x
        J = np.diag(x[0] * np.cos(x))
        J[:, 0] += np.sin(x)
        return J.T @ v

    close(vjp1(v)[0], ref(x1))
    close(vjp2(v)[0], ref(x2))


def test_vjp_matrix_output_and_several_primals():
    X = np.array([[1.0, 2.0], [-0.5, 3.0]])
    C = np.array([[0.3, -1.0], [2.0, 0.7]])
    out, f_vjp = fd.vjp(lambda X: X @ X, X)
    close(out, X @ X)
    # d(X X) along dX is dX X + X dX, so the cotangent of X is C X^T + X^T C
    close(f_vjp(C)[0], C @ X.T + X.T @ C)

    x, s = np.array([1.0, -2.0, 0.5]), 1.7
    out, f_vjp = fd.vjp(lambda x, s: s * x ** 2, x, s)
    v = np.array([0.2, 1.0, -3.0])
    cx, cs = f_vjp(v)
    close(cx, 2.0 * s * x * v)
    assert isinstance(cs, float) and cs == pytest.approx(np.sum(x ** 2 * v), rel=RTOL)


def test_vjp_scalar_output_and_bad_cotangent():
    x = np.array([1.0, 2.0, -1.0])
    out, f_vjp = fd.vjp(lambda x: np.sum(x ** 3), x)
    assert out == pytest.approx(np.sum(x ** 3))
    close(f_vjp(2.0)[0], 2.0 * 3.0 * x ** 2)
    with pytest.raises(ValueError, match="cotangent"):
        fd.vjp(vec_fun, x)[1](np.ones(3))


# ------------------------------------------------------------------------------ Jacobians

M = np.array([[0.5, -1.0, 2.0, 0.0, 1.5, -0.3],
              [1.0, 0.25, 0.0, -2.0, 0.5, 0.8],
              [-0.7, 0.0, 1.0, 0.3, -1.2, 2.0],
              [0.2, 1.1, -0.4, 0.9, 0.0, -1.0]])


def make_case(in_shape, out_shape):
    """f(x) = reshape(A sin(vec x)) with closed-form Jacobian A diag(cos(vec x)),
    reshaped to out_shape + in_shape."""
    n_in = int(np.prod(in_shape))
    n_out = int(np.prod(out_shape))
    A = M[:n_out, :n_in] if n_out <= 4 else np.vstack([M, M])[:n_out, :n_in]

    if in_shape == ():
        a = A[:, 0]

        def f(x):
            v = np.sin(x) * a
            return v[0] if out_shape == () else v.reshape(out_shape)

        def jac(x):
            return (a * math.cos(x)).reshape(out_shape)
    else:
        def f(x):
            v = A @ np.sin(x).ravel()
            return v[0] if out_shape == () else v.reshape(out_shape)

        def jac(x):
            return (A * np.cos(x).ravel()).reshape(out_shape + in_shape)
    return f, jac


SHAPES = [((), ()), ((), (3,)), ((4,), ()), ((3,), (2,)), ((2,), (4,)), ((2, 3), (4,)),
          ((2, 2), (2, 2)), ((6,), (2, 2)), ((3, 2), ())]


@pytest.mark.parametrize("in_shape,out_shape", SHAPES)
@pytest.mark.parametrize("which", ["jacfwd", "jacrev", "jacobian"])
def test_jacobian_shapes_and_values(which, in_shape, out_shape):
    f, jac = make_case(in_shape, out_shape)
    J = getattr(fd, which)(f)
    rng = np.random.default_rng(hash((in_shape, out_shape)) % 2 ** 32)
    for _ in range(3):
        x = float(rng.standard_normal()) if in_shape == () else rng.standard_normal(in_shape)
        got = J(x)
        want = jac(x)
        assert np.shape(got) == out_shape + in_shape
        close(got, want)
    if which != "jacobian":
        assert J.cache_info()["traces"] == 1


def test_jacobian_tuple_argnums():
    x, y = np.array([0.3, -1.2]), np.array([1.0, 2.0, -0.5])
    for which in (fd.jacfwd, fd.jacrev, fd.jacobian):
        Jx, Jy = which(lambda x, y: np.outer(np.sin(x), y), argnums=(0, 1))(x, y)
        assert Jx.shape == (2, 3, 2) and Jy.shape == (2, 3, 3)
        wx = np.einsum("ik,j->ijk", np.diag(np.cos(x)), y)
        wy = np.einsum("i,jk->ijk", np.sin(x), np.eye(3))
        close(Jx, wx)
        close(Jy, wy)
    # a scalar and an array argument, scalar output
    gs, gx = fd.jacrev(lambda s, x: s * np.sum(x ** 2), argnums=(0, 1))(2.0, x)
    assert gs == pytest.approx(np.sum(x ** 2)) and np.shape(gs) == ()
    close(gx, 4.0 * x)


def test_jacobian_chooses_the_cheaper_sweep():
    """jacobian replays one tape and runs reverse sweeps (one per output element) when there
    are fewer outputs than inputs, tangent sweeps (one per input element) otherwise."""
    wide = fd.jacobian(lambda x: np.stack([np.sum(x ** 2), np.prod(x)]))   # 2 outputs, 5 inputs
    tall = fd.jacobian(lambda s: s * np.arange(5.0))                       # 5 outputs, 1 input
    for k in range(1, 4):
        x = np.arange(1.0, 6.0) + k
        close(wide(x), np.stack([2 * x, np.prod(x) / x]))
        close(tall(2.0 + k), np.arange(5.0))
        w, t = wide.cache_info(), tall.cache_info()
        assert (w["reverse_sweeps"], w["tangent_sweeps"]) == (2 * k, 0)
        assert (t["reverse_sweeps"], t["tangent_sweeps"]) == (0, k)
    assert wide.cache_info()["traces"] == tall.cache_info()["traces"] == 1


# ------------------------------------------------------------------------------- Hessians

@pytest.mark.parametrize("n", [2, 3, 5, 10, 25, 50])
def test_hessian_of_rosenbrock_is_the_closed_form(n):
    H = fd.hessian(rosen)
    rng = np.random.default_rng(n)
    for _ in range(4):
        x = rng.uniform(-2.0, 2.0, n)
        close(H(x), rosen_hess(x))
    assert H.cache_info()["traces"] == 1 and H.cache_info()["replays"] == 3


def test_hessian_one_function_many_sizes_and_the_loop_form():
    H, Hl = fd.hessian(rosen), fd.hessian(rosen_loop)
    rng = np.random.default_rng(11)
    for _rep in range(2):
        for n in (2, 3, 7, 12):
            x = rng.uniform(-1.5, 1.5, n)
            close(H(x), rosen_hess(x))
            close(Hl(x), rosen_hess(x))
    assert H.cache_info()["signatures"] == 4 and H.cache_info()["traces"] == 4


def test_hessian_scalar_matrix_and_argnums():
    assert fd.hessian(lambda x: x ** 3 * math.pi)(2.0) == pytest.approx(6 * 2.0 * math.pi)
    X = np.array([[1.0, -2.0], [0.5, 3.0]])
    # f = sum X^3 + X00 X11: H = diag(6 X) + the X00-X11 coupling
    Hx = fd.hessian(lambda X: np.sum(X ** 3) + X[0, 0] * X[1, 1])(X)
    want = np.diag(6.0 * X.ravel()).reshape(2, 2, 2, 2)
    want[0, 0, 1, 1] = want[1, 1, 0, 0] = 1.0
    assert Hx.shape == (2, 2, 2, 2)
    close(Hx, want)
    Ha = fd.hessian(lambda a, x: a * np.sum(x ** 3), argnums=1)(2.0, np.array([1.0, -2.0]))
    close(Ha, np.diag(2.0 * 6.0 * np.array([1.0, -2.0])))


# ------------------------------------------------------------------------------------ hvp

def test_hvp_is_hessian_times_v_replayed():
    body = Counter(rosen)
    hv = fd.hvp(body)
    rng = np.random.default_rng(4)
    n = 12
    for _ in range(5):           # new x and new v each call
        x, v = rng.uniform(-2, 2, n), rng.standard_normal(n)
        got = hv(x, v)
        close(got, rosen_hess(x) @ v)
        close(got, fd.hessian(rosen)(x) @ v)
    assert body.n == 1           # rosen's Python body ran once: every later call replayed


def test_hvp_scalar_matrix_and_extra_arguments():
    assert fd.hvp(lambda x: np.exp(2.0 * x))(0.5, 3.0) == pytest.approx(
        4.0 * math.exp(1.0) * 3.0, rel=RTOL)
    X, V = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[0.5, 0.0], [1.0, 2.0]])
    close(fd.hvp(lambda X: np.sum(np.sin(X)))(X, V), -np.sin(X) * V)
    # scipy's hessp(x, p, *args): data arguments after the direction
    body = Counter(lambda x, a, c: a * np.sum((x - c) ** 4))
    hv = fd.hvp(body)
    for a, c in ((2.0, np.array([1.0, 0.0])), (0.5, np.array([-1.0, 3.0]))):
        x, v = np.array([0.3, 1.2]), np.array([1.0, -1.0])
        close(hv(x, v, a, c), 12.0 * a * (x - c) ** 2 * v)
    assert body.n == 1


# ---------------------------------------------------------------------- nested derivatives

def nth_grad(f, k):
    for _ in range(k):
        f = fd.grad(f)
    return f


CLOSED_FORMS = [
    ("sin", np.sin, lambda x, k: math.sin(x + k * math.pi / 2)),
    ("exp(2x)", lambda x: np.exp(2.0 * x), lambda x, k: 2.0 ** k * math.exp(2.0 * x)),
    ("x**3.5", lambda x: x ** 3.5,
     lambda x, k: math.prod(3.5 - j for j in range(k)) * x ** (3.5 - k)),
    ("log", np.log, lambda x, k: (-1) ** (k - 1) * math.factorial(k - 1) / x ** k),
    ("1/x", lambda x: 1.0 / x, lambda x, k: (-1) ** k * math.factorial(k) / x ** (k + 1)),
]


@pytest.mark.parametrize("name,f,deriv", CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_nested_grad_closed_forms(name, f, deriv):
    for k in (1, 2, 3, 4):
        g = nth_grad(f, k)
        for x in (0.4, 1.3, 2.7):      # first call traces, the others replay
            assert g(x) == pytest.approx(deriv(x, k), rel=1e-13), (name, k, x)
        assert g.cache_info()["traces"] == 1


COMPOSITIONS = [
    ("sin(x)**cos(x)", lambda x: np.sin(x) ** np.cos(x), lambda m, x: m.sin(x) ** m.cos(x)),
    ("log(1+x^2) exp(-x)", lambda x: np.log(1 + x ** 2) * np.exp(-x),
     lambda m, x: m.log(1 + x ** 2) * m.exp(-x)),
    ("x**x", lambda x: x ** x, lambda m, x: x ** x),
    ("exp(sin x) x^2.5 + log x", lambda x: np.exp(np.sin(x)) * x ** 2.5 + np.log(x),
     lambda m, x: m.exp(m.sin(x)) * x ** 2.5 + m.log(x)),
    ("sqrt(1+exp(x))/x", lambda x: np.sqrt(1 + np.exp(x)) / x,
     lambda m, x: m.sqrt(1 + m.exp(x)) / x),
]


@pytest.mark.parametrize("name,f,fm", COMPOSITIONS, ids=[c[0] for c in COMPOSITIONS])
def test_nested_grad_compositions_vs_mpmath(name, f, fm):
    mpmath = pytest.importorskip("mpmath")
    old = mpmath.mp.dps
    mpmath.mp.dps = 50
    try:
        for k in (1, 2, 3):
            g = nth_grad(f, k)
            for x in (0.7, 1.3):
                ref = float(mpmath.diff(lambda t: fm(mpmath, t), mpmath.mpf(x), k))
                # a few ulps per elementary function and per order
                assert g(x) == pytest.approx(ref, rel=5e-14, abs=5e-14), (name, k, x)
    finally:
        mpmath.mp.dps = old


def test_perturbation_confusion():
    """d/dx [x * d/dy (x + y)] = d/dx [x * 1] = 1, not 2 (ForwardDiff.jl #83, Siskind and
    Pearlmutter's example): the inner derivative must not see the outer x as its variable."""
    g = fd.grad(lambda x: x * fd.grad(lambda y: x + y)(1.0))
    assert g(1.0) == 1.0
    assert g(5.0) == 1.0            # replayed
    # y evaluated at x: d/dx [x * d/dy (x y) |_{y=x}] = d/dx [x * x] = 2x
    g2 = fd.grad(lambda x: x * fd.grad(lambda y: x * y)(x))
    for x in (1.0, 3.0, -0.5):
        assert g2(x) == pytest.approx(2.0 * x, rel=RTOL)
    assert g2.cache_info()["traces"] == 1
    # the same with arrays: d/dx sum(x * grad_y sum(x y^2) |_{y=x}) = d/dx sum(2 x^3) = 6 x^2
    x = np.array([1.0, -2.0, 0.5])
    close(fd.grad(lambda x: np.sum(x * fd.grad(lambda y: np.sum(x * y ** 2))(x)))(x),
          6.0 * x ** 2)
    # the inner variable closed over by a deeper function
    h = fd.grad(lambda x: fd.grad(lambda y: np.sin(x * y))(1.0))     # = d/dx x cos x
    for x in (0.3, 2.0):
        assert h(x) == pytest.approx(math.cos(x) - x * math.sin(x), rel=RTOL)


def test_differentiating_a_newton_step():
    """N(x) = x - f'(x)/f''(x), with f' and f'' taken by fastad inside N; then
    N'(x) = f'(x) f'''(x) / f''(x)^2."""
    f = lambda x: x ** 4 - 3.0 * x ** 2 + x
    d1 = lambda x: 4 * x ** 3 - 6 * x + 1
    d2 = lambda x: 12 * x ** 2 - 6
    d3 = lambda x: 24 * x
    N = lambda x: x - fd.grad(f)(x) / fd.grad(fd.grad(f))(x)
    dN = fd.grad(N)
    for x in (2.0, 3.0, -1.5):
        assert N(x) == pytest.approx(x - d1(x) / d2(x), rel=RTOL)
        assert dN(x) == pytest.approx(d1(x) * d3(x) / d2(x) ** 2, rel=1e-12)
    assert dN.cache_info()["traces"] == 1
    # and the second derivative of the Newton map, against mpmath
    mpmath = pytest.importorskip("mpmath")
    old = mpmath.mp.dps
    mpmath.mp.dps = 50
    try:
        Nm = lambda t: t - (4 * t ** 3 - 6 * t + 1) / (12 * t ** 2 - 6)
        for x in (2.0, -1.5):
            ref = float(mpmath.diff(Nm, mpmath.mpf(x), 2))
            assert fd.grad(dN)(x) == pytest.approx(ref, rel=1e-12)
    finally:
        mpmath.mp.dps = old


def test_inner_derivative_with_a_branch_replays_by_guard():
    inner = lambda y: y ** 2 if y > 0 else -(y ** 3)
    g = fd.grad(lambda x: fd.grad(inner)(x))         # second derivative: 2, or -6 y
    assert g(1.0) == 2.0
    assert g(-1.0) == 6.0                              # guard failed: traced the other branch
    assert g(2.0) == 2.0 and g(-2.0) == 12.0           # both tapes replayed
    info = g.cache_info()
    assert info["traces"] == 2 and info["tapes"] == 2


def test_jacobians_of_jacobians_equal_the_hessian():
    rng = np.random.default_rng(8)
    for n in (2, 6):
        x = rng.uniform(-1.5, 1.5, n)
        want = rosen_hess(x)
        for outer in (fd.jacfwd, fd.jacrev):
            for inner in (fd.jacfwd, fd.jacrev, fd.grad):
                close(outer(inner(rosen))(x), want)
        close(fd.hessian(rosen)(x), want)


def test_third_order_tensor():
    """f = sum x^4 + x0 x1 x2: T_iii = 24 x_i, T_ijk = 1 for {i,j,k} = {0,1,2}."""
    f = lambda x: np.sum(x ** 4) + x[0] * x[1] * x[2]
    x = np.array([1.0, -2.0, 0.5, 3.0])
    T = fd.jacfwd(fd.hessian(f))(x)
    want = np.zeros((4, 4, 4))
    for i in range(4):
        want[i, i, i] = 24.0 * x[i]
    for i, j, k in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        want[i, j, k] = 1.0
    close(T, want)
    close(fd.jacrev(fd.jacrev(fd.grad(f)))(x), want)


def test_other_derivatives_inside_a_traced_function():
    # value_and_grad inside: d/dx [v(x) g(x)] for v = x^3, g = 3x^2: d/dx 3 x^5 = 15 x^4
    vg = lambda x: fd.value_and_grad(lambda y: y ** 3)(x)
    assert fd.grad(lambda x: vg(x)[0] * vg(x)[1])(2.0) == pytest.approx(15 * 16.0)
    # jvp inside: d/dx [d/dt (x + t)^3 at t=0] = 6 x
    assert fd.grad(lambda x: fd.jvp(lambda y: y ** 3, (x,), (1.0,))[1])(2.0) == 12.0
    # hvp inside: d/dx [f''(x) v] with f = y^4, v = 1: 24 x
    assert fd.grad(lambda x: fd.hvp(lambda y: y ** 4)(x, 1.0))(2.0) == pytest.approx(48.0)
    # a Jacobian inside: sum_ij J_ij for y -> sin(y) y0 is sum cos(y) y0 + sum sin(y)
    x = np.array([0.0, 1.0, 2.0])
    want = -np.sin(x) * x[0] + np.cos(x)
    want[0] += np.sum(np.cos(x))
    close(fd.grad(lambda x: np.sum(fd.jacobian(lambda y: np.sin(y) * y[0])(x)))(x), want)
    # jvp of a gradient: forward over reverse by hand
    val, tan = fd.jvp(fd.grad(fd.grad(np.exp)), (1.0,), (2.0,))
    assert val == pytest.approx(math.e) and tan == pytest.approx(2.0 * math.e)


# --------------------------------------------------------------------------------- has_aux

def test_grad_and_value_and_grad_has_aux_replayed():
    def f(x):
        return np.sum(x ** 2), {"norm": np.sqrt(np.sum(x ** 2)), "sq": x ** 2, "tag": "run",
                                "n": 3}

    body = Counter(f)
    g = fd.grad(body, has_aux=True)
    vg = fd.value_and_grad(body, has_aux=True)
    for x in (np.array([3.0, 4.0]), np.array([1.0, -2.0]), np.array([0.5, 0.25])):
        grad, aux = g(x)
        close(grad, 2.0 * x)
        assert aux["norm"] == pytest.approx(np.linalg.norm(x), rel=RTOL)
        close(aux["sq"], x ** 2)
        assert aux["tag"] == "run" and aux["n"] == 3
        (value, aux2), grad2 = vg(x)
        assert value == pytest.approx(np.sum(x ** 2), rel=RTOL)
        close(grad2, 2.0 * x)
        assert aux2["norm"] == pytest.approx(np.linalg.norm(x), rel=RTOL)
    assert body.n == 2            # one trace for each of g and vg; the rest replayed


def test_vjp_and_jacobian_has_aux_replayed():
    body = Counter(lambda x: (np.sin(x) * 2.0, (np.max(x), np.sum(x))))
    for x in (np.array([0.1, 0.7, 0.3]), np.array([1.5, -0.2, 0.4])):
        out, f_vjp, aux = fd.vjp(body, x, has_aux=True)
        close(out, 2.0 * np.sin(x))
        close(f_vjp(np.ones(3))[0], 2.0 * np.cos(x))
        assert aux[0] == np.max(x) and aux[1] == pytest.approx(np.sum(x))
    for which in (fd.jacfwd, fd.jacrev, fd.jacobian):
        J = which(lambda x: (x ** 2, {"s": np.sum(x)}), has_aux=True)
        for x in (np.array([1.0, 2.0]), np.array([3.0, -4.0])):
            jac, aux = J(x)
            close(jac, np.diag(2.0 * x))
            assert aux["s"] == pytest.approx(np.sum(x))


def test_has_aux_requires_a_pair():
    with pytest.raises(TypeError, match="pair"):
        fd.grad(lambda x: x ** 2, has_aux=True)(1.0)


# --------------------------------------------------------------------------------- pytrees

def same_structure(a, b):
    la, da = tree_flatten(a)
    lb, db = tree_flatten(b)
    assert da == db
    for x, y in zip(la, lb):
        assert type(x) is type(y) or (isinstance(x, float) and isinstance(y, float))
        assert np.shape(x) == np.shape(y)


Point = collections.namedtuple("Point", ["x", "y"])


def tree_fun(p):
    w, b = p["layer"]
    s = p["scale"]
    extra = p["extra"][0] * p["extra"][1][0]
    return s * np.sum(np.tanh(w @ b)) + extra + p["pt"].x ** 2 * p["pt"].y


def tree_grad(p):
    w, b = p["layer"]
    s = p["scale"]
    t = np.tanh(w @ b)
    dt = s * (1.0 - t ** 2)
    return {"layer": (np.outer(dt, b), w.T @ dt),
            "scale": float(np.sum(t)),
            "extra": [p["extra"][1][0], [p["extra"][0]]],
            "pt": Point(2.0 * p["pt"].x * p["pt"].y, p["pt"].x ** 2)}


def make_tree(rng):
    return {"layer": (rng.standard_normal((3, 2)), rng.standard_normal(2)),
            "scale": float(rng.standard_normal()),
            "extra": [float(rng.standard_normal()), [float(rng.standard_normal())]],
            "pt": Point(float(rng.standard_normal()), float(rng.standard_normal()))}


def check_tree_close(got, want):
    same_structure(got, want)
    for a, b in zip(tree_flatten(got)[0], tree_flatten(want)[0]):
        close(a, b)


def test_grad_of_nested_pytree():
    body = Counter(tree_fun)
    g = fd.grad(body)
    vg = fd.value_and_grad(body)
    rng = np.random.default_rng(5)
    for _ in range(3):
        p = make_tree(rng)
        got = g(p)
        assert isinstance(got, dict) and isinstance(got["layer"], tuple)
        assert isinstance(got["extra"], list) and isinstance(got["extra"][1], list)
        assert type(got["pt"]) is Point
        check_tree_close(got, tree_grad(p))
        v, got2 = vg(p)
        assert v == pytest.approx(tree_fun(p), rel=RTOL)
        check_tree_close(got2, tree_grad(p))
    assert body.n == 2


def test_pytree_dict_order_and_tuple_argnums():
    f = lambda a, b: a["u"] * b[0] + a["v"] ** 2 * np.sum(b[1])
    ga, gb = fd.grad(f, argnums=(0, 1))({"v": 2.0, "u": 3.0}, (5.0, np.array([1.0, 2.0])))
    assert ga == {"u": 5.0, "v": 12.0}
    assert isinstance(gb, tuple) and gb[0] == 3.0
    close(gb[1], [4.0, 4.0])
    # insertion order does not matter: same signature, replayed
    g = fd.grad(lambda d: d["a"] * d["b"] ** 2)
    assert g({"a": 2.0, "b": 3.0}) == {"a": 9.0, "b": 12.0}
    assert g({"b": 1.0, "a": 4.0}) == {"a": 1.0, "b": 8.0}


def test_jacobian_vjp_jvp_with_pytrees():
    p = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, -1.0])}
    for which in (fd.jacfwd, fd.jacrev, fd.jacobian):
        J = which(lambda p: p["a"] * np.sin(p["b"]))(p)
        assert set(J) == {"a", "b"}
        close(J["a"], np.diag(np.sin(p["b"])))
        close(J["b"], np.diag(p["a"] * np.cos(p["b"])))
    out, f_vjp = fd.vjp(lambda p: p["a"] * np.sin(p["b"]), p)
    (ct,) = f_vjp(np.array([1.0, 0.5]))
    assert set(ct) == {"a", "b"}
    close(ct["a"], np.sin(p["b"]) * [1.0, 0.5])
    close(ct["b"], p["a"] * np.cos(p["b"]) * [1.0, 0.5])
    val, tan = fd.jvp(lambda q: q["a"] ** 2 * q["b"], ({"a": 2.0, "b": 3.0},),
                      ({"a": 1.0, "b": 0.5},))
    assert val == 12.0 and tan == pytest.approx(2 * 2.0 * 3.0 * 1.0 + 4.0 * 0.5)


# --------------------------------------------------------------------------- stop_gradient

def test_stop_gradient():
    assert fd.grad(lambda x: x * fd.stop_gradient(x))(3.0) == 3.0
    x = np.array([1.0, -2.0, 0.5])
    close(fd.grad(lambda x: np.sum(x * fd.stop_gradient(x)))(x), x)
    # higher orders: d/dx [x^2 sg(x)] = 2 x sg(x); d2/dx2 = 2 sg(x)
    g2 = fd.grad(fd.grad(lambda x: x ** 2 * fd.stop_gradient(x)))
    assert g2(3.0) == 6.0 and g2(-1.0) == -2.0
    close(fd.hessian(lambda x: np.sum(x ** 2 * fd.stop_gradient(x)))(x), np.diag(2.0 * x))
    # forward mode and Jacobians
    assert fd.jvp(lambda x: x * fd.stop_gradient(x), (3.0,), (1.0,)) == (9.0, 3.0)
    close(fd.jacrev(lambda x: x * fd.stop_gradient(np.sin(x)))(x), np.diag(np.sin(x)))
    # outside a trace it is the identity
    v = np.ones(2)
    assert fd.stop_gradient(v) is v and fd.stop_gradient(2.5) == 2.5


# ------------------------------------------- Hessians and hvp of several or structured arguments

def test_hessian_tuple_argnums_is_nested_blocks():
    """As in JAX: H[i][j] = d2f / d arg_i d arg_j, of shape arg_i.shape + arg_j.shape.
    f(x, y) = y sum(x^2) + x0 sin(y):
      H_xx = 2y I,  H_xy = 2x + cos(y) e0,  H_yy = -x0 sin(y)."""
    f = lambda x, y: y * np.sum(x ** 2) + x[0] * np.sin(y)
    H = fd.hessian(f, argnums=(0, 1))
    for x, y in ((np.array([1.0, 2.0, -0.5]), 3.0), (np.array([0.3, -1.0, 2.0]), -0.7)):
        (hxx, hxy), (hyx, hyy) = H(x, y)
        e0 = np.array([1.0, 0.0, 0.0])
        close(hxx, 2.0 * y * np.eye(3))
        close(hxy, 2.0 * x + math.cos(y) * e0)
        close(hyx, 2.0 * x + math.cos(y) * e0)
        assert np.shape(hyy) == () and float(hyy) == pytest.approx(-x[0] * math.sin(y), rel=RTOL)
    # scalars only
    (a, b), (c, d) = fd.hessian(lambda x, y: x * x * y, argnums=(0, 1))(2.0, 3.0)
    assert (a, b, c, d) == (6.0, 4.0, 4.0, 0.0)


def test_hessian_of_a_pytree_argument():
    """The Hessian of a dict argument is a dict of dicts of blocks, as in JAX:
    f = a^2 sum(b) + prod(b):  H[a][a] = 2 sum(b), H[a][b] = H[b][a] = 2a,
    H[b][b] = the Hessian of prod(b) = [[0, 1], [1, 0]] for two entries."""
    f = lambda p: p["a"] ** 2 * np.sum(p["b"]) + p["b"][0] * p["b"][1]
    body = Counter(f)
    H = fd.hessian(body)
    for a, b in ((2.0, np.array([1.0, 3.0])), (-0.5, np.array([2.0, -4.0]))):
        h = H({"a": a, "b": b})
        assert set(h) == {"a", "b"} and set(h["a"]) == {"a", "b"} and set(h["b"]) == {"a", "b"}
        assert float(h["a"]["a"]) == pytest.approx(2.0 * np.sum(b), rel=RTOL)
        close(h["a"]["b"], np.full(2, 2.0 * a))
        close(h["b"]["a"], np.full(2, 2.0 * a))
        close(h["b"]["b"], [[0.0, 1.0], [1.0, 0.0]])
    assert body.n == 1
    # a tuple argument: a tuple of tuples
    (haa, hab), (hba, hbb) = fd.hessian(lambda p: p[0] ** 2 * p[1])((2.0, 3.0))
    assert (haa, hab, hba, hbb) == (6.0, 4.0, 4.0, 0.0)


def test_hvp_of_a_pytree_argument():
    f = lambda p: p["a"] ** 2 * p["b"] + np.sum(p["w"] ** 3)
    body = Counter(f)
    hv = fd.hvp(body)
    for a, b, w in ((2.0, 3.0, np.array([1.0, -1.0])), (0.5, -2.0, np.array([0.3, 2.0]))):
        v = {"a": 1.0, "b": -0.5, "w": np.array([2.0, 1.0])}
        got = hv({"a": a, "b": b, "w": w}, v)
        assert set(got) == {"a", "b", "w"}
        # H = [[2b, 2a, 0], [2a, 0, 0], [0, 0, diag(6w)]]
        assert float(got["a"]) == pytest.approx(2 * b * v["a"] + 2 * a * v["b"], rel=RTOL)
        assert float(got["b"]) == pytest.approx(2 * a * v["a"], rel=RTOL)
        close(got["w"], 6.0 * w * v["w"])
    assert body.n == 1


def test_hvp_with_argnums():
    """hvp(f, argnums=k)(x, v, *rest): x is argument k, rest the others in order."""
    hv = fd.hvp(lambda a, x, c: a * np.sum((x - c) ** 3), argnums=1)
    x, v, c = np.array([1.0, 2.0]), np.array([1.0, -1.0]), np.array([0.5, 0.0])
    close(hv(x, v, 2.0, c), 2.0 * 6.0 * (x - c) * v)
    close(hv(x + 1.0, v, 3.0, c), 3.0 * 6.0 * (x + 1.0 - c) * v)


def test_jacobians_of_structured_outputs():
    """An output that is a tuple or dict gives the Jacobian per output leaf, each block
    out_leaf.shape + arg.shape (JAX's convention)."""
    x = np.array([1.0, 2.0, -1.0])
    for which in (fd.jacfwd, fd.jacrev, fd.jacobian):
        J = which(lambda x: (x ** 2, {"s": np.sum(x), "p": x[0] * x[1]}))(x)
        assert isinstance(J, tuple) and set(J[1]) == {"s", "p"}
        close(J[0], np.diag(2.0 * x))
        close(J[1]["s"], np.ones(3))
        close(J[1]["p"], [x[1], x[0], 0.0])


def test_jacobian_replays_without_running_python():
    body = Counter(lambda x: np.sin(x) * x[0])
    J = fd.jacobian(body)
    for i in range(4):
        x = np.arange(3.0) + i
        want = np.diag(x[0] * np.cos(x))
        want[:, 0] += np.sin(x)
        close(J(x), want)
    assert body.n == 1          # traced once, then only replayed


def test_cache_info_counts_pytree_calls():
    vg = fd.value_and_grad(lambda p: p["a"] ** 2 * np.sum(p["b"]))
    for i in range(3):
        vg({"a": 1.0 + i, "b": np.ones(2)})
    info = vg.cache_info()
    assert info["traces"] == 1 and info["replays"] == 2
