/*
 * loop.c -- building LOOP records (loop.h) and their activity analysis.  The optimizer
 * (optimize.c) finds the recurrences; the sweeps run them (loop_sweeps.h).
 */
#include <string.h>
#include "loop.h"
#include "sweeps.h"

int fa_loop_rec(fa_tape *t, const fa_rec *body, const int32_t *strides, int64_t P, int64_t T,
                int64_t nres, int32_t first, int evaluate)
{
    if (P < 1 || P > FA_LOOP_MAXP || T < 1 || T > INT32_MAX || nres < 1 || nres > P
        || t->nslot != first || 2 + 2 * P > INT32_MAX)
        return FA_EARG;
    int32_t s;
    int err = fa_new_slots(t, T * nres, &s);
    if (err) return err;
    fa_rec *p;
    err = fa_new_records(t, 2 + 2 * P, &p);
    if (err) { t->nslot -= T * nres; return err; }
    p[0].op = FA_LOOP;
    p[0].flags = FA_RANGED;
    p[0].r = first;
    p[0].a = (int32_t)(first + T * nres - 1);
    p[0].b = first;
    p[1].op = FA_EXT;
    p[1].r = (int32_t)T;
    p[1].a = (int32_t)P;
    p[1].b = (int32_t)nres;
    for (int64_t q = 0; q < P; q++) {
        fa_rec *b = &p[2 + q], *d = &p[2 + P + q];
        *b = body[q];
        b->op = FA_EXT;
        d->op = FA_EXT;
        d->flags = body[q].op;
        d->r = strides[3 * q];
        d->a = strides[3 * q + 1];
        d->b = strides[3 * q + 2];
    }
    const int64_t at = p - t->rec;
    /* every slot an iteration writes must be one of the fresh ones: SSA, and the loop's
     * values never overwrite anything else */
    int ok = fa_loop_valid(t->rec, at, t->nrec, t->nslot);
    for (int64_t q = 0; q < P && ok; q++) {
        if (fa_op_table[body[q].op].kind == FA_KIND_GUARD) continue;
        const int64_t r0 = p[2 + q].r, dr = p[2 + P + q].r;
        if (r0 < first || dr != nres || r0 >= first + nres) ok = 0;
    }
    if (!ok || (evaluate && fa_fwd(p, t->val, t->ix))) {
        t->nrec -= 2 + 2 * P;
        t->nslot -= T * nres;
        return ok ? 1 : FA_EARG;
    }
    return FA_OK;
}

void fa_loop_mark_passive(fa_rec *p, uint8_t *act)
{
    const int64_t T = p[1].r, P = p[1].a;
    uint8_t any_a[FA_LOOP_MAXP], any_b[FA_LOOP_MAXP];
    memset(any_a, 0, sizeof any_a);
    memset(any_b, 0, sizeof any_b);
    for (int64_t j = 0; j < T; j++)
        for (int64_t q = 0; q < P; q++) {
            const fa_rec s = fa_loop_at(p, q, j);
            const int kind = fa_op_table[s.op].kind;
            if (kind == FA_KIND_GUARD) continue;
            const uint8_t a = act[s.a], b = kind == FA_KIND_BINARY ? act[s.b] : 0;
            any_a[q] |= a;
            any_b[q] |= b;
            act[s.r] = a | b;
        }
    for (int64_t q = 0; q < P; q++) {
        fa_rec *b = &p[2 + q];
        if (fa_op_table[p[2 + P + q].flags].kind == FA_KIND_GUARD) continue;
        b->flags &= (uint8_t)~(FA_A_PASSIVE | FA_B_PASSIVE);
        if (!any_a[q]) b->flags |= FA_A_PASSIVE;
        if (!any_b[q]) b->flags |= FA_B_PASSIVE;
    }
}
