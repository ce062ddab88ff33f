/*
 * native_kernels.h -- the op table's third reading: C functions for generated code.
 *
 * fastad.native writes C source for a recorded tape (docs/native.md).  That source embeds
 * this header (and ops.h, which it includes) as text, so a generated file needs nothing
 * but a C compiler and libm.  Here every row of the op table becomes three small inline
 * functions: the value rule fa_v_NAME and the partials fa_da_NAME / fa_db_NAME, each the
 * very expression of ops.h, so generated code computes what the interpreter's kernels
 * (sweeps.h) compute, bit for bit when compiled without floating-point contraction.
 */
#ifndef FASTAD_NATIVE_KERNELS_H
#define FASTAD_NATIVE_KERNELS_H

#include <stdint.h>
#include "ops.h"
#include "reduce.h"     /* the reductions' kernels and FA_AZ, as the sweeps have them */

/* The absolute-zero product of the sweeps (reduce.h, FA_AZ): 0 if either factor is 0.
 * The same value as FA_AZ, but the product is computed unconditionally and the zero tests
 * clear its bits by a mask, without a branch: GCC then vectorizes the generated element
 * loops (with FA_AZ's branches it does not: it may not speculate a multiply under
 * -ftrapping-math).  A select ((x == 0) | (y == 0) ? 0 : p) vectorizes alone, but in a
 * chain of them (fused chains: w1 = FA_AZ(w2, ..), w0 = FA_AZ(w1, ..)) GCC threads the
 * tests into jumps again: the vectorized Rosenbrock's fused reverse loop ran 3x slower.
 * The reverse sweep of the Rosenbrock loop, n = 10^4, went from 18 to 13 us
 * (docs/native.md). */
static inline double fa_naz(double x, double y)
{
    union { double d; uint64_t u; } c = {x * y};
    c.u &= (uint64_t)0 - (uint64_t)((x != 0.0) & (y != 0.0));   /* +0.0 where FA_AZ is */
    return c.d;
}
#define FA_NAZ(x, y) fa_naz(x, y)

#define FA_NK1(N, S, V, DA)                                                              \
    static inline double fa_v_##N(double a) { return (V); }                             \
    static inline double fa_da_##N(double a, double r) { (void)a; (void)r; return (DA); }
#define FA_NK2(N, S, V, DA, DB)                                                          \
    static inline double fa_v_##N(double a, double b) { return (V); }                   \
    static inline double fa_da_##N(double a, double b, double r)                        \
    { (void)a; (void)b; (void)r; return (DA); }                                          \
    static inline double fa_db_##N(double a, double b, double r)                        \
    { (void)a; (void)b; (void)r; return (DB); }
#define FA_NKG(N, S, T) static inline int fa_g_##N(double a, double b) { return (T) ? 1 : 0; }
FA_UNARY_OPS(FA_NK1)
FA_BINARY_OPS(FA_NK2)
FA_GUARD_OPS(FA_NKG)
#undef FA_NK1
#undef FA_NK2
#undef FA_NKG

/* In-process only: the library's numpy-loop evaluator of a ranged record (returns 0 when
 * it has no loop for the op or the range is short, and the generated loop runs instead). */
typedef int (*fa_native_vec_fn)(int op, double *v, int32_t r, int32_t a, int32_t sa,
                                int32_t b, int32_t sb, int32_t n);

/* In-process only: the library's own kernel for one record that generated code does not
 * write out (MATMUL, which may call BLAS; the linear-algebra records, which call LAPACK).
 * The record is passed as its eight words (op, flags, r, a, b and the EXT word's n, sa,
 * sb), and the runtime runs it exactly as the interpreter does (native_abi.h), so the
 * shared object links neither BLAS nor LAPACK and the results are the interpreter's bit
 * for bit.  fwd returns nonzero where the interpreter's record fails (numpy would raise). */
typedef struct {
    int (*fwd)(const int32_t *w, double *v, const int32_t *ix);
    void (*tan)(const int32_t *w, const double *v, double *t, const int32_t *ix);
    void (*rev)(const int32_t *w, const double *v, double *g, const int32_t *ix);
} fa_native_rt;

#endif /* FASTAD_NATIVE_KERNELS_H */
