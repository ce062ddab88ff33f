# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Trace once, replay in C: the call path of every fastad derivative wrapper.

Design (what lives where, and why):
  (a) C (csrc/): the tape and its three sweeps; no Python, error codes only.
  (b) Cython, `_tape`: the Tape type owning a C tape, per-call workspaces, the nogil sweeps.
  (c) Cython, here: the call path, kept in C because it runs on every call (≈ 0.3 µs):
      - `Signature`: what kind each argument is (a scalar input, an array input of some
        shape, or a static value) and the tapes recorded for it; `SignatureCache` keeps
        them, least recently used out first.
      - `Mode`: one object per family of derivatives -- `Grad` (with or without the value),
        `Jvp`, `Vjp`, `Jacobian` (forward, reverse or whichever is cheaper) -- each
        answering the same questions: must the output be a scalar, may it sweep in reverse,
        which sweeps give its result, how results regroup for pytree arguments.  A new
        transform is a new Mode, not an if-chain through the replay loop.
      - `Compiled`: the replay loop.  A call computes the signature key, writes the inputs
        straight into a tape's workspace and runs the forward sweep; if every guard holds,
        its mode's sweeps give the result.  If a guard fails it tries the signature's next
        tape, and if none fits it traces the function again and keeps the new tape in front.
  (d) Python: argument checking (api.py), pytrees (pytree.py, wrapped around the leaf path
      by `run_tree`), derivatives taken inside a trace (nested.py, by the same modes).
      A new tape is prepared once (`prepare`: random draws, optimizer, native tier).
"""
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
cimport numpy as cnp
import threading

import numpy as np

from fastad._tape cimport (Tape, Work, sweep_forward, sweep_tangent, sweep_reverse,
                           sweep_reverse_seeded, has_inplace, sweep_forward_inplace,
                           sweep_reverse_inplace)
from fastad._tracer import is_traced, make_inputs, output_slot
from fastad.pytree import tree_flatten, tree_unflatten
from fastad.errors import ComplexValueError, NonScalarOutputError
from fastad import _record, randomness
from fastad import native as native_tier

cnp.import_array()

cdef enum:
    # Below this many slots a sweep takes less time than releasing and re-taking the GIL
    # (about 100 ns), so small tapes are swept with the GIL held.  Counted in slots, not
    # records: every element of a ranged (or rolled) record has one, so they measure work.
    NOGIL_MIN_SLOTS = 2000
    # Inputs read in place (read_inplace) from this many elements: below it the copies
    # cost nanoseconds, and a small call skips even the check for in-place code
    INPLACE_MIN = 1024
    # argument kinds
    STATIC = 0
    SCALAR_IN = 1
    ARRAY_IN = 2
    # How many tapes (branch outcomes) a signature keeps, and how many signatures a
    # function keeps; the least recently used goes first.
    MAX_TAPES_PER_SIGNATURE = 8
    MAX_SIGNATURES = 64

cdef object SCALAR = "f"          # key part of a scalar input

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
cdef object NO_DRAWS = object()          # fresh_draws: this tape's draws do not fit


# ------------------------------------------------------------------------ signatures
# Which arguments are tape inputs (one rule, shared with fastad.record and fastad.trace
# through `is_input`): a float or a float array always; an int, int array or numpy integer
# only when it is differentiated (in argnums), where it is promoted to float.  Everything
# else is static: part of the cache key, so a new value traces again.

def is_input(a, bint diff=False):
    """True if argument `a` is a tape input (see the rule above)."""
    if isinstance(a, np.ndarray):
        return a.dtype.kind == "f" or (diff and a.dtype.kind in "iu")
    if isinstance(a, (bool, np.bool_)):
        return False
    return isinstance(a, (float, np.floating)) or (diff and isinstance(a, (int, np.integer)))


cdef object array_part(object a, Py_ssize_t i, bint diff):
    kind = a.dtype.kind
    if kind == "f" or (diff and kind in "iu"):
        return ("a", a.shape)
    if kind == "c":
        raise ComplexValueError(ComplexValueError.message(f"argument {i}", a.dtype))
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
    if t is float:                  # the common case first
        return SCALAR
    if t is np.ndarray:
        return array_part(a, i, diff)
    if isinstance(a, (complex, np.complexfloating)):
        raise ComplexValueError(ComplexValueError.message(f"argument {i} ({a!r})"))
    if is_input(a, diff) and not isinstance(a, np.ndarray):   # subclasses (np.matrix...) aren't scalars
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
    # the array arguments' shapes as C arrays too (the fast path's check and result arrays):
    # argument i's ndim[i] dimensions are dims[dimoff[i]:...]
    cdef int *ndim
    cdef int64_t *dimoff
    cdef cnp.npy_intp *dims
    cdef bint fast                # no static argument: `matches` can recognise a call
    cdef Py_ssize_t inplace_arg   # the one input argument, an array, else -1 (read_inplace)

    def __cinit__(self, tuple parts, Py_ssize_t nargs):
        cdef Py_ssize_t i, j, ndims = 0
        self.tapes = []
        self.nargs = nargs
        self.kind = <int *>malloc(max(nargs, 1) * sizeof(int))
        self.offset = <int64_t *>malloc(max(nargs, 1) * sizeof(int64_t))
        self.size = <int64_t *>malloc(max(nargs, 1) * sizeof(int64_t))
        self.ndim = <int *>malloc(max(nargs, 1) * sizeof(int))
        self.dimoff = <int64_t *>malloc(max(nargs, 1) * sizeof(int64_t))
        for i in range(nargs):
            p = parts[i]
            if p is not SCALAR and p[0] == "a":
                ndims += len(p[1])
        self.dims = <cnp.npy_intp *>malloc(max(ndims, 1) * sizeof(cnp.npy_intp))
        if (self.kind == NULL or self.offset == NULL or self.size == NULL or self.ndim == NULL
                or self.dimoff == NULL or self.dims == NULL):
            raise MemoryError()
        self.shapes = []
        self.nin = 0
        self.fast = True
        ndims = 0
        for i in range(nargs):
            p = parts[i]
            self.offset[i] = self.nin
            self.ndim[i], self.dimoff[i] = 0, ndims
            if p is SCALAR:
                self.kind[i], self.size[i] = SCALAR_IN, 1
                self.shapes.append(None)
            elif p[0] == "a":
                self.kind[i] = ARRAY_IN
                self.size[i] = int(np.prod(p[1], dtype=np.int64))
                self.shapes.append(p[1])
                self.ndim[i] = len(p[1])
                for j in range(self.ndim[i]):
                    self.dims[ndims + j] = p[1][j]
                ndims += self.ndim[i]
            else:
                self.kind[i], self.size[i] = STATIC, 0
                self.shapes.append(None)
                self.fast = False
            self.nin += self.size[i]
        self.inplace_arg = -1
        for i in range(nargs):
            if self.kind[i] == ARRAY_IN and self.size[i] == self.nin and self.nin > 0:
                self.inplace_arg = i

    def __dealloc__(self):
        free(self.kind)
        free(self.offset)
        free(self.size)
        free(self.ndim)
        free(self.dimoff)
        free(self.dims)

    cdef bint matches(self, tuple args):
        """Would `args` have this signature's key?  Checked without building the key, for
        the common calls only: floats, and float64 arrays of the same shapes (anything
        else answers False, and the call takes the general path, key_part)."""
        cdef Py_ssize_t i, j
        cdef cnp.ndarray arr
        cdef cnp.npy_intp *shape
        if not self.fast or len(args) != self.nargs:
            return False
        for i in range(self.nargs):
            a = args[i]
            if self.kind[i] == SCALAR_IN:
                if type(a) is not float:
                    return False
            else:
                if type(a) is not np.ndarray:
                    return False
                arr = <cnp.ndarray>a
                if cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(arr) != self.ndim[i]:
                    return False
                shape = cnp.PyArray_DIMS(arr)
                for j in range(self.ndim[i]):
                    if shape[j] != self.dims[self.dimoff[i] + j]:
                        return False
        return True

    cdef int fill(self, tuple args, double *dst) except -1:
        """Write the inputs carried by `args` into dst[0:nin]."""
        cdef Py_ssize_t i
        cdef cnp.ndarray arr
        for i in range(self.nargs):
            if self.kind[i] == SCALAR_IN:
                dst[self.offset[i]] = <double>args[i]
            elif self.kind[i] == ARRAY_IN and self.size[i]:
                arr = <cnp.ndarray>args[i]
                # float64 in the machine's byte order, C-contiguous and aligned, or a copy
                if (cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or not cnp.PyArray_ISCARRAY_RO(arr)
                        or not cnp.PyArray_ISNOTSWAPPED(arr)):
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
                    raise ComplexValueError(ComplexValueError.message(f"the tangent of argument {i}"))
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
        out = cnp.PyArray_EMPTY(self.ndim[i], self.dims + self.dimoff[i], cnp.NPY_DOUBLE, 0)
        if self.size[i]:
            memcpy(cnp.PyArray_DATA(out), src + self.offset[i], self.size[i] * sizeof(double))
        return out

    cdef list layout(self):
        """Per input argument: None (scalar) or its shape."""
        cdef Py_ssize_t i
        return [self.shapes[i] for i in range(self.nargs) if self.kind[i] != STATIC]



cdef class SignatureCache:
    """key -> Signature, at most MAX_SIGNATURES of them; the oldest goes first."""
    cdef dict entries

    def __init__(self):
        self.entries = {}

    cdef Signature get(self, object key):
        return self.entries.get(key)

    cdef Signature add(self, object key, Py_ssize_t nargs, bint keep):
        cdef Signature sig = Signature(key, nargs)
        if keep:
            if len(self.entries) >= MAX_SIGNATURES:
                del self.entries[next(iter(self.entries))]
            self.entries[key] = sig
        return sig

    def __len__(self):
        return len(self.entries)

    def signatures(self):
        return list(self.entries.values())

    def items(self):
        return list(self.entries.items())

    def put(self, object key, Signature sig):
        """Keep `sig` under `key` (a signature loaded with its tapes, fastad.serialize)."""
        if key not in self.entries and len(self.entries) >= MAX_SIGNATURES:
            del self.entries[next(iter(self.entries))]
        self.entries[key] = sig

    def clear(self):
        self.entries.clear()


# ------------------------------------------------------------------------ sweeps
# The one place that decides whether a sweep releases the GIL, and that turns a sweep's
# error code (a callback's exception, a failed allocation) into a Python exception.

cdef inline bint nogil_pays(Tape tape):
    return tape.c.nslot >= NOGIL_MIN_SLOTS


cdef int64_t run_forward(Tape tape, Work *w) except -3:
    """The forward sweep: -1 if every guard held, else the index of the failed guard."""
    cdef int64_t failed
    if nogil_pays(tape):
        with nogil:
            failed = sweep_forward(tape.c, w.val)
    else:
        failed = sweep_forward(tape.c, w.val)
    if failed == -2:
        tape.raise_pending()
    return failed


cdef int run_tangent(Tape tape, Work *w) except -1:
    """The tangent sweep along w.tan[0:nin] (jvp)."""
    cdef int rc
    if nogil_pays(tape):
        with nogil:
            rc = sweep_tangent(tape.c, w.val, w.tan)
    else:
        rc = sweep_tangent(tape.c, w.val, w.tan)
    if rc:
        tape.raise_pending()
    return 0


cdef int run_reverse(Tape tape, Work *w, int32_t out) except -1:
    """The reverse sweep seeded with 1 at slot `out` (adjoints in w.adj)."""
    cdef int rc
    if nogil_pays(tape):
        with nogil:
            rc = sweep_reverse(tape.c, w.val, w.adj, out, 1.0)
    else:
        rc = sweep_reverse(tape.c, w.val, w.adj, out, 1.0)
    if rc:
        tape.raise_pending()
    return 0


# ------------------------------------------------------------------------ inputs read in place
# A gradient of one large float64 array (scipy.optimize's way) spends much of a native
# replay copying the array into the workspace, zeroing the inputs' adjoints and copying
# the gradient out.  When the tape's native code has in-place sweeps (fastad._codegen:
# inplace_ok), the call hands them the caller's array and the new gradient array instead:
# the same operations in the same order, so the same bits (docs/native.md, "Inputs read
# in place").  The caller's array is only read, and only during the call; the gradient is
# a new array, never tape memory.

cdef inline const double *read_inplace(Compiled c, Signature sig, Tape tape, tuple args,
                                       tuple argnums) noexcept:
    """The caller's input array's data when this grad call can run in place, else NULL.
    (Nothing here can raise: type tests, a tuple's length and items, C fields.)"""
    cdef cnp.ndarray arr
    # the common cases first, in C alone: several arguments, a small array, or no native
    # code (read with the GIL held, which native code is installed under: _native.install)
    if (sig.inplace_arg < 0 or tape.c.nin < INPLACE_MIN or tape.c.native == NULL
            or not has_inplace(tape.c)):
        return NULL
    if (type(c.mode) is not Grad or tape.meta is not None or len(argnums) != 1
            or argnums[0] != sig.inplace_arg or tape.output_slot < tape.c.nin
            or (c.rand is not None and c.rand.active)):
        return NULL
    a = args[sig.inplace_arg]
    if not cnp.PyArray_Check(a):
        return NULL
    arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or not cnp.PyArray_ISCARRAY_RO(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr) or cnp.PyArray_SIZE(arr) != tape.c.nin):
        return NULL         # non-contiguous, misaligned, swapped, other dtypes: copied
    return <const double *>cnp.PyArray_DATA(arr)


cdef int64_t run_forward_inplace(Tape tape, Work *w, const double *x) except -3:
    cdef int64_t failed
    if nogil_pays(tape):
        with nogil:
            failed = sweep_forward_inplace(tape.c, w.val, x)
    else:
        failed = sweep_forward_inplace(tape.c, w.val, x)
    return failed


cdef object grad_inplace(Compiled c, Tape tape, Work *w, Signature sig, const double *x):
    """grad / value_and_grad of a forward sweep run in place: the reverse sweep writes the
    gradient straight into the new result array."""
    cdef Py_ssize_t i = sig.inplace_arg
    cdef int32_t out = tape.output_slot
    cdef double value
    cdef cnp.ndarray g = cnp.PyArray_EMPTY(sig.ndim[i], sig.dims + sig.dimoff[i],
                                           cnp.NPY_DOUBLE, 0)
    cdef double *gx = <double *>cnp.PyArray_DATA(g)
    tape.ensure_adj(w)
    if nogil_pays(tape):
        with nogil:
            sweep_reverse_inplace(tape.c, w.val, x, w.adj, gx, out)
    else:
        sweep_reverse_inplace(tape.c, w.val, x, w.adj, gx, out)
    value = w.val[out]       # read after: one-pass code writes it there
    res = (g,) if c.many else g
    return (value, res) if (<Grad>c.mode).value else res


# ------------------------------------------------------------------------ modes

cdef class Mode:
    """A family of derivatives: what a replay computes once the forward sweep has held.

    family: "grad", "jvp", "vjp" or "jacobian" (nested.py and check.py read it);
    scalar_output: the function must return a scalar; reverse: the mode may sweep in
    reverse, so inputs outside argnums can be marked passive after tracing."""
    cdef readonly str name, family
    cdef readonly bint scalar_output, reverse

    cdef object derive(self, Compiled c, Tape tape, Work *w, Signature sig, tuple argnums,
                       tuple tangents, Outputs meta):
        """The result, from workspace w whose values are current; meta is None for one
        scalar output without aux (the fast path)."""
        raise NotImplementedError

    def regroup_tree(self, res, regroup, bint many, bint has_aux):
        """The result of the leaf function, with each argument derivative regrouped into its
        argument's structure by regroup(leaf derivatives).  Jacobians regroup per output
        leaf as they are cut (Compiled.regroup); jvp results have the output's structure."""
        return res

    def __repr__(self):
        return f"<fastad mode {self.name}>"


cdef object gradient(Tape tape, Work *w, Signature sig, tuple argnums, bint many, int32_t out):
    tape.ensure_adj(w)
    run_reverse(tape, w, out)
    if many:
        return tuple([sig.read(a, w.adj) for a in argnums])
    return sig.read(argnums[0], w.adj)


cdef class Grad(Mode):
    """grad (value=False) and value_and_grad (value=True): one reverse sweep."""
    cdef readonly bint value

    def __init__(self, bint value=False):
        self.value = value
        self.name = "value_and_grad" if value else "grad"
        self.family = "grad"
        self.scalar_output = True
        self.reverse = True

    cdef object derive(self, Compiled c, Tape tape, Work *w, Signature sig, tuple argnums,
                       tuple tangents, Outputs meta):
        cdef int32_t out = tape.output_slot if meta is None else meta.slots[0]
        cdef double value = w.val[out]
        g = gradient(tape, w, sig, argnums, c.many, out)
        if meta is None:
            return (value, g) if self.value else g
        aux = meta.read_aux(w.val)
        if self.value:
            return ((value, aux), g) if c.has_aux else (value, g)
        return (g, aux) if c.has_aux else g

    def regroup_tree(self, res, regroup, bint many, bint has_aux):
        if self.value:
            return (res[0], regroup(res[1]))
        return (regroup(res[0]), res[1]) if has_aux else regroup(res)


cdef class Jvp(Mode):
    """jvp: one tangent sweep along the given tangents; the value and tangent have the
    output's structure."""

    def __init__(self):
        self.name = self.family = "jvp"

    cdef object derive(self, Compiled c, Tape tape, Work *w, Signature sig, tuple argnums,
                       tuple tangents, Outputs meta):
        tape.ensure_tan(w)
        sig.fill_tangents(tangents, w.tan)
        run_tangent(tape, w)
        return (meta.read(w.val), meta.read(w.tan))


cdef class Vjp(Mode):
    """vjp: the value and a VJPFunction that runs one reverse sweep per cotangent."""

    def __init__(self):
        self.name = self.family = "vjp"
        self.reverse = True

    cdef object derive(self, Compiled c, Tape tape, Work *w, Signature sig, tuple argnums,
                       tuple tangents, Outputs meta):
        fn = VJPFunction.create(tape, w, sig, argnums, meta)
        value = meta.read(w.val)
        return (value, fn, meta.read_aux(w.val)) if c.has_aux else (value, fn)

    def regroup_tree(self, res, regroup, bint many, bint has_aux):
        value, fn = res[0], res[1]
        wrapped = lambda ct: tuple(regroup(fn(ct)) if many else (regroup(fn(ct)),))
        return (value, wrapped) + tuple(res[2:])


cdef class Jacobian(Mode):
    """jacfwd (sweep="fwd": a tangent sweep per input element), jacrev (sweep="rev": a
    reverse sweep per output element) and jacobian (sweep="auto": the fewer, chosen per
    call on the same tape).  The result is out.shape + arg.shape per argument."""
    cdef readonly str sweep

    def __init__(self, str sweep="auto"):
        if sweep not in ("fwd", "rev", "auto"):
            raise ValueError(f"fastad: a Jacobian sweeps 'fwd', 'rev' or 'auto', not {sweep!r}")
        self.sweep = sweep
        self.name = {"fwd": "jacfwd", "rev": "jacrev", "auto": "jacobian"}[sweep]
        self.family = "jacobian"
        self.reverse = sweep != "fwd"

    cdef object derive(self, Compiled c, Tape tape, Work *w, Signature sig, tuple argnums,
                       tuple tangents, Outputs meta):
        cdef int64_t[::1] outs = meta.slots
        cdef Py_ssize_t i, j, nout = outs.shape[0]
        cdef int64_t col
        cdef double[:, ::1] Jv
        cols = [(sig.offset[a], sig.size[a]) for a in argnums]
        ncol = sum(n for _, n in cols)
        J = np.zeros((nout, ncol))
        Jv = J
        if self.sweep == "rev" or (self.sweep == "auto" and nout < ncol):
            c.reverse_sweeps += nout
            tape.ensure_adj(w)
            for i in range(nout):
                run_reverse(tape, w, outs[i])
                col = 0
                for off, n in cols:
                    for j in range(n):
                        Jv[i, col + j] = w.adj[off + j]
                    col += n
        else:
            c.tangent_sweeps += ncol
            tape.ensure_tan(w)
            col = 0
            for off, n in cols:
                for j in range(n):
                    memset(w.tan, 0, sig.nin * sizeof(double))
                    w.tan[off + j] = 1.0
                    run_tangent(tape, w)
                    for i in range(nout):
                        Jv[i, col + j] = w.tan[outs[i]]
                col += n
        jac = meta.unflatten(self.blocks(c, J, meta, sig, argnums, cols))
        return (jac, meta.read_aux(w.val)) if c.has_aux else jac

    cdef list blocks(self, Compiled c, object J, Outputs meta, Signature sig, tuple argnums,
                     list cols):
        """J cut into out.shape + arg.shape blocks, per output leaf and argument."""
        per_leaf, row = [], 0
        for leaf_shape in meta.leaf_shapes():
            nrow = int(np.prod(leaf_shape, dtype=np.int64))
            parts, col = [], 0
            for a, (off, n) in zip(argnums, cols):
                shape = sig.shapes[a] if sig.shapes[a] is not None else ()
                block = J[row:row + nrow, col:col + n].reshape(tuple(leaf_shape) + shape)
                parts.append(block[()] if block.ndim == 0 else block)
                col += n
            if c.regroup is not None:       # pytree arguments: back to their structure
                per_leaf.append(c.regroup(parts))
            else:
                per_leaf.append(tuple(parts) if c.many else parts[0])
            row += nrow
        return per_leaf


# The modes by the names of the public transforms (api.py makes them by these names).
MODES = {m.name: m for m in (Grad(False), Grad(True), Jvp(), Vjp(), Jacobian("fwd"),
                             Jacobian("rev"), Jacobian("auto"))}


# ------------------------------------------------------------------------ compiled functions

# g.info() is a method of every compiled function, but the report belongs to the tools
# layer (fastad.trace); fastad/__init__.py registers it here so this module imports
# nothing above it.  Set once at import, read-only afterwards.
_info_report = None


def register_info(report):
    """Install the function behind Compiled.info() (fastad.trace.trace_info)."""
    global _info_report
    _info_report = report


cdef bint has_tree(tuple args):
    """True if an argument is a pytree container (then the leaf path is wrapped)."""
    for a in args:
        t = type(a)
        if t is tuple or t is list or t is dict or (isinstance(a, tuple) and hasattr(t, "_fields")):
            return True
    return False


cdef class Compiled:
    """A traced-and-replayed derivative of `fun` (what fastad.grad & co. return)."""
    cdef readonly object fun
    cdef readonly tuple argnums
    cdef readonly bint many           # argnums was given as a tuple: return a tuple
    cdef readonly Mode mode
    cdef readonly bint replay, has_aux
    cdef SignatureCache cache
    cdef readonly long traces, replays, retraces
    cdef public long reverse_sweeps, tangent_sweeps   # derivative sweeps run (Jacobians)
    cdef Py_ssize_t need              # positional arguments argnums needs
    cdef bint nonneg                  # argnums are all >= 0 (then no per-call normalisation)
    cdef dict trees                   # pytree arguments: treedefs -> Compiled of the leaves
    cdef object regroup               # for that leaf Compiled: leaf derivatives -> trees
    cdef dict __dict__                # lets functools.wraps copy __name__, __doc__, ...
    cdef readonly str random          # "fresh" or "freeze": random draws (fastad.randomness)
    cdef object rand                  # its randomness.Policy (None: nothing to watch)
    cdef readonly bint optimize       # roll loops of each new tape (docs/design.md, "The optimizer")
    cdef readonly str native          # "auto", "always" or "never": machine code (docs/native.md)
    cdef Signature last               # the signature of the last cacheable call (fast path)

    def __init__(self, fun, argnums, bint many, mode, bint replay=True, bint has_aux=False,
                 str random="fresh", bint optimize=True, str native="auto"):
        self.fun = fun
        self.argnums = tuple(argnums)
        self.many = many
        self.mode = MODES[mode] if isinstance(mode, str) else mode
        self.replay = replay
        self.has_aux = has_aux
        self.cache = SignatureCache()
        self.trees = {}
        self.regroup = None
        self.nonneg = min(self.argnums, default=0) >= 0
        self.need = max(max(self.argnums, default=-1) + 1, -min(self.argnums, default=0))
        self.optimize = optimize
        self.native = native_tier.check_mode(native)
        self.random = randomness.check_mode(random)
        # replay=False traces every call, so its draws are fresh without any watching
        self.rand = randomness.Policy(fun) if random == "fresh" and replay else None

    def __call__(self, *args, **kwargs):
        return self.run(args, kwargs, None)

    cdef Compiled like(self, fun, tuple argnums):
        """A Compiled of another function with this one's mode and options (the function of
        a pytree call's leaves)."""
        return Compiled(fun, argnums, True, self.mode, self.replay, self.has_aux, self.random,
                        self.optimize, self.native)

    def cache_info(self):
        """Counts: traces (times the Python function ran), replays, retraces (traces caused
        by a failed guard), signatures and tapes cached."""
        info = {"traces": self.traces, "replays": self.replays, "retraces": self.retraces,
                "reverse_sweeps": self.reverse_sweeps, "tangent_sweeps": self.tangent_sweeps,
                "signatures": len(self.cache),
                "tapes": sum(len((<Signature>s).tapes) for s in self.cache.signatures())}
        for inner in self.trees.values():     # calls with pytree arguments
            for k, v in inner.cache_info().items():
                info[k] += v
        return info

    def tapes(self):
        """The cached tapes, most recently used first within each signature."""
        own = [t for s in self.cache.signatures() for t in (<Signature>s).tapes]
        return own + [t for inner in self.trees.values() for t in inner.tapes()]

    def info(self):
        """Tape statistics: records by op, slots, bytes, guards, cached tapes, retraces."""
        return _info_report(self)

    def cache_clear(self):
        """Drop every cached tape; the next call traces again."""
        self.cache.clear()
        self.last = None

    def __reduce__(self):
        from fastad.serialize import reduce_compiled
        return reduce_compiled(self)

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
        cdef Signature sig = self.last
        # The fast path: a call like the last cacheable one (same argument kinds and shapes,
        # no keywords) reuses its signature without building the key -- the same Signature
        # the key would find, so nothing else changes.  Not inside a trace (nested.run).
        if sig is not None and not active_traces and not kwargs and sig.matches(args):
            argnums = self.argnums if self.nonneg else self.argnums_for(nargs)
            res = self.replay_signature(sig, args, argnums, tangents)
            if res is not None:
                self.replays += 1
                return res
            self.retraces += 1
            res = self.trace(sig, args, kwargs, argnums, tangents)
            self.remember(sig)
            return res
        # a function whose draws fastad cannot replay traces every call (fastad.randomness)
        cdef bint cacheable = self.replay and not (self.rand is not None and self.rand.retrace)
        argnums = self.argnums_for(nargs)
        if has_tree(args):
            return run_tree(self, args, kwargs, tangents, argnums)
        if active_traces:
            stack = trace_stack()
            if stack:      # called inside a trace: record into it (fastad.nested)
                from fastad import nested
                return nested.run(self.fun, argnums, self.many, self.mode,
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
                if not kwargs:      # the fast path takes calls without keywords only
                    self.remember(sig)
                return res
            self.retraces += 1
        else:
            sig = self.cache.add(key, nargs, cacheable)
        res = self.trace(sig, args, kwargs, argnums, tangents)
        if cacheable and not kwargs:
            self.remember(sig)
        return res

    cdef int remember(self, Signature sig) except -1:
        """The fast path's signature: `sig`, unless the function's random draws now make
        every call trace (a trace may have found that out)."""
        self.last = sig if self.rand is None or not self.rand.retrace else None
        return 0

    cdef object replay_signature(self, Signature sig, tuple args, tuple argnums, tuple tangents):
        """Replay the signature's tapes in turn; None if every one has a failing guard."""
        cdef Py_ssize_t i
        cdef Tape tape
        cdef Work *w
        cdef const double *x
        # a snapshot: another thread may reorder or trim sig.tapes while a sweep runs
        # without the GIL, and walking the live list would then try one tape twice and
        # skip another, tracing a duplicate of a tape that fits
        cdef list tapes = sig.tapes if len(sig.tapes) == 1 else list(sig.tapes)
        cdef Py_ssize_t ntapes = len(tapes)    # read once: one tape needs no snapshot
        for i in range(ntapes):
            tape = <Tape>tapes[i]
            w = tape.acquire()
            try:
                x = read_inplace(self, sig, tape, args, argnums)
                if x != NULL:       # native code reads the caller's array in place
                    if run_forward_inplace(tape, w, x) >= 0:
                        continue
                    if i and tape in sig.tapes:
                        sig.tapes.remove(tape)
                        sig.tapes.insert(0, tape)
                    return grad_inplace(self, tape, w, sig, x)
                sig.fill(args, w.val)
                saved = None
                if self.rand is not None and self.rand.active:
                    saved = fresh_draws(self.rand, tape, w, args)
                    if saved is NO_DRAWS:
                        continue
                if run_forward(tape, w) < 0:
                    if i and tape in sig.tapes:
                        sig.tapes.remove(tape)
                        sig.tapes.insert(0, tape)
                    return self.mode.derive(self, tape, w, sig, argnums, tangents, tape.meta)
                if saved is not None:        # this path does not fit the draws either
                    randomness.Policy.undo(saved)
            finally:
                tape.release(w)
        return None

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
        rec = self.rand.begin(tape, args, kwargs) if self.rand is not None else None
        push_trace(tape)
        try:
            out = self.fun(*targs, **kwargs) if rec is None else rec.call(self.fun, targs, kwargs)
            meta = find_outputs(tape, out, self.mode, self.has_aux, self.fun)
        except BaseException:
            tape.finish(-1)       # the tape is dropped; its traced values are now escaped
            raise
        finally:
            pop_trace()
        tape.finish(meta.slots[0] if (<Outputs>meta).slots.shape[0] else -1)
        prepare(self, tape, meta, sig, argnums, rec)
        w = tape.acquire()
        try:
            res = self.mode.derive(self, tape, w, sig, argnums, tangents, tape.meta)
        finally:
            tape.release(w)
        sig.tapes.insert(0, tape)
        del sig.tapes[MAX_TAPES_PER_SIGNATURE:]
        if native_tier.warm_replay(tape) and not (self.rand is not None and self.rand.active):
            # native code already installed (from the cache, or native="always"): one
            # replay along the replay's own path now, so that the first replay pays for no
            # cold code (docs/native.md, "Cache")
            sweeps = (self.reverse_sweeps, self.tangent_sweeps)
            self.replay_signature(sig, args, argnums, tangents)
            self.reverse_sweeps, self.tangent_sweeps = sweeps
        return res

    def not_scalar(self, out):
        return not_scalar_message(self.fun, out)


# ------------------------------------------------------------------------ a new tape

cdef prepare(Compiled c, Tape tape, Outputs meta, Signature sig, tuple argnums, object rec):
    """What happens to a freshly traced tape before its first replay, in this order: its
    random draws' plan (fastad.randomness), the optimizer (loops rolled back up), passive
    inputs marked for the reverse sweep, the native tier (compile now, later or never)."""
    if rec is not None:
        c.rand.end(rec, tape)
    # the optimizer renames slots; a tape whose random draws are written into their slots
    # before each replay keeps the numbering it was recorded with
    if c.optimize and tape.c.ncb == 0 and not (rec is not None and rec.draws):
        mapping = tape.optimize(meta.kept_slots())
        if mapping is not None:
            meta.remap(mapping)
    if c.mode.reverse:
        # reverse sweeps here read only the argnums inputs' adjoints
        active = np.zeros(sig.nin, dtype=np.uint8)
        for a in argnums:
            active[sig.offset[a]:sig.offset[a] + sig.size[a]] = 1
        tape.mark_passive(active)
    if c.replay:             # machine code for the tape: now, later, or never
        native_tier.attach(tape, c.native, c.mode.name)
    tape.meta = None if meta.simple else meta


cdef object fresh_draws(object rand, Tape tape, Work *w, tuple args):
    """Draw this call's random numbers into their slots of w (the same generator calls as
    the trace made); the generators' saved states, or NO_DRAWS if this tape's draws do not
    fit the call (the states are then restored already)."""
    cdef cnp.ndarray draw
    draws, saved = rand.redraw(tape, args)
    if draws is None:
        randomness.Policy.undo(saved)
        return NO_DRAWS
    for first, draw in draws:
        if first < 0 or first + cnp.PyArray_SIZE(draw) > tape.c.nslot:
            raise RuntimeError("fastad internal error: random draws outside the tape's slots")
        memcpy(w.val + <int64_t>first, cnp.PyArray_DATA(draw),
               cnp.PyArray_SIZE(draw) * sizeof(double))
    return saved


# ------------------------------------------------------------------------ for vmap and pickling
# fastad.batching (vmap) and fastad.serialize (pickling) read a Compiled's make-up and its
# signature cache through these functions (docs/scale.md).

def spec_of(Compiled c):
    """What `c` was made from, as Compiled(**spec) takes it back."""
    return dict(fun=c.fun, argnums=c.argnums, many=c.many, mode=c.mode.name, replay=c.replay,
                has_aux=c.has_aux, random=c.random, optimize=c.optimize, native=c.native)


def signature_of(Compiled c, tuple args, dict kwargs):
    """(layout, tapes) of the cached signature of a call with plain (non-pytree) arguments,
    or None: layout holds (kind, first input, inputs) per argument, kind 0 static, 1 scalar,
    2 array; tapes are most recently used first."""
    cdef Signature sig
    cdef Py_ssize_t i
    argnums = c.argnums_for(len(args))
    parts = [key_part(i, args[i], i in argnums) for i in range(len(args))]
    for k in sorted(kwargs or {}):
        parts.append((k, static_part(kwargs[k])))
    if UNCACHEABLE in parts or not c.replay:
        return None
    sig = c.cache.get(tuple(parts))
    if sig is None:
        return None
    layout = [(sig.kind[i], sig.offset[i], sig.size[i]) for i in range(sig.nargs)]
    return layout, list(sig.tapes)


def export_state(Compiled c):
    """The signature cache as plain data: [(key, nargs, tapes)] and the counters."""
    items = c.cache.items()
    last = [i for i, (k, s) in enumerate(items) if s is c.last]
    return {"cache": [(k, (<Signature>s).nargs, list((<Signature>s).tapes)) for k, s in items],
            "counts": (c.traces, c.replays, c.retraces), "last": last[0] if last else None}


def import_state(Compiled c, dict state):
    """Fill `c`'s cache from export_state's data (the tapes of a pickle)."""
    cdef Signature sig
    last = state.get("last")
    for i, (key, nargs, tapes) in enumerate(state["cache"]):
        key = tuple([SCALAR if p == SCALAR else p for p in key])   # the identity `is` tests
        sig = Signature(key, nargs)
        sig.tapes = list(tapes)
        c.cache.put(key, sig)
        if i == last and key in c.cache.entries:
            # the fast path's signature travels too: the first call after loading, like
            # the last one before pickling, skips building and hashing the key
            c.remember(sig)
    c.traces, c.replays, c.retraces = state["counts"]


def warm_calls(Compiled c, int rounds=2, int64_t max_slots=200_000):
    """Replay the fast path's signature `rounds` times at its tape's recorded inputs, the
    way a user's call does, then restore the counters (fastad.serialize, after loading):
    a new process's first calls through the call path pay for cold code and data, and
    the user's first call should not.  Nothing is traced here, nothing random is drawn and
    no Python of the user's runs: calls needing any of that are not warmed."""
    cdef Signature sig = c.last
    cdef Tape tape
    cdef Py_ssize_t i
    if (sig is None or not sig.fast or not sig.tapes or c.mode.family == "jvp" or active_traces
            or (c.rand is not None and c.rand.active)):
        return False
    tape = <Tape>sig.tapes[0]
    if tape.callbacks or tape.output_slot < 0 or tape.c.nslot > max_slots:
        return False
    x = tape.values[:sig.nin].copy()
    args = tuple([float(x[sig.offset[i]]) if sig.kind[i] == SCALAR_IN else
                  x[sig.offset[i]:sig.offset[i] + sig.size[i]].reshape(sig.shapes[i])
                  for i in range(sig.nargs)])
    counts = (c.traces, c.replays, c.retraces, c.reverse_sweeps, c.tangent_sweeps)
    try:
        if c.replay_signature(sig, args, c.argnums_for(sig.nargs), None) is None:
            return False        # a guard fails at the recorded inputs: leave it to the call
        for i in range(rounds - 1):
            c.run(args, None, None)     # the fast path: the signature is known to replay
    finally:
        c.traces, c.replays, c.retraces, c.reverse_sweeps, c.tangent_sweeps = counts
    return True


cdef Outputs find_outputs(Tape tape, object out, Mode mode, bint has_aux, object fun):
    """Where the function's output (and auxiliary data) live on the tape."""
    out, aux = _record.split_aux(out, has_aux)
    aux_spec = _record.aux_spec(tape, aux) if has_aux else None
    if mode.scalar_output:
        slot = output_slot(tape, out)
        if slot < 0:
            raise NonScalarOutputError(not_scalar_message(fun, out))
        return Outputs(np.array([slot], dtype=np.int64), (), None, aux_spec, not has_aux)
    leaves, treedef = tree_flatten(out)
    parts, shapes = [], []
    for leaf in leaves:
        s, shape = _record.output_slots(tape, leaf)
        parts.append(s)
        shapes.append(shape)
    slots = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if treedef is None:         # a single array or scalar
        return Outputs(slots, shapes[0], None, aux_spec, False)
    return Outputs(slots, (), (treedef, shapes), aux_spec, False)


def not_scalar_message(fun, out):
    """The error for a non-scalar output where a scalar is needed (grad, value_and_grad)."""
    shape = getattr(out, "shape", None)
    what = f"an array of shape {shape}" if shape is not None else f"a {type(out).__name__}"
    return NonScalarOutputError.message(getattr(fun, "__name__", repr(fun)), what)


# ------------------------------------------------------------------------ pytree arguments

cdef object run_tree(Compiled c, tuple args, dict kwargs, tuple tangents, tuple argnums):
    """Arguments that are pytrees: differentiate the function of their leaves (a Compiled of
    its own, cached per tree structure), then give each differentiated argument its
    derivative in its own structure (the mode's regroup_tree)."""
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
    cdef Compiled inner = c.trees.get(key)
    many = c.many

    def regroup(leaf_results):
        """Derivatives per argument leaf -> per argument, in the argument's structure."""
        out, k = [], 0
        for a in argnums:
            n = spans[a][1]
            out.append(tree_unflatten(defs[a], leaf_results[k:k + n]))
            k += n
        return tuple(out) if many else out[0]

    if inner is None:
        fun = c.fun

        def flat_fun(*leaves):
            return fun(*[tree_unflatten(d, leaves[o:o + n]) for d, (o, n) in zip(defs, spans)])

        leaf_nums = tuple(spans[a][0] + k for a in argnums for k in range(spans[a][1]))
        inner = c.like(flat_fun, leaf_nums)
        if c.mode.family == "jacobian":
            inner.regroup = regroup
        c.trees[key] = inner
    flat_tangents = None
    if tangents is not None:
        flat_tangents = tuple(l for t in tangents for l in tree_flatten(t)[0])
    res = inner.run(tuple(flat), kwargs, flat_tangents)
    return c.mode.regroup_tree(res, regroup, many, c.has_aux)


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

    def __reduce__(self):       # pickled with its tape (fastad.serialize)
        return (Outputs, (self.slots, self.shape, self.tree, self.aux, self.simple))

    def leaf_shapes(self):
        return [self.shape] if self.tree is None else self.tree[1]

    def kept_slots(self):
        """Every slot a replay reads: the outputs' and the auxiliary data's."""
        parts = [np.asarray(self.slots, dtype=np.int64).ravel()]
        for kind, payload in (self.aux[1] if self.aux is not None else ()):
            if kind == "slot":
                parts.append(np.array([payload], dtype=np.int64))
            elif kind == "slots":
                parts.append(np.asarray(payload, dtype=np.int64).ravel())
        return np.concatenate(parts)

    def remap(self, mapping):
        """Follow the optimizer's renaming of slots (old slot -> new slot)."""
        m = np.asarray(mapping, dtype=np.int64)
        self.slots = np.ascontiguousarray(m[self.slots])
        if self.aux is not None:
            treedef, specs = self.aux
            self.aux = (treedef, [(k, int(m[p]) if k == "slot" else
                                   m[np.asarray(p, dtype=np.int64)] if k == "slots" else p)
                                  for k, p in specs])
        if (self.slots < 0).any():
            raise RuntimeError("fastad internal error: the optimizer dropped an output slot")

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
                raise ComplexValueError(ComplexValueError.message("the cotangent"))
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
