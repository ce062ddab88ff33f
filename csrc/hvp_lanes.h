/*
 * hvp_lanes.h -- K Hessian-vector products in one forward and one reverse sweep over the
 * tape of f itself (forward over reverse, docs/sparse.md "Hessians on the original tape").
 *
 * The sparse Hessian needs H s_c for each colour c.  Instead of a tangent sweep per colour
 * over the recorded gradient (a tape about three times as long as f's), f's own records
 * are swept twice:
 *   forward:  values, and K tangent lanes t_l (csrc/lanes.h: bit for bit fa_tan);
 *   reverse:  the adjoint g (sweeps.h's fa_rev, bit for bit the gradient) and K
 *             second-order adjoint lanes gd_l, by the rule for one record w -> a:
 *                 gd_l[a] += AZ(gd_l[r], f_a) + AZ(g[r], d/de f_a(a + e t_a, b + e t_b))
 *             (f_a the partial of the op table, AZ the absolute-zero product).
 * gd_l at the inputs is H s_l.  This is exactly the tangent of the recorded adjoint
 * g[a] += AZMUL(g[r], f_a) that emit.c records (AZMUL's tangent is AZ(t_w, d) + AZ(t_d, w)),
 * so the conventions of docs/conventions.md carry over; only sums may be added in another
 * order than the recorded gradient's (a few ulps, see docs/sparse.md).
 *
 * The directional derivative of a partial is the partial's own D_* rule (ops.h) read a
 * third time: over dual numbers (value, tangent), where each D_ op is the table op it
 * names, its value by the op's value rule and its tangent by the op's tangent rule.  So no
 * second derivative is written anywhere: they are generated from the one table.
 *
 * Structural records: GATHER, SUM, MAX, MIN, CUMSUM are linear in the adjoint with partials
 * that are locally constant (MAX/MIN: the tie shares), so a lane is sweeps.h's reverse
 * kernel applied to gd_l; MATMUL is bilinear (gd_A += gd_C B^T + g_C tB^T, likewise for B).
 * Any other record (PROD, linear algebra, callbacks, LOOP, unknown kinds) is refused by
 * fa_hv_slots and the caller keeps the recorded-gradient path.
 */
#ifndef FASTAD_HVP_LANES_H
#define FASTAD_HVP_LANES_H

#include <string.h>
#include "lanes.h"

#include "hv_dual.h"     /* fa_dual, fa_dual_op, the D_* language over duals */

/* gd[a] (+ gd[b]) of one element: w, wd the adjoint and the lane's second-order adjoint of
 * the result; a, b, r the operands and result as duals (value, the lane's tangent). */
#define FA_HV_TERM(D, w, wd) fa_hv_term((D), (w), (wd))

/* A scalar elementwise record: the adjoint (fa_rev's arithmetic, the partial's value read
 * from its dual) and all K lanes.  The lanes read g[r] only, which no record writes now. */
static inline __attribute__((always_inline))
void fa_hv_rev_scalar(const fa_rec *p, const double *v, double *g, double *const *tl,
                      double *const *gl, int K)
{
    const int64_t ir = p->r, ia = p->a, ib = p->b;
    const int pa_ = (p->flags & FA_A_PASSIVE) != 0, pb_ = (p->flags & FA_B_PASSIVE) != 0;
    const double w = g[ir];
    switch (p->op) {
#define FA_HS1(N, S, V, DA) case FA_##N: \
        if (pa_) return; \
        if (w != 0.0) { const fa_dual a = {v[ia], 0.0}, r = {v[ir], 0.0}; (void)a; (void)r; \
                        g[ia] += FA_AZ(w, (DA).v); } \
        for (int l = 0; l < K; l++) { \
            const double *T = tl[l]; double *G = gl[l]; const double wd = G[ir]; \
            if (w == 0.0 && wd == 0.0) continue; \
            const fa_dual a = {v[ia], T[ia]}, r = {v[ir], T[ir]}; (void)a; (void)r; \
            G[ia] += FA_HV_TERM((DA), w, wd); } \
        return;
#define FA_HS2(N, S, V, DA, DB) case FA_##N: \
        if (w != 0.0) { const fa_dual a = {v[ia], 0.0}, b = {v[ib], 0.0}, r = {v[ir], 0.0}; \
                        (void)a; (void)b; (void)r; \
                        if (!pa_) g[ia] += FA_AZ(w, (DA).v); \
                        if (!pb_) g[ib] += FA_AZ(w, (DB).v); } \
        for (int l = 0; l < K; l++) { \
            const double *T = tl[l]; double *G = gl[l]; const double wd = G[ir]; \
            if (w == 0.0 && wd == 0.0) continue; \
            const fa_dual a = {v[ia], T[ia]}, b = {v[ib], T[ib]}, r = {v[ir], T[ir]}; \
            (void)a; (void)b; (void)r; \
            const double ca = pa_ ? 0.0 : FA_HV_TERM((DA), w, wd); \
            const double cb = pb_ ? 0.0 : FA_HV_TERM((DB), w, wd); \
            if (!pa_) G[ia] += ca; \
            if (!pb_) G[ib] += cb; } \
        return;
    FA_UNARY_OPS(FA_HS1)
    FA_BINARY_OPS(FA_HS2)
#undef FA_HS1
#undef FA_HS2
    default:
        return;
    }
}

/* elements per chunk of a ranged record: the adjoint and every lane sweep one chunk before
 * the next, so the values and adjoints of a chunk are read from memory once for all lanes */
#define FA_HV_CHUNK 256
/* most lanes one sweep carries */
#define FA_HV_MAXK 16

/* The chunk of an operand as a contiguous array: src itself (stride 1), or buf filled with
 * src[0] (stride 0, a broadcast slot). */
static inline const double *fa_hv_chunk(double *buf, const double *src, int64_t s, int64_t m)
{
    if (s) return src;
    for (int64_t k = 0; k < m; k++) buf[k] = src[0];
    return buf;
}

/* Each operand's chunk of values (and of the lane's tangents) is a contiguous array (a
 * broadcast slot is first repeated into a buffer), so one loop per op computes the partials (or their derivatives)
 * whatever the operands' strides: a quarter of the code of a loop per stride pattern,
 * for the three CPU levels the ranged kernels are compiled for. */
FA_CLONES static void fa_hv_partials(int op, const double *A, const double *B, const double *R,
                           int64_t m, double *da, double *db)
{
    switch (op) {
#define FA_HP1(N, S, V, DA) case FA_##N: \
        for (int64_t k = 0; k < m; k++) { const fa_dual a = {A[k], 0.0}, r = {R[k], 0.0}; \
                                          (void)a; (void)r; da[k] = (DA).v; } return;
#define FA_HP2(N, S, V, DA, DB) case FA_##N: \
        for (int64_t k = 0; k < m; k++) { const fa_dual a = {A[k], 0.0}, b = {B[k], 0.0}, \
                                          r = {R[k], 0.0}; (void)a; (void)b; (void)r; \
                                          da[k] = (DA).v; db[k] = (DB).v; } return;
    FA_UNARY_OPS(FA_HP1)
    FA_BINARY_OPS(FA_HP2)
#undef FA_HP1
#undef FA_HP2
    default:
        return;
    }
}

/* dda[k], ddb[k]: the derivatives of the partials in the direction (TA, TB, TR) */
FA_CLONES static void fa_hv_dpartials(int op, const double *A, const double *B, const double *R,
                            const double *TA, const double *TB, const double *TR, int64_t m,
                            double *dda, double *ddb)
{
    switch (op) {
#define FA_HP1(N, S, V, DA) case FA_##N: \
        for (int64_t k = 0; k < m; k++) { const fa_dual a = {A[k], TA[k]}, r = {R[k], TR[k]}; \
                                          (void)a; (void)r; dda[k] = (DA).d; } return;
#define FA_HP2(N, S, V, DA, DB) case FA_##N: \
        for (int64_t k = 0; k < m; k++) { const fa_dual a = {A[k], TA[k]}, b = {B[k], TB[k]}, \
                                          r = {R[k], TR[k]}; (void)a; (void)b; (void)r; \
                                          dda[k] = (DA).d; ddb[k] = (DB).d; } return;
    FA_UNARY_OPS(FA_HP1)
    FA_BINARY_OPS(FA_HP2)
#undef FA_HP1
#undef FA_HP2
    default:
        return;
    }
}

/* dst[k] += AZ(w[k], d[k]) (+ AZ(w2[k], d2[k]) when w2) over a chunk, or their sum into
 * *acc for a broadcast operand (stride 0) */
static inline void fa_hv_apply(double *dst, int64_t s, const double *w, const double *d,
                               const double *w2, const double *d2, int64_t m, double *acc)
{
    double t = 0.0;
    if (s && w2)  for (int64_t k = 0; k < m; k++) dst[k] += fa_hv_az(w[k], d[k]) + fa_hv_az(w2[k], d2[k]);
    else if (s)   for (int64_t k = 0; k < m; k++) dst[k] += fa_hv_az(w[k], d[k]);
    else if (w2)  for (int64_t k = 0; k < m; k++) t += fa_hv_az(w[k], d[k]) + fa_hv_az(w2[k], d2[k]);
    else          for (int64_t k = 0; k < m; k++) t += fa_hv_az(w[k], d[k]);
    if (!s) *acc += t;
}

/* A ranged elementwise record: the adjoint g (fa_rev_ranged's arithmetic: a's terms, then
 * b's, a broadcast operand summing its terms in a register) and all K lanes, chunk by
 * chunk, so a chunk's values and adjoints are read from memory once for all lanes.  The
 * lanes read g[r] only, which no record writes now.  (Against one pass over the whole
 * record, operands whose ranges overlap may get their terms in another order.) */
FA_CLONES static void fa_hv_rev_ranged(const fa_rec *p, const double *v, double *g,
                                       double *const *tl, double *const *gl, int K)
{
    FA_RANGE(p);
    const int pa_ = (p->flags & FA_A_PASSIVE) != 0;
    const int binary = fa_lane_binary(p->op);
    const int pb_ = !binary || (p->flags & FA_B_PASSIVE) != 0;
    const int64_t ib_ = binary ? ib : ia, sb_ = binary ? sb : sa;  /* unary: b is not an operand */
    double acc_a = 0.0, acc_b = 0.0, la[FA_HV_MAXK] = {0}, lb[FA_HV_MAXK] = {0};
    double A[FA_HV_CHUNK], B[FA_HV_CHUNK], TA[FA_HV_CHUNK], TB[FA_HV_CHUNK];
    double da[FA_HV_CHUNK], db[FA_HV_CHUNK], dda[FA_HV_CHUNK], ddb[FA_HV_CHUNK];
    if (K > FA_HV_MAXK) K = FA_HV_MAXK;     /* the caller never passes more */
    if (pa_ && pb_) return;
    for (int64_t c0 = 0; c0 < n; c0 += FA_HV_CHUNK) {
        const int64_t m = n - c0 < FA_HV_CHUNK ? n - c0 : FA_HV_CHUNK;
        const int64_t oa = ia + (sa ? c0 : 0), ob = ib_ + (sb_ ? c0 : 0), orr = ir + c0;
        const double *Ap = fa_hv_chunk(A, v + oa, sa, m), *Bp = fa_hv_chunk(B, v + ob, sb_, m);
        fa_hv_partials(p->op, Ap, Bp, v + orr, m, da, db);
        if (!pa_) fa_hv_apply(g + oa, sa, g + orr, da, NULL, NULL, m, &acc_a);
        if (!pb_) fa_hv_apply(g + ob, sb_, g + orr, db, NULL, NULL, m, &acc_b);
        for (int l = 0; l < K; l++) {
            const double *T = tl[l];
            double *G = gl[l];
            const double *TAp = fa_hv_chunk(TA, T + oa, sa, m), *TBp = fa_hv_chunk(TB, T + ob, sb_, m);
            fa_hv_dpartials(p->op, Ap, Bp, v + orr, TAp, TBp, T + orr, m, dda, ddb);
            if (!pa_) fa_hv_apply(G + oa, sa, G + orr, da, g + orr, dda, m, &la[l]);
            if (!pb_) fa_hv_apply(G + ob, sb_, G + orr, db, g + orr, ddb, m, &lb[l]);
        }
    }
    /* broadcast operands: their summed terms, once */
    if (!sa && !pa_) {
        g[ia] += acc_a;
        for (int l = 0; l < K; l++) gl[l][ia] += la[l];
    }
    if (!sb_ && !pb_) {
        g[ib_] += acc_b;
        for (int l = 0; l < K; l++) gl[l][ib_] += lb[l];
    }
}

#undef FA_HV_TERM
#pragma pop_macro("D_K")
#pragma pop_macro("D_ADD")
#pragma pop_macro("D_SUB")
#pragma pop_macro("D_MUL")
#pragma pop_macro("D_DIV")
#pragma pop_macro("D_NEG")
#pragma pop_macro("D_RECIP")
#pragma pop_macro("D_SQRT")
#pragma pop_macro("D_EXP")
#pragma pop_macro("D_LOG")
#pragma pop_macro("D_SIN")
#pragma pop_macro("D_COS")
#pragma pop_macro("D_SINH")
#pragma pop_macro("D_COSH")
#pragma pop_macro("D_HYPOT")
#pragma pop_macro("D_POW")
#pragma pop_macro("D_EQ")
#pragma pop_macro("D_NE")
#pragma pop_macro("D_SELNOT")
#pragma pop_macro("D_SIGNPOS")
#pragma pop_macro("D_GTSHARE")
#pragma pop_macro("D_FMAXDA")
#pragma pop_macro("D_LOG1P")
#pragma pop_macro("D_POLYGAMMA")
#pragma pop_macro("D_GAMMAINC_DA")
#pragma pop_macro("D_GAMMAINC_DX")
#pragma pop_macro("D_GAMMAINC_DA2")
#pragma pop_macro("D_GAMMAINC_DA3")

/* ---- the sweeps --------------------------------------------------------------------- */

/* Slots a record writes (its results): 1 for a scalar record, else by kind. */
static inline int64_t fa_hv_nres(const fa_rec *p)
{
    if (!(p->flags & FA_RANGED)) return 1;
    const int64_t n = p[1].r, m = p[1].a, k3 = p[1].b;
    switch (p->op) {
    case FA_SUM: case FA_MAX: case FA_MIN: return m;
    case FA_CUMSUM: return n * m;
    case FA_MATMUL: return n * k3;
    default: return n;      /* elementwise, GATHER */
    }
}

/* Can records [0, hi) be swept here?  Returns the number of slots they use (every slot
 * they read or write is below it), or -2 - i when record i has no rule here, -1 when hi is
 * not a record boundary (the caller keeps the recorded-gradient path). */
static int64_t fa_hv_slots(const fa_tape *t, int64_t hi)
{
    int64_t top = t->nin;
    if (hi > t->nrec || !fa_lane_order_ok()) return -1;
    for (int64_t i = 0; i < hi; i++) {
        const fa_rec *p = &t->rec[i];
        const int op = p->op;
        if (op == FA_EXT) continue;
        if (fa_lane_guard(op)) {        /* reads two slots, writes none */
            if (p->a + 1 > top) top = p->a + 1;
            if (p->b + 1 > top) top = p->b + 1;
            continue;
        }
        const int ranged = (p->flags & FA_RANGED) != 0;
        if (ranged && i + 1 >= hi) return -1;
        if (!(fa_lane_elementwise(op) || op == FA_GATHER || op == FA_SUM || op == FA_MAX
              || op == FA_MIN || op == FA_CUMSUM || op == FA_MATMUL))
            return -2 - i;
        int64_t end = p->r + fa_hv_nres(p), ea = p->a + 1, eb = p->b + 1;
        if (ranged) {
            const int64_t n = p[1].r, m = p[1].a, k3 = p[1].b;
            if (fa_lane_elementwise(op)) {
                ea = p->a + (m ? n : 1);
                eb = fa_lane_binary(op) ? p->b + (k3 ? n : 1) : ea;
            } else if (op == FA_GATHER) {
                ea = eb = 0;
                for (int64_t k = 0; k < n; k++)
                    if (t->ix[p->a + k] + 1 > ea) ea = t->ix[p->a + k] + 1;
            } else if (op == FA_MATMUL) {
                ea = p->a + n * m;
                eb = p->b + m * k3;
            } else {
                ea = eb = p->a + n * m;
            }
        } else if (!fa_lane_binary(op)) {
            eb = ea;
        }
        if (end > top) top = end;
        if (ea > top) top = ea;
        if (eb > top) top = eb;
    }
    return top;
}

/* One record's adjoint sweep (the interpreter's reverse sweep of a view of the tape
 * holding just that record; fastad._tape's, passed in: this module does not link the C
 * core, whose BLAS and linear-algebra kernels live there). */
typedef int (*fa_hv_rev1_fn)(const fa_tape *t, const double *v, double *adj);

/* gd_A (n x m) += g_C (n x k3) tB^T;  gd_B (m x k3) += tA^T g_C: the tangent part of a
 * MATMUL's second-order adjoint (the other part is the reverse rule applied to gd_C). */
static void fa_hv_matmul_tangent(const fa_rec *p, const double *g, const double *T, double *G)
{
    const int64_t n = p[1].r, m = p[1].a, k3 = p[1].b;
    const double *gc = g + p->r, *ta = T + p->a, *tb = T + p->b;
    if (!(p->flags & FA_A_PASSIVE)) {
        double *ga = G + p->a;
        for (int64_t i = 0; i < n; i++)
            for (int64_t l = 0; l < m; l++) {
                double acc = 0.0;
                for (int64_t j = 0; j < k3; j++) acc += gc[i * k3 + j] * tb[l * k3 + j];
                ga[i * m + l] += acc;
            }
    }
    if (!(p->flags & FA_B_PASSIVE)) {
        double *gb = G + p->b;
        for (int64_t i = 0; i < n; i++)
            for (int64_t l = 0; l < m; l++) {
                const double a = ta[i * m + l];
                for (int64_t j = 0; j < k3; j++) gb[l * k3 + j] += a * gc[i * k3 + j];
            }
    }
}

/* The reverse sweep of records [0, hi): the adjoint g and K second-order adjoint lanes gl,
 * with tangents tl and values v from the forward sweep.  g and gl hold zeros on every
 * result and input slot on entry, and the seed; each record zeroes its results' entries
 * once it has read them, so they hold zeros again for the next call.  (Constants' entries
 * collect terms nothing reads.) */
static void fa_hv_reverse(const fa_tape *t, int64_t hi, const double *v, double *g,
                          double *const *tl, double *const *gl, int K, fa_hv_rev1_fn rev1)
{
    fa_tape view = *t;
    view.fused = NULL;
    view.native = NULL;
    view.ncb = 0;
    for (int64_t i = hi - 1; i >= 0; i--) {
        const fa_rec *p = &t->rec[i];
        const int op = p->op;
        if (op == FA_EXT || fa_lane_guard(op)) continue;
        const int ranged = (p->flags & FA_RANGED) != 0;
        view.rec = (fa_rec *)p;
        view.nrec = ranged ? 2 : 1;
        if (fa_lane_elementwise(op)) {
            if (ranged) {
                fa_hv_rev_ranged(p, v, g, tl, gl, K);
            } else {
                fa_hv_rev_scalar(p, v, g, tl, gl, K);
            }
        } else {    /* GATHER, SUM, MAX, MIN, CUMSUM: linear; MATMUL: bilinear */
            for (int l = 0; l < K; l++) {
                rev1(&view, v, gl[l]);
                if (op == FA_MATMUL) fa_hv_matmul_tangent(p, g, tl[l], gl[l]);
            }
            rev1(&view, v, g);
        }
        const int64_t nr = fa_hv_nres(p);
        for (int64_t k = 0; k < nr; k++) g[p->r + k] = 0.0;
        for (int l = 0; l < K; l++)
            for (int64_t k = 0; k < nr; k++) gl[l][p->r + k] = 0.0;
    }
}

#endif /* FASTAD_HVP_LANES_H */
