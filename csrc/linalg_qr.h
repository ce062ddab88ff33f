/*
 * linalg_qr.h -- the QR record's kernels (linalg.h), included once by linalg.c after its
 * row-major helpers (trsm_rm, transpose, dalloc) and linalg_svd.h's svd_mm.
 *
 *   QR    A = Q R,  A m x n (row-major), m >= n: Q m x n with orthonormal columns,
 *         R n x n upper triangular; results Q, R, LAPACK info
 *
 * Value: LAPACK dgeqrf then dorgqr on A in column-major order -- numpy's own calls for
 * mode 'reduced', so R's diagonal signs are numpy's.
 *
 * Rules (Walter & Lehmann, "Algorithmic differentiation of linear algebra functions with
 * application in optimum experimental design" (2018); Seeger et al. (2017)):
 *   tangent   X = dA R^-1,  C = Q^T X,  W = tril(C, -1) - tril(C, -1)^T
 *             dR = (C - W) R,   dQ = X + Q (W - C)
 *   adjoint   M = R gR^T - gQ^T Q,  gA = (gQ + Q copyltu(M)) R^-T
 *             copyltu(M) = tril(M) + tril(M, -1)^T
 * A zero on R's diagonal (a rank-deficient A) makes R^-1 infinite: the derivative is then
 * inf/NaN, as the factorization's is not unique there.
 */

static int fwd_qr(const fa_rec *p, double *v)
{
    const int64_t m64 = p[1].r, n64 = p[1].a;
    double *Q = v + p->r, *R = Q + m64 * n64, *info_slot = R + n64 * n64;
    *info_slot = -1.0;
    if (!fa_lapack.dgeqrf || !fa_lapack.dorgqr || m64 < n64) return 1;
    int m = (int)m64, n = (int)n64, info = 0, lwork = -1;
    double query = 0.0, query2 = 0.0;
    double *a = dalloc(m64 * n64), *tau = dalloc(n64), *work = NULL;
    if (!a || !tau) goto done;
    fa_lapack.dgeqrf(&m, &n, a, &m, tau, &query, &lwork, &info);
    if (info != 0) goto done;
    fa_lapack.dorgqr(&m, &n, &n, a, &m, tau, &query2, &lwork, &info);
    if (info != 0) goto done;
    if (query2 > query) query = query2;
    if (!(query >= 1.0) || query > (double)INT32_MAX) goto done;
    lwork = (int)query;
    work = dalloc(lwork);
    if (!work) goto done;
    transpose(v + p->a, a, m64, n64);          /* row-major A -> column-major */
    fa_lapack.dgeqrf(&m, &n, a, &m, tau, work, &lwork, &info);
    if (info != 0) { *info_slot = (double)info; goto done; }
    for (int64_t i = 0; i < n64; i++)          /* R: the upper triangle of a's top rows */
        for (int64_t j = 0; j < n64; j++) R[i * n64 + j] = j >= i ? a[j * m64 + i] : 0.0;
    fa_lapack.dorgqr(&m, &n, &n, a, &m, tau, work, &lwork, &info);
    *info_slot = (double)info;
    transpose(a, Q, n64, m64);                 /* column-major Q (m x n) -> row-major */
done:
    free(a); free(tau); free(work);
    return *info_slot != 0.0;
}

/* X (m x n) <- X R^-1 for upper triangular R (n x n): R^T X^T = X^T, through trsm_rm */
static int qr_right_solve(const double *R, double *X, int64_t m, int64_t n, int trans)
{
    double *Xt = dalloc(m * n);
    if (!Xt) return -1;
    transpose(X, Xt, m, n);                    /* n x m */
    trsm_rm(R, 0, trans ? 0 : 1, 0, Xt, (int)n, (int)m);   /* R^-T X^T, or R^-1 X^T */
    transpose(Xt, X, n, m);
    free(Xt);
    return 0;
}

static void tan_qr(const fa_rec *p, const double *v, double *t)
{
    const int64_t m = p[1].r, n = p[1].a;
    const double *Q = v + p->r, *R = Q + m * n;
    double *dQ = t + p->r, *dR = dQ + m * n;
    double *C = dalloc(n * n), *W = dalloc(n * n);
    dR[n * n] = 0.0;
    memcpy(dQ, t + p->a, (size_t)(m * n) * sizeof(double));          /* X = dA */
    if (!C || !W || qr_right_solve(R, dQ, m, n, 0)) {                 /* X = dA R^-1 */
        fill_nan(dQ, m * n + n * n);
        free(C); free(W);
        return;
    }
    svd_mm(Q, 1, dQ, 0, C, n, m, n, 0.0);                             /* C = Q^T X */
    for (int64_t i = 0; i < n; i++)                                   /* W - C */
        for (int64_t j = 0; j < n; j++) {
            const double w = i > j ? C[i * n + j] : i < j ? -C[j * n + i] : 0.0;
            W[i * n + j] = w - C[i * n + j];
        }
    svd_mm(Q, 0, W, 0, dQ, m, n, n, 1.0);                             /* dQ = X + Q (W - C) */
    for (int64_t i = 0; i < n; i++)                                   /* dR = (C - W) R */
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t l = i; l <= j; l++) acc -= W[i * n + l] * R[l * n + j];
            dR[i * n + j] = j >= i ? acc : 0.0;
        }
    free(C);
    free(W);
}

static void rev_qr(const fa_rec *p, const double *v, double *g)
{
    const int64_t m = p[1].r, n = p[1].a;
    const double *Q = v + p->r, *R = Q + m * n, *gQ = g + p->r, *gR = gQ + m * n;
    double *gA = g + p->a;
    if (p->flags & FA_A_PASSIVE) return;
    int zero = 1;
    for (int64_t i = 0; i < m * n + n * n && zero; i++) zero = gQ[i] == 0.0;
    if (zero) return;
    double *M = dalloc(n * n), *B = dalloc(m * n), *S = dalloc(n * n);
    if (!M || !B || !S) { fill_nan(gA, m * n); free(M); free(B); free(S); return; }
    svd_mm(R, 0, gR, 1, M, n, n, n, 0.0);                             /* R gR^T */
    svd_mm(gQ, 1, Q, 0, M, n, m, n, -1.0);                            /* -(M) + gQ^T Q */
    for (int64_t i = 0; i < n; i++)                                   /* copyltu(M) */
        for (int64_t j = 0; j < n; j++) S[i * n + j] = -(i >= j ? M[i * n + j] : M[j * n + i]);
    memcpy(B, gQ, (size_t)(m * n) * sizeof(double));
    svd_mm(Q, 0, S, 0, B, m, n, n, 1.0);                              /* gQ + Q copyltu */
    if (qr_right_solve(R, B, m, n, 1)) fill_nan(B, m * n);            /* B R^-T */
    for (int64_t i = 0; i < m * n; i++) gA[i] += B[i];
    free(M); free(B); free(S);
}
