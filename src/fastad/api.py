"""fastad's public differentiation API: grad, value_and_grad, jvp, record.

Argument checking lives here (what JAX users expect: `argnums` as an int or a tuple, clear
errors); the per-call work is done by `fastad._replay.Compiled`, which traces the function
once per argument signature and replays the tape in C afterwards.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import functools
import weakref

import numpy as np

from fastad._replay import Compiled, is_input, push_trace, pop_trace
from fastad._tape import Tape
from fastad._tracer import Traced, TracedArray, apply_op, make_inputs, output_slot
from fastad.ops import Kind, Op
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


def _wrap(fun, argnums, mode, has_aux=False, **options):
    """The Compiled function of transform `mode` (a name of fastad._replay.MODES); options
    are Compiled's: replay, random, optimize, native."""
    _check_callable(fun, mode)
    nums, many = _check_argnums(argnums)
    compiled = Compiled(fun, nums, many, mode, has_aux=has_aux, **options)
    functools.update_wrapper(compiled, fun)
    return compiled


def grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False,
         replay: bool = True, random: str = "fresh", optimize: bool = True,
         native: str = "auto") -> Callable[..., Any]:
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
    them as arguments, or use ``replay=False`` to trace on every call.  Random numbers
    `fun` draws are not: by default (``random="fresh"``) every call gets fresh draws from
    the same generator, as plain Python would; ``random="freeze"`` reuses the first call's
    draws (docs/conventions.md, "Random draws").  Each new tape is optimized once (loops
    rolled back up, docs/design.md "The optimizer"); with ``optimize=False`` it is replayed
    as recorded.  A tape replayed often is compiled to machine code in the background
    (``native="auto"``; ``"always"`` compiles before the first replay, ``"never"`` keeps
    the interpreter; docs/native.md), with the interpreter's results bit for bit.

    Arguments may be pytrees (nested tuples, lists and dicts of floats and arrays); the
    gradient then has the argument's structure.  With ``has_aux=True``, `fun` returns
    ``(output, aux)`` and the result is ``(gradient, aux)``.

    >>> import numpy as np, fastad as fd
    >>> fd.grad(lambda x: x * np.sin(x))(0.0)
    0.0
    """
    return _wrap(fun, argnums, "grad", has_aux, replay=replay, random=random,
                 optimize=optimize, native=native)


def value_and_grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                   has_aux: bool = False, replay: bool = True, random: str = "fresh",
                   optimize: bool = True, native: str = "auto") -> Callable[..., Any]:
    """Like `grad`, but the returned function gives ``(fun(*args), gradient)`` (with
    ``has_aux=True``: ``((output, aux), gradient)``, as in JAX)."""
    return _wrap(fun, argnums, "value_and_grad", has_aux, replay=replay, random=random,
                 optimize=optimize, native=native)


# jvp and vjp take the function anew on every call (JAX's signature), so their tapes must
# be kept somewhere that outlives one call: a cache keyed weakly by the function.  The
# cached Compiled reaches the function only through a weak reference, so the entry, and
# its tapes, die with the function.  This is fastad's one module-level mutable state.
_CALL_CACHE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


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


def jvp(fun: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], *,
        optimize: bool = True) -> tuple[Any, Any]:
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
    compiled = _cached_compiled(fun, ("jvp", n, optimize),
                                lambda f: Compiled(f, tuple(range(n)), True, "jvp",
                                                   optimize=optimize))
    return compiled.run(tuple(primals), {}, tuple(tangents))


def vjp(fun: Callable[..., Any], *primals: Any, has_aux: bool = False,
        optimize: bool = True) -> tuple[Any, ...]:
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
    compiled = _cached_compiled(fun, ("vjp", n, has_aux, optimize),
                                lambda f: Compiled(f, tuple(range(n)), True, "vjp",
                                                   has_aux=has_aux, optimize=optimize))
    return compiled.run(tuple(primals), {}, None)


def jacfwd(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False,
           replay: bool = True, random: str = "fresh", optimize: bool = True,
           native: str = "auto", sparse: bool = False) -> Callable[..., Any]:
    """Jacobian by forward mode: one tangent sweep per input element.  The result has shape
    ``out.shape + arg.shape`` (a tuple of such arrays for tuple `argnums`).  With
    ``sparse=True``: a `scipy.sparse.csr_array`, one tangent sweep per column colour
    (docs/sparse.md)."""
    if sparse:
        return _sparse_jacobian(fun, argnums, "fwd", has_aux, replay)
    return _wrap(fun, argnums, "jacfwd", has_aux, replay=replay, random=random,
                 optimize=optimize, native=native)


def jacrev(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False,
           replay: bool = True, random: str = "fresh", optimize: bool = True,
           native: str = "auto", sparse: bool = False) -> Callable[..., Any]:
    """Jacobian by reverse mode: one reverse sweep per output element.  The result has
    shape ``out.shape + arg.shape`` (a tuple of such arrays for tuple `argnums`).  With
    ``sparse=True``: a `scipy.sparse.csr_array`, one reverse sweep per row colour."""
    if sparse:
        return _sparse_jacobian(fun, argnums, "rev", has_aux, replay)
    return _wrap(fun, argnums, "jacrev", has_aux, replay=replay, random=random,
                 optimize=optimize, native=native)


def jacobian(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False,
             replay: bool = True, random: str = "fresh", optimize: bool = True,
             native: str = "auto", sparse: bool = False) -> Callable[..., Any]:
    """Jacobian ``out.shape + arg.shape``, by the cheaper sweep for the shapes at hand: one
    reverse sweep per output element when there are fewer outputs than inputs, one tangent
    sweep per input element otherwise -- chosen at every call on the same replayed tape
    (``cache_info()`` counts the sweeps of each kind).  With ``sparse=True``: a
    `scipy.sparse.csr_array` of shape (outputs, inputs) from the tape's sparsity pattern,
    one sweep per colour, forward or reverse, whichever is fewer (docs/sparse.md)."""
    if sparse:
        return _sparse_jacobian(fun, argnums, "auto", has_aux, replay)
    return _wrap(fun, argnums, "jacobian", has_aux, replay=replay, random=random,
                 optimize=optimize, native=native)


def _sparse_jacobian(fun, argnums, mode, has_aux, replay):
    from fastad.sparse import sparse_jacobian
    _check_callable(fun, "jacobian")
    return sparse_jacobian(fun, argnums, mode=mode, has_aux=has_aux, replay=replay)


def hessian(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False,
            replay: bool = True, random: str = "fresh", optimize: bool = True,
            native: str = "auto", sparse: bool = False) -> Callable[..., Any]:
    """Hessian of a scalar function, ``arg.shape + arg.shape``: forward mode over the
    recorded reverse sweep (the gradient's computation is itself a tape; one tangent sweep
    over it per input element, in C).  With ``has_aux=True``: ``(hessian, aux)``.  With
    ``sparse=True``: a symmetric `scipy.sparse.csr_array`, one forward-over-reverse sweep
    per star colour (docs/sparse.md)."""
    _check_callable(fun, "hessian")
    if sparse:
        from fastad.sparse import sparse_hessian
        return sparse_hessian(fun, argnums, has_aux=has_aux, replay=replay)
    options: dict[str, Any] = dict(replay=replay, random=random, optimize=optimize,
                                   native=native)
    return jacfwd(grad(fun, argnums, has_aux=has_aux, **options), argnums, has_aux=has_aux,
                  **options)


def hvp(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, replay: bool = True,
        random: str = "fresh", optimize: bool = True, native: str = "auto") -> Callable[..., Any]:
    """Hessian-vector product: ``hvp(fun)(x, v, *rest)`` is H_x fun @ v, of x's shape, where
    x is argument `argnums` and `rest` the other arguments in order -- scipy's
    ``hessp(x, p, *args)`` signature for argnums=0.  Forward over reverse: one tangent sweep
    in C over the recorded gradient computation per call; no retrace per vector.  x and v
    may be pytrees of the same structure."""
    _check_callable(fun, "hvp")
    if not isinstance(argnums, int) or isinstance(argnums, bool):
        raise TypeError("fastad.hvp: argnums must be a single int")
    g = grad(fun, argnums, replay=replay, random=random, optimize=optimize, native=native)
    return _HVP(fun, argnums, Compiled(g, (argnums,), False, "jvp", replay=replay,
                                       random=random, optimize=optimize, native=native))


class _HVP:
    """What `hvp` returns: ``hvp_fn(x, v, *rest)``; pickles with its recorded tapes."""

    def __init__(self, fun, argnums, gjvp):
        self.fun, self.argnums, self.gjvp = fun, argnums, gjvp
        functools.update_wrapper(self, fun)

    def __call__(self, x, v, *rest):
        argnums = self.argnums
        if not 0 <= argnums <= len(rest):
            raise TypeError(f"fastad.hvp: argnums={argnums} needs at least {argnums} other "
                            f"arguments after x and v, got {len(rest)}")
        args = rest[:argnums] + (x,) + rest[argnums:]
        tangents = tuple([tree_map(_zero_tangent, a) for a in rest[:argnums]] + [v]
                         + [tree_map(_zero_tangent, a) for a in rest[argnums:]])
        return self.gjvp.run(args, {}, tangents)[1]

    def __reduce__(self):
        return (_HVP, (self.fun, self.argnums, self.gjvp))


def _zero_tangent(a):
    if isinstance(a, (float, int, np.floating, np.ndarray)) and not isinstance(a, bool):
        return np.zeros_like(a, dtype=float)
    return a


hessian_vector_product = hvp


def stop_gradient(x: Any) -> Any:
    """x, with no derivative flowing through it (a constant for differentiation)."""
    if type(x) in (Traced, TracedArray):
        # Op is built from the op table at import time, so mypy cannot see its members
        return apply_op(Op.STOP, Kind.UNARY, (x,), "stop_gradient")  # type: ignore[attr-defined]
    return x


def is_record_input(a: Any) -> bool:
    """fastad.record's rule (and fastad.trace's): a float or a float array is a tape input;
    ints and everything else are passed through unchanged (the rule of the call path,
    fastad._replay.is_input, with nothing differentiated)."""
    return is_input(a, False)


def record(fun: Callable[..., Any], *args: Any) -> Tape:
    """Trace `fun(*args)` once and return its `Tape` (the low-level interface).

    Every float and float-array argument is an input, flattened in order (ints and
    everything else are passed through unchanged); the tape's
    records, values, and the forward/tangent/reverse sweeps can then be inspected and run
    directly.  This is what the higher-level functions are built on.
    """
    _check_callable(fun, "record")
    tape = Tape()
    flat: list[Any] = []
    layout: list[Any] = []
    for a in args:
        if not is_record_input(a):
            layout.append(False)
        elif isinstance(a, np.ndarray):
            layout.append(a.shape)
            flat.append(np.asarray(a, dtype=np.float64).ravel())
        else:
            layout.append(None)
            flat.append(np.array([float(a)]))
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
