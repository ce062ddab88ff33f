"""Custom derivative rules: fastad.custom_vjp, in the spirit of jax.custom_vjp.

For a function fastad cannot trace (one that calls SciPy, a C library or a simulator) or
one whose derivative you know better::

    @fd.custom_vjp
    def f(x, y):                     # plain numpy/scipy on floats and arrays
        return scipy.special.gammaln(x) * y

    def f_fwd(x, y):                 # the value and whatever the rule needs later
        return f(x, y), (x, y)

    def f_bwd(res, g):               # the output's cotangent g -> one cotangent per argument
        x, y = res
        return g * scipy.special.digamma(x) * y, g * scipy.special.gammaln(x)

    f.defvjp(f_fwd, f_bwd)

Called on traced values, f is recorded as one CALLBACK record: every sweep that reaches it
calls back into Python -- f for values (at replay too), f_fwd then f_bwd for the reverse
sweep.  Forward mode (jvp, jacfwd, hessian) and derivatives of derivatives cannot go
through it, as in JAX, and say so.
"""
import functools

import numpy as np

from fastad import _record
from fastad._tracer import Traced, TracedArray

__all__ = ["custom_vjp"]


class custom_vjp:
    """Decorator: give `fun` a custom reverse-mode rule with `.defvjp(fwd, bwd)`."""

    def __init__(self, fun):
        self.fun = fun
        self.fwd = self.bwd = None
        functools.update_wrapper(self, fun)

    def defvjp(self, fwd, bwd):
        """fwd(*args) -> (output, residuals); bwd(residuals, g) -> tuple of one cotangent
        per argument (None, or anything, for arguments that are not traced)."""
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args):
        traced = [i for i, a in enumerate(args) if type(a) in (Traced, TracedArray)]
        if not traced:
            return self.fun(*args)
        if self.bwd is None:
            raise TypeError(f"fastad: {self.__name__} is a custom_vjp function without a rule; "
                            "call .defvjp(fwd, bwd) before differentiating it")
        tape = _record.tape_of(*[args[i] for i in traced])
        idx = np.concatenate([np.asarray(_record.slots_of(tape, args[i])).ravel() for i in traced])
        cb = _Callback(self, args, traced)
        out = cb.forward(tape.slot_values(idx), first=True)
        start = _record.contiguous(tape, TracedArray.from_idx(tape, idx), idx.shape)
        first = tape.callback(start, idx.size, out, cb)
        return _record.wrap(tape, first, cb.out_shape)


class _Callback:
    """One recorded call of a custom_vjp function: where its traced arguments' values sit
    in the callback's input vector, and its output's shape."""

    def __init__(self, custom, args, traced):
        self.custom, self.name = custom, custom.__name__
        self.args = list(args)           # static arguments stay as they were
        self.traced = traced
        self.shapes = [np.shape(args[i]) if type(args[i]) is TracedArray else () for i in traced]
        self.out_shape = None

    def _args(self, x):
        args, k = list(self.args), 0
        for i, shape in zip(self.traced, self.shapes):
            n = int(np.prod(shape, dtype=np.int64))
            args[i] = float(x[k]) if shape == () else x[k:k + n].reshape(shape).copy()
            k += n
        return args

    def forward(self, x, first=False):
        out = np.asarray(self.custom.fun(*self._args(x)), dtype=np.float64)
        if first:
            self.out_shape = out.shape
            if out.size == 0:
                raise TypeError(f"fastad: custom_vjp function {self.name} returned an empty array")
        elif out.shape != self.out_shape:
            raise ValueError(f"fastad: custom_vjp function {self.name} returned shape "
                             f"{out.shape}, but {self.out_shape} when it was traced")
        return out.ravel()

    def backward(self, x, g):
        args = self._args(x)
        _, res = self.custom.fwd(*args)
        cts = self.custom.bwd(res, g.reshape(self.out_shape) if self.out_shape else float(g[0]))
        if not isinstance(cts, tuple) or len(cts) != len(args):
            raise TypeError(f"fastad: the bwd rule of {self.name} must return a tuple with one "
                            f"cotangent per argument ({len(args)}), got {cts!r}")
        parts = []
        for i, shape in zip(self.traced, self.shapes):
            c = np.asarray(cts[i], dtype=np.float64)
            if c.shape != shape:
                raise ValueError(f"fastad: the bwd rule of {self.name} returned a cotangent of "
                                 f"shape {c.shape} for argument {i} of shape {shape}")
            parts.append(c.ravel())
        return np.concatenate(parts)
