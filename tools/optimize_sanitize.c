/* The optimizer (csrc/optimize.c) in C alone, for the sanitizers: a recurrence (the
 * spring), a sum and a recurrence beside a guard whose outcome varies, loops of loops (a
 * 2-D sum by columns, a recurrence through a 2-D array by columns) and 300 random loop
 * tapes; each optimized tape's output must equal the recorded one.  (docs/design.md,
 * "The optimizer"; the Python tests compare every derivative path.)
 *
 *   gcc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -std=c11 \
 *       -fno-math-errno -Wall -Wextra -Icsrc tools/optimize_sanitize.c csrc/tape.c \
 *       csrc/sweeps_*.c csrc/elem_*.c csrc/linalg.c csrc/loop.c csrc/optimize.c -lm -o /tmp/os && /tmp/os */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "tape.h"
#include "optimize.h"

static void run(fa_tape *t, int32_t out, const char *name)
{
    fa_tape *n = NULL;
    fa_opt_stats st;
    int32_t *map = malloc((size_t)(t->nslot + 1) * sizeof(int32_t));
    int err = fa_optimize(t, &out, 1, &n, map, &st);
    printf("%-12s err %d loops %ld rec %ld red %ld guards %ld records %ld -> %ld\n", name, err,
           (long)st.loops, (long)st.recurrences, (long)st.reductions, (long)st.guards,
           (long)t->nrec, (long)(n ? n->nrec : t->nrec));
    if (n) {
        double a = t->val[out], b = n->val[map[out]];
        if (fabs(a - b) > 1e-12 * (1 + fabs(a))) printf("  VALUE MISMATCH %g %g\n", a, b);
        fa_tape_free(n);
    }
    free(map);
    fa_tape_free(t);
}

int main(void)
{
    int32_t k, c, x, v, dt, s, a1, a2, a3, a, u1, w1, in[64], z;
    int o;
    /* spring */
    fa_tape *t = fa_tape_new();
    fa_input(t, 4.0, &k); fa_input(t, 0.3, &c); fa_input(t, 1.0, &x); fa_input(t, 0.0, &v);
    fa_const(t, 0.01, &dt); fa_const(t, 0.0, &s);
    for (int i = 0; i < 1000; i++) {
        fa_op1(t, FA_NEGATIVE, k, &a1); fa_op2(t, FA_MULTIPLY, a1, x, &a2);
        fa_op2(t, FA_MULTIPLY, c, v, &a3); fa_op2(t, FA_SUBTRACT, a2, a3, &a);
        fa_op2(t, FA_MULTIPLY, dt, v, &u1); fa_op2(t, FA_ADD, x, u1, &x);
        fa_op2(t, FA_MULTIPLY, dt, a, &w1); fa_op2(t, FA_ADD, v, w1, &v);
        fa_op2(t, FA_MULTIPLY, x, x, &a1); fa_op2(t, FA_ADD, s, a1, &s);
    }
    run(t, s, "spring");
    /* sum with a guard whose outcome varies, and a recurrence with one */
    for (int rec = 0; rec < 2; rec++) {
        t = fa_tape_new();
        for (int i = 0; i < 64; i++) fa_input(t, sin(1.7 * i), &in[i]);
        fa_const(t, 0.0, &z); fa_const(t, 0.1, &s);
        for (int i = 0; i < 64; i++) {
            fa_guard(t, FA_LESS, z, in[i], &o);
            if (rec) { fa_op2(t, FA_MULTIPLY, s, z, &a1); fa_op2(t, FA_ADD, a1, in[i], &a2); fa_op1(t, FA_TANH, a2, &s); }
            else { fa_op2(t, FA_MULTIPLY, in[i], in[i], &a1); fa_op2(t, FA_ADD, s, a1, &s); }
        }
        run(t, s, rec ? "guard-rec" : "guard-sum");
    }
    /* 2-D sum by columns, and a nested recurrence */
    for (int rec = 0; rec < 2; rec++) {
        t = fa_tape_new();
        for (int i = 0; i < 48; i++) fa_input(t, cos(i), &in[i]);
        fa_const(t, 0.0, &s); fa_const(t, 0.9, &c);
        for (int j = 0; j < 6; j++)
            for (int i = 0; i < 8; i++) {
                if (rec) { fa_op2(t, FA_MULTIPLY, s, c, &a1); fa_op2(t, FA_ADD, a1, in[i * 6 + j], &a2); fa_op1(t, FA_TANH, a2, &s); }
                else { fa_op2(t, FA_MULTIPLY, in[i * 6 + j], in[i * 6 + j], &a1); fa_op2(t, FA_ADD, s, a1, &s); }
            }
        run(t, s, rec ? "nested-rec" : "columns");
    }
    /* random tapes */
    srand(7);
    for (int r = 0; r < 300; r++) {
        t = fa_tape_new();
        int n = 4 + rand() % 8;
        for (int i = 0; i < n; i++) fa_input(t, 0.1 + 0.05 * i, &in[i]);
        int32_t last = in[0];
        int body = 1 + rand() % 6, trips = rand() % 40;
        for (int it = 0; it < trips; it++)
            for (int b = 0; b < body; b++) {
                int32_t p = (rand() % 4 == 0) ? in[rand() % n] : last, q = in[(it + b) % n], w;
                if (rand() % 9 == 0) fa_guard(t, FA_LESS, p, q, &o);
                fa_op2(t, (b % 3 == 0) ? FA_ADD : (b % 3 == 1) ? FA_MULTIPLY : FA_SUBTRACT, p, q, &w);
                if (rand() % 5 == 0) fa_op1(t, FA_SIN, w, &w);
                last = w;
            }

        fa_tape *n2 = NULL; fa_opt_stats st; int32_t *map = malloc((size_t)(t->nslot + 1) * sizeof(int32_t));
        int err = fa_optimize(t, &last, 1, &n2, map, &st);
        if (err) printf("random %d: err %d\n", r, err);
        if (n2) { double a0 = t->val[last], b0 = n2->val[map[last]]; if (fabs(a0 - b0) > 1e-9 * (1 + fabs(a0))) printf("random %d MISMATCH\n", r); fa_tape_free(n2); }
        free(map); fa_tape_free(t);
    }
    printf("done\n");
    return 0;
}
