"""The regularized incomplete gamma functions gammainc P(a, x) and gammaincc Q(a, x)
(csrc/special.h, docs/linalg.md) and the scipy.stats methods built on them.

References: 40-digit mpmath values of P, Q, dP/da (mpmath.diff of the regularized lower
gamma) and dP/dx = x^(a-1) e^-x / Gamma(a); scipy's own values for the stats methods.
Tolerances: values 1e-13 relative (the series/continued fraction stop below 1e-16 per
term; the prefactor is formed without the a*eps cancellation), derivatives in a 1e-11
relative (the Taylor-arithmetic loop converges as fast as the value, rounding accumulates
over the terms)."""
import numpy as np
import pytest
import scipy.special as ss
import scipy.stats as st
from mpmath import mp, mpf

import fastad as fd
from fastad import special, stats
from numpy_ref import central_diff

mp.dps = 40

POINTS = [(0.5, 0.1), (0.5, 2.0), (1.0, 1.0), (2.5, 0.7), (2.5, 6.0), (7.0, 3.0), (7.0, 12.0),
          (30.0, 25.0), (30.0, 40.0), (150.0, 140.0), (150.0, 170.0), (0.05, 0.01)]


def mp_P(a, x):
    return mp.gammainc(a, 0, x, regularized=True)


@pytest.mark.parametrize("a,x", POINTS)
def test_values_and_first_derivatives_against_mpmath(a, x):
    P = float(mp_P(mpf(a), mpf(x)))
    Q = float(1 - mp_P(mpf(a), mpf(x)))
    dPda = float(mp.diff(lambda s: mp_P(s, mpf(x)), mpf(a)))
    dPdx = float(mpf(x) ** (a - 1) * mp.exp(-mpf(x)) / mp.gamma(mpf(a)))
    v, (ga, gx) = fd.value_and_grad(lambda a_, x_: special.gammainc(a_, x_), argnums=(0, 1))(a, x)
    assert v == pytest.approx(P, rel=1e-13, abs=1e-300)
    assert ga == pytest.approx(dPda, rel=1e-11, abs=1e-300)
    assert gx == pytest.approx(dPdx, rel=1e-13, abs=1e-300)
    v, (ga, gx) = fd.value_and_grad(lambda a_, x_: ss.gammaincc(a_, x_), argnums=(0, 1))(a, x)
    assert v == pytest.approx(Q, rel=2e-13, abs=1e-300)     # scipy's ufunc on traced values
    assert ga == pytest.approx(-dPda, rel=1e-11, abs=1e-300)
    assert gx == pytest.approx(-dPdx, rel=1e-13, abs=1e-300)
    _, t = fd.jvp(lambda a_, x_: special.gammainc(a_, x_), (a, x), (0.3, -0.7))
    assert t == pytest.approx(0.3 * dPda - 0.7 * dPdx, rel=1e-10, abs=1e-300)


def test_second_derivatives():
    """d2P/dx2 and d2P/dadx are closed-form; d2P/da2 comes from the Taylor-arithmetic
    series (more orders: test_special_betainc.py)."""
    a, x = 2.5, 1.7
    H = fd.hessian(lambda v: special.gammainc(v[0], v[1]))(np.array([a, x]))
    dxx = float(mp.diff(lambda s: mp_P(mpf(a), s), mpf(x), 2))
    dax = float(mp.diff(lambda s, y: mp_P(s, y), (mpf(a), mpf(x)), (1, 1)))
    assert H[1, 1] == pytest.approx(dxx, rel=1e-12)
    assert H[0, 1] == pytest.approx(dax, rel=1e-10)
    assert H[1, 0] == pytest.approx(dax, rel=1e-10)
    daa = float(mp.diff(lambda s: mp_P(s, mpf(x)), mpf(a), 2))
    assert H[0, 0] == pytest.approx(daa, rel=1e-9)
    # nested: grad of a grad that only needs x-derivatives stays finite
    g2 = fd.grad(lambda y: fd.grad(lambda z: special.gammainc(a, z))(y))(x)
    assert g2 == pytest.approx(dxx, rel=1e-12)


def test_edges_follow_scipy():
    for a, x in [(2.0, 0.0), (2.0, np.inf), (0.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (np.nan, 1.0)]:
        got = fd.value_and_grad(lambda x_: special.gammainc(a, x_))(x)[0]  # noqa: B023 (called in this iteration)
        ref = ss.gammainc(a, x)
        assert (np.isnan(got) and np.isnan(ref)) or got == ref, (a, x)


def test_gamma_distribution_methods_against_scipy():
    x = np.array([0.3, 1.2, 2.5, 7.0])
    a, loc, scale = 2.3, 0.1, 1.5
    for method in ("cdf", "sf", "logcdf", "logsf"):
        f = lambda x_, a_, s_: np.sum(getattr(stats.gamma, method)(x_, a_, loc, s_))  # noqa: B023 (called in this iteration)
        ref = lambda x_, a_, s_: np.sum(getattr(st.gamma, method)(x_, a_, loc, s_))  # noqa: B023 (called in this iteration)
        v, (gx, ga, gs) = fd.value_and_grad(f, argnums=(0, 1, 2))(x, a, scale)
        assert v == pytest.approx(ref(x, a, scale), rel=1e-12), method
        np.testing.assert_allclose(gx, central_diff(lambda y: ref(y, a, scale), x), rtol=1e-7)  # noqa: B023 (called in this iteration)
        assert ga == pytest.approx(central_diff(lambda b: ref(x, b, scale), a), rel=1e-7)  # noqa: B023 (called in this iteration)
        assert gs == pytest.approx(central_diff(lambda s: ref(x, a, s), scale), rel=1e-7)  # noqa: B023 (called in this iteration)
    # below loc: cdf 0 (and derivative 0), as scipy
    assert fd.value_and_grad(lambda x_: stats.gamma.cdf(x_, 2.0, 1.0))(0.5) == (0.0, 0.0)
