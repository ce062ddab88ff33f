/*
 * batch.h -- one tape swept for many points at once (fastad.vmap; docs/scale.md).
 *
 * A tape of scalar records (a Python loop's program) or of elementwise array records,
 * sums and gathers (a vectorized program) is rewritten batch-major: slot s of lane k
 * lives at s*B + k, and every record becomes a ranged record over the B lanes of its
 * slots (an array record: over its n elements times B lanes).  The ranged kernels of
 * sweeps.h then run each record once for B points -- the interpreter's dispatch is paid once per record per block, and the element loops
 * are numpy's SIMD loops or vectorized by the compiler.  Guards stay scalar-shaped in the
 * copy and are checked lane by lane here: a lane whose outcome differs from the tape's
 * is flagged (its values past that guard are garbage, never read).
 */
#ifndef FASTAD_BATCH_H
#define FASTAD_BATCH_H

#include "sweeps.h"
#include "batch_trig.h"

/* A SIN or COS record of the batch-major copy over contiguous lanes carries this mark in
 * its header's `unused` field, and a second FA_EXT word (the AUX word) after its EXT word:
 * AUX.r is the batch-major slot from which the other function of the same lanes (cos of a
 * SIN record, sin of a COS record) is kept, past the tape's own slots.  The forward sweep
 * computes both at once (batch_trig.h) and the tangent and reverse sweeps read the kept
 * one.  The generic kernels of sweeps.h skip EXT words, and never see the mark. */
#define FA_BATCH_AUX 1

/* Is the ranged record p (header; its EXT word follows) one the batch-major copy can
 * hold?  Elementwise ops (not linear algebra), SUM and GATHER.  Every other record kind --
 * structural ops, callbacks, record kinds this file does not know -- keeps the tape on
 * its lane-by-lane sweep. */
static inline int fa_batch_ranged_ok(const fa_rec *p)
{
    const int kind = fa_op_table[p->op].kind;
    if (kind == FA_KIND_UNARY || kind == FA_KIND_BINARY)
        return (p[1].a == 0 || p[1].a == 1) && (p[1].b == 0 || p[1].b == 1);
    return p->op == FA_SUM || p->op == FA_GATHER;
}

static inline void fa_batch_ext(fa_rec *e, int64_t n, int32_t sa, int32_t sb)
{
    fa_rec z = {0};
    z.op = FA_EXT;
    z.r = (int32_t)n;
    z.a = sa;
    z.b = sb;
    *e = z;
}

/* The batch-major copy of t's records for B lanes: slot s of lane k at s*B + k.
 *   scalar record      -> a ranged record over the B lanes of its slots
 *   scalar guard       -> kept scalar-shaped (a, b scaled), checked lane by lane
 *   ranged elementwise -> one ranged record over n*B doubles when every operand is a
 *                         range or a constant broadcast (stride 0 reads lane 0 of a
 *                         constant, which every lane holds); a variable broadcast operand
 *                         splits it into n records of B lanes
 *   SUM, GATHER        -> kept with scaled slots and their own EXT word; swept over the
 *                         lanes by fa_batch_forward & co. below (a GATHER's a indexes ix)
 * Writes at most cap records into out (out may be NULL: counting only) and returns the
 * number needed, or -1 when the tape has a record the copy cannot hold (see
 * fa_batch_ranged_ok), -2 when out of memory.  *naux (when not NULL) becomes the number of
 * AUX slots per lane the copy uses past the tape's nslot (SIN and COS records over
 * contiguous lanes, see FA_BATCH_AUX).  The caller chose B with (nslot + naux) * B within
 * INT32_MAX. */
static inline int64_t fa_batch_records(const fa_tape *t, int32_t B, fa_rec *out, int64_t cap,
                                       int64_t *naux)
{
    /* constants: slots that are neither inputs nor written by a record */
    uint8_t *var = (uint8_t *)calloc((size_t)(t->nslot > 0 ? t->nslot : 1), 1);
    if (!var) return -2;
    for (int64_t s = 0; s < t->nin && s < t->nslot; s++) var[s] = 1;
    for (int64_t i = 0; i < t->nrec; i++) {
        const fa_rec *p = &t->rec[i];
        const int kind = fa_op_table[p->op].kind;
        if (p->op == FA_EXT || kind == FA_KIND_GUARD) continue;
        int64_t n = 1;
        if (p->flags & FA_RANGED) {
            if (i + 1 >= t->nrec) { free(var); return -1; }
            n = p->op == FA_SUM ? t->rec[i + 1].a : t->rec[i + 1].r;
        }
        for (int64_t k = 0; k < n; k++)
            if (p->r + k >= 0 && p->r + k < t->nslot) var[p->r + k] = 1;
    }
    int64_t j = 0, aux = t->nslot;
#define FA_PUT_RAW(x) do { if (out && j < cap) out[j] = (x); j++; } while (0)
    /* every copied word's `unused` is cleared: only FA_PUT_TRIG's mark may be there (a
     * tape loaded from a pickle could carry anything in it) */
#define FA_PUT(x) do { fa_rec c_ = (x); c_.unused = 0; FA_PUT_RAW(c_); } while (0)
    /* a SIN or COS header h over n slots of B contiguous lanes: marked, its EXT word e,
     * then its AUX word (n AUX slots) */
#define FA_PUT_TRIG(h, e, n) do { \
        fa_rec h_ = (h), w_; \
        h_.unused = FA_BATCH_AUX; \
        FA_PUT_RAW(h_); \
        FA_PUT(e); \
        fa_batch_ext(&w_, 0, 0, 0); \
        w_.r = (int32_t)(aux * B); \
        FA_PUT(w_); \
        aux += (n); \
    } while (0)
#define FA_IS_TRIG(p) ((p)->op == FA_SIN || (p)->op == FA_COS)
    for (int64_t i = 0; i < t->nrec; i++) {
        const fa_rec *p = &t->rec[i];
        const int kind = fa_op_table[p->op].kind;
        fa_rec q = *p, e;
        /* products in 64 bits: an unused operand field or a GATHER's ix offset may be
         * large; the slots read through them are within nslot * B <= INT32_MAX */
        q.a = (int32_t)((int64_t)p->a * B);
        q.b = (int32_t)((int64_t)p->b * B);
        q.r = (int32_t)((int64_t)p->r * B);
        if (!(p->flags & FA_RANGED)) {
            if (kind == FA_KIND_GUARD) {
                q.r = p->r;                      /* checked lane by lane, below */
                FA_PUT(q);
            } else if (kind == FA_KIND_UNARY || kind == FA_KIND_BINARY) {
                q.flags = (uint8_t)(p->flags | FA_RANGED);
                fa_batch_ext(&e, B, 1, 1);
                if (FA_IS_TRIG(p)) {
                    FA_PUT_TRIG(q, e, 1);
                } else {
                    FA_PUT(q);
                    FA_PUT(e);
                }
            } else if (p->op != FA_EXT) {
                free(var);
                return -1;
            }
            continue;
        }
        if (i + 1 >= t->nrec || !fa_batch_ranged_ok(p)) { free(var); return -1; }
        const fa_rec x = t->rec[++i];            /* the EXT word */
        if (p->op == FA_SUM || p->op == FA_GATHER) {
            if (p->op == FA_GATHER) q.a = p->a;  /* an offset into ix, not a slot */
            FA_PUT(q);
            FA_PUT(x);
            continue;
        }
        const int unary = kind == FA_KIND_UNARY;
        const int a_ok = x.a == 1 || !var[p->a];
        const int b_ok = unary || x.b == 1 || !var[p->b];
        if (a_ok && b_ok && (int64_t)x.r * B <= INT32_MAX) {
            fa_batch_ext(&e, (int64_t)x.r * B, x.a, unary ? 1 : x.b);
            if (FA_IS_TRIG(p) && x.a == 1) {
                FA_PUT_TRIG(q, e, x.r);
            } else {
                FA_PUT(q);
                FA_PUT(e);
            }
            continue;
        }
        for (int64_t k = 0; k < x.r; k++) {      /* element by element, each over B lanes */
            fa_rec h = *p;
            h.r = (int32_t)((p->r + k) * B);
            h.a = (int32_t)((p->a + k * x.a) * B);
            h.b = unary ? q.b : (int32_t)((p->b + k * x.b) * B);
            fa_batch_ext(&e, B, 1, 1);
            if (FA_IS_TRIG(p)) {
                FA_PUT_TRIG(h, e, 1);
            } else {
                FA_PUT(h);
                FA_PUT(e);
            }
        }
    }
#undef FA_PUT
#undef FA_PUT_RAW
#undef FA_PUT_TRIG
#undef FA_IS_TRIG
    free(var);
    if (naux) *naux = aux - t->nslot;
    return j;
}

/* SUM over B lanes: r[j] = sum_k a[j*n + k] for every lane, in the order of
 * fa_reduce_fwd (so each lane's sum is the single call's to the bit). */
static inline void fa_batch_sum_fwd(const fa_rec *p, double *v, int32_t B)
{
    const int64_t n = p[1].r, m = p[1].a;
    for (int64_t j = 0; j < m; j++) {
        double *r = v + p->r + j * B;
        const double *x = v + p->a + j * n * B;
        for (int32_t l = 0; l < B; l++) r[l] = 0.0;
        for (int64_t k = 0; k < n; k++)
            for (int32_t l = 0; l < B; l++) r[l] += x[k * B + l];
    }
}

static inline void fa_batch_sum_tan(const fa_rec *p, double *t, int32_t B)
{
    const int64_t n = p[1].r, m = p[1].a;
    for (int64_t j = 0; j < m; j++) {
        double *r = t + p->r + j * B;
        const double *x = t + p->a + j * n * B;
        for (int32_t l = 0; l < B; l++) r[l] = 0.0;
        for (int64_t k = 0; k < n; k++)
            for (int32_t l = 0; l < B; l++) r[l] += FA_AZ(x[k * B + l], 1.0);
    }
}

static inline void fa_batch_sum_rev(const fa_rec *p, double *g, int32_t B)
{
    if (p->flags & FA_A_PASSIVE) return;
    const int64_t n = p[1].r, m = p[1].a;
    for (int64_t j = 0; j < m; j++) {
        const double *w = g + p->r + j * B;
        double *x = g + p->a + j * n * B;
        for (int64_t k = 0; k < n; k++)
            for (int32_t l = 0; l < B; l++) if (w[l] != 0.0) x[k * B + l] += w[l];
    }
}

/* GATHER over B lanes: r[k] = v[ix[a + k]] lane by lane (a whole row of B at a time). */
static inline void fa_batch_gather(const fa_rec *p, double *v, const int32_t *ix, int32_t B)
{
    for (int64_t k = 0; k < p[1].r; k++) {
        const double *src = v + (int64_t)ix[p->a + k] * B;
        double *dst = v + p->r + k * B;
        for (int32_t l = 0; l < B; l++) dst[l] = src[l];
    }
}

static inline void fa_batch_gather_rev(const fa_rec *p, double *g, const int32_t *ix, int32_t B)
{
    if (p->flags & FA_A_PASSIVE) return;
    for (int64_t k = 0; k < p[1].r; k++) {
        double *dst = g + (int64_t)ix[p->a + k] * B;
        const double *src = g + p->r + k * B;
        for (int32_t l = 0; l < B; l++) dst[l] += src[l];
    }
}

/* A marked SIN/COS record (FA_BATCH_AUX): its value and the kept other function. */
static inline void fa_batch_trig_fwd(const fa_rec *p, double *v, int vector)
{
    double *aux = v + p[2].r;
    if (p->op == FA_SIN) fa_trig_sincos(v + p->a, v + p->r, aux, p[1].r, vector);
    else fa_trig_sincos(v + p->a, aux, v + p->r, p[1].r, vector);
}

/* Its tangents and adjoints: sin' = cos, cos' = -sin (ops.h), from the kept values, in
 * the absolute-zero products of sweeps.h; compiled per x86-64 level like sweeps.h's loops. */
static FA_CLONES void fa_batch_trig_tan(const fa_rec *p, const double *v, double *t)
{
    const double *aux = v + p[2].r, *ta = t + p->a;
    double *tr = t + p->r;
    const int64_t n = p[1].r;
    if (p->op == FA_SIN) for (int64_t k = 0; k < n; k++) tr[k] = FA_AZ(ta[k], aux[k]);
    else for (int64_t k = 0; k < n; k++) tr[k] = FA_AZ(ta[k], -aux[k]);
}

static FA_CLONES void fa_batch_trig_rev(const fa_rec *p, const double *v, double *g)
{
    if (p->flags & FA_A_PASSIVE) return;
    const double *aux = v + p[2].r, *gr = g + p->r;
    double *ga = g + p->a;
    const int64_t n = p[1].r;
    if (p->op == FA_SIN) for (int64_t k = 0; k < n; k++) ga[k] += FA_AZ(gr[k], aux[k]);
    else for (int64_t k = 0; k < n; k++) ga[k] += FA_AZ(gr[k], -aux[k]);
}

#define FA_BATCH_IS_TRIG(p) ((p)->unused == FA_BATCH_AUX && ((p)->flags & FA_RANGED) \
                             && ((p)->op == FA_SIN || (p)->op == FA_COS))

/* Values of B lanes (inputs already at v[i*B + k]); bad[k] |= 1 where lane k fails a guard.
 * vector: sin and cos from libmvec (batch_trig.h). */
static inline void fa_batch_forward(const fa_rec *rec, int64_t nrec, double *v, int32_t B,
                                    const int32_t *ix, uint8_t *bad, int vector)
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
        } else if (FA_BATCH_IS_TRIG(p)) {
            fa_batch_trig_fwd(p, v, vector);
        } else if (p->op == FA_SUM && (p->flags & FA_RANGED)) {
            fa_batch_sum_fwd(p, v, B);
        } else if (p->op == FA_GATHER && (p->flags & FA_RANGED)) {
            fa_batch_gather(p, v, ix, B);
        } else {
            fa_fwd(p, v, NULL);
        }
    }
}

/* Forward mode over the B lanes (guards and EXT words are no-ops of fa_tan). */
static inline void fa_batch_tangent(const fa_rec *rec, int64_t nrec, const double *v, double *t,
                                    int32_t B, const int32_t *ix)
{
    for (int64_t i = 0; i < nrec; i++) {
        const fa_rec *p = &rec[i];
        if (FA_BATCH_IS_TRIG(p)) fa_batch_trig_tan(p, v, t);
        else if (p->op == FA_SUM && (p->flags & FA_RANGED)) fa_batch_sum_tan(p, t, B);
        else if (p->op == FA_GATHER && (p->flags & FA_RANGED)) fa_batch_gather(p, t, ix, B);
        else fa_tan(p, v, t, NULL);
    }
}

/* Reverse mode over the B lanes from adjoints already seeded in g (zero elsewhere). */
static inline void fa_batch_reverse(const fa_rec *rec, int64_t nrec, const double *v, double *g,
                                    int32_t B, const int32_t *ix)
{
    for (int64_t i = nrec - 1; i >= 0; i--) {
        const fa_rec *p = &rec[i];
        if (FA_BATCH_IS_TRIG(p)) fa_batch_trig_rev(p, v, g);
        else if (p->op == FA_SUM && (p->flags & FA_RANGED)) fa_batch_sum_rev(p, g, B);
        else if (p->op == FA_GATHER && (p->flags & FA_RANGED)) fa_batch_gather_rev(p, g, ix, B);
        else fa_rev(p, v, g, NULL);
    }
}

#endif /* FASTAD_BATCH_H */
