/* ASan/UBSan check of csrc/fuse.c without building Python extensions (docs/hardening.md):
 *   gcc -std=c11 -fno-math-errno -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
 *       -DFASTAD_NO_CLONES -Icsrc tools/sanitize_fuse.c csrc/fuse.c csrc/tape.c csrc/emit.c \
 *       csrc/sweeps_*.c csrc/elem_*.c csrc/linalg.c csrc/loop.c -lm -o /tmp/fusecheck && /tmp/fusecheck
 * A chain recorded through the C API (views, broadcasts, a gather, exp, a final sum, an
 * intermediate read outside), fused sweeps against the records swept one by one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "fuse.h"
#include "sweeps.h"

static int check(int64_t n)
{
    fa_tape *t = fa_tape_new();
    int32_t x0 = -1, s, c1, c2, a, b, d, e, f, g, h, r, sum, ga;
    for (int64_t i = 0; i < n + 1; i++) { int32_t sl; fa_input(t, 0.3 + 0.01 * (double)i, &sl); if (!i) x0 = sl; }
    fa_const(t, 100.0, &c1); fa_const(t, 1.0, &c2);
    int64_t *idx = malloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) idx[i] = (i * 7) % (n + 1);
    fa_op_ranged(t, FA_SQUARE, x0, 1, x0, 1, (int32_t)n, &a);
    fa_op_ranged(t, FA_SUBTRACT, x0 + 1, 1, a, 1, (int32_t)n, &b);
    fa_op_ranged(t, FA_SQUARE, b, 1, b, 1, (int32_t)n, &d);
    fa_op_ranged(t, FA_MULTIPLY, c1, 0, d, 1, (int32_t)n, &e);
    fa_op_ranged(t, FA_SUBTRACT, c2, 0, x0, 1, (int32_t)n, &f);
    fa_gather(t, idx, n, &ga);
    fa_op_ranged(t, FA_EXP, ga, 1, ga, 1, (int32_t)n, &g);
    fa_op_ranged(t, FA_MULTIPLY, f, 1, g, 1, (int32_t)n, &h);
    fa_op_ranged(t, FA_ADD, e, 1, h, 1, (int32_t)n, &r);
    fa_reduce(t, FA_SUM, r, n, 1, &sum);
    fa_op1(t, FA_SIN, b + 2, &s);          /* reads an intermediate: b must stay live */
    fa_op2(t, FA_ADD, sum, s, &s);
    fa_fuse_plan *plan = NULL; fa_fuse_stats st;
    int32_t keep = s;
    if (fa_fuse(t, &keep, 1, 1, &plan, &st) || !plan) { printf("no plan\n"); return 1; }
    size_t bytes = (size_t)t->nslot * sizeof(double);
    double *v1 = malloc(bytes), *v2 = malloc(bytes), *g1 = calloc(t->nslot, 8), *g2 = malloc(bytes);
    double *t1 = calloc(t->nslot, 8), *t2 = calloc(t->nslot, 8);
    memcpy(v1, t->val, bytes); memcpy(v2, t->val, bytes);
    for (int64_t i = 0; i <= n; i++) { t1[i] = t2[i] = cos((double)i); }
    for (int64_t i = 0; i < t->nrec; i++) fa_fwd(&t->rec[i], v1, t->ix);
    for (int64_t i = 0; i < t->nrec; i++) fa_tan(&t->rec[i], v1, t1, t->ix);
    g1[s] = 1.0;
    for (int64_t i = t->nrec - 1; i >= 0; i--) fa_rev(&t->rec[i], v1, g1, t->ix);
    t->fused = plan;
    fa_fused_forward(t, v2);
    fa_fused_tangent(t, v2, t2);
    fa_fused_zero(t, g2); g2[s] = 1.0;
    fa_fused_reverse(t, v2, g2);
    /* the chain's final sum adds in lanes (reduce.h): within 1e-13 of the running sum */
    int bad = fabs(v1[s] - v2[s]) > 1e-13 * fabs(v1[s]) || fabs(t1[s] - t2[s]) > 1e-13 * fabs(t1[s]);
    for (int64_t i = 0; i <= n; i++) bad |= fabs(g1[i] - g2[i]) > 1e-13 * (1 + fabs(g1[i]));
    printf("n=%lld chains=%lld records=%lld live=%lld value %s tangent %s grad %s\n", (long long)n,
           (long long)st.chains, (long long)st.records, (long long)st.live,
           v1[s] == v2[s] ? "same" : "close", t1[s] == t2[s] ? "same" : "close", bad ? "DIFF" : "ok");
    t->fused = NULL;
    fa_fuse_free(plan);
    free(v1); free(v2); free(g1); free(g2); free(t1); free(t2); free(idx);
    fa_tape_free(t);
    return bad;
}

int main(void)
{
    int bad = 0;
    int64_t ns[] = {1, 3, 17, 512, 513, 1500};
    for (int k = 0; k < 6; k++) bad |= check(ns[k]);
    return bad;
}
