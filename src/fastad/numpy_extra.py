"""numpy as programs write it: arrays built by assignment, integers taken from traced
values, and structural functions composed from the records of fastad.arrays.

Nothing here adds a kind of record.  Each function is either a rearrangement of slots
(pad, split, append, kron's layout), a composition of elementwise records and reductions
(diff, cross, polyval, cumprod, round), or a choice made from the values seen while
tracing plus a guard that the choice still holds (sort and what is built on it, interp,
astype(int)).  A guard is the mechanism of comparisons: the tape replays while the guard
holds and retraces when it fails, so a result is never computed with a stale choice.
docs/numpy.md has the table of these functions with their derivative rules.
"""
import math
import string

import numpy as np

from fastad.arrays import (HANDLED, COMPOSED_UFUNCS, PROPERTIES, _METHODS, implements,
                           tape_of, as_traced, slots_of, ufunc, reduction, where, transpose,
                           matmul, _idx_fn, _size, _axes, _no_out)
from fastad._tracer import Traced, TracedArray, new_scalar

def _traced(x):
    return type(x) in (Traced, TracedArray)


def _arr(tape, x):
    """x as a TracedArray (0-d for a scalar)."""
    x = as_traced(tape, x)
    if type(x) is Traced:
        return TracedArray.from_idx(tape, np.array(x.slot, dtype=np.int64))
    return x


def _out(tape, idx):
    """A TracedArray of slot array idx, or a Traced for a 0-d idx."""
    idx = np.asarray(idx, dtype=np.int64)
    return TracedArray.from_idx(tape, idx) if idx.ndim else new_scalar(tape, int(idx))


def _op(uf, *args):
    """uf(*args), recorded when an operand is traced, plain numpy otherwise."""
    if any(_traced(a) or isinstance(a, (list, tuple)) and tape_of(a) is not None
           for a in args):
        return ufunc(uf, args)
    return uf(*args)


def _values(tape, x):
    """The values x has now (while tracing), as a float64 array of x's shape."""
    return tape.slot_values(_arr(tape, x).idx)


def _guard_all(tape, mask, what):
    """Record that every element of the 0/1 traced `mask` is 1 (one MIN reduction and one
    guard), which the caller made true for the values seen now."""
    if type(mask) is TracedArray and mask.size == 0:
        return
    m = reduction("min", mask) if type(mask) is TracedArray else mask
    if not (m == 1.0):           # Traced.__eq__ records the guard
        raise ValueError(f"fastad: {what}: the values are not ordered (NaN?); fastad needs "
                         "comparable values to choose the elements")


def _current_tape():
    """The tape this thread is recording into (np.zeros(n, like=x), fastad.zeros), or None."""
    from fastad import _replay
    stack = getattr(_replay._local, "stack", None)
    return stack[-1] if stack else None


def _is_float_dtype(dtype):
    return dtype is None or np.dtype(dtype).kind == "f"


# ----------------------------------------------------------------------------- creation

def _filled(tape, shape, value):
    """A writable traced array of `shape` whose every slot is `value` (a float or a traced
    scalar): what np.zeros_like(x) gives, for item assignment to fill."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    slot = value.slot if type(value) is Traced else tape.const(float(value))
    return TracedArray.from_idx(tape, np.full(shape, slot, dtype=np.int64))


def _like_fn(np_fn, value):
    def impl(a, dtype=None, order="K", subok=True, shape=None, **kw):
        shape = a.shape if shape is None else shape
        if not _is_float_dtype(dtype):       # an int or bool array: plain numpy
            return np_fn(np.empty(shape), dtype=dtype)
        return _filled(tape_of(a), shape, value)
    impl.__name__ = np_fn.__name__
    return impl


HANDLED[np.zeros_like] = _like_fn(np.zeros_like, 0.0)
HANDLED[np.empty_like] = _like_fn(np.empty_like, 0.0)
HANDLED[np.ones_like] = _like_fn(np.ones_like, 1.0)


@implements(np.full_like)
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, **kw):
    shape = a.shape if shape is None else shape
    if not _is_float_dtype(dtype) and not _traced(fill_value):
        return np.full(shape, fill_value, dtype=dtype)
    tape = tape_of(a, fill_value)
    if type(fill_value) is TracedArray:
        return TracedArray.from_idx(tape, np.broadcast_to(fill_value.idx, shape).copy())
    return _filled(tape, shape, fill_value)


def _creation(np_fn, value):
    """np.zeros(n, like=x) (numpy dispatches it to x's type, without `like`), and
    fastad.zeros(n): a traced array inside a trace, numpy's array outside one."""
    def impl(shape, dtype=float, order="C", **kw):
        tape = _current_tape()
        if tape is None or not _is_float_dtype(dtype):
            return np_fn(shape, dtype=dtype, order=order)
        return _filled(tape, shape, value)
    impl.__name__ = np_fn.__name__
    impl.__doc__ = (f"Like np.{np_fn.__name__}(shape): inside a function fastad traces, a "
                    "traced array whose elements item assignment can set to traced values "
                    "(y[i] = ...); elsewhere numpy's array.  See docs/numpy.md.")
    return impl


zeros = HANDLED[np.zeros] = _creation(np.zeros, 0.0)
empty = HANDLED[np.empty] = _creation(np.empty, 0.0)
ones = HANDLED[np.ones] = _creation(np.ones, 1.0)


def full(shape, fill_value, dtype=None, order="C", **kw):
    """Like np.full: inside a trace a traced array (fill_value may be traced), else numpy's."""
    tape = _current_tape() or tape_of(fill_value)
    if tape is None or (not _is_float_dtype(dtype) and not _traced(fill_value)):
        return np.full(shape, fill_value, dtype=dtype, order=order)
    if type(fill_value) is TracedArray:
        return TracedArray.from_idx(tape, np.broadcast_to(fill_value.idx, shape).copy())
    return _filled(tape, shape, fill_value)


HANDLED[np.full] = full


def _array_like(obj, dtype=None, *args, copy=True, **kw):
    """np.array(obj, like=x) / np.asarray(obj, like=x): a traced array of obj."""
    tape = tape_of(obj) or _current_tape()
    if tape is None or not _is_float_dtype(dtype):
        return np.array(obj, dtype=dtype)
    x = _arr(tape, obj)
    return TracedArray.from_idx(tape, x.idx.copy())


HANDLED[np.array] = HANDLED[np.asarray] = HANDLED[np.asanyarray] = _array_like


# ----------------------------------------------------------------------------- dtypes

def astype(x, dtype, order="K", casting="unsafe", subok=True, copy=True):
    """x.astype(float) is a copy; x.astype(int) / astype(bool) are plain numpy arrays of the
    values now, with a guard that they stay the same (int truncates, as numpy does)."""
    tape = tape_of(x)
    kind = np.dtype(dtype).kind
    if kind == "f":
        if np.dtype(dtype) != np.float64:
            raise TypeError(f"fastad: astype({np.dtype(dtype)}) would round traced values to "
                            "a narrower float; fastad computes in float64: use astype(float)")
        return HANDLED[np.copy](x)
    if kind in "iu":
        return integers(x, np.trunc, "astype(int)").astype(dtype)
    if kind == "b":
        m = ufunc(np.not_equal, (x, 0.0))
        v = _values(tape, m)
        _guard_all(tape, ufunc(np.equal, (m, v)), "astype(bool)")
        return v.astype(bool) if v.ndim else bool(v)
    raise TypeError(f"fastad: astype({np.dtype(dtype)}) is not supported on traced values "
                    "(float64, integer and bool are)")


def integers(x, rounding, what):
    """The values of rounding(x) (np.floor, np.ceil, np.trunc, np.rint) now, as an int64
    array, with a guard that rounding(x) equals them: the tape replays while these
    integers stay the same and retraces when one changes."""
    tape = tape_of(x)
    r = ufunc(rounding, (x,))
    v = _values(tape, r)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"fastad: {what}: cannot convert NaN or infinity to an integer")
    _guard_all(tape, ufunc(np.equal, (r, v)), what)
    return v.astype(np.int64) if v.ndim else np.int64(v)


_METHODS["astype"] = astype
_METHODS["item"] = lambda x, *i: (x.reshape(-1)[i[0]] if i else HANDLED[np.reshape](x, ()))
_METHODS["tolist"] = lambda x: [e.tolist() if type(e) is TracedArray else e for e in x] \
    if x.ndim else x
PROPERTIES["real"] = lambda x: x
PROPERTIES["imag"] = lambda x: _filled(x.tape, x.shape, 0.0) if x.shape else 0.0
_METHODS["conj"] = _METHODS["conjugate"] = lambda x: x


@implements(np.real)
def real(x):
    return x


@implements(np.imag)
def imag(x):
    return PROPERTIES["imag"](_arr(tape_of(x), x)) if _traced(x) else np.imag(x)


@implements(np.iscomplexobj)
def iscomplexobj(x):
    return False


@implements(np.isrealobj)
def isrealobj(x):
    return True


# ----------------------------------------------------------------------------- rounding

@implements(np.round, np.around)
def round_(a, decimals=0, out=None):
    """numpy's rounding: rint(a * 10**d) / 10**d (d < 0: rint(a / 10**-d) * 10**-d)."""
    _no_out(out, "round")
    if decimals == 0:
        return ufunc(np.rint, (a,))
    if decimals > 0:
        f = 10.0 ** decimals
        return ufunc(np.divide, (ufunc(np.rint, (ufunc(np.multiply, (a, f)),)), f))
    f = 10.0 ** -decimals
    return ufunc(np.multiply, (ufunc(np.rint, (ufunc(np.divide, (a, f)),)), f))


_METHODS["round"] = round_


@implements(np.fix)
def fix(x, out=None):
    _no_out(out, "fix")
    return ufunc(np.trunc, (x,))


_DEG = 180.0 / math.pi
_RAD = math.pi / 180.0
COMPOSED_UFUNCS[np.deg2rad] = COMPOSED_UFUNCS[np.radians] = \
    lambda x: ufunc(np.multiply, (x, _RAD))
COMPOSED_UFUNCS[np.rad2deg] = COMPOSED_UFUNCS[np.degrees] = \
    lambda x: ufunc(np.multiply, (x, _DEG))
# NaN and infinity tests: comparisons (x != x is NaN's test), so a 0/1 mask on arrays and a
# guarded bool on a scalar, like every comparison
COMPOSED_UFUNCS[np.isnan] = lambda x: ufunc(np.not_equal, (x, x))
COMPOSED_UFUNCS[np.isinf] = lambda x: ufunc(np.equal, (ufunc(np.absolute, (x,)), np.inf))
COMPOSED_UFUNCS[np.isfinite] = lambda x: ufunc(np.less, (ufunc(np.absolute, (x,)), np.inf))
COMPOSED_UFUNCS[np.divmod] = lambda a, b: (ufunc(np.floor_divide, (a, b)),
                                           ufunc(np.remainder, (a, b)))


# ----------------------------------------------------------------------------- layout

def _moved(x, axis):
    """x's slot array with `axis` moved last."""
    return np.moveaxis(x.idx, axis, -1)


@implements(np.diff)
def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    """a[1:] - a[:-1] along axis, n times (prepend/append joined first)."""
    tape = tape_of(a, None if prepend is np._NoValue else prepend,
                  None if append is np._NoValue else append)
    a = _arr(tape, a)
    if a.ndim == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = _axes(axis, a.ndim)[0]
    parts = []
    for extra in (prepend, None, append):
        if extra is None:
            parts.append(a.idx)
        elif extra is not np._NoValue:
            e = _arr(tape, extra)
            shape = list(a.shape)
            shape[axis] = 1
            parts.append(np.broadcast_to(e.idx, shape) if e.ndim == 0 else e.idx)
    cur = TracedArray.from_idx(tape, np.concatenate(parts, axis=axis))
    hi = [slice(None)] * cur.ndim
    lo = [slice(None)] * cur.ndim
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    for _ in range(n):
        cur = ufunc(np.subtract, (cur[tuple(hi)], cur[tuple(lo)]))
    return cur


@implements(np.append)
def append(arr, values, axis=None):
    tape = tape_of(arr, values)
    a, v = _arr(tape, arr), _arr(tape, values)
    if axis is None:
        return TracedArray.from_idx(tape, np.concatenate([a.idx.ravel(), v.idx.ravel()]))
    return TracedArray.from_idx(tape, np.concatenate([a.idx, v.idx], axis=axis))


def _split_fn(np_fn):
    def impl(ary, *args, **kw):
        tape = tape_of(ary)
        return [TracedArray.from_idx(tape, p) for p in np_fn(_arr(tape, ary).idx, *args, **kw)]
    impl.__name__ = np_fn.__name__
    return impl


for _f in (np.split, np.array_split, np.hsplit, np.vsplit, np.dsplit):
    HANDLED[_f] = _split_fn(_f)

# more functions that only pick slots (the first argument's)
for _f in (np.take_along_axis, np.delete, np.resize, np.rot90):
    HANDLED[_f] = _idx_fn(_f)

_PAD_BY_COPY = ("constant", "edge", "reflect", "symmetric", "wrap", "empty")


@implements(np.pad)
def pad(array, pad_width, mode="constant", **kw):
    """Padding modes that copy elements (constant, edge, reflect, symmetric, wrap) pick
    slots; the new elements are the same slots, so their derivatives flow back."""
    tape = tape_of(array, kw.get("constant_values"))
    if callable(mode) or mode not in _PAD_BY_COPY or kw.get("reflect_type", "even") != "even":
        raise TypeError(f"fastad: np.pad(mode={mode!r}"
                        f"{', reflect_type=odd' if kw.get('reflect_type') == 'odd' else ''}) is "
                        "not supported on traced values; the modes that copy elements are: "
                        + ", ".join(_PAD_BY_COPY))
    idx = _arr(tape, array).idx
    if mode in ("constant", "empty"):
        cv = kw.pop("constant_values", 0.0) if mode == "constant" else 0.0
        if _traced(cv) and np.ndim(cv) == 0:
            cslots = cv.slot if type(cv) is Traced else int(cv.idx)
        elif _traced(cv):
            raise TypeError("fastad: np.pad: traced constant_values must be one scalar")
        else:
            cslots = np.vectorize(lambda v: tape.const(float(v)), otypes=[np.int64])(
                np.asarray(cv, dtype=np.float64))
        return TracedArray.from_idx(tape, np.pad(idx, pad_width, mode="constant",
                                                 constant_values=cslots))
    return TracedArray.from_idx(tape, np.pad(idx, pad_width, mode=mode, **kw))


@implements(np.kron)
def kron(a, b):
    """kron(a, b)[i*m + k, ...] = a[i, ...] * b[k, ...]: one elementwise product laid out."""
    tape = tape_of(a, b)
    a, b = _arr(tape, a), _arr(tape, b)
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + a.shape
    sb = (1,) * (nd - b.ndim) + b.shape
    ea = a.reshape(tuple(d for s in sa for d in (s, 1)))
    eb = b.reshape(tuple(d for s in sb for d in (1, s)))
    prod = ufunc(np.multiply, (ea, eb))
    return prod.reshape(tuple(x * y for x, y in zip(sa, sb)))


@implements(np.cross)
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors (2-vectors have a zero third component; two
    2-vectors give the scalar z component), by components."""
    if axis is not None:
        axisa = axisb = axisc = axis
    tape = tape_of(a, b)
    a, b = _arr(tape, a), _arr(tape, b)
    A = TracedArray.from_idx(tape, _moved(a, axisa))
    B = TracedArray.from_idx(tape, _moved(b, axisb))
    if A.shape[-1] not in (2, 3) or B.shape[-1] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n"
                         "(dimension must be 2 or 3)")
    zero = tape.const(0.0)

    def comp(X, i):
        if i < X.shape[-1]:
            return X[..., i]
        return TracedArray.from_idx(tape, np.full(X.shape[:-1], zero)) if X.ndim > 1 else 0.0

    mul, sub = np.multiply, np.subtract

    def term(i, j):
        return ufunc(sub, (ufunc(mul, (comp(A, i), comp(B, j))),
                           ufunc(mul, (comp(A, j), comp(B, i)))))
    z = term(0, 1)
    if A.shape[-1] == 2 and B.shape[-1] == 2:
        return z
    c = HANDLED[np.stack]([_arr(tape, t) for t in (term(1, 2), term(2, 0), z)], axis=-1)
    return TracedArray.from_idx(tape, np.moveaxis(c.idx, -1, axisc))


# ----------------------------------------------------------------------------- products

@implements(np.cumprod)
def cumprod(a, axis=None, dtype=None, out=None, **kw):
    """Running products left to right, one ranged multiply per step along the axis (the
    same products, in the same order, as numpy's loop)."""
    _no_out(out, "cumprod")
    tape = tape_of(a)
    a = _arr(tape, a)
    if axis is None:
        a, axis = TracedArray.from_idx(tape, a.idx.ravel()), 0
    axis = _axes(axis, a.ndim)[0]
    moved = TracedArray.from_idx(tape, _moved(a, axis))
    n = moved.shape[-1]
    if n == 0 or moved.size == 0:
        return a
    cols = [moved[..., 0]]
    for k in range(1, n):
        cols.append(ufunc(np.multiply, (cols[-1], moved[..., k])))
    res = np.stack([slots_of(tape, c) for c in cols], axis=-1)
    return TracedArray.from_idx(tape, np.moveaxis(res, -1, axis))


_METHODS["cumprod"] = cumprod


@implements(np.polyval)
def polyval(p, x):
    """Horner's rule as numpy runs it: y = 0; y = y * x + p[k]."""
    tape = tape_of(p, x)
    pv = _arr(tape, p)
    if pv.ndim != 1:
        raise ValueError("fastad: np.polyval: the coefficients must be a 1-d array")
    y = np.zeros_like(np.asarray(x, dtype=np.float64) if not _traced(x) else 0.0)
    for k in range(pv.shape[0]):
        y = _op(np.add, _op(np.multiply, y, x), pv[k])
    return y


# ----------------------------------------------------------------------------- order

def _ordered(a, axis, what):
    """(sorted traced array along axis, the permutation) for the values now, with a guard
    that the permuted elements are still in order."""
    tape = tape_of(a)
    a = _arr(tape, a)
    if axis is None:
        a, axis = TracedArray.from_idx(tape, a.idx.ravel()), -1
    if a.ndim == 0:
        raise np.exceptions.AxisError(axis, 0)
    axis = _axes(axis, a.ndim)[0]
    v = tape.slot_values(a.idx)
    if np.isnan(v).any():
        raise ValueError(f"fastad: {what} of values containing NaN is not supported: the order "
                         "of NaN cannot be guarded")
    perm = np.argsort(v, axis=axis, kind="stable")
    s = TracedArray.from_idx(tape, np.take_along_axis(a.idx, perm, axis))
    if s.shape[axis] > 1:
        lo = [slice(None)] * s.ndim
        hi = [slice(None)] * s.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        _guard_all(tape, ufunc(np.less_equal, (s[tuple(lo)], s[tuple(hi)])), what)
    return s, perm, axis


@implements(np.sort)
def sort(a, axis=-1, kind=None, order=None, **kw):
    """The elements in the order of their values now; a guard that consecutive sorted
    elements stay ordered (so the permutation is reused while it sorts)."""
    if order is not None:
        raise TypeError("fastad: np.sort(order=...) applies to structured arrays only")
    return _ordered(a, axis, "np.sort")[0]


@implements(np.argsort)
def argsort(a, axis=-1, kind=None, order=None, **kw):
    """The sorting permutation of the values now (an int array), with sort's guard; ties
    are ordered stably."""
    return _ordered(a, axis, "np.argsort")[1]


def _arg_extreme(a, axis, keepdims, what, better):
    """argmax/argmin: the index of the first extreme element now, with a guard that every
    element before it is strictly worse and every element after it no better."""
    tape = tape_of(a)
    a = _arr(tape, a)
    if axis is None:
        a, ax = TracedArray.from_idx(tape, a.idx.ravel()), 0
    else:
        ax = _axes(axis, a.ndim)[0]
    v = tape.slot_values(a.idx)
    if np.isnan(v).any():
        raise ValueError(f"fastad: {what} of values containing NaN is not supported")
    k = (np.argmax if better is np.less else np.argmin)(v, axis=ax, keepdims=True)
    best = TracedArray.from_idx(tape, np.take_along_axis(a.idx, k, ax))
    pos = np.arange(a.shape[ax]).reshape([-1 if i == ax else 1 for i in range(a.ndim)])
    strict = ufunc(better, (a, best))                 # before k: a < best (argmax)
    loose = ufunc(np.less_equal if better is np.less else np.greater_equal, (a, best))
    mask = where(np.broadcast_to(pos < k, a.shape), strict, loose)
    _guard_all(tape, ufunc(np.maximum, (mask, np.broadcast_to(pos == k, a.shape) * 1.0)),
               what)
    if axis is None:
        return np.int64(k.item())
    return k if keepdims else np.squeeze(k, ax)


@implements(np.argmax)
def argmax(a, axis=None, out=None, keepdims=False):
    _no_out(out, "argmax")
    return _arg_extreme(a, axis, keepdims, "np.argmax", np.less)


@implements(np.argmin)
def argmin(a, axis=None, out=None, keepdims=False):
    _no_out(out, "argmin")
    return _arg_extreme(a, axis, keepdims, "np.argmin", np.greater)


_METHODS["argsort"] = argsort
_METHODS["argmax"] = argmax
_METHODS["argmin"] = argmin


def _sort_in_place(x, axis=-1, kind=None, order=None):
    """x.sort(): ndarray's in-place sort, an assignment of the sorted slots."""
    x[...] = sort(x, axis)


_METHODS["sort"] = _sort_in_place


def _lerp(a, b, t):
    """numpy's _lerp: a + (b - a) * t, or b - (b - a) * (1 - t) where t >= 0.5."""
    d = ufunc(np.subtract, (b, a))
    t = np.asarray(t, dtype=np.float64)
    low = ufunc(np.add, (a, ufunc(np.multiply, (d, t))))
    high = ufunc(np.subtract, (b, ufunc(np.multiply, (d, 1.0 - t))))
    return where(np.broadcast_to(t >= 0.5, np.broadcast_shapes(np.shape(low),
                                                                 np.shape(high))), high, low)


def _quantile(a, q, axis, keepdims, method, what):
    """numpy's 'linear' quantile: sort, then interpolate between the two neighbours of the
    virtual index q * (n - 1)."""
    if method != "linear":
        raise TypeError(f"fastad: {what}(method={method!r}) is not supported on traced values "
                        "(method='linear', numpy's default, is)")
    if _traced(q):
        raise TypeError(f"fastad: {what} with a traced q is not supported; pass q as a "
                        "number or an array of numbers")
    tape = tape_of(a)
    a = _arr(tape, a)
    q = np.asarray(q, dtype=np.float64)
    if np.any((q < 0) | (q > 1)):
        raise ValueError("Quantiles must be in the range [0, 1]")
    axes = _axes(axis, a.ndim)
    keep = [i for i in range(a.ndim) if i not in axes]
    flat = np.transpose(a.idx, keep + list(axes))
    flat = flat.reshape(flat.shape[:len(keep)] + (-1,))
    s = _ordered(TracedArray.from_idx(tape, flat), -1, what)[0]
    n = s.shape[-1]
    vi = q * (n - 1)
    lo = np.floor(vi).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    t = vi - lo
    sl = np.moveaxis(s.idx, -1, 0)                   # n, *rest
    A = TracedArray.from_idx(tape, sl[lo])           # q.shape + rest
    B = TracedArray.from_idx(tape, sl[hi])
    tt = t.reshape(t.shape + (1,) * (A.ndim - t.ndim))
    res = _lerp(A, B, tt)
    if keepdims:
        kshape = tuple(1 if i in axes else d for i, d in enumerate(a.shape))
        res = res.reshape(q.shape + kshape)
    return res


@implements(np.quantile)
def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, **kw):
    _no_out(out, "quantile")
    return _quantile(a, q, axis, keepdims, method, "np.quantile")


@implements(np.percentile)
def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, **kw):
    _no_out(out, "percentile")
    if _traced(q):
        return _quantile(a, q, axis, keepdims, method, "np.percentile")
    return _quantile(a, np.true_divide(q, 100), axis, keepdims, method, "np.percentile")


@implements(np.median)
def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """The middle element, or the mean of the two middle elements, of the sorted values."""
    _no_out(out, "median")
    tape = tape_of(a)
    a = _arr(tape, a)
    axes = _axes(axis, a.ndim)
    keep = [i for i in range(a.ndim) if i not in axes]
    flat = np.transpose(a.idx, keep + list(axes))
    flat = flat.reshape(flat.shape[:len(keep)] + (-1,))
    s = _ordered(TracedArray.from_idx(tape, flat), -1, "np.median")[0]
    n = s.shape[-1]
    if n == 0:
        raise ValueError("fastad: np.median of an empty array")
    if n % 2:
        res = s[..., n // 2]
    else:
        res = ufunc(np.divide, (ufunc(np.add, (s[..., n // 2 - 1], s[..., n // 2])), 2.0))
    if keepdims:
        res = _arr(tape, res).reshape(tuple(1 if i in axes else d
                                            for i, d in enumerate(a.shape)))
    return res


@implements(np.interp)
def interp(x, xp, fp, left=None, right=None, period=None):
    """Piecewise-linear interpolation.  The segment of each x is chosen from the values now
    (numpy's rule: xp[j] <= x < xp[j+1]; x == xp[-1] gives fp[-1]; outside, left/right),
    with a guard that each x stays in its segment.  Inside a segment the value is
    fp[j] + slope * (x - xp[j]), so d/dx is the segment's slope and at a knot the slope
    of the segment to its right."""
    if period is not None:
        raise TypeError("fastad: np.interp(period=...) is not supported on traced values")
    tape = tape_of(x, xp, fp, left, right)
    X, XP, FP = _arr(tape, x), _arr(tape, xp), _arr(tape, fp)
    if XP.ndim != 1 or FP.shape != XP.shape or XP.shape[0] == 0:
        raise ValueError("fastad: np.interp: xp and fp must be 1-d sequences of the same "
                         "nonzero length")
    n = XP.shape[0]
    xv, xpv = tape.slot_values(X.idx), tape.slot_values(XP.idx)
    if np.isnan(xv).any():
        raise ValueError("fastad: np.interp of NaN is not supported")
    j = np.searchsorted(xpv, xv, side="right") - 1
    below = j < 0
    above = (j >= n - 1) & (xv > xpv[-1])
    at_end = (j >= n - 1) & ~above
    jc = np.clip(j, 0, max(n - 2, 0))
    jn = np.minimum(jc + 1, n - 1)
    x0, x1 = XP[jc], XP[jn]
    f0, f1 = FP[jc], FP[jn]
    slope = ufunc(np.divide, (ufunc(np.subtract, (f1, f0)), ufunc(np.subtract, (x1, x0))))
    inner = ufunc(np.add, (ufunc(np.multiply, (slope, ufunc(np.subtract, (X, x0)))), f0))
    lv = FP[0] if left is None else left
    rv = FP[n - 1] if right is None else right
    res = where(below, lv, where(above, rv, where(at_end, FP[n - 1], inner)))
    # the guard: each x is still where it was found
    ok_in = ufunc(np.minimum, (ufunc(np.less_equal, (x0, X)), ufunc(np.less, (X, x1))))
    ok = where(below, ufunc(np.less, (X, XP[0])),
               where(above, ufunc(np.less, (XP[n - 1], X)),
                     where(at_end, ufunc(np.equal, (X, XP[n - 1])), ok_in)))
    _guard_all(tape, ok, "np.interp")
    if n > 1:
        _guard_all(tape, ufunc(np.less, (XP[:-1], XP[1:])) if _traced(xp) else 1.0,
                   "np.interp (xp increasing)")
    return res


# ----------------------------------------------------------------------------- einsum

_LETTERS = string.ascii_letters


def _sublist(sub):
    return "".join("..." if s is Ellipsis else _LETTERS[s] for s in sub)


def _einsum_parse(operands):
    """(subscripts string, operands) from either einsum form."""
    if isinstance(operands[0], str):
        return operands[0].replace(" ", ""), list(operands[1:])
    ops, subs = list(operands[0::2]), list(operands[1::2])
    out = None
    if len(ops) > len(subs):          # the last item was the output sublist
        out = ops.pop()
    spec = ",".join(_sublist(s) for s in subs)
    if out is not None:
        spec += "->" + _sublist(out)
    return spec, ops


def _einsum_expand(spec, ops):
    """Replace '...' by letters and make the output explicit: (inputs, output)."""
    lhs, arrow, out = spec.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(ops):
        raise ValueError(f"fastad: einsum: {len(ins)} subscripts for {len(ops)} operands")
    free = [c for c in _LETTERS if c not in spec]
    nell = 0
    for s, o in zip(ins, ops):
        if "..." in s:
            nell = max(nell, o.ndim - (len(s) - 3))
    ell = "".join(free[:nell])
    new = []
    for s, o in zip(ins, ops):
        if "..." in s:
            k = o.ndim - (len(s) - 3)
            s = s.replace("...", ell[nell - k:] if k else "")
        if len(s) != o.ndim:
            raise ValueError(f"fastad: einsum: operand has {o.ndim} dimensions, subscripts "
                             f"{s!r}")
        new.append(s)
    if arrow:
        out = out.replace("...", ell)
    else:
        letters = "".join(new)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                   and c not in ell))
    return new, out


def _diag_and_sum(tape, x, s, needed):
    """Take diagonals of repeated letters and sum the letters not in `needed`."""
    while len(set(s)) < len(s):
        c = next(ch for ch in s if s.count(ch) > 1)
        i = s.index(c)
        j = s.index(c, i + 1)
        x = TracedArray.from_idx(tape, np.diagonal(x.idx, axis1=i, axis2=j))
        s = s[:i] + s[i + 1:j] + s[j + 1:] + c
    lonely = tuple(k for k, c in enumerate(s) if c not in needed)
    if lonely:
        x = _arr(tape, reduction("sum", x, lonely))
        s = "".join(c for k, c in enumerate(s) if k not in lonely)
    return x, s


def _contract2(tape, a, sa, b, sb, keep):
    """The einsum of two operands keeping the letters `keep` (in the order batch, a's, b's)."""
    a, sa = _diag_and_sum(tape, a, sa, keep + sb)
    b, sb = _diag_and_sum(tape, b, sb, keep + sa)
    batch = [c for c in sa if c in sb and c in keep]
    contract = [c for c in sa if c in sb and c not in keep]
    keep_a = [c for c in sa if c not in sb]
    keep_b = [c for c in sb if c not in sa]
    dims = {c: d for s, x in ((sa, a), (sb, b)) for c, d in zip(s, x.shape)}
    at = transpose(a, [sa.index(c) for c in batch + keep_a + contract])
    bt = transpose(b, [sb.index(c) for c in batch + contract + keep_b])
    nb = _size([dims[c] for c in batch])
    m, k, p = (_size([dims[c] for c in keep_a]), _size([dims[c] for c in contract]),
               _size([dims[c] for c in keep_b]))
    prod = matmul(at.reshape(nb, m, k), bt.reshape(nb, k, p))
    res = _arr(tape, prod).reshape(tuple(dims[c] for c in batch + keep_a + keep_b))
    return res, "".join(batch + keep_a + keep_b)


@implements(np.einsum)
def einsum(*operands, optimize=False, out=None, dtype=None, order="K", casting="safe"):
    """Every einsum: both forms, '...', broadcasting of size-1 axes, any number of
    operands (contracted left to right, two at a time, each a MATMUL record)."""
    _no_out(out, "einsum")
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TypeError(f"fastad: np.einsum(dtype={dtype!r}) is not supported on traced values")
    spec, ops = _einsum_parse(operands)
    tape = tape_of(*ops)
    ops = [_arr(tape, o) for o in ops]
    ins, out_s = _einsum_expand(spec, ops)
    dims = {}
    for s, o in zip(ins, ops):
        for c, d in zip(s, o.shape):
            prev = dims.get(c)
            if prev is None or prev == 1:
                dims[c] = d
            elif d not in (1, prev):
                raise ValueError(f"fastad: einsum: operands could not be broadcast together: "
                                 f"axis {c!r} has sizes {prev} and {d}")
    ops = [TracedArray.from_idx(tape, np.broadcast_to(o.idx, tuple(dims[c] for c in s)))
           for s, o in zip(ins, ops)]
    for c in out_s:
        if c not in dims:
            raise ValueError(f"fastad: einsum: output subscript {c!r} appears in no operand")
    x, s = ops[0], ins[0]
    for k in range(1, len(ops)):
        later = "".join(ins[k + 1:]) + out_s
        keep = "".join(dict.fromkeys(c for c in s + ins[k] if c in later))
        x, s = _contract2(tape, x, s, ops[k], ins[k], keep)
    x, s = _diag_and_sum(tape, x, s, out_s)
    if s != out_s:
        x = transpose(x, [s.index(c) for c in out_s])
    x = _arr(tape, x)
    return x if x.ndim else new_scalar(tape, int(x.idx))


# ----------------------------------------------------------------------------- piecewise

@implements(np.select)
def select(condlist, choicelist, default=0.0):
    """The first true condition's choice, as nested selects (np.where) from the last."""
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    res = default
    for cond, choice in zip(reversed(condlist), reversed(choicelist)):
        res = where(cond, choice, res)
    tape = tape_of(res)
    shape = np.broadcast_shapes(*[np.shape(c) for c in condlist],
                                *[np.shape(c) for c in choicelist])
    return TracedArray.from_idx(tape, np.broadcast_to(_arr(tape, res).idx, shape)) \
        if shape else res


@implements(np.piecewise)
def piecewise(x, condlist, funclist, *args, **kw):
    """funclist[k](x) where condlist[k] holds (the last true one wins, as in numpy), else
    0 or the extra default function.  Every function is evaluated on all of x and the
    pieces selected with np.where, so the pieces not taken get a zero adjoint."""
    tape = tape_of(x, condlist)
    x = _arr(tape, x)
    if isinstance(condlist, np.ndarray) and condlist.dtype == bool and condlist.ndim == \
            x.ndim or _traced(condlist):
        condlist = [condlist]
    condlist = list(condlist)
    n = len(condlist)
    if len(funclist) not in (n, n + 1):
        raise ValueError(f"with {n} condition(s), either {n} or {n + 1} functions are "
                         f"expected")
    if len(funclist) == n + 1:          # the default: where no condition holds
        others = None
        for c in condlist:
            c = _op(np.not_equal, c, 0.0) if _traced(c) else np.asarray(c, dtype=bool)
            nc = _op(np.subtract, 1.0, c) if _traced(c) else ~c
            others = nc if others is None else _op(np.multiply, others, nc) \
                if _traced(nc) or _traced(others) else others & nc
        condlist.append(others)

    def piece(f):
        return f(x, *args, **kw) if callable(f) else f

    res = _filled(tape, x.shape, 0.0)
    for cond, f in zip(condlist, funclist):
        res = where(cond, piece(f), res)
    return res


@implements(np.trapezoid)
def trapezoid(y, x=None, dx=1.0, axis=-1):
    """The trapezoidal rule as numpy writes it: sum(d * (y[1:] + y[:-1]) / 2)."""
    tape = tape_of(y, x, dx)
    y = _arr(tape, y)
    axis = _axes(axis, y.ndim)[0]
    if x is None:
        d = dx
    else:
        xa = _arr(tape, x) if _traced(x) or tape_of(x) is not None else np.asarray(x)
        if np.ndim(xa) == 1:
            d = diff(xa) if _traced(xa) else np.diff(xa)
            shape = [1] * y.ndim
            shape[axis] = np.shape(d)[0]
            d = d.reshape(shape)
        else:
            d = diff(xa, axis=axis) if _traced(xa) else np.diff(xa, axis=axis)
    hi = [slice(None)] * y.ndim
    lo = [slice(None)] * y.ndim
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    s = ufunc(np.add, (y[tuple(hi)], y[tuple(lo)]))
    return reduction("sum", ufunc(np.divide, (_op(np.multiply, d, s), 2.0)), axis)


@implements(np.convolve)
def convolve(a, v, mode="full"):
    """Discrete convolution: a matrix of shifted slots of a (zero-padded) times v reversed,
    summed along rows -- the same products numpy's correlate sums."""
    tape = tape_of(a, v)
    A, V = _arr(tape, a).reshape(-1), _arr(tape, v).reshape(-1)
    if A.shape[0] < V.shape[0]:
        A, V = V, A
    n, m = A.shape[0], V.shape[0]
    if m == 0:
        raise ValueError("v cannot be empty")
    zero = tape.const(0.0)
    padded = np.concatenate([np.full(m - 1, zero), A.idx, np.full(m - 1, zero)])
    k = np.arange(n + m - 1)[:, None] + np.arange(m)[None, :]
    rows = TracedArray.from_idx(tape, padded[k])                  # (n + m - 1, m)
    full = reduction("sum", ufunc(np.multiply, (rows, V[::-1])), 1)
    if mode == "full":
        return full
    if mode == "same":
        start = (m - 1) // 2
        return full[start:start + n]
    if mode == "valid":
        return full[m - 1:n]
    raise ValueError(f"mode must be one of 'full', 'same', 'valid', got {mode!r}")


@implements(np.gradient)
def gradient(f, *varargs, axis=None, edge_order=1):
    """numpy's finite-difference gradient for uniform spacing (a scalar per axis, or none):
    central differences inside, one-sided (edge_order 1 or 2) at the ends, in numpy's
    formulas.  Coordinate arrays (non-uniform spacing) are not supported."""
    tape = tape_of(f, *varargs)
    f = _arr(tape, f)
    axes = _axes(axis, f.ndim) if axis is not None else tuple(range(f.ndim))
    if isinstance(axis, (int, np.integer)):
        axes = (axes[0],)
    if len(varargs) == 0:
        dxs = [1.0] * len(axes)
    elif len(varargs) == 1 and np.ndim(varargs[0]) == 0:
        dxs = [varargs[0]] * len(axes)
    elif len(varargs) == len(axes) and all(np.ndim(d) == 0 for d in varargs):
        dxs = list(varargs)
    else:
        raise TypeError("fastad: np.gradient with coordinate arrays (non-uniform spacing) is "
                        "not supported on traced values; pass one scalar spacing per axis")
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    out = []
    for ax, h in zip(axes, dxs):
        n = f.shape[ax]
        if n < edge_order + 1:
            raise ValueError("Shape of array too small to calculate a numerical gradient, "
                             "at least (edge_order + 1) elements are required.")

        def at(sl, ax=ax):
            key = [slice(None)] * f.ndim
            key[ax] = sl
            return f[tuple(key)]

        mid = _op(np.divide, _op(np.subtract, at(slice(2, None)), at(slice(None, -2))),
                  _op(np.multiply, 2.0, h))
        if edge_order == 1:
            first = _op(np.divide, _op(np.subtract, at(slice(1, 2)), at(slice(0, 1))), h)
            last = _op(np.divide, _op(np.subtract, at(slice(-1, None)), at(slice(-2, -1))), h)
        else:
            def comb(coeffs, sls, h=h):     # h: this axis's spacing (loop variable)
                terms = [_op(np.multiply, _op(np.divide, c, h), at(s)) for c, s in
                         zip(coeffs, sls)]
                return _op(np.add, _op(np.add, terms[0], terms[1]), terms[2])
            first = comb((-1.5, 2.0, -0.5), (slice(0, 1), slice(1, 2), slice(2, 3)))
            last = comb((0.5, -2.0, 1.5), (slice(-3, -2), slice(-2, -1), slice(-1, None)))
        parts = [_arr(tape, p).idx for p in (first, mid, last)]
        out.append(TracedArray.from_idx(tape, np.concatenate(parts, axis=ax)))
    return out[0] if len(out) == 1 else tuple(out)
