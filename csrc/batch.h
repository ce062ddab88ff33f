/*
 * batch.h -- one tape swept for many points at once (fastad.vmap; docs/scale.md).
 *
 * A tape of scalar records (a Python loop's program) is rewritten batch-major: slot s of
 * lane k lives at s*B + k, and every record becomes a ranged record over the B lanes of
 * its slots.  The ranged kernels of sweeps.h then run each record once for B points --
 * the interpreter's dispatch is paid once per record per block, and the element loops
 * are numpy's SIMD loops or vectorized by the compiler.  Guards stay scalar-shaped in the
 * copy and are checked lane by lane here: a lane whose outcome differs from the tape's
 * is flagged (its values past that guard are garbage, never read).
 */
#ifndef FASTAD_BATCH_H
#define FASTAD_BATCH_H

#include "sweeps.h"

/* Can this tape be rewritten batch-major?  Scalar elementwise records and guards only:
 * ranged and structural records (and callbacks) keep their lane-by-lane sweep. */
static inline int fa_batchable(const fa_tape *t)
{
    for (int64_t i = 0; i < t->nrec; i++) {
        const fa_rec *p = &t->rec[i];
        if ((p->flags & FA_RANGED) || fa_op_table[p->op].kind == FA_KIND_STRUCT) return 0;
    }
    return 1;
}

/* The batch-major copy of t's records for B lanes into out (room for 2 * nrec records);
 * returns its number of records.  The caller chose B with nslot * B <= FA_MAX_SLOTS. */
static inline int64_t fa_batch_records(const fa_tape *t, int32_t B, fa_rec *out)
{
    int64_t j = 0;
    for (int64_t i = 0; i < t->nrec; i++) {
        const fa_rec *p = &t->rec[i];
        fa_rec q = *p;
        q.a = p->a * B;
        q.b = p->b * B;
        if (fa_op_table[p->op].kind == FA_KIND_GUARD) {
            out[j++] = q;                        /* checked lane by lane, below */
            continue;
        }
        q.r = p->r * B;
        q.flags = (uint8_t)(p->flags | FA_RANGED);
        out[j++] = q;
        fa_rec e = {0};
        e.op = FA_EXT;
        e.r = B;
        e.a = 1;
        e.b = 1;
        out[j++] = e;
    }
    return j;
}

/* Values of B lanes (inputs already at v[i*B + k]); bad[k] |= 1 where lane k fails a guard. */
static inline void fa_batch_forward(const fa_rec *rec, int64_t nrec, double *v, int32_t B,
                                    uint8_t *bad)
{
    for (int64_t i = 0; i < nrec; i++) {
        const fa_rec *p = &rec[i];
        if (!(p->flags & FA_RANGED) && fa_op_table[p->op].kind == FA_KIND_GUARD) {
            const int want = (p->flags & FA_TRUE) ? 1 : 0;
            const double *va = v + p->a, *vb = v + p->b;
            switch (p->op) {
#define FA_BG(N, S, T) case FA_##N: \
                for (int32_t k = 0; k < B; k++) { \
                    const double a = va[k], b = vb[k]; \
                    bad[k] |= (uint8_t)(((T) ? 1 : 0) != want); } \
                break;
            FA_GUARD_OPS(FA_BG)
#undef FA_BG
            default:
                break;
            }
        } else {
            fa_fwd(p, v, NULL);
        }
    }
}

/* Forward mode over the B lanes (guards and EXT words are no-ops of fa_tan). */
static inline void fa_batch_tangent(const fa_rec *rec, int64_t nrec, const double *v, double *t)
{
    for (int64_t i = 0; i < nrec; i++) fa_tan(&rec[i], v, t, NULL);
}

/* Reverse mode over the B lanes from adjoints already seeded in g (zero elsewhere). */
static inline void fa_batch_reverse(const fa_rec *rec, int64_t nrec, const double *v, double *g)
{
    for (int64_t i = nrec - 1; i >= 0; i--) fa_rev(&rec[i], v, g, NULL);
}

#endif /* FASTAD_BATCH_H */
