"""Derivatives taken inside a function that is being traced (nested differentiation).

When fastad.grad(f)(x) is called while an enclosing function is being traced, f is not
traced on a tape of its own: it is recorded into the enclosing tape, and its reverse
sweep is recorded after it (csrc/emit.c: reverse mode producing records).  The gradient
is then an ordinary traced value of the enclosing tape, so the enclosing derivative
differentiates through it, to any order, and replays it in C with everything else.

The differentiated arguments enter as fresh copies (a `_copy` record), and only the
copies' adjoints are returned.  A value the inner function closes over is therefore a
constant for the inner derivative, which is what keeps perturbations apart:
d/dx [x * d/dy (x + y)] is 1, not 2 (ForwardDiff.jl issue 83).
"""
import numpy as np

from fastad._tracer import Traced, TracedArray, apply_op, is_traced, new_scalar, output_slot
from fastad import _record, arrays
from fastad.ops import Kind, Op

_COPY = Op.COPY


def _azmul(g, t):
    """A recorded derivative times a tangent, as the tangent sweep multiplies: 0 when either
    is 0, even if the other is infinite or NaN (docs/conventions.md, "Zeros beat
    infinities")."""
    if not is_traced(g):            # 0.0: no adjoint reached the variable
        shape = np.broadcast_shapes(np.shape(g), tuple(getattr(t, "shape", np.shape(t))))
        return np.zeros(shape) if shape else 0.0
    return apply_op(Op.AZMUL, Kind.BINARY, (g, t), "_azmul")


def _fresh(tape, x, i):
    """A new variable of `tape` holding x's value (the inner derivative's input)."""
    if type(x) is Traced:
        return new_scalar(tape, tape.op1(_COPY, x.slot))
    if type(x) is TracedArray and x.shape == ():          # a 0-d array stays 0-d
        return TracedArray.from_idx(tape, np.array(tape.op1(_COPY, int(x.idx[()]))))
    if type(x) is TracedArray or (isinstance(x, np.ndarray) and x.dtype.kind in "fiu"):
        shape = x.shape
        if not shape:
            return _fresh(tape, float(x), i)
        if _record.size(shape) == 0:
            return _record.empty(tape, shape)
        start = _record.contiguous(tape, x, shape)
        n = _record.size(shape)
        return TracedArray.from_range(tape, tape.op_ranged(_COPY, start, 1, start, 1, n), shape)
    if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, bool):
        return new_scalar(tape, tape.op1(_COPY, tape.const(float(x))))
    raise TypeError(f"fastad: argument {i} is differentiated (in argnums) but is a "
                    f"{type(x).__name__}; pass a float or a float numpy array.")


def _adjoint(tape, adj, x):
    """The recorded adjoint of fresh variable x (a traced value, or 0.0)."""
    if type(x) is Traced:
        s = adj[x.slot]
        return new_scalar(tape, int(s)) if s >= 0 else 0.0
    idx = adj[x.idx]
    if (idx < 0).any():
        idx = np.where(idx < 0, tape.const(0.0), idx)
    return TracedArray.from_idx(tape, idx)


def run(fun, argnums, many, mode, tape, args, kwargs, tangents, not_scalar, has_aux=False):
    """fastad.grad / value_and_grad / jvp / jacrev / jacfwd of `fun` at `args`, recorded
    into `tape`.  `mode` is the transform's Mode (fastad._replay): its family says which
    derivative to record; a recorded Jacobian is the same whichever sweep it was asked for."""
    args = list(args)
    for i in argnums:
        args[i] = _fresh(tape, args[i], i)
    lo = len(tape)
    out = fun(*args, **kwargs)
    out, aux = _record.split_aux(out, has_aux)
    family = mode.family
    if family == "jacobian":
        jac = _jacobian(tape, lo, out, [args[i] for i in argnums], many)
        return (jac, aux) if has_aux else jac
    if family == "jvp" and type(out) is not Traced:     # arrays, lists, tuples, dicts
        return _jvp_tree(tape, lo, out, [args[i] for i in argnums], tangents)
    if family == "vjp":     # the Jacobian recorded now; vjp_fn contracts it with a cotangent
        jac = _jacobian(tape, lo, out, [args[i] for i in argnums], True)
        fn = _VJP(jac, out.shape if type(out) is TracedArray else ())
        return (out, fn, aux) if has_aux else (out, fn)
    slot = output_slot(tape, out)
    if slot < 0:
        raise TypeError(not_scalar(out))
    adj = tape.emit_reverse(lo, len(tape), slot)
    value = new_scalar(tape, slot)
    grads = [_adjoint(tape, adj, args[i]) for i in argnums]
    if family == "jvp":      # a scalar output's directional derivative is <gradient, tangent>
        total = 0.0
        for g, t in zip(grads, tangents):
            total = total + arrays.sum_(_azmul(g, t)) \
                if type(g) is TracedArray else total + _azmul(g, t)
        return value, total
    g = tuple(grads) if many else grads[0]
    if has_aux:
        return ((value, aux), g) if mode.value else (g, aux)
    return (value, g) if mode.value else g


def _jvp_tree(tape, lo, out, variables, tangents):
    """(out, tangent of out) for an output of any structure: per leaf, the rows of its
    Jacobian (recorded reverse sweeps) contracted with the tangents.  An array or list
    leaf becomes a traced array, as at top level it becomes a float array."""
    from fastad.pytree import tree_flatten, tree_unflatten
    leaves, treedef = tree_flatten(out)
    values, tans = [], []
    for leaf in leaves:
        if isinstance(leaf, (bool, np.bool_, str)) or leaf is None:
            raise TypeError(f"fastad.jvp: the function's output has a {type(leaf).__name__} "
                            "leaf; outputs must be floats or float arrays")
        tape_leaf = _record.tape_of(leaf)
        if tape_leaf is None:                      # a constant: no tangent
            values.append(leaf)
            tans.append(np.zeros_like(np.asarray(leaf, dtype=np.float64))
                        if np.ndim(leaf) else 0.0)
            continue
        leaf = _record.as_traced(tape, leaf)
        jac = _jacobian(tape, lo, leaf, variables, True)
        total = 0.0
        for J, t in zip(jac, tangents):
            axes = tuple(range(np.ndim(leaf), np.ndim(J)))
            total = arrays.ufunc(np.add, (total, arrays.sum_(_azmul(J, t), axis=axes)))
        values.append(leaf)
        tans.append(total)
    return tree_unflatten(treedef, values), tree_unflatten(treedef, tans)


def _jacobian(tape, lo, out, variables, many):
    """Rows d out[i] / d variables, one recorded reverse sweep per output element."""
    slots, shape = _record.output_slots(tape, out)
    hi = len(tape)
    rows = [[_adjoint(tape, tape.emit_reverse(lo, hi, int(s)), v) for v in variables]
            for s in slots]
    parts = []
    for k, v in enumerate(variables):
        vshape = v.shape if type(v) is TracedArray else ()
        idx = np.array([_record.slots_of(tape, row[k]) for row in rows], dtype=np.int64)
        idx = idx.reshape(tuple(shape) + tuple(vshape))
        parts.append(TracedArray.from_idx(tape, idx) if idx.ndim else new_scalar(tape, int(idx)))
    return tuple(parts) if many else parts[0]


class _VJP:
    """vjp_fn inside a trace: cotangent -> (sum over the output's axes of ct * J, ...)."""

    def __init__(self, jac, out_shape):
        self.jac, self.out_shape = jac, tuple(out_shape)

    def __call__(self, ct):
        k = len(self.out_shape)
        if np.shape(ct) != self.out_shape:
            raise ValueError(f"fastad: vjp_fn expects a cotangent of the output's shape "
                             f"{self.out_shape}, got {np.shape(ct)}")
        res = []
        for J in self.jac:
            extra = np.ndim(J) - k
            if not k:
                res.append(J * ct)
                continue
            c = np.reshape(ct, self.out_shape + (1,) * extra)
            res.append(np.sum(J * c, axis=tuple(range(k))))
        return tuple(res)
