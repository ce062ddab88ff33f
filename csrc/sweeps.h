/*
 * sweeps.h -- one record's forward, tangent and adjoint kernels, generated from ops.h.
 *
 * The sweeps themselves are the nogil loops in src/fastad/_tape.pyx; each iteration
 * calls one of these inline kernels, which is one switch with one case per op.
 *
 *   fa_fwd  values:   v[r] = f(v[a], v[b])                       (returns 1 on a failed guard)
 *   fa_tan  tangents: t[r] = f_a * t[a] + f_b * t[b]             (forward mode, jvp)
 *   fa_rev  adjoints: g[a] += g[r] * f_a;  g[b] += g[r] * f_b    (reverse mode, grad)
 *
 * Every case runs its element body once for a scalar record (no loop: the common case
 * of programs written as Python loops) or over the n elements of a ranged record, whose
 * operands advance by their strides (0: one broadcast slot, 1: a range).
 *
 * Tangent and adjoint products are "absolute zero" products (CppAD's azmul): a zero
 * tangent or adjoint times an infinite or NaN partial is 0.  So a branch that does not
 * influence the output (0 * sqrt(x) at x = 0, the untaken side of a select) never turns
 * a gradient into NaN.
 */
#ifndef FASTAD_SWEEPS_H
#define FASTAD_SWEEPS_H

#include "tape.h"

#define FA_AZ(x, y) ((x) == 0.0 ? 0.0 : (x) * (y))

/* The record's indices, and for a ranged record its length and operand strides (from
 * the EXT word).  Guards and EXT words have no valid result slot; indices are only
 * formed, never dereferenced, for them. */
#define FA_SHAPE(p)                                                     \
    const int ranged_ = ((p)->flags & FA_RANGED) != 0;                  \
    const int64_t ir = (p)->r, ia = (p)->a, ib = (p)->b;                \
    const int64_t n = ranged_ ? (int64_t)(p)[1].r : 1;                  \
    const int64_t sa = ranged_ ? (int64_t)(p)[1].a : 0;                 \
    const int64_t sb = ranged_ ? (int64_t)(p)[1].b : 0;                 \
    (void)sb; (void)ib; (void)ir

static inline __attribute__((always_inline)) int fa_fwd(const fa_rec *p, double *v)
{
    FA_SHAPE(p);
    switch (p->op) {
#define FA_K1(N, S, V, DA) case FA_##N: \
        if (!ranged_) { const double a = v[ia]; v[ir] = (V); } \
        else for (int64_t k = 0; k < n; k++) { \
            const double a = v[ia + k * sa]; v[ir + k] = (V); } \
        return 0;
#define FA_K2(N, S, V, DA, DB) case FA_##N: \
        if (!ranged_) { const double a = v[ia], b = v[ib]; v[ir] = (V); } \
        else for (int64_t k = 0; k < n; k++) { \
            const double a = v[ia + k * sa], b = v[ib + k * sb]; v[ir + k] = (V); } \
        return 0;
#define FA_KG(N, S, T) case FA_##N: { \
        const double a = v[ia], b = v[ib]; \
        return ((T) ? 1 : 0) != ((p->flags & FA_TRUE) ? 1 : 0); }
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
    FA_GUARD_OPS(FA_KG)
#undef FA_K1
#undef FA_K2
#undef FA_KG
    case FA_SUM: {
        double s = 0.0;
        for (int64_t k = 0; k < n; k++) s += v[ia + k];
        v[ir] = s;
        return 0;
    }
    default:  /* FA_EXT */
        return 0;
    }
}

static inline __attribute__((always_inline)) void fa_tan(const fa_rec *p, const double *v, double *t)
{
    FA_SHAPE(p);
    switch (p->op) {
#define FA_K1(N, S, V, DA) case FA_##N: \
        if (!ranged_) { const double a = v[ia], r = v[ir]; (void)a; (void)r; \
            t[ir] = FA_AZ(t[ia], (DA)); } \
        else for (int64_t k = 0; k < n; k++) { \
            const double a = v[ia + k * sa], r = v[ir + k]; (void)a; (void)r; \
            t[ir + k] = FA_AZ(t[ia + k * sa], (DA)); } \
        return;
#define FA_K2(N, S, V, DA, DB) case FA_##N: \
        if (!ranged_) { const double a = v[ia], b = v[ib], r = v[ir]; (void)a; (void)b; (void)r; \
            t[ir] = FA_AZ(t[ia], (DA)) + FA_AZ(t[ib], (DB)); } \
        else for (int64_t k = 0; k < n; k++) { \
            const double a = v[ia + k * sa], b = v[ib + k * sb], r = v[ir + k]; \
            (void)a; (void)b; (void)r; \
            t[ir + k] = FA_AZ(t[ia + k * sa], (DA)) + FA_AZ(t[ib + k * sb], (DB)); } \
        return;
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
#undef FA_K1
#undef FA_K2
    case FA_SUM: {
        double s = 0.0;
        for (int64_t k = 0; k < n; k++) s += t[ia + k];
        t[ir] = s;
        return;
    }
    default:  /* guards and EXT words carry no derivative */
        return;
    }
}

static inline __attribute__((always_inline)) void fa_rev(const fa_rec *p, const double *v, double *g)
{
    FA_SHAPE(p);
    switch (p->op) {
#define FA_K1(N, S, V, DA) case FA_##N: \
        if (!ranged_) { const double w = g[ir]; \
            if (w != 0.0) { const double a = v[ia], r = v[ir]; (void)a; (void)r; \
                g[ia] += w * (DA); } } \
        else for (int64_t k = 0; k < n; k++) { \
            const double w = g[ir + k]; \
            if (w != 0.0) { const double a = v[ia + k * sa], r = v[ir + k]; (void)a; (void)r; \
                g[ia + k * sa] += w * (DA); } } \
        return;
#define FA_K2(N, S, V, DA, DB) case FA_##N: \
        if (!ranged_) { const double w = g[ir]; \
            if (w != 0.0) { const double a = v[ia], b = v[ib], r = v[ir]; \
                (void)a; (void)b; (void)r; \
                g[ia] += w * (DA); g[ib] += w * (DB); } } \
        else for (int64_t k = 0; k < n; k++) { \
            const double w = g[ir + k]; \
            if (w != 0.0) { \
                const double a = v[ia + k * sa], b = v[ib + k * sb], r = v[ir + k]; \
                (void)a; (void)b; (void)r; \
                g[ia + k * sa] += w * (DA); g[ib + k * sb] += w * (DB); } } \
        return;
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
#undef FA_K1
#undef FA_K2
    case FA_SUM: {
        const double w = g[ir];
        if (w != 0.0)
            for (int64_t k = 0; k < n; k++) g[ia + k] += w;
        return;
    }
    default:
        return;
    }
}

#endif /* FASTAD_SWEEPS_H */
