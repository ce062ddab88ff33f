"""scipy.special ops and fastad.special / fastad.stats (docs/linalg.md).

The op-table functions (csrc/special.h) are checked against 50-digit mpmath values and
derivatives in reverse mode, forward mode and second order; the compositions and the
densities against scipy's own values, and their derivatives against central differences
(step 1e-6 on O(1) inputs: truncation and rounding errors below 1e-8 relative, so 1e-6
tolerances)."""
import math

import numpy as np
import pytest
import scipy.special as ss
import scipy.stats as st
from mpmath import mp, mpf

import fastad as fd
from numpy_ref import central_diff
from fastad import special as S
from fastad import stats as T

mp.dps = 50


def _mp_log_ndtr(x):
    return mp.log(mp.ncdf(x))


# name -> (fastad function, mpmath value, mpmath derivative, points)
OPS = {
    "gammaln": (S.gammaln, lambda x: mp.log(abs(mp.gamma(x))), lambda x: mp.psi(0, x),
                [1e-8, 0.1, 0.5, 1.0, 1.4616321449683622, 2.0, 7.5, 30.0, 1e5, -0.5, -2.3]),
    "digamma": (S.digamma, lambda x: mp.psi(0, x), lambda x: mp.psi(1, x),
                [1e-8, 0.1, 0.5, 1.0, 2.0, 9.99, 10.0, 30.0, 1e6, -0.5, -2.3, -7.9]),
    "erfinv": (S.erfinv, mp.erfinv, lambda x: mp.sqrt(mp.pi) / 2 * mp.exp(mp.erfinv(x) ** 2),
               [-0.9999999999, -0.7, -0.5, -1e-10, 0.2, 0.5, 0.50001, 0.9, 0.999999999999]),
    "ndtr": (S.ndtr, mp.ncdf, mp.npdf, [-30.0, -5.0, -1.0, 0.0, 0.5, 3.0, 8.0]),
    "log_ndtr": (S.log_ndtr, _mp_log_ndtr, lambda x: mp.npdf(x) / mp.ncdf(x),
                 [-60.0, -25.0, -20.5, -19.5, -5.0, -1.0, 0.0, 2.0, 6.5, 12.0]),
}


def _rel(x, ref):
    ref = float(ref)
    return abs(x - ref) / max(abs(ref), 1e-300)


def _close(x, ref, rel):
    """|x - ref| within rel relative, or 1e-15 absolute: digamma and gammaln keep their
    absolute accuracy next to their roots (x = 1.4616..., where psi = 0), not a relative one."""
    return abs(x - float(ref)) <= rel * abs(float(ref)) + 1e-15


@pytest.mark.parametrize("name,x", [(n, x) for n, v in OPS.items() for x in v[3]])
def test_special_op_value_grad_jvp(name, x):
    f, val, der, _ = OPS[name]
    v, g = fd.value_and_grad(f)(x)
    ref_v, ref_d = val(mpf(x)), der(mpf(x))
    rel = 64 * np.finfo(float).eps * max(1.0, abs(x))
    assert _close(v, ref_v, rel), (name, x, v, ref_v)
    assert _close(g, ref_d, rel), (name, x, g, ref_d)
    _, t = fd.jvp(f, (x,), (-0.75,))
    assert _close(t, -0.75 * ref_d, rel), (name, x, t, ref_d)


@pytest.mark.parametrize("name,x", [("gammaln", 2.5), ("digamma", 0.7), ("erfinv", 0.4),
                                    ("ndtr", -1.3), ("log_ndtr", -3.0)])
def test_special_op_second_derivative(name, x):
    f, _, der, _ = OPS[name]
    ref = mp.diff(lambda t: der(t), mpf(x))
    assert _rel(fd.hessian(f)(x), ref) < 1e-12
    assert _rel(fd.grad(fd.grad(f))(x), ref) < 1e-12


@pytest.mark.parametrize("n,x", [(1, 0.3), (1, 2.5), (2, 1.7), (3, 0.9), (4, 12.0),
                                 (1, -1.5), (2, -2.25), (7, 30.0)])
def test_polygamma_against_mpmath(n, x):
    v, g = fd.value_and_grad(lambda t: S.polygamma(n, t))(x)
    assert _rel(v, mp.psi(n, mpf(x))) < 1e-13
    assert _rel(g, mp.psi(n + 1, mpf(x))) < 1e-13
    assert _rel(fd.hessian(lambda t: S.polygamma(n, t))(x), mp.psi(n + 2, mpf(x))) < 1e-12


def test_scipy_special_ufuncs_dispatch_on_traced_values():
    x = np.array([0.3, 1.7, 4.0])
    g = fd.grad(lambda v: np.sum(ss.gammaln(v) + ss.digamma(v) + ss.ndtr(v)))(x)
    ref = ss.digamma(x) + ss.polygamma(1, x) + np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(g, ref, rtol=1e-13)


@pytest.mark.parametrize("a,b", [(0.0, 2.0), (0.0, 0.0), (1.5, 0.0), (2.0, 3.0)])
def test_xlogy_xlog1py_at_zero(a, b):
    v, (ga, gb) = fd.value_and_grad(lambda x, y: S.xlogy(x, y), argnums=(0, 1))(a, b)
    assert v == ss.xlogy(a, b)
    assert ga == (math.log(b) if b > 0 else -math.inf)
    assert gb == (0.0 if a == 0 else (a / b if b else math.inf))
    v1, (g1a, g1b) = fd.value_and_grad(lambda x, y: S.xlog1py(x, y), argnums=(0, 1))(a, b - 1)
    assert v1 == pytest.approx(ss.xlog1py(a, b - 1), rel=4e-16)
    if b > 0:
        assert g1a == pytest.approx(math.log(b), rel=1e-15)




COMPOSITIONS = {
    "betaln": (lambda v: S.betaln(v[0], v[1]), lambda v: ss.betaln(v[0], v[1]), [1.5, 2.5]),
    "multigammaln": (lambda v: S.multigammaln(v[0], 3), lambda v: ss.multigammaln(v[0], 3),
                     [2.7]),
    "logsumexp": (lambda v: S.logsumexp(v), ss.logsumexp, [0.3, -1.2, 700.0, 699.5]),
    "logsumexp_b": (lambda v: S.logsumexp(v, b=np.array([1.0, 2.0, 0.5])),
                    lambda v: ss.logsumexp(v, b=np.array([1.0, 2.0, 0.5])), [0.3, -1.2, 2.0]),
    "softmax": (lambda v: np.sum(S.softmax(v) * np.arange(1.0, 4.0)),
                lambda v: np.sum(ss.softmax(v) * np.arange(1.0, 4.0)), [0.3, -1.2, 2.0]),
    "log_softmax": (lambda v: np.sum(S.log_softmax(v) * np.arange(1.0, 4.0)),
                    lambda v: np.sum(ss.log_softmax(v) * np.arange(1.0, 4.0)), [0.3, -1.2, 2.0]),
    "logsumexp_axis": (lambda v: np.sum(S.logsumexp(v.reshape(2, 2), axis=1) * [1.0, 3.0]),
                       lambda v: np.sum(ss.logsumexp(v.reshape(2, 2), axis=1) * [1.0, 3.0]),
                       [0.3, -1.2, 2.0, 0.1]),
}


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_special_compositions(name):
    f, ref, x = COMPOSITIONS[name]
    x = np.array(x)
    v, g = fd.value_and_grad(f)(x)
    assert v == pytest.approx(ref(x), rel=1e-14)
    np.testing.assert_allclose(g, central_diff(ref, x), rtol=1e-6, atol=1e-8)
    _, t = fd.jvp(f, (x,), (np.ones_like(x),))
    assert t == pytest.approx(np.sum(g), rel=1e-12, abs=1e-14)


def test_softmax_hessian_closed_form():
    x = np.array([0.3, -1.2, 2.0])
    p = ss.softmax(x)
    # d^2/dx^2 logsumexp = diag(p) - p p^T
    np.testing.assert_allclose(fd.hessian(S.logsumexp)(x), np.diag(p) - np.outer(p, p),
                               rtol=1e-12, atol=1e-15)


def test_plain_values_are_scipy():
    x = np.array([0.5, 2.0])
    np.testing.assert_array_equal(S.logsumexp(x), ss.logsumexp(x))
    np.testing.assert_array_equal(S.polygamma(2, x), ss.polygamma(2, x))
    assert T.norm.logpdf(0.3, 1.0, 2.0) == st.norm.logpdf(0.3, 1.0, 2.0)


# ------------------------------------------------------------------ fastad.stats

X3 = np.array([0.3, 1.2, 2.7])
DENSITIES = {
    "norm.logpdf": (T.norm.logpdf, st.norm.logpdf, X3, (0.5, 1.3)),
    "norm.pdf": (T.norm.pdf, st.norm.pdf, X3, (0.5, 1.3)),
    "norm.cdf": (T.norm.cdf, st.norm.cdf, X3, (0.5, 1.3)),
    "norm.logcdf": (T.norm.logcdf, st.norm.logcdf, np.array([-40.0, -3.0, 2.0]), (0.0, 1.0)),
    "t.logpdf": (T.t.logpdf, st.t.logpdf, X3, (3.5, 0.2, 1.1)),
    "t.pdf": (T.t.pdf, st.t.pdf, X3, (3.5, 0.2, 1.1)),
    "gamma.logpdf": (T.gamma.logpdf, st.gamma.logpdf, X3, (2.5, 0.1, 0.9)),
    "gamma.pdf": (T.gamma.pdf, st.gamma.pdf, X3, (2.5, 0.1, 0.9)),
    "beta.logpdf": (T.beta.logpdf, st.beta.logpdf, X3, (2.0, 3.0, 0.0, 4.0)),
    "beta.pdf": (T.beta.pdf, st.beta.pdf, X3, (2.0, 3.0, 0.0, 4.0)),
}


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_density_value_and_gradients_in_every_argument(name):
    f, ref, x, params = DENSITIES[name]
    args = (x,) + tuple(float(p) for p in params)
    argnums = tuple(range(len(args)))
    total = lambda *a: np.sum(f(*a))
    v, grads = fd.value_and_grad(total, argnums=argnums)(*args)
    assert v == pytest.approx(np.sum(ref(*args)), rel=1e-13)
    for i in argnums:
        def ref_i(t, i=i):
            a = list(args)
            a[i] = t
            return np.sum(ref(*a))
        np.testing.assert_allclose(grads[i], central_diff(ref_i, args[i]), rtol=1e-6, atol=1e-9,
                                   err_msg=f"{name} d/d arg {i}")


def test_poisson_logpmf_pmf_cdf():
    k = np.array([0.0, 3.0, 7.0])
    for fn, ref in [(T.poisson.logpmf, st.poisson.logpmf), (T.poisson.pmf, st.poisson.pmf)]:
        v, g = fd.value_and_grad(lambda mu, fn=fn: np.sum(fn(k, mu)))(2.5)
        assert v == pytest.approx(np.sum(ref(k, 2.5)), rel=1e-13)
        numeric = central_diff(lambda mu, ref=ref: np.sum(ref(k, mu)), 2.5)
        assert g == pytest.approx(numeric, rel=1e-6)
    v, g = fd.value_and_grad(lambda mu: T.poisson.cdf(4, mu))(2.5)
    assert v == pytest.approx(st.poisson.cdf(4, 2.5), rel=1e-13)
    assert g == pytest.approx(-st.poisson.pmf(4, 2.5), rel=1e-12)    # d/dmu cdf = -pmf(k)


def test_dirichlet_logpdf_and_pdf():
    x = np.array([0.2, 0.3, 0.5])
    alpha = np.array([1.5, 2.0, 3.0])
    for fn, ref in [(T.dirichlet.logpdf, st.dirichlet.logpdf), (T.dirichlet.pdf, st.dirichlet.pdf)]:
        v, (gx, ga) = fd.value_and_grad(fn, argnums=(0, 1))(x, alpha)
        assert v == pytest.approx(ref(x, alpha), rel=1e-13)
        np.testing.assert_allclose(ga, central_diff(lambda a, ref=ref: ref(x, a), alpha), rtol=1e-6)
        # scipy checks that x sums to 1, so d/dx is checked against the closed form
    gx = fd.grad(T.dirichlet.logpdf)(x, alpha)
    np.testing.assert_allclose(gx, (alpha - 1) / x, rtol=1e-14)


def test_multivariate_normal_logpdf():
    r = np.random.default_rng(3)
    B = r.normal(size=(3, 3))
    cov = B @ B.T + 3 * np.eye(3)
    mean = r.normal(size=3)
    x = r.normal(size=3)
    ref = st.multivariate_normal.logpdf
    v, (gx, gm, gc) = fd.value_and_grad(T.multivariate_normal.logpdf, argnums=(0, 1, 2))(
        x, mean, cov)
    assert v == pytest.approx(ref(x, mean, cov), rel=1e-13)
    ci = np.linalg.inv(cov)
    np.testing.assert_allclose(gx, -ci @ (x - mean), rtol=1e-12)
    np.testing.assert_allclose(gm, ci @ (x - mean), rtol=1e-12)
    # the lower triangle of cov is what is read (numpy's cholesky): d/dC of the symmetric
    # closed form -(C^-1 - C^-1 d d^T C^-1)/2, folded onto the lower triangle
    d = x - mean
    G = -0.5 * (ci - ci @ np.outer(d, d) @ ci)
    np.testing.assert_allclose(gc, np.tril(G + G.T, -1) + np.diag(np.diag(G)), rtol=1e-10,
                               atol=1e-14)
    # several points at once, and pdf
    X = r.normal(size=(4, 3))
    vals = fd.value_and_grad(lambda m: np.sum(T.multivariate_normal.pdf(X, m, cov)))(mean)[0]
    assert vals == pytest.approx(np.sum(st.multivariate_normal.pdf(X, mean, cov)), rel=1e-12)
