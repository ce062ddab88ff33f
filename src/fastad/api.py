"""fastad's public differentiation API: grad, value_and_grad, jvp, record.

Argument checking lives here (what JAX users expect: `argnums` as an int or a tuple, clear
errors); the per-call work is done by `fastad._replay.Compiled`, which traces the function
once per argument signature and replays the tape in C afterwards.
"""
import functools
import weakref

import numpy as np

from fastad._replay import Compiled, push_trace, pop_trace
from fastad._tape import Tape
from fastad._tracer import make_inputs, output_slot
from fastad.pytree import tree_map

__all__ = ["grad", "value_and_grad", "jvp", "record", "vjp", "jacfwd", "jacrev", "jacobian",
           "hessian", "hvp", "hessian_vector_product", "stop_gradient"]


def _check_argnums(argnums):
    """Normalise argnums to (tuple, was_a_tuple), with JAX's error for anything else."""
    if isinstance(argnums, int) and not isinstance(argnums, bool):
        return (argnums,), False
    if isinstance(argnums, (tuple, list)) and all(
            isinstance(a, int) and not isinstance(a, bool) for a in argnums):
        if not argnums:
            raise ValueError("fastad: argnums=() selects no argument to differentiate")
        return tuple(argnums), True
    raise TypeError(f"fastad: argnums must be an int or a tuple of ints, got {argnums!r}")


def _check_callable(fun, who):
    if not callable(fun):
        raise TypeError(f"fastad.{who}: expected a function to differentiate, got "
                        f"{type(fun).__name__} {fun!r}")


def _wrap(fun, argnums, mode, replay, who, has_aux=False, native="auto"):
    _check_callable(fun, who)
    nums, many = _check_argnums(argnums)
    compiled = Compiled(fun, nums, many, mode, replay, has_aux)
    compiled.native = _check_native(native)
    functools.update_wrapper(compiled, fun)
    return compiled


def _check_native(native):
    """native= of the wrappers: "auto", "always" or "never" (docs/native.md)."""
    if native not in ("auto", "always", "never"):
        raise ValueError(f"fastad: native must be 'auto', 'always' or 'never', got {native!r}")
    return native


def grad(fun, argnums=0, *, has_aux=False, replay=True, native="auto"):
    """Gradient of a scalar-valued function, by reverse mode (backpropagation).

    Returns a function with `fun`'s arguments that returns the gradient with respect to
    argument `argnums`: a float for a float argument, an ndarray of the argument's shape for
    an array, a tuple of these if `argnums` is a tuple.  Other arguments are not
    differentiated: floats and float arrays among them are tape inputs (new values are
    honoured at replay), anything else (ints, strings, ...) is part of the cache key.

    The first call for an argument signature traces `fun` into a tape; later calls replay
    the tape in C without running `fun`'s Python code.  Comparisons `fun` makes are
    rechecked at every replay and a changed outcome retraces, so branches are always
    right.  Values `fun` reads from globals or closures are frozen at trace time: pass
    them as arguments, or use ``replay=False`` to trace on every call.

    Arguments may be pytrees (nested tuples, lists and dicts of floats and arrays); the
    gradient then has the argument's structure.  With ``has_aux=True``, `fun` returns
    ``(output, aux)`` and the result is ``(gradient, aux)``.

    >>> import numpy as np, fastad as fd
    >>> fd.grad(lambda x: x * np.sin(x))(0.0)
    0.0
    """
    return _wrap(fun, argnums, "grad", replay, "grad", has_aux, native)


def value_and_grad(fun, argnums=0, *, has_aux=False, replay=True, native="auto"):
    """Like `grad`, but the returned function gives ``(fun(*args), gradient)`` (with
    ``has_aux=True``: ``((output, aux), gradient)``, as in JAX).  ``native``: when the tape
    runs as machine code, "auto", "always" or "never" (docs/native.md)."""
    return _wrap(fun, argnums, "value_and_grad", replay, "value_and_grad", has_aux, native)


# jvp and vjp take the function anew on every call (JAX's signature), so their tapes must
# be kept somewhere that outlives one call: a cache keyed weakly by the function.  The
# cached Compiled reaches the function only through a weak reference, so the entry, and
# its tapes, die with the function.  This is fastad's one module-level mutable state.
_CALL_CACHE = weakref.WeakKeyDictionary()


def _cached_compiled(fun, key, make):
    """The Compiled `make(caller)` cached for (fun, key); caller calls fun weakly."""
    try:
        ref = weakref.ref(fun)
        per_fun = _CALL_CACHE.setdefault(fun, {})
    except TypeError:         # not weak-referenceable: a Compiled for this call only
        return make(fun)
    compiled = per_fun.get(key)
    if compiled is None:
        def caller(*args, **kwargs):
            return ref()(*args, **kwargs)   # alive: the caller was handed fun to call
        caller.__name__ = getattr(fun, "__name__", "function")
        compiled = per_fun[key] = make(caller)
    return compiled


def jvp(fun, primals, tangents):
    """Forward mode: ``(fun(*primals), directional derivative along tangents)``.

    `primals` and `tangents` are tuples of equal length; each tangent has its primal's
    type and shape.  Every primal is differentiated.  Like grad, the tape is recorded on
    the first call for a signature and replayed afterwards.

    >>> import fastad as fd
    >>> fd.jvp(lambda x, y: x * y, (2.0, 3.0), (1.0, 0.0))
    (6.0, 3.0)
    """
    _check_callable(fun, "jvp")
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("fastad.jvp: primals and tangents must be tuples, e.g. "
                        "jvp(f, (x,), (v,)); got "
                        f"{type(primals).__name__} and {type(tangents).__name__}")
    if len(primals) != len(tangents):
        raise ValueError(f"fastad.jvp: {len(primals)} primals but {len(tangents)} tangents; "
                         "give one tangent per primal")
    n = len(primals)
    compiled = _cached_compiled(fun, ("jvp", n),
                                lambda f: Compiled(f, tuple(range(n)), True, "jvp", True))
    return compiled.run(tuple(primals), {}, tuple(tangents))


def vjp(fun, *primals, has_aux=False):
    """Reverse mode for any output: ``(out, vjp_fn)``, where ``vjp_fn(cotangent)`` returns
    a tuple with the cotangent of each primal (one reverse sweep per call).  With
    ``has_aux=True``: ``(out, vjp_fn, aux)``.

    >>> import numpy as np, fastad as fd
    >>> out, f_vjp = fd.vjp(lambda x: x ** 2, np.array([1.0, 3.0]))
    >>> f_vjp(np.ones(2))[0]
    array([2., 6.])
    """
    _check_callable(fun, "vjp")
    n = len(primals)
    compiled = _cached_compiled(fun, ("vjp", n, has_aux),
                                lambda f: Compiled(f, tuple(range(n)), True, "vjp", True, has_aux))
    return compiled.run(tuple(primals), {}, None)


def jacfwd(fun, argnums=0, *, has_aux=False, replay=True, native="auto"):
    """Jacobian by forward mode: one tangent sweep per input element.  The result has shape
    ``out.shape + arg.shape`` (a tuple of such arrays for tuple `argnums`)."""
    return _wrap(fun, argnums, "jacfwd", replay, "jacfwd", has_aux, native)


def jacrev(fun, argnums=0, *, has_aux=False, replay=True, native="auto"):
    """Jacobian by reverse mode: one reverse sweep per output element.  The result has
    shape ``out.shape + arg.shape`` (a tuple of such arrays for tuple `argnums`)."""
    return _wrap(fun, argnums, "jacrev", replay, "jacrev", has_aux, native)


def jacobian(fun, argnums=0, *, has_aux=False, replay=True, native="auto"):
    """Jacobian ``out.shape + arg.shape``, by the cheaper sweep for the shapes at hand: one
    reverse sweep per output element when there are fewer outputs than inputs, one tangent
    sweep per input element otherwise -- chosen at every call on the same replayed tape
    (``cache_info()`` counts the sweeps of each kind)."""
    return _wrap(fun, argnums, "jacobian", replay, "jacobian", has_aux, native)


def hessian(fun, argnums=0, *, has_aux=False, replay=True, native="auto"):
    """Hessian of a scalar function, ``arg.shape + arg.shape``: forward mode over the
    recorded reverse sweep (the gradient's computation is itself a tape; one tangent sweep
    over it per input element, in C).  With ``has_aux=True``: ``(hessian, aux)``."""
    _check_callable(fun, "hessian")
    return jacfwd(grad(fun, argnums, has_aux=has_aux, replay=replay, native=native), argnums,
                  has_aux=has_aux, replay=replay, native=native)


def hvp(fun, argnums=0, *, replay=True, native="auto"):
    """Hessian-vector product: ``hvp(fun)(x, v, *rest)`` is H_x fun @ v, of x's shape, where
    x is argument `argnums` and `rest` the other arguments in order -- scipy's
    ``hessp(x, p, *args)`` signature for argnums=0.  Forward over reverse: one tangent sweep
    in C over the recorded gradient computation per call; no retrace per vector.  x and v
    may be pytrees of the same structure."""
    _check_callable(fun, "hvp")
    if not isinstance(argnums, int) or isinstance(argnums, bool):
        raise TypeError("fastad.hvp: argnums must be a single int")
    g = grad(fun, argnums, replay=replay, native=native)
    gjvp = Compiled(lambda *args: g(*args), (argnums,), False, "jvp", replay)
    gjvp.native = _check_native(native)

    @functools.wraps(fun)
    def hvp_fn(x, v, *rest):
        if not 0 <= argnums <= len(rest):
            raise TypeError(f"fastad.hvp: argnums={argnums} needs at least {argnums} other "
                            f"arguments after x and v, got {len(rest)}")
        args = rest[:argnums] + (x,) + rest[argnums:]
        tangents = tuple([tree_map(_zero_tangent, a) for a in rest[:argnums]] + [v]
                         + [tree_map(_zero_tangent, a) for a in rest[argnums:]])
        return gjvp.run(args, {}, tangents)[1]

    return hvp_fn


def _zero_tangent(a):
    if isinstance(a, (float, int, np.floating, np.ndarray)) and not isinstance(a, bool):
        return np.zeros_like(a, dtype=float)
    return a


hessian_vector_product = hvp


def stop_gradient(x):
    """x, with no derivative flowing through it (a constant for differentiation)."""
    from fastad._tape import op_table
    from fastad._tracer import Traced, TracedArray, apply_op
    import numpy as np
    if type(x) in (Traced, TracedArray):
        code = [name for name, kind in op_table()].index("_stop")
        return apply_op(code, 1, (x,), "stop_gradient")
    return x


def record(fun, *args):
    """Trace `fun(*args)` once and return its `Tape` (the low-level interface).

    Every float and float-array argument is an input, flattened in order (ints and
    everything else are passed through unchanged); the tape's
    records, values, and the forward/tangent/reverse sweeps can then be inspected and run
    directly.  This is what the higher-level functions are built on.
    """
    import numpy as np
    _check_callable(fun, "record")
    tape = Tape()
    flat, layout, targs = [], [], []
    for a in args:
        if isinstance(a, (float, np.floating)):
            layout.append(None)
            flat.append(np.array([float(a)]))
        elif isinstance(a, np.ndarray) and a.dtype.kind == "f":
            layout.append(a.shape)
            flat.append(np.asarray(a, dtype=np.float64).ravel())
        else:
            layout.append(False)
    data = np.concatenate(flat) if flat else np.zeros(0)
    traced = iter(make_inputs(tape, data, [s for s in layout if s is not False]))
    targs = [next(traced) if s is not False else a for s, a in zip(layout, args)]
    push_trace(tape)
    try:
        out = fun(*targs)
    except BaseException:
        tape._abort()
        raise
    finally:
        pop_trace()
    slot = output_slot(tape, out)
    if slot < 0:
        tape._abort()
        raise TypeError(f"fastad.record: the function must return a real scalar, got "
                        f"{type(out).__name__}")
    tape._finish(slot)
    return tape
