/*
 * lanes.h -- K tangent lanes of an elementwise record in one visit (docs/sparse.md).
 *
 * The compressed sweeps of sparse Jacobians and Hessians (src/fastad/_sparsity.pyx) need
 * one tangent sweep per colour.  Sweeping the tape once per colour decodes every record
 * and evaluates every partial K times; here an elementwise record is decoded once, its
 * partials are evaluated once (into a small buffer, a chunk of elements at a time, so they
 * stay in L1) and applied to K tangent arrays ("lanes", each laid out like the tape's own
 * tangent array).  Each lane gets exactly the arithmetic of fa_tan in sweeps.h -- the
 * same partial expressions from ops.h, the same absolute-zero products (FA_AZ), the same
 * element order -- so a lane equals a single-direction tangent sweep bit for bit (tested
 * in tests/unit/test_sparse.py).  Structural records are not handled here: the caller
 * runs sweeps.h's own kernel on them once per lane.
 */
#ifndef FASTAD_LANES_H
#define FASTAD_LANES_H

#include "sweeps.h"

/* elements per chunk of partials: two buffers of this many doubles (4 KiB each) */
#define FA_LANE_CHUNK 512

/* The op enumeration lists the unary ops, then the binary ops, then the guards, then
 * the structural ops (ops.h); counted here from the table itself, so an op added there is
 * classified here (the op table array lives in tape.c, which this module does not link). */
#define FA_LANE_COUNT1(N, S, V, DA) + 1
#define FA_LANE_COUNT2(N, S, V, DA, DB) + 1
#define FA_LANE_COUNTG(N, S, T) + 1
enum { FA_LANE_NUNARY = 0 FA_UNARY_OPS(FA_LANE_COUNT1),
       FA_LANE_NELEM = FA_LANE_NUNARY FA_BINARY_OPS(FA_LANE_COUNT2),
       FA_LANE_NGUARD = FA_LANE_NELEM FA_GUARD_OPS(FA_LANE_COUNTG) };
#undef FA_LANE_COUNT1
#undef FA_LANE_COUNT2
#undef FA_LANE_COUNTG
/* the first op of each list is where the counts say (an op list inserted before them
 * would break the counting: this stops the build instead) */
#define FA_LANE_FIRST1(N, S, V, DA) FA_##N,
#define FA_LANE_FIRST2(N, S, V, DA, DB) FA_##N,
#define FA_LANE_FIRSTG(N, S, T) FA_##N,
static const int fa_lane_first_binary[] = {FA_BINARY_OPS(FA_LANE_FIRST2) -1};
static const int fa_lane_first_guard[] = {FA_GUARD_OPS(FA_LANE_FIRSTG) -1};
#undef FA_LANE_FIRST1
#undef FA_LANE_FIRST2
#undef FA_LANE_FIRSTG
_Static_assert((int)FA_LANE_NGUARD <= (int)FA_GATHER, "lanes.h: op lists out of the expected order");

/* Is op an elementwise (unary or binary) op, a guard?  Anything else that is not a known
 * structural op makes `lanes_ok` refuse the tape (src/fastad/_sparsity.pyx). */
static inline int fa_lane_elementwise(int op) { return op >= 0 && op < FA_LANE_NELEM; }
static inline int fa_lane_binary(int op) { return op >= FA_LANE_NUNARY && op < FA_LANE_NELEM; }
static inline int fa_lane_guard(int op) { return op >= FA_LANE_NELEM && op < FA_LANE_NGUARD; }
/* 1 when the enumeration starts with the unary, binary and guard lists in that order */
static inline int fa_lane_order_ok(void)
{
    return fa_lane_first_binary[0] == FA_LANE_NUNARY && fa_lane_first_guard[0] == FA_LANE_NELEM;
}

/* t[r] = AZ(t[a], da) (+ AZ(t[b], db)) for each of the K lanes tl[0..K), over elements
 * [0, m) of a chunk whose operands start at the given offsets (stride 1, or 0: one slot). */
static inline void fa_lane_apply(double *const *tl, int K, int binary, int64_t r, int64_t a,
                                 int64_t sa, int64_t b, int64_t sb, int64_t m,
                                 const double *da, const double *db)
{
    for (int l = 0; l < K; l++) {
        double *t = tl[l];
        double *tr = t + r;
        const double *ta = t + a, *tb = t + b;
        if (!binary) {
            if (sa) for (int64_t k = 0; k < m; k++) tr[k] = FA_AZ(ta[k], da[k]);
            else    for (int64_t k = 0; k < m; k++) tr[k] = FA_AZ(ta[0], da[k]);
        } else if (sa && sb) {
            for (int64_t k = 0; k < m; k++) tr[k] = FA_AZ(ta[k], da[k]) + FA_AZ(tb[k], db[k]);
        } else if (sa) {
            for (int64_t k = 0; k < m; k++) tr[k] = FA_AZ(ta[k], da[k]) + FA_AZ(tb[0], db[k]);
        } else if (sb) {
            for (int64_t k = 0; k < m; k++) tr[k] = FA_AZ(ta[0], da[k]) + FA_AZ(tb[k], db[k]);
        } else {
            for (int64_t k = 0; k < m; k++) tr[k] = FA_AZ(ta[0], da[k]) + FA_AZ(tb[0], db[k]);
        }
    }
}

/* Partials of elements [0, m) of a chunk: da[k] (and db[k]) at the values v, with the
 * chunk's operands at va, vb (advancing when sa, sb) and results at vr. */
static inline void fa_lane_partials(int op, const double *va, int64_t sa, const double *vb,
                                    int64_t sb, const double *vr, int64_t m,
                                    double *da, double *db)
{
    switch (op) {
#define FA_L1(N, S, V, DA) case FA_##N: \
        for (int64_t k = 0; k < m; k++) { \
            const double a = va[sa ? k : 0], r = vr[k]; (void)a; (void)r; da[k] = (DA); } \
        return;
#define FA_L2(N, S, V, DA, DB) case FA_##N: \
        for (int64_t k = 0; k < m; k++) { \
            const double a = va[sa ? k : 0], b = vb[sb ? k : 0], r = vr[k]; \
            (void)a; (void)b; (void)r; da[k] = (DA); db[k] = (DB); } \
        return;
    FA_UNARY_OPS(FA_L1)
    FA_BINARY_OPS(FA_L2)
#undef FA_L1
#undef FA_L2
    default:
        return;
    }
}

/* A scalar elementwise record in K lanes: inline in the sweep's loop (a program written
 * as a Python loop is mostly these, and a call per record would cost more than it saves). */
static inline __attribute__((always_inline))
void fa_lane_tan_scalar(const fa_rec *p, const double *v, double *const *tl, int K)
{
    const int64_t ir = p->r, ia = p->a, ib = p->b;
    double da, db;
    switch (p->op) {
#define FA_S1(N, S, V, DA) case FA_##N: { \
        const double a = v[ia], r = v[ir]; (void)a; (void)r; da = (DA); \
        for (int l = 0; l < K; l++) tl[l][ir] = FA_AZ(tl[l][ia], da); \
        return; }
#define FA_S2(N, S, V, DA, DB) case FA_##N: { \
        const double a = v[ia], b = v[ib], r = v[ir]; (void)a; (void)b; (void)r; \
        da = (DA); db = (DB); \
        for (int l = 0; l < K; l++) tl[l][ir] = FA_AZ(tl[l][ia], da) + FA_AZ(tl[l][ib], db); \
        return; }
    FA_UNARY_OPS(FA_S1)
    FA_BINARY_OPS(FA_S2)
#undef FA_S1
#undef FA_S2
    default:
        return;
    }
}

/* The tangents of an elementwise record (scalar or ranged) in K lanes.  `da`, `db`:
 * buffers of FA_LANE_CHUNK doubles. */
FA_CLONES static void fa_lane_tan(const fa_rec *p, const double *v, double *const *tl, int K,
                        double *da, double *db)
{
    const int binary = fa_lane_binary(p->op);
    if (!(p->flags & FA_RANGED)) {
        const int64_t b = binary ? p->b : p->a;
        fa_lane_partials(p->op, v + p->a, 0, v + b, 0, v + p->r, 1, da, db);
        fa_lane_apply(tl, K, binary, p->r, p->a, 0, b, 0, 1, da, db);
        return;
    }
    /* a unary record's b field is not an operand: never form a pointer from it */
    const int64_t ir = p->r, ia = p->a, ib = binary ? p->b : p->a;
    const int64_t n = p[1].r, sa = p[1].a != 0, sb = binary ? p[1].b != 0 : sa;
    for (int64_t c = 0; c < n; c += FA_LANE_CHUNK) {
        const int64_t m = n - c < FA_LANE_CHUNK ? n - c : FA_LANE_CHUNK;
        const int64_t a = ia + (sa ? c : 0), b = ib + (sb ? c : 0);
        fa_lane_partials(p->op, v + a, sa, v + b, sb, v + ir + c, m, da, db);
        fa_lane_apply(tl, K, binary, ir + c, a, sa, b, sb, m, da, db);
    }
}

#endif /* FASTAD_LANES_H */
