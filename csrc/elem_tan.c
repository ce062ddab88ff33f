/* elem_tan.c -- elementwise ops' tangent loops (elem.h) */
#include "sweeps.h"

FA_CLONES void fa_elem_tan(int op, int64_t n, const double *A, int64_t sa, const double *B,
                           int64_t sb, const double *R, const double *TA, const double *TB,
                           double *TR)
{
    switch (op) {
#define FA_E1(N, S, V, DA) case FA_##N: \
        FA_LOOP({ (void)kb; const double a = A[ka], r = R[k]; (void)a; (void)r; \
                  TR[k] = FA_AZ(TA[ka], (DA)); }) return;
#define FA_E2(N, S, V, DA, DB) case FA_##N: \
        FA_LOOP({ const double a = A[ka], b = B[kb], r = R[k]; (void)a; (void)b; (void)r; \
                  TR[k] = FA_AZ(TA[ka], (DA)) + FA_AZ(TB[kb], (DB)); }) return;
    FA_UNARY_OPS(FA_E1)
    FA_BINARY_OPS(FA_E2)
    default:
        return;
    }
}
