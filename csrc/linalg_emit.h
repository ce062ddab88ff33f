/*
 * linalg_emit.h -- the recorded adjoints of the linear-algebra records (linalg.h), for
 * derivatives of derivatives.  Included by emit.c (it uses emit.c's handles and helpers).
 *
 * Each adjoint is written with the same records plus gathers (transposes), matmuls and
 * elementwise products with constant masks, so the recorded gradient is itself
 * differentiable to any order:
 *
 *   SOLVE     gB = solve(A^T, gX);  gA = -gB X^T
 *   SLOGDET   gA = gl * solve(A, I)^T
 *   CHOLESKY  G^T = L^-T (L^-T Phi(L^T tril(gL)))^T;  gA = tril(G) + strict_tril(G^T)
 *   TRSOLVE   gB = solve_triangular(T^T, gX);  gT = -tri(gB X^T)
 *   EIGH      G = V (diag(gw) + F o (V^T gV)) V^T, F_ij = offdiag / (w_j - w_i) (absolute-
 *             zero products), folded onto the lower triangle like CHOLESKY
 */
#include "linalg.h"

static fa_h linalg(fa_em *E, int op, fa_h a, fa_h b, int64_t n, int64_t k, int variant)
{
    int32_t r;
    if (E->err || bad(a) || bad(b)) return BAD;
    int err = fa_linalg_rec(E->t, op, a.s, b.s, n, k, variant, &r);
    if (err) { E->err = err; return BAD; }
    return (fa_h){r, 1};
}

/* a constant n x n array: the triangle of `variant` (MASK_TRI: 1 inside, 0 outside),
 * Phi's weights (MASK_PHI: lower 1, diagonal 0.5), or the identity (MASK_EYE) */
enum { MASK_TRI, MASK_PHI, MASK_EYE };

static fa_h mask(fa_em *E, int64_t n, int variant, int what)
{
    int32_t s;
    if (E->err) return BAD;
    double *m = (double *)malloc((size_t)(n * n) * sizeof(double));
    if (!m) { E->err = FA_ENOMEM; return BAD; }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double x;
            if (what == MASK_EYE) x = i == j;
            else if (what == MASK_PHI) x = i == j ? 0.5 : i > j;
            else x = i == j ? !(variant & FA_TRI_UNIT) : ((variant & FA_TRI_LOWER) ? i > j : i < j);
            m[i * n + j] = x;
        }
    int err = fa_const_array(E->t, m, n * n, &s);
    free(m);
    if (err) { E->err = err; return BAD; }
    return (fa_h){s, 1};
}

#include "linalg_svd_emit.h"   /* rev_svd_emit */
#include "linalg_qr_emit.h"    /* rev_qr_emit */

/* The eigendecompositions' adjoints (EIGH, EIG) start alike: gw and gV, the adjoints of the
 * eigenvalues and eigenvectors, and the row and column of each entry of an n x n array
 * (for regathers).  0 when neither adjoint is reached or on an error (E->err). */
typedef struct { fa_h gw, gV; int64_t *rows, *cols; } eig_adj;

static void eig_end(eig_adj *e);

static int eig_begin(fa_em *E, const int32_t *adj, const fa_rec *p, int64_t n, eig_adj *e)
{
    e->rows = e->cols = NULL;
    e->gw = adjoint_range(E, adj, p->r, n);
    e->gV = adjoint_range(E, adj, p->r + (int32_t)n, n * n);
    if (E->err || (bad(e->gw) && bad(e->gV))) return 0;
    E->n = n * n;
    e->rows = (int64_t *)malloc((size_t)(n * n) * sizeof(int64_t));
    e->cols = (int64_t *)malloc((size_t)(n * n) * sizeof(int64_t));
    if (!e->rows || !e->cols) { eig_end(e); E->err = FA_ENOMEM; return 0; }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) { e->rows[i * n + j] = i; e->cols[i * n + j] = j; }
    return 1;
}

static void eig_end(eig_adj *e)
{
    free(e->rows);
    free(e->cols);
    e->rows = e->cols = NULL;
}

/* F_ij = offdiag / (w_j - w_i), w the eigenvalues, in absolute-zero products (a repeated
 * eigenvalue's 1/0 meets the zero of the other factor) */
static fa_h eig_gaps(fa_em *E, const fa_rec *p, int64_t n, const eig_adj *e)
{
    fa_h w = {p->r, 1};
    fa_h diff = e_op(E, FA_SUBTRACT, regather(E, w, e->cols, n * n),
                     regather(E, w, e->rows, n * n), 2);                  /* w_j - w_i */
    fa_h off = mask(E, n, FA_TRI_UNIT, MASK_TRI);                         /* strict upper */
    off = e_op(E, FA_ADD, off, mask(E, n, FA_TRI_LOWER | FA_TRI_UNIT, MASK_TRI), 2);
    fa_h recip = e_op(E, FA_RECIPROCAL, diff, diff, 1);
    return e_op(E, FA_AZMUL, off, recip, 2);
}

/* diag(gw) */
static fa_h eig_diag(fa_em *E, int64_t n, const eig_adj *e)
{
    return e_op(E, FA_MULTIPLY, mask(E, n, 0, MASK_EYE), regather(E, e->gw, e->rows, n * n), 2);
}

static void rev_linalg(fa_em *E, int32_t *adj, const fa_rec *p, const fa_rec *ext)
{
    const int64_t n = ext->r, k = ext->a;
    const int variant = ext->b;
    fa_em em = {E->t, 0, 0};
    fa_h A = {p->a, 1};
    switch (p->op) {
    case FA_SOLVE: case FA_TRSOLVE: {
        em.n = n * k;
        fa_h w = adjoint_range(&em, adj, p->r, n * k);
        if (bad(w)) break;
        w = e_broadcast(&em, w);
        const int flipped = p->op == FA_TRSOLVE ? (variant ^ FA_TRI_LOWER) : 0;
        fa_h gb = linalg(&em, p->op, transposed(&em, p->a, n, n), w, n, k, flipped);
        add_to_range(&em, adj, p->b, gb);
        em.n = n * n;
        fa_h prod = matmul(&em, gb, transposed(&em, p->r, n, k), n, k, n);
        fa_h ga = e_op(&em, FA_NEGATIVE, prod, prod, 1);
        if (p->op == FA_TRSOLVE) ga = e_op(&em, FA_MULTIPLY, ga, mask(&em, n, variant, MASK_TRI), 2);
        add_to_range(&em, adj, p->a, ga);
        break;
    }
    case FA_SLOGDET: {
        if (adj[p->r] < 0) break;
        em.n = n * n;
        fa_h inv = linalg(&em, FA_SOLVE, A, mask(&em, n, 0, MASK_EYE), n, n, 0);
        if (bad(inv)) break;
        fa_h ga = e_op(&em, FA_MULTIPLY, transposed(&em, inv.s, n, n), (fa_h){adj[p->r], 0}, 2);
        add_to_range(&em, adj, p->a, ga);
        break;
    }
    case FA_CHOLESKY: {
        em.n = n * n;
        fa_h w = adjoint_range(&em, adj, p->r, n * n);
        if (bad(w)) break;
        fa_h low = mask(&em, n, FA_TRI_LOWER, MASK_TRI);
        w = e_op(&em, FA_MULTIPLY, e_broadcast(&em, w), low, 2);         /* tril(gL) */
        fa_h LT = transposed(&em, p->r, n, n);
        fa_h P = e_op(&em, FA_MULTIPLY, matmul(&em, LT, w, n, n, n),
                      mask(&em, n, 0, MASK_PHI), 2);                     /* Phi(L^T gL) */
        fa_h W = linalg(&em, FA_TRSOLVE, LT, P, n, n, 0);                /* L^-T Phi */
        if (bad(W)) break;
        fa_h GT = linalg(&em, FA_TRSOLVE, LT, transposed(&em, W.s, n, n), n, n, 0);
        if (bad(GT)) break;
        fa_h G = transposed(&em, GT.s, n, n);
        fa_h ga = e_op(&em, FA_ADD, e_op(&em, FA_MULTIPLY, G, low, 2),
                       e_op(&em, FA_MULTIPLY, GT, mask(&em, n, FA_TRI_LOWER | FA_TRI_UNIT, MASK_TRI), 2), 2);
        add_to_range(&em, adj, p->a, ga);
        break;
    }
    case FA_EIGH: {
        eig_adj e;
        if (!eig_begin(&em, adj, p, n, &e)) break;
        fa_h V = {p->r + (int32_t)n, 1}, K = BAD;
        if (!bad(e.gV)) {
            fa_h F = eig_gaps(&em, p, n, &e);
            fa_h M = matmul(&em, transposed(&em, V.s, n, n), e_broadcast(&em, e.gV), n, n, n);
            K = e_op(&em, FA_AZMUL, M, F, 2);
        }
        if (!bad(e.gw)) {
            fa_h D = eig_diag(&em, n, &e);
            K = bad(K) ? D : e_op(&em, FA_ADD, K, D, 2);
        }
        eig_end(&e);
        fa_h G = matmul(&em, matmul(&em, V, K, n, n, n), transposed(&em, V.s, n, n), n, n, n);
        if (bad(G)) break;
        fa_h GT = transposed(&em, G.s, n, n);
        fa_h ga = e_op(&em, FA_ADD, e_op(&em, FA_MULTIPLY, G, mask(&em, n, FA_TRI_LOWER, MASK_TRI), 2),
                       e_op(&em, FA_MULTIPLY, GT, mask(&em, n, FA_TRI_LOWER | FA_TRI_UNIT, MASK_TRI), 2), 2);
        add_to_range(&em, adj, p->a, ga);
        break;
    }
    case FA_SVD:
        rev_svd_emit(&em, adj, p, n, k);
        break;
    case FA_QR:
        rev_qr_emit(&em, adj, p, n, k);
        break;
    case FA_EIG: {
        /* G0 = gV - V diag(c), c_j = v_j . gv_j;  gA = V^-T (diag(gw) + F o (V^T G0)) V^T,
         * V^-T by a SOLVE record (differentiable, unlike the stored V^-1) */
        eig_adj e;
        if (!eig_begin(&em, adj, p, n, &e)) break;
        fa_h V = {p->r + (int32_t)n, 1}, K = BAD;
        if (!bad(e.gV)) {
            fa_h gV = e_broadcast(&em, e.gV);
            fa_h prod = e_op(&em, FA_MULTIPLY, V, gV, 2);
            fa_h c = em.err ? BAD : reduce(&em, FA_SUM, transposed(&em, prod.s, n, n), n, n);
            fa_h G0 = e_op(&em, FA_SUBTRACT, gV,
                           e_op(&em, FA_MULTIPLY, V, regather(&em, c, e.cols, n * n), 2), 2);
            fa_h F = eig_gaps(&em, p, n, &e);
            fa_h M = matmul(&em, transposed(&em, V.s, n, n), G0, n, n, n);
            K = e_op(&em, FA_AZMUL, M, F, 2);
        }
        if (!bad(e.gw) && !em.err) {
            fa_h D = eig_diag(&em, n, &e);
            K = bad(K) ? D : e_op(&em, FA_ADD, K, D, 2);
        }
        eig_end(&e);
        if (em.err) break;
        fa_h ViT = linalg(&em, FA_SOLVE, transposed(&em, V.s, n, n), mask(&em, n, 0, MASK_EYE), n, n, 0);
        if (bad(ViT)) break;
        fa_h G = matmul(&em, matmul(&em, ViT, K, n, n, n), transposed(&em, V.s, n, n), n, n, n);
        add_to_range(&em, adj, p->a, G);
        break;
    }
    case FA_BETAINC: {
        /* the partials are the records of the next derivative orders (linalg_betainc.h);
         * past the expansion's order they are NaN, never a wrong number */
        em.n = n;
        fa_h w = adjoint_range(&em, adj, p->r, n);
        if (bad(w)) break;
        w = e_broadcast(&em, w);
        static const int step[3] = {FA_BETAINC_DA, FA_BETAINC_DB, FA_BETAINC_DX};
        const int32_t dest[3] = {p->a, p->a + (int32_t)n, p->b};
        for (int d = 0; d < 3; d++) {
            fa_h part = FA_BETAINC_ORDER(variant) + 1 > FA_TK ? e_k(&em, NAN)
                : linalg(&em, FA_BETAINC, A, (fa_h){p->b, 1}, n, 1, variant + step[d]);
            add_to_range(&em, adj, dest[d], e_op(&em, FA_AZMUL, w, part, 2));
        }
        break;
    }
    default:
        break;
    }
    if (em.err) E->err = em.err;
}
