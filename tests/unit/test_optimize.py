"""fastad as a drop-in for scipy.optimize, and fastad.minimize.

The references are runs of the same SciPy methods with exact derivatives written out by
hand (closed forms below).  fastad's derivatives agree with those to rounding, so the
optimizer's path is the same: the tests require the same minimizer and iteration counts
equal to the hand-derivative runs, up to 1 (a last-bit difference in a gradient can move
one line search by one step).  Nonlinear CG is left out of the count comparison: its
iterates are chaotic in the last bits of the gradient (two algebraically equal fastad
programs, a loop and a vectorized one, already differ there).
"""
import sys

import numpy as np
import pytest

so = pytest.importorskip("scipy.optimize")

import fastad as fd
from fastad.optimize import minimize


# --------------------------------------------------------------------- problems, by hand

from reference import rosen, rosen_loop, rosen_grad as rosen_grad_hand  # noqa: E402


def rosen_hessp_hand(x, p):
    """H p for the Rosenbrock function: H is tridiagonal with
    H_ii = 1200 x_i^2 - 400 x_{i+1} + 2 (i < n-1) + 200 (i > 0), H_{i,i+1} = -400 x_i."""
    n = len(x)
    diag = np.zeros(n)
    diag[:-1] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
    diag[1:] += 200.0
    off = -400.0 * x[:-1]
    hp = diag * p
    hp[:-1] += off * p[1:]
    hp[1:] += off * p[:-1]
    return hp


def starts(n):
    """A start from which every gradient and Hessian-product method below reaches the
    global minimum x = 1 (the classic alternating -1.2, 1 sends several of them to the
    local minimum near (-1, 1, ..., 1) once n >= 4)."""
    return np.linspace(-0.3, 0.8, n)


def test_hand_derivatives_are_right():
    rng = np.random.default_rng(0)
    for n in (2, 5, 9):
        x, p = rng.standard_normal(n), rng.standard_normal(n)
        np.testing.assert_allclose(rosen_grad_hand(x), so.rosen_der(x), rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(rosen_hessp_hand(x, p), so.rosen_hess_prod(x, p),
                                   rtol=1e-13, atol=1e-12)


# ------------------------------------------------------------- the drop-in: jac=True, hessp

@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B"])
@pytest.mark.parametrize("n", [2, 5, 8])
@pytest.mark.parametrize("f", [rosen, rosen_loop], ids=["vectorized", "loop"])
def test_value_and_grad_dropin_matches_hand_gradient(method, n, f):
    x0 = starts(n)
    ours = so.minimize(fd.value_and_grad(f), x0, jac=True, method=method)
    hand = so.minimize(rosen, x0, jac=rosen_grad_hand, method=method)
    assert ours.success and hand.success
    np.testing.assert_allclose(ours.x, np.ones(n), atol=2e-4)
    assert abs(ours.nit - hand.nit) <= 1, (ours.nit, hand.nit)
    assert abs(ours.nfev - hand.nfev) <= 2, (ours.nfev, hand.nfev)


def test_cg_converges():
    res = so.minimize(fd.value_and_grad(rosen), starts(5), jac=True, method="CG")
    assert res.success
    np.testing.assert_allclose(res.x, np.ones(5), atol=1e-4)


@pytest.mark.parametrize("method", ["Newton-CG", "trust-ncg", "trust-krylov", "trust-constr"])
@pytest.mark.parametrize("n", [2, 6])
def test_hvp_as_hessp_matches_hand_hessian_products(method, n):
    x0 = starts(n)
    ours = so.minimize(fd.value_and_grad(rosen), x0, jac=True, hessp=fd.hvp(rosen),
                       method=method)
    hand = so.minimize(rosen, x0, jac=rosen_grad_hand, hessp=rosen_hessp_hand, method=method)
    assert ours.success and hand.success
    np.testing.assert_allclose(ours.x, np.ones(n), atol=2e-4)
    assert abs(ours.nit - hand.nit) <= 1, (ours.nit, hand.nit)


def test_quadratic_minimizer_is_the_linear_solve():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((6, 6))
    A = M @ M.T + 6.0 * np.eye(6)
    b = rng.standard_normal(6)
    xstar = np.linalg.solve(A, b)

    def q(x, A, b):
        return 0.5 * x @ (A @ x) - b @ x

    x0 = np.zeros(6)
    for method, extra, opts in [
            ("BFGS", {}, {"gtol": 1e-10}), ("L-BFGS-B", {}, {"gtol": 1e-10}),
            ("Newton-CG", {"hessp": fd.hvp(q)}, {"xtol": 1e-12}),
            ("trust-ncg", {"hessp": fd.hvp(q)}, {"gtol": 1e-10}),
            ("trust-krylov", {"hessp": fd.hvp(q)}, {"gtol": 1e-10})]:
        res = so.minimize(fd.value_and_grad(q), x0, args=(A, b), jac=True, method=method,
                          options=opts, **extra)
        np.testing.assert_allclose(res.x, xstar, rtol=1e-6, atol=1e-8, err_msg=method)
    # an inexact-Newton (truncated CG) run on the quadratic takes the same steps as the
    # run with the hand-written gradient A x - b and Hessian product A p
    opts = {"initial_trust_radius": 100.0, "max_trust_radius": 1e4}
    res = so.minimize(fd.value_and_grad(q), x0, args=(A, b), jac=True, hessp=fd.hvp(q),
                      method="trust-ncg", options=opts)
    hand = so.minimize(q, x0, args=(A, b), jac=lambda x, A, b: A @ x - b,
                       hessp=lambda x, p, A, b: A @ p, method="trust-ncg", options=opts)
    assert abs(res.nit - hand.nit) <= 1 and res.nit < 10
    np.testing.assert_allclose(res.x, xstar, rtol=1e-4, atol=1e-5)   # default gtol 1e-5


def test_args_are_replayed_with_new_values():
    """Data arguments are tape inputs: a second problem with other data reuses the tape."""
    calls = []

    def f(x, c):
        calls.append(1)
        return np.sum((x - c) ** 2 + 0.1 * (x - c) ** 4)     # convex, minimum at c

    vg = fd.value_and_grad(f)
    for c in (np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.0, -1.0])):
        res = so.minimize(vg, np.zeros(3), args=(c,), jac=True, method="L-BFGS-B")
        np.testing.assert_allclose(res.x, c, atol=1e-5)
    assert len(calls) == 1


def test_gradients_are_float64_and_contiguous():
    vg = fd.value_and_grad(lambda W: np.sum(np.sin(W) ** 2))
    for W in (np.ones((3, 4)), np.asfortranarray(np.ones((3, 4))), np.ones((4, 6))[::2, ::2],
              np.ones((3, 4), dtype=np.float32)):
        v, g = vg(W)
        assert isinstance(v, float)
        assert g.dtype == np.float64 and g.flags.c_contiguous and g.shape == W.shape
        np.testing.assert_allclose(g, np.sin(2.0 * np.asarray(W, dtype=float)), rtol=1e-6)


def test_lbfgsb_with_float32_and_strided_start():
    """The dtype and layout errors users meet with float32 gradients and L-BFGS-B do not
    happen: everything SciPy sees is float64 and contiguous."""
    seen = []
    target = np.arange(6.0).reshape(2, 3)

    def f(W):
        return np.sum((W - target) ** 2)

    def cb(xk):
        seen.append(xk)

    for W0 in (np.zeros((2, 3), dtype=np.float32), np.zeros((4, 6))[::2, ::2],
               np.asfortranarray(np.zeros((2, 3)))):
        res = minimize(f, W0, method="L-BFGS-B", bounds=[(-1.0, 4.0)] * 6, callback=cb)
        assert res.success
        assert res.x.shape == (2, 3) and res.x.dtype == np.float64
        assert res.x_flat.dtype == np.float64 and res.x_flat.flags.c_contiguous
        np.testing.assert_allclose(res.x, np.clip(target, -1.0, 4.0), atol=1e-6)
        assert res.jac.dtype == np.float64
    assert all(s.shape == (2, 3) and s.dtype == np.float64 for s in seen)


# ------------------------------------------------------------------------- fastad.minimize

@pytest.mark.parametrize("method,hand_kw", [
    ("BFGS", {}), ("L-BFGS-B", {}),
    ("Newton-CG", {"hessp": rosen_hessp_hand}), ("trust-ncg", {"hessp": rosen_hessp_hand}),
    ("trust-krylov", {"hessp": rosen_hessp_hand}), ("trust-constr", {"hessp": rosen_hessp_hand}),
])
def test_minimize_wires_gradient_and_hessp(method, hand_kw):
    x0 = starts(6)
    calls = []

    def f(x):
        calls.append(1)
        return rosen(x)

    res = minimize(f, x0, method=method)
    hand = so.minimize(rosen, x0, jac=rosen_grad_hand, method=method, **hand_kw)
    assert isinstance(res, so.OptimizeResult)
    assert res.success
    np.testing.assert_allclose(res.x, np.ones(6), atol=2e-4)
    assert abs(res.nit - hand.nit) <= 1, (res.nit, hand.nit)
    # traced once for the gradient (and once more for the Hessian products), then replayed
    assert len(calls) <= 2


@pytest.mark.parametrize("method", ["dogleg", "trust-exact"])
def test_minimize_wires_the_hessian_for_dogleg_and_trust_exact(method):
    """dogleg needs a positive definite Hessian everywhere: a strictly convex problem,
    f(x) = sum(exp(d) - d) + d.A.d / 2 with d = x - c (minimum at c, Hessian
    diag(exp(d)) + A)."""
    rng = np.random.default_rng(7)
    M = rng.standard_normal((5, 5))
    A = M @ M.T + np.eye(5)
    c = rng.standard_normal(5)

    def f(x):
        d = x - c
        return np.sum(np.exp(d) - d) + 0.5 * d @ (A @ d)

    grad = lambda x: np.exp(x - c) - 1.0 + A @ (x - c)
    hess = lambda x: np.diag(np.exp(x - c)) + A
    x0 = np.zeros(5)
    res = minimize(f, x0, method=method)
    hand = so.minimize(f, x0, jac=grad, hess=hess, method=method)
    assert res.success and hand.success
    np.testing.assert_allclose(res.x, c, atol=1e-6)
    assert abs(res.nit - hand.nit) <= 1


def test_minimize_pytree_parameters():
    t = np.linspace(0.0, 3.0, 40)
    y = 2.0 * np.exp(-0.7 * t) + 0.3 + 0.25 * np.sin(3 * t)

    def loss(p, t, y):
        model = p["amp"] * np.exp(-p["rate"] * t) + p["offset"][0] + p["wave"][1] * np.sin(
            p["wave"][0] * t)
        return 0.5 * np.sum((model - y) ** 2)

    p0 = {"amp": 1.0, "rate": 0.3, "offset": np.array([0.0]), "wave": (2.9, 0.0)}
    for method in ("BFGS", "L-BFGS-B", "trust-ncg", "trust-krylov"):
        res = minimize(loss, p0, args=(t, y), method=method,
                       options={"gtol": 1e-9 if method != "trust-krylov" else 1e-7})
        p = res.x
        assert set(p) == {"amp", "rate", "offset", "wave"}
        assert isinstance(p["amp"], float) and isinstance(p["rate"], float)
        assert isinstance(p["offset"], np.ndarray) and p["offset"].shape == (1,)
        assert isinstance(p["wave"], tuple) and len(p["wave"]) == 2
        assert p["amp"] == pytest.approx(2.0, abs=1e-5), method
        assert p["rate"] == pytest.approx(0.7, abs=1e-5), method
        assert p["offset"][0] == pytest.approx(0.3, abs=1e-5), method
        assert p["wave"][0] == pytest.approx(3.0, abs=1e-5), method
        assert p["wave"][1] == pytest.approx(0.25, abs=1e-5), method
        # the flat vector: leaves in flattening order (dict keys sorted)
        np.testing.assert_allclose(res.x_flat, [p["amp"], p["offset"][0], p["rate"],
                                                p["wave"][0], p["wave"][1]])
        assert res.x_flat.dtype == np.float64 and res.x_flat.flags.c_contiguous


def test_minimize_scalar_and_nested_list_parameters():
    res = minimize(lambda x: (x - 3.0) ** 2 + 1.0, 0.0)
    assert isinstance(res.x, float) and res.x == pytest.approx(3.0, abs=1e-6)
    assert res.fun == pytest.approx(1.0)
    res = minimize(lambda p: (p[0] - 1.0) ** 2 + np.sum((p[1][0] - np.array([1.0, 2.0])) ** 2),
                   [0.0, [np.zeros(2)]], method="trust-ncg")
    assert isinstance(res.x, list) and isinstance(res.x[1], list)
    np.testing.assert_allclose(res.x[1][0], [1.0, 2.0], atol=1e-6)


def test_minimize_callback_sees_the_structure():
    seen, results = [], []
    f = lambda p: (p["a"] - 1.0) ** 2 + 10.0 * np.sum((p["b"] - 2.0) ** 2)
    x0 = {"a": 0.0, "b": np.zeros(2)}
    minimize(f, x0, method="BFGS", callback=lambda xk: seen.append(xk))
    assert seen and all(set(s) == {"a", "b"} and s["b"].shape == (2,) for s in seen)

    def cb(intermediate_result):
        results.append(intermediate_result)

    res = minimize(f, x0, method="trust-constr", callback=cb)
    assert results and all(isinstance(r.x, dict) for r in results)
    assert res.x["a"] == pytest.approx(1.0, abs=1e-6)


def test_minimize_constraints_get_exact_jacobians():
    # minimize x + y on the unit circle: (-1/sqrt 2, -1/sqrt 2)
    star = -np.ones(2) / np.sqrt(2.0)
    cons = {"type": "eq", "fun": lambda x: x[0] ** 2 + x[1] ** 2 - 1.0}
    res = minimize(lambda x: x[0] + x[1], np.array([1.0, 0.0]), method="SLSQP",
                   constraints=[cons], options={"ftol": 1e-12})
    np.testing.assert_allclose(res.x, star, atol=1e-6)
    # the same with pytree parameters: the constraint receives the structure too
    res = minimize(lambda p: p["u"] + p["v"], {"u": 1.0, "v": 0.0}, method="SLSQP",
                   constraints={"type": "eq", "fun": lambda p: p["u"] ** 2 + p["v"] ** 2 - 1.0},
                   options={"ftol": 1e-12})
    assert res.x["u"] == pytest.approx(star[0], abs=1e-6)
    assert res.x["v"] == pytest.approx(star[1], abs=1e-6)
    # a vector inequality constraint (x >= lower, as one array-valued constraint)
    lower = np.array([0.5, 1.5, -1.0])
    res = minimize(lambda x: np.sum(x ** 2), np.full(3, 2.0), method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: x - lower}])
    np.testing.assert_allclose(res.x, np.maximum(lower, 0.0), atol=1e-6)
    # trust-constr with a NonlinearConstraint left at its default '2-point' jac
    res = minimize(lambda p: p["u"] + p["v"], {"u": 1.0, "v": 0.0}, method="trust-constr",
                   constraints=so.NonlinearConstraint(lambda p: p["u"] ** 2 + p["v"] ** 2,
                                                      1.0, 1.0))
    assert res.x["u"] == pytest.approx(star[0], abs=1e-5)


def test_minimize_wired_constraint_jacobian_is_used():
    """The wired 'jac' is fastad's: exact, and it is what SLSQP is handed."""
    from fastad import optimize as opt
    seen = []
    real = so.minimize

    def spy(*args, **kw):
        seen.append(kw.get("constraints"))
        return real(*args, **kw)

    so.minimize = spy
    try:
        opt.minimize(lambda x: np.sum(x), np.ones(3), method="SLSQP",
                     constraints=[{"type": "eq", "fun": lambda x: np.array([x @ x - 1.0,
                                                                            x[0] * x[2]])}])
    finally:
        so.minimize = real
    jac = seen[0][0]["jac"]
    x = np.array([0.3, -0.2, 0.7])
    np.testing.assert_allclose(jac(x), [2 * x, [x[2], 0.0, x[0]]], rtol=1e-15)


def test_minimize_respects_user_derivatives_and_gradient_free_methods():
    x0 = starts(4)
    res = minimize(rosen, x0, method="BFGS", jac=rosen_grad_hand)
    hand = so.minimize(rosen, x0, method="BFGS", jac=rosen_grad_hand)
    assert res.nit == hand.nit
    res = minimize(lambda p: (p["a"] - 2.0) ** 2, {"a": 0.0}, method="Nelder-Mead")
    assert res.x["a"] == pytest.approx(2.0, abs=1e-3)


def test_minimize_errors():
    with pytest.raises(TypeError, match="function"):
        minimize(3.0, np.zeros(2))
    with pytest.raises(ValueError, match="no parameters"):
        minimize(lambda p: 0.0, {})
    with pytest.raises(TypeError, match="bool"):
        minimize(lambda p: 0.0, [True])


def test_minimize_without_scipy_says_how_to_install(monkeypatch):
    import fastad.optimize as opt
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        opt.minimize(rosen, np.zeros(2))


def test_custom_vjp_rule_inside_an_optimized_function():
    """A user rule (here around scipy.special.gammaln) runs at every replay of the tape;
    sum(gammaln(x)) is smallest where digamma(x) = 0, at x = 1.4616321449683623."""
    sp = pytest.importorskip("scipy.special")
    calls = []

    @fd.custom_vjp
    def lgamma(x):
        calls.append(1)
        return sp.gammaln(x)

    lgamma.defvjp(lambda x: (sp.gammaln(x), x), lambda x, g: (g * sp.digamma(x),))
    res = minimize(lambda x: np.sum(lgamma(x)), np.array([3.0, 0.5, 6.0]), method="L-BFGS-B",
                   bounds=[(0.1, 10.0)] * 3, options={"gtol": 1e-12})
    np.testing.assert_allclose(res.x, 1.4616321449683623, rtol=1e-7)
    assert len(calls) > res.nit          # the rule ran at replay, not only while tracing
    # a Hessian would need a derivative of the rule: a clear error, not a wrong answer
    with pytest.raises(Exception, match="custom_vjp"):
        minimize(lambda x: np.sum(lgamma(x)), np.full(2, 3.0), method="trust-ncg")


def test_minimize_user_derivatives_with_pytree_parameters():
    """Derivatives the caller passes see the structure, like the objective does."""
    f = lambda p: (p["a"] - 1.0) ** 2 + 3.0 * np.sum((p["b"] - 2.0) ** 2)
    jac = lambda p: {"a": 2.0 * (p["a"] - 1.0), "b": 6.0 * (p["b"] - 2.0)}
    hessp = lambda p, v: {"a": 2.0 * v["a"], "b": 6.0 * v["b"]}
    x0 = {"a": 0.0, "b": np.zeros(2)}
    ours = minimize(f, x0, method="trust-ncg")
    theirs = minimize(f, x0, method="trust-ncg", jac=jac, hessp=hessp)
    for res in (ours, theirs):
        assert res.x["a"] == pytest.approx(1.0) and np.allclose(res.x["b"], 2.0)
    assert ours.nit == theirs.nit
    res = minimize(f, x0, method="trust-exact", hess=lambda p: np.diag([2.0, 6.0, 6.0]))
    assert res.x["a"] == pytest.approx(1.0) and np.allclose(res.x["b"], 2.0)
