# Included by _tape.pyx: the recording entry point of the linear-algebra records
# (csrc/linalg.h) and the one-time installation of scipy's LAPACK/BLAS pointers.
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_GetName

cdef extern from "linalg.h" nogil:
    void fa_linalg_install(void *getrf, void *getrs, void *getri, void *potrf, void *trsm,
                           void *syevd, void *gesdd, void *geqrf, void *orgqr, void *geev,
                           void *gemm)
    int fa_linalg_rec(fa_tape *t, int op, int32_t a, int32_t b, int64_t n, int64_t k,
                      int variant, int32_t *first)
    int64_t fa_linalg_nres(int op, int64_t n, int64_t k)

_lapack_installed = False


cdef void *_capsule_pointer(object capi, str name) except NULL:
    cap = capi[name]
    return PyCapsule_GetPointer(cap, PyCapsule_GetName(cap))


def linalg_install():
    """Point the linear-algebra kernels at scipy's LAPACK/BLAS (scipy.linalg.cython_lapack,
    cython_blas).  Called (with the GIL) before the first linear-algebra record exists, so
    no kernel can read the table while it is written; later calls do nothing."""
    global _lapack_installed
    if _lapack_installed:
        return
    try:
        from scipy.linalg import cython_blas, cython_lapack
    except ImportError as e:
        raise ImportError("fastad: linear algebra on traced values uses scipy's LAPACK; "
                          "install scipy (pip install scipy; fastad requires it)") from e
    lp, bl = cython_lapack.__pyx_capi__, cython_blas.__pyx_capi__
    fa_linalg_install(_capsule_pointer(lp, "dgetrf"), _capsule_pointer(lp, "dgetrs"),
                      _capsule_pointer(lp, "dgetri"), _capsule_pointer(lp, "dpotrf"),
                      _capsule_pointer(bl, "dtrsm"), _capsule_pointer(lp, "dsyevd"),
                      _capsule_pointer(lp, "dgesdd"), _capsule_pointer(lp, "dgeqrf"),
                      _capsule_pointer(lp, "dorgqr"), _capsule_pointer(lp, "dgeev"),
                      _capsule_pointer(bl, "dgemm"))
    _lapack_installed = True


def linalg_record(Tape tape, int op, int32_t a, int32_t b, int64_t n, int64_t k, int variant):
    """First result slot of a SOLVE, SLOGDET, CHOLESKY, TRSOLVE, EIGH or SVD record
    (csrc/linalg.h) over the row-major ranges a (n x n; SVD: n x k) and b (n x k),
    evaluated; its last result slot
    holds LAPACK's info (0: success)."""
    cdef int32_t s
    tape._live()
    linalg_install()
    tape.check(fa_linalg_rec(tape.c, op, a, b, n, k, variant, &s))
    return s


def linalg_nres(int op, int64_t n, int64_t k):
    """Number of result slots of a linear-algebra record."""
    return fa_linalg_nres(op, n, k)


# the principal results of each record (its factor and info slots follow them), for
# Tape.records(): name -> number of result slots shown, from n and k
_LINALG_OUTPUTS = {"solve": lambda n, k: n * k, "slogdet": lambda n, k: 2,
                   "cholesky": lambda n, k: n * n, "solve_triangular": lambda n, k: n * k,
                   "eigh": lambda n, k: n + n * n,
                   "svd": lambda m, n: m * min(m, n) + min(m, n) + min(m, n) * n,
                   "qr": lambda m, n: m * n + n * n,
                   "betainc": lambda n, k: n, "eig": lambda n, k: n + n * n}


def linalg_struct_record(str name, int op, int32_t r, int32_t a, int32_t b, int64_t n, int64_t k):
    """(name, result range, operand ranges) of a linear-algebra record for Tape.records()."""
    if name == "betainc":       # a and b (2n slots), x (n)
        return (name, range(r, r + n), (range(a, a + 2 * n), range(b, b + n)))
    ops = (range(a, a + (n * k if name in ("svd", "qr") else n * n)),)
    if name in ("solve", "solve_triangular"):
        ops += (range(b, b + n * k),)
    return (name, range(r, r + _LINALG_OUTPUTS[name](n, k)), ops)
