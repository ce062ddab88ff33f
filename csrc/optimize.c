/*
 * optimize.c -- tape transformations run once per recorded tape (see docs/design.md,
 * "The optimizer").
 *
 * Loop rolling.  A Python `for` loop records the same block of P scalar records T times.
 * fa_optimize finds such runs and rewrites them with the record kinds the sweeps already
 * know, so every sweep, the tangent sweep and the recorded adjoints work unchanged on the
 * result:
 *   - a position of the block whose iterations do not depend on each other becomes one
 *     ranged elementwise record over the T iterations (operands: a range of an earlier
 *     position, a loop-invariant slot broadcast, a contiguous range, or a GATHER of the
 *     slots the iterations read when they advance by another stride);
 *   - an accumulation (s = s + t, s = s * t, m = maximum(m, t), m = minimum(m, t), or a
 *     chain of them in one iteration, s = s + t + u) becomes one SUM / PROD / MAX / MIN
 *     reduction over [init, c_0, ..., c_{T-1}], c_j the iteration's terms combined
 *     (t_j + u_j), in the loop's order;
 *   - guards keep one scalar record per iteration, each with the outcome seen while
 *     tracing (outcomes may vary between iterations; in a LOOP record they may not).
 * A run is rolled only if it is exactly periodic: same ops and flags, operands that
 * are results of the same iteration, the previous iteration (accumulations only), or slots
 * outside the run advancing by a constant stride.  Anything else (a stride that changes, a
 * read of an element written two iterations back, a true recurrence, a partial sum used
 * elsewhere) stays as recorded.
 *
 * Loops of loops: the loop around a run found is tried as well (find_runs), and rolled
 * with its inner loops unrolled in its body when it covers more.
 *
 * The pass builds a new tape through the recording API (tape.c), which evaluates each new
 * record with the replay kernels, and returns the map old slot -> new slot.
 */
#include <stdlib.h>
#include <string.h>
#include "optimize.h"
#include "loop.h"
#include "linalg.h"      /* FA_IS_LINALG, fa_linalg_rec: linear-algebra records renamed */

#define MAXP 512          /* longest loop body looked for, in records */
#define MINT 3            /* fewest iterations worth rolling */
#define NCAND 4           /* candidate periods tried per record */
#define WORK_PER_REC 64   /* detection budget: comparisons per record of the tape */
#define VEC_MIN 16        /* iterations from which an inner loop's ranged records replay
                           * faster than the same records one by one in a LOOP record */

/* operand classes inside a run */
enum { C_EXT = 0, C_INT = 1, C_CARRY = 2 };

#define DROPPED (-2)      /* map entry of a partial value a rolled accumulation no longer has */

typedef struct {
    uint8_t cls;       /* C_EXT, C_INT, C_CARRY */
    int32_t q;         /* C_INT / C_CARRY: the position it reads */
    int64_t s0, d;     /* C_EXT: slot in iteration 0 and stride per iteration */
} opnd;

typedef struct {
    int64_t start, P, T;
    int64_t k0, pr;    /* index of the run's first scalar result; results per iteration */
    opnd *ops;         /* 2 per position */
    int32_t *red;      /* 3 per position: its role (ACC_*), which operand is its term, and
                        * the next position of its accumulation chain (the end: the head) */
    int loop;          /* 1: a true recurrence, kept in order as a LOOP record (loop.h) */
} run;

typedef struct {
    const fa_tape *t;
    /* the results of scalar records, the only slots a run writes: their slots (increasing,
     * since recording only appends), the records, and the last record reading each
     * (INT64_MAX: an output).  Kept per scalar result, not per slot, so a vectorized tape
     * with millions of slots costs nothing here. */
    int32_t *rslot;
    int64_t *rrec, *rlast;
    int64_t nres;
    int32_t *rindex;     /* slot -> index among the results (-1: none), when the tape is
                          * mostly scalar (then it costs little); else NULL: binary search */
    int64_t work;        /* detection budget left */
    const int32_t *keep; /* the slots the caller reads (they count as used at the end) */
    int64_t nkeep;
    int uses;            /* rlast filled (scan_uses): only a candidate accumulation needs it */
    int64_t *reads;      /* scratch of validate: MAXP counts */
} ctx;

static int is_scalar_rec(const fa_rec *p)
{
    if (p->flags & FA_RANGED || p->op == FA_EXT) return 0;
    int k = fa_op_table[p->op].kind;
    return k == FA_KIND_UNARY || k == FA_KIND_BINARY || k == FA_KIND_GUARD;
}

static int arity(int op) { return fa_op_table[op].kind == FA_KIND_UNARY ? 1 : 2; }

/* A record's flags but a guard's outcome: what must repeat from iteration to iteration.
 * Guard outcomes may vary (a rolled run keeps one guard per iteration with its own
 * outcome); only a LOOP record needs them equal, see uniform_guards. */
#define SHAPE(p) ((p)->flags & ~FA_TRUE)

/* ---- slot bookkeeping ------------------------------------------------------------- */

/* first k with rslot[k] >= s */
static int64_t lower(const ctx *C, int64_t s)
{
    int64_t lo = 0, hi = C->nres;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (C->rslot[mid] < s) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* index of slot s among the scalar results, or -1 */
static int64_t result_index(const ctx *C, int64_t s)
{
    if (C->rindex) return C->rindex[s];
    int64_t k = lower(C, s);
    return k < C->nres && C->rslot[k] == s ? k : -1;
}

/* record i reads the n slots from s */
static void use(ctx *C, int64_t s, int64_t n, int64_t i)
{
    if (n == 1) {
        int64_t k = result_index(C, s);
        if (k >= 0 && C->rlast[k] < i) C->rlast[k] = i;
        return;
    }
    for (int64_t k = lower(C, s); k < C->nres && C->rslot[k] < s + n; k++)
        if (C->rlast[k] < i) C->rlast[k] = i;
}

static int scalar_result(const fa_rec *p)
{
    if (p->flags & FA_RANGED || p->op == FA_EXT) return 0;
    int k = fa_op_table[p->op].kind;
    return k == FA_KIND_UNARY || k == FA_KIND_BINARY;
}

/* Operand range lengths of a linear-algebra record (linalg.h): A is n x n (SVD, QR:
 * m x n) from a, B is n x k from b (SOLVE, TRSOLVE only; the others have no b); BETAINC
 * reads (a, b) as 2n slots from a and x as n slots from b. */
static void linalg_sizes(const fa_rec *p, int64_t *na, int64_t *nb)
{
    const fa_rec *e = p + 1;
    if (p->op == FA_BETAINC) { *na = 2 * (int64_t)e->r; *nb = e->r; return; }
    const int rect = p->op == FA_SVD || p->op == FA_QR;
    *na = rect ? (int64_t)e->r * e->a : (int64_t)e->r * e->r;
    *nb = p->op == FA_SOLVE || p->op == FA_TRSOLVE ? (int64_t)e->r * e->a : 0;
}

/* The scalar results (at most one per record). */
static int scan_slots(ctx *C)
{
    const fa_tape *t = C->t;
    const int64_t n = t->nrec;
    size_t cap = (size_t)(n ? n : 1);
    C->rslot = (int32_t *)malloc(cap * sizeof(int32_t));
    C->rrec = (int64_t *)malloc(cap * sizeof(int64_t));
    if (!C->rslot || !C->rrec) return FA_ENOMEM;
    for (int64_t i = 0; i < n; i++)
        if (scalar_result(&t->rec[i])) {
            C->rslot[C->nres] = t->rec[i].r;
            C->rrec[C->nres++] = i;
        }
    if (t->nslot <= 4 * C->nres + 65536) {
        C->rindex = (int32_t *)malloc((size_t)(t->nslot ? t->nslot : 1) * sizeof(int32_t));
        if (!C->rindex) return FA_ENOMEM;
        memset(C->rindex, 0xff, (size_t)t->nslot * sizeof(int32_t));     /* all -1 */
        for (int64_t k = 0; k < C->nres; k++) C->rindex[C->rslot[k]] = (int32_t)k;
    }
    return FA_OK;
}

/* The last record reading each scalar result (rlast); the outputs count as used at the
 * end.  Run when a candidate accumulation first needs it (a tape of recurrences only never
 * does).  Out of memory: rlast stays NULL and every result counts as read after any run,
 * so nothing is rolled into a reduction. */
static void scan_uses(ctx *C)
{
    const fa_tape *t = C->t;
    C->uses = 1;
    C->rlast = (int64_t *)malloc((size_t)(C->nres ? C->nres : 1) * sizeof(int64_t));
    if (!C->rlast) return;
    for (int64_t k = 0; k < C->nres; k++) C->rlast[k] = -1;
    for (int64_t i = 0; i < t->nrec && C->nres; i++) {
        const fa_rec *p = &t->rec[i];
        if (p->op == FA_EXT) continue;
        const int kind = fa_op_table[p->op].kind;
        if (!(p->flags & FA_RANGED)) {
            use(C, p->a, 1, i);
            if (kind != FA_KIND_UNARY) use(C, p->b, 1, i);
            continue;
        }
        const fa_rec *e = p + 1;
        int64_t na = 1, nb = 0;
        switch (p->op) {
        case FA_GATHER:
            na = 0;
            for (int64_t k = 0; k < e->r; k++) use(C, t->ix[p->a + k], 1, i);
            break;
        case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN: case FA_CUMSUM:
            na = (int64_t)e->r * e->a; break;
        case FA_MATMUL: na = (int64_t)e->r * e->a; nb = (int64_t)e->a * e->b; break;
        case FA_CALLBACK: na = e->r; break;
        default:
            if (FA_IS_LINALG(p->op)) { linalg_sizes(p, &na, &nb); break; }
            na = e->a ? e->r : 1;
            if (kind == FA_KIND_BINARY) nb = e->b ? e->r : 1;
        }
        if (na) use(C, p->a, na, i);
        if (nb) use(C, p->b, nb, i);
    }
    for (int64_t k = 0; k < C->nkeep; k++) {
        int64_t j = result_index(C, C->keep[k]);
        if (j >= 0) C->rlast[j] = INT64_MAX;
    }
}

/* index of the first scalar result written at or after record i */
static int64_t first_result_at(const ctx *C, int64_t i)
{
    int64_t lo = 0, hi = C->nres;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (C->rrec[mid] < i) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* last record reading scalar result slot s */
static int64_t last_use(ctx *C, int64_t s)
{
    if (!C->uses) scan_uses(C);
    int64_t k = result_index(C, s);
    return k < 0 || !C->rlast ? INT64_MAX : C->rlast[k];
}

/* ---- detection -------------------------------------------------------------------- */

/* Class of operand slot s of a record of iteration j of run R.  Returns 0 if the slot was
 * written by an iteration before j-1.  Slots below the run's first result are outside it
 * at once; otherwise only the results of the last two iterations are searched. */
static int classify(const ctx *C, const run *R, int64_t j, int64_t s, opnd *o)
{
    o->cls = C_EXT; o->q = -1; o->s0 = s; o->d = 0;
    if (R->k0 >= C->nres || s < C->rslot[R->k0]) return 1;
    if (C->rindex) {                            /* direct */
        const int64_t k = C->rindex[s];
        if (k < 0 || C->rrec[k] < R->start) return 1;
        const int64_t w = C->rrec[k], it = (w - R->start) / R->P;
        o->q = (int32_t)((w - R->start) % R->P);
        if (it == j) { o->cls = C_INT; return 1; }
        if (it == j - 1) { o->cls = C_CARRY; return 1; }
        return 0;
    }
    int64_t lo = R->k0 + (j >= 1 ? (j - 1) * R->pr : 0), hi = R->k0 + (j + 1) * R->pr, k = -1;
    if (hi > C->nres) hi = C->nres;
    if (lo < hi && s >= C->rslot[lo]) {
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (C->rslot[mid] < s) lo = mid + 1; else hi = mid;
        }
        if (lo < C->nres && C->rslot[lo] == s) k = lo;
        if (k < 0) return 1;                      /* a constant made during the loop */
    } else {
        return result_index(C, s) < 0;            /* a result of an earlier iteration: no */
    }
    const int64_t w = C->rrec[k];
    if (w < R->start) return 1;
    const int64_t it = (w - R->start) / R->P;
    o->q = (int32_t)((w - R->start) % R->P);
    if (it == j) { o->cls = C_INT; return 1; }
    if (it == j - 1) { o->cls = C_CARRY; return 1; }
    return 0;
}

/* Does iteration j (>= 1) repeat the run's pattern (ops[] filled from iterations 0, 1)? */
static int iteration_matches(ctx *C, run *R, int64_t j)
{
    const fa_rec *base = &C->t->rec[R->start];
    for (int64_t q = 0; q < R->P; q++) {
        const fa_rec *p0 = &base[q], *p = &base[j * R->P + q];
        C->work--;
        if (p->op != p0->op || SHAPE(p) != SHAPE(p0) || !is_scalar_rec(p)) return 0;
        const int na = fa_op_table[p->op].kind == FA_KIND_UNARY ? 1 : 2;
        for (int k = 0; k < na; k++) {
            opnd o, *want = &R->ops[2 * q + k];
            if (!classify(C, R, j, k ? p->b : p->a, &o)) return 0;
            if (j == 1) {
                /* iteration 0 read the initial value where later ones read the carry */
                opnd o0;
                classify(C, R, 0, k ? p0->b : p0->a, &o0);
                if (o.cls == C_CARRY ? o0.cls != C_EXT
                    : (o.cls != o0.cls || (o.cls == C_INT && o.q != o0.q))) return 0;
                if (o.cls == C_EXT) { o.d = o.s0 - o0.s0; o.s0 = o0.s0; }
                else if (o.cls == C_CARRY) o.s0 = o0.s0;    /* the initial value */
                *want = o;
                continue;
            }
            if (o.cls != want->cls) return 0;
            if (o.cls == C_EXT ? o.s0 != want->s0 + j * want->d : o.q != want->q) return 0;
        }
    }
    return 1;
}

/* Is iteration j (>= 3) iteration j-1 with every slot moved by the step it took from
 * iteration j-2 to j-1 (results: also from j-3 to j-2)?  If iterations up to j-1 matched,
 * every operand of iteration j then keeps its class: one reading a result of the same or
 * the previous iteration moves as that result does (the result slots' spacing being the
 * same over iterations j-3 .. j), an outside slot keeps its stride.  An outside slot that
 * moves must stay below the run's first result, or it might reach a result of an earlier
 * iteration.  A few compares per record and no lookups; a no is not final, the caller then
 * asks iteration_matches (iteration 0's slots are often spaced differently: constants
 * made once, in the first iteration). */
static int iteration_shifted(ctx *C, const run *R, int64_t j)
{
    const int64_t P = R->P;
    const fa_rec *cur = &C->t->rec[R->start + j * P], *prev = cur - P, *pp = prev - P;
    const fa_rec *p3 = pp - P;
    const int64_t lo = R->k0 < C->nres ? C->rslot[R->k0] : INT64_MAX;
    C->work -= P;
    for (int64_t q = 0; q < P; q++) {
        const int32_t dr = cur[q].r - prev[q].r;
        if (cur[q].op != prev[q].op || SHAPE(&cur[q]) != SHAPE(&prev[q])
            || dr != prev[q].r - pp[q].r || dr != pp[q].r - p3[q].r)
            return 0;
        const int na = arity(cur[q].op);
        for (int k = 0; k < na; k++) {
            const int64_t s = k ? cur[q].b : cur[q].a, s1 = k ? prev[q].b : prev[q].a;
            const int64_t d = s - s1;
            if (d != s1 - (k ? pp[q].b : pp[q].a)) return 0;
            if (d && R->ops[2 * q + k].cls == C_EXT && s >= lo) return 0;
        }
    }
    return 1;
}

static int reduction_op(int op)
{
    switch (op) {
    case FA_ADD: return FA_SUM;
    case FA_MULTIPLY: return FA_PROD;
    case FA_MAXIMUM: return FA_MAX;
    case FA_MINIMUM: return FA_MIN;
    default: return -1;
    }
}

enum { ACC_NONE = 0, ACC_LINK = 1, ACC_END = 2 };
#define ROLE(R, q) ((R)->red[3 * (q)])
#define TERM(R, q) ((R)->red[3 * (q) + 1])
#define NEXT(R, q) ((R)->red[3 * (q) + 2])

/* The position after `cur` in an accumulation chain of op `op`: the one that reads cur's
 * result (or -1).  Sets TERM of it to its other operand. */
static int64_t chain_next(run *R, const fa_rec *base, int64_t cur, int op)
{
    for (int64_t q = cur + 1; q < R->P; q++) {
        if (base[q].op != op) continue;
        for (int k = 0; k < 2; k++)
            if (R->ops[2 * q + k].cls == C_INT && R->ops[2 * q + k].q == cur) {
                TERM(R, q) = 1 - k;
                return q;
            }
    }
    return -1;
}

/* Can the run be rolled?  Every carried value must be an accumulation: a chain of records
 * of one reduction op, head reading the end's previous value, each link read by the next
 * one only, and no partial value read after the run (the end's last value excepted). */
static int validate(ctx *C, run *R, int check_uses)
{
    const int64_t P = R->P, end = R->start + R->T * P;
    const fa_rec *base = &C->t->rec[R->start];
    int64_t *reads = C->reads;
    int ok = 1;
    memset(reads, 0, (size_t)P * sizeof(int64_t));
    memset(R->red, 0, (size_t)(3 * P) * sizeof(int32_t));
    for (int64_t q = 0; q < P && ok; q++) {
        const int op = base[q].op;
        for (int k = 0; k < arity(op); k++) {
            const opnd *o = &R->ops[2 * q + k];
            if (o->cls == C_INT) reads[o->q]++;
            if (o->cls != C_CARRY) continue;
            reads[o->q]++;
            if (fa_op_table[op].kind == FA_KIND_GUARD || reduction_op(op) < 0 || ROLE(R, q)
                || R->ops[2 * q + 1 - k].cls == C_CARRY) { ok = 0; break; }
            /* the head: follow the chain to the end it reads */
            const int64_t last = o->q;
            int64_t cur = q;
            TERM(R, q) = 1 - k;
            while (ok && cur != last) {
                int64_t nx = chain_next(R, base, cur, op);
                if (nx < 0 || nx > last || ROLE(R, nx)) ok = 0;
                else { ROLE(R, cur) = ACC_LINK; NEXT(R, cur) = (int32_t)nx; cur = nx; }
            }
            if (!ok) break;
            ROLE(R, last) = ACC_END;
            NEXT(R, last) = (int32_t)q;
        }
    }
    /* a link is read once (by the next link), the end once (by the head, one back) */
    for (int64_t q = 0; q < P && ok; q++) {
        if (ROLE(R, q) == ACC_NONE) continue;
        if (reads[q] != 1) ok = 0;
        for (int64_t j = 0; j < R->T && ok && check_uses; j++) {
            if (ROLE(R, q) == ACC_END && j == R->T - 1) break;
            if (last_use(C, base[j * P + q].r) >= end) ok = 0;
        }
    }
    return ok;
}

/* ---- candidate periods ------------------------------------------------------------ */

/* Records compared together when looking for a period: a candidate period P at record i is
 * a distance to a later record whose WIN records have the same ops and flags as the WIN
 * from i.  WIN = 2 keeps every run of T >= 3 iterations findable (its windows repeat at
 * distance P whenever 2 <= (T-1) P), while a window is already much rarer than a single
 * op, so the candidates skip most repeats of an op inside one loop body. */
#define WIN 2

/* the key of record i: op and flags (SHAPE); a record no run can hold gets a key of its own */
static uint64_t rec_key(const fa_tape *t, int64_t i)
{
    const fa_rec *p = &t->rec[i];
    if (!is_scalar_rec(p)) return ~(uint64_t)i;
    return (uint64_t)p->op | ((uint64_t)SHAPE(p) << 8);
}

typedef struct { uint64_t h; int64_t last; } window_slot;

/* the table's slot for hash x (its own, or the empty one where it goes) */
static size_t window_find(const window_slot *tab, size_t cap, uint64_t x)
{
    size_t b = (size_t)x & (cap - 1);
    while (tab[b].last >= 0 && tab[b].h != x) b = (b + 1) & (cap - 1);
    return b;
}

/* The window chain, built forwards and lazily: next[i] is the next record whose window
 * hashes like record i's (or -1), known for every record the chain has passed (`front`)
 * and whose next one is before `front`.  The search needs next[] only up to MAXP records
 * past the record it tries, so the chain stops there, and a run found is skipped whole:
 * a tape that is one long loop hashes the first MAXP records, not all of them.  Equal
 * hashes of different windows only add a candidate that same_keys rejects.  The table of
 * the last record seen per hash is sized by the number of different windows (a loop has
 * few: it stays in L1), doubled when half full. */
typedef struct {
    const fa_tape *t;
    int64_t *next;
    window_slot *tab;
    size_t cap, used;
    int64_t front;
} chain;

static uint64_t window_hash(const fa_tape *t, int64_t i)
{
    uint64_t x = 0;
    for (int k = 0; k < WIN; k++)
        x = (x ^ (i + k < t->nrec ? rec_key(t, i + k) : 0)) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static int chain_open(chain *W, const fa_tape *t)
{
    memset(W, 0, sizeof *W);
    W->t = t;
    W->cap = 256;
    W->next = (int64_t *)malloc((size_t)(t->nrec ? t->nrec : 1) * sizeof(int64_t));
    W->tab = (window_slot *)malloc(W->cap * sizeof(window_slot));
    if (!W->next || !W->tab) return FA_ENOMEM;
    for (size_t b = 0; b < W->cap; b++) W->tab[b].last = -1;
    return FA_OK;
}

static void chain_close(chain *W) { free(W->next); free(W->tab); }

/* Extend the chain to the records before `to` (from `from` on, if it is behind that). */
static int chain_extend(chain *W, int64_t from, int64_t to)
{
    if (to > W->t->nrec) to = W->t->nrec;
    if (W->front < from) W->front = from;       /* records skipped: never tried again */
    for (int64_t i = W->front; i < to; i++) {
        const uint64_t x = window_hash(W->t, i);
        size_t b = window_find(W->tab, W->cap, x);
        if (W->tab[b].last < 0 && ++W->used > W->cap / 2) {
            window_slot *big = (window_slot *)malloc(2 * W->cap * sizeof(window_slot));
            if (!big) return FA_ENOMEM;
            for (size_t k = 0; k < 2 * W->cap; k++) big[k].last = -1;
            for (size_t k = 0; k < W->cap; k++)
                if (W->tab[k].last >= 0) big[window_find(big, 2 * W->cap, W->tab[k].h)] = W->tab[k];
            free(W->tab);
            W->tab = big;
            W->cap *= 2;
            b = window_find(W->tab, W->cap, x);
        }
        if (W->tab[b].last >= 0) W->next[W->tab[b].last] = i;
        W->tab[b].h = x;
        W->tab[b].last = i;
        W->next[i] = -1;
    }
    if (W->front < to) W->front = to;
    return FA_OK;
}

/* Do records [i, i+P) and [i+P, i+2P) have the same ops and flags (SHAPE)?  (cheap, first) */
static int same_keys(const fa_tape *t, int64_t i, int64_t P)
{
    for (int64_t q = 0; q < P; q++) {
        const fa_rec *a = &t->rec[i + q], *b = &t->rec[i + P + q];
        if (a->op != b->op || SHAPE(a) != SHAPE(b)) return 0;
    }
    return 1;
}

enum { TRY_NEXT = 0, TRY_FOUND = 1, TRY_STOP = 2 };

/* Have iteration j's guards the outcomes of iteration 0's?  (a LOOP record keeps one
 * outcome per body guard, loop.h) */
static int same_outcomes(const fa_tape *t, const run *R, int64_t j)
{
    const fa_rec *base = &t->rec[R->start], *it = base + j * R->P;
    for (int64_t q = 0; q < R->P; q++)
        if (it[q].flags != base[q].flags) return 0;
    return 1;
}

/* The iterations from the first of run R whose guards all have iteration 0's outcomes */
static int64_t uniform_guards(const fa_tape *t, const run *R)
{
    for (int64_t j = 1; j < R->T; j++)
        if (!same_outcomes(t, R, j)) return j;
    return R->T;
}

/* Try period P at record i: fills R (its ops and red: the caller's scratch) and says
 * whether a run was found, the next candidate should be tried, or none at i can work. */
static int try_period(ctx *C, int64_t i, int64_t P, run *R, int32_t *failed)
{
    const fa_tape *t = C->t;
    opnd *ops = R->ops;
    int32_t *red = R->red;
    memset(R, 0, sizeof *R);
    R->start = i; R->P = P; R->ops = ops; R->red = red;
    if (i + MINT * P > t->nrec) return TRY_STOP;       /* longer periods do not fit either */
    /* a structural failure at period P fails at its multiples too: stop at i */
    if (i >= P && failed[i - P] == P) { failed[i] = (int32_t)P; return TRY_STOP; }
    C->work -= 1;
    if (!same_keys(t, i, P)) return TRY_NEXT;
    R->k0 = first_result_at(C, i);
    for (int64_t q = i; q < i + P; q++) R->pr += scalar_result(&t->rec[q]);
    /* the operand classes are known after iteration 1: check the carried values'
     * structure before extending, so a recurrence costs two iterations, not T */
    if (!iteration_matches(C, R, 1)) return TRY_NEXT;
    /* carried values that are not accumulations: a true recurrence, which becomes
     * one LOOP record if it is periodic long enough (its first iteration peeled) */
    const int acc = validate(C, R, 0);
    /* a recurrence can only be a LOOP record: it ends where a guard's outcome changes */
    int64_t j = acc || same_outcomes(t, R, 1) ? 2 : 1;
    int outcome = j == 1;    /* stopped by an outcome, not by the structure: no memo */
    while (j > 1 && i + (j + 1) * P <= t->nrec && C->work > 0
           && ((j >= 3 && iteration_shifted(C, R, j)) || iteration_matches(C, R, j))) {
        if (!acc && !same_outcomes(t, R, j)) { outcome = 1; break; }
        j++;
    }
    R->T = j;
    if (!acc || R->T < MINT || !validate(C, R, 1)) {
        /* a LOOP record: up to where a guard's outcome first changes (the next run starts
         * there) */
        if (acc) R->T = uniform_guards(t, R);
        if (R->T < MINT + 1 || P > FA_LOOP_MAXP) {
            if (!acc && !outcome) { failed[i] = (int32_t)P; return TRY_STOP; }
            return TRY_NEXT;
        }
        R->loop = 1;
    }
    return TRY_FOUND;
}

/* R, its ops and red in fresh memory (R's own are scratch) */
static int keep_run(const run *R, run *out)
{
    *out = *R;
    out->ops = (opnd *)malloc((size_t)(2 * R->P) * sizeof(opnd));
    out->red = (int32_t *)malloc((size_t)(3 * R->P) * sizeof(int32_t));
    if (!out->ops || !out->red) { free(out->ops); free(out->red); return FA_ENOMEM; }
    memcpy(out->ops, R->ops, (size_t)(2 * R->P) * sizeof(opnd));
    memcpy(out->red, R->red, (size_t)(3 * R->P) * sizeof(int32_t));
    return FA_OK;
}

/* The period of the loop around the run `in` (a loop of loops): the distance from its
 * start to the first record at or after its end whose window has the start's records --
 * the same inner loop in the outer loop's next iteration.  0: none within MAXP. */
static int64_t outer_period(ctx *C, const run *in)
{
    const fa_tape *t = C->t;
    const int64_t s = in->start, end = s + in->T * in->P;
    for (int64_t m = end; m <= s + MAXP && m + WIN <= t->nrec; m++) {
        int same = 1;
        for (int k = 0; k < WIN && same; k++)
            same = t->rec[m + k].op == t->rec[s + k].op && SHAPE(&t->rec[m + k]) == SHAPE(&t->rec[s + k]);
        C->work--;
        if (same) return m - s;
    }
    return 0;
}

/* Find the runs, in order; returns their number or an error.  At each record the
 * candidate periods are tried nearest first and the first that makes a run is taken;
 * then the loop around it, if there is one that repeats the run's whole stretch, is tried
 * as well, and the one covering more records wins (loops of loops: the outer loop, its
 * inner loops unrolled in its body, when the body fits in MAXP records). */
static int64_t find_runs(ctx *C, run **out, int *err)
{
    const fa_tape *t = C->t;
    int64_t nruns = 0, cap = 0;
    run *runs = NULL, best;
    chain W;
    *err = chain_open(&W, t);
    opnd *ops = (opnd *)malloc(2 * MAXP * sizeof(opnd));
    int32_t *red = (int32_t *)malloc(3 * MAXP * sizeof(int32_t));
    /* failed[i] = P: a run from record i with period P repeated its records but carried a
     * value that is not an accumulation (a recurrence, or a rotation of the loop body that
     * cuts through a dependence).  The run from i + P is then the same rotation one
     * iteration later and is not tried again: a recurrence costs O(P) per iteration. */
    int32_t *failed = (int32_t *)calloc((size_t)(t->nrec ? t->nrec : 1), sizeof(int32_t));
    C->reads = (int64_t *)malloc(MAXP * sizeof(int64_t));
    if (!ops || !red || !failed || !C->reads) *err = FA_ENOMEM;
    for (int64_t i = 0; i < t->nrec && C->work > 0 && !*err; i++) {
        if (!is_scalar_rec(&t->rec[i])) continue;
        if ((*err = chain_extend(&W, i, i + MAXP + WIN))) goto done;
        const int64_t *next = W.next;
        int64_t nx = next[i];
        int found = 0;
        run R = {0};
        R.ops = ops; R.red = red;
        for (int c = 0; c < NCAND && nx >= 0 && nx - i <= MAXP; c++, nx = next[nx]) {
            const int how = try_period(C, i, nx - i, &R, failed);
            if (how == TRY_STOP) break;
            if (how == TRY_FOUND) { found = 1; break; }
        }
        if (!found) continue;
        if ((*err = keep_run(&R, &best))) goto done;
        const int64_t Po = outer_period(C, &best);
        if (Po > best.P && C->work > 0) {
            R.ops = ops; R.red = red;
            /* a recurrence around ranged records that run long enough to be vectorized
             * would replay slower than they do (scalar records, one at a time) */
            if (try_period(C, i, Po, &R, failed) == TRY_FOUND && R.T * R.P > best.T * best.P
                && (!R.loop || best.loop || best.T < VEC_MIN)) {
                free(best.ops); free(best.red);
                if ((*err = keep_run(&R, &best))) goto done;
            }
        }
        if (nruns == cap) {
            cap = cap ? 2 * cap : 16;
            run *nr = (run *)realloc(runs, (size_t)cap * sizeof(run));
            if (!nr) { free(best.ops); free(best.red); *err = FA_ENOMEM; goto done; }
            runs = nr;
        }
        runs[nruns++] = best;
        i += best.T * best.P - 1;
    }
done:
    chain_close(&W);
    free(ops);
    free(red);
    free(failed);
    free(C->reads);
    C->reads = NULL;
    *out = runs;
    return nruns;
}

static void free_runs(run *runs, int64_t n)
{
    for (int64_t k = 0; k < n; k++) { free(runs[k].ops); free(runs[k].red); }
    free(runs);
}

/* ---- rewriting -------------------------------------------------------------------- */

typedef struct {
    const ctx *C;
    fa_tape *n;          /* the new tape */
    int32_t *map;        /* old slot -> new slot, -1: none (yet) */
    int err;
} emitter;

/* The new slot of old slot s; a constant is added to the new tape when first needed. */
static int32_t slot(emitter *E, int64_t s)
{
    if (E->err) return -1;
    if (s < 0 || s >= E->C->t->nslot) { E->err = FA_EARG; return -1; }
    if (E->map[s] >= 0) return E->map[s];
    /* unmapped: a constant, unless it is a partial value the rewrite dropped (-2) */
    if (E->map[s] == DROPPED || s < E->C->t->nin) { E->err = FA_EARG; return -1; }
    int32_t c;
    int err = fa_const(E->n, E->C->t->val[s], &c);
    if (err) { E->err = err; return -1; }
    E->map[s] = c;
    return c;
}

/* The old slots s0 + k*d (k < n) as a range of the new tape: in place when they map to
 * consecutive slots, else gathered. */
static int32_t range(emitter *E, int64_t s0, int64_t d, int64_t n)
{
    int32_t first = slot(E, s0);
    int contiguous = 1;
    for (int64_t k = 1; k < n && !E->err; k++)
        if (slot(E, s0 + k * d) != first + k) contiguous = 0;
    if (E->err || contiguous) return first;
    int64_t *idx = (int64_t *)malloc((size_t)n * sizeof(int64_t));
    if (!idx) { E->err = FA_ENOMEM; return -1; }
    for (int64_t k = 0; k < n; k++) idx[k] = E->map[s0 + k * d];
    int32_t g = -1;
    int err = fa_gather(E->n, idx, n, &g);
    if (err) E->err = err;
    free(idx);
    return g;
}

static void set_range(emitter *E, int32_t old, int32_t new, int64_t n)
{
    for (int64_t k = 0; k < n; k++) E->map[old + k] = new + (int32_t)k;
}

static int guard(emitter *E, const fa_rec *p, int32_t a, int32_t b)
{
    int outcome = 0;
    int err = fa_guard(E->n, p->op, a, b, &outcome);
    if (err) return err;
    /* re-evaluated here: it must agree with what the traced program saw */
    return (outcome != 0) == ((p->flags & FA_TRUE) != 0) ? FA_OK : FA_EGUARD;
}

/* One record copied as it is, its slots renamed. */
static void copy_record(emitter *E, const fa_rec *p)
{
    int32_t r = -1;
    int err = FA_OK;
    const int kind = fa_op_table[p->op].kind;
    if (!(p->flags & FA_RANGED)) {
        int32_t a = slot(E, p->a), b = kind == FA_KIND_UNARY ? a : slot(E, p->b);
        if (E->err) return;
        if (kind == FA_KIND_GUARD) { E->err = guard(E, p, a, b); return; }
        err = kind == FA_KIND_UNARY ? fa_op1(E->n, p->op, a, &r) : fa_op2(E->n, p->op, a, b, &r);
        if (err) { E->err = err; return; }
        E->map[p->r] = r;
        return;
    }
    const fa_rec *e = p + 1;
    int64_t nr;
    switch (p->op) {
    case FA_GATHER: {
        int64_t *idx = (int64_t *)malloc((size_t)e->r * sizeof(int64_t));
        if (!idx) { E->err = FA_ENOMEM; return; }
        for (int64_t k = 0; k < e->r && !E->err; k++) idx[k] = slot(E, E->C->t->ix[p->a + k]);
        if (!E->err) err = fa_gather(E->n, idx, e->r, &r);
        free(idx);
        nr = e->r;
        break;
    }
    case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN: case FA_CUMSUM: {
        int32_t a = range(E, p->a, 1, (int64_t)e->r * e->a);
        if (E->err) return;
        err = fa_reduce(E->n, p->op, a, e->r, e->a, &r);
        nr = p->op == FA_CUMSUM ? (int64_t)e->r * e->a : e->a;
        break;
    }
    case FA_MATMUL: {
        int32_t a = range(E, p->a, 1, (int64_t)e->r * e->a);
        int32_t b = range(E, p->b, 1, (int64_t)e->a * e->b);
        if (E->err) return;
        err = fa_matmul_rec(E->n, a, b, e->r, e->a, e->b, &r);
        nr = (int64_t)e->r * e->b;
        break;
    }
    default: {
        if (FA_IS_LINALG(p->op)) {
            /* operand ranges renamed as ranges (gathered if their new slots are not
             * contiguous), the record made again: its result range holds its factors */
            int64_t na, nb;
            linalg_sizes(p, &na, &nb);
            int32_t a = range(E, p->a, 1, na);
            int32_t b = nb ? range(E, p->b, 1, nb) : a;
            if (E->err) return;
            err = fa_linalg_rec(E->n, p->op, a, b, e->r, e->a, e->b, &r);
            nr = fa_linalg_nres(p->op, e->r, e->a);
            break;
        }
        if (kind != FA_KIND_UNARY && kind != FA_KIND_BINARY) { E->err = FA_EARG; return; }
        int32_t a = e->a ? range(E, p->a, 1, e->r) : slot(E, p->a);
        int32_t b = kind == FA_KIND_UNARY ? a : e->b ? range(E, p->b, 1, e->r) : slot(E, p->b);
        if (E->err) return;
        err = fa_op_ranged(E->n, p->op, a, e->a ? 1 : 0, b,
                           kind == FA_KIND_UNARY ? (e->a ? 1 : 0) : (e->b ? 1 : 0), e->r, &r);
        nr = e->r;
    }
    }
    if (err) { E->err = err; return; }
    set_range(E, p->r, r, nr);
}

/* The new slot of operand o of a rolled position in iteration j (base: positions' ranges) */
static int32_t operand_at(emitter *E, const opnd *o, const int32_t *base, int64_t j)
{
    if (o->cls == C_INT) return base[o->q] + (int32_t)j;
    return slot(E, o->s0 + j * o->d);
}

/* A rolled position's operand as a ranged operand: (first slot, stride 0 or 1) */
static int32_t ranged_operand(emitter *E, const opnd *o, const int32_t *base, int64_t T,
                              int32_t *stride)
{
    *stride = 1;
    if (o->cls == C_INT) return base[o->q];
    if (o->d == 0) { *stride = 0; return slot(E, o->s0); }
    return range(E, o->s0, o->d, T);
}

/* The reduction operand [init, c_0, ..., c_{T-1}] gathered, c the handle (first, stride)
 * of the combined terms or, with first < 0, the one term operand `term` */
static int32_t gather_terms(emitter *E, int32_t init, int32_t c, int32_t cs, const opnd *term,
                            const int32_t *base, int64_t T, int64_t *idx)
{
    idx[0] = init;
    for (int64_t j = 0; j < T && !E->err; j++)
        idx[j + 1] = c >= 0 ? c + (cs ? (int32_t)j : 0) : operand_at(E, term, base, j);
    if (E->err) return -1;
    int32_t first = -1;
    int err = fa_gather(E->n, idx, T + 1, &first);
    if (err) E->err = err;
    return first;
}

/* The accumulation chain ending at position q, as one reduction record; returns its slot. */
static int32_t emit_accumulation(emitter *E, const run *R, int64_t q, const int32_t *base,
                                 const int32_t *prefix, const int64_t *want, int64_t *idx)
{
    const int64_t T = R->T, head = NEXT(R, q);
    const int op = E->C->t->rec[R->start + q].op;
    const opnd *carry = &R->ops[2 * head + 1 - TERM(R, head)];
    const opnd *term = &R->ops[2 * head + TERM(R, head)];
    int32_t init = slot(E, carry->s0), first = -1, c = -1, cs = 0, r = -1;
    if (E->err) return -1;
    if (head == q) {
        if (term->cls == C_INT && want[term->q] == q && prefix[term->q] >= 0)
            first = prefix[term->q];
    } else {
        /* the iteration's terms combined elementwise first: c_j = t_j op u_j op ... */
        c = ranged_operand(E, term, base, T, &cs);
        for (int64_t k = NEXT(R, head); !E->err; k = NEXT(R, k)) {
            int32_t us, u = ranged_operand(E, &R->ops[2 * k + TERM(R, k)], base, T, &us);
            int32_t cp = -1, cn = -1;
            if (E->err) break;
            if (k == q) { int err = fa_op1(E->n, FA_COPY, init, &cp); if (err) { E->err = err; break; } }
            int err = fa_op_ranged(E->n, op, c, cs, u, us, (int32_t)T, &cn);
            if (err) { E->err = err; break; }
            c = cn; cs = 1;
            if (k == q) { if (cn == cp + 1) first = cp; break; }
        }
    }
    if (E->err) return -1;
    if (first < 0) first = gather_terms(E, init, c, cs, term, base, T, idx);
    if (E->err) return -1;
    int err = fa_reduce(E->n, reduction_op(op), first, T + 1, 1, &r);
    if (err) { E->err = err; return -1; }
    return r;
}

static void emit_run(emitter *E, const run *R, fa_opt_stats *st)
{
    const int64_t P = R->P, T = R->T;
    const fa_rec *rec = &E->C->t->rec[R->start];
    int32_t *base = (int32_t *)malloc((size_t)P * sizeof(int32_t));
    int32_t *prefix = (int32_t *)malloc((size_t)P * sizeof(int32_t));  /* slot before range */
    int64_t *want = (int64_t *)malloc((size_t)P * sizeof(int64_t));    /* accumulation wanting it */
    int64_t *idx = (int64_t *)malloc((size_t)(T + 1) * sizeof(int64_t));
    if (!base || !prefix || !want || !idx) { E->err = FA_ENOMEM; goto done; }
    for (int64_t q = 0; q < P; q++) { base[q] = -1; prefix[q] = -1; want[q] = -1; }
    /* a one-record accumulation of an earlier position's results sums [init, t_0, ...]:
     * give that position's range a slot in front holding the initial value */
    for (int64_t q = 0; q < P; q++) {
        if (ROLE(R, q) != ACC_END || NEXT(R, q) != q) continue;
        const opnd *term = &R->ops[2 * q + TERM(R, q)];
        if (term->cls == C_INT && want[term->q] < 0) want[term->q] = q;
    }
    for (int64_t q = 0; q < P && !E->err; q++) {
        const fa_rec *p = &rec[q];
        const int kind = fa_op_table[p->op].kind;
        if (kind == FA_KIND_GUARD || ROLE(R, q) == ACC_LINK) continue;
        if (ROLE(R, q) == ACC_END) {
            base[q] = emit_accumulation(E, R, q, base, prefix, want, idx);
            st->reductions++;
            continue;
        }
        int32_t sa, sb, r = -1, c = -1;
        int32_t a = ranged_operand(E, &R->ops[2 * q], base, T, &sa);
        int32_t b = kind == FA_KIND_UNARY ? a : ranged_operand(E, &R->ops[2 * q + 1], base, T, &sb);
        if (kind == FA_KIND_UNARY) sb = sa;
        if (E->err) break;
        if (want[q] >= 0) {
            const int64_t h = want[q];
            int32_t init = slot(E, R->ops[2 * h + 1 - TERM(R, h)].s0);
            int err = E->err ? E->err : fa_op1(E->n, FA_COPY, init, &c);
            if (err) { E->err = err; break; }
        }
        int err = fa_op_ranged(E->n, p->op, a, sa, b, sb, (int32_t)T, &r);
        if (err) { E->err = err; break; }
        base[q] = r;
        if (c >= 0 && r == c + 1) prefix[q] = c;
    }
    /* the guards, one per iteration, after the values they test */
    for (int64_t j = 0; j < T && !E->err; j++)
        for (int64_t q = 0; q < P && !E->err; q++) {
            const fa_rec *p = &rec[q];
            if (fa_op_table[p->op].kind != FA_KIND_GUARD) continue;
            int32_t a = operand_at(E, &R->ops[2 * q], base, j);
            int32_t b = operand_at(E, &R->ops[2 * q + 1], base, j);
            if (!E->err) E->err = guard(E, &rec[j * P + q], a, b);
            st->guards++;
        }
    if (E->err) goto done;
    for (int64_t q = 0; q < P; q++) {
        if (fa_op_table[rec[q].op].kind == FA_KIND_GUARD) continue;
        if (ROLE(R, q) != ACC_NONE) {      /* partial values are gone: only the end's last */
            for (int64_t j = 0; j < T; j++) E->map[rec[j * P + q].r] = DROPPED;
            if (ROLE(R, q) == ACC_END) E->map[rec[(T - 1) * P + q].r] = base[q];
            continue;
        }
        for (int64_t j = 0; j < T; j++) E->map[rec[j * P + q].r] = base[q] + (int32_t)j;
    }
    st->loops++;
    st->iterations += T;
    st->rolled_records += P * T;
done:
    free(base);
    free(prefix);
    free(want);
    free(idx);
}

/* ---- true recurrences: LOOP records (loop.h) -------------------------------------- */

/* Operand o of iterations 1 .. T-1 of a recurrence, when it lies outside the run, as
 * (first slot, stride >= 0) of the new tape: as mapped when the slots stay evenly spaced,
 * else gathered into a contiguous range. */
static void outside_operand(emitter *E, const opnd *o, int64_t T, int32_t *s, int32_t *d)
{
    *d = 0;
    *s = slot(E, o->s0 + o->d);
    if (o->d == 0 || E->err) return;
    const int64_t d1 = T > 2 ? (int64_t)slot(E, o->s0 + 2 * o->d) - *s : 1;
    int even = d1 >= 0 && d1 <= INT32_MAX;
    for (int64_t j = 2; j < T && even && !E->err; j++)
        even = slot(E, o->s0 + j * o->d) == *s + (j - 1) * d1;
    if (E->err) return;
    if (even) { *d = (int32_t)d1; return; }
    *s = range(E, o->s0 + o->d, o->d, T - 1);
    *d = 1;
}

/* A true recurrence: iteration 0 copied as recorded, iterations 1 .. T-1 as one LOOP record
 * whose result block follows iteration 0's results, so a carried operand (iteration j reads
 * j-1) advances by the same stride as the results.  Same records, same order: the values
 * and derivatives are the unrolled tape's bit for bit. */
static void emit_recurrence(emitter *E, const run *R, fa_opt_stats *st)
{
    const fa_tape *t = E->C->t;
    const int64_t P = R->P, T = R->T;
    const fa_rec *rec = &t->rec[R->start];
    fa_rec *body = (fa_rec *)calloc((size_t)P, sizeof(fa_rec));
    int32_t *str = (int32_t *)calloc((size_t)(8 * P), sizeof(int32_t));
    if (!body || !str) { E->err = FA_ENOMEM; goto done; }
    /* result offsets; outside operands' first slots and strides */
    int32_t *off = str + 3 * P, *xs = str + 4 * P, *xd = str + 6 * P;
    int64_t pr = 0;
    for (int64_t q = 0; q < P; q++)
        off[q] = fa_op_table[rec[q].op].kind == FA_KIND_GUARD ? -1 : (int32_t)pr++;
    /* every slot made before iteration 0 is emitted (constants, gathers), so that its
     * results and the loop's are one block */
    for (int64_t q = 0; q < P && !E->err; q++)
        for (int k = 0; k < arity(rec[q].op); k++) {
            opnd o;
            classify(E->C, R, 0, k ? rec[q].b : rec[q].a, &o);
            if (o.cls == C_EXT) slot(E, o.s0);
            const opnd *w = &R->ops[2 * q + k];
            if (w->cls == C_EXT) outside_operand(E, w, T, &xs[2 * q + k], &xd[2 * q + k]);
        }
    if (E->err) goto done;
    const int32_t S0 = (int32_t)E->n->nslot;
    for (int64_t q = 0; q < P && !E->err; q++) copy_record(E, &rec[q]);
    int contiguous = !E->err && E->n->nslot == S0 + pr;
    for (int64_t q = 0; q < P && contiguous; q++)
        if (off[q] >= 0 && E->map[rec[q].r] != S0 + off[q]) contiguous = 0;
    if (E->err) goto done;
    if (!contiguous) {          /* cannot happen as built above; stay correct regardless */
        for (int64_t i = P; i < T * P && !E->err; i++) copy_record(E, &rec[i]);
        goto done;
    }
    const int32_t first = S0 + (int32_t)pr;
    for (int64_t q = 0; q < P; q++) {
        body[q].op = rec[q].op;
        body[q].flags = rec[q].flags;
        body[q].r = off[q] >= 0 ? first + off[q] : -1;
        str[3 * q] = off[q] >= 0 ? (int32_t)pr : 0;
        for (int k = 0; k < 2; k++) {
            const int kk = arity(rec[q].op) == 1 ? 0 : k;   /* a unary record: b = a */
            const opnd *o = &R->ops[2 * q + kk];
            int32_t s = xs[2 * q + kk], d = xd[2 * q + kk];
            if (o->cls == C_INT) { s = first + off[o->q]; d = (int32_t)pr; }
            else if (o->cls == C_CARRY) { s = S0 + off[o->q]; d = (int32_t)pr; }
            if (k) { body[q].b = s; str[3 * q + 2] = d; } else { body[q].a = s; str[3 * q + 1] = d; }
        }
    }
    /* the loop computes what the recorded iterations did, op for op: their values are
     * copied, not evaluated again (the guards saw these very values) */
    int err = fa_loop_rec(E->n, body, str, P, T - 1, pr, first, 0);
    if (err) { E->err = err == 1 ? FA_EGUARD : err; goto done; }
    for (int64_t j = 1; j < T; j++)
        for (int64_t q = 0; q < P; q++)
            if (off[q] >= 0) {
                const int32_t to = first + (int32_t)((j - 1) * pr) + off[q];
                E->map[rec[j * P + q].r] = to;
                E->n->val[to] = t->val[rec[j * P + q].r];
            }
    st->loops++;
    st->recurrences++;
    st->iterations += T;
    st->rolled_records += P * T;
    for (int64_t q = 0; q < P; q++) st->guards += off[q] < 0 ? T : 0;
done:
    free(body);
    free(str);
}

static int rewrite(const ctx *C, const run *runs, int64_t nruns, fa_tape *n, int32_t *map,
                   fa_opt_stats *st, const int32_t *keep, int64_t nkeep)
{
    const fa_tape *t = C->t;
    emitter E = {C, n, map, FA_OK};
    for (int64_t s = 0; s < t->nslot; s++) map[s] = -1;
    for (int32_t i = 0; i < t->nin && !E.err; i++) E.err = fa_input(n, t->val[i], &map[i]);
    for (int64_t k = 0; k < t->ncranges && !E.err; k++) {
        const int64_t s = t->cranges[2 * k], len = t->cranges[2 * k + 1];
        int32_t f;
        E.err = fa_const_array(n, t->val + s, len, &f);
        if (!E.err) set_range(&E, (int32_t)s, f, len);
    }
    int64_t next = 0;
    for (int64_t i = 0; i < t->nrec && !E.err; ) {
        if (next < nruns && runs[next].start == i) {
            if (runs[next].loop) emit_recurrence(&E, &runs[next], st);
            else emit_run(&E, &runs[next], st);
            i += runs[next].T * runs[next].P;
            next++;
            continue;
        }
        const fa_rec *p = &t->rec[i];
        if (p->op != FA_EXT) copy_record(&E, p);
        i += (p->flags & FA_RANGED) ? 2 : 1;
    }
    /* a kept slot no record reads -- an output that is a constant -- is still the caller's */
    for (int64_t k = 0; k < nkeep && !E.err; k++)
        if (keep[k] >= 0 && keep[k] < t->nslot && map[keep[k]] == -1) slot(&E, keep[k]);
    return E.err;
}

int fa_optimize(const fa_tape *t, const int32_t *keep, int64_t nkeep, fa_tape **out,
                int32_t *map, fa_opt_stats *st)
{
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (t->ncb) return FA_OK;          /* callbacks: Python rules, left as recorded */
    int64_t nscalar = 0;
    for (int64_t i = 0; i < t->nrec && nscalar < MINT; i++) nscalar += is_scalar_rec(&t->rec[i]);
    if (nscalar < MINT) return FA_OK;  /* a vectorized tape: nothing a loop could have made */
    ctx C = {t, NULL, NULL, NULL, 0, NULL, WORK_PER_REC * t->nrec + 4096, keep, nkeep, 0, NULL};
    run *runs = NULL;
    int64_t nruns = 0;
    int err = scan_slots(&C);
    if (err) goto done;
    nruns = find_runs(&C, &runs, &err);
    if (err || nruns == 0) goto done;
    fa_tape *n = fa_tape_new();
    if (!n) { err = FA_ENOMEM; goto done; }
    err = rewrite(&C, runs, nruns, n, map, st, keep, nkeep);
    if (err) {
        fa_tape_free(n);
        memset(st, 0, sizeof *st);
        if (err == FA_EGUARD) { st->abandoned = 1; err = FA_OK; }
        goto done;
    }
    n->owner = t->owner;
    *out = n;
done:
    free(C.rindex);
    free(C.rslot);
    free(C.rrec);
    free(C.rlast);
    free_runs(runs, nruns);
    return err;
}
