"""The SVD record and what is built on it (docs/linalg.md): np.linalg.svd, pinv and lstsq
(rank-deficient matrices with numpy's rcond), the 2/-2/nuclear matrix norms, and stacks
of matrices (numpy's `..., M, N` convention).

References: numpy's own values (the record makes numpy's dgesdd call, so even the
singular-vector signs agree); central differences (numpy_ref.central_diff, step 1e-6 on
O(1) matrices with well-separated singular values: truncation and rounding both below
~1e-9, so 1e-6 tolerances leave margin while a wrong rule is off by O(1)); closed forms
(d s_i = u_i^T dA v_i; Golub & Pereyra's derivative of a constant-rank pseudo-inverse)."""
import numpy as np
import pytest

import fastad as fd
from numpy_ref import central_diff


def rng(seed):
    return np.random.default_rng(seed)


SHAPES = [(4, 4), (5, 3), (3, 5), (1, 3), (3, 1)]


def weights(shape, seed=7):
    m, n = shape
    k = min(m, n)
    r = rng(seed)
    return r.normal(size=(m, k)), r.normal(size=k), r.normal(size=(k, n))


def svd_objective(shape):
    """A scalar function of every output of the thin SVD (U, s, Vh): numpy's signs are
    locally constant, so central differences of numpy's svd are a valid reference."""
    Wu, Ws, Wv = weights(shape)

    def f(A):
        U, s, Vh = np.linalg.svd(A, full_matrices=False)
        return np.sum(Wu * U) + np.sum(Ws * s ** 2) + np.sum(Wv * np.sin(Vh))
    return f


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_values_signs_and_derivatives(shape):
    A = rng(1).normal(size=shape)
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    for i, ref in enumerate((U, s, Vh)):        # every output, numpy's signs included
        got = fd.value_and_grad(lambda X: np.sum(np.linalg.svd(X, full_matrices=False)[i]  # noqa: B023 (called in this iteration)
                                                 * ref))(A)[0]  # noqa: B023 (called in this iteration)
        assert got == pytest.approx(np.sum(ref * ref), rel=1e-12)
    f = svd_objective(shape)
    v, g = fd.value_and_grad(f)(A)
    assert v == pytest.approx(f(A), rel=1e-12)
    np.testing.assert_allclose(g, central_diff(f, A), rtol=1e-6, atol=1e-7)
    V = rng(2).normal(size=shape)
    _, t = fd.jvp(f, (A,), (V,))
    assert t == pytest.approx(np.sum(g * V), rel=1e-10, abs=1e-12)
    A2 = rng(3).normal(size=shape)            # a replay of the same tape
    np.testing.assert_allclose(fd.grad(f)(A2), central_diff(f, A2), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_svd_hvp_and_nested(shape):
    f = svd_objective(shape)
    A = rng(4).normal(size=shape)
    V = rng(5).normal(size=shape)
    g = fd.grad(f)
    ref = (g(A + 1e-5 * V) - g(A - 1e-5 * V)) / 2e-5
    hv = fd.hvp(f)(A, V)
    np.testing.assert_allclose(hv, ref, rtol=1e-5, atol=1e-6)
    nested = fd.grad(lambda Y: np.sum(fd.grad(f)(Y) * V))(A)      # recorded adjoint
    np.testing.assert_allclose(nested, hv, rtol=1e-9, atol=1e-10)
    H = fd.hessian(f)(A).reshape(A.size, A.size)
    np.testing.assert_allclose(H @ V.ravel(), hv.ravel(), rtol=1e-9, atol=1e-10)


def test_singular_value_closed_form():
    """d s_i / dA = u_i v_i^T, in reverse and forward mode."""
    A = rng(6).normal(size=(5, 3))
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    for i in range(3):
        g = fd.grad(lambda X: np.linalg.svd(X, compute_uv=False)[i])(A)  # noqa: B023 (called in this iteration)
        np.testing.assert_allclose(g, np.outer(U[:, i], Vh[i]), rtol=1e-12, atol=1e-14)
    dA = rng(7).normal(size=A.shape)
    _, t = fd.jvp(lambda X: np.linalg.svd(X, compute_uv=False), (A,), (dA,))
    np.testing.assert_allclose(t, np.einsum("ji,jk,ik->i", U, dA, Vh), rtol=1e-12)


def test_full_matrices_and_errors():
    A = rng(8).normal(size=(3, 3))
    v = fd.value_and_grad(lambda X: np.sum(np.linalg.svd(X)[0] * np.linalg.svd(A)[0]))(A)[0]
    assert v == pytest.approx(3.0, rel=1e-12)       # square: full == thin, numpy's signs
    with pytest.raises(np.linalg.LinAlgError, match="full_matrices=False"):
        fd.grad(lambda X: np.sum(np.linalg.svd(X)[0]))(rng(9).normal(size=(4, 2)))


def test_repeated_singular_values():
    """At the identity every singular value is 1: a function of the singular values has
    its gradient (sum s^2 = |A|_F^2 -> 2A), one of the singular vectors is inf/NaN."""
    eye = np.eye(3)
    g = fd.grad(lambda X: np.sum(np.linalg.svd(X, compute_uv=False) ** 2))(eye)
    np.testing.assert_allclose(g, 2 * eye, rtol=1e-14)
    g = fd.grad(lambda X: np.sum(rng(1).normal(size=(3, 3)) * np.linalg.svd(X)[0]))(eye)
    assert not np.all(np.isfinite(g))


@pytest.mark.parametrize("ord", [2, -2, "nuc"])
def test_spectral_norms_through_svd(ord):
    A = rng(10).normal(size=(4, 3))
    v, g = fd.value_and_grad(lambda X: np.linalg.norm(X, ord))(A)
    assert v == pytest.approx(np.linalg.norm(A, ord), rel=1e-13)
    np.testing.assert_allclose(g, central_diff(lambda X: np.linalg.norm(X, ord), A),
                               rtol=1e-6, atol=1e-7)


def rank_deficient(m, n, r, seed):
    return rng(seed).normal(size=(m, r)) @ rng(seed + 1).normal(size=(r, n))


def golub_pereyra(A, dA):
    """d A+ for a direction dA at a matrix of locally constant rank (Golub & Pereyra,
    SIAM J. Numer. Anal. 10 (1973), eq. 4.12)."""
    P = np.linalg.pinv(A)
    m, n = A.shape
    return (-P @ dA @ P + P @ P.T @ dA.T @ (np.eye(m) - A @ P)
            + (np.eye(n) - P @ A) @ dA.T @ P.T @ P)


@pytest.mark.parametrize("shape,r", [((5, 4), 2), ((3, 5), 2), ((4, 4), 3)])
def test_pinv_rank_deficient(shape, r):
    A = rank_deficient(*shape, r, 11)
    W = rng(12).normal(size=shape[::-1])
    f = lambda X: np.sum(W * np.linalg.pinv(X))
    v, g = fd.value_and_grad(f)(A)
    assert v == pytest.approx(f(A), rel=1e-10)
    # within the rank-r matrices (dA = the derivative of L(t) R(t)), the derivative is
    # Golub & Pereyra's, in forward and reverse mode
    L, R = rng(11).normal(size=(shape[0], r)), rng(12).normal(size=(r, shape[1]))
    dA = rng(13).normal(size=(shape[0], r)) @ R + L @ rng(14).normal(size=(r, shape[1]))
    ref = np.sum(W * golub_pereyra(A, dA))
    assert np.sum(g * dA) == pytest.approx(ref, rel=1e-8)
    _, t = fd.jvp(f, (A,), (dA,))
    assert t == pytest.approx(ref, rel=1e-8)
    # and it is the full derivative of the constant-rank formula (the rank-raising
    # directions included: Golub & Pereyra's formula holds for every dA there)
    dB = rng(15).normal(size=shape)
    assert np.sum(g * dB) == pytest.approx(np.sum(W * golub_pereyra(A, dB)), rel=1e-8)


def test_pinv_rcond_and_rank_change_retraces():
    A = np.diag([3.0, 1.0, 1e-9])
    for rcond in (1e-6, 1e-12):
        got = fd.value_and_grad(lambda X: np.sum(np.linalg.pinv(X, rcond=rcond)))(A)[0]  # noqa: B023 (called in this iteration)
        assert got == pytest.approx(np.sum(np.linalg.pinv(A, rcond=rcond)), rel=1e-12)
    g = fd.grad(lambda X: np.sum(np.linalg.pinv(X, rtol=None)))
    # one compiled function at two ranks: the guards on the cut-off retrace.  At a diagonal
    # matrix d sum(pinv) / dB_ij = -1 / (d_i d_j) between kept entries
    for d in ([3.0, 1.0, 0.0], [3.0, 1.0, 2.0]):
        kept = np.nonzero(d)[0]
        got = g(np.diag(d))[np.ix_(kept, kept)]
        inv = 1 / np.array(d)[kept]
        np.testing.assert_allclose(got, -np.outer(inv, inv), rtol=1e-12)


@pytest.mark.parametrize("shape,r", [((6, 3), 3), ((6, 3), 2), ((3, 5), 3)])
def test_lstsq_against_numpy(shape, r):
    A = rank_deficient(*shape, r, 21)
    b = rng(22).normal(size=shape[0])
    x, res, rank, s = np.linalg.lstsq(A, b, rcond=None)

    def f(X):
        xx, rr, kk, ss = np.linalg.lstsq(X, b, rcond=None)
        return np.sum(np.arange(1.0, shape[1] + 1) * xx) + (np.sum(rr) if len(rr) else 0.0)
    v, g = fd.value_and_grad(f)(A)
    assert v == pytest.approx(f(A), rel=1e-10)
    out = {}

    def grab(X):
        xx, rr, kk, ss = np.linalg.lstsq(X, b, rcond=None)
        out.update(rank=kk, nres=len(rr))
        return np.sum(ss)
    assert fd.value_and_grad(grab)(A)[0] == pytest.approx(np.sum(s), rel=1e-12)
    assert out == {"rank": rank, "nres": len(res)}
    if r == min(shape):                        # full rank: differentiable everywhere
        np.testing.assert_allclose(g, central_diff(f, A), rtol=1e-6, atol=1e-7)


def test_stacks_match_numpy_matrix_by_matrix():
    r = rng(30)
    A = r.normal(size=(2, 3, 4, 4)) + 4 * np.eye(4)
    S = A @ np.swapaxes(A, -1, -2)
    b = r.normal(size=(3, 4, 2))
    W = r.normal(size=(2, 3, 4, 4))
    cases = {
        "solve": (lambda X: np.sum(W[..., :2] * np.linalg.solve(X, b)), A),
        "solve_vec": (lambda X: np.sum(W[..., 0] * np.linalg.solve(X, b[0, :, 0])), A),
        "inv": (lambda X: np.sum(W * np.linalg.inv(X)), A),
        "det": (lambda X: np.sum(W[..., 0, 0] * np.linalg.det(X)), A),
        "slogdet": (lambda X: np.sum(W[..., 0, 0] * np.linalg.slogdet(X)[1]
                                     * np.linalg.slogdet(X)[0]), A),
        "cholesky": (lambda X: np.sum(W * np.linalg.cholesky(X)), S),
        "eigh": (lambda X: np.sum(W[..., 0] * np.linalg.eigh(X)[0])
                 + np.sum(W * np.linalg.eigh(X)[1] ** 2), S),
        "svd": (lambda X: np.sum(W[..., 0] * np.linalg.svd(X, compute_uv=False)), A),
        "pinv": (lambda X: np.sum(W * np.linalg.pinv(X)), A),
        "matrix_power": (lambda X: np.sum(W * np.linalg.matrix_power(X, 2)), A),
    }
    for name, (f, X) in cases.items():
        v, g = fd.value_and_grad(f)(X)
        assert v == pytest.approx(f(X), rel=1e-11), name
        np.testing.assert_allclose(g, central_diff(f, X), rtol=1e-6, atol=1e-6, err_msg=name)
    # broadcasting of leading axes between a and b, as numpy
    f = lambda X: np.sum(np.linalg.solve(X[:1], b))
    assert fd.value_and_grad(f)(A[0])[0] == pytest.approx(f(A[0]), rel=1e-12)
    # a stacked hvp (each matrix its own records)
    f = cases["slogdet"][0]
    V = r.normal(size=A.shape)
    gr = fd.grad(f)
    np.testing.assert_allclose(fd.hvp(f)(A, V), (gr(A + 1e-5 * V) - gr(A - 1e-5 * V)) / 2e-5,
                               rtol=1e-5, atol=1e-6)


def qr_objective(shape):
    m, n = shape
    r = rng(40)
    Wq, Wr = r.normal(size=(m, min(m, n))), r.normal(size=(min(m, n), n))
    return lambda A: np.sum(Wq * np.linalg.qr(A)[0]) + np.sum(Wr * np.sin(np.linalg.qr(A)[1]))


@pytest.mark.parametrize("shape", [(5, 3), (4, 4), (3, 5), (3, 1)])
def test_qr_values_signs_and_derivatives(shape):
    A = rng(41).normal(size=shape)
    Q, R = np.linalg.qr(A)
    for i, ref in enumerate((Q, R)):            # numpy's signs (the same LAPACK calls)
        got = fd.value_and_grad(lambda X: np.sum(np.linalg.qr(X)[i] * ref))(A)[0]  # noqa: B023 (called in this iteration)
        assert got == pytest.approx(np.sum(ref * ref), rel=1e-12)
    f = qr_objective(shape)
    v, g = fd.value_and_grad(f)(A)
    assert v == pytest.approx(f(A), rel=1e-12)
    np.testing.assert_allclose(g, central_diff(f, A), rtol=1e-6, atol=1e-7)
    V = rng(42).normal(size=shape)
    _, t = fd.jvp(f, (A,), (V,))
    assert t == pytest.approx(np.sum(g * V), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_qr_hvp_and_nested(shape):
    f = qr_objective(shape)
    A = rng(43).normal(size=shape)
    V = rng(44).normal(size=shape)
    g = fd.grad(f)
    hv = fd.hvp(f)(A, V)
    np.testing.assert_allclose(hv, (g(A + 1e-5 * V) - g(A - 1e-5 * V)) / 2e-5,
                               rtol=1e-5, atol=1e-6)
    nested = fd.grad(lambda Y: np.sum(fd.grad(f)(Y) * V))(A)
    np.testing.assert_allclose(nested, hv, rtol=1e-9, atol=1e-10)


def test_qr_modes_and_stacks():
    A = rng(45).normal(size=(3, 4))
    f = lambda X: np.sum(np.linalg.qr(X, mode="r") ** 2) + np.sum(np.linalg.qr(X, "complete")[0])
    v, g = fd.value_and_grad(f)(A)
    assert v == pytest.approx(f(A), rel=1e-12)
    np.testing.assert_allclose(g, central_diff(f, A), rtol=1e-6, atol=1e-7)
    with pytest.raises(np.linalg.LinAlgError, match="mode='reduced'"):
        fd.grad(lambda X: np.sum(np.linalg.qr(X, mode="complete")[0]))(A.T)
    S = rng(46).normal(size=(2, 5, 3))
    f = lambda X: np.sum(np.linalg.qr(X)[1] ** 3)
    v, g = fd.value_and_grad(f)(S)
    assert v == pytest.approx(f(S), rel=1e-12)
    np.testing.assert_allclose(g, central_diff(f, S), rtol=1e-6, atol=1e-6)


def test_eig_of_a_complex_spectrum_is_refused_with_the_alternatives():
    """eig/eigvals work for real spectra (tests/unit/test_linalg_eig.py); a complex pair
    raises a TypeError naming eigh and svd."""
    A = np.array([[1.0, -2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])    # 1 +- 2i, 3
    for fn in (np.linalg.eig, np.linalg.eigvals):
        with pytest.raises(TypeError, match="eigh.*svd"):
            fd.grad(lambda X: np.sum(np.real(fn(X)[0])))(A)  # noqa: B023 (called in this iteration)
    assert np.allclose(np.linalg.eigvals(np.diag([1.0, 2.0])), [1.0, 2.0])   # plain: numpy
