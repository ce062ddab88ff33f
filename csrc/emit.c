/*
 * emit.c -- reverse mode that produces a tape: the adjoint computation of a stretch of
 * records, appended to the same tape as ordinary records.
 *
 * The numeric reverse sweep (sweeps.h) computes adjoints; this file *records* the same
 * computation, so the adjoints are traced values that can be differentiated again.  That
 * is how fastad nests derivatives (grad of grad, a grad inside a differentiated function)
 * to any order and replays them in C like any other tape.
 *
 * The partials come from the op table itself: ops.h writes them in the D_* language,
 * which this file reads as "append a record" instead of "compute a number".
 *
 * A handle names an emitted value: one slot (stride 0, broadcast over a ranged record)
 * or a range of n slots (stride 1).  `adj[s]` is the slot holding the adjoint of primal
 * slot s (-1: zero so far).
 */
#define FA_DSL_EMIT 1
#include <stdlib.h>
#include <string.h>
#include "tape.h"
#include "loop.h"

typedef struct { int32_t s; int32_t st; } fa_h;

typedef struct {
    fa_tape *t;
    int64_t n;        /* elements of the record being differentiated */
    int err;
} fa_em;

static const fa_h BAD = {-1, 0};

static int bad(fa_h x) { return x.s < 0; }

static fa_h e_k(fa_em *E, double c)
{
    int32_t s;
    if (E->err) return BAD;
    int err = fa_const(E->t, c, &s);
    if (err) { E->err = err; return BAD; }
    return (fa_h){s, 0};
}

static int is_const_value(const fa_em *E, fa_h x, double c)
{
    return x.s >= 0 && x.st == 0 && E->t->val[x.s] == c && fa_is_const(E->t, x.s);
}

/* op(x, y) as a record: a scalar record when both are single slots, else ranged */
static fa_h e_op(fa_em *E, int op, fa_h x, fa_h y, int arity)
{
    int32_t r;
    int err;
    if (E->err) return BAD;
    if (bad(x) || bad(y)) { E->err = FA_EARG; return BAD; }
    if (!x.st && (arity == 1 || !y.st)) {
        err = arity == 1 ? fa_op1(E->t, op, x.s, &r) : fa_op2(E->t, op, x.s, y.s, &r);
        if (err) { E->err = err; return BAD; }
        return (fa_h){r, 0};
    }
    if (arity == 1) y = x;
    err = fa_op_ranged(E->t, op, x.s, x.st, y.s, y.st, (int32_t)E->n, &r);
    if (err) { E->err = err; return BAD; }
    return (fa_h){r, 1};
}

/* A single slot repeated over a range of E->n (a ranged copy with stride 0). */
static fa_h e_broadcast(fa_em *E, fa_h x)
{
    int32_t r;
    if (E->err || bad(x)) return BAD;
    if (x.st) return x;
    int err = fa_op_ranged(E->t, FA_COPY, x.s, 0, x.s, 0, (int32_t)E->n, &r);
    if (err) { E->err = err; return BAD; }
    return (fa_h){r, 1};
}

/* The D_* language of ops.h, read as records. */
#define D_K(c)           e_k(E, (c))
#define D_ADD(x, y)      e_op(E, FA_ADD, (x), (y), 2)
#define D_SUB(x, y)      e_op(E, FA_SUBTRACT, (x), (y), 2)
#define D_MUL(x, y)      e_op(E, FA_MULTIPLY, (x), (y), 2)
#define D_DIV(x, y)      e_op(E, FA_DIVIDE, (x), (y), 2)
#define D_NEG(x)         e_op(E, FA_NEGATIVE, (x), (x), 1)
#define D_RECIP(x)       e_op(E, FA_RECIPROCAL, (x), (x), 1)
#define D_SQRT(x)        e_op(E, FA_SQRT, (x), (x), 1)
#define D_EXP(x)         e_op(E, FA_EXP, (x), (x), 1)
#define D_LOG(x)         e_op(E, FA_LOG, (x), (x), 1)
#define D_SIN(x)         e_op(E, FA_SIN, (x), (x), 1)
#define D_COS(x)         e_op(E, FA_COS, (x), (x), 1)
#define D_SINH(x)        e_op(E, FA_SINH, (x), (x), 1)
#define D_COSH(x)        e_op(E, FA_COSH, (x), (x), 1)
#define D_HYPOT(x, y)    e_op(E, FA_HYPOT, (x), (y), 2)
#define D_POW(x, y)      e_op(E, FA_POWER, (x), (y), 2)
#define D_EQ(x, y)       e_op(E, FA_EQUAL_MASK, (x), (y), 2)
#define D_NE(x, y)       e_op(E, FA_NOT_EQUAL_MASK, (x), (y), 2)
#define D_SELNOT(c, x)   e_op(E, FA_SELECT_NOT, (c), (x), 2)
#define D_SIGNPOS(x)     e_op(E, FA_SIGNPOS, (x), (x), 1)
#define D_GTSHARE(x, y)  e_op(E, FA_GTSHARE, (x), (y), 2)
#define D_FMAXDA(x, y)   e_op(E, FA_FMAXDA, (x), (y), 2)
#define D_LOG1P(x)       e_op(E, FA_LOG1P, (x), (x), 1)
#define D_POLYGAMMA(n, x) e_op(E, FA_POLYGAMMA, (n), (x), 2)
#define D_GAMMAINC_DA(a, x) e_op(E, FA_GAMMAINC_DA, (a), (x), 2)
#define D_GAMMAINC_DX(a, x) e_op(E, FA_GAMMAINC_DX, (a), (x), 2)
#define D_GAMMAINC_DA2(a, x) e_op(E, FA_GAMMAINC_DA2, (a), (x), 2)
#define D_GAMMAINC_DA3(a, x) e_op(E, FA_GAMMAINC_DA3, (a), (x), 2)

/* Emit d(op)/da and d(op)/db for an elementwise record. */
static void partials(fa_em *E, int op, fa_h a, fa_h b, fa_h r, fa_h *da, fa_h *db)
{
    (void)a; (void)b; (void)r;
    *da = *db = BAD;
    switch (op) {
#define FA_P1(N, S, V, DA) case FA_##N: *da = (DA); return;
#define FA_P2(N, S, V, DA, DB) case FA_##N: *da = (DA); *db = (DB); return;
    FA_UNARY_OPS(FA_P1)
    FA_BINARY_OPS(FA_P2)
#undef FA_P1
#undef FA_P2
    default:
        E->err = FA_EARG;
    }
}

/* ---- adjoint bookkeeping --------------------------------------------------------- */

static int32_t zero_slot(fa_em *E) { return e_k(E, 0.0).s; }

/* The adjoints of the n slots s.. as one handle: a range, a gathered range, or BAD if
 * all are zero (nothing to propagate). */
static fa_h adjoint_range(fa_em *E, const int32_t *adj, int32_t s, int64_t n)
{
    int any = 0, contiguous = adj[s] >= 0;
    for (int64_t k = 0; k < n; k++) {
        if (adj[s + k] >= 0) any = 1;
        if (adj[s + k] != adj[s] + k) contiguous = 0;
    }
    if (!any) return BAD;
    if (n == 1) return (fa_h){adj[s], 0};
    if (contiguous) return (fa_h){adj[s], 1};
    int64_t *idx = (int64_t *)malloc((size_t)n * sizeof(int64_t));
    if (!idx) { E->err = FA_ENOMEM; return BAD; }
    int32_t z = zero_slot(E), g = -1;
    for (int64_t k = 0; k < n; k++) idx[k] = adj[s + k] >= 0 ? adj[s + k] : z;
    if (!E->err) {
        int err = fa_gather(E->t, idx, n, &g);
        if (err) E->err = err;
    }
    free(idx);
    return E->err ? BAD : (fa_h){g, 1};
}

/* adj[s] += c for a single primal slot s; a ranged c is summed first. */
static void add_to_slot(fa_em *E, int32_t *adj, int32_t s, fa_h c)
{
    if (E->err || bad(c) || fa_is_const(E->t, s)) return;
    if (c.st) {
        int32_t r;
        int err = fa_reduce(E->t, FA_SUM, c.s, E->n, 1, &r);
        if (err) { E->err = err; return; }
        c = (fa_h){r, 0};
    }
    if (adj[s] < 0) { adj[s] = c.s; return; }
    fa_em one = {E->t, 1, 0};
    fa_h sum = e_op(&one, FA_ADD, (fa_h){adj[s], 0}, c, 2);
    if (one.err) { E->err = one.err; return; }
    adj[s] = sum.s;
}

/* adj[s + k] += c[k] for a range of E->n primal slots (c a range or a broadcast slot). */
static void add_to_range(fa_em *E, int32_t *adj, int32_t s, fa_h c)
{
    if (E->err || bad(c) || fa_is_const(E->t, s)) return;
    const int64_t n = E->n;
    fa_h old = adjoint_range(E, adj, s, n);
    if (E->err) return;
    fa_h sum;
    if (n == 1)
        sum = bad(old) ? c : e_op(E, FA_ADD, old, c, 2);
    else
        sum = bad(old) ? e_broadcast(E, c) : e_op(E, FA_ADD, old, c, 2);
    if (E->err) return;
    for (int64_t k = 0; k < n; k++) adj[s + k] = sum.st ? sum.s + (int32_t)k : sum.s;
}

static void add_to(fa_em *E, int32_t *adj, int32_t s, int32_t stride, fa_h c)
{
    if (stride) add_to_range(E, adj, s, c);
    else add_to_slot(E, adj, s, c);
}

/* c = w * d, skipping the record when d is a constant 0 (no adjoint) or 1 */
static fa_h contribution(fa_em *E, fa_h w, fa_h d)
{
    if (bad(d) || is_const_value(E, d, 0.0)) return BAD;
    if (is_const_value(E, d, 1.0)) return w;
    return e_op(E, FA_AZMUL, w, d, 2);
}

/* ---- structural records ---------------------------------------------------------- */

/* A range r[k] = v[idx[k]] (idx: primal slots), k < n. */
static fa_h gather(fa_em *E, int64_t *idx, int64_t n)
{
    int32_t g;
    if (E->err) return BAD;
    int err = fa_gather(E->t, idx, n, &g);
    if (err) { E->err = err; return BAD; }
    return (fa_h){g, 1};
}

/* Slots of handle h (range of len or a broadcast slot) rearranged: out[k] = h[map[k]] */
static fa_h regather(fa_em *E, fa_h h, const int64_t *map, int64_t n)
{
    if (E->err || bad(h)) return BAD;
    int64_t *idx = (int64_t *)malloc((size_t)n * sizeof(int64_t));
    if (!idx) { E->err = FA_ENOMEM; return BAD; }
    for (int64_t k = 0; k < n; k++) idx[k] = h.st ? h.s + map[k] : h.s;
    fa_h g = gather(E, idx, n);
    free(idx);
    return g;
}

static int cmp_pair(const void *x, const void *y)
{
    const int64_t *p = (const int64_t *)x, *q = (const int64_t *)y;
    return p[0] < q[0] ? -1 : p[0] > q[0] ? 1 : (p[1] < q[1] ? -1 : p[1] > q[1]);
}

/* GATHER r[k] = v[src[k]]: each source slot gets the sum of the adjoints that read it. */
static void rev_gather(fa_em *E, int32_t *adj, const int32_t *src, int64_t n, fa_h w)
{
    int64_t *pairs = (int64_t *)malloc((size_t)n * 2 * sizeof(int64_t));
    int64_t *perm = (int64_t *)calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
    if (!pairs || !perm) { E->err = FA_ENOMEM; goto done; }
    for (int64_t k = 0; k < n; k++) { pairs[2 * k] = src[k]; pairs[2 * k + 1] = k; }
    qsort(pairs, (size_t)n, 2 * sizeof(int64_t), cmp_pair);
    for (int64_t k = 0; k < n; k++) perm[k] = pairs[2 * k + 1];
    /* the adjoints in source order, then one sum per run of equal sources */
    fa_h sorted = regather(E, w, perm, n);
    fa_em one = {E->t, 1, 0};
    for (int64_t k = 0; k < n && !E->err; ) {
        int64_t end = k;
        while (end < n && pairs[2 * end] == pairs[2 * k]) end++;
        fa_h c = {sorted.s + (int32_t)k, 0};
        if (end - k > 1) {
            int32_t r;
            int err = fa_reduce(E->t, FA_SUM, sorted.s + (int32_t)k, end - k, 1, &r);
            if (err) { E->err = err; break; }
            c.s = r;
        }
        add_to_slot(&one, adj, (int32_t)pairs[2 * k], c);
        if (one.err) E->err = one.err;
        k = end;
    }
done:
    free(pairs);
    free(perm);
}

/* A handle of m slots expanded to n*m: element j*n + k is h[j]. */
static fa_h expand(fa_em *E, fa_h h, int64_t n, int64_t m)
{
    int64_t *map = (int64_t *)malloc((size_t)(n * m) * sizeof(int64_t));
    if (!map) { E->err = FA_ENOMEM; return BAD; }
    for (int64_t j = 0; j < m; j++)
        for (int64_t k = 0; k < n; k++) map[j * n + k] = j;
    fa_h g = regather(E, h, map, n * m);
    free(map);
    return g;
}

/* Range of rows x cols starting at s, transposed (a gather). */
static fa_h transposed(fa_em *E, int32_t s, int64_t rows, int64_t cols)
{
    int64_t *idx = (int64_t *)malloc((size_t)(rows * cols) * sizeof(int64_t));
    if (!idx) { E->err = FA_ENOMEM; return BAD; }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j < rows; j++) idx[i * rows + j] = s + j * cols + i;
    fa_h g = gather(E, idx, rows * cols);
    free(idx);
    return g;
}

static fa_h matmul(fa_em *E, fa_h a, fa_h b, int64_t m, int64_t k, int64_t p)
{
    int32_t r;
    if (E->err || bad(a) || bad(b)) return BAD;
    int err = fa_matmul_rec(E->t, a.s, b.s, m, k, p, &r);
    if (err) { E->err = err; return BAD; }
    return (fa_h){r, 1};
}

static fa_h reduce(fa_em *E, int op, fa_h x, int64_t n, int64_t m)
{
    int32_t r;
    if (E->err || bad(x)) return BAD;
    int err = fa_reduce(E->t, op, x.s, n, m, &r);
    if (err) { E->err = err; return BAD; }
    return (fa_h){r, (op == FA_CUMSUM ? n * m : m) > 1};
}

/* d r_j / d x_k of r_j = prod_k x[j*n + k], recorded exact with zeros as fa_reduce_d is,
 * and differentiable again (the Hessian of a product with zeros is not 0).  Without a zero,
 * r / x (a guard that no element is 0 retraces a replay with zeros); with zeros, the
 * product of the other elements of each one, gathered (n - 1 values per element). */
static fa_h prod_partials(fa_em *em, const fa_rec *p, int64_t n, int64_t m)
{
    fa_h x = {p->a, 1};
    fa_h mask = e_op(em, FA_EQUAL_MASK, x, e_k(em, 0.0), 2);
    fa_h zeros = reduce(em, FA_SUM, mask, n * m, 1);
    fa_h zero = e_k(em, 0.0);
    int none = 0;
    if (em->err || bad(zeros) || bad(zero)) return BAD;
    int err = fa_guard(em->t, FA_EQUAL, zeros.s, zero.s, &none);
    if (err) { em->err = err; return BAD; }
    if (none)
        return e_op(em, FA_DIVIDE, expand(em, (fa_h){p->r, m > 1}, n, m), x, 2);
    if (n == 1) return e_k(em, 1.0);                /* the empty product */
    if (n - 1 > FA_MAX_SLOTS / (n * m)) { em->t->want = n * m * (n - 1); em->err = FA_EOVERFLOW; return BAD; }
    int64_t *idx = (int64_t *)malloc((size_t)(n * m * (n - 1)) * sizeof(int64_t));
    if (!idx) { em->err = FA_ENOMEM; return BAD; }
    int64_t q = 0;
    for (int64_t j = 0; j < m; j++)
        for (int64_t k = 0; k < n; k++)
            for (int64_t i = 0; i < n; i++)
                if (i != k) idx[q++] = p->a + j * n + i;
    fa_h others = gather(em, idx, q);
    free(idx);
    return reduce(em, FA_PROD, others, n - 1, n * m);
}

#include "linalg_emit.h"   /* rev_linalg: the adjoints of the linear-algebra records */

static void rev_struct(fa_em *E, int32_t *adj, const fa_rec *p, const fa_rec *ext,
                       const int32_t *src)
{
    const int64_t n = ext->r, m = ext->a, k3 = ext->b;
    fa_em em = {E->t, 0, 0};
    switch (p->op) {
    case FA_GATHER: {
        fa_h w = adjoint_range(E, adj, p->r, n);
        if (!bad(w)) rev_gather(E, adj, src, n, w);
        return;
    }
    case FA_SUM: case FA_MAX: case FA_MIN: case FA_PROD: {
        fa_h w = adjoint_range(E, adj, p->r, m);
        if (bad(w)) return;
        em.n = n * m;
        fa_h c = expand(&em, w, n, m), x = {p->a, 1};
        fa_em seg = {E->t, m, 0};     /* ops over the m segment results */
        if (p->op == FA_MAX || p->op == FA_MIN) {
            /* ties share: mask / count, as fa_reduce_d; a NaN result matches no element,
             * and max(count, 1) keeps those partials 0 (not 0/0) like the sweeps */
            fa_h mask = e_op(&em, FA_EQUAL_MASK, x, expand(&em, (fa_h){p->r, m > 1}, n, m), 2);
            fa_h cnt = e_op(&seg, FA_FMAX, reduce(&em, FA_SUM, mask, n, m), e_k(&seg, 1.0), 2);
            c = e_op(&em, FA_AZMUL, c, e_op(&em, FA_DIVIDE, mask, expand(&em, cnt, n, m), 2), 2);
        } else if (p->op == FA_PROD) {
            c = e_op(&em, FA_AZMUL, c, prod_partials(&em, p, n, m), 2);
        }
        if (seg.err) em.err = seg.err;
        add_to_range(&em, adj, p->a, c);
        break;
    }
    case FA_CUMSUM: {   /* the adjoint of a prefix sum is the suffix sum of adjoints */
        em.n = n * m;
        fa_h w = adjoint_range(&em, adj, p->r, n * m);
        if (bad(w)) { E->err = em.err; return; }
        int64_t *rev = (int64_t *)malloc((size_t)(n * m) * sizeof(int64_t));
        if (!rev) { E->err = FA_ENOMEM; return; }
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < n; i++) rev[j * n + i] = j * n + (n - 1 - i);
        fa_h c = regather(&em, reduce(&em, FA_CUMSUM, regather(&em, w, rev, n * m), n, m), rev, n * m);
        free(rev);
        add_to_range(&em, adj, p->a, c);
        break;
    }
    case FA_CALLBACK:   /* a custom_vjp function's rule is Python: it cannot be recorded */
        if (!bad(adjoint_range(E, adj, p->r, m))) E->err = FA_ECALLBACK;
        return;
    case FA_MATMUL: {   /* C (n x p) = A (n x m) B (m x k3):  gA = gC B^T,  gB = A^T gC */
        em.n = n * k3;
        fa_h w = adjoint_range(&em, adj, p->r, n * k3);
        if (bad(w)) { E->err = em.err; return; }
        w = e_broadcast(&em, w);
        fa_h ga = matmul(&em, w, transposed(&em, p->b, m, k3), n, k3, m);
        em.n = n * m;
        add_to_range(&em, adj, p->a, ga);
        fa_h gb = matmul(&em, transposed(&em, p->a, n, m), w, m, n, k3);
        em.n = m * k3;
        add_to_range(&em, adj, p->b, gb);
        break;
    }
    default:
        if (FA_IS_LINALG(p->op)) rev_linalg(E, adj, p, ext);
        return;
    }
    if (em.err) E->err = em.err;
}

/* ---- the emitter ----------------------------------------------------------------- */

/* The adjoint of a scalar or ranged elementwise record p (ext: its EXT word, or n = 1). */
static void emit_elementwise(fa_em *E, int32_t *adj, const fa_rec *pp, const fa_rec *ext)
{
    const fa_rec p = *pp;
    const int ranged = (p.flags & FA_RANGED) != 0;
    const int kind = fa_op_table[p.op].kind;
    E->n = ranged ? ext->r : 1;
    fa_h w = ranged ? adjoint_range(E, adj, p.r, E->n) : (fa_h){adj[p.r], 0};
    if (bad(w)) return;                         /* a zero adjoint: nothing flows back */
    fa_h a = {p.a, ranged ? ext->a : 0}, b = {p.b, ranged ? ext->b : 0};
    fa_h r = {p.r, ranged};
    if (kind == FA_KIND_UNARY) b = a;
    fa_h da, db;
    partials(E, p.op, a, b, r, &da, &db);
    add_to(E, adj, a.s, a.st, contribution(E, w, da));
    if (kind == FA_KIND_BINARY)
        add_to(E, adj, b.s, b.st, contribution(E, w, db));
}

/* A LOOP record (loop.h) differentiated iteration by iteration, backwards: its adjoint is
 * recorded unrolled, as the records the loop stands for would have been (the optimizer
 * may roll the recorded adjoint up again). */
static void emit_loop(fa_em *E, int32_t *adj, int64_t i)
{
    const int64_t T = E->t->rec[i + 1].r, P = E->t->rec[i + 1].a;
    /* a copy: emitting appends to (and may move) the record array */
    fa_rec *hdr = (fa_rec *)malloc((size_t)(2 + 2 * P) * sizeof(fa_rec));
    if (!hdr) { E->err = FA_ENOMEM; return; }
    memcpy(hdr, &E->t->rec[i], (size_t)(2 + 2 * P) * sizeof(fa_rec));
    const fa_rec one = {0, 0, 0, 1, 0, 0};
    for (int64_t j = T - 1; j >= 0 && !E->err; j--)
        for (int64_t q = P - 1; q >= 0 && !E->err; q--) {
            const fa_rec s = fa_loop_at(hdr, q, j);
            if (fa_op_table[s.op].kind != FA_KIND_GUARD) emit_elementwise(E, adj, &s, &one);
        }
    free(hdr);
}

int fa_emit_reverse(fa_tape *t, int64_t lo, int64_t hi, int32_t out, int32_t seed, int32_t *adj)
{
    fa_em E = {t, 1, 0};
    if (lo < 0 || hi > t->nrec || lo > hi || out < 0 || out >= t->nslot) return FA_EARG;
    adj[out] = seed;
    int32_t *src = NULL;
    for (int64_t i = hi - 1; i >= lo && !E.err; i--) {
        /* copies: emitting appends to (and may move) the record and index arrays */
        const fa_rec p = t->rec[i];
        if (p.op == FA_EXT) continue;
        const int ranged = (p.flags & FA_RANGED) != 0;
        const fa_rec ext = ranged ? t->rec[i + 1] : (fa_rec){0, 0, 0, 1, 0, 0};
        const int kind = fa_op_table[p.op].kind;
        if (kind == FA_KIND_GUARD) continue;
        if (p.op == FA_LOOP) { emit_loop(&E, adj, i); continue; }
        if (kind == FA_KIND_STRUCT) {
            if (p.op == FA_GATHER) {
                free(src);
                src = (int32_t *)malloc((size_t)ext.r * sizeof(int32_t));
                if (!src) { E.err = FA_ENOMEM; break; }
                memcpy(src, t->ix + p.a, (size_t)ext.r * sizeof(int32_t));
            }
            rev_struct(&E, adj, &p, &ext, src);
            continue;
        }
        emit_elementwise(&E, adj, &p, &ext);
    }
    free(src);
    return E.err;
}
