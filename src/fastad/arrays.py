"""numpy on traced arrays: ufuncs, reductions, products, shapes and selects.

Every function here records O(1) ranged records, never one Python call per element:
an elementwise op is one ranged record over contiguous slots (operands broadcast with
stride 0 or gathered into a contiguous range first), a reduction is one segmented record,
a matrix product one MATMUL record.  Views (slicing, transposes, reshapes, broadcasts,
fancy indexing, concatenation) only rearrange a TracedArray's index array and record
nothing until an op needs its elements contiguous.

`array_function` and `array_ufunc` are numpy's dispatch protocols; HANDLED maps each
supported numpy function to its implementation here.
"""
import functools
import sys

import numpy as np

from fastad import _tracer
from fastad._tracer import TracedArray, Traced, UFUNCS, apply_op, new_scalar
from fastad.ops import BY_NAME, MASK_OF, Kind, Op
from fastad.errors import UnsupportedMethodError, UnsupportedNumpyError
from fastad._record import as_traced, contiguous, empty, size, slots_of, tape_of, wrap

UNARY, BINARY, GUARD = Kind.UNARY, Kind.BINARY, Kind.GUARD

HANDLED = {}
COMPOSED_UFUNCS = {}      # numpy ufunc -> its implementation by other records (numpy_extra)
PROPERTIES = {}           # x.real, x.imag, ...: attribute name -> function of x (numpy_extra)


def implements(*funcs):
    """Register an implementation of numpy function(s) for traced arguments."""
    def register(impl):
        for f in funcs:
            HANDLED[f] = impl
        return impl
    return register


# ----------------------------------------------------------------------------- helpers
# shared with the rest of the package: fastad._record
_size, _empty = size, empty


# ----------------------------------------------------------------------------- elementwise

def elementwise(code, kind, inputs, name):
    """One ranged record of op `code` over the broadcast of `inputs`."""
    tape = tape_of(*inputs)
    inputs = tuple(as_traced(tape, x) if isinstance(x, (list, tuple)) else x for x in inputs)
    shapes = [np.shape(x) if type(x) not in (Traced, TracedArray) else x.shape for x in inputs]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"fastad: {name}: operands could not be broadcast together with "
                         f"shapes {' '.join(map(str, shapes))}") from None
    if kind == GUARD:            # array comparisons give 0/1 masks, not guards
        code, kind, is_mask = MASK_OF[code], BINARY, True   # array comparisons: 0/1 masks
    else:
        is_mask = False
    n = _size(shape)
    if n == 0:
        return _empty(tape, shape)
    operands = []
    for x, s in zip(inputs, shapes):
        if _size(s) == 1:        # one slot, broadcast with stride 0
            sx = x.reshape(()) if type(x) is TracedArray else x
            operands.append((slots_of(tape, sx).item() if type(sx) is not Traced else sx.slot, 0))
        else:
            operands.append((contiguous(tape, x, shape), 1))
    (a, sa), (b, sb) = operands[0], operands[-1]
    if shape == ():
        r = apply_op(code, kind, tuple(new_scalar(tape, s) for s, _ in operands), name)
        return r
    return wrap(tape, tape.op_ranged(code, a, sa, b, sb, n), shape, is_mask)


def ufunc(uf, inputs):
    """Apply numpy ufunc `uf` to traced operands (the array operators land here)."""
    if uf is np.matmul:
        return matmul(*inputs)
    entry = UFUNCS.get(uf)
    if entry is None:
        if uf in COMPOSED_UFUNCS:
            return COMPOSED_UFUNCS[uf](*inputs)
        if uf in (np.positive, np.conjugate):
            return inputs[0]
        if uf in _LOGICAL:
            return _LOGICAL[uf](*inputs)
        where_from = "np" if getattr(np, uf.__name__, None) is uf else "scipy.special"
        raise UnsupportedNumpyError(UnsupportedNumpyError.message(
            f"{where_from}.{uf.__name__}", "fastad.SUPPORTED lists the elementwise functions "
            "fastad differentiates (docs/numpy.md the rest); give it a derivative with "
            "fastad.custom_vjp, or apply it to values that are not differentiated"))
    code, kind, swap = entry
    if swap:
        inputs = (inputs[1], inputs[0])
    return elementwise(code, kind, tuple(inputs), uf.__name__)


_REDUCE_METHODS = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min",
                   np.fmax: "max", np.fmin: "min"}


def array_ufunc(uf, method, inputs, kwargs):
    """numpy's __array_ufunc__ for calls that involve traced arrays."""
    if "out" in kwargs:
        raise UnsupportedNumpyError(UnsupportedNumpyError.out_message(f"np.{uf.__name__}"))
    if method == "__call__":
        if kwargs:
            raise TypeError(f"fastad: np.{uf.__name__} keyword arguments {sorted(kwargs)} are "
                            "not supported on traced values")
        return ufunc(uf, inputs)
    if method == "reduce" and uf in _REDUCE_METHODS:
        return reduction(_REDUCE_METHODS[uf], inputs[0], **kwargs)
    if method == "accumulate" and uf is np.add:
        return cumsum(inputs[0], **kwargs)
    raise UnsupportedNumpyError(UnsupportedNumpyError.message(f"np.{uf.__name__}.{method}"))


# masks: 0/1 traced arrays from comparisons
def _mask(x):
    """x (0/1 values) marked as a mask; any other traced array becomes x != 0."""
    tape_of(x)                  # refuses an escaped value
    if type(x) is TracedArray and x.is_mask:
        return x
    m = ufunc(np.not_equal, (x, 0.0))
    return m


def _marked(x):
    return TracedArray.from_idx(x.tape, x.idx, True) if type(x) is TracedArray else x


def logical_not(m):
    return _marked(ufunc(np.subtract, (1.0, _mask(m))))


def logical_and(a, b):
    return _marked(ufunc(np.multiply, (_mask(a), _mask(b))))


def logical_or(a, b):
    return _marked(ufunc(np.maximum, (_mask(a), _mask(b))))


_LOGICAL = {np.logical_not: logical_not, np.logical_and: logical_and,
            np.logical_or: logical_or}


# ----------------------------------------------------------------------------- reductions

def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim) if hasattr(np, "exceptions") else \
                ValueError(f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


_IDENTITY = {"sum": 0.0, "prod": 1.0}


def reduction(kind, x, axis=None, keepdims=False, dtype=None, initial=None, where=None):
    """sum / prod / max / min over `axis` as one segmented record."""
    if initial is not None or where is not None:
        raise TypeError(f"fastad: {kind}(initial=..., where=...) is not supported on traced arrays")
    tape = tape_of(x)
    x = as_traced(tape, x)
    if type(x) is Traced:
        return x
    axes = _axes(axis, x.ndim)
    rest = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims else rest
    n = _size([x.shape[a] for a in axes])
    m = _size(rest)
    if m == 0:
        return _empty(tape, out_shape)
    if n == 0:
        if kind not in _IDENTITY:
            raise ValueError(f"zero-size array to reduction operation {kind} which has no identity")
        return as_traced(tape, np.full(out_shape, _IDENTITY[kind]))
    if axes == tuple(range(x.ndim)) and x.range_start() >= 0:
        a = x.range_start()
    else:
        moved = np.moveaxis(x.idx, axes, tuple(range(x.ndim - len(axes), x.ndim)))
        a = contiguous(tape, TracedArray.from_idx(tape, moved), moved.shape)
    start = tape.reduce(BY_NAME[kind], a, n, m)
    return wrap(tape, start, out_shape)


@implements(np.sum)
def sum_(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _no_out(out, "sum")
    return reduction("sum", x, axis, keepdims, initial=initial, where=where)


@implements(np.prod)
def prod(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _no_out(out, "prod")
    return reduction("prod", x, axis, keepdims, initial=initial, where=where)


@implements(np.max, np.amax)
def max_(x, axis=None, out=None, keepdims=False, initial=None, where=None):
    _no_out(out, "max")
    return reduction("max", x, axis, keepdims, initial=initial, where=where)


@implements(np.min, np.amin)
def min_(x, axis=None, out=None, keepdims=False, initial=None, where=None):
    _no_out(out, "min")
    return reduction("min", x, axis, keepdims, initial=initial, where=where)


@implements(np.mean)
def mean(x, axis=None, dtype=None, out=None, keepdims=False, where=None):
    _no_out(out, "mean")
    tape = tape_of(x)
    x = as_traced(tape, x)
    n = _size([x.shape[a] for a in _axes(axis, x.ndim)])
    return ufunc(np.divide, (reduction("sum", x, axis, keepdims, where=where), float(n)))


@implements(np.var)
def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None,
        correction=None):
    _no_out(out, "var")
    if correction is not None:
        ddof = correction
    tape = tape_of(x)
    x = as_traced(tape, x)
    n = _size([x.shape[a] for a in _axes(axis, x.ndim)])
    mu = globals()["mean"](x, axis, keepdims=True)
    d = ufunc(np.subtract, (x, mu))
    ss = reduction("sum", ufunc(np.square, (d,)), axis, keepdims)
    return ufunc(np.divide, (ss, float(max(n - ddof, 0))))


@implements(np.std)
def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None,
        correction=None):
    return ufunc(np.sqrt, (var(x, axis, dtype, out, ddof, keepdims, where, mean, correction),))


@implements(np.cumsum)
def cumsum(x, axis=None, dtype=None, out=None):
    _no_out(out, "cumsum")
    tape = tape_of(x)
    x = as_traced(tape, x)
    if type(x) is Traced:
        x = TracedArray.from_idx(tape, np.array([x.slot]))
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = _axes(axis, x.ndim)[0]
    if x.size == 0:
        return x
    moved = np.moveaxis(x.idx, axis, -1)
    a = contiguous(tape, TracedArray.from_idx(tape, moved), moved.shape)
    start = tape.reduce(Op.CUMSUM, a, moved.shape[-1], moved.size // moved.shape[-1])
    res = np.arange(start, start + moved.size, dtype=np.int64).reshape(moved.shape)
    return TracedArray.from_idx(tape, np.moveaxis(res, -1, axis))


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    tape = tape_of(x)
    x = as_traced(tape, x)
    if ord in (None, 2, "fro") and (ord != 2 or axis is not None or x.ndim == 1):
        return ufunc(np.sqrt, (reduction("sum", ufunc(np.square, (x,)), axis, keepdims),))
    if ord == 1 and (x.ndim == 1 or axis is not None):
        return reduction("sum", ufunc(np.absolute, (x,)), axis, keepdims)
    if ord in (np.inf, float("inf")) and (x.ndim == 1 or axis is not None):
        return reduction("max", ufunc(np.absolute, (x,)), axis, keepdims)
    raise TypeError(f"fastad: np.linalg.norm with ord={ord!r} on a {x.ndim}-d traced array is "
                    "not supported (vector norms None/2/1/inf and the Frobenius norm are)")


@implements(np.logaddexp)
def logaddexp(a, b):
    return ufunc(np.logaddexp, (a, b))


@implements(np.clip)
def clip(x, a_min=None, a_max=None, out=None, **kw):
    _no_out(out, "clip")
    if "min" in kw or "max" in kw:
        a_min, a_max = kw.pop("min", a_min), kw.pop("max", a_max)
    if a_min is not None:
        x = ufunc(np.maximum, (x, a_min))
    if a_max is not None:
        x = ufunc(np.minimum, (x, a_max))
    return x


def _no_out(out, name):
    if out is not None:
        raise UnsupportedNumpyError(UnsupportedNumpyError.out_message(f"np.{name}"))


# ----------------------------------------------------------------------------- products

def _matmul2(tape, a, b):
    """(m, k) @ (k, p) for traced-or-constant 2-d operands: one MATMUL record."""
    (m, k), (k2, p) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"fastad: matmul: shapes {a.shape} and {b.shape} are not aligned "
                         f"({k} != {k2})")
    if m * p == 0:
        return _empty(tape, (m, p))
    if k == 0:
        return as_traced(tape, np.zeros((m, p)))
    sa, sb = contiguous(tape, a, a.shape), contiguous(tape, b, b.shape)
    return wrap(tape, tape.matmul(sa, sb, m, k, p), (m, p))


def _shape(x):
    return x.shape if type(x) in (Traced, TracedArray) else np.shape(x)


@implements(np.matmul)
def matmul(a, b):
    tape = tape_of(a, b)
    a, b = as_traced(tape, a), as_traced(tape, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("fastad: matmul: input operand does not have enough dimensions "
                         "(use * for scalars)")
    if a.ndim == 1 and b.ndim == 1:
        if a.shape != b.shape:
            raise ValueError(f"fastad: matmul: shapes {a.shape} and {b.shape} are not aligned")
        return reduction("sum", ufunc(np.multiply, (a, b)))
    if a.ndim == 1:
        return matmul(a.reshape(1, -1), b).reshape(b.shape[:-2] + (b.shape[-1],))
    if b.ndim == 1:
        return matmul(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    if a.ndim == 2 and b.ndim == 2:
        return _matmul2(tape, a, b)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    ai = np.broadcast_to(a.idx, batch + a.shape[-2:])
    bi = np.broadcast_to(b.idx, batch + b.shape[-2:])
    parts = [_matmul2(tape, TracedArray.from_idx(tape, ai[i]), TracedArray.from_idx(tape, bi[i]))
             for i in np.ndindex(*batch)]
    idx = np.stack([slots_of(tape, p) for p in parts]).reshape(batch + (a.shape[-2], b.shape[-1]))
    return TracedArray.from_idx(tape, idx)


@implements(np.dot)
def dot(a, b, out=None):
    _no_out(out, "dot")
    tape = tape_of(a, b)
    a, b = as_traced(tape, a), as_traced(tape, b)
    if a.ndim == 0 or b.ndim == 0:
        return ufunc(np.multiply, (a, b))
    if b.ndim <= 2:
        return matmul(a, b)
    # N-d dot: sum over the last axis of a and the second-to-last of b
    return tensordot(a, b, axes=([a.ndim - 1], [b.ndim - 2]))


@implements(np.vdot)
def vdot(a, b):
    return dot(ravel(a), ravel(b))


@implements(np.inner)
def inner(a, b):
    tape = tape_of(a, b)
    a, b = as_traced(tape, a), as_traced(tape, b)
    if a.ndim == 0 or b.ndim == 0:
        return ufunc(np.multiply, (a, b))
    return tensordot(a, b, axes=([a.ndim - 1], [b.ndim - 1]))


@implements(np.outer)
def outer(a, b, out=None):
    _no_out(out, "outer")
    tape = tape_of(a, b)
    a, b = ravel(as_traced(tape, a)), ravel(as_traced(tape, b))
    return ufunc(np.multiply, (a.reshape(-1, 1), b.reshape(1, -1)))


@implements(np.tensordot)
def tensordot(a, b, axes=2):
    tape = tape_of(a, b)
    a, b = as_traced(tape, a), as_traced(tape, b)
    if a.ndim == 0 or b.ndim == 0:           # only axes=0 fits a scalar: an outer product
        if axes not in (0, ([], []), [[], []]):
            raise ValueError("fastad: tensordot: a scalar operand has no axes to sum over")
        return ufunc(np.multiply, (a, b))
    if isinstance(axes, (int, np.integer)):
        ax_a, ax_b = list(range(a.ndim - axes, a.ndim)), list(range(axes))
    else:
        ax_a, ax_b = ([axes[0]] if isinstance(axes[0], int) else list(axes[0]),
                      [axes[1]] if isinstance(axes[1], int) else list(axes[1]))
    ax_a = [x % a.ndim for x in ax_a]
    ax_b = [x % b.ndim for x in ax_b]
    keep_a = [i for i in range(a.ndim) if i not in ax_a]
    keep_b = [i for i in range(b.ndim) if i not in ax_b]
    k = _size([a.shape[i] for i in ax_a])
    am = transpose(a, keep_a + ax_a).reshape(-1, k)
    bm = transpose(b, ax_b + keep_b).reshape(k, -1)
    out_shape = tuple(a.shape[i] for i in keep_a) + tuple(b.shape[i] for i in keep_b)
    return reshape(_matmul2(tape, am, bm), out_shape)


# np.einsum (every form) is in numpy_extra


@implements(np.trace)
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _no_out(out, "trace")
    tape = tape_of(a)
    a = as_traced(tape, a)
    d = np.diagonal(a.idx, offset, axis1, axis2)
    return reduction("sum", TracedArray.from_idx(tape, d), -1)


@implements(np.diag)
def diag(v, k=0):
    tape = tape_of(v)
    v = as_traced(tape, v)
    if v.ndim == 2:
        return TracedArray.from_idx(tape, np.diag(v.idx, k))
    if v.ndim != 1:
        raise ValueError("fastad: np.diag input must be 1-d or 2-d")
    n = v.shape[0] + abs(k)
    idx = np.full((n, n), tape.const(0.0), dtype=np.int64)
    rows = np.arange(v.shape[0]) + max(-k, 0)
    idx[rows, rows + k] = v.idx
    return TracedArray.from_idx(tape, idx)


@implements(np.diagonal)
def diagonal(a, offset=0, axis1=0, axis2=1):
    tape = tape_of(a)
    return TracedArray.from_idx(tape, np.diagonal(as_traced(tape, a).idx, offset, axis1, axis2))


# ----------------------------------------------------------------------------- select

@implements(np.where)
def where(cond, x=None, y=None):
    """np.where(cond, x, y): a select whose untaken side gets an adjoint of exactly 0."""
    if x is None or y is None:
        raise TypeError("fastad: np.where(cond) with one argument returns indices that depend "
                        "on the values; use np.where(cond, x, y)")
    tape = tape_of(cond, x, y)
    if type(cond) not in (Traced, TracedArray):
        # a constant condition picks slots: no record at all, the other side is unreferenced
        c = np.asarray(cond, dtype=bool)
        shape = np.broadcast_shapes(c.shape, _shape(x), _shape(y))
        ix = np.broadcast_to(slots_of(tape, x), shape)
        iy = np.broadcast_to(slots_of(tape, y), shape)
        idx = np.where(np.broadcast_to(c, shape), ix, iy)
        return TracedArray.from_idx(tape, idx) if idx.ndim else new_scalar(tape, int(idx))
    taken = elementwise(Op.SELECT, BINARY, (cond, x), "where")
    other = elementwise(Op.SELECT_NOT, BINARY, (cond, y), "where")
    return ufunc(np.add, (taken, other))


# ----------------------------------------------------------------------------- shapes

def _idx_fn(np_fn):
    """A numpy shape function applied to the slot indices of its first argument."""
    def impl(a, *args, **kw):
        tape = tape_of(a)
        res = np_fn(slots_of(tape, a), *args, **kw)
        return TracedArray.from_idx(tape, res) if np.ndim(res) else new_scalar(tape, int(res))
    impl.__name__ = np_fn.__name__
    return impl


reshape = _idx_fn(np.reshape)
ravel = _idx_fn(np.ravel)
transpose = _idx_fn(np.transpose)
squeeze = _idx_fn(np.squeeze)
expand_dims = _idx_fn(np.expand_dims)
broadcast_to = _idx_fn(np.broadcast_to)
for _f in (np.reshape, np.ravel, np.transpose, np.squeeze, np.expand_dims, np.broadcast_to,
           np.swapaxes, np.moveaxis, np.flip, np.fliplr, np.flipud, np.roll, np.atleast_1d,
           np.atleast_2d, np.repeat, np.tile, np.triu, np.tril, np.take):
    HANDLED[_f] = _idx_fn(_f)
HANDLED[np.reshape], HANDLED[np.ravel], HANDLED[np.transpose] = reshape, ravel, transpose


def _triangle(np_fn):
    def impl(m, k=0):
        tape = tape_of(m)
        idx = as_traced(tape, m).idx
        keep = np_fn(np.ones(idx.shape[-2:], dtype=bool), k)
        return TracedArray.from_idx(tape, np.where(keep, idx, tape.const(0.0)))
    return impl


HANDLED[np.triu], HANDLED[np.tril] = _triangle(np.triu), _triangle(np.tril)


def _join(np_fn):
    """concatenate/stack & co. on the slot indices of all the arrays."""
    def impl(arrays, *args, **kw):
        if kw.get("out") is not None:
            _no_out(kw["out"], np_fn.__name__)
        kw.pop("out", None)
        if kw.pop("dtype", None) is not None:
            raise TypeError(f"fastad: np.{np_fn.__name__}(dtype=...) is not supported")
        kw.pop("casting", None)
        arrays = list(arrays)
        tape = tape_of(*arrays)
        res = np_fn([slots_of(tape, a) for a in arrays], *args, **kw)
        return TracedArray.from_idx(tape, res)
    impl.__name__ = np_fn.__name__
    return impl


for _f in (np.concatenate, np.stack, np.hstack, np.vstack, np.column_stack, np.dstack):
    HANDLED[_f] = _join(_f)


@implements(np.any)
def any_(a, axis=None, out=None, keepdims=False, **kw):
    _no_out(out, "any")
    return reduction("max", _mask(a), axis, keepdims)


@implements(np.all)
def all_(a, axis=None, out=None, keepdims=False, **kw):
    _no_out(out, "all")
    return reduction("min", _mask(a), axis, keepdims)


@implements(np.shape)
def shape(a):
    return a.shape


@implements(np.ndim)
def ndim(a):
    return len(a.shape)


@implements(np.size)
def size(a, axis=None):
    return _size(a.shape) if axis is None else a.shape[axis]


@implements(np.copy)
def copy(a, **kw):
    tape = tape_of(a)
    a = as_traced(tape, a)
    return TracedArray.from_idx(tape, a.idx.copy()) if type(a) is TracedArray else a


# np.zeros_like(x) & co. and np.full_like live in numpy_extra: they make traced arrays
# that item assignment fills


# ----------------------------------------------------------------------------- protocols

def array_function(func, args, kwargs):
    """numpy's __array_function__ for traced arguments."""
    impl = HANDLED.get(func)
    if impl is None:
        mod = getattr(func, "__module__", "numpy") or "numpy"
        name = mod.replace("numpy", "np", 1) + "." + func.__name__ if mod.startswith("numpy") \
            else f"{mod}.{func.__name__}"
        name = name.replace("np._core.", "np.").replace("np.core.", "np.")
        name = name.replace("np.fromnumeric.", "np.").replace("np.multiarray.", "np.")
        raise UnsupportedNumpyError(UnsupportedNumpyError.message(name))
    return impl(*args, **kwargs)


# x.sum(), x.reshape(2, 3), x.T, ...: the ndarray methods fastad supports
def _method_reshape(x, *shape, order="C"):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return reshape(x, shape, order=order)


def _method_transpose(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return transpose(x, axes or None)


_METHODS = {
    "sum": sum_, "prod": prod, "max": max_, "min": min_, "mean": mean, "var": var, "std": std,
    "cumsum": cumsum, "dot": dot, "reshape": _method_reshape, "ravel": ravel,
    "flatten": ravel, "transpose": _method_transpose, "squeeze": squeeze, "clip": clip,
    "copy": copy, "trace": trace, "diagonal": diagonal, "swapaxes": HANDLED[np.swapaxes],
    "any": lambda x, axis=None, keepdims=False: reduction("max", _mask(x), axis, keepdims),
    "all": lambda x, axis=None, keepdims=False: reduction("min", _mask(x), axis, keepdims),
}


def array_method(x, name):
    if name == "T":
        return transpose(x)
    if name == "mT":
        return HANDLED[np.swapaxes](x, -1, -2)
    if name in _METHODS:
        return functools.partial(_METHODS[name], x)
    if name in PROPERTIES:
        return PROPERTIES[name](x)
    if name[:2] == "__" or not hasattr(np.ndarray, name):
        raise AttributeError(f"'{type(x).__name__}' object has no attribute {name!r}")
    raise UnsupportedMethodError(
        f"fastad: the ndarray method .{name}() is not supported on traced values; fastad "
        f"supports {', '.join(sorted(m for m in _METHODS if m[0] != '_'))}, .T, "
        f"{', '.join('.' + p for p in sorted(PROPERTIES))} and the numpy functions of "
        "docs/numpy.md (call np.<function>(x) where one exists).")


# TracedArray's operators and numpy's protocols are implemented here
_tracer.install_array_surface(sys.modules[__name__])

# structural functions composed from the records above (registered into HANDLED)
from fastad import numpy_extra  # noqa: E402,F401
