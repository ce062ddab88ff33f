/* The interpreter's sweeps (csrc/sweeps.h) on the spring tape (1000 explicit-Euler steps,
 * benchmarks/problems.py), unrolled and rolled into one LOOP record by fa_optimize: forward
 * + reverse, best of 30 x 100, and a check that both give the same value and gradient bit
 * for bit.  No Python: the C core alone, so it also runs under the sanitizers.
 *
 *   gcc -O3 -std=c11 -fno-math-errno -Icsrc tools/loop_sweeps_bench.c csrc/tape.c \
 *       csrc/sweeps_*.c csrc/elem_*.c csrc/linalg.c csrc/loop.c csrc/optimize.c -lm -o /tmp/lsb && taskset -c 1 /tmp/lsb
 *   (add -O1 -g -fsanitize=address,undefined and ASAN_OPTIONS=detect_leaks=0 to check) */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tape.h"
#include "optimize.h"
#include "sweeps.h"

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }

static fa_tape *spring(int steps, int32_t *out)
{
    fa_tape *t = fa_tape_new();
    int32_t k, c, x, v, dt, loss, a1, a2, a3, a, u1, w1;
    fa_input(t, 4.0, &k); fa_input(t, 0.3, &c); fa_input(t, 1.0, &x); fa_input(t, 0.0, &v);
    fa_const(t, 0.01, &dt); fa_const(t, 0.0, &loss);
    for (int s = 0; s < steps; s++) {
        fa_op1(t, FA_NEGATIVE, k, &a1); fa_op2(t, FA_MULTIPLY, a1, x, &a2);
        fa_op2(t, FA_MULTIPLY, c, v, &a3); fa_op2(t, FA_SUBTRACT, a2, a3, &a);
        fa_op2(t, FA_MULTIPLY, dt, v, &u1); fa_op2(t, FA_ADD, x, u1, &x);
        fa_op2(t, FA_MULTIPLY, dt, a, &w1); fa_op2(t, FA_ADD, v, w1, &v);
        fa_op2(t, FA_MULTIPLY, x, x, &u1); fa_op2(t, FA_ADD, loss, u1, &loss);
    }
    *out = loss;
    return t;
}

static double bench(const fa_tape *t, int32_t out, double *res)
{
    double *v = malloc(t->nslot * sizeof(double)), *g = malloc(t->nslot * sizeof(double));
    memcpy(v, t->val, t->nslot * sizeof(double));
    double best = 1e9;
    for (int rep = 0; rep < 30; rep++) {
        double t0 = now();
        for (int it = 0; it < 100; it++) {
            for (int64_t i = 0; i < t->nrec; i++) if (fa_fwd(&t->rec[i], v, t->ix)) abort();
            memset(g, 0, t->nslot * sizeof(double));
            g[out] = 1.0;
            for (int64_t i = t->nrec - 1; i >= 0; i--) fa_rev(&t->rec[i], v, g, t->ix);
        }
        double dt = (now() - t0) / 100;
        if (dt < best) best = dt;
    }
    res[0] = v[out]; res[1] = g[0]; res[2] = g[1]; res[3] = g[2]; res[4] = g[3];
    free(v); free(g);
    return best;
}

int main(void)
{
    int32_t out;
    fa_tape *t = spring(1000, &out);
    uint8_t act[4] = {1, 1, 1, 1};
    fa_tape *u = spring(1000, &out);
    fa_tape *n = NULL; fa_opt_stats st;
    int32_t *map = malloc(t->nslot * sizeof(int32_t));
    double t0 = now();
    int err = fa_optimize(t, &out, 1, &n, map, &st);
    double topt = now() - t0;
    if (err || !n) { printf("optimize failed %d\n", err); return 1; }
    fa_mark_passive(u, act); fa_mark_passive(n, act);
    double r0[5], r1[5];
    double tu = bench(u, out, r0), tl = bench(n, map[out], r1);
    printf("records %ld -> %ld (recurrences %ld), optimize %.1f us\n", (long)u->nrec, (long)n->nrec, (long)st.recurrences, 1e6 * topt);
    printf("fwd + rev: unrolled %.2f us   loop %.2f us   ratio %.2f\n", 1e6 * tu, 1e6 * tl, tl / tu);
    for (int i = 0; i < 5; i++) if (r0[i] != r1[i]) printf("MISMATCH %d %.17g %.17g\n", i, r0[i], r1[i]);
    free(map);
    fa_tape_free(t); fa_tape_free(u); fa_tape_free(n);
    return 0;
}
