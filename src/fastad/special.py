"""scipy.special on traced values: `fastad.special.gammaln(x)` & co. (docs/linalg.md).

The elementwise functions (gammaln, digamma/psi, polygamma, erfinv, ndtr, log_ndtr,
xlogy, xlog1py, gammainc, gammaincc, erf, erfc, expit, logit) are op-table entries (csrc/ops.h), so
`scipy.special.gammaln(traced)` itself works through numpy's ufunc protocol; this module
also gives them under their scipy names, with the functions scipy writes in Python
(polygamma, betaln, multigammaln, logsumexp, softmax, log_softmax) as compositions of
those ops.  On plain numbers and arrays every function here is scipy's own.
"""
import math

import numpy as np

import fastad.functions as _f
from fastad._tape import op_table
from fastad._tracer import apply_op, Traced, TracedArray
from fastad.api import stop_gradient

__all__ = ["gammaln", "digamma", "psi", "polygamma", "betaln", "multigammaln", "erf", "erfc",
           "erfinv", "ndtr", "log_ndtr", "xlogy", "xlog1py", "expit", "logit", "logsumexp",
           "softmax", "log_softmax", "gammainc", "gammaincc", "betainc", "betaincc"]

_POLYGAMMA = [name for name, kind in op_table()].index("_polygamma")

gammaln = _f.gammaln
digamma = psi = _f.digamma
erf, erfc, erfinv = _f.erf, _f.erfc, _f.erfinv
ndtr, log_ndtr = _f.ndtr, _f.log_ndtr
xlogy, xlog1py = _f.xlogy, _f.xlog1py
expit, logit = _f.expit, _f.logit
# regularized incomplete gamma P(a, x) and Q(a, x): derivatives in a to the third order,
# in x to any (docs/linalg.md)
gammainc, gammaincc = _f.gammainc, _f.gammaincc
# the regularized incomplete beta function: one BETAINC record (fastad.betainc)
from fastad.betainc import betainc, betaincc  # noqa: E402  (after the ops it builds on)


def traced(*xs):
    """Does any of xs hold a traced value (arrays of traced scalars included)?"""
    for x in xs:
        if type(x) is Traced or type(x) is TracedArray:
            return True
        if isinstance(x, (list, tuple)) and traced(*x):
            return True
        if isinstance(x, np.ndarray) and x.dtype == object and traced(*x.ravel().tolist()):
            return True
    return False


def _scipy():
    import scipy.special
    return scipy.special


def polygamma(n, x):
    """scipy.special.polygamma: the n-th derivative of digamma (n an integer >= 0, not
    traced); d/dx polygamma(n, x) = polygamma(n + 1, x)."""
    if traced(n):
        raise TypeError("fastad: polygamma's order n must be a plain integer, not a traced "
                        "value (its derivative in n does not exist)")
    if not traced(x):
        return _scipy().polygamma(n, x)
    return apply_op(_POLYGAMMA, 2, (np.asarray(n, dtype=float) if np.ndim(n) else float(n), x),
                    "polygamma")


def betaln(a, b):
    """scipy.special.betaln: log|B(a, b)| = gammaln(a) + gammaln(b) - gammaln(a + b)."""
    if not traced(a, b):
        return _scipy().betaln(a, b)
    return gammaln(a) + gammaln(b) - gammaln(a + b)


def multigammaln(a, d):
    """scipy.special.multigammaln: log of the multivariate gamma function of dimension d
    (a plain int): d(d-1)/4 log(pi) + sum_j gammaln(a - j/2), j < d."""
    if not traced(a):
        return _scipy().multigammaln(a, d)
    d = int(d)
    out = d * (d - 1) / 4.0 * math.log(math.pi)
    for j in range(d):
        out = out + gammaln(a - 0.5 * j)
    return out


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """scipy.special.logsumexp: log(sum(b * exp(a))) along axis, shifted by the maximum
    (held constant for differentiation, so the shift costs no derivative records).

    With return_sign, returns (log|s|, sign(s)) like scipy.  A slice whose entries are all
    -inf gives NaN here where scipy gives -inf (the shift is not guarded)."""
    if not traced(a, b):
        return _scipy().logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
    m = stop_gradient(np.max(a, axis=axis, keepdims=True))
    e = np.exp(a - m)
    if b is not None:
        e = b * e
    s = np.sum(e, axis=axis, keepdims=True)
    sign = None
    if return_sign:
        sign = np.sign(s)
        s = np.abs(s)
    out = np.log(s) + m
    if not keepdims:
        ndim = len(np.broadcast_shapes(np.shape(a), np.shape(b) if b is not None else ()))
        out = _squeeze(out, axis, ndim)
        if sign is not None:
            sign = _squeeze(sign, axis, ndim)
    return (out, sign) if return_sign else out


def _squeeze(x, axis, ndim):
    """x without the reduced axes (kept by keepdims=True above)."""
    if type(x) is not TracedArray:
        return x
    if axis is None:
        return x.reshape(())
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return np.squeeze(x, axis=tuple(ax % ndim for ax in axes)) if ndim else x


def softmax(x, axis=None):
    """scipy.special.softmax: exp(x) / sum(exp(x)) along axis (None: all elements)."""
    if not traced(x):
        return _scipy().softmax(x, axis=axis)
    e = np.exp(x - stop_gradient(np.max(x, axis=axis, keepdims=True)))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=None):
    """scipy.special.log_softmax: x - logsumexp(x) along axis."""
    if not traced(x):
        return _scipy().log_softmax(x, axis=axis)
    return x - logsumexp(x, axis=axis, keepdims=True)
