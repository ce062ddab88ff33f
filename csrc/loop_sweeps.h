/*
 * loop_sweeps.h -- the sweeps of a LOOP record (loop.h), included at the end of sweeps.h:
 * the body's scalar kernels, iteration after iteration (the reverse sweep backwards), in
 * exactly the order of the unrolled records, so results are the same bit for bit.
 *
 * The current iteration's records live in a local array; moving to the next iteration adds
 * each record's strides (the records of the last iteration visited are never advanced past
 * it, so no slot index leaves the range fa_loop_valid checked).
 */
#ifndef FASTAD_LOOP_SWEEPS_H
#define FASTAD_LOOP_SWEEPS_H

#include "loop.h"

/* A record and its four 32-bit words: stepping to the next iteration adds a stride word
 * vector to each record (op and flags words add 0), a loop the compiler vectorizes. */
typedef union { fa_rec r; int32_t w[4]; } fa_loop_cur;

/* cur = iteration j's records, d = the per-iteration steps (times dir) */
static inline void fa_loop_load(const fa_rec *p, fa_loop_cur *cur, fa_loop_cur *d, int64_t j,
                                int32_t dir)
{
    const int64_t P = p[1].a;
    const fa_rec *s = p + 2 + P;
    for (int64_t q = 0; q < P; q++) {
        cur[q].r = fa_loop_at(p, q, j);
        d[q].w[0] = 0;
        d[q].w[1] = dir * s[q].r;
        d[q].w[2] = dir * s[q].a;
        d[q].w[3] = dir * s[q].b;
    }
}

static inline void fa_loop_step(fa_loop_cur *cur, const fa_loop_cur *d, int64_t P)
{
    for (int64_t q = 0; q < P; q++)
        for (int k = 1; k < 4; k++) cur[q].w[k] += d[q].w[k];
}

static int fa_loop_fwd(const fa_rec *p, double *v, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    fa_loop_cur cur[FA_LOOP_MAXP], d[FA_LOOP_MAXP];
    if (T <= 0) return 0;
    fa_loop_load(p, cur, d, 0, 1);
    for (int64_t j = 0;; j++) {
        for (int64_t q = 0; q < P; q++)
            if (fa_fwd(&cur[q].r, v, ix)) return 1;
        if (j == T - 1) return 0;
        fa_loop_step(cur, d, P);
    }
}

static void fa_loop_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    fa_loop_cur cur[FA_LOOP_MAXP], d[FA_LOOP_MAXP];
    if (T <= 0) return;
    fa_loop_load(p, cur, d, 0, 1);
    for (int64_t j = 0;; j++) {
        for (int64_t q = 0; q < P; q++) fa_tan(&cur[q].r, v, t, ix);
        if (j == T - 1) return;
        fa_loop_step(cur, d, P);
    }
}

static void fa_loop_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    fa_loop_cur cur[FA_LOOP_MAXP], d[FA_LOOP_MAXP];
    if (T <= 0) return;
    fa_loop_load(p, cur, d, T - 1, -1);
    for (int64_t j = T - 1;; j--) {
        for (int64_t q = P - 1; q >= 0; q--) fa_rev(&cur[q].r, v, g, ix);
        if (j == 0) return;
        fa_loop_step(cur, d, P);
    }
}

#endif /* FASTAD_LOOP_SWEEPS_H */
