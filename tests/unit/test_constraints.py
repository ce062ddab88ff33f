"""fastad.minimize with nonlinear constraints and fastad.least_squares (docs/sparse.md):
Hock-Schittkowski problems 71 and 35 reach their known optima with the same iterations as
SciPy given hand-written exact derivatives; least squares against a hand-written
Jacobian; bad bounds are refused with a clear message."""
import numpy as np
import pytest

import fastad as fd

so = pytest.importorskip("scipy.optimize")
sps = pytest.importorskip("scipy.sparse")


# Hock-Schittkowski 71: f* = 17.0140173 at (1, 4.7429994, 3.8211503, 1.3794082)
def hs71_f(x):
    return x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]


def hs71_grad(x):
    return np.array([x[3] * (2 * x[0] + x[1] + x[2]), x[0] * x[3], x[0] * x[3] + 1,
                     x[0] * (x[0] + x[1] + x[2])])


def hs71_hess(x):
    H = np.zeros((4, 4))
    H[0, 0] = 2 * x[3]
    H[0, 1] = H[1, 0] = H[0, 2] = H[2, 0] = x[3]
    H[0, 3] = H[3, 0] = 2 * x[0] + x[1] + x[2]
    H[1, 3] = H[3, 1] = H[2, 3] = H[3, 2] = x[0]
    return H


def hs71_c(x):
    return np.stack([x[0] * x[1] * x[2] * x[3], np.sum(x ** 2)])


def hs71_cjac(x):
    p = np.prod(x)
    return np.array([p / x, 2 * x])


def hs71_chess(x, v):
    H = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                H[i, j] = np.prod([x[k] for k in range(4) if k not in (i, j)])
    return v[0] * H + v[1] * 2 * np.eye(4)


HS71_X = np.array([1.0, 4.7429994, 3.8211503, 1.3794082])
HS71_BOUNDS = so.Bounds(np.ones(4), 5 * np.ones(4))


def test_hs71_trust_constr_matches_hand_written_derivatives():
    x0 = np.array([1.0, 5.0, 5.0, 1.0])
    cons = fd.NonlinearConstraint(hs71_c, [25.0, 40.0], [np.inf, 40.0])
    res = fd.minimize(hs71_f, x0, method="trust-constr", constraints=[cons],
                      bounds=HS71_BOUNDS, options={"gtol": 1e-10, "xtol": 1e-12})
    ref = so.minimize(hs71_f, x0, jac=hs71_grad, hess=hs71_hess, method="trust-constr",
                      constraints=[so.NonlinearConstraint(hs71_c, [25.0, 40.0], [np.inf, 40.0],
                                                          jac=hs71_cjac, hess=hs71_chess)],
                      bounds=HS71_BOUNDS, options={"gtol": 1e-10, "xtol": 1e-12})
    assert res.success
    # the interior-point barrier stops about 1e-5 inside the bound x0 >= 1
    np.testing.assert_allclose(res.x, HS71_X, atol=2e-5)
    assert abs(res.fun - 17.0140173) < 1e-4
    assert res.nit == ref.nit, (res.nit, ref.nit)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)


def test_hs71_slsqp_with_scipy_constraint_class():
    x0 = np.array([1.0, 5.0, 5.0, 1.0])
    # jac='2-point' (SciPy's default) is replaced by the exact dense Jacobian
    cons = [so.NonlinearConstraint(lambda x: hs71_c(x)[0], 25.0, np.inf),
            so.NonlinearConstraint(lambda x: hs71_c(x)[1], 40.0, 40.0)]
    res = fd.minimize(hs71_f, x0, method="SLSQP", constraints=cons, bounds=HS71_BOUNDS)
    ref = so.minimize(hs71_f, x0, jac=hs71_grad, method="SLSQP", bounds=HS71_BOUNDS,
                      constraints=[so.NonlinearConstraint(lambda x: hs71_c(x)[0], 25.0, np.inf,
                                                          jac=lambda x: hs71_cjac(x)[0]),
                                   so.NonlinearConstraint(lambda x: hs71_c(x)[1], 40.0, 40.0,
                                                          jac=lambda x: hs71_cjac(x)[1])])
    assert res.success
    np.testing.assert_allclose(res.x, HS71_X, atol=1e-5)      # SLSQP's default ftol 1e-6
    assert res.nit == ref.nit


# Hock-Schittkowski 35: f* = 1/9 at (4/3, 7/9, 4/9)
def hs35_f(x):
    return (9 - 8 * x[0] - 6 * x[1] - 4 * x[2] + 2 * x[0] ** 2 + 2 * x[1] ** 2 + x[2] ** 2
            + 2 * x[0] * x[1] + 2 * x[0] * x[2])


def test_hs35_trust_constr():
    x0 = np.full(3, 0.5)
    cons = fd.NonlinearConstraint(lambda x: x[0] + x[1] + 2 * x[2], -np.inf, 3.0)
    res = fd.minimize(hs35_f, x0, method="trust-constr", constraints=cons,
                      bounds=so.Bounds(np.zeros(3), np.full(3, np.inf)),
                      options={"gtol": 1e-10, "xtol": 1e-12})
    # the interior-point barrier stops about 1e-5 from the active constraint
    np.testing.assert_allclose(res.x, [4 / 3, 7 / 9, 4 / 9], atol=5e-5)
    assert abs(res.fun - 1 / 9) < 2e-5
    H = np.array([[4.0, 2, 2], [2, 4, 0], [2, 0, 2]])
    ref = so.minimize(hs35_f, x0, method="trust-constr",
                      jac=lambda x: np.array([-8 + 4 * x[0] + 2 * x[1] + 2 * x[2],
                                              -6 + 4 * x[1] + 2 * x[0], -4 + 2 * x[2] + 2 * x[0]]),
                      hess=lambda x: H,
                      constraints=so.NonlinearConstraint(
                          lambda x: x[0] + x[1] + 2 * x[2], -np.inf, 3.0,
                          jac=lambda x: np.array([[1.0, 1, 2]]),
                          hess=lambda x, v: np.zeros((3, 3))),
                      bounds=so.Bounds(np.zeros(3), np.full(3, np.inf)),
                      options={"gtol": 1e-10, "xtol": 1e-12})
    assert res.nit == ref.nit


def test_sparse_constraint_jacobian_is_handed_to_trust_constr():
    n = 200
    seen = {}

    def cb(intermediate_result):
        seen["n"] = seen.get("n", 0) + 1
    cons = fd.NonlinearConstraint(lambda x: x[1:] - x[:-1] ** 2, -0.5, 0.5)
    res = fd.minimize(lambda x: np.sum((x - 0.3) ** 2), np.zeros(n), method="trust-constr",
                      constraints=[cons], callback=cb, options={"maxiter": 200})
    assert sps.issparse(res.jac[0]) and res.jac[0].shape == (n - 1, n)
    np.testing.assert_allclose(res.x, 0.3, atol=1e-5)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("lb, ub, match", [
    (np.zeros(3), 1.0, "has 2 output"),
    (0.0, [1.0, np.nan], "contains NaN"),
    ([1.0, 2.0], [0.0, 3.0], "lb > ub"),
    (np.inf, np.inf, "infinite equality"),
])
def test_bad_bounds_are_refused(lb, ub, match):
    cons = fd.NonlinearConstraint(lambda x: x[:2] * x[1:], lb, ub)
    with pytest.raises(ValueError, match=match):
        fd.minimize(lambda x: np.sum(x ** 2), np.ones(3), method="trust-constr",
                    constraints=[cons])


def test_constraint_returning_a_matrix_is_refused():
    cons = fd.NonlinearConstraint(lambda x: np.outer(x, x), 0.0, 1.0)
    with pytest.raises(ValueError, match="1-d"):
        fd.minimize(lambda x: np.sum(x ** 2), np.ones(3), method="SLSQP", constraints=[cons])


# ---------------------------------------------------------------------------- least squares

def test_least_squares_matches_hand_written_jacobian():
    t = np.linspace(0, 4, 3000)
    rng = np.random.default_rng(0)
    y = 2.5 * np.exp(-1.3 * t) + 0.4 + 0.01 * rng.standard_normal(t.size)

    def resid(p, t, y):
        return p[0] * np.exp(-p[1] * t) + p[2] - y

    def jac(p, t, y):
        e = np.exp(-p[1] * t)
        return np.stack([e, -p[0] * t * e, np.ones_like(t)], axis=1)
    p0 = np.array([1.0, 1.0, 0.0])
    res = fd.least_squares(resid, p0, args=(t, y))
    ref = so.least_squares(resid, p0, jac=jac, args=(t, y))
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)       # rounding of the sweeps
    np.testing.assert_allclose(res.x[:2], [2.5, 1.3], rtol=1e-2)
    assert res.nfev == ref.nfev and res.njev == ref.njev
    assert res.jac_info["shape"] == (3000, 3)


def test_least_squares_banded_uses_colours_and_pytree():
    n = 2000

    def resid(p):
        x = p["x"]
        # x_i = 1 - 0.2 x_{i+1}^2 backwards from x_{n-1} = 0.8 (a contraction), and s = 0
        return np.concatenate([x[:-1] + 0.2 * x[1:] ** 2 - 1.0, x[-1:] - 0.8, p["s"] * x[:1]])
    res = fd.least_squares(resid, {"s": np.array([1.0]), "x": np.zeros(n)})
    assert res.cost < 1e-20 and res.jac_info["colours"] <= 3
    x = np.empty(n)
    x[-1] = 0.8
    for i in range(n - 2, -1, -1):
        x[i] = 1 - 0.2 * x[i + 1] ** 2
    np.testing.assert_allclose(res.x["x"], x, atol=1e-10)
    assert set(res.x) == {"s", "x"} and res.x["x"].shape == (n,)
