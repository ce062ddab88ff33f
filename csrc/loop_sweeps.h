/*
 * loop_sweeps.h -- the sweeps of a LOOP record (loop.h), included at the end of sweeps.h:
 * the body's scalar kernels, iteration after iteration (the reverse sweep backwards), in
 * exactly the order of the unrolled records, so results are the same bit for bit.
 *
 * Each iteration's records are computed from the body and its strides as they are run,
 * in registers: no record array is written per iteration (which cost the interpreter about
 * half again over the unrolled records).
 */
#ifndef FASTAD_LOOP_SWEEPS_H
#define FASTAD_LOOP_SWEEPS_H

#include "loop.h"

/* Iteration j's copy of body record q, built in registers: its slots are the body
 * record's plus j times its strides (fa_loop_valid checked every iteration's slots, so the
 * sum fits an int32_t). The kernels below are inlined, so it never goes through memory. */
static inline __attribute__((always_inline))
fa_rec fa_loop_iter(const fa_rec *body, const fa_rec *step, int64_t q, int32_t j)
{
    fa_rec s;
    s.op = step[q].flags;
    s.flags = body[q].flags;
    s.unused = 0;
    s.r = (int32_t)(body[q].r + (int64_t)j * step[q].r);
    s.a = (int32_t)(body[q].a + (int64_t)j * step[q].a);
    s.b = (int32_t)(body[q].b + (int64_t)j * step[q].b);
    return s;
}

static int fa_loop_fwd(const fa_rec *p, double *v, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    for (int32_t j = 0; j < T; j++)
        for (int64_t q = 0; q < P; q++) {
            const fa_rec s = fa_loop_iter(body, step, q, j);
            if (fa_fwd(&s, v, ix)) return 1;
        }
    return 0;
}

static void fa_loop_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    for (int32_t j = 0; j < T; j++)
        for (int64_t q = 0; q < P; q++) {
            const fa_rec s = fa_loop_iter(body, step, q, j);
            fa_tan(&s, v, t, ix);
        }
}

static void fa_loop_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    const int64_t T = p[1].r, P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    for (int32_t j = (int32_t)T - 1; j >= 0; j--)
        for (int64_t q = P - 1; q >= 0; q--) {
            const fa_rec s = fa_loop_iter(body, step, q, j);
            fa_rev(&s, v, g, ix);
        }
}

#endif /* FASTAD_LOOP_SWEEPS_H */
