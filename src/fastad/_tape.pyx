# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Tape extension type (owner of one C tape) and the three sweeps over it.

Design (what lives where, and why):
  (a) C (csrc/tape.c, sweeps.h, emit.c): the records, slots and constants, checked growth,
      the per-record kernels generated from the op table (csrc/ops.h), the recorded
      adjoints.  No Python: every failure is an error code.
  (b) Cython, here: the sweeps -- each one nogil loop over the records calling the inline
      kernel of csrc/sweeps.h, one `case` per op -- because they run on every replay; the
      workspaces that let threads replay one tape at once; the one place (`Tape.check`)
      where C error codes become Python exceptions.
  (c) Python, above: tracing (_tracer), the call path (_replay), the numpy surface.
The Tape type owns its C tape and frees it with itself; `records()` reads it back as
`Record`s for the tools (fastad.trace).
"""
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_GetName
import os
import threading
import time
from collections import namedtuple

import numpy as np

cnp.import_array()

cdef extern from "serial.h" nogil:
    ctypedef struct fa_tape_sizes:
        int64_t nrec, nslot, nin, ncon, hcap, ncranges, nix, ncb
    void fa_tape_sizes_of(const fa_tape *t, fa_tape_sizes *s)
    void fa_tape_export(const fa_tape *t, fa_rec *rec, double *val, int64_t *chash,
                        int64_t *cranges, int32_t *ix)
    int fa_tape_import(fa_tape *t, const fa_tape_sizes *s, const fa_rec *rec, const double *val,
                       const int64_t *chash, const int64_t *cranges, const int32_t *ix)

cdef extern from "sweeps.h" nogil:
    int fa_fwd(const fa_rec *p, double *v, const int32_t *ix)
    void fa_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix)
    void fa_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)

# a tape's machine code, when fastad.native has compiled it (docs/native.md)
cdef extern from "native_abi.h" nogil:
    ctypedef int (*fa_native_vec_fn)(int op, double *v, int32_t r, int32_t a, int32_t sa,
                                     int32_t b, int32_t sb, int32_t n) noexcept nogil
    ctypedef struct fa_native:
        int64_t (*fwd)(double *v, const int32_t *ix, fa_native_vec_fn vec) noexcept nogil
        void (*tan)(const double *v, double *t, const int32_t *ix) noexcept nogil
        void (*rev)(const double *v, double *g, const int32_t *ix) noexcept nogil
        int fused
        const int64_t *assigned
        int64_t nassigned
        int64_t (*fwd_x)(double *v, const int32_t *ix, fa_native_vec_fn vec,
                         const double *x) noexcept nogil
        void (*rev_x)(const double *v, double *g, const int32_t *ix, const double *x,
                      double *gx) noexcept nogil
        void (*vg_x)(double *v, double *g, const int32_t *ix, const double *x,
                     double *gx) noexcept nogil
    const fa_native *fa_native_get(const fa_tape *t)
    void fa_native_zero(const fa_native *n, double *adj, int64_t nslot)
    int fa_native_assigned(const fa_native *n, int64_t s)
    int fa_native_clear(const fa_native *n, const double *adj, int64_t nslot)
    int fa_native_vec(int op, double *v, int32_t r, int32_t a, int32_t sa,
                      int32_t b, int32_t sb, int32_t n) noexcept
    const void *fa_native_runtime()


Record = namedtuple("Record", ["op", "result", "operands"])
Record.__doc__ = """One record of a tape, as Tape.records() reads it back: `op` is its numpy
name; `result` its result slot (a range for a ranged record, -1 for a guard); `operands`
a tuple of slots, ranges (ranged operands) or a tuple of slots (a gather)."""


from fastad.errors import (EscapedTracerError, GuardFailure, NestedCallbackError,
                           NonScalarOutputError)


def op_table():
    """[(numpy_name, kind)] indexed by op code; kind is 'unary', 'binary', 'guard' or
    'struct'.  The Python layer builds its dispatch from this, so ops are listed once."""
    kinds = {FA_KIND_UNARY: "unary", FA_KIND_BINARY: "binary",
             FA_KIND_GUARD: "guard", FA_KIND_STRUCT: "struct"}
    return [(fa_op_table[i].name.decode(), kinds[fa_op_table[i].kind])
            for i in range(FA_NUM_OPS)]


def op_partials():
    """{numpy_name: (d/da, d/db)}: each elementwise op's partial derivatives as written in
    the op table, in its D_* language (e.g. 'D_COS(a)'); d/db is None for unary ops."""
    out = {}
    for i in range(FA_NUM_OPS):
        if fa_op_table[i].da != NULL:
            db = fa_op_table[i].db.decode() if fa_op_table[i].db != NULL else None
            out[fa_op_table[i].name.decode()] = (fa_op_table[i].da.decode(), db)
    return out


RECORD_BYTES = sizeof(fa_rec)
# op code -> numpy name / kind, read once for records() and error messages
cdef list OP_NAMES = [name for name, kind in op_table()]
cdef list OP_KINDS = [kind for name, kind in op_table()]


def _use_numpy_loops():
    """Point fa_vec_loops at numpy's float64 loop of each elementwise op's ufunc, so ranged
    records compute values with numpy's SIMD code.  Runs once, at import."""
    cdef cnp.ufunc uf
    cdef int i, j, k, nargs
    cdef bint all_double
    for code, (name, kind) in enumerate(op_table()):
        obj = getattr(np, name, None) if kind in ("unary", "binary") else None
        if not isinstance(obj, np.ufunc) or obj.nout != 1 or obj.nin != (1 if kind == "unary" else 2):
            continue
        uf = obj
        nargs = uf.nin + uf.nout
        if uf.functions == NULL or uf.types == NULL:
            continue
        for i in range(uf.ntypes):
            all_double = True
            for j in range(nargs):
                if uf.types[i * nargs + j] != cnp.NPY_DOUBLE:
                    all_double = False
            if all_double:
                fa_vec_loops[code].fn = <fa_npy_loop><void *>uf.functions[i]   # numpy runs float loops without the GIL too
                fa_vec_loops[code].data = uf.data[i]
                break


_use_numpy_loops()


cdef bint _blas_ready = False


def _use_blas():
    """Point fa_dgemm at scipy's BLAS dgemm, so MATMUL records (values, tangents and both
    adjoints) run in BLAS.  Runs once, when the first product is recorded: importing
    scipy.linalg costs more than the rest of `import fastad`, and programs without a matrix
    product never pay it.  (A MATMUL record always comes from Tape.matmul first; the ones
    a recorded adjoint adds come after, so no sweep reads fa_dgemm while it is set.)"""
    global fa_dgemm, _blas_ready
    if _blas_ready:
        return
    _blas_ready = True
    from scipy.linalg import cython_blas
    cap = cython_blas.__pyx_capi__["dgemm"]
    fa_dgemm = <fa_dgemm_fn>PyCapsule_GetPointer(cap, PyCapsule_GetName(cap))


cdef const void *native_runtime() noexcept:
    """The kernels generated code calls back for (fa_native_rt, csrc/native_abi.h): this
    module's, whose BLAS and LAPACK pointers are the ones set."""
    return fa_native_runtime()


cdef void copy_vec_loops(fa_vec_loop *dst) noexcept:
    """Give another extension that links the C core (fastad._batch) the loops found above."""
    memcpy(dst, fa_vec_loops, FA_NUM_OPS * sizeof(fa_vec_loop))


# the exception a callback raised during a sweep, until the sweep's caller raises it: per
# thread, since concurrent replays of one tape share the Tape
_pending = threading.local()


cdef extern from "optimize.h" nogil:
    ctypedef struct fa_opt_stats:
        int64_t loops, iterations, rolled_records, reductions, guards, abandoned
        int64_t recurrences
    int fa_optimize(const fa_tape *t, const int32_t *keep, int64_t nkeep, fa_tape **out,
                    int32_t *map, fa_opt_stats *st)


cdef extern from "fuse.h" nogil:
    ctypedef struct fa_fuse_plan:
        pass
    ctypedef struct fa_fuse_stats:
        int64_t chains, records, live, sums, words_after
    int64_t FA_FUSE_MIN_N
    int fa_fuse(const fa_tape *t, const int32_t *keep, int64_t nkeep, int64_t min_n,
                fa_fuse_plan **out,
                fa_fuse_stats *st)
    void fa_fuse_free(fa_fuse_plan *p)
    int64_t fa_fused_forward(const fa_tape *t, double *v)
    void fa_fused_tangent(const fa_tape *t, const double *v, double *tan)
    void fa_fused_reverse(const fa_tape *t, const double *v, double *adj)
    void fa_fused_zero(const fa_tape *t, double *adj)
    void fa_fused_zero_from(const fa_tape *t, double *adj, int64_t start)
    int64_t fa_fuse_count(const fa_fuse_plan *p)
    int fa_fuse_chain(const fa_fuse_plan *p, int64_t c, int64_t *first, int64_t *end,
                      int64_t *nmembers, uint8_t *live, int64_t cap)


cdef enum:
    CB_FORWARD = 0
    CB_TANGENT = 1
    CB_REVERSE = 2


cdef int64_t sweep_forward(const fa_tape *t, double *v) noexcept nogil:
    """Values at the inputs already in v[0:nin]; returns -1, the index of the first failed
    guard, or -2 if a callback raised."""
    cdef int64_t i
    cdef const fa_native *nat = fa_native_get(t)
    if nat != NULL and nat.fwd != NULL:
        return nat.fwd(v, t.ix, fa_native_vec)
    if t.ncb:
        for i in range(t.nrec):
            if t.rec[i].op == FA_CALLBACK:
                if callback(t, i, v, NULL, CB_FORWARD):
                    return -2
            elif fa_fwd(&t.rec[i], v, t.ix):
                return i
        return -1
    if t.fused != NULL:      # elementwise chains tile by tile (csrc/fuse.c)
        return fa_fused_forward(t, v)
    for i in range(t.nrec):
        if fa_fwd(&t.rec[i], v, t.ix):
            return i
    return -1


cdef int sweep_tangent(const fa_tape *t, const double *v, double *tan) noexcept nogil:
    """Forward mode: tangents of the inputs already in tan[0:nin]."""
    cdef int64_t i
    cdef const fa_native *nat = fa_native_get(t)
    if nat != NULL and nat.tan != NULL:
        nat.tan(v, tan, t.ix)
        return 0
    if t.fused != NULL and t.ncb == 0:
        fa_fused_tangent(t, v, tan)
        return 0
    for i in range(t.nrec):
        if t.ncb and t.rec[i].op == FA_CALLBACK:
            if callback(t, i, <double *>v, tan, CB_TANGENT):
                return -1
        else:
            fa_tan(&t.rec[i], v, tan, t.ix)
    return 0


cdef int sweep_reverse(const fa_tape *t, const double *v, double *adj, int32_t out,
                       double seed) noexcept nogil:
    """Reverse mode: adjoints of every slot for the seed `seed` on slot `out`."""
    # the native code is read once: a background compile may swap it in at any moment,
    # and the zeroing must suit the code that runs the sweep
    cdef const fa_native *nat = fa_native_get(t)
    if nat != NULL and nat.rev != NULL and nat.nassigned and fa_native_assigned(nat, out):
        nat = NULL      # native code would overwrite the seed: the interpreter (same bits)
    if t.fused != NULL and (nat == NULL or nat.fused):
        # fused intermediates' adjoints are never read: not zeroed (csrc/fuse.c), neither
        # by the interpreter nor by native code of the fused chains
        fa_fused_zero(t, adj)
    elif nat != NULL and nat.rev != NULL and nat.nassigned:
        # native code assigns some ranges' adjoints before reading them: only the others
        fa_native_zero(nat, adj, t.nslot)
    else:
        memset(adj, 0, <size_t>t.nslot * sizeof(double))
    adj[out] = seed
    return reverse_with(t, nat, v, adj)


cdef bint has_inplace(const fa_tape *t) noexcept nogil:
    """Has the tape native sweeps that read the inputs in place (docs/native.md, "Inputs
    read in place")?  Native code, once installed, is never swapped out, so a True answer
    holds for the rest of the call."""
    cdef const fa_native *nat = fa_native_get(t)
    return nat != NULL and nat.fwd_x != NULL and nat.rev_x != NULL


cdef int64_t sweep_forward_inplace(const fa_tape *t, double *v, const double *x) noexcept nogil:
    """sweep_forward with the inputs read from x[0..nin) rather than v (has_inplace).
    Returns -1 without sweeping when the reverse sweep computes the values too (vg_x)."""
    cdef const fa_native *nat = fa_native_get(t)
    if nat.vg_x != NULL:
        return -1
    return nat.fwd_x(v, t.ix, fa_native_vec, x)


cdef void sweep_reverse_inplace(const fa_tape *t, double *v, const double *x,
                                double *adj, double *gx, int32_t out) noexcept nogil:
    """sweep_reverse seeded with 1 on slot `out` (not an input), the inputs' values read
    from x and their adjoints written to gx[0..nin) (zeroed here, then added to: the very
    operations of the workspace's adjoints), after sweep_forward_inplace; with the values
    too when the code does both in one pass (vg_x)."""
    cdef const fa_native *nat = fa_native_get(t)
    fa_fused_zero_from(t, adj, t.nin)
    memset(gx, 0, <size_t>t.nin * sizeof(double))
    adj[out] = 1.0
    if nat.vg_x != NULL:
        nat.vg_x(v, adj, t.ix, x, gx)
    else:
        nat.rev_x(v, adj, t.ix, x, gx)


cdef int sweep_reverse_seeded(const fa_tape *t, const double *v, double *adj) noexcept nogil:
    """Reverse mode from adjoints already seeded in adj (zero elsewhere)."""
    cdef const fa_native *nat = fa_native_get(t)
    if nat != NULL and nat.rev != NULL and nat.nassigned and \
            not fa_native_clear(nat, adj, t.nslot):
        nat = NULL      # a seed where native code assigns: the interpreter (same bits)
    return reverse_with(t, nat, v, adj)


cdef int reverse_with(const fa_tape *t, const fa_native *nat, const double *v,
                      double *adj) noexcept nogil:
    """The reverse sweep by native code `nat` when it has one, else by the interpreter."""
    cdef int64_t i
    if nat != NULL and nat.rev != NULL:
        nat.rev(v, adj, t.ix)
        return 0
    if t.fused != NULL and t.ncb == 0:
        fa_fused_reverse(t, v, adj)
        return 0
    for i in range(t.nrec - 1, -1, -1):
        if t.ncb and t.rec[i].op == FA_CALLBACK:
            if callback(t, i, <double *>v, adj, CB_REVERSE):
                return -1
        else:
            fa_rev(&t.rec[i], v, adj, t.ix)
    return 0


cdef int callback(const fa_tape *t, int64_t i, double *v, double *d, int mode) noexcept with gil:
    """Run record i, a custom_vjp function (fastad.custom), in Python: its value (forward),
    or its rule (reverse: the inputs' adjoints += the rule applied to the outputs')."""
    cdef Tape tape = <Tape>t.owner
    cdef const fa_rec *p = &t.rec[i]
    cdef int64_t n = p[1].r, m = p[1].a, k
    try:
        cb = tape.callbacks[p[1].b]
        x = np.array([v[p.a + k] for k in range(n)])
        if mode == CB_FORWARD:
            out = cb.forward(x)
            for k in range(m):
                v[p.r + k] = out[k]
        elif mode == CB_REVERSE:
            g = np.array([d[p.r + k] for k in range(m)])
            if g.any():
                gin = cb.backward(x, g)
                for k in range(n):
                    d[p.a + k] += gin[k]
        else:
            raise NestedCallbackError(NestedCallbackError.forward_message(cb.name))
        return 0
    except BaseException as e:
        # per thread: concurrent replays of one tape each raise their own exception
        _pending.e = e
        return -1


cdef void free_work(Work *w) noexcept:
    free(w.val)
    free(w.adj)
    free(w.tan)
    free(w)


cdef object copy_slots(const double *p, int64_t n):
    if p == NULL:
        return None
    a = np.empty(n)
    if n:
        memcpy(cnp.PyArray_DATA(a), p, n * sizeof(double))
    return a


cdef double[::1] flat_inputs(object x, int64_t nin, str what):
    cdef double[::1] xs = np.ascontiguousarray(x, dtype=np.float64).ravel()
    if xs.shape[0] != nin:
        raise ValueError(f"fastad: this tape has {nin} inputs, got {xs.shape[0]} {what}")
    return xs


def _fuse_min_n():
    """The shortest chain transforms fuse: FA_FUSE_MIN_N, or the environment's
    FASTAD_FUSE_MIN_N (docs/design.md, "Fusion")."""
    text = os.environ.get("FASTAD_FUSE_MIN_N", "").strip()
    if not text:
        return FA_FUSE_MIN_N
    try:
        return max(1, int(text))
    except ValueError:
        raise ValueError(f"fastad: FASTAD_FUSE_MIN_N={text!r} is not a whole number of "
                         "elements; set it to e.g. 32768, or unset it") from None


cdef class Tape:
    """A recorded program: records, constants and the arrays the sweeps work in.

    Made by `fastad.record` (or internally by the differentiation wrappers).  The methods
    below are the low-level interface the higher-level API is built on.
    """

    def __cinit__(self):
        self.c = fa_tape_new()
        if self.c == NULL:
            raise MemoryError("fastad: could not allocate a tape")
        self.recording = True
        self.output_slot = -1
        self.callbacks = []
        self.c.owner = <void *>self     # borrowed: the fa_tape dies with this object

    def __dealloc__(self):
        cdef int i
        for i in range(self.nspare):
            free_work(self.spare[i])
        free(self.main.adj)
        free(self.main.tan)
        if self.c != NULL:
            free(self.c.native)    # the function table; its shared object stays loaded
            fa_fuse_free(<fa_fuse_plan *>self.c.fused)
        fa_tape_free(self.c)   # owns main.val

    cdef int check(self, int err) except -1:
        """Turn a C error code into the Python exception that says what happened."""
        if err == FA_OK:
            return 0
        if err == FA_ENOMEM:
            need = max(self.c.want, self.c.nslot)
            raise MemoryError(
                f"fastad: out of memory growing the tape to {need} slots "
                f"({need * 16} bytes of values and adjoints, plus {self.c.nrec * 16} bytes of "
                f"records so far)")
        if err == FA_EOVERFLOW:
            raise OverflowError(
                f"fastad: the tape would need {self.c.want} slots, more than 2**31 - 1 slots (it "
                f"has {self.c.nslot}); split the computation or use vectorized numpy operations")
        if err == FA_ECALLBACK:
            raise NestedCallbackError(NestedCallbackError.nested_message())
        if err == FA_EORDER:
            raise RuntimeError("fastad internal error: an input was added after an operation")
        raise RuntimeError(f"fastad internal error: bad record (code {err})")

    cdef int raise_pending(self) except -1:
        """Raise the exception a callback stored during a sweep (in this thread)."""
        e = getattr(_pending, "e", None)
        _pending.e = None
        if e is None:
            raise RuntimeError("fastad internal error: a sweep failed without an exception")
        raise e

    cdef int finish(self, int32_t out) except -1:
        """End recording with `out` as the output slot; the main workspace gets its adjoints."""
        self.recording = False
        self.output_slot = out
        self.main.val = self.c.val
        return 0

    cdef int ensure_adj(self, Work *w) except -1:
        if w.adj == NULL:
            w.adj = <double *>calloc(max(self.c.nslot, 1), sizeof(double))
            if w.adj == NULL:
                raise MemoryError(f"fastad: cannot allocate {self.c.nslot} adjoints")
        return 0

    cdef int ensure_tan(self, Work *w) except -1:
        # zeroed once: constants keep tangent 0 because no record writes them
        if w.tan == NULL:
            w.tan = <double *>calloc(max(self.c.nslot, 1), sizeof(double))
            if w.tan == NULL:
                raise MemoryError(f"fastad: cannot allocate {self.c.nslot} tangents")
        return 0

    cdef Work *acquire(self) except NULL:
        """A workspace for one replay.  Called with the GIL held, which is what makes the
        busy flag safe; a concurrent replay gets a private copy (freed by release)."""
        cdef Work *w
        if self.recording:
            raise RuntimeError("fastad internal error: replay of a tape still recording")
        if self.native_countdown > 0:       # the tape is warming up for native code
            self.native_countdown -= 1
            if self.native_countdown == 0:
                self.native_policy.hot(self)
        if not self.main_busy:
            self.main_busy = True
            self.main.val = self.c.val
            return &self.main
        if self.nspare:
            # a private workspace an earlier concurrent replay gave back: its constants are
            # still in place (no sweep writes them), and every other slot is written before
            # it is read
            self.nspare -= 1
            return self.spare[self.nspare]
        w = <Work *>calloc(1, sizeof(Work))
        if w == NULL:
            raise MemoryError("fastad: cannot allocate a workspace")
        w.val = <double *>malloc(max(self.c.nslot, 1) * sizeof(double))
        if w.val == NULL:
            free(w)
            raise MemoryError(f"fastad: cannot allocate {self.c.nslot} values")
        # only the constants: no sweep writes them, so reading them while another thread
        # replays the main workspace is race-free; every other slot is written before use
        fa_copy_consts(self.c, w.val)
        return w

    cdef void release(self, Work *w) noexcept:
        if w == &self.main:
            self.main_busy = False
        elif self.nspare < 4:
            # kept for the next concurrent replay: allocating and freeing a big tape's
            # workspace on every call costs page faults with the GIL held (glibc gives the
            # memory back to the system), which undid the speed-up of threads
            self.spare[self.nspare] = w
            self.nspare += 1
        else:
            free_work(w)

    # ------------------------------------------------------------------ Python interface
    def _finish(self, int32_t out):
        """End recording with `out` as the output slot (used by fastad.record)."""
        if not 0 <= out < self.c.nslot:
            raise ValueError(f"fastad: output slot {out} is not a slot of this tape "
                             f"({self.c.nslot} slots)")
        self.finish(out)

    def _abort(self):
        """End a recording that failed: the tape is dropped and its values become escaped."""
        self.finish(-1)

    def optimize(self, keep=(), fuse=None):
        """Roll the loops of this finished tape back up, then plan the fusion of its
        elementwise chains (docs/design.md, "The optimizer" and "Fusion").

        `keep` lists the slots the caller will read (outputs, auxiliary data); the output
        slot is kept too.  Returns the map old slot -> new slot (an int32 array, -1 for a
        slot that no longer exists), or None when the records are left as recorded (fusion
        never renames slots).  `fuse` plans the fusion: None (the default) fuses the chains
        of at least FA_FUSE_MIN_N (32768) elements -- the environment's FASTAD_FUSE_MIN_N
        overrides that length, and FASTAD_FUSE=0 turns fusion off --; True fuses every
        chain, whatever its length; False none.  What was done is in `self.optimized`."""
        cdef const int32_t[::1] k = np.concatenate(
            [np.asarray(keep, dtype=np.int64).ravel(),
             [self.output_slot] if self.output_slot >= 0 else []]).astype(np.int32)
        cdef fa_tape *n = NULL
        cdef fa_opt_stats st
        cdef int err
        if self.recording or self.main_busy or self.main.adj != NULL or self.main.tan != NULL \
                or self.nspare:
            raise RuntimeError("fastad: only a finished tape that was never swept can be "
                               "optimized")
        mapping = np.empty(max(self.c.nslot, 1), dtype=np.int32)
        cdef int32_t[::1] m = mapping
        cdef const int32_t *kp = &k[0] if k.shape[0] else NULL
        info = {"records_before": int(self.c.nrec), "bytes_before": int(self.nbytes)}
        t0 = time.perf_counter()
        err = fa_optimize(self.c, kp, k.shape[0], &n, &m[0], &st)
        info["seconds"] = time.perf_counter() - t0
        self.check(err)
        info.update(loops=st.loops, iterations=st.iterations, rolled_records=st.rolled_records,
                    reductions=st.reductions, guards=st.guards, abandoned=bool(st.abandoned),
                    recurrences=st.recurrences)
        if n != NULL:
            fa_tape_free(self.c)
            self.c = n
            self.c.owner = <void *>self
            if self.output_slot >= 0:
                self.output_slot = m[self.output_slot]
            self.main.val = self.c.val
        info["records_after"] = int(self.c.nrec)
        info["bytes_after"] = int(self.nbytes)
        min_n = 1
        if fuse is None:
            fuse = os.environ.get("FASTAD_FUSE", "1") != "0"
            min_n = _fuse_min_n()
        info.update(fused_chains=0, fused_records=0, fused_live=0, fused_sums=0,
                    words_after_fusion=int(self.c.nrec))
        if fuse:
            kept = np.asarray(k, dtype=np.int64)
            if n != NULL:
                kept = mapping[kept] if kept.shape[0] else kept
            self._fuse(np.ascontiguousarray(kept[kept >= 0], dtype=np.int32), min_n, info)
        self.optimized = info
        return mapping if n != NULL else None

    def _fuse(self, const int32_t[::1] keep, int64_t min_n, dict info):
        """Plan the fusion of the elementwise chains (csrc/fuse.c); the records stay."""
        cdef fa_fuse_plan *plan = NULL
        cdef fa_fuse_stats st
        cdef const int32_t *kp = &keep[0] if keep.shape[0] else NULL
        t0 = time.perf_counter()
        self.check(fa_fuse(self.c, kp, keep.shape[0], min_n, &plan, &st))
        info["seconds"] += time.perf_counter() - t0
        fa_fuse_free(<fa_fuse_plan *>self.c.fused)
        self.c.fused = <void *>plan
        if plan != NULL and st.sums:
            # the recording added the chains' final sums in one running sum, replays add
            # them in lanes (docs/conventions.md, "Fused chains"): sweep the recorded
            # inputs once more, so the first call returns what every replay will
            fa_fused_forward(self.c, self.c.val)
        info.update(fused_chains=st.chains, fused_records=st.records, fused_live=st.live,
                    fused_sums=st.sums, words_after_fusion=st.words_after)

    def fused_chains(self):
        """The fused chains (docs/design.md, "Fusion"): a list of (first record, end record,
        which members' results are written to memory)."""
        cdef fa_fuse_plan *plan = <fa_fuse_plan *>self.c.fused
        cdef int64_t c, first, end, nm
        cdef uint8_t live[64]
        out = []
        for c in range(fa_fuse_count(plan)):
            self.check(fa_fuse_chain(plan, c, &first, &end, &nm, live, 64))
            out.append((first, end, [bool(live[j]) for j in range(min(nm, 64))]))
        return out

    def __len__(self):
        """Number of records (a ranged record counts its header and its EXT word)."""
        return self.c.nrec

    @property
    def nbytes(self):
        """Bytes of the records, the gather index pool, and a value and an adjoint per slot."""
        return (self.c.nrec * sizeof(fa_rec) + self.c.nix * sizeof(int32_t)
                + self.c.nslot * 2 * sizeof(double))

    @property
    def n_inputs(self):
        return self.c.nin

    @property
    def n_slots(self):
        return self.c.nslot

    @property
    def n_constants(self):
        return self.c.ncon

    @property
    def input_slots(self):
        return tuple(range(self.c.nin))

    def records(self):
        """[Record(op, result, operands)] in execution order (Records are tuples, so
        `for op, result, operands in tape.records()` works too).

        A ranged record shows its result and operand ranges as Python ranges; guards
        have result slot -1 and the name of their comparison."""
        cdef int64_t i
        cdef const fa_rec *p
        out = []
        names, kinds = OP_NAMES, OP_KINDS
        for i in range(self.c.nrec):
            p = &self.c.rec[i]
            if p.op == FA_EXT:
                continue
            kind = kinds[p.op]
            if kind == "struct":
                out.append(Record(*self._struct_record(names[p.op], p)))
            elif p.flags & FA_RANGED:
                n, sa, sb = p[1].r, p[1].a, p[1].b
                res = p.r if p.op == FA_SUM else range(p.r, p.r + n)
                ops = (range(p.a, p.a + n * sa, sa) if sa else p.a,)
                if kind == "binary":
                    ops += (range(p.b, p.b + n * sb, sb) if sb else p.b,)
                out.append(Record(names[p.op], res, ops))
            elif kind == "unary":
                out.append(Record(names[p.op], p.r, (p.a,)))
            else:
                out.append(Record(names[p.op], p.r, (p.a, p.b)))
        return out

    cdef tuple _struct_record(self, str name, const fa_rec *p):
        cdef int64_t n = p[1].r, m = p[1].a, k = p[1].b
        if name == "loop":      # a LOOP record (csrc/loop.h): the slots it writes
            return (name, range(p.r, p.a + 1 if n else p.r), ())
        if p.op == FA_GATHER:
            return (name, range(p.r, p.r + n),
                    (tuple(self.c.ix[p.a + i] for i in range(n)),))
        if fa_op_table[p.op].name.decode() in _LINALG_OUTPUTS:   # csrc/linalg.h
            return linalg_struct_record(name, p.op, p.r, p.a, p.b, n, m)
        if p.op == FA_MATMUL:   # (m x k) @ (k x p): ext fields m, k, p
            return (name, range(p.r, p.r + n * k),
                    (range(p.a, p.a + n * m), range(p.b, p.b + m * k)))
        nres = n * m if p.op == FA_CUMSUM else m
        res = p.r if nres == 1 else range(p.r, p.r + nres)
        return (name, res, (range(p.a, p.a + n * m),))

    # -- recording primitives for the array layer (one call per array operation) --------
    cdef int _live(self) except -1:
        if not self.recording:
            raise EscapedTracerError(EscapedTracerError.message("array"))
        return 0

    def const(self, double x):
        """Slot of the scalar constant x (deduplicated)."""
        cdef int32_t s
        self._live()
        self.check(fa_const(self.c, x, &s))
        return s

    def const_array(self, values):
        """First slot of a fresh contiguous range holding the constant array `values`."""
        cdef const double[::1] xs = np.ascontiguousarray(values, dtype=np.float64).ravel()
        cdef int32_t s
        self._live()
        self.check(fa_const_array(self.c, &xs[0], xs.shape[0], &s))
        return s

    def gather(self, idx):
        """First slot of a new range r with r[k] = slot idx[k]."""
        cdef const int64_t[::1] ix = np.ascontiguousarray(idx, dtype=np.int64).ravel()
        cdef int32_t s
        self._live()
        self.check(fa_gather(self.c, &ix[0], ix.shape[0], &s))
        return s

    def op_ranged(self, int op, int32_t a, int32_t sa, int32_t b, int32_t sb, int32_t n):
        """First slot of n results of elementwise op over ranges (stride 1) or broadcast
        slots (stride 0)."""
        cdef int32_t s
        self._live()
        self.check(fa_op_ranged(self.c, op, a, sa, b, sb, n, &s))
        return s

    def reduce(self, int op, int32_t a, int64_t n, int64_t m):
        """First slot of the m segment results (m*n for cumsum) of a segmented reduction."""
        cdef int32_t s
        self._live()
        self.check(fa_reduce(self.c, op, a, n, m, &s))
        return s

    def matmul(self, int32_t a, int32_t b, int64_t m, int64_t k, int64_t p):
        """First slot of the (m x p) product of row-major ranges a (m x k) and b (k x p)."""
        cdef int32_t s
        self._live()
        _use_blas()
        self.check(fa_matmul_rec(self.c, a, b, m, k, p, &s))
        return s

    def mark_passive(self, active_inputs):
        """Flag the operands that depend on no active input (a bool per input), so reverse
        sweeps skip their adjoints.  Their adjoints are then not computed: only for tapes
        whose callers read the adjoints of active inputs alone."""
        cdef const uint8_t[::1] a = np.ascontiguousarray(active_inputs, dtype=np.uint8)
        if a.shape[0] != self.c.nin:
            raise ValueError("fastad: one activity flag per input is needed")
        if self.c.nin:
            self.check(fa_mark_passive(self.c, &a[0]))

    def emit_reverse(self, int64_t lo, int64_t hi, int32_t out):
        """Record the reverse sweep of records [lo, hi) seeded with 1 on slot `out`.

        Returns an int32 array: for each slot that existed before the call, the slot now
        holding d out / d slot (-1 where that derivative is zero)."""
        cdef int32_t seed
        self._live()
        adj = np.full(self.c.nslot, -1, dtype=np.int32)
        cdef int32_t[::1] a = adj
        self.check(fa_const(self.c, 1.0, &seed))
        self.check(fa_emit_reverse(self.c, lo, hi, out, seed, &a[0]))
        return adj

    def op1(self, int op, int32_t a):
        """Slot of the result of unary op `op` on slot a (for fastad's array and nesting layers)."""
        cdef int32_t s
        self._live()
        self.check(fa_op1(self.c, op, a, &s))
        return s

    def callback(self, int32_t a, int64_t n, values, cb):
        """Record a CALLBACK record: the custom_vjp function `cb` of the n-slot range at a,
        whose results at the recording point are `values`; returns its first result slot."""
        cdef const double[::1] xs = np.ascontiguousarray(values, dtype=np.float64).ravel()
        cdef int32_t s
        self._live()
        self.callbacks.append(cb)
        self.check(fa_callback(self.c, a, n, xs.shape[0], len(self.callbacks) - 1, &xs[0], &s))
        return s

    def slot_values(self, idx):
        """The current values of the slots idx (an integer array), recording or replaying."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.c.nslot):
            raise IndexError("fastad: slot out of range")
        return copy_slots(self.c.val, self.c.nslot)[idx]

    def constant_value(self, slot):
        """The value of a constant slot, or None if the slot is an input or a result."""
        if not 0 <= slot < self.c.nslot or not fa_is_const(self.c, slot):
            return None
        return self.c.val[slot]

    @property
    def values(self):
        """Copy of every slot's value after the last recording or forward()."""
        return copy_slots(self.c.val, self.c.nslot)

    @property
    def tangents(self):
        """Copy of every slot's tangent after the last tangent(), or None."""
        return copy_slots(self.main.tan, self.c.nslot)

    @property
    def adjoints(self):
        """Copy of every slot's adjoint after the last reverse(), or None."""
        return copy_slots(self.main.adj, self.c.nslot)

    cdef int _main(self) except -1:
        """Take the main workspace for a low-level sweep (the caller clears main_busy in a
        `finally`): compiled replays from other threads meanwhile use private workspaces."""
        if self.recording:
            raise RuntimeError("fastad: the tape is still recording")
        if self.output_slot < 0:
            # a recording that failed (the traced function raised), or one whose output is
            # empty: the sweeps below read and seed the output slot
            raise RuntimeError("fastad: this tape has no output slot (its recording failed, "
                               "or the function's output is empty); it cannot be swept")
        if self.main_busy:
            raise RuntimeError("fastad: the tape is being replayed by another call")
        self.main.val = self.c.val
        self.main_busy = True
        return 0

    def forward(self, x):
        """Replay the values at new inputs `x` (flat, in input order); return the output.

        Raises GuardFailure if a comparison recorded while tracing changes outcome: the
        values past that guard are not valid, and the function must be traced again."""
        cdef double[::1] xs = flat_inputs(x, self.c.nin, "inputs")
        cdef int64_t failed
        self._main()
        try:
            if self.c.nin:
                memcpy(self.c.val, &xs[0], self.c.nin * sizeof(double))
            with nogil:
                failed = sweep_forward(self.c, self.c.val)
        finally:
            self.main_busy = False
        if failed == -2:
            self.raise_pending()
        if failed >= 0:
            raise GuardFailure(GuardFailure.message(failed, self.records_name(failed)))
        return self.c.val[self.output_slot]

    def records_name(self, int64_t i):
        if not 0 <= i < self.c.nrec:
            raise IndexError(f"fastad: record {i} out of range ({self.c.nrec} records)")
        return OP_NAMES[self.c.rec[i].op]

    def tangent(self, xdot):
        """Forward mode at the current values: the output's tangent for input tangents `xdot`."""
        cdef double[::1] xs = flat_inputs(xdot, self.c.nin, "tangents")
        cdef int rc
        self._main()
        try:
            self.ensure_tan(&self.main)
            if self.c.nin:
                memcpy(self.main.tan, &xs[0], self.c.nin * sizeof(double))
            with nogil:
                rc = sweep_tangent(self.c, self.main.val, self.main.tan)
        finally:
            self.main_busy = False
        if rc:
            self.raise_pending()
        return self.main.tan[self.output_slot]

    def reverse(self, double seed=1.0):
        """Reverse mode at the current values: the inputs' adjoints (an array) for `seed` on
        the output."""
        cdef int rc
        self._main()
        try:
            self.ensure_adj(&self.main)
            with nogil:
                rc = sweep_reverse(self.c, self.main.val, self.main.adj, self.output_slot, seed)
        finally:
            self.main_busy = False
        if rc:
            self.raise_pending()
        g = np.empty(self.c.nin)
        if self.c.nin:
            memcpy(cnp.PyArray_DATA(g), self.main.adj, self.c.nin * sizeof(double))
        return g

    # -- pickling (fastad.serialize): the raw arrays, whatever records they hold ----------
    def _raw_state(self):
        """The tape's arrays and sizes as numpy arrays and ints (see csrc/serial.h)."""
        cdef fa_tape_sizes s
        if self.recording:
            raise RuntimeError("fastad: a tape still recording cannot be pickled")
        fa_tape_sizes_of(self.c, &s)
        rec = np.empty(s.nrec * sizeof(fa_rec), dtype=np.uint8)
        val = np.empty(s.nslot)
        chash = np.empty(s.hcap, dtype=np.int64)
        cranges = np.empty(2 * s.ncranges, dtype=np.int64)
        ix = np.empty(s.nix, dtype=np.int32)
        fa_tape_export(self.c, <fa_rec *>cnp.PyArray_DATA(rec), <double *>cnp.PyArray_DATA(val),
                       <int64_t *>cnp.PyArray_DATA(chash), <int64_t *>cnp.PyArray_DATA(cranges),
                       <int32_t *>cnp.PyArray_DATA(ix))
        sizes = (s.nrec, s.nslot, s.nin, s.ncon, s.hcap, s.ncranges, s.nix, s.ncb)
        return {"sizes": sizes, "rec": rec, "val": val, "chash": chash, "cranges": cranges,
                "ix": ix, "output_slot": self.output_slot, "meta": self.meta,
                "callbacks": self.callbacks}

    @staticmethod
    def _from_raw_state(dict state):
        """A finished Tape holding the arrays of `_raw_state` (checked: csrc/serial.h)."""
        cdef Tape tape = Tape()
        cdef fa_tape_sizes s
        (s.nrec, s.nslot, s.nin, s.ncon, s.hcap, s.ncranges, s.nix, s.ncb) = state["sizes"]
        rec = np.ascontiguousarray(state["rec"], dtype=np.uint8)
        val = np.ascontiguousarray(state["val"], dtype=np.float64)
        chash = np.ascontiguousarray(state["chash"], dtype=np.int64)
        cranges = np.ascontiguousarray(state["cranges"], dtype=np.int64)
        ix = np.ascontiguousarray(state["ix"], dtype=np.int32)
        if (s.nrec < 0 or rec.shape[0] != s.nrec * <int64_t>sizeof(fa_rec) or val.shape[0] != s.nslot
                or chash.shape[0] != s.hcap or cranges.shape[0] != 2 * s.ncranges
                or ix.shape[0] != s.nix):
            raise ValueError("fastad: the pickled tape's arrays do not match its sizes")
        if fa_tape_import(tape.c, &s, <fa_rec *>cnp.PyArray_DATA(rec),
                          <double *>cnp.PyArray_DATA(val), <int64_t *>cnp.PyArray_DATA(chash),
                          <int64_t *>cnp.PyArray_DATA(cranges),
                          <int32_t *>cnp.PyArray_DATA(ix)) != FA_OK:
            raise ValueError("fastad: the pickled tape is corrupt (a record addresses a slot "
                             "it does not have)")
        out = state["output_slot"]
        if not -1 <= out < s.nslot:
            raise ValueError("fastad: the pickled tape's output slot is out of range")
        tape.callbacks = list(state["callbacks"])
        tape.meta = state["meta"]
        tape.finish(out)
        return tape

    def __reduce__(self):
        from fastad.serialize import reduce_tape
        return reduce_tape(self)

    def to_c(self, path, name="fastad_fn", jvp=True):
        """Write the tape as standalone C: `path` (a .c file) and its header beside it,
        with `name`_value_grad (and `name`_jvp) on plain double arrays, no Python needed.
        Returns (c_path, header_path).  See docs/native.md."""
        from fastad.native import export
        return export(self, path, name, jvp)

    def __repr__(self):
        return (f"<fastad.Tape: {self.c.nrec} records, {self.c.nslot} slots "
                f"({self.c.nin} inputs, {self.c.ncon} constants), {self.nbytes} bytes>")


include "_linalg.pxi"
