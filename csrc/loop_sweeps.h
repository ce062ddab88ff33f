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

static inline void fa_loop_load(const fa_rec *p, fa_rec *cur, int64_t j)
{
    for (int64_t q = 0; q < p[1].a; q++) cur[q] = fa_loop_at(p, q, j);
}

static inline void fa_loop_step(const fa_rec *p, fa_rec *cur, int dir)
{
    const int64_t P = p[1].a;
    const fa_rec *d = p + 2 + P;
    for (int64_t q = 0; q < P; q++) {
        cur[q].r += dir * d[q].r;
        cur[q].a += dir * d[q].a;
        cur[q].b += dir * d[q].b;
    }
}

static int fa_loop_fwd(const fa_rec *p, double *v, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    fa_rec cur[FA_LOOP_MAXP];
    if (T <= 0) return 0;
    fa_loop_load(p, cur, 0);
    for (int64_t j = 0;; j++) {
        for (int64_t q = 0; q < P; q++)
            if (fa_fwd(&cur[q], v, ix)) return 1;
        if (j == T - 1) return 0;
        fa_loop_step(p, cur, 1);
    }
}

static void fa_loop_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    fa_rec cur[FA_LOOP_MAXP];
    if (T <= 0) return;
    fa_loop_load(p, cur, 0);
    for (int64_t j = 0;; j++) {
        for (int64_t q = 0; q < P; q++) fa_tan(&cur[q], v, t, ix);
        if (j == T - 1) return;
        fa_loop_step(p, cur, 1);
    }
}

static void fa_loop_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    fa_rec cur[FA_LOOP_MAXP];
    if (T <= 0) return;
    fa_loop_load(p, cur, T - 1);
    for (int64_t j = T - 1;; j--) {
        for (int64_t q = P - 1; q >= 0; q--) fa_rev(&cur[q], v, g, ix);
        if (j == 0) return;
        fa_loop_step(p, cur, -1);
    }
}

#endif /* FASTAD_LOOP_SWEEPS_H */
