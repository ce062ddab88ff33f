/*
 * serial.h -- a tape's raw arrays, out and back in (pickling: src/fastad/serialize.py).
 *
 * A tape is its arrays: the records, the slot values (inputs, constants, the last
 * recording's results), the constant pool's hash and ranges, and the gather index pool.
 * They are copied as they are, so any record kind added to ops.h travels without a line
 * here; the format carries a hash of the op table, checked before these are called.
 */
#ifndef FASTAD_SERIAL_H
#define FASTAD_SERIAL_H

#include <stdlib.h>
#include <string.h>
#include "tape.h"
#include "loop.h"

typedef struct {
    int64_t nrec, nslot, nin, ncon, hcap, ncranges, nix, ncb;
} fa_tape_sizes;

static inline void fa_tape_sizes_of(const fa_tape *t, fa_tape_sizes *s)
{
    s->nrec = t->nrec; s->nslot = t->nslot; s->nin = t->nin; s->ncon = t->ncon;
    s->hcap = t->hcap; s->ncranges = t->ncranges; s->nix = t->nix; s->ncb = t->ncb;
}

/* Copy the arrays out; each destination has room for its size in fa_tape_sizes_of. */
static inline void fa_tape_export(const fa_tape *t, fa_rec *rec, double *val, int64_t *chash,
                                  int64_t *cranges, int32_t *ix)
{
    if (t->nrec) memcpy(rec, t->rec, (size_t)t->nrec * sizeof(fa_rec));
    if (t->nslot) memcpy(val, t->val, (size_t)t->nslot * sizeof(double));
    if (t->hcap) memcpy(chash, t->chash, (size_t)t->hcap * sizeof(int64_t));
    if (t->ncranges) memcpy(cranges, t->cranges, (size_t)t->ncranges * 2 * sizeof(int64_t));
    if (t->nix) memcpy(ix, t->ix, (size_t)t->nix * sizeof(int32_t));
}

static inline int fa_in(int64_t x, int64_t lo, int64_t hi) { return x >= lo && x < hi; }

/* Does every record address slots (or gather indices) the tape has?  A corrupt or
 * mismatched pickle then fails here instead of reading out of bounds in a sweep. */
static inline int fa_tape_records_valid(const fa_rec *rec, const fa_tape_sizes *s)
{
    for (int64_t i = 0; i < s->nrec; i++) {
        const fa_rec *p = &rec[i];
        if (p->op >= FA_NUM_OPS) return 0;
        if (p->op == FA_EXT) continue;
        if (p->op == FA_LOOP) {          /* its body and strides: loop.h */
            if (!fa_loop_valid(rec, i, s->nrec, s->nslot)) return 0;
            i += fa_loop_span(p) - 1;
            continue;
        }
        if (p->flags & FA_RANGED) {
            if (i + 1 >= s->nrec || rec[i + 1].op != FA_EXT) return 0;
            const int64_t n = rec[i + 1].r;
            if (n < 0 || !fa_in(p->r, 0, s->nslot)) return 0;
            if (p->op == FA_GATHER) {
                if (p->a < 0 || p->a + n > s->nix || p->r + n > s->nslot) return 0;
                continue;
            }
        } else if (!fa_in(p->r, -1, s->nslot)) {
            return 0;
        }
        if (!fa_in(p->a, 0, s->nslot) || !fa_in(p->b, 0, s->nslot)) return 0;
    }
    return 1;
}

/* Load the arrays into a fresh, empty tape t.  Returns FA_OK, FA_EARG for sizes or
 * records that do not fit together, or FA_ENOMEM. */
static inline int fa_tape_import(fa_tape *t, const fa_tape_sizes *s, const fa_rec *rec,
                                 const double *val, const int64_t *chash,
                                 const int64_t *cranges, const int32_t *ix)
{
    if (t->nrec || t->nslot) return FA_EARG;
    if (s->nrec < 0 || s->nslot < 0 || s->nslot > FA_MAX_SLOTS || s->nin < 0
        || s->nin > s->nslot || s->ncon < 0 || s->hcap < 0 || (s->hcap & (s->hcap - 1))
        || s->ncranges < 0 || s->nix < 0 || s->ncb < 0)
        return FA_EARG;
    for (int64_t i = 0; i < s->hcap; i++)
        if (!fa_in(chash[i], 0, s->nslot + 1)) return FA_EARG;
    for (int64_t i = 0; i < s->ncranges; i++)
        if (cranges[2 * i] < 0 || cranges[2 * i + 1] < 0
            || cranges[2 * i] + cranges[2 * i + 1] > s->nslot)
            return FA_EARG;
    for (int64_t i = 0; i < s->nix; i++)
        if (!fa_in(ix[i], 0, s->nslot)) return FA_EARG;
    if (!fa_tape_records_valid(rec, s)) return FA_EARG;
    /* at least one element each, so that a later growth (a retrace never grows a loaded
     * tape, but the capacities must be honest) never reallocs a NULL of capacity > 0 */
    fa_rec *r = (fa_rec *)malloc((size_t)(s->nrec ? s->nrec : 1) * sizeof(fa_rec));
    double *v = (double *)malloc((size_t)(s->nslot ? s->nslot : 1) * sizeof(double));
    int64_t *h = s->hcap ? (int64_t *)malloc((size_t)s->hcap * sizeof(int64_t)) : NULL;
    int64_t *c = (int64_t *)malloc((size_t)(s->ncranges ? 2 * s->ncranges : 2) * sizeof(int64_t));
    int32_t *x = (int32_t *)malloc((size_t)(s->nix ? s->nix : 1) * sizeof(int32_t));
    if (!r || !v || (s->hcap && !h) || !c || !x) {
        free(r); free(v); free(h); free(c); free(x);
        return FA_ENOMEM;
    }
    if (s->nrec) memcpy(r, rec, (size_t)s->nrec * sizeof(fa_rec));
    if (s->nslot) memcpy(v, val, (size_t)s->nslot * sizeof(double));
    if (s->hcap) memcpy(h, chash, (size_t)s->hcap * sizeof(int64_t));
    if (s->ncranges) memcpy(c, cranges, (size_t)s->ncranges * 2 * sizeof(int64_t));
    if (s->nix) memcpy(x, ix, (size_t)s->nix * sizeof(int32_t));
    t->rec = r; t->nrec = s->nrec; t->caprec = s->nrec ? s->nrec : 1;
    t->val = v; t->nslot = s->nslot; t->capslot = s->nslot ? s->nslot : 1;
    t->nin = (int32_t)s->nin; t->ncon = s->ncon;
    t->chash = h; t->hcap = s->hcap;
    t->cranges = c; t->ncranges = s->ncranges; t->capcranges = s->ncranges ? 2 * s->ncranges : 2;  /* int64 words */
    t->ix = x; t->nix = s->nix; t->capix = s->nix ? s->nix : 1;
    t->ncb = s->ncb;
    return FA_OK;
}

#endif /* FASTAD_SERIAL_H */
