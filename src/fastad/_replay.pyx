# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Trace once, replay in C: the call path of every fastad derivative wrapper.

A `Compiled` holds the user's function and a cache of `Signature`s: what kind each
argument is (a scalar input, an array input of some shape, or a static value) and the
tapes recorded for it.  A call computes the signature key, writes the inputs straight
into a tape's workspace and runs the forward sweep; if every guard holds it runs the
derivative sweep and returns.  If a guard fails it tries the signature's next tape, and
if none fits it traces the function again and keeps the new tape in front.
"""
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
cimport numpy as cnp
import threading

import numpy as np

from fastad._tape cimport (Tape, Work, sweep_forward, sweep_tangent, sweep_reverse,
                           sweep_reverse_seeded)
from fastad._tracer import is_traced, make_inputs, output_slot
from fastad.pytree import tree_flatten, tree_unflatten
from fastad import native

cnp.import_array()

cdef enum:
    GRAD = 0
    VALUE_AND_GRAD = 1
    JVP = 2
    VJP = 3
    JACFWD = 4
    JACREV = 5
    JACOBIAN = 6       # either sweep, whichever the shapes make cheaper
    # Below this many records a sweep takes less time than releasing and re-taking the
    # GIL (about 100 ns), so small tapes are swept with the GIL held.
    NOGIL_MIN_RECORDS = 2000
    # argument kinds
    STATIC = 0
    SCALAR_IN = 1
    ARRAY_IN = 2

MODES = {"grad": GRAD, "value_and_grad": VALUE_AND_GRAD, "jvp": JVP, "vjp": VJP,
         "jacfwd": JACFWD, "jacrev": JACREV, "jacobian": JACOBIAN}

# How many tapes (branch outcomes) a signature keeps, and how many signatures a function
# keeps; the least recently used goes first.
cdef enum:
    MAX_TAPES_PER_SIGNATURE = 8
    MAX_SIGNATURES = 64

cdef object SCALAR = "f"          # key part of a scalar input
MODE_NAMES = {v: k for k, v in MODES.items()}

# Nested differentiation needs the trace a call happens inside: each thread keeps the
# stack of tapes it is recording (per-thread, so threads trace independently), and
# `active_traces` counts open traces over all threads, so that a call made outside any
# trace -- the common case -- pays one C integer test for it.
cdef int active_traces = 0
_local = threading.local()


cdef list trace_stack():
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def push_trace(Tape tape):
    """Mark `tape` as being recorded by this thread (fastad.record and traces use it)."""
    global active_traces
    trace_stack().append(tape)
    active_traces += 1


def pop_trace():
    global active_traces
    trace_stack().pop()
    active_traces -= 1
cdef object UNCACHEABLE = object()


# ------------------------------------------------------------------------ signatures

cdef object array_part(object a, Py_ssize_t i, bint diff):
    kind = a.dtype.kind
    if kind == "f" or (diff and kind in "iu"):
        return ("a", a.shape)
    if kind == "c":
        raise TypeError(f"fastad: argument {i} is a complex array ({a.dtype}); fastad "
                        "differentiates real programs. Pass the real and imaginary parts "
                        "as two float arrays.")
    if kind == "O":
        raise TypeError(f"fastad: argument {i} is an object array; pass a float array "
                        "(np.asarray(x, dtype=float)).")
    if diff:
        raise TypeError(f"fastad: argument {i} is differentiated (in argnums) but is a "
                        f"{a.dtype} array; pass a float array.")
    # int/bool/str data arrays are static: traced functions may index with them
    return ("s", a.dtype.str, a.shape, a.tobytes())


cdef object key_part(Py_ssize_t i, object a, bint diff):
    """The signature key part of argument i (raises for arguments fastad cannot take)."""
    t = type(a)
    if t is float:
        return SCALAR
    if t is np.ndarray:
        return array_part(a, i, diff)
    if isinstance(a, (complex, np.complexfloating)):
        raise TypeError(f"fastad: argument {i} is complex ({a!r}); fastad differentiates "
                        "real programs.")
    if t is not bool and not isinstance(a, np.bool_) and (
            isinstance(a, (float, np.floating)) or (diff and isinstance(a, (int, np.integer)))):
        return SCALAR
    if diff:
        raise TypeError(f"fastad: argument {i} is differentiated (in argnums) but is a "
                        f"{t.__name__}; pass a float or a float numpy array.")
    return static_part(a)


cdef object static_part(object a):
    # static arguments are keyed by value: a new value means a new trace
    try:
        hash(a)
    except TypeError:
        return UNCACHEABLE
    return ("s", type(a), a)


cdef class Signature:
    """One argument signature: where each argument's inputs sit, and its tapes."""
    cdef list tapes           # most recently used first
    cdef Py_ssize_t nargs
    cdef int64_t nin
    cdef int *kind            # per argument: STATIC, SCALAR_IN or ARRAY_IN
    cdef int64_t *offset      # per argument: its first input
    cdef int64_t *size        # per argument: its number of inputs
    cdef list shapes          # per argument: the array's shape, else None

    def __cinit__(self, tuple parts, Py_ssize_t nargs):
        cdef Py_ssize_t i
        self.tapes = []
        self.nargs = nargs
        self.kind = <int *>malloc(max(nargs, 1) * sizeof(int))
        self.offset = <int64_t *>malloc(max(nargs, 1) * sizeof(int64_t))
        self.size = <int64_t *>malloc(max(nargs, 1) * sizeof(int64_t))
        if self.kind == NULL or self.offset == NULL or self.size == NULL:
            raise MemoryError()
        self.shapes = []
        self.nin = 0
        for i in range(nargs):
            p = parts[i]
            self.offset[i] = self.nin
            if p is SCALAR:
                self.kind[i], self.size[i] = SCALAR_IN, 1
                self.shapes.append(None)
            elif p[0] == "a":
                self.kind[i] = ARRAY_IN
                self.size[i] = int(np.prod(p[1], dtype=np.int64))
                self.shapes.append(p[1])
            else:
                self.kind[i], self.size[i] = STATIC, 0
                self.shapes.append(None)
            self.nin += self.size[i]

    def __dealloc__(self):
        free(self.kind)
        free(self.offset)
        free(self.size)

    cdef int fill(self, tuple args, double *dst) except -1:
        """Write the inputs carried by `args` into dst[0:nin]."""
        cdef Py_ssize_t i
        cdef cnp.ndarray arr
        for i in range(self.nargs):
            if self.kind[i] == SCALAR_IN:
                dst[self.offset[i]] = <double>args[i]
            elif self.kind[i] == ARRAY_IN and self.size[i]:
                arr = <cnp.ndarray>args[i]
                if cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
                    arr = np.ascontiguousarray(arr, dtype=np.float64)
                memcpy(dst + self.offset[i], cnp.PyArray_DATA(arr), self.size[i] * sizeof(double))
        return 0

    cdef int fill_tangents(self, tuple tangents, double *dst) except -1:
        """Write jvp tangents (one per argument, each like its primal) into dst[0:nin]."""
        cdef Py_ssize_t i
        for i in range(self.nargs):
            t = tangents[i]
            if self.kind[i] == SCALAR_IN:
                if isinstance(t, np.ndarray) and t.shape == ():
                    t = t[()]
                if isinstance(t, bool) or not isinstance(t, (float, int, np.floating, np.integer)):
                    raise TypeError(f"fastad.jvp: the tangent of primal {i} must be a float like "
                                    f"its primal, got {type(t).__name__}")
                dst[self.offset[i]] = <double>t
            elif self.kind[i] == ARRAY_IN:
                if np.iscomplexobj(t):
                    raise TypeError(f"fastad: the tangent of argument {i} is complex; fastad "
                                    "differentiates real programs")
                arr = np.asarray(t, dtype=np.float64, order="C")
                if arr.shape != self.shapes[i]:
                    raise ValueError(f"fastad.jvp: primal {i} has shape {self.shapes[i]} but its "
                                     f"tangent has shape {arr.shape}")
                if self.size[i]:
                    memcpy(dst + self.offset[i], cnp.PyArray_DATA(arr),
                           self.size[i] * sizeof(double))
        return 0

    cdef object read(self, Py_ssize_t i, const double *src):
        """Argument i's part of src (adjoints): a float, or an array of its shape."""
        if self.kind[i] == SCALAR_IN:
            return src[self.offset[i]]
        out = np.empty(self.shapes[i])
        if self.size[i]:
            memcpy(cnp.PyArray_DATA(out), src + self.offset[i], self.size[i] * sizeof(double))
        return out

    cdef list layout(self):
        """Per input argument: None (scalar) or its shape."""
        cdef Py_ssize_t i
        return [self.shapes[i] for i in range(self.nargs) if self.kind[i] != STATIC]


# ------------------------------------------------------------------------ compiled functions

cdef class Compiled:
    """A traced-and-replayed derivative of `fun` (what fastad.grad & co. return)."""
    cdef readonly object fun
    cdef tuple argnums
    cdef bint many            # argnums was given as a tuple: return a tuple
    cdef int mode
    cdef bint replay
    cdef dict cache           # key -> Signature
    cdef readonly long traces, replays, retraces
    cdef readonly long reverse_sweeps, tangent_sweeps   # derivative sweeps run (Jacobians)
    cdef Py_ssize_t need      # positional arguments argnums needs
    cdef bint nonneg          # argnums are all >= 0 (then no per-call normalisation)
    cdef readonly bint has_aux
    cdef dict trees           # pytree arguments: treedefs -> Compiled of the flat function
    cdef object regroup       # for that inner Compiled: leaf derivatives -> the argument trees
    cdef dict __dict__        # lets functools.wraps copy __name__, __doc__, ...

    def __init__(self, fun, argnums, bint many, str mode, bint replay=True, bint has_aux=False):
        self.fun = fun
        self.argnums = tuple(argnums)
        self.many = many
        self.mode = MODES[mode]
        self.replay = replay
        self.has_aux = has_aux
        self.cache = {}
        self.trees = {}
        self.regroup = None
        self.nonneg = min(self.argnums, default=0) >= 0
        self.need = max(max(self.argnums, default=-1) + 1, -min(self.argnums, default=0))

    def __call__(self, *args, **kwargs):
        return self.run(args, kwargs, None)

    def cache_info(self):
        """Counts: traces (times the Python function ran), replays, retraces (traces caused
        by a failed guard), signatures and tapes cached."""
        info = {"traces": self.traces, "replays": self.replays, "retraces": self.retraces,
                "reverse_sweeps": self.reverse_sweeps, "tangent_sweeps": self.tangent_sweeps,
                "signatures": len(self.cache),
                "tapes": sum(len((<Signature>s).tapes) for s in self.cache.values())}
        for inner in self.trees.values():     # calls with pytree arguments
            for k, v in inner.cache_info().items():
                info[k] += v
        return info

    def tapes(self):
        """The cached tapes, most recently used first within each signature."""
        own = [t for s in self.cache.values() for t in (<Signature>s).tapes]
        return own + [t for inner in self.trees.values() for t in inner.tapes()]

    def info(self):
        """Tape statistics: records by op, slots, bytes, guards, cached tapes, retraces."""
        from fastad.trace import trace_info
        return trace_info(self)

    def cache_clear(self):
        """Drop every cached tape; the next call traces again."""
        self.cache.clear()

    cdef tuple argnums_for(self, Py_ssize_t nargs):
        if nargs < self.need:
            raise TypeError(
                f"fastad: differentiating with respect to argnums={self.argnums!r} requires at "
                f"least {self.need} positional arguments, but the call passed {nargs}.")
        if self.nonneg:
            return self.argnums
        return tuple([a % nargs for a in self.argnums])

    cpdef object run(self, tuple args, dict kwargs, tuple tangents):
        cdef Py_ssize_t i, nargs = len(args)
        cdef Signature sig
        cdef bint cacheable = self.replay
        argnums = self.argnums_for(nargs)
        for i in range(nargs):
            t = type(args[i])
            if t is tuple or t is list or t is dict or (
                    isinstance(args[i], tuple) and hasattr(t, "_fields")):
                return self.run_tree(args, kwargs, tangents, argnums)
        if active_traces:
            stack = trace_stack()
            if stack:      # called inside a trace: record into it (fastad.nested)
                from fastad import nested
                return nested.run(self.fun, argnums, self.many, MODE_NAMES[self.mode],
                                  stack[len(stack) - 1], args, kwargs or {}, tangents,
                                  self.not_scalar, self.has_aux)
        parts = []
        for i in range(nargs):
            p = key_part(i, args[i], i in argnums)
            cacheable = cacheable and p is not UNCACHEABLE
            parts.append(p)
        if kwargs:
            for k in sorted(kwargs):
                p = static_part(kwargs[k])
                cacheable = cacheable and p is not UNCACHEABLE
                parts.append((k, p))
        key = tuple(parts)
        sig = self.cache.get(key) if cacheable else None
        if sig is not None:
            res = self.replay_signature(sig, args, argnums, tangents)
            if res is not None:
                self.replays += 1
                return res
            self.retraces += 1
        else:
            sig = Signature(key, nargs)
            if cacheable:
                if len(self.cache) >= MAX_SIGNATURES:
                    del self.cache[next(iter(self.cache))]
                self.cache[key] = sig
        return self.trace(sig, args, kwargs, argnums, tangents)

    cdef object replay_signature(self, Signature sig, tuple args, tuple argnums, tuple tangents):
        """Replay the signature's tapes in turn; None if every one has a failing guard."""
        cdef Py_ssize_t i
        cdef Tape tape
        cdef Work *w
        cdef int64_t failed
        # a snapshot: another thread may reorder or trim sig.tapes while a sweep runs
        # without the GIL, and walking the live list would then try one tape twice and
        # skip another, tracing a duplicate of a tape that fits
        cdef list tapes = list(sig.tapes)
        for i in range(len(tapes)):
            tape = <Tape>tapes[i]
            w = tape.acquire()
            try:
                sig.fill(args, w.val)
                if tape.c.nrec < NOGIL_MIN_RECORDS:
                    failed = sweep_forward(tape.c, w.val)
                else:
                    with nogil:
                        failed = sweep_forward(tape.c, w.val)
                if failed == -2:
                    tape.raise_pending()
                if failed < 0:
                    if i and tape in sig.tapes:
                        sig.tapes.remove(tape)
                        sig.tapes.insert(0, tape)
                    return self.derivatives(tape, w, sig, argnums, tangents)
            finally:
                tape.release(w)
        return None

    cdef object run_tree(self, tuple args, dict kwargs, tuple tangents, tuple argnums):
        """Arguments that are pytrees: differentiate the function of their leaves, then give
        each differentiated argument its derivative in its own structure."""
        flat, defs, spans = [], [], []
        for i, a in enumerate(args):
            leaves, d = tree_flatten(a)
            if i in argnums:        # checked here, so that errors name the argument
                for leaf in leaves:
                    if not is_traced(leaf):          # traced leaves: a nested derivative
                        key_part(i, leaf, True)
            spans.append((len(flat), len(leaves)))
            flat.extend(leaves)
            defs.append(d)
        key = tuple(defs)
        cdef Compiled inner = self.trees.get(key)
        if inner is None:
            fun = self.fun

            def flat_fun(*leaves):
                return fun(*[tree_unflatten(d, leaves[o:o + n]) for d, (o, n) in zip(defs, spans)])

            leaf_nums = tuple(o + k for a in argnums for k in range(spans[a][1])
                              for o in (spans[a][0],))
            inner = Compiled(flat_fun, leaf_nums, True, MODE_NAMES[self.mode], self.replay,
                             self.has_aux)
            self.trees[key] = inner
            inner.native = getattr(self, "native", "auto")
            if self.mode in (JACFWD, JACREV, JACOBIAN):
                inner.regroup = lambda leaf_results: _regroup(leaf_results, argnums, spans,
                                                              defs, self.many)
        flat_tangents = None
        if tangents is not None:
            flat_tangents = tuple(l for t in tangents for l in tree_flatten(t)[0])
        res = inner.run(tuple(flat), kwargs, flat_tangents)

        def regroup(leaf_results):
            return _regroup(leaf_results, argnums, spans, defs, self.many)

        mode = self.mode
        if mode == GRAD:
            return (regroup(res[0]), res[1]) if self.has_aux else regroup(res)
        if mode == VALUE_AND_GRAD:
            return (res[0], regroup(res[1]))
        if mode in (JACFWD, JACREV, JACOBIAN):
            return res          # the inner Compiled regrouped each output leaf's blocks
        if mode == VJP:
            value, fn = res[0], res[1]
            wrapped = lambda ct: tuple(regroup(fn(ct)) if self.many else (regroup(fn(ct)),))
            return (value, wrapped) + tuple(res[2:])
        return res    # jvp: value and tangent have the output's structure

    cdef object derivatives(self, Tape tape, Work *w, Signature sig, tuple argnums,
                            tuple tangents):
        """Run the mode's derivative sweep on workspace w (its values already current)."""
        cdef int32_t out = tape.output_slot
        cdef bint big = tape.c.nrec >= NOGIL_MIN_RECORDS
        cdef object meta = tape.meta
        cdef int rc
        if meta is not None:        # array outputs, auxiliary data: the general path
            return self.derivatives_general(tape, w, sig, argnums, tangents, <Outputs>meta)
        cdef double value = w.val[out]
        if self.mode == JVP:
            tape.ensure_tan(w)
            sig.fill_tangents(tangents, w.tan)
            if big:
                with nogil:
                    rc = sweep_tangent(tape.c, w.val, w.tan)
            else:
                rc = sweep_tangent(tape.c, w.val, w.tan)
            if rc:
                tape.raise_pending()
            return (value, w.tan[out])
        tape.ensure_adj(w)
        if big:
            with nogil:
                rc = sweep_reverse(tape.c, w.val, w.adj, out, 1.0)
        else:
            rc = sweep_reverse(tape.c, w.val, w.adj, out, 1.0)
        if rc:
            tape.raise_pending()
        if self.many:
            g = tuple([sig.read(a, w.adj) for a in argnums])
        else:
            g = sig.read(argnums[0], w.adj)
        if self.mode == GRAD:
            return g
        return (value, g)

    cdef object derivatives_general(self, Tape tape, Work *w, Signature sig, tuple argnums,
                                    tuple tangents, Outputs meta):
        cdef int64_t[::1] outs = meta.slots
        cdef Py_ssize_t i, j, nout = outs.shape[0]
        cdef int64_t col
        cdef cnp.ndarray J
        cdef double[:, ::1] Jv
        value = meta.read(w.val)
        aux = meta.read_aux(w.val)
        mode = self.mode
        if mode == GRAD or mode == VALUE_AND_GRAD:
            tape.ensure_adj(w)
            if sweep_reverse(tape.c, w.val, w.adj, outs[0], 1.0):
                tape.raise_pending()
            g = tuple([sig.read(a, w.adj) for a in argnums]) if self.many else \
                sig.read(argnums[0], w.adj)
            if mode == GRAD:
                return (g, aux) if self.has_aux else g
            return ((value, aux), g) if self.has_aux else (value, g)
        if mode == JVP:
            tape.ensure_tan(w)
            sig.fill_tangents(tangents, w.tan)
            if sweep_tangent(tape.c, w.val, w.tan):
                tape.raise_pending()
            return (value, meta.read(w.tan))
        if mode == VJP:
            fn = VJPFunction.create(tape, w, sig, argnums, meta)
            return (value, fn, aux) if self.has_aux else (value, fn)
        # Jacobians: one reverse sweep per output (jacrev) or one tangent sweep per input
        cols = [(sig.offset[a], sig.size[a]) for a in argnums]
        ncol = sum(n for _, n in cols)
        J = np.zeros((nout, ncol))
        Jv = J
        if mode == JACOBIAN:        # a sweep per row or per column: the fewer
            mode = JACREV if nout < ncol else JACFWD
        if mode == JACREV:
            self.reverse_sweeps += nout
            tape.ensure_adj(w)
            for i in range(nout):
                if sweep_reverse(tape.c, w.val, w.adj, outs[i], 1.0):
                    tape.raise_pending()
                col = 0
                for off, n in cols:
                    for j in range(n):
                        Jv[i, col + j] = w.adj[off + j]
                    col += n
        else:
            self.tangent_sweeps += ncol
            tape.ensure_tan(w)
            col = 0
            for off, n in cols:
                for j in range(n):
                    memset(w.tan, 0, sig.nin * sizeof(double))
                    w.tan[off + j] = 1.0
                    if sweep_tangent(tape.c, w.val, w.tan):
                        tape.raise_pending()
                    for i in range(nout):
                        Jv[i, col + j] = w.tan[outs[i]]
                col += n
        per_leaf, row = [], 0
        for leaf_shape in meta.leaf_shapes():
            nrow = int(np.prod(leaf_shape, dtype=np.int64))
            parts, col = [], 0
            for a, (off, n) in zip(argnums, cols):
                shape = sig.shapes[a] if sig.shapes[a] is not None else ()
                block = J[row:row + nrow, col:col + n].reshape(tuple(leaf_shape) + shape)
                parts.append(block[()] if block.ndim == 0 else block)
                col += n
            if self.regroup is not None:    # pytree arguments: back to their structure
                per_leaf.append(self.regroup(parts))
            else:
                per_leaf.append(tuple(parts) if self.many else parts[0])
            row += nrow
        jac = meta.unflatten(per_leaf)
        return (jac, aux) if self.has_aux else jac

    cdef object trace(self, Signature sig, tuple args, dict kwargs, tuple argnums,
                      tuple tangents):
        """Run the Python function on traced arguments, keep the tape, and differentiate."""
        cdef Tape tape = Tape()
        cdef Work *w
        cdef Py_ssize_t i
        self.traces += 1
        flat = np.empty(sig.nin)
        sig.fill(args, <double *>cnp.PyArray_DATA(flat))
        traced = iter(make_inputs(tape, flat, sig.layout()))
        targs = [args[i] if sig.kind[i] == STATIC else next(traced) for i in range(sig.nargs)]
        push_trace(tape)
        try:
            out = self.fun(*targs, **kwargs)
            meta = self.outputs(tape, out)
        except BaseException:
            tape.finish(-1)       # the tape is dropped; its traced values are now escaped
            raise
        finally:
            pop_trace()
        tape.meta = meta
        tape.finish(meta.slots[0] if (<Outputs>meta).slots.shape[0] else -1)
        if self.mode != JVP and self.mode != JACFWD:    # JACOBIAN may sweep in reverse
            # reverse sweeps here read only the argnums inputs' adjoints
            active = np.zeros(sig.nin, dtype=np.uint8)
            for a in argnums:
                active[sig.offset[a]:sig.offset[a] + sig.size[a]] = 1
            tape.mark_passive(active)
        if self.replay:             # machine code for the tape: now, later, or never
            native.attach(tape, getattr(self, "native", "auto"), MODE_NAMES[self.mode])
        if meta.simple:
            tape.meta = None
        w = tape.acquire()
        try:
            res = self.derivatives(tape, w, sig, argnums, tangents)
        finally:
            tape.release(w)
        sig.tapes.insert(0, tape)
        del sig.tapes[MAX_TAPES_PER_SIGNATURE:]
        return res

    cdef Outputs outputs(self, Tape tape, out):
        """Where the function's output (and auxiliary data) live on the tape."""
        from fastad import arrays
        aux = None
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("fastad: with has_aux=True the function must return a pair "
                                f"(output, auxiliary data), got {type(out).__name__}")
            out, aux = out
        scalar_mode = self.mode == GRAD or self.mode == VALUE_AND_GRAD
        if scalar_mode:
            slot = output_slot(tape, out)
            if slot < 0:
                raise TypeError(self.not_scalar(out))
            slots, shape = np.array([slot], dtype=np.int64), ()
            return Outputs(slots, (), None, arrays.aux_spec(tape, aux) if self.has_aux else None,
                           not self.has_aux)
        leaves, treedef = tree_flatten(out)
        parts, shapes = [], []
        for leaf in leaves:
            s, shape = arrays.output_slots(tape, leaf)
            parts.append(s)
            shapes.append(shape)
        slots = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if treedef is None:         # a single array or scalar
            return Outputs(slots, shapes[0], None,
                           arrays.aux_spec(tape, aux) if self.has_aux else None, False)
        return Outputs(slots, (), (treedef, shapes),
                       arrays.aux_spec(tape, aux) if self.has_aux else None, False)

    def not_scalar(self, out):
        name = getattr(self.fun, "__name__", repr(self.fun))
        shape = getattr(out, "shape", None)
        what = f"an array of shape {shape}" if shape is not None else f"a {type(out).__name__}"
        return (f"fastad: {name} must return a real scalar (a float or a 0-d array) to be "
                f"differentiated this way, but it returned {what}. To differentiate the sum of "
                f"its outputs, return out.sum(); for the derivative of every output, use "
                f"fastad.jacobian.")


def _regroup(leaf_results, argnums, spans, defs, many):
    """Derivatives per argument leaf -> per argument, in the argument's structure."""
    out, k = [], 0
    for a in argnums:
        n = spans[a][1]
        out.append(tree_unflatten(defs[a], leaf_results[k:k + n]))
        k += n
    return tuple(out) if many else out[0]


cdef class Outputs:
    """Where a traced function's output lives on its tape: the slots (flat, leaf after
    leaf for a pytree output), the output's shape, and how to rebuild its auxiliary data
    (has_aux) from slot values."""
    cdef readonly object slots      # int64 array
    cdef readonly tuple shape       # the shape of a single-array output
    cdef object tree                # None, or (treedef, [shape of each leaf])
    cdef list sizes                 # elements of each leaf
    cdef object aux                 # None, or (treedef, [(kind, payload)])
    cdef readonly bint simple       # one scalar output and no aux: the fast path

    def __init__(self, slots, shape, tree, aux, simple):
        self.slots = np.ascontiguousarray(slots, dtype=np.int64)
        self.shape = tuple(shape)
        self.tree = tree
        self.aux = aux
        self.simple = simple
        self.sizes = [int(np.prod(sh, dtype=np.int64)) for sh in self.leaf_shapes()]

    def leaf_shapes(self):
        return [self.shape] if self.tree is None else self.tree[1]

    def unflatten(self, leaves):
        """Per-leaf results in the output's structure."""
        return leaves[0] if self.tree is None else tree_unflatten(self.tree[0], leaves)

    cdef object read(self, const double *v):
        """The output's value from the value (or tangent) array v."""
        cdef int64_t[::1] s = self.slots
        cdef Py_ssize_t i, k = 0
        if self.tree is None and not self.shape:     # one scalar
            return v[s[0]]
        flat = np.empty(s.shape[0])
        cdef double[::1] o = flat
        for i in range(s.shape[0]):
            o[i] = v[s[i]]
        if self.tree is None:
            return flat.reshape(self.shape)
        leaves = []
        for shape, n in zip(self.tree[1], self.sizes):
            leaf = flat[k:k + n].reshape(shape)
            leaves.append(float(leaf[()]) if leaf.ndim == 0 else leaf)
            k += n
        return self.unflatten(leaves)

    def flatten_cotangent(self, cotangent):
        """A cotangent of the output's structure and shapes, as one flat float64 array."""
        leaves = [cotangent] if self.tree is None else tree_flatten(cotangent)[0]
        shapes = self.leaf_shapes()
        if len(leaves) != len(shapes):
            raise ValueError("fastad: the cotangent's structure differs from the output's")
        parts = []
        for leaf, shape in zip(leaves, shapes):
            if np.iscomplexobj(leaf):
                raise TypeError("fastad: the cotangent is complex; fastad differentiates real "
                                "programs")
            c = np.asarray(leaf, dtype=np.float64)
            if c.shape != tuple(shape):
                raise ValueError(f"fastad: vjp_fn expects a cotangent of the output's shape "
                                 f"{tuple(shape)}, got {c.shape}")
            parts.append(c.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    cdef object read_aux(self, const double *v):
        if self.aux is None:
            return None
        treedef, specs = self.aux
        leaves = []
        for kind, payload in specs:
            if kind == "slot":
                leaves.append(v[<int64_t>payload])
            elif kind == "slots":
                leaves.append(np.array([v[<int64_t>k] for k in payload.ravel()]).reshape(payload.shape))
            else:
                leaves.append(payload)
        return tree_unflatten(treedef, leaves)


cdef class VJPFunction:
    """The vjp_fn of fastad.vjp: maps an output cotangent to the arguments' cotangents,
    with one reverse sweep over the tape at the values of the call that made it."""
    cdef Tape tape
    cdef object values              # the slot values of that call (a private copy)
    cdef Signature sig
    cdef tuple argnums
    cdef Outputs meta

    @staticmethod
    cdef VJPFunction create(Tape tape, Work *w, Signature sig, tuple argnums, Outputs meta):
        cdef VJPFunction f = VJPFunction.__new__(VJPFunction)
        f.tape, f.sig, f.argnums, f.meta = tape, sig, argnums, meta
        f.values = np.empty(max(tape.c.nslot, 1))
        memcpy(cnp.PyArray_DATA(f.values), w.val, tape.c.nslot * sizeof(double))
        return f

    def __call__(self, cotangent):
        cdef int64_t[::1] outs = self.meta.slots
        cdef Py_ssize_t i
        ct = self.meta.flatten_cotangent(cotangent)
        adj = np.zeros(max(self.tape.c.nslot, 1))
        cdef double[::1] g = adj
        for i in range(outs.shape[0]):
            g[outs[i]] += ct[i]
        if sweep_reverse_seeded(self.tape.c, <double *>cnp.PyArray_DATA(self.values), &g[0]):
            self.tape.raise_pending()
        return tuple([self.sig.read(a, &g[0]) for a in self.argnums])
