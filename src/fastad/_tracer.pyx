# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Traced values: `Traced` (a scalar) and `TracedArray` (a view of slots).

While a function is traced its arguments are replaced by these types.  Every arithmetic
operator, numpy ufunc or comparison on them appends one record to the C tape (one
extension-type call, no Python-level bookkeeping) and returns a new traced value.
Comparisons return plain bools and record a guard, so `if x > 0:` works and is rechecked
when the tape is replayed.

Design (what lives where, and why):
  (a) C (csrc/tape.c): appending a record evaluates it with the same forward kernel that
      replays it, so recording and replay cannot disagree.
  (b) Cython, here: the operators and the scalar fast paths (x[i], x * y, x > 0), because
      they run once per traced operation: a free-listed extension type and one C call per
      op, no Python list, dict or closure touched.
  (c) Python (arrays.py): numpy's functions on traced arrays, reached through
      __array_function__ / __array_ufunc__; each records O(1) ranged records, so Python
      speed does not matter there.
"""
cimport cython
from libc.stdint cimport int32_t, int64_t
from fastad._tape cimport Tape, fa_const, fa_op1, fa_op2, fa_guard, fa_input

import numpy as np
from fastad.ops import KIND, NAME, Kind, Op
from fastad.errors import (EscapedTracerError, MixedTracesError, TracedConversionError,
                           UnsupportedNumpyError)


# ---------------------------------------------------------------------------------------
# Dispatch tables, derived from the C op table (fastad.ops): op names are numpy's ufunc names.
cdef int NEGATIVE = Op.NEGATIVE, SQUARE = Op.SQUARE, ABSOLUTE = Op.ABSOLUTE
cdef int ADD = Op.ADD, SUBTRACT = Op.SUBTRACT, MULTIPLY = Op.MULTIPLY
cdef int DIVIDE = Op.DIVIDE, POWER = Op.POWER, RINT = Op.RINT
cdef int FLOOR = Op.FLOOR, CEIL = Op.CEIL, TRUNC = Op.TRUNC
cdef int LESS = Op.LESS, LESS_EQUAL = Op.LESS_EQUAL
cdef int EQUAL = Op.EQUAL, NOT_EQUAL = Op.NOT_EQUAL
cdef int UNARY = Kind.UNARY, BINARY = Kind.BINARY, GUARD = Kind.GUARD


def _ufunc_table():
    """numpy (and scipy.special) ufunc -> (op code, kind, swap operands)."""
    try:
        import scipy.special as sp
    except ImportError:
        sp = None
    table = {}
    for code, kind in KIND.items():
        if kind == Kind.STRUCT:
            continue
        name = NAME[code]
        uf = getattr(np, name, None)
        if uf is None and sp is not None:
            uf = getattr(sp, name, None)
        if isinstance(uf, np.ufunc):
            table[uf] = (int(code), int(kind), False)
    # numpy spellings that are the same op
    table[np.greater] = (LESS, GUARD, True)
    table[np.greater_equal] = (LESS_EQUAL, GUARD, True)
    table[np.float_power] = (POWER, BINARY, False)
    table[np.fabs] = (ABSOLUTE, UNARY, False)
    table[np.true_divide] = (DIVIDE, BINARY, False)
    return table


UFUNCS = _ufunc_table()


class _ScalarDtype:
    """Traced.dtype: numpy's float64 dtype, except that `.type(v)` keeps a traced v traced:
    numpy's mean and var of a list convert their result with ret.dtype.type(ret / n),
    which for np.float64 itself would be a float() that loses the derivative."""
    dtype = np.dtype(np.float64)      # np.dtype(x.dtype), np.finfo(x.dtype) read this

    def type(self, v=0.0):
        return v if type(v) is Traced else np.float64(v)

    def __getattr__(self, name):
        return getattr(np.dtype(np.float64), name)

    def __eq__(self, other):
        return np.dtype(np.float64) == other

    def __hash__(self):
        return hash(np.dtype(np.float64))

    def __repr__(self):
        return "dtype('float64')"


SCALAR_DTYPE = _ScalarDtype()


# ---------------------------------------------------------------------------------------
# Errors that say what happened and what to do.

cdef object escaped(Tape t):
    raise EscapedTracerError(EscapedTracerError.message())


cdef object mixed_tapes():
    raise MixedTracesError(MixedTracesError.message())


cdef object other_tape(Tape other):
    """A traced value of another tape met this one: an escaped value, or nesting."""
    if not other.recording:
        escaped(other)
    mixed_tapes()


_FIX_ASSIGN = (
    "Make the array from the traced input instead, and the assignment records it:\n"
    "    y = np.zeros_like(x)        # or np.zeros(n, like=x), or fastad.zeros(n)\n"
    "    y[i] = ...\n"
    "(or build a list and call np.array(list) or np.stack(list)).")


def _caller():
    """(kind, name) of what is converting a traced value: ("assign", None) for an item
    assignment into a numpy array in the user's code, ("library", "scipy.integrate.quad")
    when numpy/scipy Python code does it, else ("user", None)."""
    import sys
    f = sys._getframe(0)      # Cython functions push no frame: this is the caller's
    mod = f.f_globals.get("__name__", "") or ""
    top = mod.split(".")[0]
    if top in ("numpy", "scipy"):
        outer = f
        while f is not None and (f.f_globals.get("__name__", "") or "").split(".")[0] == top:
            outer, f = f, f.f_back
        mod = outer.f_globals.get("__name__", "") or top
        return "library", _public_name(mod, outer.f_code.co_name)
    try:
        import dis
        if dis.opname[f.f_code.co_code[f.f_lasti]] == "STORE_SUBSCR":
            return "assign", None
    except (IndexError, AttributeError):
        pass
    return "user", None


def _public_name(mod, name):
    """'np.mean' for (numpy._core.fromnumeric, mean): the shortest public module path
    that exports `name`."""
    import sys
    parts = [p for p in mod.split(".") if not p.startswith("_")]
    for k in range(1, len(parts) + 1):
        m = sys.modules.get(".".join(parts[:k]))
        if m is not None and getattr(m, name, None) is not None:
            return (".".join(parts[:k]) + "." + name).replace("numpy.", "np.", 1)
    return ".".join(parts + [name]).replace("numpy.", "np.", 1)


def _library_error(name):
    raise UnsupportedNumpyError(UnsupportedNumpyError.message(
        name, "it converted a traced value to a plain float (it runs code fastad cannot see "
        "into), which would lose the derivative. Use numpy functions fastad supports "
        "(docs/numpy.md), give the function a derivative with fastad.custom_vjp, or call it "
        "only on values that are not differentiated"))


def _conversion_error(Traced t, what):
    kind, name = _caller()
    if kind == "assign":
        raise TracedConversionError(TracedConversionError.message(
            f"a traced value {t!r} was assigned into a numpy float array made without "
            "fastad (e.g. y = np.zeros(n)); numpy would store a plain float and lose the "
            "derivative. " + _FIX_ASSIGN))
    if kind == "library":
        _library_error(name)
    raise TracedConversionError(TracedConversionError.message(
        f"{what} was called on a traced value {t!r}. That would turn it into a "
        "constant: its derivative would be lost and replays would reuse the traced value. "
        "Keep it as a traced value: use numpy or fastad functions (np.sin, fd.sin) instead of "
        "math functions, and comparisons (x > 0) instead of float(); int(x) and math.floor(x) "
        "give integers (recorded as guards). To fill an array with traced values, make it "
        "with np.zeros_like(x) (or np.zeros(n, like=x), fastad.zeros(n)) and assign into it, "
        "or build a list and call np.array(list) or np.stack(list)."))


# ---------------------------------------------------------------------------------------
# Recording helpers

cdef inline Traced new_traced(Tape t, int32_t slot):
    cdef Traced v = Traced.__new__(Traced)
    v.tape = t
    v.slot = slot
    return v


cdef int32_t slot_of(Tape t, object x) except -2:
    """The slot of `x` on tape t: a traced value's own, or a constant's; -1 if x is not a
    real scalar (the caller returns NotImplemented)."""
    cdef int32_t s
    if type(x) is Traced:
        if (<Traced>x).tape is not t:
            other_tape((<Traced>x).tape)
        return (<Traced>x).slot
    if type(x) is float or type(x) is int or isinstance(x, (float, int, np.floating, np.integer)):
        t.check(fa_const(t.c, <double>x, &s))
        return s
    if isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "fiub":
        t.check(fa_const(t.c, <double>x[()], &s))
        return s
    return -1


cdef inline bint is_sequence(object x):
    return type(x) is list or type(x) is tuple


cdef object int_guard(Traced x, int op, str what):
    """The integer op(x) (trunc, floor or ceil) as a plain int, with a guard op(x) == k
    recorded: the tape replays while op(x) stays k and retraces when it changes."""
    cdef Tape t = x.tape
    cdef int32_t r
    if not t.recording:
        escaped(t)
    t.check(fa_op1(t.c, op, x.slot, &r))
    v = t.c.val[r]
    if v != v:
        raise ValueError(f"fastad: {what} of NaN: cannot convert NaN to an integer")
    if v in (float("inf"), float("-inf")):
        raise OverflowError(f"fastad: {what} of an infinite value: cannot convert to an integer")
    if not compare(t, new_traced(t, r), v, EQUAL):
        raise RuntimeError("fastad internal error: an integer guard does not hold")
    return int(v)


cdef object unary(Traced x, int op):
    cdef Tape t = x.tape
    cdef int32_t r
    if not t.recording:
        escaped(t)
    t.check(fa_op1(t.c, op, x.slot, &r))
    return new_traced(t, r)


cdef object binary(Tape t, object x, object y, int op):
    """Record op(x, y) where at least one of x, y is a Traced of tape t."""
    cdef int32_t a, b, r
    if not t.recording:
        escaped(t)
    a = slot_of(t, x)
    b = slot_of(t, y)
    if a == -1 or b == -1:
        if is_sequence(x) or is_sequence(y):      # x[0] - [3, 5, 2], [1, 2] * t
            return _arrays().elementwise(op, BINARY, (x, y), NAME[op])
        return NotImplemented
    t.check(fa_op2(t.c, op, a, b, &r))
    return new_traced(t, r)


cdef object compare(Tape t, object x, object y, int op):
    """Record a guard for `x op y` and return its outcome as a bool."""
    cdef int32_t a, b
    cdef int outcome
    if not t.recording:
        escaped(t)
    a = slot_of(t, x)
    b = slot_of(t, y)
    if a == -1 or b == -1:
        if is_sequence(x) or is_sequence(y):      # t < [1, 2]: a 0/1 mask, like numpy's
            return _arrays().elementwise(op, GUARD, (x, y), NAME[op])
        return NotImplemented
    t.check(fa_guard(t.c, op, a, b, &outcome))
    return outcome != 0


cdef Tape tape_of(tuple inputs):
    cdef Tape t = None
    for x in inputs:
        if type(x) is Traced:
            if t is None:
                t = (<Traced>x).tape
            elif (<Traced>x).tape is not t:
                other_tape((<Traced>x).tape)
        elif type(x) is TracedArray:
            if t is None:
                t = (<TracedArray>x).tape
            elif (<TracedArray>x).tape is not t:
                other_tape((<TracedArray>x).tape)
    return t


cdef bint has_array(tuple inputs):
    for x in inputs:
        if type(x) is TracedArray or (isinstance(x, np.ndarray) and x.ndim > 0):
            return True
    return False


def apply_ufunc(ufunc, method, tuple inputs, dict kwargs):
    """numpy's __array_ufunc__ protocol for traced values."""
    if method != "__call__" or ufunc is np.matmul or has_array(inputs):
        return _arrays().array_ufunc(ufunc, method, inputs, kwargs)
    # scalars: the hot path of loop-written programs, kept free of the array layer
    if kwargs:
        if "out" in kwargs:
            raise UnsupportedNumpyError(UnsupportedNumpyError.out_message(f"np.{ufunc.__name__}"))
        raise TypeError(f"fastad: np.{ufunc.__name__} keyword arguments {sorted(kwargs)} are not "
                        "supported on traced values")
    entry = UFUNCS.get(ufunc)
    if entry is None:         # composed ufuncs (remainder, deg2rad, ...) or a refusal
        return _arrays().ufunc(ufunc, inputs)
    code, kind, swap = entry
    if swap:
        inputs = (inputs[1], inputs[0])
    return apply_op(code, kind, inputs, ufunc.__name__)


def apply_op(int code, int kind, tuple inputs, str name):
    """Record op `code` (of `kind`: UNARY, BINARY or GUARD) on traced operands."""
    cdef Tape t = tape_of(inputs)
    if len(inputs) != (1 if kind == UNARY else 2):
        raise TypeError(f"fastad: {name} takes {1 if kind == UNARY else 2} arguments, "
                        f"got {len(inputs)}")
    if has_array(inputs):
        return _arrays().elementwise(code, kind, inputs, name)
    if kind == UNARY:
        if type(inputs[0]) is not Traced:
            raise TypeError(f"fastad: {name} got an operand of type "
                            f"{type(inputs[0]).__name__}; expected a real number")
        return unary(inputs[0], code)
    a, b = inputs
    res = binary(t, a, b, code) if kind == BINARY else compare(t, a, b, code)
    if res is NotImplemented:
        bad = a if slot_of(t, a) == -1 else b
        raise TypeError(f"fastad: {name} got an operand of type {type(bad).__name__}; "
                        "expected real numbers")
    return res


# ---------------------------------------------------------------------------------------

@cython.final
@cython.freelist(512)
cdef class Traced:
    """A scalar being traced: a slot on a tape.  Behaves like a float."""
    cdef readonly Tape tape
    cdef readonly int32_t slot

    shape = ()
    ndim = 0
    size = 1

    @property
    def dtype(self):
        return SCALAR_DTYPE

    def __init__(self, *args, **kwargs):
        # fastad makes these with Traced.__new__, which skips __init__; one made by hand
        # would have no tape
        raise TypeError("fastad: Traced values are made by fastad while it traces a "
                        "function; they cannot be created directly")

    def __repr__(self):
        if 0 <= self.slot < self.tape.c.nslot:
            return f"Traced({self.tape.c.val[self.slot]!r})"
        return "Traced(<released>)"

    # arithmetic -------------------------------------------------------------------------
    def __add__(self, other):
        return binary(self.tape, self, other, ADD)

    def __radd__(self, other):
        return binary(self.tape, other, self, ADD)

    def __sub__(self, other):
        return binary(self.tape, self, other, SUBTRACT)

    def __rsub__(self, other):
        return binary(self.tape, other, self, SUBTRACT)

    def __mul__(self, other):
        return binary(self.tape, self, other, MULTIPLY)

    def __rmul__(self, other):
        return binary(self.tape, other, self, MULTIPLY)

    def __truediv__(self, other):
        return binary(self.tape, self, other, DIVIDE)

    def __rtruediv__(self, other):
        return binary(self.tape, other, self, DIVIDE)

    def __pow__(self, other, mod):
        if mod is not None:
            return NotImplemented
        if type(other) is int and other == 2:
            return unary(self, SQUARE)
        return binary(self.tape, self, other, POWER)

    def __rpow__(self, other, mod):
        if mod is not None:
            return NotImplemented
        return binary(self.tape, other, self, POWER)

    def __mod__(self, other):
        return _arrays().ufunc(np.remainder, (self, other))

    def __rmod__(self, other):
        return _arrays().ufunc(np.remainder, (other, self))

    def __floordiv__(self, other):
        return _arrays().ufunc(np.floor_divide, (self, other))

    def __rfloordiv__(self, other):
        return _arrays().ufunc(np.floor_divide, (other, self))

    def __divmod__(self, other):
        return (self // other, self % other)

    def __rdivmod__(self, other):
        return (other // self, other % self)

    def __neg__(self):
        return unary(self, NEGATIVE)

    def __pos__(self):
        return self

    def __abs__(self):
        return unary(self, ABSOLUTE)

    def __round__(self, ndigits=None):
        if ndigits is not None:
            raise TypeError("fastad: round(x, ndigits) is not supported on traced values; "
                            "use np.rint(x * 10**n) / 10**n")
        return unary(self, RINT)

    def round(self, decimals=0, out=None):
        """numpy's method spelling (np.round calls it)."""
        if decimals != 0 or out is not None:
            raise TypeError("fastad: only np.round(x) with decimals=0 is supported on traced values")
        return unary(self, RINT)

    # integers: plain ints, each with a guard on its value (see int_guard)
    def __floor__(self):
        return int_guard(self, FLOOR, "math.floor")

    def __ceil__(self):
        return int_guard(self, CEIL, "math.ceil")

    def __trunc__(self):
        return int_guard(self, TRUNC, "math.trunc")

    # comparisons: plain bools, recorded as guards ---------------------------------------
    def __lt__(self, other):
        return compare(self.tape, self, other, LESS)

    def __le__(self, other):
        return compare(self.tape, self, other, LESS_EQUAL)

    def __gt__(self, other):
        return compare(self.tape, other, self, LESS)

    def __ge__(self, other):
        return compare(self.tape, other, self, LESS_EQUAL)

    def __eq__(self, other):
        return compare(self.tape, self, other, EQUAL)

    def __ne__(self, other):
        return compare(self.tape, self, other, NOT_EQUAL)

    __hash__ = None

    def __bool__(self):
        return compare(self.tape, self, 0.0, NOT_EQUAL)

    # conversions that would leak the value -----------------------------------------------
    def __float__(self):
        _conversion_error(self, "float() (or a math-module function)")

    def __int__(self):
        return int_guard(self, TRUNC, "int()")

    def __index__(self):
        # numpy refuses float indices too; an explicit int(x) is an integer with a guard
        raise TypeError(f"fastad: a traced value {self!r} was used as an index or a count; "
                        "like a numpy float it is not an integer. Convert it with int(x) or "
                        "math.floor(x): that gives an int and records a guard on it.")

    def __complex__(self):
        _conversion_error(self, "complex()")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _arrays().array_function(func, args, kwargs)

    def __getattr__(self, name):
        # numpy's loops over object arrays (np.exp(np.array([t1, t2]))) call t.exp():
        # answer with the op of that name, so such arrays still differentiate
        entry = UFUNCS.get(getattr(np, name, None))
        if entry is not None and entry[1] == UNARY:
            return lambda: unary(self, entry[0])
        if entry is not None:       # binary loops call a.arctan2(b)
            return lambda other: apply_op(entry[0], entry[1],
                                          (other, self) if entry[2] else (self, other), name)
        if name[:2] != "__":       # x.astype(int), x.real, x.sum(), ...: as a 0-d array
            return _arrays().array_method(self, name)
        raise AttributeError(f"'Traced' object has no attribute {name!r}")


# Item assignment rebinds slots in a traced array's index array, and views share that
# array (as numpy views share memory), so a cached contiguity (TracedArray.start) of an
# array whose index array exists is trusted only if no assignment happened since it was
# checked.  A process-wide counter (bumped under the GIL; a spurious mismatch only costs a
# recheck) is the cheapest way to know.
cdef int64_t _mutations = 0


cdef inline bint start_valid(TracedArray a):
    return a.start >= 0 and (a._idx is None or a.seen == _mutations)


@cython.final
cdef class TracedArray:
    """An array being traced: for each element, the tape slot that holds it.

    The slots are kept as an integer index array (`idx`), so every view numpy can make --
    slices, steps, transposes, reshapes, broadcasts, integer-array and boolean-mask
    indexing -- is numpy indexing on `idx` and records nothing.  Arithmetic, ufuncs and
    numpy functions record O(1) ranged records (see fastad.arrays)."""
    cdef readonly Tape tape
    cdef readonly tuple shape
    cdef int64_t start        # first slot if the elements are that C-order range, else -1
    cdef object _idx          # int64 slot array of `shape`, built when first needed
    cdef readonly bint is_mask   # the 0/1 result of an array comparison
    cdef int64_t seen         # _mutations when `start` was last checked against _idx

    __array_priority__ = 1000

    def __init__(self, *args, **kwargs):
        raise TypeError("fastad: traced arrays are made by fastad while it traces a "
                        "function; they cannot be created directly")

    @staticmethod
    cdef TracedArray contiguous(Tape t, int64_t start, tuple shape):
        cdef TracedArray a = TracedArray.__new__(TracedArray)
        a.tape = t
        a.shape = shape
        a.start = start
        a._idx = None
        return a

    @staticmethod
    def from_range(Tape t, int64_t start, shape, bint is_mask=False):
        """The traced array of `shape` held by the slots start, start+1, ... (C order)."""
        cdef TracedArray a = TracedArray.contiguous(t, start, tuple(shape))
        a.is_mask = is_mask
        return a

    @staticmethod
    def from_idx(Tape t, idx, bint is_mask=False):
        """The traced array whose elements are the slots `idx` (an integer array)."""
        cdef TracedArray a = TracedArray.__new__(TracedArray)
        a.tape = t
        a._idx = np.asarray(idx, dtype=np.int64)
        a.shape = a._idx.shape
        a.start = -1
        a.is_mask = is_mask
        return a

    @property
    def idx(self):
        """The slot of every element (an int64 array of this array's shape)."""
        if self._idx is None:
            self._idx = np.arange(self.start, self.start + self.size, dtype=np.int64).reshape(self.shape)
            self.seen = _mutations
        return self._idx

    def range_start(self):
        """First slot if the elements are a contiguous C-order range of slots, else -1."""
        if start_valid(self):
            return self.start
        self.start = -1
        if self._idx is not None and self._idx.size:
            flat = self._idx.ravel()
            if flat[flat.size - 1] - flat[0] == flat.size - 1 and (
                    flat.size == 1 or bool(np.all(np.diff(flat) == 1))):
                self.start = int(flat[0])
                self.seen = _mutations
        return self.start

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        return f"TracedArray(shape={self.shape})"

    def __getitem__(self, key):
        cdef int64_t i, n
        if not self.tape.recording:
            escaped(self.tape)
        if type(key) is int and start_valid(self) and len(self.shape) == 1:
            i, n = key, self.shape[0]      # the scalar-loop fast path: x[i]
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of bounds for axis 0 with size {n}")
            return new_traced(self.tape, <int32_t>(self.start + i))
        if type(key) is TracedArray or type(key) is Traced or (
                type(key) is tuple and any(type(k) in (Traced, TracedArray) for k in key)):
            if type(key) is TracedArray and (<TracedArray>key).is_mask:
                raise TypeError("fastad: indexing with a traced boolean mask gives an array "
                                "whose shape depends on the values; use np.where(mask, x, 0) "
                                "(or a mask computed from data arguments) instead")
            raise TypeError("fastad: a traced value cannot be used as an index; convert it "
                            "with int(x) or math.floor(x) (an integer with a guard), or pass "
                            "indices as int or int-array arguments")
        sub = self.idx[key]
        if isinstance(sub, np.ndarray) and sub.ndim > 0:
            return TracedArray.from_idx(self.tape, sub, self.is_mask)
        if isinstance(sub, np.ndarray) and sub.ndim == 0:
            sub = sub[()]
        return new_traced(self.tape, <int32_t>sub)

    def __setitem__(self, key, value):
        """y[i] = v, y[mask] = v, y[1:-1] = x, y[i] += v: rebind the slots of the selected
        elements (no record; views see it, as numpy views see an assignment)."""
        global _mutations
        if not self.tape.recording:
            escaped(self.tape)
        if self.is_mask:
            raise TypeError("fastad: assigning into the result of a comparison (a traced "
                            "mask) is not supported; combine masks with &, | and ~ instead")
        if type(key) is TracedArray:        # a traced mask: y = where(mask, value, y)
            new = _arrays().where(key, value, self)
            if tuple(np.shape(new.idx)) != self.shape:
                raise ValueError(f"fastad: a traced mask of shape {key.shape} cannot select "
                                 f"from an array of shape {self.shape}")
            key, value = Ellipsis, new
        elif type(key) is Traced or (type(key) is tuple and any(
                type(k) in (Traced, TracedArray) for k in key)):
            raise TypeError("fastad: a traced value cannot be used as an index; convert it "
                            "with int(x) or math.floor(x) (an integer with a guard)")
        idx = self.idx
        if not idx.flags.writeable:
            raise ValueError("fastad: assignment destination is read-only (a broadcast or "
                             "diagonal view, as in numpy); assign into a .copy() of it")
        idx[key] = _arrays().slots_of(self.tape, value)
        _mutations += 1
        self.start = -1

    def __array__(self, dtype=None, copy=None):
        # np.array([x, 2 * x]) and np.asarray(x) cannot be intercepted by numpy's protocols;
        # an object array of traced scalars keeps them differentiable (element by element)
        if dtype is None or np.dtype(dtype) == object:
            out = np.empty(self.shape, dtype=object)
            for i, s in np.ndenumerate(self.idx):
                out[i] = new_traced(self.tape, <int32_t>s)
            return out
        kind, name = _caller()
        if kind == "assign":
            raise TracedConversionError(TracedConversionError.message(
                "a traced array was assigned into a numpy float array made without fastad "
                "(e.g. y = np.zeros(n)); numpy would store plain floats and lose the "
                "derivatives. " + _FIX_ASSIGN))
        if kind == "library":
            _library_error(name)
        raise TracedConversionError(TracedConversionError.message(
            "a traced array cannot be converted to a numpy float array (or assigned into "
            "one): its values would lose their derivatives. Use numpy functions on it "
            "directly, and build new arrays with np.concatenate, np.stack or np.where instead "
            "of assigning into a numpy array."))

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of a traced array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        return bool(self.reshape(())[()])

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _arrays().array_function(func, args, kwargs)

    def __getattr__(self, name):
        # numpy's array methods (x.sum(), x.reshape(...), x.T, ...) live in fastad.arrays
        return _arrays().array_method(self, name)

    # operators -------------------------------------------------------------------------
    def __add__(self, other): return _arrays().ufunc(np.add, (self, other))
    def __radd__(self, other): return _arrays().ufunc(np.add, (other, self))
    def __sub__(self, other): return _arrays().ufunc(np.subtract, (self, other))
    def __rsub__(self, other): return _arrays().ufunc(np.subtract, (other, self))
    def __mul__(self, other): return _arrays().ufunc(np.multiply, (self, other))
    def __rmul__(self, other): return _arrays().ufunc(np.multiply, (other, self))
    def __truediv__(self, other): return _arrays().ufunc(np.divide, (self, other))
    def __rtruediv__(self, other): return _arrays().ufunc(np.divide, (other, self))
    def __pow__(self, other, mod):
        if type(other) is int and other == 2:
            return _arrays().ufunc(np.square, (self,))
        return _arrays().ufunc(np.power, (self, other))
    def __rpow__(self, other, mod): return _arrays().ufunc(np.power, (other, self))
    def __matmul__(self, other): return _arrays().matmul(self, other)
    def __rmatmul__(self, other): return _arrays().matmul(other, self)
    def __mod__(self, other): return _arrays().ufunc(np.remainder, (self, other))
    def __rmod__(self, other): return _arrays().ufunc(np.remainder, (other, self))
    def __floordiv__(self, other): return _arrays().ufunc(np.floor_divide, (self, other))
    def __rfloordiv__(self, other): return _arrays().ufunc(np.floor_divide, (other, self))
    def __neg__(self): return _arrays().ufunc(np.negative, (self,))
    def __pos__(self): return self
    def __abs__(self): return _arrays().ufunc(np.absolute, (self,))
    def __lt__(self, other): return _arrays().ufunc(np.less, (self, other))
    def __le__(self, other): return _arrays().ufunc(np.less_equal, (self, other))
    def __gt__(self, other): return _arrays().ufunc(np.greater, (self, other))
    def __ge__(self, other): return _arrays().ufunc(np.greater_equal, (self, other))
    def __eq__(self, other): return _arrays().ufunc(np.equal, (self, other))
    def __ne__(self, other): return _arrays().ufunc(np.not_equal, (self, other))
    def __invert__(self): return _arrays().logical_not(self)
    def __and__(self, other): return _arrays().logical_and(self, other)
    def __rand__(self, other): return _arrays().logical_and(other, self)
    def __or__(self, other): return _arrays().logical_or(self, other)
    def __ror__(self, other): return _arrays().logical_or(other, self)
    __hash__ = None


# The numpy surface (fastad.arrays) sits above this module and implements TracedArray's
# operators and numpy's protocols; it installs itself here when it is imported, so this
# module imports nothing above it.  Set once, at import.
cdef object _surface = None


def install_array_surface(module):
    """Called by fastad.arrays at import: where TracedArray's operations are implemented."""
    global _surface
    _surface = module


cdef inline object _arrays():
    return _surface


def make_inputs(Tape t, double[::1] flat, list layout):
    """Register the tape's inputs from `flat` and return the traced arguments.

    layout: per argument, None for a scalar or a shape tuple for an array."""
    cdef int32_t s
    cdef Py_ssize_t i, pos = 0, n
    out = []
    for shape in layout:
        if shape is None:
            t.check(fa_input(t.c, flat[pos], &s))
            out.append(new_traced(t, s))
            pos += 1
            continue
        n = 1
        for d in shape:
            n *= d
        first = t.c.nslot
        for i in range(n):
            t.check(fa_input(t.c, flat[pos + i], &s))
        pos += n
        out.append(TracedArray.contiguous(t, first, tuple(shape)))
    return out


def output_slot(Tape t, out):
    """The slot holding the traced function's scalar output, or -1 if `out` is not a real
    scalar (a constant output becomes a constant slot)."""
    if type(out) is TracedArray and (<TracedArray>out).size == 1:
        # a size-1 output of any shape, as numpy's float() takes it
        out = new_traced((<TracedArray>out).tape, <int32_t>(<TracedArray>out).idx.ravel()[0])
    elif isinstance(out, np.ndarray) and out.size == 1 and out.dtype.kind in "fiuO":
        out = out.reshape(())[()]
    if type(out) is Traced and (<Traced>out).tape is not t:
        other_tape((<Traced>out).tape)
    if isinstance(out, (bool, np.bool_)):
        return -1
    return slot_of(t, out)


def is_traced(x):
    return type(x) is Traced or type(x) is TracedArray


def new_scalar(Tape t, int32_t slot):
    """The Traced scalar held by `slot` (for fastad.arrays)."""
    return new_traced(t, slot)
