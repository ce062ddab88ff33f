"""Independent numpy references for tests/unit/test_numpy.py (nothing here imports fastad).

* UNARY / BINARY: every elementwise function of fastad.SUPPORTED with its value (plain
  numpy / scipy.special) and a hand-written derivative (the textbook formula), plus a
  domain to sample from, away from kinks and singularities.  The table itself is
  cross-checked against central differences in test_numpy.py, so the expected numbers
  do not rest on these formulas only.
* unbroadcast: the adjoint of numpy broadcasting (sum over broadcast axes).
* linear_grad: the exact gradient of  sum(w * L(x))  for a linear map L given as plain
  numpy code, built column by column from L applied to the unit vectors (every entry is a
  sum of products of exact numbers, so it is exact up to the rounding of those sums).
  Shape functions, slicing, indexing, matmul/einsum in one operand, cumsum, trace, diag
  are all linear maps.
* central_diff: central finite differences of a plain numpy function.
* hand-written gradients: prod (with zeros), max/min (ties split equally), var/std,
  norms, Rosenbrock, the MLP backprop.
"""
import math

import numpy as np
import scipy.special as sp

LN2 = math.log(2.0)
LN10 = math.log(10.0)


# ----------------------------------------------------------------------------- elementwise
# name -> (f, f', (lo, hi)) ; f' is the hand-written derivative
UNARY = {
    "negative": (np.negative, lambda x: -np.ones_like(x), (-2.0, 2.0)),
    "square": (np.square, lambda x: 2.0 * x, (-2.0, 2.0)),
    "sqrt": (np.sqrt, lambda x: 0.5 / np.sqrt(x), (0.2, 3.0)),
    "cbrt": (np.cbrt, lambda x: 1.0 / (3.0 * np.cbrt(x) ** 2), (0.2, 3.0)),
    "reciprocal": (np.reciprocal, lambda x: -1.0 / x ** 2, (0.3, 3.0)),
    "exp": (np.exp, np.exp, (-2.0, 2.0)),
    "exp2": (np.exp2, lambda x: LN2 * np.exp2(x), (-2.0, 2.0)),
    "expm1": (np.expm1, np.exp, (-2.0, 2.0)),
    "log": (np.log, lambda x: 1.0 / x, (0.2, 3.0)),
    "log2": (np.log2, lambda x: 1.0 / (x * LN2), (0.2, 3.0)),
    "log10": (np.log10, lambda x: 1.0 / (x * LN10), (0.2, 3.0)),
    "log1p": (np.log1p, lambda x: 1.0 / (1.0 + x), (-0.5, 2.0)),
    "sin": (np.sin, np.cos, (-2.0, 2.0)),
    "cos": (np.cos, lambda x: -np.sin(x), (-2.0, 2.0)),
    "tan": (np.tan, lambda x: 1.0 / np.cos(x) ** 2, (-1.2, 1.2)),
    "arcsin": (np.arcsin, lambda x: 1.0 / np.sqrt(1.0 - x * x), (-0.9, 0.9)),
    "arccos": (np.arccos, lambda x: -1.0 / np.sqrt(1.0 - x * x), (-0.9, 0.9)),
    "arctan": (np.arctan, lambda x: 1.0 / (1.0 + x * x), (-2.0, 2.0)),
    "sinh": (np.sinh, np.cosh, (-2.0, 2.0)),
    "cosh": (np.cosh, np.sinh, (-2.0, 2.0)),
    "tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2, (-2.0, 2.0)),
    "arcsinh": (np.arcsinh, lambda x: 1.0 / np.sqrt(x * x + 1.0), (-2.0, 2.0)),
    "arccosh": (np.arccosh, lambda x: 1.0 / np.sqrt(x * x - 1.0), (1.2, 3.0)),
    "arctanh": (np.arctanh, lambda x: 1.0 / (1.0 - x * x), (-0.9, 0.9)),
    "absolute": (np.absolute, np.sign, (-2.0, 2.0)),      # kink at 0: never sampled exactly
    "sign": (np.sign, np.zeros_like, (-2.0, 2.0)),
    "floor": (np.floor, np.zeros_like, (-2.0, 2.0)),
    "ceil": (np.ceil, np.zeros_like, (-2.0, 2.0)),
    "rint": (np.rint, np.zeros_like, (-2.0, 2.0)),
    "trunc": (np.trunc, np.zeros_like, (-2.0, 2.0)),
    "erf": (sp.erf, lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-x * x), (-2.0, 2.0)),
    "erfc": (sp.erfc, lambda x: -2.0 / math.sqrt(math.pi) * np.exp(-x * x), (-2.0, 2.0)),
    "expit": (sp.expit, lambda x: sp.expit(x) * sp.expit(-x), (-3.0, 3.0)),
    "logit": (sp.logit, lambda x: 1.0 / (x * (1.0 - x)), (0.1, 0.9)),
    # scipy.special: the derivatives through other scipy.special functions
    "gammaln": (sp.gammaln, sp.digamma, (0.2, 3.0)),
    "digamma": (sp.digamma, lambda x: sp.polygamma(1, x), (0.2, 3.0)),
    "erfinv": (sp.erfinv, lambda x: math.sqrt(math.pi) / 2.0 * np.exp(sp.erfinv(x) ** 2),
               (-0.9, 0.9)),
    "ndtr": (sp.ndtr, lambda x: np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi), (-2.0, 2.0)),
    "log_ndtr": (sp.log_ndtr,
                 lambda x: np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) / sp.ndtr(x),
                 (-2.0, 2.0)),
}


def _hyp(a, b):
    return np.hypot(a, b)


# name -> (f, df/da, df/db, (lo, hi) for both operands)
BINARY = {
    "add": (np.add, lambda a, b: np.ones_like(a + b), lambda a, b: np.ones_like(a + b),
            (-2.0, 2.0)),
    "subtract": (np.subtract, lambda a, b: np.ones_like(a + b),
                 lambda a, b: -np.ones_like(a + b), (-2.0, 2.0)),
    "multiply": (np.multiply, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b, (-2.0, 2.0)),
    "divide": (np.divide, lambda a, b: 1.0 / b + 0 * a, lambda a, b: -a / b ** 2,
               (0.3, 2.0)),
    "power": (np.power, lambda a, b: b * a ** (b - 1.0), lambda a, b: a ** b * np.log(a),
              (0.3, 2.0)),
    "arctan2": (np.arctan2, lambda a, b: b / (a * a + b * b), lambda a, b: -a / (a * a + b * b),
                (-2.0, 2.0)),
    "hypot": (np.hypot, lambda a, b: a / _hyp(a, b), lambda a, b: b / _hyp(a, b), (-2.0, 2.0)),
    # a tie gives 0.5 to each side (JAX's convention, the API contract's)
    "maximum": (np.maximum, lambda a, b: (a > b) + 0.5 * (a == b),
                lambda a, b: (b > a) + 0.5 * (a == b), (-2.0, 2.0)),
    "minimum": (np.minimum, lambda a, b: (a < b) + 0.5 * (a == b),
                lambda a, b: (b < a) + 0.5 * (a == b), (-2.0, 2.0)),
    "fmax": (np.fmax, lambda a, b: (a > b) + 0.5 * (a == b),
             lambda a, b: (b > a) + 0.5 * (a == b), (-2.0, 2.0)),
    "fmin": (np.fmin, lambda a, b: (a < b) + 0.5 * (a == b),
             lambda a, b: (b < a) + 0.5 * (a == b), (-2.0, 2.0)),
    "logaddexp": (np.logaddexp, lambda a, b: 1.0 / (1.0 + np.exp(b - a)),
                  lambda a, b: 1.0 / (1.0 + np.exp(a - b)), (-2.0, 2.0)),
    # piecewise: d/db is minus the integer quotient; sampled (seeded) points are away from
    # the jumps at integer a / b
    "remainder": (np.remainder, lambda a, b: np.ones_like(a + b),
                  lambda a, b: -np.floor_divide(a, b), (0.3, 2.0)),
    "fmod": (np.fmod, lambda a, b: np.ones_like(a + b), lambda a, b: -np.trunc(a / b),
             (0.3, 2.0)),
    "floor_divide": (np.floor_divide, lambda a, b: np.zeros_like(a + b),
                     lambda a, b: np.zeros_like(a + b), (0.3, 2.0)),
    "xlogy": (sp.xlogy, lambda a, b: np.log(b) + 0 * a, lambda a, b: a / b, (0.3, 2.0)),
    "xlog1py": (sp.xlog1py, lambda a, b: np.log1p(b) + 0 * a, lambda a, b: a / (1.0 + b),
                (0.3, 2.0)),
    # regularized incomplete gamma: d/dx closed form, d/da from mpmath's 2F2 (below)
    "gammainc": (sp.gammainc, lambda a, b: _gammainc_da(a, b),
                 lambda a, b: np.exp((a - 1.0) * np.log(b) - b - sp.gammaln(a)), (0.5, 3.0)),
    "gammaincc": (sp.gammaincc, lambda a, b: -_gammainc_da(a, b),
                  lambda a, b: -np.exp((a - 1.0) * np.log(b) - b - sp.gammaln(a)), (0.5, 3.0)),
}


def _gammainc_da(a, x):
    """dP(a, x)/da at 30 digits: (gamma(a, x) log x - x^a/a^2 2F2(a, a; a+1, a+1; -x)) /
    Gamma(a) - P psi(a) (DLMF 8.2.1 differentiated under the integral)."""
    import mpmath as mp

    def one(a, x):
        with mp.workdps(30):            # local precision: other tests set mp.dps themselves
            a, x = mp.mpf(float(a)), mp.mpf(float(x))
            low = mp.gammainc(a, 0, x)
            d = (low * mp.log(x) - x ** a / a ** 2 * mp.hyp2f2(a, a, a + 1, a + 1, -x)) \
                / mp.gamma(a)
            return float(d - low / mp.gamma(a) * mp.digamma(a))
    return np.vectorize(one, otypes=[float])(a, x)


def sample(rng, shape, lo_hi):
    """Uniform samples in (lo, hi), nudged away from the integers and half-integers (kinks
    of abs/sign/floor/ceil/rint) by at least 1e-3."""
    lo, hi = lo_hi
    x = rng.uniform(lo, hi, size=shape)
    frac = np.abs(x * 2.0 - np.round(x * 2.0))
    x = np.where(frac < 2e-3, x + 3e-3, x)
    return np.asarray(x, dtype=np.float64)


def unbroadcast(g, shape):
    """Sum g over the axes numpy broadcast to reach g.shape from `shape` (its adjoint)."""
    g = np.asarray(g, dtype=np.float64)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g.reshape(shape)


# ----------------------------------------------------------------------------- generic

def linear_grad(L, x, w):
    """d/dx sum(w * L(x)) for a linear or affine L (plain numpy), column by column:
    column k of L's Jacobian is L(e_k) - L(0)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros(x.shape)
    L0 = np.asarray(L(np.zeros(x.shape)), dtype=np.float64)
    for k in range(x.size):
        e = np.zeros(x.shape)
        e.flat[k] = 1.0
        g.flat[k] = np.sum(np.asarray(w) * (np.asarray(L(e), dtype=np.float64) - L0))
    return g


def central_diff(f, x, h_rel=1e-6):
    """Central differences of the scalar numpy function f at array x.

    Step h = h_rel * max(1, |x_k|); truncation error O(h^2 f''') and rounding error
    O(eps |f| / h); with h_rel = 1e-6 and f, f''' of order 1 both are below ~1e-10, so
    callers compare with rtol/atol around 1e-6 (leaving a wide margin)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros(x.shape)
    for k in range(x.size):
        h = h_rel * max(1.0, abs(x.flat[k]))
        xp = x.copy()
        xm = x.copy()
        xp.flat[k] += h
        xm.flat[k] -= h
        g.flat[k] = (f(xp) - f(xm)) / (xp.flat[k] - xm.flat[k])
    return g


def axes_of(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def expand(g, axis, ndim):
    """g (a reduction's output without keepdims) with the reduced axes put back as 1."""
    g = np.asarray(g, dtype=np.float64)
    for a in axes_of(axis, ndim):
        g = np.expand_dims(g, a)
    return g


# ----------------------------------------------------------------------------- reductions
# grad of sum(w * red(x, axis, keepdims)); w has red's output shape

def grad_sum(x, axis, keepdims, w):
    wk = np.asarray(w) if keepdims else expand(w, axis, x.ndim)
    return np.broadcast_to(wk, x.shape).astype(np.float64)


def grad_mean(x, axis, keepdims, w):
    n = math.prod(x.shape[a] for a in axes_of(axis, x.ndim))
    return grad_sum(x, axis, keepdims, w) / n


def grad_prod(x, axis, keepdims, w):
    """Product of the other elements of each reduced group: by explicit deletion, so zeros
    (one, two, ...) are handled without dividing."""
    axes = axes_of(axis, x.ndim)
    rest = [a for a in range(x.ndim) if a not in axes]
    xt = np.transpose(x, rest + list(axes))
    lead = xt.shape[:len(rest)]
    flat = xt.reshape(lead + (-1,))
    g = np.empty(flat.shape)
    for i in np.ndindex(*lead):
        row = flat[i]
        for k in range(row.size):
            g[i + (k,)] = np.prod(np.delete(row, k))
    g = g.reshape(xt.shape)
    g = np.transpose(g, np.argsort(rest + list(axes)))
    return g * grad_sum(x, axis, keepdims, w)


def grad_extreme(x, axis, keepdims, w, which):
    """max/min: the adjoint is split equally among the tied extreme elements (JAX)."""
    fn = np.max if which == "max" else np.min
    m = fn(x, axis=axes_of(axis, x.ndim), keepdims=True)
    mask = (x == m).astype(np.float64)
    count = mask.sum(axis=axes_of(axis, x.ndim), keepdims=True)
    return mask / count * grad_sum(x, axis, keepdims, w)


def grad_var(x, axis, keepdims, w, ddof=0):
    axes = axes_of(axis, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    mu = x.mean(axis=axes, keepdims=True)
    return 2.0 * (x - mu) / (n - ddof) * grad_sum(x, axis, keepdims, w)


def grad_std(x, axis, keepdims, w, ddof=0):
    s = np.std(x, axis=axes_of(axis, x.ndim), ddof=ddof, keepdims=True)
    wk = np.asarray(w) if keepdims else expand(w, axis, x.ndim)
    return grad_var(x, axis, True, wk / (2.0 * s), ddof)


def grad_cumsum(x, axis, w):
    """Adjoint of cumsum: reversed cumulative sum of w."""
    if axis is None:
        return np.cumsum(np.asarray(w)[::-1])[::-1].reshape(x.shape)
    return np.flip(np.cumsum(np.flip(w, axis), axis=axis), axis)


# ----------------------------------------------------------------------------- programs

from reference import rosen, rosen_grad  # noqa: E402,F401  (the shared problem)


def mlp_loss(W1, b1, W2, b2, X, y):
    h = np.tanh(X @ W1 + b1)
    return np.mean((h @ W2 + b2 - y) ** 2)


def mlp_backprop(W1, b1, W2, b2, X, y):
    """Hand-written backprop of mlp_loss: returns (dW1, db1, dW2, db2)."""
    z = X @ W1 + b1
    h = np.tanh(z)
    r = h @ W2 + b2 - y
    dout = 2.0 * r / r.size
    if W2.ndim == 1:                     # scalar output per sample
        dW2 = h.T @ dout
        db2 = np.sum(dout)
        dh = np.outer(dout, W2)
    else:
        dW2 = h.T @ dout
        db2 = dout.sum(axis=0)
        dh = dout @ W2.T
    dz = dh * (1.0 - h ** 2)
    return X.T @ dz, dz.sum(axis=0), dW2, db2
