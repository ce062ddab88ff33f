/*
 * linalg.c -- forward, tangent and adjoint kernels of the linear-algebra records
 * (linalg.h), through LAPACK/BLAS.  The rules (docs/linalg.md):
 *
 *   SOLVE     dX = A^-1 (dB - dA X)           gB += A^-T gX,  gA -= (A^-T gX) X^T
 *   SLOGDET   dl = tr(A^-1 dA)                gA += gl A^-T
 *   CHOLESKY  dL = L Phi(L^-1 S L^-T)         gA from G = L^-T Phi(L^T gL) L^-1
 *             (S: the symmetric matrix the lower triangle of dA stands for; Phi: the
 *             lower triangle with the diagonal halved)
 *   TRSOLVE   dX = T^-1 (dB - tri(dT) X)      gB += T^-T gX,  gT -= tri((T^-T gX) X^T)
 *   EIGH      M = V^T S V: dw = diag(M), dV = V (F o M);  G = V (diag(gw) + F o (V^T gV)) V^T
 *             with F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it; "o" an absolute-zero
 *             product (a zero M_ij gives 0 even where F is infinite: repeated eigenvalues)
 *
 * Matrices are row-major; a row-major buffer is, to column-major LAPACK, the transpose.
 * So SOLVE factors A^T (its buffer as it is) and solves with trans = 'T'; CHOLESKY
 * factors the buffer's 'U' triangle, which is the row-major lower triangle, and gets L.
 *
 * Every allocation is checked and freed on every path; a kernel that cannot allocate
 * reports failure (forward) or writes NaN (tangent, adjoint) rather than a wrong number.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "linalg.h"

fa_lapack_fns fa_lapack;

#include "linalg_svd.h"     /* the SVD record's kernels (svd_nres, fwd_svd, tan_svd, rev_svd) */
#include "linalg_betainc.h" /* the BETAINC record's kernels */

int64_t fa_linalg_nres(int op, int64_t n, int64_t k)
{
    switch (op) {
    case FA_SOLVE: return n * k + n * n + n + 1;
    case FA_SLOGDET: return n * n + n + 3;
    case FA_CHOLESKY: return n * n + 1;
    case FA_TRSOLVE: return n * k + 1;
    case FA_EIGH: return n + n * n + 1;
    case FA_SVD: return svd_nres(n, k);
    case FA_QR: return n * k + k * k + 1;
    case FA_BETAINC: return betainc_nres(n);
    case FA_EIG: return n + 2 * n * n + 1;     /* w, V, V^-1, info (linalg_eig.h) */
    default: return -1;
    }
}

/* ---- row-major helpers ------------------------------------------------------------ */

static double *dalloc(int64_t n) { return (double *)malloc((size_t)(n > 0 ? n : 1) * sizeof(double)); }

static void transpose(const double *x, double *y, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) y[j * rows + i] = x[i * cols + j];
}

static void fill_nan(double *x, int64_t n) { for (int64_t i = 0; i < n; i++) x[i] = NAN; }

/* op(T) X = B in place (B: n x k, row-major); T row-major, lower or upper, unit or not.
 * Column-major, B is Bc = B^T (k x n) and T is Tc = T^T, so this is Xc op(T)^T = Bc:
 * side 'R', the triangle flipped, op(T)^T = Tc ('N') or Tc^T ('T'). */
static void trsm_rm(const double *T, int lower, int trans, int unit, double *B, int n, int k)
{
    char side = 'R', uplo = lower ? 'U' : 'L', ta = trans ? 'T' : 'N', diag = unit ? 'U' : 'N';
    double one = 1.0;
    fa_lapack.dtrsm(&side, &uplo, &ta, &diag, &k, &n, &one, (double *)T, &n, B, &k);
}

/* A X = B (trans 0) or A^T X = B (trans 1) in place, from the LU of A^T that dgetrf left
 * in LU (column-major view of A's row-major buffer); B row-major n x k.  Returns 0, or -1
 * without memory. */
static int lu_solve_rm(const double *LU, const int *ipiv, int trans, double *B, int n, int k)
{
    char tr = trans ? 'N' : 'T';
    int info = 0;
    if (k == 1) {
        fa_lapack.dgetrs(&tr, &n, &k, (double *)LU, &n, (int *)ipiv, B, &n, &info);
        return 0;
    }
    double *w = dalloc((int64_t)n * k);
    if (!w) return -1;
    transpose(B, w, n, k);               /* row-major n x k -> column-major n x k */
    fa_lapack.dgetrs(&tr, &n, &k, (double *)LU, &n, (int *)ipiv, w, &n, &info);
    transpose(w, B, k, n);
    free(w);
    return 0;
}

static int *ipiv_of(const double *piv, int n)
{
    int *ip = (int *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (ip) for (int i = 0; i < n; i++) ip[i] = (int)piv[i];
    return ip;
}

/* A^-1 (row-major) from the LU of A^T: dgetri inverts the column-major A^T, whose
 * buffer read row-major is (A^-T)^T = A^-1.  Returns NULL without memory or if singular. */
static double *inverse_from_lu(const double *LU, const double *piv, int n)
{
    int lwork = 64 * n, info = 0;
    double *inv = dalloc((int64_t)n * n), *work = dalloc(lwork);
    int *ip = ipiv_of(piv, n);
    if (!inv || !work || !ip) { free(inv); free(work); free(ip); return NULL; }
    memcpy(inv, LU, (size_t)n * n * sizeof(double));
    fa_lapack.dgetri(&n, inv, &n, ip, work, &lwork, &info);
    free(work);
    free(ip);
    if (info != 0) { free(inv); return NULL; }
    return inv;
}

/* c (m x p) = a (m x q) @ b^T where b is p x q (row-major), accumulated with sign s */
static void matmul_bt(const double *a, const double *b, double *c, int64_t m, int64_t q,
                      int64_t p, double s)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < p; j++) {
            double acc = 0.0;
            for (int64_t l = 0; l < q; l++) acc += a[i * q + l] * b[j * q + l];
            c[i * p + j] += s * acc;
        }
}

static int in_triangle(int64_t i, int64_t j, int variant)
{
    if (i == j) return !(variant & FA_TRI_UNIT);
    return (variant & FA_TRI_LOWER) ? i > j : i < j;
}

#include "linalg_qr.h"      /* the QR record's kernels (fwd_qr, tan_qr, rev_qr) */
#include "linalg_eig.h"     /* the EIG record's kernels (fwd_eig, tan_eig, rev_eig) */

/* ---- forward ---------------------------------------------------------------------- */

static int lu_factor(const double *A, double *LU, double *piv, double *info_slot, int n)
{
    int info = 0;
    int *ip = (int *)malloc((size_t)n * sizeof(int));
    if (!ip) { *info_slot = -1.0; return -1; }
    memcpy(LU, A, (size_t)n * n * sizeof(double));
    fa_lapack.dgetrf(&n, &n, LU, &n, ip, &info);
    for (int i = 0; i < n; i++) piv[i] = (double)ip[i];
    free(ip);
    *info_slot = (double)info;
    return info;
}

static int fwd_solve(const fa_rec *p, double *v)
{
    const int n = p[1].r, k = p[1].a;
    double *X = v + p->r, *LU = X + (int64_t)n * k, *piv = LU + (int64_t)n * n, *info = piv + n;
    if (lu_factor(v + p->a, LU, piv, info, n) != 0) { fill_nan(X, (int64_t)n * k); return 1; }
    memcpy(X, v + p->b, (size_t)n * k * sizeof(double));
    int *ip = ipiv_of(piv, n);
    if (!ip || lu_solve_rm(LU, ip, 0, X, n, k)) { free(ip); *info = -1.0; return 1; }
    free(ip);
    return 0;
}

static int fwd_slogdet(const fa_rec *p, double *v)
{
    const int n = p[1].r;
    double *out = v + p->r, *LU = out + 2, *piv = LU + (int64_t)n * n, *info = piv + n;
    int err = lu_factor(v + p->a, LU, piv, info, n);
    if (err < 0) return 1;
    if (err > 0) { out[0] = -INFINITY; out[1] = 0.0; return 0; }   /* singular: numpy's */
    double logabs = 0.0, sign = 1.0;
    for (int i = 0; i < n; i++) {
        const double u = LU[(int64_t)i * n + i];
        logabs += log(fabs(u));
        if (u < 0) sign = -sign;
        if ((int)piv[i] != i + 1) sign = -sign;
    }
    out[0] = logabs;
    out[1] = sign;
    return 0;
}

static int fwd_cholesky(const fa_rec *p, double *v)
{
    int n = p[1].r, info = 0;
    char uplo = 'U';
    double *L = v + p->r;
    memcpy(L, v + p->a, (size_t)n * n * sizeof(double));
    fa_lapack.dpotrf(&uplo, &n, L, &n, &info);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) L[i * n + j] = 0.0;
    v[p->r + (int64_t)n * n] = (double)info;
    if (info != 0) { fill_nan(L, (int64_t)n * n); return 1; }
    return 0;
}

static int fwd_trsolve(const fa_rec *p, double *v)
{
    const int n = p[1].r, k = p[1].a, variant = p[1].b;
    const double *T = v + p->a;
    double *X = v + p->r, *info = X + (int64_t)n * k;
    *info = 0.0;
    if (!(variant & FA_TRI_UNIT))
        for (int i = 0; i < n; i++)
            if (T[(int64_t)i * n + i] == 0.0) {     /* scipy: "singular matrix" */
                *info = (double)(i + 1);
                fill_nan(X, (int64_t)n * k);
                return 1;
            }
    memcpy(X, v + p->b, (size_t)n * k * sizeof(double));
    trsm_rm(T, variant & FA_TRI_LOWER, 0, variant & FA_TRI_UNIT, X, n, k);
    return 0;
}

static int fwd_eigh(const fa_rec *p, double *v)
{
    if (p[1].r > 30000) {                  /* dsyevd's int workspace size would overflow */
        v[p->r + p[1].r + (int64_t)p[1].r * p[1].r] = -1.0;
        return 1;
    }
    int n = p[1].r, info = 0, lwork = 1 + 6 * n + 2 * n * n, liwork = 3 + 5 * n;
    /* numpy's own call: A in column-major order, its lower triangle ('L'); the same input
     * to the same algorithm gives numpy's eigenvector signs */
    char jobz = 'V', uplo = 'L';
    double *w = v + p->r, *V = w + n, *a = dalloc((int64_t)n * n), *work = dalloc(lwork);
    int *iwork = (int *)malloc((size_t)liwork * sizeof(int));
    if (!a || !work || !iwork) { free(a); free(work); free(iwork); v[p->r + n + (int64_t)n * n] = -1.0; return 1; }
    transpose(v + p->a, a, n, n);
    fa_lapack.dsyevd(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    transpose(a, V, n, n);                 /* column j of a (column-major) is vector j */
    free(a);
    free(work);
    free(iwork);
    v[p->r + n + (int64_t)n * n] = (double)info;
    return info != 0;
}

int fa_linalg_fwd(const fa_rec *p, double *v)
{
    if (p->op == FA_BETAINC) return fwd_betainc(p, v);    /* no LAPACK */
    if (!fa_lapack.dgetrf) return 1;        /* no LAPACK table: never a wrong number */
    switch (p->op) {
    case FA_SOLVE: return fwd_solve(p, v);
    case FA_SLOGDET: return fwd_slogdet(p, v);
    case FA_CHOLESKY: return fwd_cholesky(p, v);
    case FA_TRSOLVE: return fwd_trsolve(p, v);
    case FA_EIGH: return fwd_eigh(p, v);
    case FA_SVD: return fwd_svd(p, v);
    case FA_QR: return fwd_qr(p, v);
    case FA_EIG: return fwd_eig(p, v);
    default: return 1;
    }
}

/* ---- tangents --------------------------------------------------------------------- */

/* R = dB - tri(dA) X  (n x k), tri: the whole matrix (variant < 0) or a triangle */
static void residual(const double *dA, const double *dB, const double *X, double *R,
                     int64_t n, int64_t k, int variant)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) {
            double acc = dB ? dB[i * k + j] : 0.0;
            for (int64_t l = 0; l < n; l++)
                if (variant < 0 || in_triangle(i, l, variant)) acc -= dA[i * n + l] * X[l * k + j];
            R[i * k + j] = acc;
        }
}

static void tan_solve(const fa_rec *p, const double *v, double *t)
{
    const int n = p[1].r, k = p[1].a;
    const double *X = v + p->r, *LU = X + (int64_t)n * k, *piv = LU + (int64_t)n * n;
    double *dX = t + p->r;
    memset(dX + (int64_t)n * k, 0, (size_t)(n * n + n + 1) * sizeof(double));
    residual(t + p->a, t + p->b, X, dX, n, k, -1);
    int *ip = ipiv_of(piv, n);
    if (!ip || lu_solve_rm(LU, ip, 0, dX, n, k)) fill_nan(dX, (int64_t)n * k);
    free(ip);
}

static void tan_slogdet(const fa_rec *p, const double *v, double *t)
{
    const int n = p[1].r;
    const double *LU = v + p->r + 2, *piv = LU + (int64_t)n * n, *dA = t + p->a;
    double *d = t + p->r;
    memset(d, 0, (size_t)(n * n + n + 3) * sizeof(double));
    double *inv = inverse_from_lu(LU, piv, n);      /* A^-1; NULL if singular */
    if (!inv) { d[0] = NAN; return; }
    double acc = 0.0;                              /* tr(A^-1 dA) */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) acc += inv[j * n + i] * dA[i * n + j];
    free(inv);
    d[0] = acc;
}

/* The symmetric matrix the lower triangle of dA stands for (numpy reads only it). */
static void sym_from_lower(const double *dA, double *S, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) S[i * n + j] = i >= j ? dA[i * n + j] : dA[j * n + i];
}

static void tan_cholesky(const fa_rec *p, const double *v, double *t)
{
    const int n = p[1].r;
    const int64_t nn = (int64_t)n * n;
    const double *L = v + p->r;
    double *dL = t + p->r;
    double *S = dalloc(nn), *W = dalloc(nn);
    dL[nn] = 0.0;
    if (!S || !W) { fill_nan(dL, nn); free(S); free(W); return; }
    sym_from_lower(t + p->a, S, n);
    trsm_rm(L, 1, 0, 0, S, n, n);          /* S <- L^-1 S */
    transpose(S, W, n, n);                 /* (L^-1 S)^T = S L^-T */
    trsm_rm(L, 1, 0, 0, W, n, n);          /* X = L^-1 S L^-T (symmetric) */
    for (int64_t i = 0; i < n; i++) {      /* Phi(X): lower triangle, diagonal halved */
        for (int64_t j = i + 1; j < n; j++) W[i * n + j] = 0.0;
        W[i * n + i] *= 0.5;
    }
    for (int64_t i = 0; i < n; i++)        /* dL = L Phi(X), lower triangular */
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t l = j; l <= i; l++) acc += L[i * n + l] * W[l * n + j];
            dL[i * n + j] = j <= i ? acc : 0.0;
        }
    free(S);
    free(W);
}

static void tan_trsolve(const fa_rec *p, const double *v, double *t)
{
    const int n = p[1].r, k = p[1].a, variant = p[1].b;
    double *dX = t + p->r;
    dX[(int64_t)n * k] = 0.0;
    residual(t + p->a, t + p->b, v + p->r, dX, n, k, variant);
    trsm_rm(v + p->a, variant & FA_TRI_LOWER, 0, variant & FA_TRI_UNIT, dX, n, k);
}

/* c = a @ b, n x n row-major */
static void matmul_nn(const double *a, const double *b, double *c, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double *ci = c + i * n;
        for (int64_t j = 0; j < n; j++) ci[j] = 0.0;
        for (int64_t l = 0; l < n; l++) {
            const double ail = a[i * n + l];
            for (int64_t j = 0; j < n; j++) ci[j] += ail * b[l * n + j];
        }
    }
}

/* m[i][j] *= 1 / (w_j - w_i) off the diagonal, absolute-zero; the diagonal gets d[i] */
static void eigh_weights(double *m, const double *w, const double *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            m[i * n + j] = i == j ? (d ? d[i] : 0.0)
                         : (m[i * n + j] == 0.0 ? 0.0 : m[i * n + j] / (w[j] - w[i]));
}

static void tan_eigh(const fa_rec *p, const double *v, double *t)
{
    const int64_t n = p[1].r, nn = n * n;
    const double *w = v + p->r, *V = w + n;
    double *dw = t + p->r, *dV = dw + n;
    double *S = dalloc(nn), *M = dalloc(nn), *Vt = dalloc(nn);
    dV[nn] = 0.0;
    if (!S || !M || !Vt) { fill_nan(dw, n + nn); free(S); free(M); free(Vt); return; }
    sym_from_lower(t + p->a, S, n);
    transpose(V, Vt, n, n);
    matmul_nn(Vt, S, M, n);
    matmul_nn(M, V, S, n);                 /* S <- V^T S V */
    for (int64_t i = 0; i < n; i++) dw[i] = S[i * n + i];
    eigh_weights(S, w, NULL, n);
    matmul_nn(V, S, dV, n);
    free(S); free(M); free(Vt);
}

void fa_linalg_tan(const fa_rec *p, const double *v, double *t)
{
    switch (p->op) {
    case FA_SOLVE: tan_solve(p, v, t); return;
    case FA_SLOGDET: tan_slogdet(p, v, t); return;
    case FA_CHOLESKY: tan_cholesky(p, v, t); return;
    case FA_TRSOLVE: tan_trsolve(p, v, t); return;
    case FA_EIGH: tan_eigh(p, v, t); return;
    case FA_SVD: tan_svd(p, v, t); return;
    case FA_QR: tan_qr(p, v, t); return;
    case FA_BETAINC: tan_betainc(p, v, t); return;
    case FA_EIG: tan_eig(p, v, t); return;
    default: return;
    }
}

/* ---- adjoints --------------------------------------------------------------------- */

static int all_zero(const double *g, int64_t n)
{
    for (int64_t i = 0; i < n; i++) if (g[i] != 0.0) return 0;
    return 1;
}

static void rev_solve(const fa_rec *p, const double *v, double *g)
{
    const int n = p[1].r, k = p[1].a;
    const int64_t nk = (int64_t)n * k;
    const double *X = v + p->r, *LU = X + nk, *piv = LU + (int64_t)n * n;
    const int pa = (p->flags & FA_A_PASSIVE) != 0, pb = (p->flags & FA_B_PASSIVE) != 0;
    if ((pa && pb) || all_zero(g + p->r, nk)) return;
    double *gb = dalloc(nk);
    int *ip = ipiv_of(piv, n);
    if (!gb || !ip) { free(gb); free(ip); if (!pa) fill_nan(g + p->a, (int64_t)n * n); return; }
    memcpy(gb, g + p->r, (size_t)nk * sizeof(double));
    if (lu_solve_rm(LU, ip, 1, gb, n, k)) fill_nan(gb, nk);    /* A^-T gX */
    if (!pb) for (int64_t i = 0; i < nk; i++) g[p->b + i] += gb[i];
    if (!pa) matmul_bt(gb, X, g + p->a, n, k, n, -1.0);       /* gA -= gB X^T */
    free(gb);
    free(ip);
}

static void rev_slogdet(const fa_rec *p, const double *v, double *g)
{
    const int n = p[1].r;
    const double w = g[p->r];
    if (w == 0.0 || (p->flags & FA_A_PASSIVE)) return;
    const double *LU = v + p->r + 2, *piv = LU + (int64_t)n * n;
    double *inv = inverse_from_lu(LU, piv, n), *gA = g + p->a;
    for (int64_t i = 0; i < n; i++)                 /* gA += w A^-T; NaN if singular */
        for (int64_t j = 0; j < n; j++) gA[i * n + j] += inv ? w * inv[j * n + i] : NAN;
    free(inv);
}

static void rev_cholesky(const fa_rec *p, const double *v, double *g)
{
    const int n = p[1].r;
    const int64_t nn = (int64_t)n * n;
    const double *L = v + p->r, *gL = g + p->r;
    if ((p->flags & FA_A_PASSIVE) || all_zero(gL, nn)) return;
    double *M = dalloc(nn), *W = dalloc(nn), *gA = g + p->a;
    if (!M || !W) { free(M); free(W); fill_nan(gA, nn); return; }
    for (int64_t i = 0; i < n; i++)                /* M = L^T tril(gL) */
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t l = (i > j ? i : j); l < n; l++) acc += L[l * n + i] * gL[l * n + j];
            M[i * n + j] = acc;
        }
    for (int64_t i = 0; i < n; i++) {              /* Phi */
        for (int64_t j = i + 1; j < n; j++) M[i * n + j] = 0.0;
        M[i * n + i] *= 0.5;
    }
    trsm_rm(L, 1, 1, 0, M, n, n);                  /* L^-T Phi */
    transpose(M, W, n, n);
    trsm_rm(L, 1, 1, 0, W, n, n);                  /* W = G^T, G = L^-T Phi L^-1 */
    for (int64_t i = 0; i < n; i++)                /* the lower triangle of A: G + G^T */
        for (int64_t j = 0; j <= i; j++)
            gA[i * n + j] += i == j ? W[i * n + i] : W[j * n + i] + W[i * n + j];
    free(M);
    free(W);
}

static void rev_trsolve(const fa_rec *p, const double *v, double *g)
{
    const int n = p[1].r, k = p[1].a, variant = p[1].b;
    const int64_t nk = (int64_t)n * k;
    const int pa = (p->flags & FA_A_PASSIVE) != 0, pb = (p->flags & FA_B_PASSIVE) != 0;
    if ((pa && pb) || all_zero(g + p->r, nk)) return;
    double *gb = dalloc(nk);
    if (!gb) { if (!pa) fill_nan(g + p->a, (int64_t)n * n); return; }
    memcpy(gb, g + p->r, (size_t)nk * sizeof(double));
    trsm_rm(v + p->a, variant & FA_TRI_LOWER, 1, variant & FA_TRI_UNIT, gb, n, k);
    if (!pb) for (int64_t i = 0; i < nk; i++) g[p->b + i] += gb[i];
    if (!pa) {                                      /* gT -= tri(gB X^T) */
        const double *X = v + p->r;
        double *gT = g + p->a;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                if (!in_triangle(i, j, variant)) continue;
                double acc = 0.0;
                for (int64_t l = 0; l < k; l++) acc += gb[i * k + l] * X[j * k + l];
                gT[i * n + j] -= acc;
            }
    }
    free(gb);
}

static void rev_eigh(const fa_rec *p, const double *v, double *g)
{
    const int64_t n = p[1].r, nn = n * n;
    const double *w = v + p->r, *V = w + n, *gw = g + p->r, *gV = gw + n;
    if ((p->flags & FA_A_PASSIVE) || all_zero(gw, n + nn)) return;
    double *M = dalloc(nn), *K = dalloc(nn), *Vt = dalloc(nn), *gA = g + p->a;
    if (!M || !K || !Vt) { free(M); free(K); free(Vt); fill_nan(gA, nn); return; }
    transpose(V, Vt, n, n);
    matmul_nn(Vt, gV, K, n);               /* V^T gV */
    eigh_weights(K, w, gw, n);             /* diag(gw) + F o (V^T gV) */
    matmul_nn(V, K, M, n);
    matmul_nn(M, Vt, K, n);                /* G = V K V^T */
    for (int64_t i = 0; i < n; i++)        /* the lower triangle of A: G + G^T */
        for (int64_t j = 0; j <= i; j++)
            gA[i * n + j] += i == j ? K[i * n + i] : K[i * n + j] + K[j * n + i];
    free(M); free(K); free(Vt);
}

void fa_linalg_rev(const fa_rec *p, const double *v, double *g)
{
    switch (p->op) {
    case FA_SOLVE: rev_solve(p, v, g); return;
    case FA_SLOGDET: rev_slogdet(p, v, g); return;
    case FA_CHOLESKY: rev_cholesky(p, v, g); return;
    case FA_TRSOLVE: rev_trsolve(p, v, g); return;
    case FA_EIGH: rev_eigh(p, v, g); return;
    case FA_SVD: rev_svd(p, v, g); return;
    case FA_QR: rev_qr(p, v, g); return;
    case FA_BETAINC: rev_betainc(p, v, g); return;
    case FA_EIG: rev_eig(p, v, g); return;
    default: return;
    }
}

void fa_linalg_install(void *getrf, void *getrs, void *getri, void *potrf, void *trsm,
                       void *syevd, void *gesdd, void *geqrf, void *orgqr, void *geev,
                       void *gemm)
{
    fa_lapack.dgeev = (fa_dgeev_t)geev;
    fa_lapack.dgemm = (fa_dgemm_t)gemm;
    fa_lapack.dgesdd = (fa_dgesdd_t)gesdd;
    fa_lapack.dgeqrf = (fa_dgeqrf_t)geqrf;
    fa_lapack.dorgqr = (fa_dorgqr_t)orgqr;
    fa_lapack.dsyevd = (fa_dsyevd_t)syevd;
    fa_lapack.dgetrs = (fa_dgetrs_t)getrs;
    fa_lapack.dgetri = (fa_dgetri_t)getri;
    fa_lapack.dpotrf = (fa_dpotrf_t)potrf;
    fa_lapack.dtrsm = (fa_dtrsm_t)trsm;
    fa_lapack.dgetrf = (fa_dgetrf_t)getrf;     /* last: the kernels test this one */
}
