/* elem_rev_a.c -- elementwise ops' adjoint loops for operand a (elem.h) */
#include "sweeps.h"

FA_CLONES void fa_elem_rev_a(int op, int64_t n, const double *A, int64_t sa,
                             const double *B, int64_t sb, const double *R, const double *W,
                             double *G, double *acc)
{
    switch (op) {
#define FA_E1(N, S, V, DA) case FA_##N: { FA_ELEM_REV(DA) return; }
#define FA_E2(N, S, V, DA, DB) case FA_##N: { FA_ELEM_REV(DA) return; }
    FA_UNARY_OPS(FA_E1)
    FA_BINARY_OPS(FA_E2)
    default:
        return;
    }
}
