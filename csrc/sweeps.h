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
 * Tangent and adjoint products are "absolute zero" products (CppAD's azmul, both ways):
 * a zero tangent or adjoint times an infinite or NaN partial is 0, and a zero partial
 * times an infinite or NaN tangent or adjoint is 0 too.  So a branch that does not
 * influence the output (0 * sqrt(x) at x = 0, the untaken side of a select) never turns
 * a gradient into NaN.
 */
#ifndef FASTAD_SWEEPS_H
#define FASTAD_SWEEPS_H

#include <stdlib.h>
#include "tape.h"
#include "linalg.h"
#include "reduce.h"     /* FA_AZ and the reductions' kernels */

/* A ranged record's indices, length and EXT fields (the operand strides of elementwise
 * ops).  Only read for records with FA_RANGED, which always have their EXT word. */
#define FA_RANGE(p)                                                     \
    const int64_t ir = (p)->r, ia = (p)->a, ib = (p)->b;                \
    const int64_t n = (p)[1].r, sa = (p)[1].a, sb = (p)[1].b;           \
    (void)ib; (void)sb

/* Run the body (the macro's arguments) for k = 0..n-1 with ka, kb the operand offsets; one loop per stride pattern,
 * so each loop has constant strides and the compiler can vectorize it. */
#define FA_LOOP(...)                                                                          \
    if (sa && sb) { for (int64_t k = 0; k < n; k++) { const int64_t ka = k, kb = k; __VA_ARGS__ } } \
    else if (sa)  { for (int64_t k = 0; k < n; k++) { const int64_t ka = k, kb = 0; __VA_ARGS__ } } \
    else if (sb)  { for (int64_t k = 0; k < n; k++) { const int64_t ka = 0, kb = k; __VA_ARGS__ } } \
    else          { for (int64_t k = 0; k < n; k++) { const int64_t ka = 0, kb = 0; __VA_ARGS__ } }


/* The kernels of ranged records (below) and of LOOP records (loop_sweeps.h) are compiled
 * once per build: the forward ones in csrc/sweeps_fwd.c (FA_SWEEPS_FWD), the tangent ones
 * in csrc/sweeps_tan.c (FA_SWEEPS_TAN) and the adjoint ones in csrc/sweeps_adj.c
 * (FA_SWEEPS_ADJ), three files that compile in parallel; only the modules that run
 * tangent or reverse sweeps link the last two.  Every other file that includes this
 * header inlines the scalar cases of fa_fwd/fa_tan/fa_rev and calls these.  Every op's
 * element loops, in three target clones, are most of the C core's compile time, and six
 * files of a build include this header.  Hidden: each extension module links its own copy
 * of the C core, and calls within it need no PLT. */
#define FA_SWEEP_API __attribute__((visibility("hidden")))
FA_SWEEP_API void fa_fwd_ranged(const fa_rec *p, double *v, const int32_t *ix);
FA_SWEEP_API void fa_tan_ranged(const fa_rec *p, const double *v, double *t, const int32_t *ix);
FA_SWEEP_API void fa_rev_ranged(const fa_rec *p, const double *v, double *g, const int32_t *ix);
FA_SWEEP_API int fa_loop_fwd(const fa_rec *p, double *v, const int32_t *ix);
FA_SWEEP_API void fa_loop_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix);
FA_SWEEP_API void fa_loop_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix);
#include "elem.h"        /* the element loops these run for elementwise ops */

/* ---- structural kernels: segmented reductions (reduce.h) and matrix products ---- */

/* BLAS dgemm (Fortran calling convention, column-major), as scipy.linalg.cython_blas
 * exports it.  fa_dgemm is set once, when fastad._tape is imported, and read-only after;
 * NULL (another module's copy of this file, or no scipy) means fastad's own loops. */
typedef void (*fa_dgemm_fn)(char *ta, char *tb, int *m, int *n, int *k, double *alpha,
                            double *a, int *lda, double *b, int *ldb, double *beta,
                            double *c, int *ldc);
extern fa_dgemm_fn fa_dgemm;

/* Below this many multiply-adds fastad's own loop beats the call into BLAS. */
#define FA_BLAS_MIN 4096

/* Can BLAS take an (m x k) @ (k x p) product?  Its sizes are C ints. */
static inline int fa_blas_ok(int64_t m, int64_t k, int64_t p)
{
    return fa_dgemm && m > 0 && k > 0 && p > 0 && m <= INT32_MAX && k <= INT32_MAX
           && p <= INT32_MAX && m * k * p >= FA_BLAS_MIN;
}

/* Row-major C (m x p) = beta C + A B, with A^T or B^T read instead when ta/tb is 'T'
 * (A stored m x k, or k x m when transposed; likewise B).  A row-major matrix is its
 * transpose in column-major, so this is the column-major C^T = B^T A^T. */
static inline void fa_gemm_rm(char ta, char tb, const double *a, const double *b, double *c,
                              int64_t m, int64_t k, int64_t p, double beta)
{
    int M = (int)p, N = (int)m, K = (int)k;
    int lda = (int)(ta == 'N' ? k : m), ldb = (int)(tb == 'N' ? p : k), ldc = (int)p;
    double one = 1.0;
    fa_dgemm(&tb, &ta, &M, &N, &K, &one, (double *)b, &ldb, (double *)a, &lda, &beta, c, &ldc);
}

/* c (m x p) = a (m x k) @ b (k x p), or c += a @ b when accumulate; row-major, i-k-j order
 * so the inner loop runs along contiguous rows and vectorizes. */
static inline void fa_matmul(const double *a, const double *b, double *c,
                             int64_t m, int64_t k, int64_t p, int accumulate)
{
    if (fa_blas_ok(m, k, p)) {
        fa_gemm_rm('N', 'N', a, b, c, m, k, p, accumulate ? 1.0 : 0.0);
        return;
    }
    for (int64_t i = 0; i < m; i++) {
        double *ci = c + i * p;
        if (!accumulate) for (int64_t j = 0; j < p; j++) ci[j] = 0.0;
        for (int64_t l = 0; l < k; l++) {
            const double ail = a[i * k + l];
            const double *bl = b + l * p;
            for (int64_t j = 0; j < p; j++) ci[j] += ail * bl[j];
        }
    }
}

/* gA (m x k) += gC (m x p) B^T;  gB (k x p) += A^T gC.  A NULL gA or gB is not needed
 * (a passive operand).  With BLAS both are one dgemm reading the transposes in place;
 * without, gA goes through B^T, copied once, so its inner loop runs along contiguous rows
 * like the others and vectorizes. */
static inline void fa_matmul_rev(const double *a, const double *b, double *ga, double *gb,
                                 const double *gc, int64_t m, int64_t k, int64_t p)
{
    if (fa_blas_ok(m, k, p)) {
        if (ga) fa_gemm_rm('N', 'T', gc, b, ga, m, p, k, 1.0);
        if (gb) fa_gemm_rm('T', 'N', a, gc, gb, k, m, p, 1.0);
        return;
    }
    if (ga) {
        double *bt = (double *)malloc((size_t)(k * p) * sizeof(double));
        if (bt) {
            for (int64_t l = 0; l < k; l++)
                for (int64_t j = 0; j < p; j++) bt[j * k + l] = b[l * p + j];
            fa_matmul(gc, bt, ga, m, p, k, 1);
            free(bt);
        } else {                /* no memory for the copy: the same sums, unvectorized */
            for (int64_t i = 0; i < m; i++)
                for (int64_t l = 0; l < k; l++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < p; j++) acc += gc[i * p + j] * b[l * p + j];
                    ga[i * k + l] += acc;
                }
        }
    }
    if (gb) {
        for (int64_t i = 0; i < m; i++) {
            const double *gci = gc + i * p;
            for (int64_t l = 0; l < k; l++) {
                const double ail = a[i * k + l];
                double *gbl = gb + l * p;
                for (int64_t j = 0; j < p; j++) gbl[j] += ail * gci[j];
            }
        }
    }
}

/* ---- ranged records: one call per record, the element loops inside ----------------- */

/* A ranged elementwise op's values may come from numpy's own float64 loop for the ufunc of
 * the same name (SIMD exp, tanh, log, ... where numpy has them).  fa_vec_loops is filled
 * once, when fastad._tape is imported, from numpy's ufunc objects, and read-only after. */
typedef void (*fa_npy_loop)(char **args, const intptr_t *dims, const intptr_t *steps, void *data);
typedef struct { fa_npy_loop fn; void *data; } fa_vec_loop;
extern fa_vec_loop fa_vec_loops[FA_NUM_OPS];

/* The element loops of ranged records are compiled for several x86-64 levels and the
 * best one for the running CPU is chosen when the library loads (GCC function
 * multiversioning), so a portable build still gets AVX2/AVX-512 where the CPU has it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FASTAD_NO_CLONES)
#define FA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FA_CLONES
#endif

/* Below this many elements the plain loop is as fast as the call. */
#define FA_VEC_MIN 16

static inline int fa_fwd_vec(const fa_rec *p, double *v)
{
    const fa_vec_loop L = fa_vec_loops[p->op];
    const int64_t n = p[1].r;
    if (!L.fn || n < FA_VEC_MIN) return 0;
    const int kind = fa_op_table[p->op].kind;
    intptr_t dims[1] = {(intptr_t)n};
    intptr_t steps[3] = {(intptr_t)(p[1].a * (int32_t)sizeof(double)),
                         (intptr_t)(p[1].b * (int32_t)sizeof(double)), sizeof(double)};
    char *args[3] = {(char *)(v + p->a), (char *)(v + p->b), (char *)(v + p->r)};
    if (kind == FA_KIND_UNARY) {
        args[1] = args[2];
        steps[1] = steps[2];
    }
    L.fn(args, dims, steps, L.data);
    return 1;
}

/* an elementwise op (ops.h's unary and binary lists), whose loops are elem.h's */
static inline int fa_elementwise(int op)
{
    const int kind = fa_op_table[op].kind;
    return kind == FA_KIND_UNARY || kind == FA_KIND_BINARY;
}

/* A ranged elementwise record's second operand for elem.h: a unary op's is its first. */
#define FA_RANGE_B(p, base, B, sb_)                                                     \
    const int unary_ = fa_op_table[(p)->op].kind == FA_KIND_UNARY;                       \
    const double *B = unary_ ? (base) + ia : (base) + ib;                                 \
    const int64_t sb_ = unary_ ? sa : sb

#ifdef FA_SWEEPS_FWD
FA_CLONES void fa_fwd_ranged(const fa_rec *p, double *v, const int32_t *ix)
{
    FA_RANGE(p);
    if (fa_fwd_vec(p, v)) return;
    if (fa_elementwise(p->op)) {
        FA_RANGE_B(p, v, B, sb1);
        fa_elem_fwd(p->op, 0, n, v + ia, sa, B, sb1, v + ir);
        return;
    }
    switch (p->op) {
    case FA_GATHER:
        for (int64_t k = 0; k < n; k++) v[ir + k] = v[ix[ia + k]];
        return;
    case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN: case FA_CUMSUM:
        fa_reduce_fwd(p->op, v + ia, v + ir, n, sa);
        return;
    case FA_MATMUL:
        fa_matmul(v + ia, v + ib, v + ir, n, sa, sb, 0);
        return;
    default:
        return;
    }
}

#endif /* FA_SWEEPS_FWD */

#ifdef FA_SWEEPS_TAN
FA_CLONES void fa_tan_ranged(const fa_rec *p, const double *v, double *t, const int32_t *ix)
{
    FA_RANGE(p);
    if (fa_elementwise(p->op)) {
        FA_RANGE_B(p, v, B, sb1);
        fa_elem_tan(p->op, n, v + ia, sa, B, sb1, v + ir, t + ia, unary_ ? t + ia : t + ib,
                    t + ir);
        return;
    }
    switch (p->op) {
    case FA_GATHER:
        for (int64_t k = 0; k < n; k++) t[ir + k] = t[ix[ia + k]];
        return;
    case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN: case FA_CUMSUM:
        fa_reduce_tan(p->op, v + ia, v + ir, t + ia, t + ir, n, sa);
        return;
    case FA_BETAINC: case FA_EIG:
    case FA_SVD: case FA_QR:
    case FA_SOLVE: case FA_SLOGDET: case FA_CHOLESKY: case FA_TRSOLVE: case FA_EIGH:
        fa_linalg_tan(p, v, t);
        return;
    case FA_LOOP:
        fa_loop_tan(p, v, t, ix);
        return;
    case FA_MATMUL:   /* dC = dA B + A dB */
        fa_matmul(t + ia, v + ib, t + ir, n, sa, sb, 0);
        fa_matmul(v + ia, t + ib, t + ir, n, sa, sb, 1);
        return;
    default:
        return;
    }
}
#endif /* FA_SWEEPS_TAN */

#ifdef FA_SWEEPS_ADJ
/* An elementwise record: a's adjoint terms, then b's; a broadcast operand (stride 0) sums
 * its adjoint in a register, not in memory, added after both loops. */
FA_CLONES void fa_rev_ranged(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    FA_RANGE(p);
    const int pa_ = (p->flags & FA_A_PASSIVE) != 0, pb_ = (p->flags & FA_B_PASSIVE) != 0;
    if (fa_elementwise(p->op)) {
        FA_RANGE_B(p, v, B, sb1);
        double acc_a = 0.0, acc_b = 0.0;
        if (!pa_)
            fa_elem_rev_a(p->op, n, v + ia, sa, B, sb1, v + ir, g + ir, sa ? g + ia : NULL,
                          &acc_a);
        if (!unary_ && !pb_)
            fa_elem_rev_b(p->op, n, v + ia, sa, B, sb1, v + ir, g + ir, sb ? g + ib : NULL,
                          &acc_b);
        if (!sa && !pa_) g[ia] += acc_a;
        if (!unary_ && !sb && !pb_) g[ib] += acc_b;
        return;
    }
    switch (p->op) {
    case FA_GATHER:
        if (!pa_)
            for (int64_t k = 0; k < n; k++) g[ix[ia + k]] += g[ir + k];
        return;
    case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN: case FA_CUMSUM:
        if (!pa_) fa_reduce_rev(p->op, v + ia, v + ir, g + ia, g + ir, n, sa);
        return;
    case FA_BETAINC: case FA_EIG:
    case FA_SVD: case FA_QR:
    case FA_SOLVE: case FA_SLOGDET: case FA_CHOLESKY: case FA_TRSOLVE: case FA_EIGH:
        fa_linalg_rev(p, v, g);
        return;
    case FA_LOOP:
        fa_loop_rev(p, v, g, ix);
        return;
    case FA_MATMUL:   /* gA += gC B^T,  gB += A^T gC */
        fa_matmul_rev(v + ia, v + ib, pa_ ? NULL : g + ia, pb_ ? NULL : g + ib, g + ir, n, sa, sb);
        return;
    default:
        return;
    }
}

#endif /* FA_SWEEPS_ADJ */

/* ---- the per-record kernels the sweeps call: scalar records inline ------------------ */

/* One scalar record's element statements, written once for every place that runs scalar
 * records: fa_fwd, fa_tan and fa_rev below, and a LOOP body's switch and threaded kernels
 * (loop_sweeps.h).  R, A, B are the record's slots (expressions), FL its flags; v, t and g
 * the value, tangent and adjoint arrays.  FAIL runs when a guard's outcome differs from
 * the recorded one.  An adjoint of zero skips the record: the absolute-zero product, and
 * less work where the output does not depend on a value. */
#define FA_S_FWD1(V, R, A)    { const double a = v[A]; v[R] = (V); }
#define FA_S_FWD2(V, R, A, B) { const double a = v[A], b = v[B]; v[R] = (V); }
#define FA_S_GUARD(T, A, B, FL, FAIL) { const double a = v[A], b = v[B]; \
        if (((T) ? 1 : 0) != (((FL) & FA_TRUE) ? 1 : 0)) { FAIL; } }
#define FA_S_TAN1(DA, R, A) { const double a = v[A], r = v[R]; (void)a; (void)r; \
        t[R] = FA_AZ(t[A], (DA)); }
#define FA_S_TAN2(DA, DB, R, A, B) { \
        const double a = v[A], b = v[B], r = v[R]; (void)a; (void)b; (void)r; \
        t[R] = FA_AZ(t[A], (DA)) + FA_AZ(t[B], (DB)); }
#define FA_S_REV1(DA, R, A, FL) { const double w = g[R]; \
        if (w != 0.0 && !((FL) & FA_A_PASSIVE)) { \
            const double a = v[A], r = v[R]; (void)a; (void)r; \
            g[A] += FA_AZ(w, (DA)); } }
#define FA_S_REV2(DA, DB, R, A, B, FL) { const double w = g[R]; \
        if (w != 0.0) { const double a = v[A], b = v[B], r = v[R]; (void)a; (void)b; (void)r; \
            if (!((FL) & FA_A_PASSIVE)) g[A] += FA_AZ(w, (DA)); \
            if (!((FL) & FA_B_PASSIVE)) g[B] += FA_AZ(w, (DB)); } }

static inline __attribute__((always_inline))
int fa_fwd(const fa_rec *p, double *v, const int32_t *ix)
{
    if (p->flags & FA_RANGED) {
        if (FA_IS_LINALG(p->op)) return fa_linalg_fwd(p, v);    /* 1: numpy would raise */
        if (p->op == FA_LOOP) return fa_loop_fwd(p, v, ix);      /* 1: a failed guard */
        fa_fwd_ranged(p, v, ix);
        return 0;
    }
    const int64_t ir = p->r, ia = p->a, ib = p->b;
    switch (p->op) {
#define FA_K1(N, S, V, DA) case FA_##N: FA_S_FWD1(V, ir, ia) return 0;
#define FA_K2(N, S, V, DA, DB) case FA_##N: FA_S_FWD2(V, ir, ia, ib) return 0;
#define FA_KG(N, S, T) case FA_##N: FA_S_GUARD(T, ia, ib, p->flags, return 1) return 0;
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
    FA_GUARD_OPS(FA_KG)
#undef FA_K1
#undef FA_K2
#undef FA_KG
    default:  /* FA_EXT: guards and EXT words have no result slot */
        return 0;
    }
}

static inline __attribute__((always_inline))
void fa_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix)
{
    if (p->flags & FA_RANGED) { fa_tan_ranged(p, v, t, ix); return; }
    const int64_t ir = p->r, ia = p->a, ib = p->b;
    switch (p->op) {
#define FA_K1(N, S, V, DA) case FA_##N: FA_S_TAN1(DA, ir, ia) return;
#define FA_K2(N, S, V, DA, DB) case FA_##N: FA_S_TAN2(DA, DB, ir, ia, ib) return;
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
#undef FA_K1
#undef FA_K2
    default:  /* guards and EXT words carry no derivative */
        return;
    }
}

static inline __attribute__((always_inline))
void fa_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    if (p->flags & FA_RANGED) { fa_rev_ranged(p, v, g, ix); return; }
    const int64_t ir = p->r, ia = p->a, ib = p->b;
    switch (p->op) {
#define FA_K1(N, S, V, DA) case FA_##N: FA_S_REV1(DA, ir, ia, p->flags) return;
#define FA_K2(N, S, V, DA, DB) case FA_##N: FA_S_REV2(DA, DB, ir, ia, ib, p->flags) return;
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
#undef FA_K1
#undef FA_K2
    default:
        return;
    }
}

#ifdef FA_SWEEPS_FWD   /* all three LOOP sweeps: they share their plan */
#include "loop_sweeps.h"
#endif

#endif /* FASTAD_SWEEPS_H */
