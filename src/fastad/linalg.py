"""Linear algebra on traced arrays (docs/linalg.md).

numpy.linalg functions dispatch here on traced arguments (numpy's __array_function__);
the scipy.linalg functions, which convert their arguments with np.asarray, are given
under their scipy names and signatures in this module (`fastad.linalg.solve_triangular`,
`cho_factor`, `cho_solve`, `lu_factor`, `lu_solve`, `expm`).

Eight structural records do the work, each keeping what its derivative rules need (the LU
or Cholesky factor, the eigen-, singular value or QR factorization) in its own result
slots (csrc/linalg.h): SOLVE, SLOGDET, CHOLESKY, TRSOLVE, EIGH, SVD, QR, EIG.  Everything else
is a composition of them with matmuls, gathers and elementwise ops: inv, det, cho_solve,
lu_solve, lstsq and pinv (through the SVD, numpy's rcond), expm, the matrix norms.
Stacks of matrices (numpy's `..., M, N`) are looped over at trace time, one set of
records per matrix; singular inputs raise numpy's LinAlgError, at trace and at replay (a
replay that meets one traces again, which raises).
"""
import collections

import numpy as np

from fastad import arrays
from fastad._tape import op_table, linalg_record, linalg_nres
from fastad._tracer import Traced, TracedArray
from fastad.arrays import as_traced, contiguous, implements, tape_of, wrap

__all__ = ["solve", "inv", "det", "slogdet", "cholesky", "eigh", "eigvalsh", "eig", "eigvals",
           "svd", "svdvals", "qr",
           "solve_triangular",
           "cho_factor", "cho_solve", "lu_factor", "lu_solve", "lstsq", "pinv", "norm", "expm",
           "matrix_power"]

_CODE = {name: code for code, (name, kind) in enumerate(op_table())}
SOLVE, SLOGDET, CHOLESKY, TRSOLVE, EIGH, SVD, QR = (
    _CODE[n] for n in ("solve", "slogdet", "cholesky", "solve_triangular", "eigh", "svd", "qr"))
EIG = _CODE["eig"]
TRI_LOWER, TRI_UNIT = 1, 2

SlogdetResult = collections.namedtuple("SlogdetResult", ["sign", "logabsdet"])
EighResult = collections.namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = collections.namedtuple("SVDResult", ["U", "S", "Vh"])
QRResult = collections.namedtuple("QRResult", ["Q", "R"])


def _traced(*xs):
    return any(type(x) in (Traced, TracedArray) for x in xs)


def _square(a, name):
    shape = np.shape(a) if type(a) not in (Traced, TracedArray) else a.shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise np.linalg.LinAlgError(
            f"fastad: {name} needs a square 2-d matrix, got shape {tuple(shape)} (stacks of "
            "matrices are not supported on traced values: loop over them)")
    if shape[0] == 0:
        raise np.linalg.LinAlgError(f"fastad: {name} of an empty matrix")
    return shape[0]


def _record(op, a, b, n, k, variant, name):
    """Record op over a (n x n) and b (n x k); raise numpy's error if LAPACK failed."""
    tape = tape_of(a, b)
    a = as_traced(tape, a)
    sa = contiguous(tape, a, (n, n))
    sb = contiguous(tape, as_traced(tape, b), (n, k)) if b is not None else sa
    first = linalg_record(tape, op, sa, sb, n, k, variant)
    info = tape.slot_values([first + linalg_nres(op, n, k) - 1])[0]
    if info != 0 and op != SLOGDET:
        msg = {SOLVE: "Singular matrix", CHOLESKY: "Matrix is not positive definite",
               EIGH: "Eigenvalues did not converge",
               TRSOLVE: f"singular matrix: resolution failed at diagonal {int(info) - 1}"}[op]
        raise np.linalg.LinAlgError(f"{msg} (fastad: {name} on a traced matrix)")
    return tape, first


def _rhs(b, n, name):
    shape = np.shape(b) if type(b) not in (Traced, TracedArray) else b.shape
    if len(shape) not in (1, 2) or shape[0] != n:
        raise ValueError(f"fastad: {name}: the right-hand side must have shape ({n},) or "
                         f"({n}, k), got {tuple(shape)}")
    return shape


def _shape(x):
    return tuple(x.shape) if type(x) in (Traced, TracedArray) else np.shape(x)


def _batch_index(idx, batch):
    """The index into an operand whose leading (batch) shape is `batch` for position idx
    of the broadcast stack (numpy's broadcasting: missing and length-1 axes repeat)."""
    idx = idx[len(idx) - len(batch):] if batch else ()
    return tuple(0 if n == 1 else i for i, n in zip(idx, batch))


def _stack_parts(xs, batch):
    """Equal-shaped results (traced or plain) stacked into batch + their shape."""
    shape = batch + tuple(_shape(xs[0]))
    if not _traced(*xs):
        return np.reshape(np.array(xs, dtype=float), shape)
    tape = tape_of(*xs)
    return np.reshape(np.stack([as_traced(tape, x) for x in xs]), shape)


def _stacked(f, a, result_type=None, b=None, b_core=2):
    """f applied matrix by matrix over a stack (numpy's `..., M, N` convention: the last
    two axes of a are the matrices, the leading ones are broadcast against b's leading
    axes, b_core being how many trailing axes of b one call takes), each call its own
    records; the results are stacked, component by component for tuples."""
    sa = _shape(a)
    batch = sa[:-2]
    if b is not None:
        sb = _shape(b)
        batch = np.broadcast_shapes(batch, sb[:len(sb) - b_core])
    if 0 in batch:
        raise np.linalg.LinAlgError("fastad: linear algebra on an empty stack of traced "
                                    "matrices")
    outs = []
    for idx in np.ndindex(*batch):
        ai = a[_batch_index(idx, sa[:-2]) + (Ellipsis,)]
        if b is None:
            outs.append(f(ai))
        else:
            outs.append(f(ai, b[_batch_index(idx, sb[:len(sb) - b_core]) + (Ellipsis,)]))
    if isinstance(outs[0], tuple):
        parts = [_stack_parts([o[i] for o in outs], batch) for i in range(len(outs[0]))]
        return result_type(*parts) if result_type else tuple(parts)
    return _stack_parts(outs, batch)


def _is_stack(*xs):
    return any(len(_shape(x)) > 2 for x in xs)


@implements(np.linalg.solve)
def solve(a, b):
    """np.linalg.solve(a, b) for a (n, n) and b (n,) or (n, k): one SOLVE record (LU)."""
    if not _traced(a, b):
        return np.linalg.solve(a, b)
    if _is_stack(a, b):          # numpy 2: b is one vector only when it is 1-d
        return _stacked(solve, a, b=b, b_core=1 if len(_shape(b)) == 1 else 2)
    n = _square(a, "solve")
    shape = _rhs(b, n, "solve")
    k = 1 if len(shape) == 1 else shape[1]
    tape, first = _record(SOLVE, a, np.reshape(b, (n, k)), n, k, 0, "solve")
    return wrap(tape, first, shape)


@implements(np.linalg.inv)
def inv(a):
    """np.linalg.inv: solve(a, I)."""
    if not _traced(a):
        return np.linalg.inv(a)
    if _is_stack(a):
        return _stacked(inv, a)
    n = _square(a, "inv")
    return solve(a, np.eye(n))


@implements(np.linalg.slogdet)
def slogdet(a):
    """np.linalg.slogdet: (sign, log|det a|) from one SLOGDET record (LU).  A singular
    matrix gives (0, -inf) like numpy; the derivative there is NaN."""
    if not _traced(a):
        return np.linalg.slogdet(a)
    if _is_stack(a):
        return _stacked(slogdet, a, SlogdetResult)
    n = _square(a, "slogdet")
    tape, first = _record(SLOGDET, a, None, n, n, 0, "slogdet")
    sign = tape.slot_values([first + 1])[0]
    return SlogdetResult(float(sign), wrap(tape, first, ()))


@implements(np.linalg.det)
def det(a):
    """np.linalg.det: sign * exp(logabsdet).  At a singular matrix the value is 0 and the
    derivative is NaN (the adjugate is not formed; docs/linalg.md)."""
    if not _traced(a):
        return np.linalg.det(a)
    sign, logabs = slogdet(a)
    return sign * np.exp(logabs)


@implements(np.linalg.cholesky)
def cholesky(a, /, *, upper=False):
    """np.linalg.cholesky: the lower factor L (a = L L^T), reading a's lower triangle like
    numpy; upper=True gives the upper factor from a's upper triangle."""
    if not _traced(a):
        return np.linalg.cholesky(a, upper=upper) if upper else np.linalg.cholesky(a)
    if _is_stack(a):
        return _stacked(lambda x: cholesky(x, upper=upper), a)
    n = _square(a, "cholesky")
    if upper:                   # numpy then reads the upper triangle: the lower one of a^T
        return cholesky(a.T if type(a) is TracedArray else np.transpose(a)).T
    tape, first = _record(CHOLESKY, a, None, n, n, 0, "cholesky")
    return wrap(tape, first, (n, n))


@implements(np.linalg.eigh)
def eigh(a, UPLO="L"):
    """np.linalg.eigh: (eigenvalues ascending, eigenvectors in columns) from one EIGH record
    (LAPACK dsyevd), reading the UPLO triangle like numpy.  Eigenvector signs are LAPACK's,
    as numpy's.  With repeated eigenvalues the eigenvectors are not unique and their
    derivative does not exist: a gradient through them is inf/NaN, while a function of the
    eigenvalues alone keeps a finite gradient (docs/linalg.md)."""
    if not _traced(a):
        return np.linalg.eigh(a, UPLO=UPLO)
    if _is_stack(a):
        return _stacked(lambda x: eigh(x, UPLO), a, EighResult)
    n = _square(a, "eigh")
    if UPLO == "U":
        a = a.T if type(a) is TracedArray else np.transpose(a)
    elif UPLO != "L":
        raise ValueError("fastad: eigh: UPLO must be 'L' or 'U'")
    tape, first = _record(EIGH, a, None, n, n, 0, "eigh")
    return EighResult(wrap(tape, first, (n,)), wrap(tape, first + n, (n, n)))


@implements(np.linalg.eigvalsh)
def eigvalsh(a, UPLO="L"):
    """np.linalg.eigvalsh: the eigenvalues of eigh."""
    if not _traced(a):
        return np.linalg.eigvalsh(a, UPLO=UPLO)
    return eigh(a, UPLO)[0]


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                     check_finite=True):
    """scipy.linalg.solve_triangular: one TRSOLVE record; reads only a's `lower` (or upper)
    triangle, and not its diagonal with unit_diagonal.  trans: 0/'N', 1/'T', 2/'C'."""
    if not _traced(a, b):
        import scipy.linalg
        return scipy.linalg.solve_triangular(a, b, trans=trans, lower=lower,
                                             unit_diagonal=unit_diagonal)
    n = _square(a, "solve_triangular")
    shape = _rhs(b, n, "solve_triangular")
    k = 1 if len(shape) == 1 else shape[1]
    if trans in (1, 2, "T", "C"):
        a, lower = (a.T if type(a) is TracedArray else np.transpose(a)), not lower
    elif trans not in (0, "N"):
        raise ValueError(f"fastad: solve_triangular: trans must be 0, 1, 2, 'N', 'T' or 'C', "
                         f"got {trans!r}")
    variant = (TRI_LOWER if lower else 0) | (TRI_UNIT if unit_diagonal else 0)
    tape, first = _record(TRSOLVE, a, np.reshape(b, (n, k)), n, k, variant, "solve_triangular")
    return wrap(tape, first, shape)


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """scipy.linalg.cho_factor: (c, lower) with c the Cholesky factor (upper unless lower),
    from a's triangle of the same name.  Unlike scipy, c's other triangle holds zeros, not
    a copy of a."""
    if not _traced(a):
        import scipy.linalg
        return scipy.linalg.cho_factor(a, lower=lower)
    return cholesky(a, upper=not lower), lower


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    """scipy.linalg.cho_solve: solves a x = b from cho_factor's (c, lower), by two
    triangular solves."""
    c, lower = c_and_lower
    if not _traced(c, b):
        import scipy.linalg
        return scipy.linalg.cho_solve((c, lower), b)
    y = solve_triangular(c, b, trans=0 if lower else 1, lower=lower)
    return solve_triangular(c, y, trans=1 if lower else 0, lower=lower)


class LUFactor:
    """What fastad.linalg.lu_factor returns on a traced matrix: the matrix itself, for
    lu_solve (each lu_solve is one SOLVE record, which factors it and keeps the factors
    for its own derivatives)."""

    def __init__(self, a):
        self.a = a

    def __repr__(self):
        return f"<fastad LU factor of a traced {self.a.shape[0]}x{self.a.shape[1]} matrix>"


def lu_factor(a, overwrite_a=False, check_finite=True):
    """scipy.linalg.lu_factor: (lu, piv).  On a traced matrix lu is an LUFactor and piv
    None; pass them to fastad.linalg.lu_solve (docs/linalg.md)."""
    if not _traced(a):
        import scipy.linalg
        return scipy.linalg.lu_factor(a)
    _square(a, "lu_factor")
    return LUFactor(a), None


def lu_solve(lu_and_piv, b, trans=0, overwrite_b=False, check_finite=True):
    """scipy.linalg.lu_solve: a x = b (trans 0) or a^T x = b (trans 1, 2)."""
    lu, piv = lu_and_piv
    if not isinstance(lu, LUFactor):
        if _traced(b):
            lu = LUFactor(_from_lu(lu, piv))
        else:
            import scipy.linalg
            return scipy.linalg.lu_solve((lu, piv), b, trans=trans)
    a = lu.a
    if trans in (1, 2, "T", "C"):
        a = a.T if type(a) is TracedArray else np.transpose(a)
    return solve(a, b)


def _from_lu(lu, piv):
    """The plain matrix P L U that scipy's (lu, piv) stands for."""
    lu = np.asarray(lu, dtype=float)
    n = lu.shape[0]
    L, U = np.tril(lu, -1) + np.eye(n), np.triu(lu)
    a = L @ U
    perm = np.arange(n)
    for i, p in enumerate(piv):
        perm[i], perm[p] = perm[p], perm[i]
    out = np.empty_like(a)
    out[perm] = a
    return out


@implements(np.linalg.lstsq)
def lstsq(a, b, rcond=None):
    """np.linalg.lstsq: the minimum-norm least-squares solution through the SVD of a, with
    numpy's rule (singular values <= rcond * the largest, rcond = eps * max(m, n) by
    default, count as zero).  Returns (x, residuals, rank, singular values) like numpy:
    residuals (traced) only when rank == n < m, else an empty array; rank a plain int; the
    singular values traced.  The rank is decided by guards (a replay at another rank
    traces again); the derivative is that of the fixed-rank solution (docs/linalg.md)."""
    if not _traced(a, b):
        return np.linalg.lstsq(a, b, rcond=rcond)
    sa, sb = _shape(a), _shape(b)
    if len(sa) != 2 or len(sb) not in (1, 2):
        raise np.linalg.LinAlgError(f"fastad: lstsq needs a 2-d matrix and a 1-d or 2-d "
                                    f"right-hand side, got shapes {sa} and {sb}")
    m, n = sa
    if sb[0] != m:
        raise np.linalg.LinAlgError("Incompatible dimensions")
    if rcond is None:
        rcond = np.finfo(float).eps * max(m, n)
    tape = tape_of(a, b)
    pa, rank, U, s, Vt = _pinv_svd(as_traced(tape, a), rcond)
    x = pa @ b
    if rank == n and m > n:
        r = b - a @ x
        resid = np.sum(r * r, axis=0)
        if len(sb) == 1:
            resid = np.reshape(resid, (1,))
    else:
        resid = np.zeros(0)
    return x, resid, rank, s


@implements(np.linalg.pinv)
def pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    """np.linalg.pinv through the SVD, with numpy's cut-off: singular values <= rcond *
    the largest are dropped (rcond = 1e-15, or rtol; rtol=None: max(m, n) * eps).  The
    rank is decided by guards (a replay at another rank traces again); the derivative is
    that of the fixed-rank pseudo-inverse (docs/linalg.md).  Stacks of matrices too."""
    if not _traced(a):
        kw = {} if rtol is np._NoValue else {"rtol": rtol}
        return np.linalg.pinv(a, rcond=rcond, hermitian=hermitian, **kw)
    if rcond is None:
        rcond = 1e-15 if rtol is np._NoValue else \
            max(_shape(a)[-2:]) * np.finfo(float).eps if rtol is None else rtol
    elif rtol is not np._NoValue:
        raise ValueError("`rtol` and `rcond` can't be both set.")
    if _is_stack(a):
        return _stacked(lambda x: pinv(x, rcond), a)
    return _pinv_svd(as_traced(tape_of(a), a), float(rcond))[0]


@implements(np.linalg.matrix_power)
def matrix_power(a, n):
    """np.linalg.matrix_power: repeated squaring (n < 0: of the inverse)."""
    if not _traced(a):
        return np.linalg.matrix_power(a, n)
    if _is_stack(a):
        return _stacked(lambda x: matrix_power(x, n), a)
    size = _square(a, "matrix_power")
    if n < 0:
        a, n = inv(a), -n
    result, base = None, a
    while n:
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    return result if result is not None else as_traced(tape_of(a), np.eye(size))


# Pade(13) coefficients of Higham's scaling and squaring (SIAM J. Matrix Anal. 26, 2005)
_PADE13 = (64764752532480000., 32382376266240000., 7771770303897600., 1187353796428800.,
           129060195264000., 10559470521600., 670442572800., 33522128640., 1323241920.,
           40840800., 960960., 16380., 182., 1.)
_THETA13 = 5.371920351148152


def expm(a):
    """scipy.linalg.expm: Higham's Pade(13) approximant with scaling and squaring, as
    matmuls and one SOLVE.  The number of squarings is chosen from the 1-norm of the traced
    matrix (a guard: a replay whose norm needs another count traces again)."""
    if not _traced(a):
        import scipy.linalg
        return scipy.linalg.expm(a)
    n = _square(a, "expm")
    norm1 = norm(a, 1)
    s = 0
    while norm1 > _THETA13 * 2.0 ** s:          # guards, rechecked at replay
        s += 1
    a = a / 2.0 ** s if s else a
    b, ident = _PADE13, np.eye(n)
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2)
             + b[7] * a6 + b[5] * a4 + b[3] * a2 + b[1] * ident)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 \
        + b[0] * ident
    r = solve(v - u, v + u)
    for _ in range(s):
        r = r @ r
    return r


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm with every ord numpy has for vectors (any p, inf, -inf, 0) and for
    matrices ('fro', 1, -1, inf, -inf; 2, -2, 'nuc' through the singular values)."""
    if not _traced(x):
        return np.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)
    tape = tape_of(x)
    x = as_traced(tape, x)
    if type(x) is Traced:                  # a 0-d value: numpy's norm is |x|
        return np.abs(x)
    if isinstance(axis, int):
        axis = (axis,)
    if axis is None:
        if ord is None:
            return arrays.norm(x, None, None, keepdims)
        axis = tuple(range(x.ndim))
    axis = tuple(ax % x.ndim for ax in axis)
    if len(axis) == 1:
        return _vector_norm(x, ord, axis[0], keepdims)
    if len(axis) == 2 and x.ndim == 2:
        return _matrix_norm(x, ord, axis, keepdims)
    raise ValueError("fastad: norm: improper number of dimensions to norm "
                     "(axis must name one or two axes of a 1-d or 2-d traced array)")


def _vector_norm(x, ord, axis, keepdims):
    ax = np.abs(x)
    if ord is None or ord == 2:
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    if ord == np.inf:
        return np.max(ax, axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(ax, axis=axis, keepdims=keepdims)
    if ord == 0:                       # the count of nonzeros: derivative 0
        return np.sum(np.where(x != 0, 1.0, 0.0), axis=axis, keepdims=keepdims)
    if ord == 1:
        return np.sum(ax, axis=axis, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"fastad: norm: invalid norm order {ord!r} for vectors")
    return np.sum(ax ** float(ord), axis=axis, keepdims=keepdims) ** (1.0 / float(ord))


def _matrix_norm(x, ord, axis, keepdims):
    r, c = axis
    if ord in (None, "fro"):
        out = np.sqrt(np.sum(x * x))
    elif ord in (1, -1):
        sums = np.sum(np.abs(x), axis=r)
        out = np.max(sums) if ord == 1 else np.min(sums)
    elif ord in (np.inf, -np.inf):
        sums = np.sum(np.abs(x), axis=c)
        out = np.max(sums) if ord == np.inf else np.min(sums)
    elif ord in (2, -2, "nuc"):
        sv = svd(x, compute_uv=False)             # one SVD record, as numpy
        out = np.max(sv) if ord == 2 else np.min(sv) if ord == -2 else np.sum(sv)
    else:
        raise ValueError(f"fastad: norm: invalid norm order {ord!r} for matrices")
    if keepdims:
        out = np.reshape(out, (1, 1))
    return out


def _thin_svd(a, name):
    """(U, s, Vt) of the thin SVD of a 2-d traced a, from one SVD record (dgesdd)."""
    tape = tape_of(a)
    a = as_traced(tape, a)
    if a.ndim != 2:
        raise np.linalg.LinAlgError(f"fastad: {name} needs a 2-d matrix, got shape {a.shape}")
    m, n = a.shape
    if m == 0 or n == 0:
        raise np.linalg.LinAlgError(f"fastad: {name} of an empty matrix")
    k = min(m, n)
    first = linalg_record(tape, SVD, contiguous(tape, a, (m, n)), 0, m, n, 0)
    info = tape.slot_values([first + linalg_nres(SVD, m, n) - 1])[0]
    if info != 0:
        raise np.linalg.LinAlgError(f"SVD did not converge (fastad: {name} on a traced matrix)")
    return (wrap(tape, first, (m, k)), wrap(tape, first + m * k, (k,)),
            wrap(tape, first + m * k + k, (k, n)))


@implements(np.linalg.svd)
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """np.linalg.svd: (U, S, Vh) from one SVD record (LAPACK dgesdd, numpy's own call: the
    same singular-vector signs).  compute_uv=False gives the singular values.  On a
    traced rectangular matrix full_matrices=True raises: the extra columns of U (or rows
    of Vh) are any orthonormal completion and have no derivative -- pass
    full_matrices=False (docs/linalg.md).  hermitian=True is computed as a general SVD
    (the same values; eigenvector signs may differ from numpy's eigh-based path)."""
    if not _traced(a):
        return np.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv,
                             hermitian=hermitian)
    if a.ndim > 2:
        return _stacked(lambda x: svd(x, full_matrices, compute_uv), a,
                        SVDResult if compute_uv else None)
    if not compute_uv:
        return _thin_svd(a, "svd")[1]
    m, n = a.shape
    if full_matrices and m != n:
        raise np.linalg.LinAlgError(
            f"fastad: svd(full_matrices=True) of a traced {m}x{n} matrix: the extra "
            f"{'columns of U' if m > n else 'rows of Vh'} are an arbitrary orthonormal "
            "completion without a derivative; pass full_matrices=False (or "
            "compute_uv=False for the singular values)")
    return SVDResult(*_thin_svd(a, "svd"))


def svdvals(a):
    """scipy.linalg.svdvals / np.linalg.svdvals: the singular values, descending."""
    if not _traced(a):
        return np.linalg.svd(a, compute_uv=False)
    return svd(a, compute_uv=False)


if hasattr(np.linalg, "svdvals"):
    implements(np.linalg.svdvals)(svdvals)


def _rank_cut(s, rcond):
    """How many singular values (descending, traced) exceed rcond * the largest, decided
    by guards: a replay whose rank differs traces again."""
    cutoff = rcond * s[0]
    r = 0
    for i in range(s.shape[0]):
        if not (s[i] > cutoff):
            break
        r += 1
    return r


def _pinv_svd(a, rcond):
    """(pinv of a, rank, U, s, Vt) through the truncated SVD (numpy's rule: singular
    values <= rcond * max are dropped)."""
    U, s, Vt = _thin_svd(a, "pinv")
    r = _rank_cut(s, rcond)
    m, n = a.shape
    if r == 0:
        return as_traced(tape_of(a), np.zeros((n, m))), 0, U, s, Vt
    inv_s = 1.0 / s[:r]
    return (Vt[:r].T * inv_s) @ U[:, :r].T, r, U, s, Vt


def _tall_qr(a):
    """(Q, R) of the reduced QR of a 2-d traced a with m >= n: one QR record."""
    tape = tape_of(a)
    m, n = a.shape
    first = linalg_record(tape, QR, contiguous(tape, a, (m, n)), 0, m, n, 0)
    if tape.slot_values([first + linalg_nres(QR, m, n) - 1])[0] != 0:
        raise np.linalg.LinAlgError("fastad: qr: LAPACK failed on a traced matrix")
    return wrap(tape, first, (m, n)), wrap(tape, first + m * n, (n, n))


@implements(np.linalg.qr)
def qr(a, mode="reduced"):
    """np.linalg.qr: one QR record (LAPACK dgeqrf + dorgqr, numpy's calls: the same signs).
    Modes 'reduced' and 'r'; 'complete' where it equals 'reduced' (m <= n) -- for a tall
    matrix its extra columns of Q are an arbitrary orthonormal completion without a
    derivative and it raises, as does 'raw' (Householder reflectors).  A wide matrix
    (m < n) is [X | Y] with X square: Q R_X = X, R = [R_X | Q^T Y].  Stacks of matrices
    too (docs/linalg.md)."""
    if not _traced(a):
        return np.linalg.qr(a, mode=mode)
    if mode not in ("reduced", "complete", "r", "raw"):
        raise ValueError(f"Unrecognized mode '{mode}'")
    tape = tape_of(a)
    a = as_traced(tape, a)
    if a.ndim > 2:
        return _stacked(lambda x: qr(x, mode), a, QRResult if mode != "r" else None)
    if a.ndim != 2 or 0 in a.shape:
        raise np.linalg.LinAlgError(f"fastad: qr needs a non-empty 2-d matrix, got shape "
                                    f"{a.shape}")
    m, n = a.shape
    if mode == "raw" or (mode == "complete" and m > n):
        raise np.linalg.LinAlgError(
            f"fastad: qr(mode={mode!r}) of a traced {m}x{n} matrix: "
            + ("the Householder reflectors are not traced values" if mode == "raw" else
               "the extra columns of Q are an arbitrary orthonormal completion without a "
               "derivative") + "; use mode='reduced' (or 'r')")
    if m >= n:
        Q, R = _tall_qr(a)
    else:
        Q, Rx = _tall_qr(a[:, :m])
        R = np.concatenate([Rx, Q.T @ a[:, m:]], axis=1)
    return R if mode == "r" else QRResult(Q, R)


EigResult = collections.namedtuple("EigResult", ["eigenvalues", "eigenvectors"])


def _complex_spectrum_error(name):
    from fastad.errors import ComplexValueError
    return ComplexValueError(
        f"fastad: np.linalg.{name} of this traced matrix has complex eigenvalues, where numpy "
        "returns complex arrays; fastad differentiates real programs, so it supports eig and "
        "eigvals of matrices whose spectrum is real (and raises this error at a replay whose "
        "matrix has a complex pair, after tracing again). What to do: a symmetric matrix "
        "goes through np.linalg.eigh/eigvalsh; functions of the whole spectrum often have "
        "real forms (np.trace(A) is the sum of the eigenvalues, np.linalg.slogdet(A) the log "
        "of the modulus of their product); np.linalg.svd gives the magnitudes of A's action "
        "(docs/linalg.md)")


@implements(np.linalg.eig)
def eig(a):
    """np.linalg.eig of a general (non-symmetric) matrix whose eigenvalues are real: one EIG
    record (LAPACK dgeev, numpy's call: the same order and eigenvector signs), with Giles'
    adjoint (docs/linalg.md).  A complex pair at the traced point raises ComplexValueError
    saying what to use instead; a replay at such a matrix traces again and raises it."""
    if not _traced(a):
        return np.linalg.eig(a)
    if _is_stack(a):
        return _stacked(eig, a, EigResult)
    n = _square(a, "eig")
    tape = tape_of(a)
    first = linalg_record(tape, EIG, contiguous(tape, as_traced(tape, a), (n, n)), 0, n, n, 0)
    info = tape.slot_values([first + linalg_nres(EIG, n, n) - 1])[0]
    if info == -2:
        raise _complex_spectrum_error("eig")
    if info != 0:
        raise np.linalg.LinAlgError("Eigenvalues did not converge (fastad: eig on a traced "
                                    "matrix)")
    return EigResult(wrap(tape, first, (n,)), wrap(tape, first + n, (n, n)))


@implements(np.linalg.eigvals)
def eigvals(a):
    """np.linalg.eigvals: the eigenvalues of eig (real spectra only, see eig)."""
    if not _traced(a):
        return np.linalg.eigvals(a)
    from fastad.errors import ComplexValueError
    try:
        return eig(a)[0]
    except ComplexValueError:
        raise _complex_spectrum_error("eigvals") from None
