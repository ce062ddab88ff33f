# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Replaying one tape for a batch of points in one call (fastad.vmap; docs/scale.md).

A `Plan` says how one point's row of results is read off a tape: values of some slots,
adjoints after reverse sweeps seeded at output slots, tangents after tangent sweeps
seeded at inputs.  `Plan.run` replays the tape for every lane (a row of an input matrix)
without the GIL and writes the rows of the lanes whose guards all hold; the others are
left for the caller, who groups them on the tape that fits (fastad.batching).

Tapes of scalar records and of elementwise array records, sums and gathers are swept
batch-major (csrc/batch.h: each record over B lanes at once); other tapes (linear
algebra, other reductions, callbacks, record kinds batch.h does not know) are swept lane
by lane with the sweeps of fastad._tape.  Threads split
the lanes at block boundaries, so the blocks, and every bit of the results, do not depend
on the number of threads.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, INT32_MAX, INT64_MAX
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
cimport cython
cimport numpy as cnp
import threading

import numpy as np

from fastad._tape cimport (Tape, fa_tape, fa_rec, fa_vec_loops, fa_copy_consts, copy_vec_loops,
                           sweep_forward, sweep_tangent, sweep_reverse)

cnp.import_array()

cdef extern from "batch.h" nogil:
    int64_t fa_batch_records(const fa_tape *t, int32_t B, fa_rec *out, int64_t cap,
                             int64_t *naux)
    void fa_batch_forward(const fa_rec *rec, int64_t nrec, double *v, int32_t B,
                          const int32_t *ix, uint8_t *bad, int vector)
    int fa_trig_vector_available()
    void fa_batch_tangent(const fa_rec *rec, int64_t nrec, const double *v, double *t,
                          int32_t B, const int32_t *ix)
    void fa_batch_reverse(const fa_rec *rec, int64_t nrec, const double *v, double *g,
                          int32_t B, const int32_t *ix)

cdef extern from "native_abi.h" nogil:
    ctypedef int (*fa_native_vec_fn)(int op, double *v, int32_t r, int32_t a, int32_t sa,
                                     int32_t b, int32_t sb, int32_t n)
    int fa_native_vec(int op, double *v, int32_t r, int32_t a, int32_t sa,
                      int32_t b, int32_t sb, int32_t n)

# a block's compiled batch-major sweeps (fastad._codegen_batch; fastad.native_batch)
ctypedef void (*bfwd_fn)(double *v, uint8_t *bad, const int32_t *ix,
                         fa_native_vec_fn vec) noexcept nogil
ctypedef void (*brev_fn)(const double *v, double *g, const int32_t *ix) noexcept nogil
ctypedef void (*bzero_fn)(double *g) noexcept nogil
ctypedef void (*btan_fn)(const double *v, double *t, const int32_t *ix) noexcept nogil

cdef extern from *:
    void __builtin_prefetch(const void *addr, int rw, int locality) nogil

# The pieces of a batch's run, taken in turn by the threads that sweep it (Plan.run).
# Each thread keeps one workspace for all the pieces it takes and never returns to
# Python between them: a workspace per piece cost each piece fresh pages (page faults
# and zeroing in the one address space both threads share) and a round trip through the
# GIL (docs/scale.md, "Threads").
cdef extern from *:
    """
    typedef struct {
        const int64_t *bounds;  /* piece p: lanes bounds[p]:bounds[p + 1] of the run */
        int64_t pieces;
        int64_t *shared;        /* [0]: the next piece not taken; [1]: nonzero once a
                                   thread failed (the others stop after their piece) */
    } fa_deal;

    /* The next piece of the deal, or -1 when none is left or a thread failed. */
    static inline int64_t fa_deal_take(const fa_deal *d)
    {
        if (__atomic_load_n(&d->shared[1], __ATOMIC_RELAXED))
            return -1;
        int64_t p = __atomic_fetch_add(&d->shared[0], 1, __ATOMIC_RELAXED);
        return p < d->pieces ? p : -1;
    }

    static inline void fa_deal_fail(const fa_deal *d)
    {
        __atomic_store_n(&d->shared[1], 1, __ATOMIC_RELAXED);
    }
    """
    ctypedef struct fa_deal:
        const int64_t *bounds
        int64_t pieces
        int64_t *shared
    int64_t fa_deal_take(const fa_deal *d) nogil
    void fa_deal_fail(const fa_deal *d) nogil

# this module links its own copy of the C core: give it the numpy loops fastad._tape found
copy_vec_loops(fa_vec_loops)

# Lanes per block of the batch-major sweep: enough for numpy's SIMD loops to pay, few
# enough that a block's values and adjoints stay in cache: 2^15 doubles (256 kB) per
# array measured best for the Rosenbrock loop, scalar or vectorized (~800 slots: 32
# lanes, 0.40 us per point; 64 lanes 0.48 us, 128 lanes 0.74 us, out of a 1 MB L2; two
# threads then keep both blocks in their own core's L2).  A tape that cannot have
# MIN_BLOCK lanes within that is swept lane by lane.  Module settings, read when a batch
# starts (set_block_limits, for measuring).
cdef int64_t MAX_BLOCK = 1024
cdef int64_t MIN_BLOCK = 16
cdef int64_t MAX_BLOCK_DOUBLES = 1 << 15


def set_block_limits(int64_t max_block=1024, int64_t min_block=16,
                     int64_t max_doubles=1 << 15):
    """Tune the batch-major blocks: lanes per block at most `max_block` (at least
    `min_block`, else lane by lane) and at most `max_doubles` doubles per array."""
    global MAX_BLOCK, MIN_BLOCK, MAX_BLOCK_DOUBLES
    if not 1 <= min_block <= max_block <= 65536 or max_doubles < 1:
        raise ValueError("fastad: block limits need 1 <= min_block <= max_block <= 65536")
    MAX_BLOCK, MIN_BLOCK, MAX_BLOCK_DOUBLES = max_block, min_block, max_doubles


# sin and cos of a batch's lanes from glibc's libmvec (csrc/batch_trig.h): ~10x faster than
# libm, within 4 ulps of it (docs/conventions.md).  Off by default: libm's bits (sincos),
# so a batched point equals the single call.  A process-wide setting, read when a batch
# starts (like the block limits above): a choice of accuracy the user makes once.
cdef bint VECTOR_MATH = False


def vector_math_available():
    """Whether this build and CPU have libmvec's vectorized sin and cos (docs/scale.md)."""
    return bool(fa_trig_vector_available())


def vector_math():
    """Whether batches now take sin and cos from libmvec (set_vector_math)."""
    return bool(VECTOR_MATH)


def set_vector_math(bint on):
    """Batched sin and cos from libmvec (on: 2-3x faster batches of trigonometric
    programs, each within 4 ulps of libm) or from libm (off, the default: every batched
    point equals the single call bit for bit).  Without libmvec (not glibc on x86-64 with
    AVX2) it stays off.  Returns the previous setting.  See docs/scale.md."""
    global VECTOR_MATH
    prev = VECTOR_MATH
    VECTOR_MATH = bool(on) and fa_trig_vector_available()
    return bool(prev)


cdef enum:
    # lanes per block of the pieces dealt to threads when sweeping lane by lane
    LANE_BLOCK = 64
    # pieces of a batch per thread (workers > 1), dealt to the threads as they come free:
    # a piece costs one atomic add, so many small ones leave the threads less to wait
    # for each other at the end (64: ~0.2 ms each for 10^5 Rosenbrock gradients)
    PIECES = 64
    # error codes of the nogil loops
    E_CALLBACK = -2
    E_NOMEM = -3


cdef struct PlanC:
    const fa_tape *c
    int64_t nin, nslot, ncol
    int64_t nv, nr, nt
    const int64_t *vslot
    const int64_t *vcol
    const int64_t *rseed
    const int64_t *rptr
    const int64_t *rslot
    const int64_t *rcol
    const int64_t *tseed
    const int64_t *tptr
    const int64_t *tslot
    const int64_t *tcol
    const fa_rec *brec      # the batch-major records, or NULL: lane by lane
    int64_t nbrec
    int64_t naux            # AUX slots per lane past nslot (kept cos/sin, csrc/batch.h)
    int32_t B
    int vector              # sin and cos from libmvec
    # strides, in doubles, of the input matrix X (lane, input) and of out (lane, column):
    # a batch of scalar arguments is read and written column by column
    int64_t xrs, xcs, ors, ocs
    # compiled sweeps for blocks of B lanes (fastad.native_batch), or NULL: interpreted
    bfwd_fn nfwd
    brev_fn nrev
    bzero_fn nzero
    btan_fn ntan
    # each sweep's slots and columns count up by one (read_block's row-by-row transpose)
    bint vruns, rruns, truns


cdef const int64_t *ptr(cnp.ndarray a):
    return <const int64_t *>cnp.PyArray_DATA(a)


cdef inline int64_t lane_of(const int64_t *lanes, int64_t base, int64_t j) noexcept nogil:
    """The j-th lane of a run: lanes[j], or base + j when the run is every lane in order."""
    return lanes[j] if lanes != NULL else base + j


cdef inline void read_row(const PlanC *P, double *row, const double *src, const int64_t *slot,
                          const int64_t *col, int64_t lo, int64_t hi, int64_t stride,
                          int64_t k) noexcept nogil:
    cdef int64_t j
    for j in range(lo, hi):
        row[col[j] * P.ocs] = src[slot[j] * stride + k]


cdef inline void read_block(const PlanC *P, double *out, const double *src, const int64_t *slot,
                            const int64_t *col, int64_t lo, int64_t hi, int32_t B,
                            const int64_t *lanes, int64_t base, int64_t m,
                            const uint8_t *bad, bint clean, bint runs) noexcept nogil:
    """The results of the block's m lanes (a slot's B lanes are contiguous): row by row
    into a row-major out, column by column into a column-major one; lanes that failed a
    guard are skipped.  runs: slot[lo:hi] and col[lo:hi] each count up by one (a
    gradient's inputs into consecutive columns)."""
    cdef int64_t j, k, cnt
    cdef double *o
    cdef const double *sv
    if P.ocs == 1 and P.ors != 1 and runs and clean and lanes == NULL and hi > lo:
        # lanes in order into consecutive columns, written row by row: the writes stream
        # through memory in order, the reads stay in the block (as for the inputs)
        o = out + base * P.ors + col[lo]
        sv = src + slot[lo] * B
        cnt = hi - lo
        for k in range(m):
            for j in range(cnt):
                o[k * P.ors + j] = sv[j * B + k]
        return
    if P.ocs == 1 and P.ors != 1:
        for k in range(m):
            if clean or not bad[k]:
                read_row(P, out + lane_of(lanes, base, k) * P.ors, src, slot, col, lo, hi, B, k)
        return
    for j in range(lo, hi):
        sv = src + slot[j] * B
        if clean and lanes == NULL:         # every lane, in order: one strided copy
            o = out + base * P.ors + col[j] * P.ocs
            if P.ors == 1:
                memcpy(o, sv, <size_t>m * sizeof(double))
            else:
                for k in range(m):
                    o[k * P.ors] = sv[k]
        else:
            for k in range(m):
                if not bad[k]:
                    out[lane_of(lanes, base, k) * P.ors + col[j] * P.ocs] = sv[k]


cdef int one_lane(const PlanC *P, const double *X, int64_t l, double *out, double *val,
                  double *adj, double *tan) noexcept nogil:
    """Sweep lane l on the workspace val/adj/tan (val holds the constants): 1 when its
    guards held (its row written), 0 when one failed, E_CALLBACK."""
    cdef int64_t s, i, failed
    cdef double *row
    for i in range(P.nin):
        val[i] = X[l * P.xrs + i * P.xcs]
    failed = sweep_forward(P.c, val)     # -1, the first failed guard, or -2 (a callback)
    if failed == -2:
        return E_CALLBACK
    if failed >= 0:
        return 0
    row = out + l * P.ors
    read_row(P, row, val, P.vslot, P.vcol, 0, P.nv, 1, 0)
    for s in range(P.nr):
        if sweep_reverse(P.c, val, adj, <int32_t>P.rseed[s], 1.0):
            return E_CALLBACK
        read_row(P, row, adj, P.rslot, P.rcol, P.rptr[s], P.rptr[s + 1], 1, 0)
    for s in range(P.nt):
        memset(tan, 0, <size_t>P.nin * sizeof(double))
        tan[P.tseed[s]] = 1.0
        if sweep_tangent(P.c, val, tan):
            return E_CALLBACK
        read_row(P, row, tan, P.tslot, P.tcol, P.tptr[s], P.tptr[s + 1], 1, 0)
    return 1


cdef int64_t lanes_one_by_one(const PlanC *P, const double *X, const int64_t *lanes,
                              const fa_deal *deal, double *out,
                              uint8_t *fitted) noexcept nogil:
    """Sweep each lane of the pieces this thread takes, in turn, on one private
    workspace.  Returns the lanes fitted, or an error code (< 0)."""
    cdef int64_t j, l, p, nfit = 0
    cdef int rc = 0
    cdef size_t ns = <size_t>(P.nslot if P.nslot > 0 else 1)
    cdef double *val = <double *>malloc(ns * sizeof(double))
    cdef double *adj = <double *>calloc(ns, sizeof(double))
    cdef double *tan = <double *>calloc(ns, sizeof(double))
    if val == NULL or adj == NULL or tan == NULL:
        rc = E_NOMEM
    else:
        fa_copy_consts(P.c, val)
    p = fa_deal_take(deal) if rc == 0 else -1
    while p >= 0 and rc == 0:
        for j in range(deal.bounds[p], deal.bounds[p + 1]):
            l = lane_of(lanes, 0, j)
            rc = one_lane(P, X, l, out, val, adj, tan)
            if rc < 0:
                break
            if rc:
                fitted[l] = 1
                nfit += 1
            rc = 0
        p = fa_deal_take(deal)
    free(val); free(adj); free(tan)
    if rc:
        fa_deal_fail(deal)
    return rc if rc else nfit


cdef int64_t lanes_batch_major(const PlanC *P, const double *X, const int64_t *lanes,
                               const fa_deal *deal, double *out,
                               uint8_t *fitted) noexcept nogil:
    """Sweep the pieces this thread takes in blocks of B lanes batch-major
    (csrc/batch.h), on one private workspace.  Returns the lanes fitted or an error
    code (< 0)."""
    cdef int32_t B = P.B
    cdef int64_t i, k, p, nfit = 0
    cdef size_t nb = <size_t>(P.nslot if P.nslot > 0 else 1) * <size_t>B
    cdef double *v = <double *>malloc((nb + <size_t>P.naux * <size_t>B) * sizeof(double))
    cdef double *g = <double *>malloc(nb * sizeof(double))
    cdef double *t = <double *>calloc(nb, sizeof(double))
    cdef uint8_t *bad = <uint8_t *>malloc(<size_t>B)
    cdef double c
    if v == NULL or g == NULL or t == NULL or bad == NULL:
        free(v); free(g); free(t); free(bad)
        fa_deal_fail(deal)
        return E_NOMEM
    for i in range(P.nslot):          # the constants in every lane (the rest is written)
        c = P.c.val[i]
        for k in range(B):
            v[i * B + k] = c
    p = fa_deal_take(deal)
    while p >= 0:
        nfit += piece_blocks(P, X, lanes + deal.bounds[p] if lanes != NULL else NULL,
                             deal.bounds[p], deal.bounds[p + 1] - deal.bounds[p], out,
                             fitted, v, g, t, bad)
        p = fa_deal_take(deal)
    free(v); free(g); free(t); free(bad)
    return nfit


cdef int64_t piece_blocks(const PlanC *P, const double *X, const int64_t *lanes,
                          int64_t base, int64_t n, double *out, uint8_t *fitted,
                          double *v, double *g, double *t, uint8_t *bad) noexcept nogil:
    """Lanes base:base+n of the run (lanes[:n], or every lane in order when NULL) in
    blocks of B lanes, on the workspace v, g, t, bad (v holds the constants); a short
    last block is padded with copies of its first lane, whose results are not read.
    Returns the lanes fitted."""
    cdef int32_t B = P.B
    cdef int64_t start, m, k, i, r, s, nbad, nfit = 0
    cdef size_t nb = <size_t>(P.nslot if P.nslot > 0 else 1) * <size_t>B
    cdef const int64_t *run
    cdef const double *xi
    cdef double *vi
    cdef bint clean
    start = 0
    while start < n:
        m = n - start if n - start < B else B
        run = lanes + start if lanes != NULL else NULL
        if P.xcs == 1 and P.xrs != 1 and run == NULL and m == B:
            # a whole block of rows in order, read row by row: the reads stream through
            # memory in order and the writes stay in the block's inputs, nin * B doubles
            # that L1 holds (tiles of 8 x 8 took 1.6x as long in a bare copy loop, and
            # 5-10% more of a Rosenbrock batch: docs/scale.md, "Threads")
            xi = X + (base + start) * P.xrs
            for k in range(B):
                for i in range(P.nin):
                    v[i * B + k] = xi[k * P.xrs + i]
        elif P.xcs == 1 and P.xrs != 1:     # row-major X: a lane's inputs are contiguous
            for k in range(B):
                xi = X + lane_of(run, base + start, k if k < m else 0) * P.xrs
                for i in range(P.nin):
                    v[i * B + k] = xi[i]
        else:                             # column-major: an input's lanes are
            for i in range(P.nin):
                vi = v + i * B
                if run == NULL:
                    xi = X + (base + start) * P.xrs + i * P.xcs
                    if P.xrs == 1:
                        memcpy(vi, xi, <size_t>m * sizeof(double))
                    else:
                        for k in range(m):
                            vi[k] = xi[k * P.xrs]
                else:
                    for k in range(m):
                        vi[k] = X[run[k] * P.xrs + i * P.xcs]
                for k in range(m, B):
                    vi[k] = vi[0]
        if P.xcs == 1 and P.xrs != 1 and run == NULL and start + m < n:
            xi = X + (base + start + m) * P.xrs      # the next block's rows, from memory:
            r = 0                                    # their nin inputs only (a row of X
            while r < B and r < n - start - m:       # may be a view into a wider array)
                i = 0
                while i < P.nin:
                    __builtin_prefetch(xi + r * P.xrs + i, 0, 3)
                    i += 8
                r += 1
        memset(bad, 0, <size_t>B)
        if P.nfwd != NULL:
            P.nfwd(v, bad, P.c.ix, fa_native_vec)
        else:
            fa_batch_forward(P.brec, P.nbrec, v, B, P.c.ix, bad, P.vector)
        nbad = 0
        for k in range(m):
            nbad += bad[k]
        clean = nbad == 0
        read_block(P, out, v, P.vslot, P.vcol, 0, P.nv, B, run, base + start, m, bad, clean,
                   P.vruns)
        for s in range(P.nr):
            if P.nrev != NULL:      # the compiled sweep zeroes what it does not assign
                P.nzero(g)
            else:
                memset(g, 0, nb * sizeof(double))
            for k in range(B):
                g[P.rseed[s] * B + k] = 1.0
            if P.nrev != NULL:
                P.nrev(v, g, P.c.ix)
            else:
                fa_batch_reverse(P.brec, P.nbrec, v, g, B, P.c.ix)
            read_block(P, out, g, P.rslot, P.rcol, P.rptr[s], P.rptr[s + 1], B, run,
                       base + start, m, bad, clean, P.rruns)
        for s in range(P.nt):
            memset(t, 0, <size_t>(P.nin * B) * sizeof(double))
            for k in range(B):
                t[P.tseed[s] * B + k] = 1.0
            if P.ntan != NULL:
                P.ntan(v, t, P.c.ix)
            else:
                fa_batch_tangent(P.brec, P.nbrec, v, t, B, P.c.ix)
            read_block(P, out, t, P.tslot, P.tcol, P.tptr[s], P.tptr[s + 1], B, run,
                       base + start, m, bad, clean, P.truns)
        if clean and run == NULL:
            memset(fitted + base + start, 1, <size_t>m)
        else:
            for k in range(m):
                if not bad[k]:
                    fitted[lane_of(run, base + start, k)] = 1
        nfit += m - nbad
        start += m
    return nfit


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def _runs(slots, cols, ptr):
    """Whether, in every sweep (ptr[s]:ptr[s+1]), slots and columns count up by one."""
    for s in range(len(ptr) - 1):
        lo, hi = int(ptr[s]), int(ptr[s + 1])
        if hi - lo > 1 and not (np.all(np.diff(slots[lo:hi]) == 1)
                                and np.all(np.diff(cols[lo:hi]) == 1)):
            return False
    return True


cdef class Plan:
    """How a lane's row of `ncol` results is read off `tape` (see the module docstring).

    vslot/vcol: row[vcol[j]] = value of slot vslot[j].  Reverse sweep s is seeded with 1
    at slot rseed[s]; then row[rcol[j]] = adjoint of rslot[j] for j in rptr[s]:rptr[s+1].
    Tangent sweep s is seeded with 1 at input tseed[s]; tptr/tslot/tcol likewise."""
    cdef readonly Tape tape
    cdef readonly int64_t ncol
    cdef tuple arrays            # keeps the index arrays the C struct points into alive
    cdef dict brecs              # block size -> batch-major records (uint8 array)
    cdef readonly bint batch_major
    cdef readonly int64_t nbrec  # records of the batch-major copy (-1: not batchable)
    cdef readonly int64_t naux   # its AUX slots per lane
    cdef readonly int32_t native_lanes  # lanes per block of the compiled sweeps (0: none)
    cdef bint native_trig        # they compute sin or cos (libm's, never libmvec's)
    cdef object native_lib       # keeps their shared object referenced
    cdef PlanC P

    def __init__(self, Tape tape, int64_t ncol, vslot, vcol, rseed, rptr, rslot, rcol,
                 tseed, tptr, tslot, tcol):
        if tape.recording or tape.output_slot < 0:
            raise ValueError("fastad: only a finished tape with an output can be batched")
        arrs = tuple(_i64(a) for a in (vslot, vcol, rseed, rptr, rslot, rcol,
                                       tseed, tptr, tslot, tcol))
        nslot, nin = tape.n_slots, tape.n_inputs
        for slots, cols in ((arrs[0], arrs[1]), (arrs[4], arrs[5]), (arrs[8], arrs[9])):
            if slots.shape[0] != cols.shape[0]:
                raise ValueError("fastad internal error: a plan's slots and columns differ")
            if slots.size and (slots.min() < 0 or slots.max() >= nslot):
                raise ValueError("fastad internal error: a plan reads a slot out of range")
            if cols.size and (cols.min() < 0 or cols.max() >= ncol):
                raise ValueError("fastad internal error: a plan writes a column out of range")
        for seeds, ptrs, nread, hi in ((arrs[2], arrs[3], arrs[4].shape[0], nslot),
                                       (arrs[6], arrs[7], arrs[8].shape[0], nin)):
            if ptrs.shape[0] != seeds.shape[0] + 1 or ptrs[0] != 0 or ptrs[ptrs.shape[0] - 1] != nread or \
                    np.any(np.diff(ptrs) < 0):
                raise ValueError("fastad internal error: a plan's sweeps are malformed")
            if seeds.size and (seeds.min() < 0 or seeds.max() >= hi):
                raise ValueError("fastad internal error: a plan seeds a slot out of range")
        self.tape, self.ncol, self.arrays, self.brecs = tape, ncol, arrs, {}
        self.P.c = tape.c
        self.P.nin, self.P.nslot, self.P.ncol = nin, nslot, ncol
        self.P.nv, self.P.nr, self.P.nt = arrs[0].shape[0], arrs[2].shape[0], arrs[6].shape[0]
        self.P.vslot, self.P.vcol = ptr(arrs[0]), ptr(arrs[1])
        self.P.rseed, self.P.rptr, self.P.rslot, self.P.rcol = (ptr(arrs[2]), ptr(arrs[3]),
                                                                ptr(arrs[4]), ptr(arrs[5]))
        self.P.tseed, self.P.tptr, self.P.tslot, self.P.tcol = (ptr(arrs[6]), ptr(arrs[7]),
                                                                ptr(arrs[8]), ptr(arrs[9]))
        self.P.vruns = _runs(arrs[0], arrs[1], np.array([0, arrs[0].shape[0]]))
        self.P.rruns = _runs(arrs[4], arrs[5], arrs[3])
        self.P.truns = _runs(arrs[8], arrs[9], arrs[7])
        self.P.brec = NULL
        self.P.nfwd = NULL
        self.P.nrev = NULL
        self.P.nzero = NULL
        self.P.ntan = NULL
        self.native_lanes = 0
        # batch-major when csrc/batch.h can rewrite every record, and splitting broadcast
        # operands (one record per element) does not multiply the records beyond reason
        self.naux = 0
        self.nbrec = fa_batch_records(tape.c, 1, NULL, 0, &self.naux)
        self.P.naux = self.naux
        self.batch_major = (tape.c.ncb == 0 and 0 <= self.nbrec
                            <= 64 * tape.c.nrec + 1024)
        if self.nbrec == -2:
            raise MemoryError("fastad: cannot allocate a batched replay's plan")

    def seeds(self):
        """The slots the reverse sweeps seed (fastad.native_batch checks them)."""
        return self.arrays[2].copy()

    def set_native(self, size_t fwd, size_t rev, size_t zero, size_t tan, int32_t lanes,
                   bint trig, lib):
        """Sweep blocks of `lanes` lanes with compiled code from now on (the addresses of
        fastad_bfwd, fastad_brev, fastad_bzero and fastad_btan in `lib`, kept referenced;
        fastad.native_batch).  Set once, with the GIL held; a batch already running keeps
        the sweep it started with."""
        if fwd == 0 or rev == 0 or zero == 0 or tan == 0 or lanes < 1 or lanes > 1024:
            raise ValueError("fastad internal error: compiled batched sweeps without code")
        if (self.P.nslot + 1) * <int64_t>lanes > INT32_MAX:
            raise ValueError("fastad internal error: too many slots for compiled blocks")
        self.native_lib = lib
        self.native_trig = trig
        self.native_lanes = lanes
        self.P.nrev = <brev_fn>rev
        self.P.nzero = <bzero_fn>zero
        self.P.ntan = <btan_fn>tan
        self.P.nfwd = <bfwd_fn>fwd

    def uses_native(self, bint vector=False):
        """Whether a batch now runs the compiled sweeps: they are set, and libmvec's sin
        and cos are not asked for a tape that has them."""
        return self.P.nfwd != NULL and not (vector and self.native_trig)

    cdef int32_t block(self, int64_t n):
        """Lanes per batch-major block for a batch of n lanes: a power of two up to
        MAX_BLOCK, and within the memory bound (0: sweep lane by lane)."""
        cdef int64_t ns = self.P.nslot + self.P.naux
        cdef int64_t cap = MAX_BLOCK_DOUBLES // max(ns, 1)
        cdef int64_t B = MIN_BLOCK
        if not self.batch_major or cap < MIN_BLOCK or ns * MIN_BLOCK > INT32_MAX:
            return 0
        while B < n and B < MAX_BLOCK and 2 * B <= cap and 2 * B * ns <= INT32_MAX:
            B *= 2
        return <int32_t>B

    def run(self, X, lanes, out, fitted, int workers=1):
        """Replay the lanes `lanes` (int64; None: every lane in order) of X (N, nin) into
        the rows of out (N, ncol); fitted[l] (uint8) becomes 1 for every lane whose guards
        held.  Rows of the lanes that failed a guard are not written.  X and out may be
        C- or Fortran-ordered (any strides of whole doubles).  Returns the number of lanes
        fitted."""
        cdef cnp.ndarray Xa = X if _strided_ok(X) else np.ascontiguousarray(X, dtype=np.float64)
        cdef cnp.ndarray La
        cdef cnp.ndarray Oa = out
        cdef cnp.ndarray Fa = fitted
        cdef int64_t n, N = Xa.shape[0] if Xa.ndim == 2 else -1
        cdef int32_t B
        if (Xa.ndim != 2 or Xa.shape[1] != self.P.nin or not _strided_ok(Oa)
                or not (Oa.flags.c_contiguous or Oa.flags.f_contiguous) or Oa.ndim != 2 or Oa.shape[0] != N
                or Oa.shape[1] != self.ncol or Fa.dtype != np.uint8 or Fa.shape[0] != N
                or not Fa.flags.c_contiguous):
            raise ValueError("fastad internal error: batch arrays of the wrong shape")
        if lanes is None:
            La, n = None, N
        else:
            La = _i64(lanes)
            n = La.shape[0]
            if n and (La.min() < 0 or La.max() >= N):
                raise ValueError("fastad internal error: a lane out of range")
        if n == 0:
            return 0
        vector = VECTOR_MATH        # one setting for the whole batch, every thread
        native = self.uses_native(vector)
        B = self.native_lanes if native else self.block(n)
        if B and not native and B not in self.brecs:
            buf = np.empty(max(self.nbrec, 1) * sizeof(fa_rec), dtype=np.uint8)
            nrec = fa_batch_records(self.tape.c, B, <fa_rec *>cnp.PyArray_DATA(buf),
                                    self.nbrec, NULL)
            if nrec != self.nbrec:
                raise MemoryError("fastad: cannot build a batched replay's records")
            self.brecs[B] = (buf, nrec)
        step = B if B else LANE_BLOCK
        nblocks = (n + step - 1) // step
        workers = max(1, min(workers, nblocks))
        # runs of whole blocks (the same blocks for any thread count, so the same bits),
        # PIECES per thread, taken in turn by whichever thread is free: on a shared
        # machine one core is often slower than the other, and a fixed half each would
        # wait for the slower one (docs/scale.md, "Measured")
        pieces = 1 if workers == 1 else min(nblocks, workers * PIECES)
        bounds = np.array([min(n, (nblocks * p // pieces) * step) for p in range(pieces + 1)],
                          dtype=np.int64)
        shared = np.zeros(2, dtype=np.int64)
        if workers == 1:
            return self.sweep(Xa, La, Oa, Fa, bounds, shared, B, vector, native)
        errors, fits = [], []

        def task():
            try:
                fits.append(self.sweep(Xa, La, Oa, Fa, bounds, shared, B, vector, native))
            except BaseException as e:       # raised again in the caller's thread
                errors.append(e)

        # the caller's thread is one of the workers: a thread started while every core
        # is busy may wait on a busy core's queue for milliseconds (the scheduler places
        # it), and the caller would only wait
        threads = [threading.Thread(target=task) for w in range(workers - 1)]
        for th in threads:
            th.start()
        task()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        return sum(fits)

    cdef object sweep(self, cnp.ndarray X, lanes, cnp.ndarray out, cnp.ndarray fitted,
                      cnp.ndarray bounds, cnp.ndarray shared, int32_t B, bint vector,
                      bint native):
        """Sweep the pieces of the run (of `lanes`, or of every lane when None) that
        this thread takes from the deal: piece p is lanes bounds[p]:bounds[p+1];
        shared (int64, 2) counts the pieces taken and flags a failed thread.  `run`
        checks the arrays and makes the deal.  native: blocks of B = native_lanes lanes
        through the compiled sweeps.  Returns the lanes fitted."""
        cdef PlanC P = self.P
        cdef const double *x = <const double *>cnp.PyArray_DATA(X)
        cdef const int64_t *l = NULL
        cdef double *o = <double *>cnp.PyArray_DATA(out)
        cdef uint8_t *f = <uint8_t *>cnp.PyArray_DATA(fitted)
        cdef fa_deal deal
        cdef int64_t rc
        cdef cnp.ndarray buf
        deal.bounds = <const int64_t *>cnp.PyArray_DATA(bounds)
        deal.pieces = bounds.shape[0] - 1
        deal.shared = <int64_t *>cnp.PyArray_DATA(shared)
        if lanes is not None:
            l = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>lanes)
        if native:
            if B != self.native_lanes or P.nfwd == NULL:
                raise ValueError("fastad internal error: compiled blocks of the wrong size")
            P.B = B
        else:
            P.nfwd = NULL
            P.nrev = NULL
            P.ntan = NULL
        if B and not native:  # this call's own copy of the plan points at the records for B lanes
            buf, nrec = self.brecs[B]
            P.brec = <const fa_rec *>cnp.PyArray_DATA(buf)
            P.nbrec = nrec
            P.B = B
        P.vector = vector
        P.xrs, P.xcs = X.strides[0] // 8, X.strides[1] // 8
        P.ors, P.ocs = out.strides[0] // 8, out.strides[1] // 8
        with nogil:
            if B:
                rc = lanes_batch_major(&P, x, l, &deal, o, f)
            else:
                rc = lanes_one_by_one(&P, x, l, &deal, o, f)
        if rc == E_NOMEM:
            raise MemoryError(f"fastad: cannot allocate the workspace of a batched replay "
                              f"({self.P.nslot} slots)")
        if rc == E_CALLBACK:
            self.tape.raise_pending()
        return rc


def _strided_ok(a):
    """A float64 ndarray of 2 dimensions whose strides are whole, non-negative doubles and
    whose data is aligned: read or written in place."""
    return (type(a) is np.ndarray and a.dtype == np.float64 and a.ndim == 2
            and a.flags.aligned and a.strides[0] >= 0 and a.strides[1] >= 0
            and a.strides[0] % 8 == 0 and a.strides[1] % 8 == 0)


# ---- the memory of batch results, kept for reuse -------------------------------------
# A fresh result array of tens of MB costs its pages at every call: the kernel faults and
# zeroes each page on first touch, and frees them all when the array goes (2.7 ms of a
# 26 ms call for 10^5 gradients of 100 inputs, 80 MB; docs/scale.md, "Threads").  So the
# buffer under a big result goes back to a small pool when the last array using it goes,
# and the next batch's results are written into it.  A buffer is reused only once no array
# refers to it: the results of different calls never share memory while both are alive.
#
# The limits are C values, read by _Lease.__dealloc__ even while the interpreter exits
# (module globals are None by then); set_kept_limits changes them (tests, measuring).
cdef int64_t KEPT_MIN_BYTES = 1 << 22   # smaller results come from numpy as usual
cdef int64_t KEPT_MAX_BYTES = 1 << 28   # at most 256 MB kept in all ...
cdef int64_t KEPT_MAX_COUNT = 2         # ... in at most two buffers: the most recent ones

# The pool: a module global because a buffer goes back from wherever its last array dies,
# in any thread.  Guarded by the GIL, which result_array, _Lease.__dealloc__ and
# release_buffers hold -- but any of them may run Python code in between (a garbage
# collection, a finalizer, another thread given the GIL), so each reads the list afresh
# and takes a buffer out by identity, never by a position found earlier.
cdef list _kept = []


def set_kept_limits(int64_t min_bytes=1 << 22, int64_t max_bytes=1 << 28,
                    int64_t max_count=2):
    """Results of `min_bytes` or more are written into kept buffers; the pool keeps at
    most `max_count` buffers and `max_bytes` in all (the defaults restore the limits)."""
    global KEPT_MIN_BYTES, KEPT_MAX_BYTES, KEPT_MAX_COUNT
    if min_bytes < 0 or max_bytes < 0 or max_count < 0:
        raise ValueError("fastad: the kept-buffer limits must be >= 0")
    KEPT_MIN_BYTES, KEPT_MAX_BYTES, KEPT_MAX_COUNT = min_bytes, max_bytes, max_count
    _trim()


def kept_sizes():
    """The sizes in bytes of the buffers kept now, the oldest first."""
    return [b.nbytes for b in _kept]


cdef void _trim():
    """Drop the oldest kept buffers until the pool is within its limits."""
    while _kept and (len(_kept) > KEPT_MAX_COUNT
                     or sum([b.nbytes for b in _kept]) > KEPT_MAX_BYTES):
        del _kept[0]


@cython.auto_pickle(False)
cdef class _Lease:
    """The base object of a batch's result array: holds the buffer under it, and gives
    the buffer back to the pool when the last array using it goes."""
    cdef object buf

    def __reduce__(self):
        # a copy would give the buffer back while the result still uses it
        raise TypeError("fastad: the lease of a batch result's memory cannot be copied "
                        "or pickled (pickle the result array instead)")

    def __dealloc__(self):
        if self.buf is None or self.buf.nbytes > KEPT_MAX_BYTES:
            return
        _kept.append(self.buf)
        _trim()


def result_array(int64_t rows, int64_t cols, order="C"):
    """A new (rows, cols) float64 array in `order` ("C" or "F") for a batch's results.
    Big ones are written into a kept buffer that no array uses any more, when one is
    large enough (and not more than twice the size), else into a new buffer that the
    pool may keep once the result is gone."""
    cdef int64_t need
    cdef cnp.npy_intp dims[2]
    cdef _Lease lease
    if order not in ("C", "F"):
        raise ValueError(f"fastad internal error: a result order of {order!r}")
    if rows < 0 or cols < 0:
        raise ValueError(f"fastad internal error: a batch result of {rows} x {cols} values")
    if cols and rows > INT64_MAX // 8 // cols:
        raise ValueError(f"fastad: cannot hold a batch result of {rows} x {cols} values "
                         f"(too large)")
    need = rows * cols
    if need * 8 < KEPT_MIN_BYTES:
        return np.empty((rows, cols), order=order)
    buf = _take_kept(need)
    if buf is None:
        buf = np.empty(need)
    lease = _Lease()
    lease.buf = buf
    fortran = order == "F"
    dims[0], dims[1] = (cols, rows) if fortran else (rows, cols)
    arr = cnp.PyArray_SimpleNewFromData(2, dims, cnp.NPY_FLOAT64, cnp.PyArray_DATA(buf))
    cnp.set_array_base(arr, lease)
    return arr.T if fortran else arr


cdef object _take_kept(int64_t need):
    """The smallest kept buffer of need to 2 * need doubles, taken out of the pool, or
    None.  Taken out by identity: Python code may have changed the pool meanwhile."""
    best = None
    for b in list(_kept):
        if need <= b.shape[0] <= 2 * need and (best is None or b.shape[0] < best.shape[0]):
            best = b
    if best is None:
        return None
    for i in range(len(_kept)):
        if i < len(_kept) and _kept[i] is best:
            del _kept[i]
            return best
    return None                # taken by another batch meanwhile


def release_buffers():
    """Free the result buffers kept for reuse (those no array uses any more); returns the
    bytes freed.  fastad.batching.release_buffers also frees this thread's input buffer."""
    freed = sum([b.nbytes for b in _kept])
    _kept.clear()
    return freed
