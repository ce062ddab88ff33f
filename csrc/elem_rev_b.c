/* elem_rev_b.c -- binary ops' adjoint loops for operand b (elem.h) */
#include "sweeps.h"

FA_CLONES void fa_elem_rev_b(int op, int64_t n, const double *A, int64_t sa,
                             const double *B, int64_t sb, const double *R, const double *W,
                             double *G, double *acc)
{
    switch (op) {
#define FA_E2(N, S, V, DA, DB) case FA_##N: { FA_ELEM_REV(DB) return; }
    FA_BINARY_OPS(FA_E2)
    default:
        return;
    }
}
