"""The regularized incomplete beta function betainc I_x(a, b) and betaincc 1 - I (one
BETAINC record, csrc/linalg_betainc.h; docs/linalg.md), the t and beta distribution
functions built on it, and the higher derivatives in a of gammainc.

References: mpmath at 30 digits (its betainc is a 2F1 series; derivatives by mpmath.diff,
which differentiates numerically at that precision, far beyond float64) and scipy's own
values for the stats methods (derivatives by central differences of scipy's functions).
Tolerances: values 1e-13 relative (the continued fraction stops at 1e-15 per factor; the
prefactor's log carries a rounding of about eps * (a + b) |log x|), first derivatives
1e-11, second 1e-9, third 1e-8 relative (the Taylor coefficients converge with the
value; each order loses some digits to cancellation between the prefactor's and the
fraction's expansions)."""
import numpy as np
import pytest
import scipy.special as ss
import scipy.stats as st
from mpmath import mp, mpf

import fastad as fd
from fastad import special, stats
from numpy_ref import central_diff

POINTS = [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (2.0, 3.0, 0.9), (0.3, 5.0, 0.01), (7.5, 1.2, 0.8),
          (25.0, 30.0, 0.45), (1.0, 1.0, 0.2), (60.0, 4.0, 0.97), (3.0, 0.7, 0.999)]


def mp_I(a, b, x):
    return mp.betainc(a, b, 0, x, regularized=True)


def ref_partials(a, b, x, orders):
    """d^(i+j+l) I / da^i db^j dx^l at 30 digits, for each (i, j, l) in orders."""
    with mp.workdps(30):
        p = (mpf(a), mpf(b), mpf(x))
        return [float(mp.diff(mp_I, p, o)) for o in orders]


@pytest.mark.parametrize("a,b,x", POINTS)
def test_values_and_gradient_against_mpmath(a, b, x):
    val, da, db, dx = ref_partials(a, b, x, [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)])
    v, g = fd.value_and_grad(lambda a_, b_, x_: special.betainc(a_, b_, x_),
                             argnums=(0, 1, 2))(a, b, x)
    assert v == pytest.approx(val, rel=1e-13)
    np.testing.assert_allclose(g, [da, db, dx], rtol=1e-11)
    # the complement, through scipy's own ufunc on traced values
    v, g = fd.value_and_grad(lambda a_, b_, x_: ss.betaincc(a_, b_, x_), argnums=(0, 1, 2))(a, b, x)
    with mp.workdps(30):
        Ic = float(1 - mp_I(mpf(a), mpf(b), mpf(x)))
    assert v == pytest.approx(Ic, rel=1e-12)
    np.testing.assert_allclose(g, [-da, -db, -dx], rtol=1e-11)
    # forward mode
    _, t = fd.jvp(lambda a_, b_, x_: ss.betainc(a_, b_, x_), (a, b, x), (0.3, -0.7, 0.2))
    assert t == pytest.approx(0.3 * da - 0.7 * db + 0.2 * dx, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("a,b,x", [(2.0, 3.0, 0.4), (0.5, 0.5, 0.3), (7.5, 1.2, 0.8)])
def test_hessian_and_nested_against_mpmath(a, b, x):
    orders = [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2)]
    aa, ab, ax, bb, bx, xx = ref_partials(a, b, x, orders)
    ref = np.array([[aa, ab, ax], [ab, bb, bx], [ax, bx, xx]])
    H = fd.hessian(lambda v: special.betainc(v[0], v[1], v[2]))(np.array([a, b, x]))
    np.testing.assert_allclose(H, ref, rtol=1e-9)
    hv = fd.hvp(lambda v: special.betainc(v[0], v[1], v[2]))(np.array([a, b, x]),
                                                              np.array([1.0, -2.0, 0.5]))
    np.testing.assert_allclose(hv, ref @ [1.0, -2.0, 0.5], rtol=1e-9)
    # third order, nested: d3 I / da2 db
    (aab,) = ref_partials(a, b, x, [(2, 1, 0)])
    f = lambda s, t: special.betainc(s, t, x)
    got = fd.grad(lambda t: fd.grad(lambda s: fd.grad(f, argnums=0)(s, t))(a))(b)
    assert got == pytest.approx(aab, rel=1e-8)


def test_arrays_broadcast_and_replay():
    """Array arguments broadcast like scipy; a second call replays the tape with new values."""
    a = np.array([0.5, 2.0, 7.0])
    x = np.array([[0.1, 0.5, 0.9], [0.3, 0.6, 0.95]])
    f = lambda a_, x_: np.sum(special.betainc(a_, 2.5, x_) ** 2)
    g = fd.grad(f, argnums=(0, 1))
    for scale in (1.0, 0.9):
        ga, gx = g(a * scale, x * scale)
        ref = lambda a_, x_: np.sum(ss.betainc(a_, 2.5, x_) ** 2)  # noqa: B023 (called in this iteration)
        a_s, x_s = a * scale, x * scale
        np.testing.assert_allclose(ga, central_diff(lambda y: ref(y, x_s), a_s), rtol=1e-7)  # noqa: B023
        np.testing.assert_allclose(gx, central_diff(lambda y: ref(a_s, y), x_s), rtol=1e-7)  # noqa: B023


def test_edges_follow_scipy():
    for a, b, x in [(2.0, 3.0, 0.0), (2.0, 3.0, 1.0), (0.0, 1.0, 0.5), (1.0, 0.0, 0.5),
                    (-1.0, 2.0, 0.5), (2.0, 3.0, 1.5), (2.0, 3.0, -0.1), (np.nan, 1.0, 0.5)]:
        got = fd.value_and_grad(lambda x_: special.betainc(a, b, x_))(x)[0]  # noqa: B023 (called in this iteration)
        ref = ss.betainc(a, b, x)
        assert (np.isnan(got) and np.isnan(ref)) or got == ref, (a, b, x)
    # the first x-derivative at the edges is its one-sided limit: x^(a-1) (1-x)^(b-1) / B
    assert fd.grad(lambda x_: special.betainc(1.0, 3.0, x_))(0.0) == pytest.approx(3.0)
    assert fd.grad(lambda x_: special.betainc(2.0, 1.0, x_))(1.0) == pytest.approx(2.0)
    assert fd.grad(lambda x_: special.betainc(2.0, 3.0, x_))(0.0) == 0.0
    # and the a-derivative vanishes where I is identically 0 or 1
    assert fd.grad(lambda a_: special.betainc(a_, 3.0, 0.0))(2.0) == 0.0


def test_t_and_beta_distribution_functions_against_scipy():
    x = np.array([-40.0, -2.5, -0.3, 0.0, 0.7, 3.0, 25.0])
    df, loc, scale = 3.7, 0.2, 1.4
    for method in ("cdf", "sf"):
        f = lambda x_, d_, s_: np.sum(np.log(getattr(stats.t, method)(x_, d_, loc, s_)))  # noqa: B023 (called in this iteration)
        ref = lambda x_, d_, s_: np.sum(np.log(getattr(st.t, method)(x_, d_, loc, s_)))  # noqa: B023 (called in this iteration)
        v, (gx, gd, gs) = fd.value_and_grad(f, argnums=(0, 1, 2))(x, df, scale)
        assert v == pytest.approx(ref(x, df, scale), rel=1e-12), method
        # d/dx log cdf = pdf / cdf (closed form: central differences of log(cdf) near 1 lose
        # their digits), d/dx log sf = -pdf / sf
        sign = 1.0 if method == "cdf" else -1.0
        np.testing.assert_allclose(gx, sign * st.t.pdf(x, df, loc, scale)
                                   / getattr(st.t, method)(x, df, loc, scale), rtol=1e-10)
        assert gd == pytest.approx(central_diff(lambda d: ref(x, d, scale), df), rel=1e-7)  # noqa: B023
        assert gs == pytest.approx(central_diff(lambda s: ref(x, df, s), scale), rel=1e-7)  # noqa: B023
    # the derivative at the centre is the density (no square-root kink in the formula)
    g0 = fd.grad(lambda z: stats.t.cdf(z, 5.0))(0.0)
    assert g0 == pytest.approx(st.t.pdf(0.0, 5.0), rel=1e-14)
    xb = np.array([-0.2, 0.05, 0.3, 0.77, 0.999, 1.3])
    a, b = 2.2, 0.8
    for method in ("cdf", "sf"):
        f = lambda x_, a_, b_: np.sum(getattr(stats.beta, method)(x_, a_, b_) * np.arange(1, 7))  # noqa: B023
        ref = lambda x_, a_, b_: np.sum(getattr(st.beta, method)(x_, a_, b_) * np.arange(1, 7))  # noqa: B023
        v, (gx, ga, gb) = fd.value_and_grad(f, argnums=(0, 1, 2))(xb, a, b)
        assert v == pytest.approx(ref(xb, a, b), rel=1e-13), method
        np.testing.assert_allclose(gx, central_diff(lambda y: ref(y, a, b), xb),  # noqa: B023
                                   rtol=1e-7, atol=1e-12)
        assert ga == pytest.approx(central_diff(lambda s: ref(xb, s, b), a), rel=1e-7)  # noqa: B023
        assert gb == pytest.approx(central_diff(lambda s: ref(xb, a, s), b), rel=1e-7)  # noqa: B023


# ---- gammainc: higher derivatives in a --------------------------------------------

def mp_P(a, x):
    return mp.gammainc(a, 0, x, regularized=True)


@pytest.mark.parametrize("a,x", [(2.5, 1.7), (0.7, 3.0), (12.0, 9.0), (30.0, 40.0)])
def test_gammainc_second_and_third_derivatives_in_a(a, x):
    with mp.workdps(30):
        p = (mpf(a), mpf(x))
        aa, ax, xx, aaa, aax = (float(mp.diff(mp_P, p, o))
                                for o in [(2, 0), (1, 1), (0, 2), (3, 0), (2, 1)])
    H = fd.hessian(lambda v: special.gammainc(v[0], v[1]))(np.array([a, x]))
    np.testing.assert_allclose(H, [[aa, ax], [ax, xx]], rtol=1e-9)
    hv = fd.hvp(lambda v: ss.gammaincc(v[0], v[1]))(np.array([a, x]), np.array([1.0, 0.5]))
    np.testing.assert_allclose(hv, -np.array([aa + 0.5 * ax, ax + 0.5 * xx]), rtol=1e-9)
    g3 = fd.grad(lambda s: fd.grad(lambda u: fd.grad(lambda w: special.gammainc(w, x))(u))(s))(a)
    assert g3 == pytest.approx(aaa, rel=1e-8)
    g3x = fd.grad(lambda y: fd.grad(lambda s: fd.grad(lambda w: special.gammainc(w, y))(s))(a))(x)
    assert g3x == pytest.approx(aax, rel=1e-8)
