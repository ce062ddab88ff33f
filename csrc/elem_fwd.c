/* elem_fwd.c -- elementwise ops' value loops (elem.h) */
#include "sweeps.h"

FA_CLONES void fa_elem_fwd(int op, int vec, int64_t n, const double *A, int64_t sa,
                           const double *B, int64_t sb, double *R)
{
    if (vec) {
        const fa_vec_loop V = fa_vec_loops[op];
        intptr_t dims[1] = {(intptr_t)n};
        intptr_t steps[3] = {(intptr_t)(sa * (int64_t)sizeof(double)),
                             (intptr_t)(sb * (int64_t)sizeof(double)), sizeof(double)};
        char *args[3] = {(char *)A, (char *)B, (char *)R};
        if (fa_op_table[op].kind == FA_KIND_UNARY) { args[1] = args[2]; steps[1] = steps[2]; }
        V.fn(args, dims, steps, V.data);
        return;
    }
    switch (op) {
#define FA_E1(N, S, V, DA) case FA_##N: \
        FA_LOOP({ (void)kb; const double a = A[ka]; R[k] = (V); }) return;
#define FA_E2(N, S, V, DA, DB) case FA_##N: \
        FA_LOOP({ const double a = A[ka], b = B[kb]; R[k] = (V); }) return;
    FA_UNARY_OPS(FA_E1)
    FA_BINARY_OPS(FA_E2)
    default:
        return;
    }
}
