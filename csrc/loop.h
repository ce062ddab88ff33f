/*
 * loop.h -- the LOOP record: a true recurrence (each iteration needs the last) kept in
 * order, its body stored once (docs/design.md, "LOOP records").
 *
 * Layout: 2 + 2P consecutive records, P the body's length.
 *   p[0]          op LOOP, flags FA_RANGED; r = the first slot the loop writes,
 *                 a = the last one, b = r (all three slots, so generic checks hold)
 *   p[1]          EXT word: r = T, the trip count; a = P; b = results per iteration
 *   p[2 + q]      body record q as it runs in iteration 0, stored with op FA_EXT so that
 *                 every generic walk over the records skips it: flags are the record's own
 *                 (the guard outcome, passive operands), r, a, b its slots
 *   p[2 + P + q]  its strides, also op FA_EXT: flags = the body record's op code,
 *                 r, a, b = how far its result and operand slots advance per iteration
 * Iteration j of body record q reads and writes slot + j * stride.  Body records are scalar
 * unary, binary or guard records; a guard's outcome is the same in every iteration (the
 * optimizer ends a loop where the branch pattern changes).  Strides are >= 0 and every
 * slot an iteration touches lies inside the tape (fa_loop_valid: checked on loading a
 * pickled tape; the optimizer builds only valid ones).
 */
#ifndef FASTAD_LOOP_H
#define FASTAD_LOOP_H

#include "tape.h"

/* longest body a LOOP record holds: fa_loop_mark_passive keeps two flags per body record
 * in local arrays of this size, and the sweeps' plans stay within a few pages */
#define FA_LOOP_MAXP 512

/* records a LOOP record spans, header and EXT word included */
static inline int64_t fa_loop_span(const fa_rec *p) { return 2 + 2 * (int64_t)p[1].a; }

static inline int fa_loop_slots_ok(int64_t s, int64_t d, int64_t T, int64_t nslot)
{
    return d >= 0 && s >= 0 && s < nslot && (T == 0 || s + (T - 1) * d < nslot);
}

/* Is the LOOP record at rec[i] well formed for a tape of nrec records and nslot slots? */
static inline int fa_loop_valid(const fa_rec *rec, int64_t i, int64_t nrec, int64_t nslot)
{
    if (i + 1 >= nrec || !(rec[i].flags & FA_RANGED)) return 0;
    const int64_t T = rec[i + 1].r, P = rec[i + 1].a;
    if (T < 0 || P < 1 || P > FA_LOOP_MAXP || i + 2 + 2 * P > nrec) return 0;
    for (int64_t q = 0; q < P; q++) {
        const fa_rec *b = &rec[i + 2 + q], *d = &rec[i + 2 + P + q];
        if (b->op != FA_EXT || d->op != FA_EXT || d->flags >= FA_NUM_OPS
            || (b->flags & FA_RANGED))
            return 0;
        const int kind = fa_op_table[d->flags].kind;
        if (kind != FA_KIND_UNARY && kind != FA_KIND_BINARY && kind != FA_KIND_GUARD) return 0;
        if (kind != FA_KIND_GUARD && !fa_loop_slots_ok(b->r, d->r, T, nslot)) return 0;
        if (!fa_loop_slots_ok(b->a, d->a, T, nslot)) return 0;
        if (kind != FA_KIND_UNARY && !fa_loop_slots_ok(b->b, d->b, T, nslot)) return 0;
    }
    return 1;
}

/* Body record q of the LOOP record p as it runs in iteration j (a plain scalar record). */
static inline fa_rec fa_loop_at(const fa_rec *p, int64_t q, int64_t j)
{
    const int64_t P = p[1].a;
    const fa_rec *b = &p[2 + q], *d = &p[2 + P + q];
    fa_rec s;
    s.op = d->flags;
    s.flags = b->flags;
    s.unused = 0;
    s.r = (int32_t)(b->r + j * (int64_t)d->r);
    s.a = (int32_t)(b->a + j * (int64_t)d->a);
    s.b = (int32_t)(b->b + j * (int64_t)d->b);
    return s;
}

/* Append a LOOP record of T iterations of the P scalar records `body` (iteration 0's,
 * real op codes; guards with their outcome in FA_TRUE) whose slots advance by
 * strides[3q .. 3q+2] (result, a, b).  Reserves T * nres fresh result slots, which must be
 * where the body's result strides put them (*first: the first; the caller passes body
 * result slots relative to it as first + offset, see loop.c), and evaluates the loop.
 * evaluate = 0: the caller writes the result slots' values itself (the optimizer copies
 * them from the iterations the loop replaces).
 * Returns FA_OK, FA_EARG (an invalid loop), FA_ENOMEM, FA_EOVERFLOW, or 1 when a guard
 * evaluates to another outcome than its flag says (nothing is then appended). */
int fa_loop_rec(fa_tape *t, const fa_rec *body, const int32_t *strides, int64_t P, int64_t T,
                int64_t nres, int32_t first, int evaluate);

/* Activity analysis of a LOOP record (fa_mark_passive): act[s] for every slot; flags the
 * body's operands that are passive in every iteration. */
void fa_loop_mark_passive(fa_rec *p, uint8_t *act);

/* tape.c's reservations, for fa_loop_rec: n fresh slots, n zeroed records */
int fa_new_slots(fa_tape *t, int64_t n, int32_t *first);
int fa_new_records(fa_tape *t, int64_t n, fa_rec **first);

#endif /* FASTAD_LOOP_H */
