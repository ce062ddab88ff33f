# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Trace once, replay in C: the call path of every fastad derivative wrapper.

A `Compiled` holds the user's function and, per argument signature, a short list of
tapes.  A call builds the signature, writes the inputs into a tape's workspace and runs
the forward sweep; if every guard holds it runs the derivative sweep and returns.  If a
guard fails it tries the next tape of that signature, and if none fits it traces the
function again and keeps the new tape in front.
"""
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np

from fastad._tape cimport Tape, Work, sweep_forward, sweep_tangent, sweep_reverse
from fastad._tracer import make_inputs, output_slot

cnp.import_array()

cdef enum Mode:
    GRAD = 0
    VALUE_AND_GRAD = 1
    JVP = 2
    VALUE = 3

MODES = {"grad": GRAD, "value_and_grad": VALUE_AND_GRAD, "jvp": JVP, "value": VALUE}

# How many tapes (branch outcomes) one signature keeps; the least recently used goes.
MAX_TAPES_PER_SIGNATURE = 8

cdef object SCALAR = "f"        # signature entry of a scalar input
cdef object UNCACHEABLE = object()


cdef class Spans:
    """Where each argument's inputs sit among the tape's inputs: None for a static
    argument, else (offset, shape) with shape None for a scalar."""
    cdef list items          # the input values: Python floats and float64 C-contiguous arrays
    cdef list spans
    cdef int64_t n


cdef object as_float_array(object a, int i, bint diff):
    kind = a.dtype.kind
    if kind == "f":
        return np.ascontiguousarray(a, dtype=np.float64)
    if kind in "iu" and diff:
        return np.ascontiguousarray(a, dtype=np.float64)
    if kind == "c":
        raise TypeError(f"fastad: argument {i} is a complex array ({a.dtype}); fastad "
                        "differentiates real float64 programs. Pass the real and imaginary "
                        "parts as two float arrays.")
    if kind == "O":
        raise TypeError(f"fastad: argument {i} is an object array; pass a float array "
                        "(np.asarray(x, dtype=float)).")
    if diff:
        raise TypeError(f"fastad: argument {i} is differentiated (in argnums) but is a "
                        f"{a.dtype} array; pass a float array.")
    return None   # an int/bool/str data array: static, part of the signature


cdef object classify(int i, object a, bint diff, Spans sp):
    """Signature entry of argument i; appends its inputs to sp (if it has any)."""
    t = type(a)
    if t is float or (t is not bool and isinstance(a, (float, np.floating))) or (
            diff and (t is int or isinstance(a, np.integer))):
        if isinstance(a, (complex, np.complexfloating)):
            raise TypeError(f"fastad: argument {i} is complex ({a!r}); fastad "
                            "differentiates real programs.")
        sp.spans.append((sp.n, None))
        sp.items.append(float(a))
        sp.n += 1
        return SCALAR
    if t is np.ndarray:
        arr = as_float_array(a, i, diff)
        if arr is not None:
            sp.spans.append((sp.n, a.shape))
            sp.items.append(arr)
            sp.n += arr.size
            return a.shape
        sp.spans.append(None)
        return ("array", a.dtype.str, a.shape, a.tobytes())
    if isinstance(a, (complex, np.complexfloating)):
        raise TypeError(f"fastad: argument {i} is complex ({a!r}); fastad differentiates "
                        "real programs.")
    if diff:
        raise TypeError(f"fastad: argument {i} is differentiated (in argnums) but is a "
                        f"{t.__name__}; pass a float or a float numpy array.")
    sp.spans.append(None)
    return static_key(a)


cdef object static_key(object a):
    # static arguments are keyed by value: a new value means a new trace
    try:
        hash(a)
    except TypeError:
        return UNCACHEABLE
    return (type(a), a)


cdef void write_inputs(list items, double *dst):
    cdef int64_t pos = 0, n
    cdef cnp.ndarray arr
    for x in items:
        if type(x) is float:
            dst[pos] = <double>x
            pos += 1
        else:
            arr = <cnp.ndarray>x
            n = cnp.PyArray_SIZE(arr)
            if n:
                memcpy(dst + pos, cnp.PyArray_DATA(arr), n * sizeof(double))
            pos += n


cdef object read_span(tuple span, double *src):
    cdef int64_t off = span[0]
    shape = span[1]
    if shape is None:
        return src[off]
    out = np.empty(shape)
    cdef int64_t n = out.size
    if n:
        memcpy(cnp.PyArray_DATA(out), src + off, n * sizeof(double))
    return out


cdef class Compiled:
    """A traced-and-replayed derivative of `fun` (what fastad.grad & co. return)."""
    cdef readonly object fun
    cdef tuple argnums
    cdef bint many            # argnums was given as a tuple: return a tuple
    cdef int mode
    cdef bint replay
    cdef dict cache
    cdef readonly long traces, replays, retraces
    cdef dict __dict__        # lets functools.wraps copy __name__, __doc__, ...

    def __init__(self, fun, argnums, bint many, str mode, bint replay=True):
        self.fun = fun
        self.argnums = tuple(argnums)
        self.many = many
        self.mode = MODES[mode]
        self.replay = replay
        self.cache = {}

    def __call__(self, *args, **kwargs):
        return self.run(args, kwargs, None)

    def cache_info(self):
        """Counts: traces (times the Python function ran), replays, retraces (traces caused
        by a failed guard), signatures and tapes cached."""
        return {"traces": self.traces, "replays": self.replays, "retraces": self.retraces,
                "signatures": len(self.cache),
                "tapes": sum(len(v) for v in self.cache.values())}

    def tapes(self):
        """The cached tapes, most recently used first per signature."""
        return [t for v in self.cache.values() for t in v]

    def cache_clear(self):
        self.cache.clear()

    cdef tuple argnums_for(self, int nargs):
        if not self.argnums:
            return self.argnums
        lo, hi = min(self.argnums), max(self.argnums)
        if hi >= nargs or lo < -nargs:
            bad = hi if hi >= nargs else lo
            raise TypeError(
                f"fastad: differentiating with respect to argnums={self.argnums!r} requires at "
                f"least {max(hi + 1, -lo)} positional arguments, but the call passed {nargs}.")
        if lo >= 0:
            return self.argnums
        return tuple(a % nargs for a in self.argnums)

    cpdef object run(self, tuple args, dict kwargs, tuple tangents):
        cdef Spans sp = Spans.__new__(Spans)
        cdef Py_ssize_t i, nargs = len(args)
        sp.items = []
        sp.spans = []
        sp.n = 0
        argnums = self.argnums_for(nargs)
        parts = []
        for i in range(nargs):
            parts.append(classify(i, args[i], i in argnums, sp))
        if kwargs:
            for k in sorted(kwargs):
                parts.append((k, static_key(kwargs[k])))
        key = tuple(parts)
        if tangents is not None:
            tan_items = self.tangent_items(args, tangents, sp)
        else:
            tan_items = None
        cacheable = self.replay
        for p in parts:
            if p is UNCACHEABLE or (type(p) is tuple and len(p) == 2 and p[1] is UNCACHEABLE):
                cacheable = False
        tapes = self.cache.get(key) if cacheable else None
        if tapes:
            for i in range(len(tapes)):
                res = self.replay_tape(<Tape>tapes[i], sp, argnums, tan_items)
                if res is not None:
                    self.replays += 1
                    if i:
                        tapes.insert(0, tapes.pop(i))
                    return res
            self.retraces += 1
        tape, res = self.trace(args, kwargs, sp, argnums, tan_items)
        if cacheable:
            if tapes is None:
                tapes = self.cache[key] = []
            tapes.insert(0, tape)
            del tapes[MAX_TAPES_PER_SIGNATURE:]
        return res

    cdef list tangent_items(self, tuple args, tuple tangents, Spans sp):
        items = []
        for i, (span, t) in enumerate(zip(sp.spans, tangents)):
            if span is None:
                continue
            if span[1] is None:
                if isinstance(t, np.ndarray) and t.shape == ():
                    t = t[()]
                if not isinstance(t, (float, int, np.floating, np.integer)) or isinstance(t, bool):
                    raise TypeError(f"fastad.jvp: the tangent of primal {i} must be a float "
                                    f"like the primal, got {type(t).__name__}")
                items.append(float(t))
            else:
                arr = np.ascontiguousarray(t, dtype=np.float64)
                if arr.shape != span[1]:
                    raise ValueError(f"fastad.jvp: primal {i} has shape {span[1]} but its "
                                     f"tangent has shape {arr.shape}")
                items.append(arr)
        return items

    cdef object replay_tape(self, Tape tape, Spans sp, tuple argnums, list tan_items):
        """Replay one tape; None if one of its guards fails."""
        cdef Work *w = tape.acquire()
        cdef int64_t failed
        try:
            write_inputs(sp.items, w.val)
            with nogil:
                failed = sweep_forward(tape.c, w.val)
            if failed >= 0:
                return None
            return self.derivatives(tape, w, sp, argnums, tan_items)
        finally:
            tape.release(w)

    cdef object derivatives(self, Tape tape, Work *w, Spans sp, tuple argnums, list tan_items):
        """Run the mode's derivative sweep on workspace w (values already current)."""
        cdef int32_t out = tape.output_slot
        cdef double value = w.val[out]
        if self.mode == VALUE:
            return value
        if self.mode == JVP:
            tape.ensure_tan(w)
            write_inputs(tan_items, w.tan)
            with nogil:
                sweep_tangent(tape.c, w.val, w.tan)
            return (value, w.tan[out])
        tape.ensure_adj(w)
        with nogil:
            sweep_reverse(tape.c, w.val, w.adj, out, 1.0)
        if self.many:
            g = tuple([read_span(sp.spans[a], w.adj) for a in argnums])
        else:
            g = read_span(sp.spans[argnums[0]], w.adj)
        if self.mode == GRAD:
            return g
        return (value, g)

    cdef tuple trace(self, tuple args, dict kwargs, Spans sp, tuple argnums, list tan_items):
        cdef Tape tape = Tape()
        cdef Work *w
        self.traces += 1
        flat = np.zeros(sp.n)
        write_inputs(sp.items, <double *>cnp.PyArray_DATA(flat))
        layout = [s[1] for s in sp.spans if s is not None]
        traced = iter(make_inputs(tape, flat, layout))
        targs = [next(traced) if s is not None else a for s, a in zip(sp.spans, args)]
        try:
            out = self.fun(*targs, **kwargs)
        except BaseException:
            tape.finish(-1)       # the tape is dropped; its traced values are now escaped
            raise
        slot = output_slot(tape, out)
        if slot < 0:
            tape.finish(-1)
            raise TypeError(self.not_scalar(out))
        tape.finish(slot)
        w = tape.acquire()
        try:
            res = self.derivatives(tape, w, sp, argnums, tan_items)
        finally:
            tape.release(w)
        return tape, res

    cdef str not_scalar(self, out):
        name = getattr(self.fun, "__name__", repr(self.fun))
        shape = getattr(out, "shape", None)
        what = f"an array of shape {shape}" if shape is not None else f"a {type(out).__name__}"
        return (f"fastad: {name} must return a real scalar (a float or a 0-d array) to be "
                f"differentiated this way, but it returned {what}. To differentiate the sum of "
                f"its outputs, return out.sum(); for the derivative of every output, use "
                f"fastad.jacobian (coming soon) or take grad of each component.")
