/*
 * reduce.h -- the kernels of the reduction records (SUM, PROD, MAX, MIN, CUMSUM) and the
 * absolute-zero product FA_AZ, for the interpreter's sweeps (sweeps.h) and for native code
 * (native_kernels.h embeds this header in every generated file, docs/native.md), so that
 * both compute the same operations in the same order.  Needs only ops.h and libc.
 */
#ifndef FASTAD_REDUCE_H
#define FASTAD_REDUCE_H

#include <stdint.h>
#include "ops.h"

/* Both ways: a zero tangent or adjoint times an infinite or NaN partial is 0, and so is a
 * zero partial times an infinite or NaN tangent or adjoint (the untaken side of a select
 * must not poison forward mode, nor a second reverse sweep through recorded adjoints). */
#define FA_AZ(x, y) (((x) == 0.0 || (y) == 0.0) ? 0.0 : (x) * (y))

/* The final SUM of a fused elementwise chain (fuse.c, and native code of fused chains:
 * _codegen_fuse.py) adds in FA_LANES running sums: lane j adds the terms of the elements
 * k = j mod FA_LANES in element order, and the lanes are then added pairwise
 * ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).  Reassociated against the unfused SUM (one running
 * sum; docs/conventions.md, "Fused chains"), but independent of the tiling, so both tiers
 * give the same bits, and the lanes vectorize where one running sum is a chain of adds. */
#define FA_LANES 8
/* acc[j] += x[k] for the L elements starting at global element k0 (k0 % FA_LANES == 0) */
static inline void fa_lanes_add(double *acc, const double *x, int64_t L)
{
    int64_t k = 0;
    for (; k + FA_LANES <= L; k += FA_LANES)
        for (int j = 0; j < FA_LANES; j++) acc[j] += x[k + j];
    for (int j = 0; k + j < L; j++) acc[j] += x[k + j];
}

static inline double fa_lanes_total(const double *acc)
{
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* m segments of n consecutive values: a[j*n .. j*n+n-1] -> r[j] (CUMSUM: r[j*n + k]) */
static inline void fa_reduce_fwd(int op, const double *a, double *r, int64_t n, int64_t m)
{
    for (int64_t j = 0; j < m; j++) {
        const double *x = a + j * n;
        double acc;
        switch (op) {
        case FA_SUM: acc = 0.0; for (int64_t k = 0; k < n; k++) acc += x[k]; r[j] = acc; break;
        case FA_PROD: acc = 1.0; for (int64_t k = 0; k < n; k++) acc *= x[k]; r[j] = acc; break;
        case FA_MAX: acc = x[0]; for (int64_t k = 1; k < n; k++) acc = fa_max(acc, x[k]); r[j] = acc; break;
        case FA_MIN: acc = x[0]; for (int64_t k = 1; k < n; k++) acc = fa_min(acc, x[k]); r[j] = acc; break;
        default: /* CUMSUM */
            acc = 0.0;
            for (int64_t k = 0; k < n; k++) { acc += x[k]; r[j * n + k] = acc; }
        }
    }
}

/* Product of a segment without element `skip` (for PROD's partials; exact with zeros). */
static inline double fa_prod_without(const double *x, int64_t n, int64_t skip)
{
    double acc = 1.0;
    for (int64_t k = 0; k < n; k++) if (k != skip) acc *= x[k];
    return acc;
}

/* Partial of segment result r with respect to x[k], for SUM, PROD, MAX, MIN.
 * PROD: r / x[k] when no zero in the segment, else the product of the others (computed
 * only for the single zero: any other element's partial then contains that zero).
 * MAX/MIN: 1/c for each of the c elements equal to the result (JAX's tie rule). */
static inline void fa_reduce_partials(int op, const double *x, double r, int64_t n,
                                      int64_t *zero_at, int64_t *ties)
{
    *zero_at = -1; *ties = 0;
    if (op == FA_PROD) {
        int64_t zeros = 0;
        for (int64_t k = 0; k < n; k++) if (x[k] == 0.0) { zeros++; *zero_at = k; }
        if (zeros > 1) *zero_at = -2;      /* every partial is 0 */
    } else if (op == FA_MAX || op == FA_MIN) {
        for (int64_t k = 0; k < n; k++) if (x[k] == r) (*ties)++;
    }
}

static inline double fa_reduce_d(int op, const double *x, double r, int64_t n, int64_t k,
                                 int64_t zero_at, int64_t ties)
{
    switch (op) {
    case FA_SUM: return 1.0;
    case FA_PROD:
        if (zero_at == -1) return r / x[k];
        if (zero_at == -2) return 0.0;
        return k == zero_at ? fa_prod_without(x, n, k) : 0.0;
    default: /* MAX, MIN */
        return (ties > 0 && x[k] == r) ? 1.0 / (double)ties : 0.0;
    }
}

static inline void fa_reduce_tan(int op, const double *a, const double *r, const double *ta,
                                 double *tr, int64_t n, int64_t m)
{
    for (int64_t j = 0; j < m; j++) {
        const double *x = a + j * n, *tx = ta + j * n;
        if (op == FA_CUMSUM) {
            double acc = 0.0;
            for (int64_t k = 0; k < n; k++) { acc += tx[k]; tr[j * n + k] = acc; }
            continue;
        }
        int64_t zero_at, ties;
        fa_reduce_partials(op, x, r[j], n, &zero_at, &ties);
        double acc = 0.0;
        for (int64_t k = 0; k < n; k++)
            acc += FA_AZ(tx[k], fa_reduce_d(op, x, r[j], n, k, zero_at, ties));
        tr[j] = acc;
    }
}

static inline void fa_reduce_rev(int op, const double *a, const double *r, double *ga,
                                 const double *gr, int64_t n, int64_t m)
{
    for (int64_t j = 0; j < m; j++) {
        const double *x = a + j * n;
        double *gx = ga + j * n;
        if (op == FA_CUMSUM) {      /* suffix sums of the result adjoints */
            double acc = 0.0;
            for (int64_t k = n - 1; k >= 0; k--) { acc += gr[j * n + k]; gx[k] += acc; }
            continue;
        }
        const double w = gr[j];
        if (w == 0.0) continue;
        if (op == FA_SUM) {
            for (int64_t k = 0; k < n; k++) gx[k] += w;
            continue;
        }
        int64_t zero_at, ties;
        fa_reduce_partials(op, x, r[j], n, &zero_at, &ties);
        for (int64_t k = 0; k < n; k++)    /* absolute zero: an inf adjoint, a 0 partial */
            gx[k] += FA_AZ(w, fa_reduce_d(op, x, r[j], n, k, zero_at, ties));
    }
}

#endif /* FASTAD_REDUCE_H */
