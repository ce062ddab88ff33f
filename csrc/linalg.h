/*
 * linalg.h -- the structural linear-algebra records (docs/linalg.md) and their kernels.
 *
 * Four records, each a ranged record whose result range also holds what its derivative
 * rules need, so a reverse sweep never refactors the matrix:
 *
 *   SOLVE     X = A^-1 B          a: A (n x n), b: B (n x k);  EXT n, k
 *             results: X (n*k), LU of A^T (n*n), pivots (n), LAPACK info (1)
 *   SLOGDET   log|det A|, sign     a: A (n x n);  EXT n
 *             results: logabsdet, sign, LU (n*n), pivots (n), info (1)
 *   CHOLESKY  L, A = L L^T         a: A (n x n, its lower triangle is read);  EXT n
 *             results: L (n*n, zeros above the diagonal), info (1)
 *   TRSOLVE   X = T^-1 B           a: T (n x n, one triangle read), b: B (n x k);
 *             EXT n, k, variant (FA_TRI_LOWER | FA_TRI_UNIT)
 *             results: X (n*k), info (1)
 *   EIGH      A = V diag(w) V^T    a: A (n x n, its lower triangle is read);  EXT n
 *             results: w (n, ascending), V (n*n, eigenvectors in columns), info (1)
 *   SVD       A = U diag(s) Vt     a: A (m x n, rectangular);  EXT m, n  (k = min(m, n))
 *             results: U (m*k), s (k, descending), Vt (k*n), info (1)   (linalg_svd.h)
 *   QR        A = Q R              a: A (m x n, m >= n);  EXT m, n
 *             results: Q (m*n, orthonormal columns), R (n*n, upper), info (1)  (linalg_qr.h)
 *   BETAINC   I_x(a, b)            a: a then b (2n), b: x (n);  EXT n, 1, variant
 *             results: value, its partials in a, b, x (n each), info (1)  (linalg_betainc.h)
 *   EIG       A = V diag(w) V^-1   a: A (n x n);  EXT n
 *             results: w (n), V (n*n), V^-1 (n*n), info (1; -2: a complex eigenvalue)
 *             (linalg_eig.h)
 *
 * Matrices are row-major ranges of slots.  LAPACK is column-major, so a row-major buffer
 * is the transpose to it; the kernels in linalg.c say which transpose they mean.
 *
 * A forward kernel returns 1 where numpy/scipy raise LinAlgError (a singular SOLVE or
 * TRSOLVE, a CHOLESKY of a matrix that is not positive definite): the replay then treats
 * the tape as not fitting and traces again, and the trace raises numpy's error.  SLOGDET
 * of a singular matrix is not an error (sign 0, logabsdet -inf, as numpy).
 *
 * LAPACK/BLAS are scipy's (scipy.linalg.cython_lapack / cython_blas), reached through
 * the table fa_lapack that fastad._tape fills once at import (read-only afterwards); a
 * kernel finding it empty reports failure instead of calling through NULL.
 */
#ifndef FASTAD_LINALG_H
#define FASTAD_LINALG_H

#include <stdint.h>
#include "tape.h"

/* Is op one of the records of this file?  (They are consecutive in ops.h.) */
#define FA_IS_LINALG(op) ((op) >= FA_SOLVE && (op) <= FA_EIG)

#define FA_TRI_LOWER 1
#define FA_TRI_UNIT 2

/* BETAINC's variant: the derivative order (i, j, l) in (a, b, x), 3 bits each, and the
 * complement flag (1 - I) */
#define FA_BETAINC_COMPL 512
#define FA_BETAINC_DA 1
#define FA_BETAINC_DB 8
#define FA_BETAINC_DX 64
#define FA_BETAINC_ORDER(v) (((v) & 7) + (((v) >> 3) & 7) + (((v) >> 6) & 7))

typedef void (*fa_dgetrf_t)(int *m, int *n, double *a, int *lda, int *ipiv, int *info);
typedef void (*fa_dgetrs_t)(char *trans, int *n, int *nrhs, double *a, int *lda, int *ipiv,
                            double *b, int *ldb, int *info);
typedef void (*fa_dgetri_t)(int *n, double *a, int *lda, int *ipiv, double *work, int *lwork,
                            int *info);
typedef void (*fa_dpotrf_t)(char *uplo, int *n, double *a, int *lda, int *info);
typedef void (*fa_dtrsm_t)(char *side, char *uplo, char *transa, char *diag, int *m, int *n,
                           double *alpha, double *a, int *lda, double *b, int *ldb);

typedef void (*fa_dsyevd_t)(char *jobz, char *uplo, int *n, double *a, int *lda, double *w,
                            double *work, int *lwork, int *iwork, int *liwork, int *info);

typedef void (*fa_dgesdd_t)(char *jobz, int *m, int *n, double *a, int *lda, double *s,
                            double *u, int *ldu, double *vt, int *ldvt, double *work,
                            int *lwork, int *iwork, int *info);

typedef void (*fa_dgeqrf_t)(int *m, int *n, double *a, int *lda, double *tau, double *work,
                            int *lwork, int *info);
typedef void (*fa_dorgqr_t)(int *m, int *n, int *k, double *a, int *lda, double *tau,
                            double *work, int *lwork, int *info);

typedef void (*fa_dgeev_t)(char *jobvl, char *jobvr, int *n, double *a, int *lda, double *wr,
                           double *wi, double *vl, int *ldvl, double *vr, int *ldvr,
                           double *work, int *lwork, int *info);
typedef void (*fa_dgemm_t)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                           double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                           int *ldc);

typedef struct {
    fa_dgeev_t dgeev;
    fa_dgemm_t dgemm;
    fa_dgeqrf_t dgeqrf;
    fa_dorgqr_t dorgqr;
    fa_dgesdd_t dgesdd;
    fa_dsyevd_t dsyevd;
    fa_dgetrf_t dgetrf;
    fa_dgetrs_t dgetrs;
    fa_dgetri_t dgetri;
    fa_dpotrf_t dpotrf;
    fa_dtrsm_t dtrsm;
} fa_lapack_fns;

/* filled once by fastad._tape at import (src/fastad/_linalg.pxi), read-only after */
extern fa_lapack_fns fa_lapack;

/* Fill fa_lapack (pointers to scipy's LAPACK/BLAS functions of those names). */
void fa_linalg_install(void *getrf, void *getrs, void *getri, void *potrf, void *trsm,
                       void *syevd, void *gesdd, void *geqrf, void *orgqr, void *geev,
                       void *gemm);

/* number of result slots of a linear-algebra record (SVD: n, k are its rows, columns) */
int64_t fa_linalg_nres(int op, int64_t n, int64_t k);

/* Append a SOLVE, SLOGDET, CHOLESKY, TRSOLVE or EIGH record over the row-major ranges a (n x n)
 * and b (n x k; ignored by SLOGDET, CHOLESKY and EIGH) and evaluate it (tape.c).  Its first
 * result slot goes to *first; a LAPACK failure is not an error here: the caller reads the
 * info slot (the last result slot) and raises numpy's error. */
int fa_linalg_rec(fa_tape *t, int op, int32_t a, int32_t b, int64_t n, int64_t k, int variant,
                  int32_t *first);

/* The three kernels (linalg.c); fwd returns 1 where numpy raises LinAlgError. */
int fa_linalg_fwd(const fa_rec *p, double *v);
void fa_linalg_tan(const fa_rec *p, const double *v, double *t);
void fa_linalg_rev(const fa_rec *p, const double *v, double *g);

#endif /* FASTAD_LINALG_H */
