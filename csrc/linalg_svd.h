/*
 * linalg_svd.h -- the SVD record's kernels (linalg.h), included once by linalg.c.
 *
 *   SVD   A = U diag(s) Vt,  A m x n (row-major), k = min(m, n), the thin factorization
 *         results: U (m x k), s (k, descending), Vt (k x n), LAPACK info (1)
 *
 * Value: LAPACK dgesdd (jobz 'S') on A in column-major order -- numpy's own call, so the
 * same input to the same algorithm gives numpy's singular-vector signs.
 *
 * Rules (Townsend, "Differentiating the singular value decomposition" (2016); Seeger et
 * al., "Auto-differentiating linear algebra" (2017)), with S = diag(s),
 * F_ij = 1 / (s_j^2 - s_i^2) off the diagonal and 0 on it, and "o" the absolute-zero
 * product (a zero factor gives 0 even where F or 1/s is infinite):
 *
 *   tangent   dP = U^T dA V;  ds = diag(dP)
 *             dU = U (F o (dP S + S dP^T)) + (I - U U^T) dA V S^-1
 *             dV = V (F o (S dP + dP^T S)) + (I - V V^T) dA^T U S^-1
 *   adjoint   J = U^T gU, K = V^T gV
 *             gA = U [(F o (J - J^T)) S + diag(gs) + S (F o (K - K^T))] Vt
 *                + (I - U U^T) gU S^-1 Vt + U S^-1 gV^T (I - V V^T)
 *
 * The projector terms vanish when U (or V) is square and are then skipped (rounding
 * divided by a zero singular value would otherwise give inf).  Repeated nonzero singular
 * values make F infinite: a derivative that flows through their singular vectors is then
 * inf/NaN, while one through the singular values alone stays finite.
 */

static int64_t svd_nres(int64_t m, int64_t n)
{
    const int64_t k = m < n ? m : n;
    return m * k + k + k * n + 1;
}

static double *svd_alloc(int64_t n) { return (double *)malloc((size_t)(n > 0 ? n : 1) * sizeof(double)); }

/* C (m x p) = op(A) op(B) + beta C (beta 0: C is not read), row-major; op(A) is m x q (A stored q x m if ta),
 * op(B) is q x p (B stored p x q if tb) */
static void svd_mm(const double *A, int ta, const double *B, int tb, double *C,
                   int64_t m, int64_t q, int64_t p, double beta)
{
    if (fa_lapack.dgemm && m > 0 && q > 0 && p > 0 && m * q <= INT32_MAX && q * p <= INT32_MAX
        && m * p <= INT32_MAX) {
        /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B's and A's
         * buffers read column-major are their transposes, so the flags carry over; with
         * beta 0 BLAS does not read C */
        char tra = tb ? 'T' : 'N', trb = ta ? 'T' : 'N';
        int M = (int)p, N = (int)m, K = (int)q, lda = (int)(tb ? q : p), ldb = (int)(ta ? m : q);
        double one = 1.0, b = beta;
        fa_lapack.dgemm(&tra, &trb, &M, &N, &K, &one, (double *)B, &lda, (double *)A, &ldb, &b,
                        C, &M);
        return;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < p; j++) {
            double acc = 0.0;
            for (int64_t l = 0; l < q; l++)
                acc += (ta ? A[l * m + i] : A[i * q + l]) * (tb ? B[j * q + l] : B[l * p + j]);
            C[i * p + j] = beta == 0.0 ? acc : beta * C[i * p + j] + acc;   /* C may be garbage */
        }
}

static double svd_az(double a, double b) { return (a == 0.0 || b == 0.0) ? 0.0 : a * b; }

static double svd_f(const double *s, int64_t i, int64_t j)
{
    return i == j ? 0.0 : 1.0 / (s[j] * s[j] - s[i] * s[i]);
}

static int fwd_svd(const fa_rec *p, double *v)
{
    const int64_t m64 = p[1].r, n64 = p[1].a, k64 = m64 < n64 ? m64 : n64;
    double *U = v + p->r, *s = U + m64 * k64, *Vt = s + k64, *info_slot = Vt + k64 * n64;
    *info_slot = -1.0;
    if (!fa_lapack.dgesdd || 8 * k64 > INT32_MAX) return 1;
    int m = (int)m64, n = (int)n64, k = (int)k64, info = 0, lwork = -1;
    char jobz = 'S';
    double query = 0.0;
    double *a = svd_alloc(m64 * n64), *u = svd_alloc(m64 * k64), *vt = svd_alloc(k64 * n64);
    int *iwork = (int *)malloc((size_t)(8 * k64) * sizeof(int));
    double *work = NULL;
    if (!a || !u || !vt || !iwork) goto done;
    fa_lapack.dgesdd(&jobz, &m, &n, a, &m, s, u, &m, vt, &k, &query, &lwork, iwork, &info);
    if (info != 0 || !(query >= 1.0) || query > (double)INT32_MAX) goto done;
    lwork = (int)query;
    work = svd_alloc(lwork);
    if (!work) goto done;
    for (int64_t i = 0; i < m64; i++)            /* row-major A -> column-major */
        for (int64_t j = 0; j < n64; j++) a[j * m64 + i] = v[p->a + i * n64 + j];
    fa_lapack.dgesdd(&jobz, &m, &n, a, &m, s, u, &m, vt, &k, work, &lwork, iwork, &info);
    *info_slot = (double)info;
    for (int64_t i = 0; i < m64; i++)            /* column-major u (m x k) -> row-major */
        for (int64_t j = 0; j < k64; j++) U[i * k64 + j] = u[j * m64 + i];
    for (int64_t i = 0; i < k64; i++)            /* column-major vt (k x n) -> row-major */
        for (int64_t j = 0; j < n64; j++) Vt[i * n64 + j] = vt[j * k64 + i];
done:
    free(a); free(u); free(vt); free(iwork); free(work);
    return *info_slot != 0.0;
}

static void tan_svd(const fa_rec *p, const double *v, double *t)
{
    const int64_t m = p[1].r, n = p[1].a, k = m < n ? m : n;
    const double *U = v + p->r, *s = U + m * k, *Vt = s + k, *dA = t + p->a;
    double *dU = t + p->r, *ds = dU + m * k, *dVt = ds + k;
    double *T1 = svd_alloc(m * k), *T2 = svd_alloc(n * k), *dP = svd_alloc(k * k),
           *X = svd_alloc(k * k), *dV = svd_alloc(n * k);
    dVt[k * n] = 0.0;
    if (!T1 || !T2 || !dP || !X || !dV) {
        for (int64_t i = 0; i < m * k + k + k * n; i++) dU[i] = NAN;
        goto done;
    }
    svd_mm(dA, 0, Vt, 1, T1, m, n, k, 0.0);       /* dA V */
    svd_mm(U, 1, T1, 0, dP, k, m, k, 0.0);        /* dP = U^T dA V */
    for (int64_t i = 0; i < k; i++) ds[i] = dP[i * k + i];
    for (int64_t i = 0; i < k; i++)               /* F o (dP S + S dP^T) */
        for (int64_t j = 0; j < k; j++)
            X[i * k + j] = svd_az(svd_f(s, i, j), dP[i * k + j] * s[j] + s[i] * dP[j * k + i]);
    svd_mm(U, 0, X, 0, dU, m, k, k, 0.0);
    if (m > k) {                                  /* + (dA V - U dP) S^-1 */
        svd_mm(U, 0, dP, 0, T1, m, k, k, -1.0);   /* T1 <- U dP - dA V */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++) dU[i * k + j] -= svd_az(T1[i * k + j], 1.0 / s[j]);
    }
    for (int64_t i = 0; i < k; i++)               /* F o (S dP + dP^T S) */
        for (int64_t j = 0; j < k; j++)
            X[i * k + j] = svd_az(svd_f(s, i, j), s[i] * dP[i * k + j] + dP[j * k + i] * s[j]);
    svd_mm(Vt, 1, X, 0, dV, n, k, k, 0.0);        /* V (F o ...) */
    if (n > k) {                                  /* + (dA^T U - V dP^T) S^-1 */
        svd_mm(dA, 1, U, 0, T2, n, m, k, 0.0);
        svd_mm(Vt, 1, dP, 1, T2, n, k, k, -1.0);  /* T2 <- V dP^T - dA^T U */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) dV[i * k + j] -= svd_az(T2[i * k + j], 1.0 / s[j]);
    }
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < n; j++) dVt[i * n + j] = dV[j * k + i];
done:
    free(T1); free(T2); free(dP); free(X); free(dV);
}

static void rev_svd(const fa_rec *p, const double *v, double *g)
{
    const int64_t m = p[1].r, n = p[1].a, k = m < n ? m : n;
    const double *U = v + p->r, *s = U + m * k, *Vt = s + k;
    const double *gU = g + p->r, *gs = gU + m * k, *gVt = gs + k;
    double *gA = g + p->a;
    if (p->flags & FA_A_PASSIVE) return;
    int zero = 1;
    for (int64_t i = 0; i < m * k + k + k * n && zero; i++) zero = gU[i] == 0.0;
    if (zero) return;
    double *J = svd_alloc(k * k), *K = svd_alloc(k * k), *In = svd_alloc(k * k),
           *L = svd_alloc(m * k), *R = svd_alloc(k * n);
    if (!J || !K || !In || !L || !R) {
        for (int64_t i = 0; i < m * n; i++) gA[i] = NAN;
        goto done;
    }
    svd_mm(U, 1, gU, 0, J, k, m, k, 0.0);         /* J = U^T gU */
    svd_mm(Vt, 0, gVt, 1, K, k, n, k, 0.0);       /* K = V^T gV = Vt gVt^T */
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            const double f = svd_f(s, i, j);
            In[i * k + j] = svd_az(f, J[i * k + j] - J[j * k + i]) * s[j]
                          + s[i] * svd_az(f, K[i * k + j] - K[j * k + i])
                          + (i == j ? gs[i] : 0.0);
        }
    svd_mm(U, 0, In, 0, L, m, k, k, 0.0);         /* L = U In */
    if (m > k) {                                  /* + (gU - U J) S^-1 */
        double *W = svd_alloc(m * k);
        if (!W) { for (int64_t i = 0; i < m * n; i++) gA[i] = NAN; goto done; }
        memcpy(W, gU, (size_t)(m * k) * sizeof(double));
        svd_mm(U, 0, J, 0, W, m, k, k, -1.0);     /* W <- U J - gU */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++) L[i * k + j] -= svd_az(W[i * k + j], 1.0 / s[j]);
        free(W);
    }
    svd_mm(L, 0, Vt, 0, gA, m, k, n, 1.0);        /* gA += L Vt */
    if (n > k) {                                  /* + U S^-1 (gVt - K^T Vt) */
        memcpy(R, gVt, (size_t)(k * n) * sizeof(double));
        svd_mm(K, 1, Vt, 0, R, k, k, n, -1.0);    /* R <- K^T Vt - gVt */
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < n; j++) R[i * n + j] = -svd_az(R[i * n + j], 1.0 / s[i]);
        svd_mm(U, 0, R, 0, gA, m, k, n, 1.0);     /* gA += U R */
    }
done:
    free(J); free(K); free(In); free(L); free(R);
}
