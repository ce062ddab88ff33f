/*
 * linalg_qr_emit.h -- the recorded adjoint of the QR record (linalg_qr.h), included by
 * linalg_emit.h: gA = (gQ + Q copyltu(M)) R^-T with M = R gR^T - gQ^T Q, written with
 * matmuls, transposes, constant triangle masks and a TRSOLVE, so it is differentiable
 * again.
 */
static void rev_qr_emit(fa_em *E, int32_t *adj, const fa_rec *p, int64_t m, int64_t n)
{
    fa_em em = {E->t, m * n, 0};
    fa_h gQ = adjoint_range(&em, adj, p->r, m * n);
    fa_h gR = adjoint_range(&em, adj, p->r + (int32_t)(m * n), n * n);
    if (em.err || (bad(gQ) && bad(gR))) { if (em.err) E->err = em.err; return; }
    fa_h Q = {p->r, 1}, R = {p->r + (int32_t)(m * n), 1}, M = BAD;
    em.n = m * n; gQ = e_broadcast(&em, gQ);
    em.n = n * n; gR = e_broadcast(&em, gR);
    if (!bad(gR))
        M = matmul(&em, R, transposed(&em, gR.s, n, n), n, n, n);
    if (!bad(gQ)) {
        fa_h t = matmul(&em, transposed(&em, gQ.s, m, n), Q, n, m, n);
        M = bad(M) ? e_op(&em, FA_NEGATIVE, t, t, 1) : e_op(&em, FA_SUBTRACT, M, t, 2);
    }
    if (bad(M)) { if (em.err) E->err = em.err; return; }
    fa_h S = e_op(&em, FA_ADD, e_op(&em, FA_MULTIPLY, M, mask(&em, n, FA_TRI_LOWER, MASK_TRI), 2),
                  e_op(&em, FA_MULTIPLY, transposed(&em, M.s, n, n),
                       mask(&em, n, FA_TRI_UNIT, MASK_TRI), 2), 2);      /* copyltu(M) */
    em.n = m * n;
    fa_h B = matmul(&em, Q, S, m, n, n);
    if (!bad(gQ)) B = e_op(&em, FA_ADD, B, gQ, 2);
    if (bad(B)) { if (em.err) E->err = em.err; return; }
    /* B R^-T = (R^-1 B^T)^T: one TRSOLVE with R (upper) over B^T (n x m) */
    fa_h Xt = linalg(&em, FA_TRSOLVE, R, transposed(&em, B.s, m, n), n, m, 0);
    if (!bad(Xt)) add_to_range(&em, adj, p->a, transposed(&em, Xt.s, n, m));
    if (em.err) E->err = em.err;
}
