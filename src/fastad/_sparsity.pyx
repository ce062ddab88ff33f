# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sparsity patterns from a tape, graph colourings, and compressed sweeps (docs/sparse.md).

Patterns.  Every slot gets the set of input columns it depends on (a sorted int32 run in
one pool; a result that depends on exactly the set of one operand shares that run, so a
chain of unary ops costs nothing).  Sets are propagated forward through the records:
elementwise ops take the union of the operands whose partial is not identically zero
(read from the op table, see fastad.sparse), gathers copy, reductions and matrix products
take the union of what each result reads, callbacks make every output depend on every
input.  Guards are skipped: a pattern is exact for the branch outcomes the tape recorded,
and the tape is replayed only while those outcomes hold.  Linear-algebra records are dense
blocks; a record kind this module does not know is opaque: from there on every computed
slot depends on every column (conservative, never a failure; see `opaque`).

The Hessian pattern is computed by nonlinear-interaction propagation (Walther 2008,
"Computing sparse Hessians with automatic differentiation"): with the forward index sets
X above, every record whose result reaches the output through nonzero partials (a reverse
"live" pass) adds the pairs X[a] x X[b] for each pair of operands (a, b) with a nonzero
second partial (the op table says which), and the pattern is their symmetric union.

Colourings.  Greedy distance-2 colouring of the column intersection graph (Jacobians,
columns for forward mode, rows for reverse mode) and greedy star colouring of the
adjacency graph (Hessians: no path on four vertices has only two colours, which allows
direct recovery).  Both visit vertices in natural order, which is optimal for banded
structure.  Written here rather than taken from networkx because they must handle 10^6
columns in well under a second (networkx's greedy_color builds Python dicts per vertex).

Compressed sweeps.  One tangent sweep (or one reverse sweep) per colour, on a workspace of
the tape, in C without the GIL; or, in forward mode, all colours as tangent lanes in one
pass (csrc/lanes.h, `compressed_lanes`), bit for bit the same.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport malloc, calloc, realloc, free, qsort
from libc.string cimport memset, memcpy
cimport numpy as cnp
import numpy as np

from fastad._tape cimport (Tape, Work, fa_tape, fa_rec, sweep_forward, sweep_tangent,
                           sweep_reverse_seeded, FA_EXT, FA_RANGED, FA_GATHER, FA_SUM,
                           FA_PROD, FA_MAX, FA_MIN, FA_CUMSUM, FA_MATMUL, FA_CALLBACK,
                           FA_NUM_OPS, FA_KIND_UNARY, FA_KIND_BINARY, FA_KIND_GUARD,
                           FA_KIND_STRUCT)

# the K-lane tangent kernel of elementwise records (csrc/lanes.h); the linear-algebra
# op codes (consecutive in csrc/ops.h)
cdef extern from "lanes.h" nogil:
    enum:
        FA_LANE_CHUNK
        FA_SOLVE
        FA_EIGH
    int fa_lane_elementwise(int op)
    int fa_lane_guard(int op)
    int fa_lane_order_ok()
    void fa_lane_tan(const fa_rec *p, const double *v, double **tl, int K, double *da,
                     double *db)
    void fa_lane_tan_scalar(const fa_rec *p, const double *v, double **tl, int K)

cnp.import_array()

# op kinds of the C op table (csrc/ops.h)
cdef enum:
    K_UNARY = FA_KIND_UNARY
    K_BINARY = FA_KIND_BINARY
    K_GUARD = FA_KIND_GUARD
    K_STRUCT = FA_KIND_STRUCT


cdef int cmp_i32(const void *x, const void *y) noexcept nogil:
    cdef int32_t a = (<const int32_t *>x)[0], b = (<const int32_t *>y)[0]
    return (a > b) - (a < b)


cdef struct Sets:
    int64_t *off          # per slot: start of its set in pool
    int32_t *len          # per slot: size of its set
    int32_t *pool
    int64_t npool, cap, limit
    int32_t *scratch      # a multi-way union being built
    int64_t nscratch, capscratch
    int64_t *stamp        # per column: the union that last added it
    int64_t now


cdef int grow32(int32_t **buf, int64_t *cap, int64_t need, int64_t limit, str what) except -1:
    cdef int64_t ncap
    cdef int32_t *p
    if need <= cap[0]:
        return 0
    if need > limit:
        raise MemoryError(
            f"fastad: the {what} needs more than {limit} index entries (limit max_entries); "
            "the pattern is too large for a sparse derivative: use the dense one "
            "(sparse=False), or raise max_entries if memory allows")
    ncap = max(cap[0] * 2, need, 1024)
    if ncap > limit:
        ncap = limit
    p = <int32_t *>realloc(buf[0], <size_t>ncap * sizeof(int32_t))
    if p == NULL:
        raise MemoryError(f"fastad: out of memory for the {what} ({ncap} index entries)")
    buf[0] = p
    cap[0] = ncap
    return 0


cdef void sets_free(Sets *S) noexcept:
    free(S.off); free(S.len); free(S.pool); free(S.scratch); free(S.stamp)


cdef int sets_init(Sets *S, const fa_tape *t, const int64_t[::1] col, int64_t ncols,
                   int64_t limit) except -1:
    # slot index nslot (one past the tape's) holds ALL, the set of every column, for the
    # conservative rule of unknown records (see `opaque`)
    cdef int64_t i, n = t.nslot + 1
    memset(S, 0, sizeof(Sets))
    S.limit = limit
    S.off = <int64_t *>calloc(n, sizeof(int64_t))
    S.len = <int32_t *>calloc(n, sizeof(int32_t))
    S.stamp = <int64_t *>calloc(max(ncols, 1), sizeof(int64_t))
    if S.off == NULL or S.len == NULL or S.stamp == NULL:
        raise MemoryError(f"fastad: out of memory for the index sets of {t.nslot} slots")
    grow32(&S.pool, &S.cap, max(ncols, 1), limit, "sparsity pattern")
    for i in range(t.nin):
        if col[i] >= 0:
            S.pool[S.npool] = <int32_t>col[i]
            S.off[i] = S.npool
            S.len[i] = 1
            S.npool += 1
    multi_begin(S)
    for i in range(t.nin):
        multi_add(S, i)
    multi_end(S, t.nslot)
    return 0


cdef inline void share(Sets *S, int64_t r, int64_t a) noexcept:
    S.off[r] = S.off[a]
    S.len[r] = S.len[a]


cdef int union2(Sets *S, int64_t r, int64_t a, int64_t b, bint ua, bint ub) except -1:
    """X[r] = (X[a] if ua) | (X[b] if ub), sharing an operand's run when it is the union."""
    cdef int64_t la = S.len[a] if ua else 0, lb = S.len[b] if ub else 0
    cdef int64_t i, j, k, oa, ob
    cdef int32_t x, y
    if lb == 0 or (ua and a == b) or (la == lb and S.off[a] == S.off[b]):
        if la:
            share(S, r, a)
        else:
            S.len[r] = 0
        return 0
    if la == 0:
        share(S, r, b)
        return 0
    grow32(&S.pool, &S.cap, S.npool + la + lb, S.limit, "sparsity pattern")
    oa, ob = S.off[a], S.off[b]
    i = j = 0
    k = S.npool
    while i < la and j < lb:
        x, y = S.pool[oa + i], S.pool[ob + j]
        if x < y:
            S.pool[k] = x; i += 1
        elif y < x:
            S.pool[k] = y; j += 1
        else:
            S.pool[k] = x; i += 1; j += 1
        k += 1
    while i < la:
        S.pool[k] = S.pool[oa + i]; i += 1; k += 1
    while j < lb:
        S.pool[k] = S.pool[ob + j]; j += 1; k += 1
    k -= S.npool
    if k == la:
        share(S, r, a)
    elif k == lb:
        share(S, r, b)
    else:
        S.off[r] = S.npool
        S.len[r] = <int32_t>k
        S.npool += k
    return 0


cdef inline void multi_begin(Sets *S) noexcept:
    S.now += 1
    S.nscratch = 0


cdef int multi_add(Sets *S, int64_t s) except -1:
    cdef int64_t k, n = S.len[s], o = S.off[s]
    cdef int32_t c
    if n == 0:
        return 0
    grow32(&S.scratch, &S.capscratch, S.nscratch + n, S.limit, "sparsity pattern")
    for k in range(n):
        c = S.pool[o + k]
        if S.stamp[c] != S.now:
            S.stamp[c] = S.now
            S.scratch[S.nscratch] = c
            S.nscratch += 1
    return 0


cdef int multi_end(Sets *S, int64_t r) except -1:
    """X[r] = the union built since multi_begin (sorted into the pool)."""
    if S.nscratch == 0:
        S.len[r] = 0
        return 0
    if S.nscratch > 2147483647:
        raise MemoryError("fastad: one index set has more than 2**31 - 1 entries")
    qsort(S.scratch, <size_t>S.nscratch, sizeof(int32_t), cmp_i32)
    grow32(&S.pool, &S.cap, S.npool + S.nscratch, S.limit, "sparsity pattern")
    memcpy(S.pool + S.npool, S.scratch, <size_t>S.nscratch * sizeof(int32_t))
    S.off[r] = S.npool
    S.len[r] = <int32_t>S.nscratch
    S.npool += S.nscratch
    return 0


# Records without a rule of their own.  Linear algebra (csrc/linalg.h: its operand and
# result ranges are known) is a dense block: every result depends on every operand entry,
# and for the Hessian every pair of those interacts.  A record kind this module does not
# know at all (a future fused or loop record, say) cannot be bounded by its fields, so
# `opaque` assumes the worst: from there on every computed slot depends on every column
# (every slot ever written is one of those: inputs are never written), all of them are
# live, and every pair of columns interacts.  Patterns never fail; they may be dense,
# and then the dense path is taken (noted in info()).

cdef inline bint is_linalg(int op) noexcept:
    return FA_SOLVE <= op <= FA_EIGH


cdef int linalg_ranges(const fa_rec *p, int64_t *lo, int64_t *hi, int64_t *nres) except -1:
    """Operand ranges [lo[0], hi[0]), [lo[1], hi[1]) and result count of a linear-algebra
    record (A is n x n at a, B is n x k at b; EXT n, k)."""
    from fastad._tape import linalg_nres
    cdef int64_t n = p[1].r, k = p[1].a
    lo[0], hi[0] = p.a, p.a + n * n
    lo[1], hi[1] = p.b, p.b + n * k
    nres[0] = linalg_nres(p.op, n, k)
    if nres[0] < 0:
        raise ValueError("fastad internal error: not a linear-algebra record")
    return 0


cdef int block_union(Sets *S, const fa_rec *p, int64_t r) except -1:
    """X[r] = the union of the sets of every operand entry of a linear-algebra record."""
    cdef int64_t lo[2]
    cdef int64_t hi[2]
    cdef int64_t nres, s, j
    linalg_ranges(p, lo, hi, &nres)
    multi_begin(S)
    for j in range(2):
        for s in range(lo[j], hi[j]):
            multi_add(S, s)
    multi_end(S, r)
    return 0


cdef int opaque(Sets *S, const fa_tape *t) except -1:
    cdef int64_t s
    for s in range(t.nin, t.nslot):
        share(S, s, t.nslot)
    return 0


cdef int propagate(Sets *S, const fa_tape *t, int64_t hi, const uint8_t[::1] kind,
                   const uint8_t[::1] jm, list names) except -1:
    """Forward index sets through records [0, hi)."""
    cdef int64_t i, k, j, l, n, m, q, sa, sb, ir, ia, ib
    cdef int64_t lo[2]
    cdef int64_t hi_[2]
    cdef const fa_rec *p
    cdef int op
    cdef uint8_t kd
    for i in range(hi):
        p = &t.rec[i]
        op = p.op
        if op == FA_EXT:
            continue
        if op >= kind.shape[0]:
            opaque(S, t)
            continue
        kd = kind[op]
        if kd == K_GUARD:
            continue
        ir, ia, ib = p.r, p.a, p.b
        if not (p.flags & FA_RANGED):
            if kd == K_UNARY or kd == K_BINARY:
                union2(S, ir, ia, ib, jm[op] & 1, jm[op] & 2)
            else:
                opaque(S, t)
            continue
        n, sa, sb = p[1].r, p[1].a, p[1].b
        if kd == K_UNARY or kd == K_BINARY:
            for k in range(n):
                union2(S, ir + k, ia + k * sa, ib + k * sb, jm[op] & 1, jm[op] & 2)
        elif op == FA_GATHER:
            for k in range(n):
                share(S, ir + k, t.ix[ia + k])
        elif op == FA_SUM or op == FA_PROD or op == FA_MAX or op == FA_MIN:
            for j in range(sa):             # sa = m segments of n
                multi_begin(S)
                for k in range(n):
                    multi_add(S, ia + j * n + k)
                multi_end(S, ir + j)
        elif op == FA_CUMSUM:
            for j in range(sa):
                share(S, ir + j * n, ia + j * n)
                for k in range(1, n):
                    union2(S, ir + j * n + k, ir + j * n + k - 1, ia + j * n + k, 1, 1)
        elif op == FA_MATMUL:               # (n x sa) @ (sa x sb)
            for j in range(n):
                for q in range(sb):
                    multi_begin(S)
                    for l in range(sa):
                        multi_add(S, ia + j * sa + l)
                        multi_add(S, ib + l * sb + q)
                    multi_end(S, ir + j * sb + q)
        elif op == FA_CALLBACK:             # n inputs, sa outputs: all on all
            multi_begin(S)
            for k in range(n):
                multi_add(S, ia + k)
            multi_end(S, ir)
            for k in range(1, sa):
                share(S, ir + k, ir)
        elif is_linalg(op):                 # dense block
            linalg_ranges(p, lo, hi_, &m)
            block_union(S, p, ir)
            for k in range(1, m):
                share(S, ir + k, ir)
        else:
            opaque(S, t)
    return 0


def jacobian_pattern(Tape tape, const int64_t[::1] col, int64_t ncols,
                     const int64_t[::1] outs, const uint8_t[::1] kind, const uint8_t[::1] jm,
                     list names, int64_t max_entries):
    """CSR (indptr, indices) of the outputs' dependence on the input columns."""
    cdef Sets S
    cdef const fa_tape *t = tape.c
    cdef int64_t i, k, nnz = 0, o
    cdef cnp.ndarray indptr, indices
    cdef int64_t[::1] ip
    cdef int32_t[::1] ix
    if col.shape[0] != t.nin:
        raise ValueError("fastad internal error: column map does not match the tape inputs")
    for i in range(outs.shape[0]):
        if not 0 <= outs[i] < t.nslot:
            raise ValueError("fastad internal error: output slot out of range")
    try:
        sets_init(&S, t, col, ncols, max_entries)
        propagate(&S, t, t.nrec, kind, jm, names)
        for i in range(outs.shape[0]):
            nnz += S.len[outs[i]]
        indptr = np.zeros(outs.shape[0] + 1, dtype=np.int64)
        indices = np.empty(nnz, dtype=np.int32)
        ip = indptr
        ix = indices
        nnz = 0
        for i in range(outs.shape[0]):
            o = S.off[outs[i]]
            for k in range(S.len[outs[i]]):
                ix[nnz + k] = S.pool[o + k]
            nnz += S.len[outs[i]]
            ip[i + 1] = nnz
    finally:
        sets_free(&S)
    return indptr, indices


# ---------------------------------------------------------------- Hessian: interactions

cdef struct Edges:
    int32_t *e            # pairs (i, j), i <= j
    int64_t n, cap, limit


cdef int edge(Edges *E, int32_t i, int32_t j) except -1:
    if E.n + 2 > E.cap:
        grow32(&E.e, &E.cap, E.n + 2, E.limit, "Hessian pattern")
    if i <= j:
        E.e[E.n] = i; E.e[E.n + 1] = j
    else:
        E.e[E.n] = j; E.e[E.n + 1] = i
    E.n += 2
    return 0


cdef int cross(Edges *E, Sets *S, int64_t a, int64_t b) except -1:
    cdef int64_t i, j, oa = S.off[a], ob = S.off[b], la = S.len[a], lb = S.len[b]
    if a == b:
        return clique(E, S.pool + oa, la)
    for i in range(la):
        for j in range(lb):
            edge(E, S.pool[oa + i], S.pool[ob + j])
    return 0


cdef int clique(Edges *E, const int32_t *x, int64_t n) except -1:
    cdef int64_t i, j
    for i in range(n):
        for j in range(i, n):
            edge(E, x[i], x[j])
    return 0


cdef int mark_live(uint8_t *live, const fa_tape *t, int64_t hi, const uint8_t[::1] kind,
                   const uint8_t[::1] jm, list names) except -1:
    """live[s]: slot s reaches the output through nonzero partials (records [0, hi))."""
    cdef int64_t i, k, j, l, q, n, m, sa, sb, ir, ia, ib
    cdef int64_t lo[2]
    cdef int64_t hi_[2]
    cdef const fa_rec *p
    cdef int op
    cdef uint8_t kd, any_
    for i in range(hi - 1, -1, -1):
        p = &t.rec[i]
        op = p.op
        if op == FA_EXT:
            continue
        if op >= kind.shape[0]:
            memset(live, 1, <size_t>t.nslot)        # opaque: everything may matter
            continue
        kd = kind[op]
        if kd == K_GUARD:
            continue
        ir, ia, ib = p.r, p.a, p.b
        if not (p.flags & FA_RANGED):
            if kd != K_UNARY and kd != K_BINARY:
                memset(live, 1, <size_t>t.nslot)
                continue
            if live[ir]:
                if jm[op] & 1:
                    live[ia] = 1
                if jm[op] & 2:
                    live[ib] = 1
            continue
        n, sa, sb = p[1].r, p[1].a, p[1].b
        if kd == K_UNARY or kd == K_BINARY:
            for k in range(n):
                if live[ir + k]:
                    if jm[op] & 1:
                        live[ia + k * sa] = 1
                    if jm[op] & 2:
                        live[ib + k * sb] = 1
        elif op == FA_GATHER:
            for k in range(n):
                if live[ir + k]:
                    live[t.ix[ia + k]] = 1
        elif op == FA_SUM or op == FA_PROD or op == FA_MAX or op == FA_MIN:
            for j in range(sa):
                if live[ir + j]:
                    memset(live + ia + j * n, 1, <size_t>n)
        elif op == FA_CUMSUM:
            for j in range(sa):
                any_ = 0
                for k in range(n - 1, -1, -1):
                    any_ = any_ | live[ir + j * n + k]
                    if any_:
                        live[ia + j * n + k] = 1
        elif op == FA_MATMUL:
            for j in range(n):
                for q in range(sb):
                    if live[ir + j * sb + q]:
                        for l in range(sa):
                            live[ia + j * sa + l] = 1
                            live[ib + l * sb + q] = 1
        elif op == FA_CALLBACK:
            any_ = 0
            for k in range(sa):
                any_ = any_ | live[ir + k]
            if any_:
                memset(live + ia, 1, <size_t>n)
        elif is_linalg(op):                 # dense block: any live result, all operands
            linalg_ranges(p, lo, hi_, &m)
            any_ = 0
            for k in range(m):
                any_ = any_ | live[ir + k]
            if any_:
                for j in range(2):
                    memset(live + lo[j], 1, <size_t>(hi_[j] - lo[j]))
        else:
            memset(live, 1, <size_t>t.nslot)
    return 0


cdef int interactions(Edges *E, Sets *S, const uint8_t *live, const fa_tape *t, int64_t hi,
                      const uint8_t[::1] kind, const uint8_t[::1] hm) except -1:
    """The nonzero second partials of the live records, as index pairs."""
    cdef int64_t i, k, j, l, q, n, sa, sb, ir, ia, ib, ak, bk
    cdef const fa_rec *p
    cdef int op
    cdef uint8_t kd, h, any_
    cdef int64_t m
    cdef int64_t lo[2]
    cdef int64_t hi_[2]
    for i in range(hi):
        p = &t.rec[i]
        op = p.op
        if op == FA_EXT:
            continue
        if op >= kind.shape[0]:                 # opaque: every pair of columns
            clique(E, S.pool + S.off[t.nslot], S.len[t.nslot])
            continue
        kd = kind[op]
        if kd == K_GUARD:
            continue
        ir, ia, ib = p.r, p.a, p.b
        if kd != K_UNARY and kd != K_BINARY and not (p.flags & FA_RANGED):
            clique(E, S.pool + S.off[t.nslot], S.len[t.nslot])
            continue
        if kd == K_UNARY or kd == K_BINARY:
            h = hm[op]
            if h == 0:
                continue
            n, sa, sb = 1, 0, 0
            if p.flags & FA_RANGED:
                n, sa, sb = p[1].r, p[1].a, p[1].b
            for k in range(n):
                if not live[ir + k]:
                    continue
                ak, bk = ia + k * sa, ib + k * sb
                if h & 1:
                    clique(E, S.pool + S.off[ak], S.len[ak])
                if h & 2:
                    cross(E, S, ak, bk)
                if h & 4:
                    clique(E, S.pool + S.off[bk], S.len[bk])
            continue
        n, sa, sb = p[1].r, p[1].a, p[1].b
        if op == FA_PROD:
            for j in range(sa):
                if live[ir + j]:
                    multi_begin(S)
                    for k in range(n):
                        multi_add(S, ia + j * n + k)
                    clique(E, S.scratch, S.nscratch)
        elif op == FA_MATMUL:
            for j in range(n):
                for q in range(sb):
                    if live[ir + j * sb + q]:
                        for l in range(sa):
                            cross(E, S, ia + j * sa + l, ib + l * sb + q)
        elif op == FA_CALLBACK:
            any_ = 0
            for k in range(sa):
                any_ = any_ | live[ir + k]
            if any_:
                multi_begin(S)
                for k in range(n):
                    multi_add(S, ia + k)
                clique(E, S.scratch, S.nscratch)
        elif is_linalg(op):                 # dense block: every pair of its operands
            linalg_ranges(p, lo, hi_, &m)
            any_ = 0
            for k in range(m):
                any_ = any_ | live[ir + k]
            if any_:
                multi_begin(S)
                for j in range(2):
                    for k in range(lo[j], hi_[j]):
                        multi_add(S, k)
                clique(E, S.scratch, S.nscratch)
        elif not (op == FA_GATHER or op == FA_SUM or op == FA_MAX or op == FA_MIN or
                  op == FA_CUMSUM):
            clique(E, S.pool + S.off[t.nslot], S.len[t.nslot])      # opaque
        # GATHER, SUM, MAX, MIN, CUMSUM: linear (or piecewise linear) -- no interaction
    return 0


def hessian_pattern(Tape tape, int64_t hi, int64_t out, const int64_t[::1] col, int64_t ncols,
                    const uint8_t[::1] kind, const uint8_t[::1] jm, const uint8_t[::1] hm,
                    list names, int64_t max_entries):
    """Symmetric CSR (indptr, indices) of d2 out / d col d col over records [0, hi)."""
    cdef Sets S
    cdef Edges E
    cdef uint8_t *live = NULL
    cdef const fa_tape *t = tape.c
    if col.shape[0] != t.nin or not 0 <= out < t.nslot or not 0 <= hi <= t.nrec:
        raise ValueError("fastad internal error: bad arguments to hessian_pattern")
    memset(&E, 0, sizeof(Edges))
    E.limit = max_entries
    try:
        sets_init(&S, t, col, ncols, max_entries)
        propagate(&S, t, hi, kind, jm, names)
        live = <uint8_t *>calloc(max(t.nslot, 1), 1)
        if live == NULL:
            raise MemoryError("fastad: out of memory for the Hessian pattern")
        live[out] = 1
        mark_live(live, t, hi, kind, jm, names)
        interactions(&E, &S, live, t, hi, kind, hm)
        return pairs_to_csr(E.e, E.n // 2, ncols)
    finally:
        sets_free(&S)
        free(live)
        free(E.e)


cdef tuple pairs_to_csr(const int32_t *e, int64_t npair, int64_t n):
    """Symmetric CSR of the pairs (i, j) and (j, i), duplicates removed."""
    cdef cnp.ndarray indptr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] ip = indptr
    cdef int64_t k, i, j, r, w, start
    cdef int64_t *fill = NULL
    cdef int32_t *tmp = NULL
    for k in range(npair):
        ip[e[2 * k] + 1] += 1
        if e[2 * k] != e[2 * k + 1]:
            ip[e[2 * k + 1] + 1] += 1
    for r in range(n):
        ip[r + 1] += ip[r]
    try:
        tmp = <int32_t *>malloc(max(ip[n], 1) * sizeof(int32_t))
        fill = <int64_t *>malloc(max(n, 1) * sizeof(int64_t))
        if tmp == NULL or fill == NULL:
            raise MemoryError("fastad: out of memory for the Hessian pattern")
        for r in range(n):
            fill[r] = ip[r]
        for k in range(npair):
            i, j = e[2 * k], e[2 * k + 1]
            tmp[fill[i]] = <int32_t>j
            fill[i] += 1
            if i != j:
                tmp[fill[j]] = <int32_t>i
                fill[j] += 1
        # sort and deduplicate each row in place, compacting as we go
        w = 0
        start = 0
        for r in range(n):
            qsort(tmp + start, <size_t>(ip[r + 1] - start), sizeof(int32_t), cmp_i32)
            k = start
            j = w
            while k < ip[r + 1]:
                if w == j or tmp[w - 1] != tmp[k]:
                    tmp[w] = tmp[k]
                    w += 1
                k += 1
            start = ip[r + 1]
            ip[r + 1] = w
        indices = np.empty(w, dtype=np.int32)
        if w:
            memcpy(cnp.PyArray_DATA(indices), tmp, <size_t>w * sizeof(int32_t))
    finally:
        free(tmp)
        free(fill)
    return indptr, indices


# ---------------------------------------------------------------------------- colourings

def transpose(const int64_t[::1] indptr, const int32_t[::1] indices, int64_t ncols):
    """CSR of the transpose (same structure, no values)."""
    cdef int64_t nrows = indptr.shape[0] - 1, i, p, c
    cdef cnp.ndarray tptr = np.zeros(ncols + 1, dtype=np.int64)
    cdef cnp.ndarray tind = np.empty(indices.shape[0], dtype=np.int32)
    cdef int64_t[::1] tp = tptr
    cdef int32_t[::1] ti = tind
    cdef int64_t[::1] fill
    for p in range(indices.shape[0]):
        tp[indices[p] + 1] += 1
    for c in range(ncols):
        tp[c + 1] += tp[c]
    fill = tptr[:ncols].copy()
    for i in range(nrows):
        for p in range(indptr[i], indptr[i + 1]):
            c = indices[p]
            ti[fill[c]] = <int32_t>i
            fill[c] += 1
    return tptr, tind


def colour_cost(const int64_t[::1] indptr):
    """Work of a distance-2 colouring of the columns: sum of squared row lengths."""
    cdef int64_t i, d, s = 0
    for i in range(indptr.shape[0] - 1):
        d = indptr[i + 1] - indptr[i]
        s += d * d
    return s


def colour_columns(const int64_t[::1] indptr, const int32_t[::1] indices,
                   const int64_t[::1] colptr, const int32_t[::1] rowind, int64_t ncols):
    """Greedy distance-2 colouring of the columns of a pattern (CSR and its CSC): two
    columns sharing a row get different colours.  Returns (colours int32, number)."""
    cdef cnp.ndarray colours = np.full(ncols, -1, dtype=np.int32)
    cdef int32_t[::1] col = colours
    cdef int64_t *forbid = <int64_t *>malloc(max(ncols + 1, 1) * sizeof(int64_t))
    cdef int64_t j, p, q, i, c, ncol = 0
    if forbid == NULL:
        raise MemoryError("fastad: out of memory for the colouring")
    try:
        for j in range(ncols + 1):
            forbid[j] = -1
        for j in range(ncols):
            for p in range(colptr[j], colptr[j + 1]):
                i = rowind[p]
                for q in range(indptr[i], indptr[i + 1]):
                    c = col[indices[q]]
                    if c >= 0:
                        forbid[c] = j
            c = 0
            while forbid[c] == j:
                c += 1
            col[j] = <int32_t>c
            if c + 1 > ncol:
                ncol = c + 1
    finally:
        free(forbid)
    return colours, ncol


def star_colouring(const int64_t[::1] indptr, const int32_t[::1] indices, int64_t n):
    """Greedy star colouring of the adjacency graph of a symmetric pattern (the diagonal
    is ignored): adjacent vertices differ, and no path on four vertices is two-coloured.
    When vertex v is coloured, a colour is forbidden if it would close such a path with v
    at an end (v-w-x-y with c(x) = c(v), c(y) = c(w)) or inside it (u-v-w-x with
    c(u) = c(w), c(x) = c(v)).  Returns (colours int32, number)."""
    cdef cnp.ndarray colours = np.full(n, -1, dtype=np.int32)
    cdef int32_t[::1] col = colours
    cdef int64_t *forbid = <int64_t *>malloc(max(n + 1, 1) * sizeof(int64_t))
    cdef int64_t *seen = <int64_t *>malloc(max(n + 1, 1) * sizeof(int64_t))   # colour -> stamp
    cdef int64_t *twice = <int64_t *>malloc(max(n + 1, 1) * sizeof(int64_t))
    cdef int64_t v, p, q, s, w, x, y, cw, cx, c, ncol = 0
    if forbid == NULL or seen == NULL or twice == NULL:
        free(forbid); free(seen); free(twice)
        raise MemoryError("fastad: out of memory for the colouring")
    try:
        for v in range(n + 1):
            forbid[v] = -1
            seen[v] = -1
            twice[v] = -1
        for v in range(n):
            # colours seen among v's coloured neighbours, and those seen twice
            for p in range(indptr[v], indptr[v + 1]):
                w = indices[p]
                if w == v or col[w] < 0:
                    continue
                cw = col[w]
                forbid[cw] = v
                if seen[cw] == v:
                    twice[cw] = v
                seen[cw] = v
            for p in range(indptr[v], indptr[v + 1]):
                w = indices[p]
                if w == v or col[w] < 0:
                    continue
                cw = col[w]
                for q in range(indptr[w], indptr[w + 1]):
                    x = indices[q]
                    if x == w or x == v or col[x] < 0:
                        continue
                    cx = col[x]
                    if twice[cw] == v:          # u-v-w-x with c(u) = c(w)
                        forbid[cx] = v
                        continue
                    if forbid[cx] == v:
                        continue
                    for s in range(indptr[x], indptr[x + 1]):    # v-w-x-y with c(y) = c(w)
                        y = indices[s]
                        if y != x and y != w and y != v and col[y] == cw:
                            forbid[cx] = v
                            break
            c = 0
            while forbid[c] == v:
                c += 1
            col[v] = <int32_t>c
            if c + 1 > ncol:
                ncol = c + 1
    finally:
        free(forbid); free(seen); free(twice)
    return colours, ncol


# ------------------------------------------------------------------------------ recovery
#
# Each nonzero of a coloured pattern is one entry of the compressed matrix B (nrows x ncol,
# row-major): which one depends only on the pattern and the colouring, so it is computed
# once per tape (`recovery_sources`), and each call's recovery is one gather,
# B.ravel().take(sources).

def recovery_sources(const int64_t[::1] indptr, const int32_t[::1] indices,
                     const int32_t[::1] colours, int64_t ncol, str how):
    """For each nonzero p of the pattern (CSR order), the flat index into B (ncol columns)
    holding its value.  how = "columns": columns coloured (forward), J[i, j] = B[i, c(j)];
    "rows": rows coloured (reverse), J[i, j] = B[j, c(i)]; "star": a star-coloured
    symmetric pattern with B = H S, H[i, j] = B[i, c(j)] when j is i's only neighbour of
    colour c(j), else B[j, c(i)] (a star colouring guarantees one of the two)."""
    cdef int64_t n = indptr.shape[0] - 1, i, j, p
    cdef cnp.ndarray src = np.empty(indices.shape[0], dtype=np.int64)
    cdef int64_t[::1] s = src
    cdef int64_t *cnt = NULL
    if how not in ("columns", "rows", "star"):
        raise ValueError(f"fastad internal error: unknown recovery {how!r}")
    if n < 0 or indptr[0] != 0 or indptr[n] != indices.shape[0]:
        raise ValueError("fastad internal error: not a CSR pattern")
    for i in range(n):
        if indptr[i] > indptr[i + 1]:
            raise ValueError("fastad internal error: not a CSR pattern")
    # the colours each rule reads: of the columns ("columns"), of the rows ("rows"), both
    if how != "rows":
        for i in range(indices.shape[0]):
            if not 0 <= indices[i] < colours.shape[0]:
                raise ValueError("fastad internal error: colouring does not match the pattern")
    if how != "columns" and n > colours.shape[0]:
        raise ValueError("fastad internal error: colouring does not match the pattern")
    for i in range(colours.shape[0]):
        if not 0 <= colours[i] < ncol:
            raise ValueError("fastad internal error: colour out of range")
    if how == "columns":
        for i in range(n):
            for p in range(indptr[i], indptr[i + 1]):
                s[p] = i * ncol + colours[indices[p]]
        return src
    if how == "rows":
        for i in range(n):
            for p in range(indptr[i], indptr[i + 1]):
                s[p] = indices[p] * ncol + colours[i]
        return src
    cnt = <int64_t *>calloc(max(ncol, 1), sizeof(int64_t))
    if cnt == NULL:
        raise MemoryError("fastad: out of memory for the recovery")
    try:
        for i in range(n):
            for p in range(indptr[i], indptr[i + 1]):
                if indices[p] != i:
                    cnt[colours[indices[p]]] += 1
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if j == i or cnt[colours[j]] == 1:
                    s[p] = i * ncol + colours[j]
                else:
                    s[p] = j * ncol + colours[i]
            for p in range(indptr[i], indptr[i + 1]):
                if indices[p] != i:
                    cnt[colours[indices[p]]] = 0
    finally:
        free(cnt)
    return src


def recover(B, const int64_t[::1] sources):
    """The nonzeros of a pattern from its compression B: B.ravel()[sources]."""
    # take's default mode raises on an index outside B
    return np.ascontiguousarray(B, dtype=np.float64).reshape(-1).take(np.asarray(sources))


def recover_direct(const int64_t[::1] indptr, const int32_t[::1] indices,
                   const int32_t[::1] colours, B, bint by_row):
    """Values of a distance-2-coloured pattern from its compression B.  Columns coloured
    (forward): J[i, j] = B[i, c(j)].  Rows coloured (reverse): J[i, j] = B[j, c(i)]."""
    return recover(B, recovery_sources(indptr, indices, colours, np.shape(B)[1],
                                       "rows" if by_row else "columns"))


def recover_star(const int64_t[::1] indptr, const int32_t[::1] indices,
                 const int32_t[::1] colours, B, int64_t ncol):
    """Values of a star-coloured symmetric pattern from B = H S (see `recovery_sources`)."""
    return recover(B, recovery_sources(indptr, indices, colours, ncol, "star"))


# ------------------------------------------------------------------- compressed sweeps

cdef int64_t check_sweep_args(const fa_tape *t, const double[::1] x, const int64_t[::1] col,
                              const int32_t[::1] colours, int64_t ncol,
                              const int64_t[::1] outs, bint reverse) except -1:
    """Validate the arguments of a compressed sweep; returns the number of columns."""
    cdef int64_t nin = t.nin, nout = outs.shape[0], ncols = 0, i
    if x.shape[0] != nin or col.shape[0] != nin:
        raise ValueError("fastad internal error: inputs do not match the tape")
    for i in range(nin):
        if col[i] + 1 > ncols:
            ncols = col[i] + 1
    if colours.shape[0] != (nout if reverse else ncols):
        raise ValueError("fastad internal error: colouring does not match the pattern")
    for i in range(colours.shape[0]):
        if not 0 <= colours[i] < max(ncol, 1):
            raise ValueError("fastad internal error: colour out of range")
    for i in range(nout):
        if not 0 <= outs[i] < t.nslot:
            raise ValueError("fastad internal error: output slot out of range")
    return ncols


cdef int64_t forward_unfused(const fa_tape *t, double *v) noexcept nogil:
    """A forward sweep that writes every slot: the records one by one, ignoring a fusion
    plan (whose chains keep their intermediates in tile buffers) and native code (which
    follows it).  For the lanes, which read every operand's value."""
    cdef fa_tape view = t[0]
    view.fused = NULL
    view.native = NULL
    return sweep_forward(&view, v)


cdef object replay_outputs(Tape tape, Work *w, const double[::1] x, const int64_t[::1] outs,
                           bint every_slot):
    """The prelude every compressed sweep shares: the inputs x into the workspace w, one
    forward sweep (`forward_unfused` when every_slot), the output values.  Returns the
    output values, or None when a guard fails (the caller retraces)."""
    cdef const fa_tape *t = tape.c
    cdef int64_t i, failed
    cdef cnp.ndarray vals = np.empty(outs.shape[0])
    cdef double[::1] vv = vals
    if t.nin:
        memcpy(w.val, &x[0], <size_t>t.nin * sizeof(double))
    with nogil:
        failed = forward_unfused(t, w.val) if every_slot else sweep_forward(t, w.val)
    if failed == -2:
        tape.raise_pending()
    if failed >= 0:
        return None
    for i in range(outs.shape[0]):
        vv[i] = w.val[outs[i]]
    return vals


def compressed(Tape tape, const double[::1] x, const int64_t[::1] col,
               const int32_t[::1] colours, int64_t ncol, const int64_t[::1] outs, bint reverse):
    """Replay the tape at inputs x, then one sweep per colour.

    Forward (reverse=False): tangent sweep with input column j seeded 1 when colours[j] is
    the colour; B[i, c] = tangent of output i  (shape nout x ncol).
    Reverse: adjoint sweep with output i seeded 1 when colours[i] is the colour;
    B[j, c] = adjoint of input column j  (shape ncols x ncol).
    Returns (output values, B), or None when a guard fails (the caller retraces)."""
    cdef const fa_tape *t = tape.c
    cdef int64_t nin = t.nin, nout = outs.shape[0], ncols, i, c
    cdef int rc = 0
    cdef Work *w
    cdef cnp.ndarray Barr
    cdef double[:, ::1] B
    ncols = check_sweep_args(t, x, col, colours, ncol, outs, reverse)
    Barr = np.zeros((ncols, ncol) if reverse else (nout, ncol))
    B = Barr
    w = tape.acquire()
    try:
        vals = replay_outputs(tape, w, x, outs, False)
        if vals is None:
            return None
        if reverse:
            tape.ensure_adj(w)
            for c in range(ncol):
                with nogil:
                    memset(w.adj, 0, <size_t>t.nslot * sizeof(double))
                    for i in range(nout):
                        if colours[i] == c:
                            w.adj[outs[i]] += 1.0
                    rc = sweep_reverse_seeded(t, w.val, w.adj)
                    if rc == 0:
                        for i in range(nin):
                            if col[i] >= 0:
                                B[col[i], c] = w.adj[i]
                if rc:
                    tape.raise_pending()
        else:
            tape.ensure_tan(w)
            for c in range(ncol):
                with nogil:
                    for i in range(nin):
                        w.tan[i] = 1.0 if col[i] >= 0 and colours[col[i]] == c else 0.0
                    rc = sweep_tangent(t, w.val, w.tan)
                    if rc == 0:
                        for i in range(nout):
                            B[i, c] = w.tan[outs[i]]
                if rc:
                    tape.raise_pending()
    finally:
        tape.release(w)
    return vals, Barr


# ------------------------------------------------- compressed sweeps, all colours at once

cdef enum:
    LANE_BUDGET = 16777216      # doubles the tangent lanes of one tape may take: 128 MiB
    LANE_MAX = 16               # most colours carried by one pass


def lanes_ok(Tape tape):
    """Can `compressed_lanes` sweep this tape?  Yes when every record is elementwise, a
    guard, or a structural record whose tangent kernel sweeps.h runs record by record
    (gather, reductions, matmul, linear algebra).  Callbacks (they call into Python) and
    any record kind this module does not know leave the tape to `compressed`."""
    cdef const fa_tape *t = tape.c
    cdef int64_t i
    cdef int op
    if not fa_lane_order_ok():
        return False
    for i in range(t.nrec):
        op = t.rec[i].op
        if op == FA_EXT or fa_lane_elementwise(op):
            continue
        if op >= FA_NUM_OPS:
            return False
        if fa_lane_guard(op):
            continue
        if not (op == FA_GATHER or op == FA_SUM or op == FA_PROD or op == FA_MAX or
                op == FA_MIN or op == FA_CUMSUM or op == FA_MATMUL or
                (FA_SOLVE <= op <= FA_EIGH)):
            return False
    return True


def lane_work(Tape tape):
    """(elementwise scalar records, elements of elementwise ranged records) of a tape: what
    decides whether lanes pay.  Measured (docs/sparse.md): lanes save the per-record
    dispatch of scalar records (a program written as a Python loop), but on long ranged
    records the per-colour kernels, one vectorized loop each, are faster."""
    cdef const fa_tape *t = tape.c
    cdef int64_t i, scalar = 0, ranged = 0
    for i in range(t.nrec):
        if fa_lane_elementwise(t.rec[i].op):
            if t.rec[i].flags & FA_RANGED:
                ranged += t.rec[i + 1].r if i + 1 < t.nrec else 0
            else:
                scalar += 1
    return scalar, ranged


cdef class Lanes:
    """The tangent lanes of one tape, kept between calls (allocating tens of megabytes per
    call costs page faults).  Zeroed once: no record writes a constant's slot, so constants
    keep tangent 0, and every other slot is written before it is read."""
    cdef double *buf
    cdef int64_t size
    cdef bint busy

    def __dealloc__(self):
        free(self.buf)

    cdef double *take(self, int64_t size) except NULL:
        if self.buf == NULL or self.size < size:
            free(self.buf)
            self.buf = <double *>calloc(max(size, 1), sizeof(double))
            self.size = size if self.buf != NULL else 0
            if self.buf == NULL:
                raise MemoryError(f"fastad: cannot allocate {size} tangent lanes")
        return self.buf


cdef int lane_sweep(const fa_tape *t, const double *v, double **tl, int K, double *da,
                    double *db) noexcept nogil:
    """One pass over the tape: K tangent sweeps.  Structural records run sweeps.h's own
    kernel once per lane, through a view of the tape holding just that record."""
    cdef int64_t i
    cdef int l, op, rc
    cdef fa_tape view
    for i in range(t.nrec):
        op = t.rec[i].op
        if op == FA_EXT:
            continue
        if fa_lane_elementwise(op):
            if t.rec[i].flags & FA_RANGED:
                fa_lane_tan(&t.rec[i], v, tl, K, da, db)
            else:
                fa_lane_tan_scalar(&t.rec[i], v, tl, K)
        elif not fa_lane_guard(op):
            view = t[0]
            view.rec = &t.rec[i]
            view.nrec = 2 if t.rec[i].flags & FA_RANGED else 1
            view.native = NULL
            view.fused = NULL
            view.ncb = 0
            for l in range(K):
                rc = sweep_tangent(&view, v, tl[l])
                if rc:
                    return rc
    return 0


cdef inline void seed_colours(double **tl, int64_t kk, int64_t nin, const int64_t[::1] col,
                              const int32_t[::1] colours, int64_t g0) noexcept nogil:
    """Tangent lanes 0..kk-1 over the inputs: colour g0 + l's indicator vector in lane l."""
    cdef int64_t i, c, l
    for l in range(kk):
        memset(tl[l], 0, <size_t>nin * sizeof(double))
    for i in range(nin):
        if col[i] >= 0:
            c = colours[col[i]] - g0
            if 0 <= c < kk:
                tl[c][i] = 1.0


def compressed_lanes(Tape tape, const double[::1] x, const int64_t[::1] col,
                     const int32_t[::1] colours, int64_t ncol, const int64_t[::1] outs,
                     Lanes lanes=None):
    """`compressed` in forward mode with all colours swept together: the tape is replayed
    at x, then each pass carries up to LANE_MAX colours as tangent lanes (fewer when the
    tape is large: the lanes take at most LANE_BUDGET doubles).  Bit for bit the result
    of `compressed(..., reverse=False)`.  The tape must pass `lanes_ok`.  `lanes` keeps
    the lane memory between calls.  Returns (output values, B) or None on a failed guard."""
    cdef const fa_tape *t = tape.c
    cdef int64_t nin = t.nin, nout = outs.shape[0], nslot = t.nslot, i, g0, c, K, kk
    cdef int rc = 0, l
    cdef Work *w
    cdef cnp.ndarray Barr
    cdef double[:, ::1] B
    cdef double *buf
    cdef double *tl[LANE_MAX]
    cdef double da[FA_LANE_CHUNK]
    cdef double db[FA_LANE_CHUNK]
    check_sweep_args(t, x, col, colours, ncol, outs, False)
    K = min(max(ncol, 1), LANE_MAX, max(LANE_BUDGET // max(nslot, 1), 1))
    if lanes is None or lanes.busy:         # a concurrent call: lanes of its own
        lanes = Lanes()
    buf = lanes.take(K * nslot)
    lanes.busy = True
    Barr = np.zeros((nout, ncol))
    B = Barr
    w = tape.acquire()
    try:
        # the lanes read every operand's value: a fused chain's intermediates too
        vals = replay_outputs(tape, w, x, outs, True)
        if vals is None:
            return None
        for g0 in range(0, ncol, K):
            kk = min(K, ncol - g0)
            with nogil:
                for l in range(kk):
                    tl[l] = buf + l * nslot
                seed_colours(tl, kk, nin, col, colours, g0)
                rc = lane_sweep(t, w.val, tl, <int>kk, da, db)
                if rc == 0:
                    for i in range(nout):
                        for l in range(kk):
                            B[i, g0 + l] = tl[l][outs[i]]
            if rc:
                tape.raise_pending()
    finally:
        tape.release(w)
        lanes.busy = False
    return vals, Barr


# ----------------------------------- Hessians: forward over reverse on f's own tape

cdef extern from "hvp_lanes.h" nogil:
    enum:
        FA_HV_MAXK
    int64_t fa_hv_slots(const fa_tape *t, int64_t hi)
    ctypedef int (*fa_hv_rev1_fn)(const fa_tape *t, const double *v, double *adj) noexcept nogil
    void fa_hv_reverse(const fa_tape *t, int64_t hi, const double *v, double *g,
                       double **tl, double **gl, int K, fa_hv_rev1_fn rev1)


def hv_check(Tape tape, int64_t hi):
    """(slots, op): can `hessian_lanes` sweep records [0, hi) of this tape?  slots >= 0:
    yes, and every slot those records use is below it; else op is the code of the first
    record without a second-order lane rule (csrc/hvp_lanes.h), or -1."""
    cdef const fa_tape *t = tape.c
    cdef int64_t s
    if not 0 <= hi <= t.nrec:
        return -1, -1
    s = fa_hv_slots(t, hi)
    if s >= 0:
        return s, -1
    return -1, (t.rec[-2 - s].op if s <= -2 else -1)


def hessian_lanes(Tape tape, const double[::1] x, const int64_t[::1] col,
                  const int32_t[::1] colours, int64_t ncol, int64_t hi, int64_t fslot,
                  int64_t nslots, Lanes tangents=None, Lanes adjoints=None):
    """B = H S (columns x ncol) and the gradient, by forward over reverse on records [0, hi)
    of the tape (f's own records, not its recorded gradient): one forward sweep carrying up
    to LANE_MAX colours as tangent lanes (seeded with the colours' indicator vectors), one
    reverse sweep carrying the adjoint and as many second-order adjoint lanes
    (csrc/hvp_lanes.h).  `nslots` is hv_check's count; `fslot` f's output slot.
    `tangents` / `adjoints` keep the lane memory between calls (the adjoint lanes are left
    zero on every slot a later call reads).  Returns (gradient, B) or None when a guard
    fails (the caller retraces)."""
    cdef const fa_tape *t = tape.c
    cdef int64_t nin = t.nin, ncols, i, g0, c, K, kk
    cdef int rc = 0, l
    cdef int64_t failed
    cdef Work *w
    cdef cnp.ndarray Barr, grad
    cdef double[:, ::1] B
    cdef double[::1] gv
    cdef double *tbuf
    cdef double *gbuf
    cdef double *tl[LANE_MAX]
    cdef double *gl[LANE_MAX]
    cdef double da[FA_LANE_CHUNK]
    cdef double db[FA_LANE_CHUNK]
    cdef fa_tape view
    cdef const int64_t[::1] no_outs = np.zeros(0, dtype=np.int64)
    ncols = check_sweep_args(t, x, col, colours, ncol, no_outs, False)
    if not (nin <= nslots <= t.nslot and 0 <= fslot < nslots and 0 <= hi <= t.nrec):
        raise ValueError("fastad internal error: hessian_lanes arguments do not match the tape")
    K = min(max(ncol, 1), LANE_MAX, FA_HV_MAXK, max(LANE_BUDGET // max(2 * nslots, 1), 1))
    if tangents is None or tangents.busy or adjoints is None or adjoints.busy:
        tangents, adjoints = Lanes(), Lanes()     # a concurrent call: lanes of its own
    tbuf = tangents.take(K * nslots)
    gbuf = adjoints.take((K + 1) * nslots)
    tangents.busy = adjoints.busy = True
    Barr = np.zeros((ncols, ncol))
    B = Barr
    grad = np.zeros(ncols)
    gv = grad
    view = t[0]
    view.nrec = hi
    view.fused = NULL       # the lanes read every value: records one by one
    view.native = NULL
    w = tape.acquire()
    try:
        if nin:
            memcpy(w.val, &x[0], <size_t>nin * sizeof(double))
        with nogil:
            failed = sweep_forward(&view, w.val)
        if failed == -2:
            tape.raise_pending()
        if failed >= 0:
            return None
        for g0 in range(0, ncol if ncol else 1, K):
            kk = min(K, ncol - g0)
            with nogil:
                for l in range(kk):
                    tl[l] = tbuf + l * nslots
                    gl[l] = gbuf + (l + 1) * nslots
                seed_colours(tl, kk, nin, col, colours, g0)
                rc = lane_sweep(&view, w.val, tl, <int>kk, da, db)
                if rc == 0:
                    gbuf[fslot] += 1.0
                    fa_hv_reverse(&view, hi, w.val, gbuf, tl, gl, <int>kk,
                                  sweep_reverse_seeded)
                    for i in range(nin):
                        if col[i] >= 0:
                            gv[col[i]] = gbuf[i]
                            for l in range(kk):
                                B[col[i], g0 + l] = gl[l][i]
                # the next call finds zeros: results were cleared by their records
                memset(gbuf, 0, <size_t>nin * sizeof(double))
                gbuf[fslot] = 0.0
                for l in range(kk):
                    memset(gl[l], 0, <size_t>nin * sizeof(double))
                    gl[l][fslot] = 0.0
            if rc:
                tape.raise_pending()
    finally:
        tape.release(w)
        tangents.busy = adjoints.busy = False
    return grad, Barr
