/*
 * linalg_svd_emit.h -- the recorded adjoint of the SVD record (linalg_svd.h), included by
 * linalg_emit.h.  The rule of linalg_svd.h written with matmuls, transposes (gathers),
 * elementwise ops and constant masks, so it is differentiable again:
 *
 *   gA = (U In + (gU - U J) S^-1) Vt + U S^-1 (gVt - K^T Vt)
 *   In = (F o (J - J^T)) S + diag(gs) + S (F o (K - K^T)),  J = U^T gU,  K = Vt gVt^T
 *
 * with F_ij = [i != j] / (s_j^2 - s_i^2) and every product by F or 1/s absolute-zero.
 */

/* the k x k index maps i (rows) and j (columns), or NULL without memory */
static int64_t *svd_index_map(int64_t k, int cols)
{
    int64_t *map = (int64_t *)malloc((size_t)(k * k) * sizeof(int64_t));
    if (map)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) map[i * k + j] = cols ? j : i;
    return map;
}

/* out_ij = h[map_ij] for a k-vector h over rows x cols with map = the column (or row) */
static fa_h svd_spread(fa_em *E, fa_h h, int64_t rows, int64_t cols, int by_col)
{
    int64_t *map = (int64_t *)malloc((size_t)(rows * cols) * sizeof(int64_t));
    if (!map) { E->err = FA_ENOMEM; return BAD; }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) map[i * cols + j] = by_col ? j : i;
    fa_h g = regather(E, h, map, rows * cols);
    free(map);
    return g;
}

static void rev_svd_emit(fa_em *E, int32_t *adj, const fa_rec *p, int64_t m, int64_t n)
{
    const int64_t k = m < n ? m : n;
    fa_em em = {E->t, m * k, 0};
    fa_h gU = adjoint_range(&em, adj, p->r, m * k);
    fa_h gs = adjoint_range(&em, adj, p->r + (int32_t)(m * k), k);
    fa_h gVt = adjoint_range(&em, adj, p->r + (int32_t)(m * k + k), k * n);
    if (em.err || (bad(gU) && bad(gs) && bad(gVt))) { if (em.err) E->err = em.err; return; }
    fa_h U = {p->r, 1}, s = {p->r + (int32_t)(m * k), 1}, Vt = {p->r + (int32_t)(m * k + k), 1};
    if (k == 1) s.st = 0;
    em.n = m * k; gU = e_broadcast(&em, gU);
    em.n = k * n; gVt = e_broadcast(&em, gVt);
    int64_t *rows = svd_index_map(k, 0), *cols = svd_index_map(k, 1);
    if (!rows || !cols) { free(rows); free(cols); E->err = FA_ENOMEM; return; }
    em.n = k * k;
    fa_h s_i = regather(&em, s, rows, k * k), s_j = regather(&em, s, cols, k * k);
    fa_h In = BAD, J = BAD, K = BAD, F = BAD;
    if (!bad(gU) || !bad(gVt)) {
        fa_h d = e_op(&em, FA_SUBTRACT, e_op(&em, FA_MULTIPLY, s_j, s_j, 2),
                      e_op(&em, FA_MULTIPLY, s_i, s_i, 2), 2);            /* s_j^2 - s_i^2 */
        fa_h off = e_op(&em, FA_ADD, mask(&em, k, FA_TRI_UNIT, MASK_TRI),
                        mask(&em, k, FA_TRI_LOWER | FA_TRI_UNIT, MASK_TRI), 2);
        F = e_op(&em, FA_AZMUL, off, e_op(&em, FA_RECIPROCAL, d, d, 1), 2);
    }
    if (!bad(gU)) {
        J = matmul(&em, transposed(&em, U.s, m, k), gU, k, m, k);
        if (bad(J)) goto out;
        fa_h skew = e_op(&em, FA_SUBTRACT, J, transposed(&em, J.s, k, k), 2);
        In = e_op(&em, FA_MULTIPLY, e_op(&em, FA_AZMUL, F, skew, 2), s_j, 2);
    }
    if (!bad(gVt)) {
        K = matmul(&em, Vt, transposed(&em, gVt.s, k, n), k, n, k);
        if (bad(K)) goto out;
        fa_h skew = e_op(&em, FA_SUBTRACT, K, transposed(&em, K.s, k, k), 2);
        fa_h term = e_op(&em, FA_MULTIPLY, s_i, e_op(&em, FA_AZMUL, F, skew, 2), 2);
        In = bad(In) ? term : e_op(&em, FA_ADD, In, term, 2);
    }
    if (!bad(gs)) {
        fa_h D = e_op(&em, FA_MULTIPLY, mask(&em, k, 0, MASK_EYE),
                      regather(&em, gs, rows, k * k), 2);                /* diag(gs) */
        In = bad(In) ? D : e_op(&em, FA_ADD, In, D, 2);
    }
    em.n = k;
    fa_h rs = e_op(&em, FA_RECIPROCAL, s, s, 1);                           /* 1/s */
    em.n = m * k;
    fa_h L = matmul(&em, U, In, m, k, k);
    if (!bad(gU) && m > k) {                       /* + (gU - U J) S^-1 */
        fa_h W = e_op(&em, FA_SUBTRACT, gU, matmul(&em, U, J, m, k, k), 2);
        L = e_op(&em, FA_ADD, L, e_op(&em, FA_AZMUL, W, svd_spread(&em, rs, m, k, 1), 2), 2);
    }
    em.n = m * n;
    fa_h gA = matmul(&em, L, Vt, m, k, n);
    if (!bad(gVt) && n > k) {                      /* + U S^-1 (gVt - K^T Vt) */
        em.n = k * n;
        fa_h W = e_op(&em, FA_SUBTRACT, gVt, matmul(&em, transposed(&em, K.s, k, k), Vt, k, k, n), 2);
        W = e_op(&em, FA_AZMUL, W, svd_spread(&em, rs, k, n, 0), 2);
        em.n = m * n;
        gA = e_op(&em, FA_ADD, gA, matmul(&em, U, W, m, k, n), 2);
    }
    add_to_range(&em, adj, p->a, gA);
out:
    free(rows);
    free(cols);
    if (em.err) E->err = em.err;
}
