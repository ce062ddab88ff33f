/*
 * fuse.c -- fusion of elementwise chains (fuse.h; docs/design.md, "Fusion").
 *
 * Planning.  A chain is a run of consecutive records of one length n:
 *   - ranged elementwise records (ops.h's unary and binary ops), each operand either a
 *     whole earlier member's result (an intermediate, read from a tile buffer), a range
 *     from outside the chain (inputs, views, constants, earlier results), or a broadcast
 *     slot from outside the chain;
 *   - GATHERs of n slots from outside the chain (fancy indexing, broadcasts);
 *   - at most one SUM over a member's whole result, which ends the chain.
 * Any other read of a member's result (a view at an offset, a broadcast of one element)
 * ends the chain before the reader.  A member's result is "live" when any record outside
 * the chain reads a slot of it or the caller keeps one: live results are written to the
 * value array as before, the others never leave the tile buffers.
 *
 * Executing.  Tile by tile (FA_FUSE_TILE elements): forward runs every member's element
 * loop over the tile; tangent and reverse recompute the tile's intermediates (live ones
 * are read back) and then run the members' tangent rules forwards, or their adjoint rules
 * backwards, on the tile.  The element rules are the X-lists of ops.h read the same way as
 * sweeps.h reads them, and each member keeps the unfused record's order per element
 * (operand a's loop, then b's; broadcast operands summed in one running register across
 * tiles in element order), so results equal the unfused sweeps' bit for bit -- except
 * the final SUM, added in FA_LANES running sums (reduce.h: one chain of 10^6 dependent
 * adds took as long as the rest of the chain), and except when one slot is reached by
 * several members through shifted views (x[1:] and x[:-1]) or as a broadcast and a range
 * at once: its adjoint then gets the same terms in another order at tile boundaries
 * (docs/conventions.md, "Fused chains").
 */
#include <stdlib.h>
#include <string.h>
#include "fuse.h"
#include "sweeps.h"

enum { K_EL = 0, K_GATHER = 1, K_SUM = 2 };
enum { O_BC = 0, O_EXT = 1, O_INT = 2 };   /* broadcast slot, outside range, member result */

typedef struct {
    int64_t rec;         /* the member's header record */
    int64_t rlen;        /* slots of its result: n, or 1 for the SUM */
    int32_t r, a, b;     /* slots (GATHER: a is the offset in the index pool) */
    int32_t ia, ib;      /* O_INT operands: the member they read (index in the chain) */
    uint8_t op, kind, unary, ca, cb, live;
} fmem;

typedef struct {
    int64_t first, end;  /* records [first, end), EXT words included */
    int64_t n;           /* elements */
    int64_t m0, nm;      /* members m[m0 .. m0+nm) */
} fchain;

struct fa_fuse_plan {
    int64_t nrec;        /* the tape's record count the plan was made for */
    fchain *c;
    int64_t nc;
    fmem *m;
    int64_t nmem;
    int64_t maxm;        /* most members of one chain */
};

/* ---- planning --------------------------------------------------------------------- */

typedef struct {
    const fa_tape *t;
    fmem *m;
    int64_t nmem, capm;
    fchain *c;
    int64_t nc, capc;
    fchain cur;          /* the chain being grown (cur.nm == 0: none) */
    int64_t lo, hi;      /* slots of the current chain's results: [lo, hi) */
    int64_t min_n;       /* shortest chain fused, in elements */
} planner;

static int elementwise(const fa_rec *p)
{
    if (!(p->flags & FA_RANGED)) return 0;
    const int k = fa_op_table[p->op].kind;
    return k == FA_KIND_UNARY || k == FA_KIND_BINARY;
}

/* The class of an operand of the candidate record (stride 0 or 1, n elements): O_BC,
 * O_EXT, O_INT with *mi the member, or -1 when the read does not fit a chain. */
static int operand_class(const planner *P, int64_t s, int64_t stride, int64_t n, int32_t *mi)
{
    *mi = -1;
    const int64_t len = stride ? n : 1;
    if (P->cur.nm == 0 || s + len <= P->lo || s >= P->hi)
        return stride ? O_EXT : O_BC;
    for (int64_t j = 0; j < P->cur.nm; j++) {
        const fmem *q = &P->m[P->cur.m0 + j];
        if (s + len <= q->r || s >= q->r + q->rlen) continue;
        if (stride && s == q->r && q->rlen == n && q->kind != K_SUM) { *mi = (int32_t)j; return O_INT; }
        return -1;                 /* part of a member's result: not a chain read */
    }
    /* inside [lo, hi) but no member's: a constant made while the chain was recorded */
    return stride ? O_EXT : O_BC;
}

static int push_member(planner *P, const fmem *q)
{
    if (P->nmem == P->capm) {
        int64_t cap = P->capm ? 2 * P->capm : 64;
        fmem *nm = (fmem *)realloc(P->m, (size_t)cap * sizeof(fmem));
        if (!nm) return FA_ENOMEM;
        P->m = nm;
        P->capm = cap;
    }
    P->m[P->nmem++] = *q;
    return FA_OK;
}

/* A chain ending in the SUM that consumes it is fused from a quarter of min_n elements:
 * besides memory passes it saves the running sum's chain of dependent adds (its lanes,
 * reduce.h), and native code of the chain runs in registers.  Measured at n = 10^4 (the
 * vectorized Rosenbrock, docs/benchmarks.md): interpreter fused as fast as unfused,
 * native code 4x faster fused; chains without a sum keep min_n (the MLP's ran 0.87x). */
#define FA_FUSE_SUM_DIV 4

/* End the current chain: kept if it has two members or more and is long enough. */
static int close_chain(planner *P)
{
    const int ends_in_sum = P->cur.nm && P->m[P->cur.m0 + P->cur.nm - 1].kind == K_SUM;
    const int64_t min_n = ends_in_sum ? P->min_n / FA_FUSE_SUM_DIV : P->min_n;
    if (P->cur.nm >= 2 && P->cur.n >= min_n) {
        if (P->nc == P->capc) {
            int64_t cap = P->capc ? 2 * P->capc : 16;
            fchain *nc = (fchain *)realloc(P->c, (size_t)cap * sizeof(fchain));
            if (!nc) return FA_ENOMEM;
            P->c = nc;
            P->capc = cap;
        }
        P->c[P->nc++] = P->cur;
    } else {
        P->nmem = P->cur.m0;      /* a lone record stays as it is */
    }
    memset(&P->cur, 0, sizeof P->cur);
    P->cur.m0 = P->nmem;
    return FA_OK;
}

/* Describe record i as a member of the current chain; 0 if it cannot be one. */
static int as_member(const planner *P, int64_t i, fmem *q)
{
    const fa_tape *t = P->t;
    const fa_rec *p = &t->rec[i], *e = p + 1;
    if (!(p->flags & FA_RANGED) || i + 1 >= t->nrec) return 0;
    const int64_t n = e->r;
    if (n < 1 || (P->cur.nm && n != P->cur.n)) return 0;
    memset(q, 0, sizeof *q);
    q->rec = i; q->op = p->op; q->r = p->r; q->a = p->a; q->b = p->b; q->rlen = n;
    q->ia = q->ib = -1;
    if (elementwise(p)) {
        q->kind = K_EL;
        q->unary = fa_op_table[p->op].kind == FA_KIND_UNARY;
        if (e->a != 0 && e->a != 1) return 0;
        int c = operand_class(P, p->a, e->a, n, &q->ia);
        if (c < 0) return 0;
        q->ca = (uint8_t)c;
        if (!q->unary) {
            if (e->b != 0 && e->b != 1) return 0;
            c = operand_class(P, p->b, e->b, n, &q->ib);
            if (c < 0) return 0;
            q->cb = (uint8_t)c;
        }
        return 1;
    }
    if (p->op == FA_GATHER) {
        if (p->a < 0 || p->a + n > t->nix) return 0;
        q->kind = K_GATHER;
        if (P->cur.nm)
            for (int64_t k = 0; k < n; k++) {
                const int32_t s = t->ix[p->a + k];
                if (s >= P->lo && s < P->hi) return 0;
            }
        return 1;
    }
    if (p->op == FA_SUM && e->a == 1 && P->cur.nm) {
        q->kind = K_SUM;
        q->rlen = 1;
        if (operand_class(P, p->a, 1, n, &q->ia) != O_INT) return 0;
        q->ca = O_INT;
        return 1;
    }
    return 0;
}

static int add_member(planner *P, const fmem *q)
{
    int err = push_member(P, q);
    if (err) return err;
    if (P->cur.nm == 0) {
        P->cur.first = q->rec;
        P->cur.n = P->t->rec[q->rec + 1].r;
        P->lo = q->r;
    }
    P->cur.nm++;
    P->cur.end = q->rec + 2;
    if (q->r + q->rlen > P->hi) P->hi = q->r + q->rlen;
    if (q->kind == K_SUM || P->cur.nm == FA_FUSE_MAXM) return close_chain(P);
    return FA_OK;
}

static int find_chains(planner *P)
{
    const fa_tape *t = P->t;
    int err = FA_OK;
    P->cur.m0 = 0;
    for (int64_t i = 0; i < t->nrec && !err; ) {
        const fa_rec *p = &t->rec[i];
        const int64_t step = (p->flags & FA_RANGED) ? 2 : 1;
        fmem q;
        if (as_member(P, i, &q)) {
            err = add_member(P, &q);
        } else {
            err = close_chain(P);
            /* the record may start the next chain */
            if (!err && as_member(P, i, &q) && q.kind != K_SUM) err = add_member(P, &q);
        }
        i += step;
    }
    if (!err) err = close_chain(P);
    return err;
}

/* ---- which member results are live ------------------------------------------------- */

/* Members sorted by result slot (recording allocates increasingly, so they are); mark
 * those whose result overlaps [s, s+len). */
static void mark(fmem *m, int64_t nmem, int64_t s, int64_t len)
{
    int64_t lo = 0, hi = nmem;
    while (lo < hi) {                      /* first member ending after s */
        int64_t mid = lo + (hi - lo) / 2;
        if (m[mid].r + m[mid].rlen <= s) lo = mid + 1; else hi = mid;
    }
    for (int64_t j = lo; j < nmem && m[j].r < s + len; j++) m[j].live = 1;
}

/* The reads of every record outside chain membership; 0 if a record's reads are not known
 * here (linear algebra, callbacks): the tape is then not fused. */
static int mark_reads(const planner *P, fmem *m, int64_t nmem)
{
    const fa_tape *t = P->t;
    int64_t c = 0;
    for (int64_t i = 0; i < t->nrec; ) {
        const fa_rec *p = &t->rec[i], *e = p + 1;
        if (p->op == FA_EXT) { i++; continue; }
        while (c < P->nc && P->c[c].end <= i) c++;
        const fmem *self = NULL;           /* record i as a member of chain c */
        if (c < P->nc && P->c[c].first <= i)
            for (int64_t j = 0; j < P->c[c].nm; j++)
                if (m[P->c[c].m0 + j].rec == i) self = &m[P->c[c].m0 + j];
        const int kind = fa_op_table[p->op].kind;
        if (!(p->flags & FA_RANGED)) {
            if (kind != FA_KIND_UNARY && kind != FA_KIND_BINARY && kind != FA_KIND_GUARD)
                return 0;
            mark(m, nmem, p->a, 1);
            if (kind != FA_KIND_UNARY) mark(m, nmem, p->b, 1);
            i++;
            continue;
        }
        if (i + 1 >= t->nrec) return 0;
        if (kind == FA_KIND_UNARY || kind == FA_KIND_BINARY) {
            if (!self || self->ca != O_INT) mark(m, nmem, p->a, e->a ? e->r : 1);
            if (kind == FA_KIND_BINARY && (!self || self->cb != O_INT))
                mark(m, nmem, p->b, e->b ? e->r : 1);
        } else switch (p->op) {
        case FA_GATHER:
            if (p->a < 0 || p->a + (int64_t)e->r > t->nix) return 0;
            for (int64_t k = 0; k < e->r; k++) mark(m, nmem, t->ix[p->a + k], 1);
            break;
        case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN: case FA_CUMSUM:
            if (!self) mark(m, nmem, p->a, (int64_t)e->r * e->a);
            break;
        case FA_MATMUL:
            mark(m, nmem, p->a, (int64_t)e->r * e->a);
            mark(m, nmem, p->b, (int64_t)e->a * e->b);
            break;
        default:
            return 0;
        }
        i += 2;
    }
    return 1;
}

int fa_fuse(const fa_tape *t, const int32_t *keep, int64_t nkeep, int64_t min_n,
            fa_fuse_plan **out, fa_fuse_stats *st)
{
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (t->ncb) return FA_OK;
    planner P;
    memset(&P, 0, sizeof P);
    P.t = t;
    P.min_n = min_n;
    int err = find_chains(&P);
    if (err || P.nc == 0) goto fail;
    for (int64_t j = 1; j < P.nmem; j++)   /* results increase along the tape */
        if (P.m[j].r < P.m[j - 1].r + P.m[j - 1].rlen) goto fail;
    if (!mark_reads(&P, P.m, P.nmem)) goto fail;
    for (int64_t k = 0; k < nkeep; k++) mark(P.m, P.nmem, keep[k], 1);
    fa_fuse_plan *plan = (fa_fuse_plan *)calloc(1, sizeof *plan);
    if (!plan) { err = FA_ENOMEM; goto fail; }
    plan->nrec = t->nrec;
    plan->c = P.c; plan->nc = P.nc;
    plan->m = P.m; plan->nmem = P.nmem;
    st->words_after = t->nrec;
    for (int64_t c = 0; c < P.nc; c++) {
        const fchain *C = &P.c[c];
        if (C->nm > plan->maxm) plan->maxm = C->nm;
        st->chains++;
        st->records += C->nm;
        st->words_after -= (C->end - C->first) - 2;
        for (int64_t j = 0; j < C->nm; j++) {
            const fmem *q = &P.m[C->m0 + j];
            st->live += q->live && q->kind != K_SUM;
            st->sums += q->kind == K_SUM;
        }
    }
    *out = plan;
    return FA_OK;
fail:
    free(P.m);
    free(P.c);
    return err;
}

void fa_fuse_free(fa_fuse_plan *p)
{
    if (!p) return;
    free(p->m);
    free(p->c);
    free(p);
}

int64_t fa_fuse_count(const fa_fuse_plan *p) { return p ? p->nc : 0; }

int fa_fuse_chain(const fa_fuse_plan *p, int64_t c, int64_t *first, int64_t *end,
                  int64_t *nmembers, uint8_t *live, int64_t cap)
{
    if (!p || c < 0 || c >= p->nc) return FA_EARG;
    const fchain *C = &p->c[c];
    *first = C->first; *end = C->end; *nmembers = C->nm;
    for (int64_t j = 0; j < C->nm && j < cap; j++) live[j] = p->m[C->m0 + j].live;
    return FA_OK;
}

/* ---- one chain over its tiles (the element loops: elem.h) --------------------------- */

typedef struct {
    const fa_tape *t;
    const fchain *C;
    const fmem *M;
    int64_t k0, L;
    const double *val[FA_FUSE_MAXM];   /* this tile's values of each member */
} tile;

/* Ops whose value is one correctly rounded IEEE operation: fastad's own loop gives numpy's
 * bits, and inlined in a tile it is faster than the call (numpy's square is not even a SIMD
 * loop: it took a fifth of the fused Rosenbrock's time).  The same set native code
 * compiles in fused chains (_codegen_fuse.EXACT). */
static int exact(int op)
{
    switch (op) {
    case FA_ADD: case FA_SUBTRACT: case FA_MULTIPLY: case FA_DIVIDE: case FA_SQUARE:
    case FA_SQRT:
        return 1;
    default:
        return 0;
    }
}

/* an operand's values in this tile, and its stride */
static const double *opnd(const tile *T, int cls, int32_t s, int32_t mi, const double *v,
                          int64_t *stride)
{
    *stride = cls != O_BC;
    if (cls == O_INT) return T->val[mi];
    return cls == O_EXT ? v + s + T->k0 : v + s;
}

/* member q's two operands in this tile and their strides (a unary op's second is its
 * first) */
static void operands(const tile *T, const fmem *q, const double *v, const double **A,
                     int64_t *sa, const double **B, int64_t *sb)
{
    *A = opnd(T, q->ca, q->a, q->ia, v, sa);
    if (q->unary) { *B = *A; *sb = *sa; }
    else *B = opnd(T, q->cb, q->b, q->ib, v, sb);
}

/* The tile's values of every member but the SUM: written to v for live members when
 * `write`, else read back from v for them; computed into buf for the others. */
static void tile_values(tile *T, double *v, double *buf, int write)
{
    const int vec_n = T->C->n >= FA_VEC_MIN;
    for (int64_t j = 0; j < T->C->nm; j++) {
        const fmem *q = &T->M[j];
        if (q->kind == K_SUM) continue;
        double *out = q->live ? v + q->r + T->k0 : buf + j * FA_FUSE_TILE;
        T->val[j] = out;
        if (q->live && !write) continue;
        if (q->kind == K_GATHER) {
            const int32_t *ix = T->t->ix + q->a + T->k0;
            for (int64_t k = 0; k < T->L; k++) out[k] = v[ix[k]];
            continue;
        }
        int64_t sa, sb;
        const double *A, *B;
        operands(T, q, v, &A, &sa, &B, &sb);
        fa_elem_fwd(q->op, vec_n && !exact(q->op) && fa_vec_loops[q->op].fn != NULL, T->L, A,
                    sa, B, sb, out);
    }
}

static const fmem *sum_member(const fchain *C, const fmem *M)
{
    return M[C->nm - 1].kind == K_SUM ? &M[C->nm - 1] : NULL;
}

static void chain_fwd(const fa_tape *t, const fa_fuse_plan *P, const fchain *C, double *v,
                      double *buf)
{
    tile T;
    T.t = t; T.C = C; T.M = P->m + C->m0;
    const fmem *S = sum_member(C, T.M);
    double acc[FA_LANES] = {0.0};     /* the SUM in lanes (reduce.h), across the tiles */
    for (T.k0 = 0; T.k0 < C->n; T.k0 += FA_FUSE_TILE) {
        T.L = C->n - T.k0 < FA_FUSE_TILE ? C->n - T.k0 : FA_FUSE_TILE;
        tile_values(&T, v, buf, 1);
        if (S) fa_lanes_add(acc, T.val[S->ia], T.L);
    }
    if (S) v[S->r] = fa_lanes_total(acc);
}

static void chain_tan(const fa_tape *t, const fa_fuse_plan *P, const fchain *C,
                      const double *v, double *tan, double *buf)
{
    tile T;
    T.t = t; T.C = C; T.M = P->m + C->m0;
    const fmem *S = sum_member(C, T.M);
    double *tbuf = buf + P->maxm * FA_FUSE_TILE;
    const double *tv[FA_FUSE_MAXM];
    double acc[FA_LANES] = {0.0};     /* the SUM's tangent in lanes, as its value */
    double az[FA_FUSE_TILE];
    for (T.k0 = 0; T.k0 < C->n; T.k0 += FA_FUSE_TILE) {
        T.L = C->n - T.k0 < FA_FUSE_TILE ? C->n - T.k0 : FA_FUSE_TILE;
        tile_values(&T, (double *)v, buf, 0);     /* reads v only: live values exist */
        for (int64_t j = 0; j < C->nm; j++) {
            const fmem *q = &T.M[j];
            if (q->kind == K_SUM) {
                const double *x = tv[q->ia];
                for (int64_t k = 0; k < T.L; k++) az[k] = FA_AZ(x[k], 1.0);
                fa_lanes_add(acc, az, T.L);
                continue;
            }
            double *out = q->live ? tan + q->r + T.k0 : tbuf + j * FA_FUSE_TILE;
            tv[j] = out;
            if (q->kind == K_GATHER) {
                const int32_t *ix = t->ix + q->a + T.k0;
                for (int64_t k = 0; k < T.L; k++) out[k] = tan[ix[k]];
                continue;
            }
            int64_t sa, sb;
            const double *A, *B;
            operands(&T, q, v, &A, &sa, &B, &sb);
            const double *TA = q->ca == O_INT ? tv[q->ia] : q->ca == O_EXT ? tan + q->a + T.k0
                                                                           : tan + q->a;
            const double *TB = TA;
            if (!q->unary) TB = q->cb == O_INT ? tv[q->ib] : q->cb == O_EXT ? tan + q->b + T.k0 : tan + q->b;
            fa_elem_tan(q->op, T.L, A, sa, B, sb, T.val[j], TA, TB, out);
        }
    }
    if (S) tan[S->r] = fa_lanes_total(acc);
}

/* An operand's adjoint target in this tile: a member's buffer, the outside range in adj,
 * or NULL for a broadcast slot (summed in acc, added after the last tile). */
static double *target(const tile *T, int cls, int32_t s, int32_t mi, double *adj,
                      double *const *gb)
{
    if (cls == O_INT) return gb[mi];
    return cls == O_EXT ? adj + s + T->k0 : NULL;
}

static void chain_rev(const fa_tape *t, const fa_fuse_plan *P, const fchain *C,
                      const double *v, double *adj, double *buf)
{
    tile T;
    T.t = t; T.C = C; T.M = P->m + C->m0;
    const fmem *S = sum_member(C, T.M);
    double *gbase = buf + P->maxm * FA_FUSE_TILE;
    double *gb[FA_FUSE_MAXM];
    double acc[2 * FA_FUSE_MAXM];     /* broadcast operands' adjoints, per member and side */
    memset(acc, 0, sizeof acc);
    double w = 0.0;
    if (S && !(t->rec[S->rec].flags & FA_A_PASSIVE)) w = adj[S->r];
    for (T.k0 = 0; T.k0 < C->n; T.k0 += FA_FUSE_TILE) {
        T.L = C->n - T.k0 < FA_FUSE_TILE ? C->n - T.k0 : FA_FUSE_TILE;
        tile_values(&T, (double *)v, buf, 0);
        for (int64_t j = 0; j < C->nm; j++) {
            const fmem *q = &T.M[j];
            gb[j] = gbase + j * FA_FUSE_TILE;
            if (q->kind == K_SUM) continue;
            if (q->live) memcpy(gb[j], adj + q->r + T.k0, (size_t)T.L * sizeof(double));
            else memset(gb[j], 0, (size_t)T.L * sizeof(double));
        }
        if (S && w != 0.0) { double *x = gb[S->ia]; for (int64_t k = 0; k < T.L; k++) x[k] += w; }
        for (int64_t j = C->nm - 1; j >= 0; j--) {
            const fmem *q = &T.M[j];
            if (q->kind == K_SUM) continue;
            const uint8_t fl = t->rec[q->rec].flags;
            if (q->kind == K_GATHER) {
                if (fl & FA_A_PASSIVE) continue;
                const int32_t *ix = t->ix + q->a + T.k0;
                for (int64_t k = 0; k < T.L; k++) adj[ix[k]] += gb[j][k];
                continue;
            }
            int64_t sa, sb;
            const double *A, *B;
            operands(&T, q, v, &A, &sa, &B, &sb);
            if (!(fl & FA_A_PASSIVE))
                fa_elem_rev_a(q->op, T.L, A, sa, B, sb, T.val[j], gb[j],
                              target(&T, q->ca, q->a, q->ia, adj, gb), &acc[2 * j]);
            if (!q->unary && !(fl & FA_B_PASSIVE))
                fa_elem_rev_b(q->op, T.L, A, sa, B, sb, T.val[j], gb[j],
                              target(&T, q->cb, q->b, q->ib, adj, gb), &acc[2 * j + 1]);
        }
        for (int64_t j = 0; j < C->nm; j++)   /* a live result keeps its adjoint */
            if (T.M[j].live && T.M[j].kind != K_SUM)
                memcpy(adj + T.M[j].r + T.k0, gb[j], (size_t)T.L * sizeof(double));
    }
    for (int64_t j = C->nm - 1; j >= 0; j--) {
        const fmem *q = &T.M[j];
        if (q->kind != K_EL) continue;
        const uint8_t fl = t->rec[q->rec].flags;
        if (q->ca == O_BC && !(fl & FA_A_PASSIVE)) adj[q->a] += acc[2 * j];
        if (!q->unary && q->cb == O_BC && !(fl & FA_B_PASSIVE)) adj[q->b] += acc[2 * j + 1];
    }
}

/* ---- the sweeps -------------------------------------------------------------------- */

void fa_fused_zero(const fa_tape *t, double *adj)
{
    fa_fused_zero_from(t, adj, 0);
}

void fa_fused_zero_from(const fa_tape *t, double *adj, int64_t from)
{
    const fa_fuse_plan *P = (const fa_fuse_plan *)t->fused;
    if (from < 0) from = 0;
    if (from >= t->nslot) return;
    if (!P || P->nrec != t->nrec || !P->nc) {
        memset(adj + from, 0, (size_t)(t->nslot - from) * sizeof(double));
        return;
    }
    int64_t s = from;                    /* members are sorted by result slot */
    for (int64_t j = 0; j < P->nmem; j++) {
        const fmem *q = &P->m[j];
        if (q->live || q->kind == K_SUM) continue;
        if (q->r > s) memset(adj + s, 0, (size_t)(q->r - s) * sizeof(double));
        if (q->r + q->rlen > s) s = q->r + q->rlen;
    }
    if (t->nslot > s) memset(adj + s, 0, (size_t)(t->nslot - s) * sizeof(double));
}

static const fa_fuse_plan *plan_of(const fa_tape *t)
{
    const fa_fuse_plan *P = (const fa_fuse_plan *)t->fused;
    return P && P->nrec == t->nrec && P->nc ? P : NULL;
}

/* tile buffers: values and tangents or adjoints of the longest chain's members */
static double *buffers(const fa_fuse_plan *P)
{
    return (double *)malloc((size_t)(2 * P->maxm * FA_FUSE_TILE) * sizeof(double));
}

int64_t fa_fused_forward(const fa_tape *t, double *v)
{
    const fa_fuse_plan *P = plan_of(t);
    double *buf = P ? buffers(P) : NULL;
    int64_t c = 0;
    for (int64_t i = 0; i < t->nrec; ) {
        /* without buffers every record runs: live results are the same, and tangent and
         * reverse sweeps recompute the rest */
        if (buf && c < P->nc && i == P->c[c].first) {
            chain_fwd(t, P, &P->c[c], v, buf);
            i = P->c[c++].end;
            continue;
        }
        if (fa_fwd(&t->rec[i], v, t->ix)) { free(buf); return i; }
        i++;
    }
    free(buf);
    return -1;
}

/* Without buffers, a chain's records rerun forward (writing its intermediates into v,
 * which the caller owns for this sweep) and then sweep as recorded. */
static void chain_unfused_values(const fa_tape *t, const fchain *C, const double *v)
{
    for (int64_t i = C->first; i < C->end; i++) fa_fwd(&t->rec[i], (double *)v, t->ix);
}

void fa_fused_tangent(const fa_tape *t, const double *v, double *tan)
{
    const fa_fuse_plan *P = plan_of(t);
    double *buf = P ? buffers(P) : NULL;
    int64_t c = 0;
    for (int64_t i = 0; i < t->nrec; ) {
        if (P && c < P->nc && i == P->c[c].first) {
            if (buf) {
                chain_tan(t, P, &P->c[c], v, tan, buf);
            } else {
                chain_unfused_values(t, &P->c[c], v);
                for (int64_t k = P->c[c].first; k < P->c[c].end; k++) fa_tan(&t->rec[k], v, tan, t->ix);
            }
            i = P->c[c++].end;
            continue;
        }
        fa_tan(&t->rec[i], v, tan, t->ix);
        i++;
    }
    free(buf);
}

void fa_fused_reverse(const fa_tape *t, const double *v, double *adj)
{
    const fa_fuse_plan *P = plan_of(t);
    double *buf = P ? buffers(P) : NULL;
    int64_t c = P ? P->nc - 1 : -1;
    for (int64_t i = t->nrec - 1; i >= 0; ) {
        if (c >= 0 && i == P->c[c].end - 1) {
            if (buf) {
                chain_rev(t, P, &P->c[c], v, adj, buf);
            } else {
                chain_unfused_values(t, &P->c[c], v);
                for (int64_t k = P->c[c].end - 1; k >= P->c[c].first; k--) fa_rev(&t->rec[k], v, adj, t->ix);
            }
            i = P->c[c--].first - 1;
            continue;
        }
        fa_rev(&t->rec[i], v, adj, t->ix);
        i--;
    }
    free(buf);
}
