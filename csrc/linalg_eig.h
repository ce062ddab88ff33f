/*
 * linalg_eig.h -- the EIG record's kernels (linalg.h): the eigendecomposition of a general
 * (non-symmetric) real matrix whose spectrum is real.  Included once by linalg.c after
 * its row-major helpers and linalg_svd.h's svd_mm.
 *
 *   EIG   A = V diag(w) V^-1,  A n x n (row-major);  EXT n
 *         results: w (n), V (n x n, eigenvectors in columns, unit 2-norm), V^-1 (n x n,
 *         kept for the reverse sweep), info (1)
 *
 * Value: LAPACK dgeev (jobvl 'N', jobvr 'V') on A in column-major order -- numpy's own
 * call, so eigenvalue order and eigenvector signs are numpy's.  A complex eigenvalue
 * (some wi != 0) is not an answer this record can give: info is set to -2 and the forward
 * kernel reports failure, so a trace raises (fastad.linalg says what to do) and a replay
 * at such a matrix stops and traces again, which raises -- never a silently wrong number.
 *
 * Rules (Giles, "An extended collection of matrix derivative results for forward and
 * reverse mode AD" (2008), sec. 3.1; with the unit-norm normalization of the columns as
 * JAX's eig rule), with F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it, and "o" an
 * absolute-zero product:
 *   tangent   P = V^-1 dA V;  dw = diag(P);  dV0 = V (F o P);
 *             dV = dV0 - V diag(c), c_j = v_j . dv0_j  (keeps each column at unit norm)
 *   adjoint   G0 = gV - V diag(c), c_j = v_j . gv_j;  gA = V^-T (diag(gw) + F o (V^T G0)) V^T
 * Repeated eigenvalues make F infinite (a derivative through their eigenvectors is then
 * inf/NaN); a defective matrix (V singular) has no eigen-derivative: V^-1 is NaN.
 */

static double eig_f(const double *w, int64_t i, int64_t j)
{
    return i == j ? 0.0 : 1.0 / (w[j] - w[i]);
}

/* the inverse of V (row-major), through LU; NaN where V is singular */
static void eig_inverse(const double *V, double *Vi, int n)
{
    int info = 0, lwork = 64 * n;
    int *ip = (int *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    double *work = dalloc(lwork);
    if (!ip || !work) { fill_nan(Vi, (int64_t)n * n); free(ip); free(work); return; }
    memcpy(Vi, V, (size_t)n * n * sizeof(double));     /* V^T to LAPACK: its inverse is Vi^T */
    fa_lapack.dgetrf(&n, &n, Vi, &n, ip, &info);
    if (info == 0) fa_lapack.dgetri(&n, Vi, &n, ip, work, &lwork, &info);
    if (info != 0) fill_nan(Vi, (int64_t)n * n);
    free(ip);
    free(work);
}

static int fwd_eig(const fa_rec *p, double *v)
{
    const int64_t n64 = p[1].r, nn = n64 * n64;
    double *w = v + p->r, *V = w + n64, *Vi = V + nn, *info_slot = Vi + nn;
    *info_slot = -1.0;
    if (!fa_lapack.dgeev || n64 > 20000) return 1;
    int n = (int)n64, info = 0, lwork = -1, one = 1;
    char jobvl = 'N', jobvr = 'V';
    double query = 0.0, dummy = 0.0;
    double *a = dalloc(nn), *wi = dalloc(n64), *vr = dalloc(nn), *work = NULL;
    if (!a || !wi || !vr) goto done;
    fa_lapack.dgeev(&jobvl, &jobvr, &n, a, &n, w, wi, &dummy, &one, vr, &n, &query, &lwork, &info);
    if (info != 0 || !(query >= 1.0) || query > (double)INT32_MAX) goto done;
    lwork = (int)query;
    work = dalloc(lwork);
    if (!work) goto done;
    transpose(v + p->a, a, n64, n64);              /* row-major A -> column-major */
    fa_lapack.dgeev(&jobvl, &jobvr, &n, a, &n, w, wi, &dummy, &one, vr, &n, work, &lwork, &info);
    *info_slot = (double)info;
    if (info != 0) goto done;
    for (int64_t i = 0; i < n64; i++)
        if (wi[i] != 0.0) { *info_slot = -2.0; goto done; }   /* a complex pair */
    transpose(vr, V, n64, n64);                    /* column j of vr is vector j */
    eig_inverse(V, Vi, n);
done:
    if (*info_slot != 0.0) fill_nan(w, n64 + 2 * nn);
    free(a); free(wi); free(vr); free(work);
    return *info_slot != 0.0;
}

static void tan_eig(const fa_rec *p, const double *v, double *t)
{
    const int64_t n = p[1].r, nn = n * n;
    const double *w = v + p->r, *V = w + n, *Vi = V + nn;
    double *dw = t + p->r, *dV = dw + n;
    double *T = dalloc(nn), *P = dalloc(nn);
    for (int64_t i = 0; i <= nn; i++) dV[nn + i] = 0.0;  /* V^-1 and info: internal slots */
    if (!T || !P) { fill_nan(dw, n + nn); free(T); free(P); return; }
    svd_mm(t + p->a, 0, V, 0, T, n, n, n, 0.0);          /* dA V */
    svd_mm(Vi, 0, T, 0, P, n, n, n, 0.0);                /* P = V^-1 dA V */
    for (int64_t i = 0; i < n; i++) dw[i] = P[i * n + i];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) P[i * n + j] = svd_az(eig_f(w, i, j), P[i * n + j]);
    svd_mm(V, 0, P, 0, dV, n, n, n, 0.0);                /* dV0 = V (F o P) */
    for (int64_t j = 0; j < n; j++) {                    /* - V diag(c) */
        double c = 0.0;
        for (int64_t i = 0; i < n; i++) c += V[i * n + j] * dV[i * n + j];
        for (int64_t i = 0; i < n; i++) dV[i * n + j] -= V[i * n + j] * c;
    }
    free(T);
    free(P);
}

static void rev_eig(const fa_rec *p, const double *v, double *g)
{
    const int64_t n = p[1].r, nn = n * n;
    const double *w = v + p->r, *V = w + n, *Vi = V + nn, *gw = g + p->r, *gV = gw + n;
    if (p->flags & FA_A_PASSIVE) return;
    int zero = 1;
    for (int64_t i = 0; i < n + nn && zero; i++) zero = gw[i] == 0.0;
    if (zero) return;
    /* calloc: GCC cannot see that the loop below fills G0 (-Wmaybe-uninitialized) */
    double *G0 = (double *)calloc((size_t)(nn > 0 ? nn : 1), sizeof(double));
    double *K = dalloc(nn), *T = dalloc(nn);
    if (!G0 || !K || !T) { fill_nan(g + p->a, nn); free(G0); free(K); free(T); return; }
    for (int64_t j = 0; j < n; j++) {                    /* G0 = gV - V diag(c) */
        double c = 0.0;
        for (int64_t i = 0; i < n; i++) c += V[i * n + j] * gV[i * n + j];
        for (int64_t i = 0; i < n; i++) G0[i * n + j] = gV[i * n + j] - V[i * n + j] * c;
    }
    svd_mm(V, 1, G0, 0, K, n, n, n, 0.0);                /* V^T G0 */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            K[i * n + j] = svd_az(eig_f(w, i, j), K[i * n + j]) + (i == j ? gw[i] : 0.0);
    svd_mm(K, 0, V, 1, T, n, n, n, 0.0);                 /* K V^T */
    svd_mm(Vi, 1, T, 0, g + p->a, n, n, n, 1.0);         /* gA += V^-T K V^T */
    free(G0); free(K); free(T);
}
