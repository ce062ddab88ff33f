"""Independent high-precision reference for the fastad test suite.

Nothing in this module imports fastad.  It provides

* ``Dual``: a forward-mode dual number over mpmath (``mp.dps = 50``) carrying a
  *vector* of tangents, so that one evaluation gives a whole gradient.  Every
  elementwise function of the fastad API contract is implemented with the
  same kink conventions as the contract (abs'(0) = 1, max/min ties split 0.5,
  sqrt'(0) = inf, d/dy x**y = 0 at x == 0, d/dx x**0 = 0, zero derivative for
  sign/floor/ceil/rint, fmax/fmin ignore a NaN operand) and the same
  "absolute zero" product (a zero tangent times an inf/NaN partial is 0).

* ``MP``: a tiny namespace object (``MP.sin``, ``MP.arctan2``, ...).  Test
  programs are written as factories ``make(ns)`` returning a Python function
  that calls ``ns.sin`` etc.; the very same program text runs with
  ``ns = numpy_namespace()`` (numpy ufuncs, dispatching to fastad tracers via
  ``__array_ufunc__``), with ``ns = fastad`` (``fd.sin`` ...), and with
  ``ns = MP`` (mpmath duals).

* Rigorous-ish error bounds.  Besides the value ``v`` and the tangents ``d``
  every Dual carries first-order rounding-error bounds for a float64
  evaluation of the same program, in units of the machine epsilon:
  ``E`` for the value and ``F[k]`` for tangent ``k``:

      E_out = |out| + sum_i |p_i| E_i
      F_out = |d_out| + sum_i ( S_i |d_i| + |p_i| F_i + |d_i| sum_j |dp_i/dv_j| E_j )

  where ``p_i`` are the partial derivatives, ``S_i >= |p_i|`` is the scale of
  the absolute error of a sane float64 formula for ``p_i`` (e.g. 1 for
  tanh' = 1 - tanh^2, whose subtraction loses digits), and the second
  derivatives ``dp_i/dv_j`` (sensitivity of a partial to an error in an
  intermediate value) are obtained by a 50-digit central difference.  Inputs
  and program constants are exact binary64 numbers, so their E and F are 0.
  ``assert_close`` then accepts ``|got - ref| <= K * eps * bound`` with
  K = 64: each libm/numpy elementary function is accurate to a few ulp, and
  K = 64 leaves room for up to ~16 ulp per operation plus second-order
  terms, while a wrong derivative rule is off by O(1) relative.

* Kink safety.  Operations with a kink or a jump (abs, sign, floor, ceil,
  rint, maximum, minimum, fmax, fmin, cbrt at 0, hypot at the origin,
  arctan2 on its branch cut, and comparisons) check that the float64
  evaluation cannot land on the other side of the kink: the distance to the
  kink must exceed 1000 * eps * (value error bound), or the operands must be
  exact (E == 0, then float64 and the reference decide identically).  The
  flag is read with ``kink_check()``; property tests ``assume`` it.

* ``central_diff``: a 50-digit central difference used to cross-check the
  reference's own derivative table.
"""

from __future__ import annotations

import contextlib
import math
import types

import mpmath
import numpy as np
from mpmath import mp, mpf

mp.dps = 50

EPS = 2.0 ** -52          # float64 machine epsilon (spacing of doubles at 1.0)
TINY = 4 * 2.0 ** -1074   # a few subnormal ulps: rounding of results near underflow
K_TOL = 64                # allowed multiple of the first-order error bound (see module doc)
KINK_FACTOR = 1000        # a kink is "safe" if farther than KINK_FACTOR*eps*E from the value
# Underflow (Higham, Accuracy and Stability of Numerical Algorithms, eq. 2.8: fl(x op y) =
# (x op y)(1 + delta) + eta): a result below the normal range is rounded to the subnormal
# grid, an absolute error up to one subnormal spacing 2^-1074 whatever its relative size
# (a 1e-313 result keeps ~11 digits).  In eps units that is ETA; apply_op adds it where a
# value, a partial or a tangent term falls below REALMIN, and the partials downstream carry
# it like every other error (a subnormal exp() times 30 is off by up to 30 spacings).
REALMIN = mpf(2) ** -1022
ETA = mpf(2) ** -1022      # 2^-1074 / eps

INF = mp.inf
NAN = mp.nan


# --------------------------------------------------------------------------
# helpers on mpf values
# --------------------------------------------------------------------------

def to_mp(c):
    """Exact conversion of a Python/numpy number to mpf (floats are binary, so exact)."""
    if isinstance(c, mpf):
        return c
    if isinstance(c, (bool, np.bool_)):
        return mpf(int(c))
    if isinstance(c, (int, np.integer)):
        return mpf(int(c))
    if isinstance(c, (float, np.floating)):
        return mpf(float(c))
    raise TypeError(f"reference: cannot convert {type(c).__name__} to mpf")


def _isnan(x):
    return mp.isnan(x)


def _finite_abs(x):
    """|x| with NaN mapped to inf (a NaN sensitivity means 'unbounded')."""
    if _isnan(x):
        return INF
    return abs(x)


def _sign(a):
    if a > 0:
        return mpf(1)
    if a < 0:
        return mpf(-1)
    return mpf(0)


def _real_cbrt(a):
    if a == 0:
        return mpf(0)
    return _sign(a) * mp.cbrt(abs(a))


def _pow(a, b):
    """Real power with numpy semantics (NaN for a negative base and non-integer exponent)."""
    if _isnan(a) or _isnan(b):
        return NAN
    if a == 0:
        if b > 0:
            return mpf(0)
        if b == 0:
            return mpf(1)
        return INF
    if a < 0:
        if b == mp.floor(b):
            r = mp.power(-a, b)
            return r if int(b) % 2 == 0 else -r
        return NAN
    return mp.power(a, b)


def _rint(a):
    """Round half to even, as numpy.rint."""
    f = mp.floor(a)
    r = a - f
    if r > mpf(0.5):
        return f + 1
    if r < mpf(0.5):
        return f
    return f if int(f) % 2 == 0 else f + 1


def _expit(a):
    return 1 / (1 + mp.exp(-a))


def _safe_div(num, den):
    if den == 0:
        if num == 0:
            return NAN
        return INF if num > 0 else -INF
    return num / den


# --------------------------------------------------------------------------
# the op table: value, partial derivatives, partial error scales, kink distance
# --------------------------------------------------------------------------

class Op:
    def __init__(self, name, arity, value, partials, scales=None, kink=None, strict=False):
        self.name = name
        self.arity = arity
        self.value = value
        self.partials = partials
        self.scales = scales
        self.kink = kink
        # strict: being exactly at the kink is also rejected, because the contract does
        # not fix the derivative there (cbrt'(0), hypot/arctan2 at the origin), or
        # because float64 signed zeros could decide differently (abs'(-0.0), atan2(-0.0, x<0))
        self.strict = strict


OPS: dict[str, Op] = {}


def _op(name, arity, value, partials, scales=None, kink=None, strict=False):
    OPS[name] = Op(name, arity, value, partials, scales, kink, strict)


# binary arithmetic
_op("add", 2, lambda a, b: a + b, lambda a, b: (mpf(1), mpf(1)))
_op("subtract", 2, lambda a, b: a - b, lambda a, b: (mpf(1), mpf(-1)))
_op("multiply", 2, lambda a, b: a * b, lambda a, b: (b, a))
_op("divide", 2, lambda a, b: _safe_div(a, b),
    lambda a, b: (_safe_div(mpf(1), b), -_safe_div(a, b * b)))


def _pow_partials(a, b):
    # d/da a**b = b * a**(b-1), but 0 when b == 0 (contract: d/dx x**0 is 0)
    pa = mpf(0) if b == 0 else b * _pow(a, b - 1)
    # d/db a**b = log(a) * a**b, but 0 when a == 0 (contract: d/dy x**y at x == 0 is 0)
    if a == 0:
        pb = mpf(0)
    elif a < 0:
        pb = NAN
    else:
        pb = mp.log(a) * _pow(a, b)
    return pa, pb


def _pow_scales(a, b):
    pa, pb = _pow_partials(a, b)
    sa = _finite_abs(pa)
    if a > 0 and b != 0:
        # a**(b-1) with b-1 rounded to double: relative error |log(a)|*|b-1|*eps
        sa = sa * (1 + abs(mp.log(a)) * abs(b - 1))
    return sa, _finite_abs(pb)


_op("power", 2, _pow, _pow_partials, _pow_scales)

# unary arithmetic
_op("negative", 1, lambda a: -a, lambda a: (mpf(-1),))
_op("positive", 1, lambda a: a, lambda a: (mpf(1),))
_op("square", 1, lambda a: a * a, lambda a: (2 * a,))
_op("reciprocal", 1, lambda a: _safe_div(mpf(1), a), lambda a: (-_safe_div(mpf(1), a * a),))
_op("absolute", 1, lambda a: abs(a),
    lambda a: (mpf(1) if a >= 0 else mpf(-1),),          # abs'(0) = 1
    kink=lambda a: abs(a), strict=True)
_op("sqrt", 1, lambda a: mp.sqrt(a) if a >= 0 else NAN,
    lambda a: (INF if a == 0 else (1 / (2 * mp.sqrt(a)) if a > 0 else NAN),))   # sqrt'(0) = inf
_op("cbrt", 1, _real_cbrt,
    lambda a: (INF if a == 0 else 1 / (3 * _real_cbrt(a) ** 2),),
    kink=lambda a: abs(a), strict=True)

# exponentials and logarithms
_op("exp", 1, lambda a: mp.exp(a), lambda a: (mp.exp(a),))
_op("exp2", 1, lambda a: mp.power(2, a), lambda a: (mp.log(2) * mp.power(2, a),))
_op("expm1", 1, lambda a: mp.expm1(a), lambda a: (mp.exp(a),))
_op("log", 1, lambda a: mp.log(a), lambda a: (1 / a,))
_op("log2", 1, lambda a: mp.log(a) / mp.log(2), lambda a: (1 / (a * mp.log(2)),))
_op("log10", 1, lambda a: mp.log10(a), lambda a: (1 / (a * mp.log(10)),))
_op("log1p", 1, lambda a: mp.log1p(a), lambda a: (1 / (1 + a),))

# trigonometric
_op("sin", 1, lambda a: mp.sin(a), lambda a: (mp.cos(a),))
_op("cos", 1, lambda a: mp.cos(a), lambda a: (-mp.sin(a),))
_op("tan", 1, lambda a: mp.tan(a), lambda a: (1 / mp.cos(a) ** 2,))


def _one_minus_sq_scale(a):
    # 1/sqrt(1 - a*a) or 1/(1 - a*a): a*a is rounded (abs. error eps*a^2), then
    # the subtraction amplifies it by a^2/|1 - a^2|
    return 1 + a * a / abs(1 - a * a)


_op("arcsin", 1, lambda a: mp.asin(a), lambda a: (1 / mp.sqrt(1 - a * a),),
    lambda a: (_one_minus_sq_scale(a) / mp.sqrt(1 - a * a),))
_op("arccos", 1, lambda a: mp.acos(a), lambda a: (-1 / mp.sqrt(1 - a * a),),
    lambda a: (_one_minus_sq_scale(a) / mp.sqrt(1 - a * a),))
_op("arctan", 1, lambda a: mp.atan(a), lambda a: (1 / (1 + a * a),))


def _atan2_partials(y, x):
    r2 = x * x + y * y
    if r2 == 0:
        return NAN, NAN
    return x / r2, -y / r2


_op("arctan2", 2, lambda y, x: mp.atan2(y, x), _atan2_partials,
    # branch cut: the value jumps by 2*pi when y crosses 0 with x < 0
    kink=lambda y, x: abs(y) if x <= 0 else INF, strict=True)

# hyperbolic
_op("sinh", 1, lambda a: mp.sinh(a), lambda a: (mp.cosh(a),))
_op("cosh", 1, lambda a: mp.cosh(a), lambda a: (mp.sinh(a),))
_op("tanh", 1, lambda a: mp.tanh(a), lambda a: (1 / mp.cosh(a) ** 2,),
    # tanh' is usually computed as 1 - tanh(a)**2: absolute error ~eps regardless of size
    lambda a: (1 / mp.cosh(a) ** 2 + mp.tanh(a) ** 2,))
_op("arcsinh", 1, lambda a: mp.asinh(a), lambda a: (1 / mp.sqrt(a * a + 1),))
_op("arccosh", 1, lambda a: mp.acosh(a), lambda a: (1 / mp.sqrt(a * a - 1),),
    lambda a: ((1 + a * a / abs(a * a - 1)) / mp.sqrt(a * a - 1),))
_op("arctanh", 1, lambda a: mp.atanh(a), lambda a: (1 / (1 - a * a),),
    lambda a: (_one_minus_sq_scale(a) / abs(1 - a * a),))


def _hypot_partials(a, b):
    h = mp.hypot(a, b)
    if h == 0:
        return NAN, NAN
    return a / h, b / h


_op("hypot", 2, lambda a, b: mp.hypot(a, b), _hypot_partials,
    kink=lambda a, b: abs(a) + abs(b), strict=True)


# maximum / minimum / fmax / fmin: ties split 0.5 / 0.5
def _max_partials(a, b):
    if _isnan(a) or _isnan(b):
        return NAN, NAN
    if a > b:
        return mpf(1), mpf(0)
    if a < b:
        return mpf(0), mpf(1)
    return mpf(0.5), mpf(0.5)


def _min_partials(a, b):
    if _isnan(a) or _isnan(b):
        return NAN, NAN
    if a < b:
        return mpf(1), mpf(0)
    if a > b:
        return mpf(0), mpf(1)
    return mpf(0.5), mpf(0.5)


def _fmax_value(a, b):
    if _isnan(a):
        return b
    if _isnan(b):
        return a
    return max(a, b)


def _fmin_value(a, b):
    if _isnan(a):
        return b
    if _isnan(b):
        return a
    return min(a, b)


def _fnan_partials(inner):
    def partials(a, b):
        if _isnan(a) and _isnan(b):
            return NAN, NAN
        if _isnan(a):
            return mpf(0), mpf(1)        # the NaN operand is ignored
        if _isnan(b):
            return mpf(1), mpf(0)
        return inner(a, b)
    return partials


def _max_value(a, b):
    if _isnan(a) or _isnan(b):
        return NAN
    return max(a, b)


def _min_value(a, b):
    if _isnan(a) or _isnan(b):
        return NAN
    return min(a, b)


def _tie_distance(a, b):
    return abs(a - b)


_op("maximum", 2, _max_value, _max_partials, kink=_tie_distance)
_op("minimum", 2, _min_value, _min_partials, kink=_tie_distance)
_op("fmax", 2, _fmax_value, _fnan_partials(_max_partials), kink=_tie_distance)
_op("fmin", 2, _fmin_value, _fnan_partials(_min_partials), kink=_tie_distance)


# piecewise constant: zero derivative
def _dist_to_int(a):
    return abs(a - mp.nint(a))


def _dist_to_half(a):
    return abs(a - mp.floor(a) - mpf(0.5))


_op("sign", 1, _sign, lambda a: (mpf(0),), kink=lambda a: abs(a))
_op("floor", 1, lambda a: mp.floor(a), lambda a: (mpf(0),), kink=_dist_to_int)
_op("ceil", 1, lambda a: mp.ceil(a), lambda a: (mpf(0),), kink=_dist_to_int)
_op("rint", 1, _rint, lambda a: (mpf(0),), kink=_dist_to_half)

# scipy.special
_TWO_OVER_SQRT_PI = 2 / mp.sqrt(mp.pi)
_op("erf", 1, lambda a: mp.erf(a), lambda a: (_TWO_OVER_SQRT_PI * mp.exp(-a * a),),
    # exp(-a*a) with a*a rounded: relative error a^2 * eps
    lambda a: (_TWO_OVER_SQRT_PI * mp.exp(-a * a) * (1 + a * a),))
_op("erfc", 1, lambda a: mp.erfc(a), lambda a: (-_TWO_OVER_SQRT_PI * mp.exp(-a * a),),
    lambda a: (_TWO_OVER_SQRT_PI * mp.exp(-a * a) * (1 + a * a),))
_op("expit", 1, _expit, lambda a: (_expit(a) * (1 - _expit(a)),),
    # s*(1-s): 1-s loses digits for large a, absolute error ~ eps*s
    lambda a: (_expit(a) * (1 - _expit(a)) + _expit(a) ** 2,))
_op("logit", 1, lambda a: mp.log(a / (1 - a)), lambda a: (1 / (a * (1 - a)),))

ALIASES = {"abs": "absolute", "round": "rint", "pow": "power"}

#: names of every elementwise function of the API contract (numpy spelling)
CONTRACT_UNARY = [
    "negative", "square", "sqrt", "cbrt", "exp", "exp2", "expm1", "log", "log2",
    "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh",
    "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "absolute", "reciprocal",
    "sign", "floor", "ceil", "rint",
]
CONTRACT_BINARY = [
    "add", "subtract", "multiply", "divide", "power", "arctan2", "hypot",
    "maximum", "minimum", "fmax", "fmin",
]
SCIPY_UNARY = ["erf", "erfc", "expit", "logit"]


# --------------------------------------------------------------------------
# kink bookkeeping
# --------------------------------------------------------------------------

class _KinkState:
    ok = True
    worst = None


_KINK = _KinkState()


@contextlib.contextmanager
def kink_check():
    """Context manager yielding a state object; ``state.ok`` is False after the
    block if any kink/comparison was too close for float64 to decide like the reference."""
    saved_ok, saved_worst = _KINK.ok, _KINK.worst
    _KINK.ok, _KINK.worst = True, None
    state = types.SimpleNamespace(ok=True, worst=None)
    try:
        yield state
    finally:
        state.ok, state.worst = _KINK.ok, _KINK.worst
        _KINK.ok, _KINK.worst = saved_ok, saved_worst


def _record_kink(distance, err_bound, what, strict=False):
    if strict and distance == 0:
        _KINK.ok = False
        _KINK.worst = (what, distance, err_bound)
        return
    if err_bound == 0:
        return  # exact operands: float64 decides exactly like the reference
    if not (distance > KINK_FACTOR * EPS * err_bound):
        _KINK.ok = False
        _KINK.worst = (what, distance, err_bound)


# --------------------------------------------------------------------------
# the dual number
# --------------------------------------------------------------------------

_ZERO = mpf(0)      # immutable, so safe as a shared default


class Dual:
    """value v, tangent vector d (None = all zero), error bounds E and F (eps units)."""

    __slots__ = ("v", "d", "E", "F")
    __array_ufunc__ = None      # numpy scalars defer to our reflected operators

    def __init__(self, v, d=None, E=_ZERO, F=None):
        self.v = v
        self.d = d
        self.E = E
        self.F = F

    def __repr__(self):
        return f"Dual({mpmath.nstr(self.v, 20)}, d={self.d})"

    # arithmetic
    def __add__(self, o): return apply_op("add", self, o)
    def __radd__(self, o): return apply_op("add", o, self)
    def __sub__(self, o): return apply_op("subtract", self, o)
    def __rsub__(self, o): return apply_op("subtract", o, self)
    def __mul__(self, o): return apply_op("multiply", self, o)
    def __rmul__(self, o): return apply_op("multiply", o, self)
    def __truediv__(self, o): return apply_op("divide", self, o)
    def __rtruediv__(self, o): return apply_op("divide", o, self)
    def __pow__(self, o): return apply_op("power", self, o)
    def __rpow__(self, o): return apply_op("power", o, self)
    def __neg__(self): return apply_op("negative", self)
    def __pos__(self): return apply_op("positive", self)
    def __abs__(self): return apply_op("absolute", self)

    # comparisons: plain bools from the values (fastad records guards)
    def _cmp(self, o, fn, name):
        a, b = lift(self), lift(o)
        _record_kink(abs(a.v - b.v), a.E + b.E, name)
        return fn(a.v, b.v)

    def __lt__(self, o): return self._cmp(o, lambda a, b: a < b, "<")
    def __le__(self, o): return self._cmp(o, lambda a, b: a <= b, "<=")
    def __gt__(self, o): return self._cmp(o, lambda a, b: a > b, ">")
    def __ge__(self, o): return self._cmp(o, lambda a, b: a >= b, ">=")
    def __eq__(self, o): return self._cmp(o, lambda a, b: a == b, "==")
    def __ne__(self, o): return self._cmp(o, lambda a, b: a != b, "!=")
    __hash__ = None

    def __bool__(self):
        _record_kink(abs(self.v), self.E, "bool")
        return self.v != 0


def lift(x):
    if isinstance(x, Dual):
        return x
    return Dual(to_mp(x))


def _az(p, d):
    """absolute-zero product: a zero tangent times anything (inf, NaN) is 0"""
    if d == 0:
        return mpf(0)
    return p * d


def _partial_sensitivities(op, vs, Es):
    """H[i][j] = |d p_i / d v_j| by a 50-digit central difference.

    Step h = 1e-20 * (1 + |v_j|): truncation error O(h^2 |p'''|) ~ 1e-40 and
    cancellation error ~ 1e-50/h = 1e-30 relative; only a magnitude is needed."""
    n = len(vs)
    H = [[mpf(0)] * n for _ in range(n)]
    for j in range(n):
        if Es[j] == 0:
            continue
        h = mpf(10) ** -20 * (1 + abs(vs[j]))
        vp = list(vs)
        vm = list(vs)
        vp[j] = vs[j] + h
        vm[j] = vs[j] - h
        try:
            pp = op.partials(*vp)
            pm = op.partials(*vm)
        except (ZeroDivisionError, ValueError):
            for i in range(n):
                H[i][j] = INF
            continue
        for i in range(n):
            diff = pp[i] - pm[i]
            if isinstance(diff, mpmath.mpc) or _isnan(diff):
                H[i][j] = INF
            else:
                H[i][j] = abs(diff) / (2 * h)
    return H


def _underflow(x):
    """ETA when x is nonzero, finite and below the normal range (its float64 rounding is
    absolute there, see ETA), else 0."""
    if isinstance(x, mpf) and mp.isfinite(x) and 0 < abs(x) < REALMIN:
        return ETA
    return mpf(0)


def apply_op(name, *args):
    name = ALIASES.get(name, name)
    op = OPS[name]
    if len(args) != op.arity:
        raise TypeError(f"reference {name} takes {op.arity} arguments")
    xs = [lift(a) for a in args]
    vs = [x.v for x in xs]
    out = op.value(*vs)
    ps = op.partials(*vs)
    if op.scales is not None:
        ss = op.scales(*vs)
    else:
        ss = [_finite_abs(p) for p in ps]
    Es = [x.E for x in xs]
    if op.kink is not None:
        _record_kink(op.kink(*vs), sum(Es), name, op.strict)
    E = _finite_abs(out) + sum((_finite_abs(p) * e for p, e in zip(ps, Es) if e != 0), mpf(0))
    E += _underflow(out)
    width = max((len(x.d) for x in xs if x.d is not None), default=0)
    if width == 0:
        return Dual(out, None, E, None)
    need_H = any(e != 0 for e in Es)
    H = _partial_sensitivities(op, vs, Es) if need_H else None
    d = []
    F = []
    for k in range(width):
        dk = mpf(0)
        fk = mpf(0)
        for i, x in enumerate(xs):
            if x.d is None:
                continue
            di = x.d[k]
            dk += _az(ps[i], di)
            if di != 0:
                fk += ss[i] * abs(di)
                fk += _underflow(ps[i]) * abs(di) + _underflow(_az(ps[i], di))
                if H is not None:
                    fk += abs(di) * sum((H[i][j] * Es[j] for j in range(len(xs)) if Es[j] != 0),
                                        mpf(0))
            if x.F is not None and x.F[k] != 0:
                fk += _finite_abs(ps[i]) * x.F[k]
        fk += _finite_abs(dk) + _underflow(dk)
        d.append(dk)
        F.append(fk)
    return Dual(out, d, E, F)


class _MPNamespace:
    """``ns`` object for the reference: MP.sin(x), MP.arctan2(y, x), ..."""

    def __getattr__(self, name):
        key = ALIASES.get(name, name)
        if key not in OPS:
            raise AttributeError(name)
        return lambda *args: apply_op(key, *args)


MP = _MPNamespace()


def numpy_namespace():
    """``ns`` for fastad through numpy ufuncs (np.sin(t) -> __array_ufunc__),
    plus scipy.special erf/erfc/expit/logit when scipy is importable."""
    d = {name: getattr(np, name) for name in CONTRACT_UNARY + CONTRACT_BINARY}
    d["positive"] = np.positive
    d["abs"] = np.abs
    try:
        import scipy.special as sps
    except ImportError:  # pragma: no cover - scipy is optional
        pass
    else:
        for name in SCIPY_UNARY:
            d[name] = getattr(sps, name)
    return types.SimpleNamespace(**d)


# --------------------------------------------------------------------------
# drivers: value, gradient and jvp of a Python program at high precision
# --------------------------------------------------------------------------

def _leaf(value, d):
    return Dual(to_mp(value), d, mpf(0), None if d is None else [mpf(0)] * len(d))


def _is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiu"


def _lift_args(args, diff, seed_for):
    """Lift args to Duals. ``diff`` = set of positions differentiated;
    ``seed_for(pos, flat_index)`` returns the tangent vector of that scalar."""
    out = []
    for pos, a in enumerate(args):
        if _is_float_array(a):
            flat = [
                _leaf(v, seed_for(pos, k) if pos in diff else None)
                for k, v in enumerate(a.ravel().tolist())
            ]
            arr = np.empty(len(flat), dtype=object)
            arr[:] = flat
            out.append(arr.reshape(a.shape))
        elif isinstance(a, (float, np.floating)) or (pos in diff
                                                      and isinstance(a, (int, np.integer))):
            out.append(_leaf(a, seed_for(pos, 0) if pos in diff else None))
        else:
            out.append(a)   # ints, strings, ... are plain data
    return out


def _size(a):
    return a.size if isinstance(a, np.ndarray) else 1


class RefResult:
    """value, value_bound (eps units), grad (mpf or object ndarray per argnum, tuple if
    argnums was a tuple), grad_bound (same structure)."""

    def __init__(self, value, value_bound, grad, grad_bound, kinks_ok):
        self.value = value
        self.value_bound = value_bound
        self.grad = grad
        self.grad_bound = grad_bound
        self.kinks_ok = kinks_ok


def ref_value_and_grad(fun, args, argnums=0):
    """High-precision value and gradient of ``fun(*args)`` (fun written against MP)."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    offsets = {}
    width = 0
    for pos in nums:
        offsets[pos] = width
        width += _size(args[pos])

    def seed_for(pos, k):
        vec = [mpf(0)] * width
        vec[offsets[pos] + k] = mpf(1)
        return vec

    with kink_check() as st:
        lifted = _lift_args(args, set(nums), seed_for)
        out = lift(fun(*lifted))
    d = out.d if out.d is not None else [mpf(0)] * width
    F = out.F if out.F is not None else [mpf(0)] * width
    grads, bounds = [], []
    for pos in nums:
        o, a = offsets[pos], args[pos]
        if isinstance(a, np.ndarray):
            g = np.empty(a.size, dtype=object)
            b = np.empty(a.size, dtype=object)
            g[:] = d[o:o + a.size]
            b[:] = F[o:o + a.size]
            grads.append(g.reshape(a.shape))
            bounds.append(b.reshape(a.shape))
        else:
            grads.append(d[o])
            bounds.append(F[o])
    if isinstance(argnums, int):
        return RefResult(out.v, out.E, grads[0], bounds[0], st.ok)
    return RefResult(out.v, out.E, tuple(grads), tuple(bounds), st.ok)


def ref_jvp(fun, primals, tangents):
    """High-precision (value, directional derivative) with bounds: returns RefResult whose
    ``grad`` is the directional derivative (an mpf)."""
    tangents = list(tangents)

    def seed_for(pos, k):
        t = tangents[pos]
        if isinstance(t, np.ndarray):
            return [to_mp(t.ravel()[k])]
        return [to_mp(t)]

    diff = {i for i, p in enumerate(primals)
            if isinstance(p, (float, int, np.floating, np.integer, np.ndarray))}
    with kink_check() as st:
        lifted = _lift_args(list(primals), diff, seed_for)
        out = lift(fun(*lifted))
    d = out.d[0] if out.d is not None else mpf(0)
    F = out.F[0] if out.F is not None else mpf(0)
    return RefResult(out.v, out.E, d, F, st.ok)


def ref_value(fun, *args):
    """High-precision value of fun(*args) (no tangents) and its error bound."""
    with kink_check() as st:
        out = lift(fun(*_lift_args(list(args), set(), None)))
    return out.v, out.E, st.ok


# --------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------

def tolerance(bound, k=K_TOL):
    """Absolute tolerance for a float64 result whose first-order error bound is
    ``bound`` eps-units (see module docstring)."""
    return float(k * EPS * bound) + TINY


def close(got, ref, bound, k=K_TOL):
    """True if float ``got`` matches mpf ``ref`` within ``k*eps*bound`` (+TINY).
    inf/NaN references must be matched exactly in kind."""
    got = float(got)
    if _isnan(ref):
        return math.isnan(got)
    if mp.isinf(ref):
        return math.isinf(got) and (got > 0) == (ref > 0)
    if not math.isfinite(got):
        return False
    if mp.isinf(bound) or _isnan(bound):
        return True
    return abs(mpf(got) - ref) <= k * EPS * bound + TINY


def assert_close(got, ref, bound, k=K_TOL, what=""):
    """Elementwise ``close``; ``got``/``ref``/``bound`` scalar or arrays of the same shape."""
    if isinstance(ref, np.ndarray):
        got_a = np.asarray(got, dtype=float)
        assert got_a.shape == ref.shape, f"{what}: shape {got_a.shape} != {ref.shape}"
        bad = [
            (idx, float(got_a[idx]), mpmath.nstr(ref[idx], 17),
             mpmath.nstr(bound[idx] * k * EPS, 3))
            for idx in np.ndindex(ref.shape)
            if not close(got_a[idx], ref[idx], bound[idx], k)
        ]
        assert not bad, (f"{what}: mismatches (index, got, expected, tol): {bad[:5]} "
                         f"({len(bad)} total)")
        return
    assert close(got, ref, bound, k), (
        f"{what}: got {float(got)!r}, expected {mpmath.nstr(ref, 20)} "
        f"(tolerance {mpmath.nstr(k * EPS * bound + TINY, 3)})"
    )


def rel_close(got, expected, rtol):
    """Plain relative comparison of two floats (or float and mpf)."""
    got = float(got)
    expected = mpf(expected) if not isinstance(expected, mpf) else expected
    if _isnan(expected):
        return math.isnan(got)
    if mp.isinf(expected):
        return got == float(expected)
    return abs(mpf(got) - expected) <= rtol * abs(expected) + TINY


# --------------------------------------------------------------------------
# finite differences in mpmath (cross-check of the reference itself)
# --------------------------------------------------------------------------

def central_diff(f, x, h=None, one_sided=False):
    """Central difference (f(x+h) - f(x-h)) / 2h of the mp function ``f`` at ``x``
    (forward difference (f(x+h) - f(x)) / h if ``one_sided``).

    Default step h = 1e-25 * |x| (1e-25 at x = 0).  The truncation error is
    h^2 |f'''| / 6 (h |f''| / 2 one-sided), about 1e-50 (1e-25) relative for functions
    that vary on the scale of x.  The cancellation error is 10^-dps |f| / h relative to
    |f'|; we start at 90 digits and raise the working precision until this estimate is
    below 1e-40 (needed where f' is tiny compared with f/x: arctan(1e150), erf(26)).
    So the result is the exact derivative far beyond double precision."""
    dps = 90
    while True:
        with mp.workdps(dps):
            x_ = to_mp(x)
            h_ = h if h is not None else mpf(10) ** -25 * (abs(x_) if x_ != 0 else 1)
            f0 = f(x_)
            if one_sided:
                d = (f(x_ + h_) - f0) / h_
            else:
                d = (f(x_ + h_) - f(x_ - h_)) / (2 * h_)
            cancel = mpf(10) ** -dps * (abs(f0) + 1) / h_
            if d != 0 and cancel <= mpf(10) ** -40 * abs(d):
                return +d
            if d == 0 and cancel <= mpf(10) ** -300:
                return +d
        if dps > 2000:
            return +d
        dps *= 2


# --------------------------------------------------------------------------------------
# The lecture notes' worked example, f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2) at (1.5, 0.5):
# its evaluation trace v1..v7, the tangents with x-dot = (1, 0) and the adjoints with
# v7-bar = 1, written out from the notes' equations at 50 digits (the v2-bar rule
# corrected: v2-bar = v3-bar * v1 + v4-bar * cos(v2)).  Shared by the tests of the tape,
# of fastad.trace and of the command line.
def _notes_example():
    with mpmath.workdps(50):
        m1, m2 = mpmath.mpf(1.5), mpmath.mpf(0.5)
        V = {1: m1, 2: m2, 3: m1 * m2, 4: mpmath.sin(m2), 5: mpmath.exp(m1 * m2),
             6: m1 * m2 - mpmath.sin(m2), 7: mpmath.exp(m1 * m2) + m1 * m2 - mpmath.sin(m2)}
        VDOT = {1: mpmath.mpf(1), 2: mpmath.mpf(0)}
        VDOT[3] = V[1] * VDOT[2] + VDOT[1] * V[2]
        VDOT[4] = VDOT[2] * mpmath.cos(V[2])
        VDOT[5] = VDOT[3] * mpmath.exp(V[3])
        VDOT[6] = VDOT[3] - VDOT[4]
        VDOT[7] = VDOT[5] + VDOT[6]
        VBAR = {7: mpmath.mpf(1)}
        VBAR[6] = VBAR[7]
        VBAR[5] = VBAR[7]
        VBAR[4] = -VBAR[6]
        VBAR[3] = VBAR[5] * V[5] + VBAR[6]
        VBAR[2] = VBAR[3] * V[1] + VBAR[4] * mpmath.cos(V[2])      # the correct rule
        VBAR[1] = VBAR[3] * V[2]
    return V, VDOT, VBAR


NOTES_V, NOTES_VDOT, NOTES_VBAR = _notes_example()


# --------------------------------------------------------------------------------------
# Rosenbrock's function, vectorized and as a scalar loop, with its gradient and Hessian
# written by hand: the shared test problem of the higher-order and optimization tests.
def rosen(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_grad(x):
    g = np.zeros_like(x)
    d = x[1:] - x[:-1] ** 2
    g[:-1] += -400.0 * x[:-1] * d - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * d
    return g


def rosen_hess(x):
    """Tridiagonal: H_ii = 1200 x_i^2 - 400 x_{i+1} + 2 (i < n-1) + 200 (i > 0),
    H_{i,i+1} = H_{i+1,i} = -400 x_i."""
    n = len(x)
    H = np.zeros((n, n))
    i = np.arange(n - 1)
    H[i, i] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
    H[i + 1, i + 1] += 200.0
    H[i, i + 1] = H[i + 1, i] = -400.0 * x[:-1]
    return H
