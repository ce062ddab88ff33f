"""Recording helpers shared by everything that writes records from Python: the numpy
surface (arrays.py, numpy_extra.py), derivatives inside a trace (nested.py), custom rules
(custom.py), the call path (_replay.pyx) and the tools that read a traced function's
outputs (sparse.py).

They turn Python values into slots of a tape -- constants get slots, lists and object
arrays of traced scalars become index arrays, a broadcast becomes a contiguous range -- and
read where a traced function's output and auxiliary data live.  Nothing here is numpy's
API; arrays.py is.
"""
import math

import numpy as np

from fastad._tracer import Traced, TracedArray, new_scalar
from fastad.errors import ComplexValueError, EscapedTracerError, MixedTracesError

__all__ = ["tape_of", "as_traced", "slots_of", "contiguous", "wrap", "size", "empty",
           "output_slots", "split_aux", "aux_spec"]


def tape_of(*xs):
    """The tape shared by the traced values among xs (nested lists included)."""
    tape = None
    for x in xs:
        if isinstance(x, (list, tuple)):
            t = tape_of(*x)
        elif type(x) in (Traced, TracedArray):
            t = x.tape
        elif isinstance(x, np.ndarray) and x.dtype == object:
            t = tape_of(*x.ravel().tolist())
        else:
            t = None
        if t is not None:
            if tape is not None and t is not tape:
                for stale in (t, tape):
                    if not stale.recording:
                        raise EscapedTracerError(EscapedTracerError.message())
                raise MixedTracesError(MixedTracesError.message())
            tape = t
    return tape


def as_traced(tape, x):
    """x as a TracedArray (or a Traced for a scalar) of `tape`: constants get slots."""
    if type(x) in (Traced, TracedArray):
        return x
    if isinstance(x, np.ndarray) and x.dtype == object or (
            isinstance(x, (list, tuple)) and tape_of(x) is not None):
        idx = slots_of(tape, x)      # [0.0, x[0]], [x, x + 2]: as numpy's float array
        return TracedArray.from_idx(tape, idx) if idx.ndim else new_scalar(tape, int(idx))
    arr = np.asarray(x)
    if arr.dtype.kind == "c":
        raise ComplexValueError(ComplexValueError.message("a value in a traced computation"))
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"fastad: cannot use a {arr.dtype} value in a traced computation")
    if arr.ndim == 0:
        return new_scalar(tape, tape.const(float(arr)))
    if arr.size == 0:
        return TracedArray.from_idx(tape, np.zeros(arr.shape, dtype=np.int64))
    return TracedArray.from_range(tape, tape.const_array(arr), arr.shape)


def slots_of(tape, x):
    """An int64 array of the slots holding x's elements (constants get slots)."""
    if type(x) is TracedArray or type(x) is Traced:
        if x.tape is not tape:        # an escaped value (or another trace's): refuse
            tape_of(x, new_scalar(tape, 0))
        return x.idx if type(x) is TracedArray else np.array(x.slot, dtype=np.int64)
    if isinstance(x, np.ndarray) and x.dtype == object:
        out = np.empty(x.shape, dtype=np.int64)
        for i, e in np.ndenumerate(x):
            out[i] = e.slot if type(e) is Traced else tape.const(float(e))
        return out
    if isinstance(x, (list, tuple)):
        if tape_of(x) is None:
            return slots_of(tape, as_traced(tape, x))
        parts = [slots_of(tape, e) for e in x]
        if len({p.shape for p in parts}) > 1:
            raise ValueError("fastad: setting an array element with a sequence: the nested "
                             "lists have different lengths ("
                             f"{sorted({p.shape for p in parts})})")
        return np.array(parts, dtype=np.int64)
    return slots_of(tape, as_traced(tape, x))


def contiguous(tape, x, shape):
    """First slot of a contiguous C-order range holding x broadcast to `shape`."""
    if type(x) is TracedArray and x.shape == tuple(shape):
        start = x.range_start()
        if start >= 0:
            return start
    if type(x) is not TracedArray and type(x) is not Traced and not (
            isinstance(x, np.ndarray) and x.dtype == object):
        return tape.const_array(np.broadcast_to(np.asarray(x, dtype=np.float64), shape))
    return tape.gather(np.broadcast_to(slots_of(tape, x), shape))


def wrap(tape, start, shape, is_mask=False):
    """The result of a ranged record: a Traced for shape (), else a TracedArray."""
    shape = tuple(shape)
    if shape == ():
        return new_scalar(tape, start)
    return TracedArray.from_range(tape, start, shape, is_mask)


def size(shape):
    """Elements of an array of this shape."""
    return math.prod(shape)


def empty(tape, shape):
    """A traced array of this (zero-size) shape."""
    return TracedArray.from_idx(tape, np.zeros(shape, dtype=np.int64))


def output_slots(tape, out):
    """(slots, shape) of a traced function's output: a scalar, an array, or a constant."""
    if type(out) not in (Traced, TracedArray):
        arr = np.asarray(out) if not isinstance(out, (list, tuple)) else None
        if arr is None or arr.dtype.kind not in "fiub" and arr.dtype != object:
            raise TypeError(f"fastad: the function must return a float or an array, got "
                            f"{type(out).__name__}")
        if arr.dtype != object:
            return np.array(slots_of(tape, arr.astype(np.float64)), dtype=np.int64).ravel(), \
                arr.shape
    x = as_traced(tape, out)
    return np.asarray(slots_of(tape, x), dtype=np.int64).ravel(), tuple(x.shape)


def split_aux(out, has_aux):
    """(output, aux) of a traced function's return value: with has_aux it must be a pair."""
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("fastad: with has_aux=True the function must return a pair "
                        f"(output, auxiliary data), got {type(out).__name__}")
    return out


def aux_spec(tape, aux):
    """How to rebuild `aux` (has_aux) at replay: traced leaves are read from their slots,
    other leaves are kept as they were when traced."""
    from fastad.pytree import tree_flatten
    leaves, treedef = tree_flatten(aux)
    specs = []
    for leaf in leaves:
        if type(leaf) is Traced:
            specs.append(("slot", leaf.slot))
        elif type(leaf) is TracedArray:
            specs.append(("slots", np.asarray(leaf.idx)))
        else:
            specs.append(("const", leaf))
    return treedef, specs
