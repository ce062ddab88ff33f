/*
 * tape.c -- recording into a fastad tape: amortised growth, the constant pool, and the
 * op-info table generated from ops.h.
 *
 * Every new record is evaluated at once by the same forward kernel (sweeps.h) that
 * replays it, so recording and replay can never disagree on a value.
 */
#include <stdlib.h>
#include <string.h>
#include "tape.h"
#include "sweeps.h"
#include "linalg.h"
#include "loop.h"

/* numpy's loops for ranged records (sweeps.h); empty until fastad._tape fills it */
fa_vec_loop fa_vec_loops[FA_NUM_OPS];

/* BLAS dgemm for MATMUL records (sweeps.h); NULL until fastad._tape sets it */
fa_dgemm_fn fa_dgemm;

const fa_op_info fa_op_table[FA_NUM_OPS] = {
#define FA_I1(N, S, V, DA) {S, FA_KIND_UNARY, #DA, NULL},
#define FA_I2(N, S, V, DA, DB) {S, FA_KIND_BINARY, #DA, #DB},
#define FA_IG(N, S, T) {S, FA_KIND_GUARD, NULL, NULL},
#define FA_IS(N, S) {S, FA_KIND_STRUCT, NULL, NULL},
    FA_UNARY_OPS(FA_I1)
    FA_BINARY_OPS(FA_I2)
    FA_GUARD_OPS(FA_IG)
    FA_STRUCT_OPS(FA_IS)
#undef FA_I1
#undef FA_I2
#undef FA_IG
#undef FA_IS
};

fa_tape *fa_tape_new(void)
{
    return (fa_tape *)calloc(1, sizeof(fa_tape));
}

void fa_tape_free(fa_tape *t)
{
    if (!t) return;
    free(t->rec);
    free(t->val);
    free(t->chash);
    free(t->cranges);
    free(t->ix);
    free(t);
}

/* Make room for `need` elements of `size` bytes in *buf (capacity *cap), doubling. */
static int grow(void **buf, int64_t *cap, int64_t need, size_t size)
{
    if (need <= *cap) return FA_OK;
    int64_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > INT64_MAX / 2) return FA_EOVERFLOW;
        ncap *= 2;
    }
    if ((uint64_t)ncap > SIZE_MAX / size) return FA_ENOMEM;
    void *p = realloc(*buf, (size_t)ncap * size);
    if (!p) return FA_ENOMEM;
    *buf = p;
    *cap = ncap;
    return FA_OK;
}

/* Reserve `n` new slots; stores the first one. */
static int new_slots(fa_tape *t, int64_t n, int32_t *first)
{
    t->want = n < 0 ? 0 : t->nslot + n;       /* for the error message, if this fails */
    if (n < 0 || t->nslot + n > FA_MAX_SLOTS) return FA_EOVERFLOW;
    int err = grow((void **)&t->val, &t->capslot, t->nslot + n, sizeof(double));
    if (err) return err;
    *first = (int32_t)t->nslot;
    t->nslot += n;
    return FA_OK;
}

static int new_records(fa_tape *t, int64_t n, fa_rec **first)
{
    int err = grow((void **)&t->rec, &t->caprec, t->nrec + n, sizeof(fa_rec));
    if (err) return err;
    *first = t->rec + t->nrec;
    memset(*first, 0, (size_t)n * sizeof(fa_rec));
    t->nrec += n;
    return FA_OK;
}

static int valid_slot(const fa_tape *t, int64_t s) { return s >= 0 && s < t->nslot; }

/* for loop.c, which appends LOOP records (loop.h) */
int fa_new_slots(fa_tape *t, int64_t n, int32_t *first) { return new_slots(t, n, first); }
int fa_new_records(fa_tape *t, int64_t n, fa_rec **first) { return new_records(t, n, first); }

int fa_input(fa_tape *t, double x, int32_t *slot)
{
    /* inputs must be slots 0..nin-1, so they come before anything else */
    if (t->nslot != t->nin) return FA_EORDER;
    int err = new_slots(t, 1, slot);
    if (err) return err;
    t->val[*slot] = x;
    t->nin++;
    return FA_OK;
}

static uint64_t hash_bits(double x)
{
    uint64_t h;
    memcpy(&h, &x, sizeof h);   /* by bit pattern: -0.0 and 0.0 stay apart, NaN finds itself */
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int same_bits(double x, double y) { return memcmp(&x, &y, sizeof x) == 0; }

static int rehash(fa_tape *t, int64_t ncap)
{
    if ((uint64_t)ncap > SIZE_MAX / sizeof(int64_t)) return FA_ENOMEM;
    int64_t *nh = (int64_t *)calloc((size_t)ncap, sizeof(int64_t));
    if (!nh) return FA_ENOMEM;
    for (int64_t i = 0; i < t->hcap; i++) {
        int64_t e = t->chash[i];
        if (!e) continue;
        uint64_t j = hash_bits(t->val[e - 1]) & (uint64_t)(ncap - 1);
        while (nh[j]) j = (j + 1) & (uint64_t)(ncap - 1);
        nh[j] = e;
    }
    free(t->chash);
    t->chash = nh;
    t->hcap = ncap;
    return FA_OK;
}

int fa_const(fa_tape *t, double x, int32_t *slot)
{
    if (2 * (t->ncon + 1) > t->hcap) {
        int err = rehash(t, t->hcap ? 2 * t->hcap : 64);
        if (err) return err;
    }
    uint64_t mask = (uint64_t)(t->hcap - 1), j = hash_bits(x) & mask;
    for (; t->chash[j]; j = (j + 1) & mask) {
        int64_t s = t->chash[j] - 1;
        if (same_bits(t->val[s], x)) { *slot = (int32_t)s; return FA_OK; }
    }
    int err = new_slots(t, 1, slot);
    if (err) return err;
    t->val[*slot] = x;
    t->chash[j] = (int64_t)*slot + 1;
    t->ncon++;
    return FA_OK;
}

void fa_copy_consts(const fa_tape *t, double *dst)
{
    for (int64_t i = 0; i < t->hcap; i++) {
        int64_t e = t->chash[i];
        if (e) dst[e - 1] = t->val[e - 1];
    }
    for (int64_t i = 0; i < t->ncranges; i++) {
        int64_t s = t->cranges[2 * i], n = t->cranges[2 * i + 1];
        memcpy(dst + s, t->val + s, (size_t)n * sizeof(double));
    }
}

int fa_is_const(const fa_tape *t, int32_t slot)
{
    if (!valid_slot(t, slot) || slot < t->nin) return 0;
    for (int64_t i = 0; i < t->ncranges; i++)
        if (slot >= t->cranges[2 * i] && slot < t->cranges[2 * i] + t->cranges[2 * i + 1])
            return 1;
    if (!t->hcap) return 0;
    uint64_t mask = (uint64_t)(t->hcap - 1), j = hash_bits(t->val[slot]) & mask;
    for (; t->chash[j]; j = (j + 1) & mask)
        if (t->chash[j] - 1 == slot) return 1;
    return 0;
}

/* Append one record (a header and an EXT word when ranged), reserving `nres` result slots,
 * and evaluate it. */
static int push(fa_tape *t, int op, int32_t a, int32_t b, int32_t n, int32_t sa, int32_t sb,
                int64_t nres, int ranged, int32_t *slot)
{
    int err = new_slots(t, nres, slot);
    if (err) return err;
    fa_rec *p;
    err = new_records(t, ranged ? 2 : 1, &p);
    if (err) { t->nslot -= nres; return err; }
    p->op = (uint8_t)op;
    p->r = *slot;
    p->a = a;
    p->b = b;
    if (ranged) {
        p->flags = FA_RANGED;
        p[1].op = FA_EXT;
        p[1].r = n;
        p[1].a = sa;
        p[1].b = sb;
    }
    fa_fwd(p, t->val, t->ix);
    return FA_OK;
}

int fa_op1(fa_tape *t, int op, int32_t a, int32_t *slot)
{
    if (!valid_slot(t, a) || op < 0 || op >= FA_NUM_OPS || fa_op_table[op].kind != FA_KIND_UNARY)
        return FA_EARG;
    return push(t, op, a, a, 1, 0, 0, 1, 0, slot);
}

int fa_op2(fa_tape *t, int op, int32_t a, int32_t b, int32_t *slot)
{
    if (!valid_slot(t, a) || !valid_slot(t, b) || op < 0 || op >= FA_NUM_OPS
        || fa_op_table[op].kind != FA_KIND_BINARY)
        return FA_EARG;
    return push(t, op, a, b, 1, 0, 0, 1, 0, slot);
}

/* operand range [s, s + (n-1)*stride] must lie inside the tape */
static int valid_range(const fa_tape *t, int32_t s, int32_t stride, int32_t n)
{
    return (stride == 0 || stride == 1) && valid_slot(t, s)
        && valid_slot(t, (int64_t)s + (int64_t)(n - 1) * stride);
}

int fa_op_ranged(fa_tape *t, int op, int32_t a, int32_t sa, int32_t b, int32_t sb,
                 int32_t n, int32_t *slot)
{
    if (n < 1 || op < 0 || op >= FA_NUM_OPS || !valid_range(t, a, sa, n)) return FA_EARG;
    int kind = fa_op_table[op].kind;
    if (kind == FA_KIND_UNARY) { b = a; sb = sa; }
    else if (kind != FA_KIND_BINARY || !valid_range(t, b, sb, n)) return FA_EARG;
    return push(t, op, a, b, n, sa, sb, n, 1, slot);
}

int fa_const_array(fa_tape *t, const double *x, int64_t n, int32_t *first)
{
    if (n < 1) return FA_EARG;
    int err = grow((void **)&t->cranges, &t->capcranges, 2 * (t->ncranges + 1), sizeof(int64_t));
    if (err) return err;
    err = new_slots(t, n, first);
    if (err) return err;
    memcpy(t->val + *first, x, (size_t)n * sizeof(double));
    t->cranges[2 * t->ncranges] = *first;
    t->cranges[2 * t->ncranges + 1] = n;
    t->ncranges++;
    t->ncon += n;
    return FA_OK;
}

int fa_gather(fa_tape *t, const int64_t *idx, int64_t n, int32_t *first)
{
    if (n < 1 || n > FA_MAX_SLOTS) return n < 1 ? FA_EARG : FA_EOVERFLOW;
    for (int64_t k = 0; k < n; k++)
        if (!valid_slot(t, idx[k])) return FA_EARG;
    if (t->nix + n > FA_MAX_SLOTS) return FA_EOVERFLOW;   /* the pool offset is an int32 */
    int err = grow((void **)&t->ix, &t->capix, t->nix + n, sizeof(int32_t));
    if (err) return err;
    int32_t off = (int32_t)t->nix;
    for (int64_t k = 0; k < n; k++) t->ix[off + k] = (int32_t)idx[k];
    err = push(t, FA_GATHER, off, off, (int32_t)n, 0, 0, n, 1, first);
    if (err) return err;      /* the pool entries past nix are simply unused */
    t->nix += n;
    return FA_OK;
}

/* n * m elements of a segmented reduction, checked */
int fa_reduce(fa_tape *t, int op, int32_t a, int64_t n, int64_t m, int32_t *first)
{
    if (op != FA_SUM && op != FA_PROD && op != FA_MAX && op != FA_MIN && op != FA_CUMSUM)
        return FA_EARG;
    if (n < 1 || m < 1 || n > FA_MAX_SLOTS || m > FA_MAX_SLOTS || n * m > FA_MAX_SLOTS)
        return FA_EOVERFLOW;
    if (!valid_range(t, a, 1, (int32_t)(n * m))) return FA_EARG;
    int64_t nres = op == FA_CUMSUM ? n * m : m;
    return push(t, op, a, a, (int32_t)n, (int32_t)m, 0, nres, 1, first);
}

int fa_matmul_rec(fa_tape *t, int32_t a, int32_t b, int64_t m, int64_t k, int64_t p,
                  int32_t *first)
{
    if (m < 1 || k < 1 || p < 1 || m > FA_MAX_SLOTS || k > FA_MAX_SLOTS || p > FA_MAX_SLOTS
        || m * k > FA_MAX_SLOTS || k * p > FA_MAX_SLOTS || m * p > FA_MAX_SLOTS)
        return FA_EOVERFLOW;
    if (!valid_range(t, a, 1, (int32_t)(m * k)) || !valid_range(t, b, 1, (int32_t)(k * p)))
        return FA_EARG;
    return push(t, FA_MATMUL, a, b, (int32_t)m, (int32_t)k, (int32_t)p, m * p, 1, first);
}

int fa_callback(fa_tape *t, int32_t a, int64_t n, int64_t m, int32_t id, const double *values,
                int32_t *first)
{
    if (n < 1 || m < 1 || n > FA_MAX_SLOTS || m > FA_MAX_SLOTS || id < 0) return FA_EARG;
    if (!valid_range(t, a, 1, (int32_t)n)) return FA_EARG;
    int err = new_slots(t, m, first);
    if (err) return err;
    fa_rec *p;
    err = new_records(t, 2, &p);
    if (err) { t->nslot -= m; return err; }
    p->op = FA_CALLBACK;
    p->flags = FA_RANGED;
    p->r = *first;
    p->a = a;
    p->b = a;
    p[1].op = FA_EXT;
    p[1].r = (int32_t)n;
    p[1].a = (int32_t)m;
    p[1].b = id;
    memcpy(t->val + *first, values, (size_t)m * sizeof(double));
    t->ncb++;
    return FA_OK;
}

int fa_guard(fa_tape *t, int op, int32_t a, int32_t b, int *outcome)
{
    if (!valid_slot(t, a) || !valid_slot(t, b) || op < 0 || op >= FA_NUM_OPS
        || fa_op_table[op].kind != FA_KIND_GUARD)
        return FA_EARG;
    fa_rec *p;
    int err = new_records(t, 1, &p);
    if (err) return err;
    p->op = (uint8_t)op;
    p->r = -1;
    p->a = a;
    p->b = b;
    /* the kernel reports a mismatch against flags; with FA_TRUE clear, mismatch == outcome */
    *outcome = fa_fwd(p, t->val, t->ix);
    if (*outcome) p->flags = FA_TRUE;
    return FA_OK;
}

/* Is any slot of [s, s + n) active? */
static int any_active(const uint8_t *act, int64_t s, int64_t n)
{
    for (int64_t k = 0; k < n; k++) if (act[s + k]) return 1;
    return 0;
}

int fa_mark_passive(fa_tape *t, const uint8_t *active_inputs)
{
    uint8_t *act = (uint8_t *)calloc((size_t)(t->nslot ? t->nslot : 1), 1);
    if (!act) return FA_ENOMEM;
    memcpy(act, active_inputs, (size_t)t->nin);
    for (int64_t i = 0; i < t->nrec; i++) {
        fa_rec *p = &t->rec[i];
        const int kind = fa_op_table[p->op].kind;
        if (p->op == FA_EXT || kind == FA_KIND_GUARD) continue;
        if (p->op == FA_LOOP) { fa_loop_mark_passive(p, act); continue; }   /* loop.h */
        const int ranged = (p->flags & FA_RANGED) != 0;
        const fa_rec *e = p + 1;
        int64_t na = 1, nb = 1, nr = 1;          /* lengths of operand and result ranges */
        if (ranged) {
            switch (p->op) {
            case FA_GATHER: na = 0; nr = e->r; break;
            case FA_SUM: case FA_PROD: case FA_MAX: case FA_MIN:
                na = (int64_t)e->r * e->a; nr = e->a; break;
            case FA_CUMSUM: na = nr = (int64_t)e->r * e->a; break;
            case FA_MATMUL: na = (int64_t)e->r * e->a; nb = (int64_t)e->a * e->b;
                nr = (int64_t)e->r * e->b; break;
            case FA_CALLBACK: na = e->r; nr = e->a; break;
            case FA_BETAINC:                     /* a, b (2n) and x (n) */
                na = 2 * (int64_t)e->r; nb = e->r;
                nr = fa_linalg_nres(p->op, e->r, e->a); break;
            case FA_SVD: case FA_QR:             /* A is e->r x e->a, not square */
                na = nb = (int64_t)e->r * e->a;
                nr = fa_linalg_nres(p->op, e->r, e->a); break;
            case FA_EIG:
            case FA_SOLVE: case FA_SLOGDET: case FA_CHOLESKY: case FA_TRSOLVE: case FA_EIGH:
                na = (int64_t)e->r * e->r; nb = (int64_t)e->r * e->a;
                nr = fa_linalg_nres(p->op, e->r, e->a); break;
            default:    /* elementwise: a stride-0 operand is one slot */
                na = e->a ? e->r : 1; nb = e->b ? e->r : 1; nr = e->r;
            }
        }
        if (p->op == FA_GATHER) {               /* element by element */
            int any = 0;
            for (int64_t k = 0; k < nr; k++) {
                act[p->r + k] = act[t->ix[p->a + k]];
                any |= act[p->r + k];
            }
            if (!any) p->flags |= FA_A_PASSIVE;
            continue;
        }
        const int a_act = any_active(act, p->a, na);
        const int b_act = kind == FA_KIND_BINARY || p->op == FA_MATMUL || p->op == FA_SOLVE
            || p->op == FA_TRSOLVE || p->op == FA_BETAINC ? any_active(act, p->b, nb) : 0;
        if (!a_act) p->flags |= FA_A_PASSIVE;
        if (!b_act) p->flags |= FA_B_PASSIVE;
        if (a_act || b_act) memset(act + p->r, 1, (size_t)nr);
    }
    free(act);
    return FA_OK;
}

int fa_linalg_rec(fa_tape *t, int op, int32_t a, int32_t b, int64_t n, int64_t k, int variant,
                  int32_t *first)
{
    if (!FA_IS_LINALG(op)) return FA_EARG;
    if (op == FA_BETAINC) {               /* n points: a, b at a (2n), x at b (n) */
        if (n < 1 || n > FA_MAX_SLOTS / 4 - 1) return FA_EOVERFLOW;
        if (!valid_range(t, a, 1, (int32_t)(2 * n)) || !valid_range(t, b, 1, (int32_t)n))
            return FA_EARG;
        return push(t, op, a, b, (int32_t)n, 1, (int32_t)variant, fa_linalg_nres(op, n, 1), 1,
                    first);
    }
    if (op == FA_SVD || op == FA_QR) {    /* A is n x k (rows x columns), not square */
        if (n < 1 || k < 1 || n > FA_MAX_SLOTS || k > FA_MAX_SLOTS || n * k > FA_MAX_SLOTS)
            return FA_EOVERFLOW;
        const int64_t nres = fa_linalg_nres(op, n, k);
        if (nres > FA_MAX_SLOTS) return FA_EOVERFLOW;
        if (!valid_range(t, a, 1, (int32_t)(n * k))) return FA_EARG;
        return push(t, op, a, a, (int32_t)n, (int32_t)k, 0, nres, 1, first);
    }
    if (op == FA_SLOGDET || op == FA_CHOLESKY || op == FA_EIGH || op == FA_EIG) {
        b = a; k = n; variant = 0;
    }
    if (n < 1 || k < 1 || n > 46340 || k > FA_MAX_SLOTS || n * k > FA_MAX_SLOTS)
        return FA_EOVERFLOW;              /* n * n must fit the int32 slot indices */
    const int64_t nres = fa_linalg_nres(op, n, k);
    if (nres > FA_MAX_SLOTS) return FA_EOVERFLOW;
    if (!valid_range(t, a, 1, (int32_t)(n * n)) || !valid_range(t, b, 1, (int32_t)(n * k)))
        return FA_EARG;
    return push(t, op, a, b, (int32_t)n, (int32_t)k, (int32_t)variant, nres, 1, first);
}
