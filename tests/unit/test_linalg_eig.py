"""np.linalg.eig / eigvals of general matrices with a real spectrum (the EIG record,
csrc/linalg_eig.h; docs/linalg.md).

References: numpy's own eig for values (the same LAPACK call, dgeev); derivatives against
the closed forms dw_i = u_i^T dA v_i / (u_i^T v_i) (u_i the left eigenvectors, the rows of
V^-1) and against central differences of numpy's eig (step 1e-6: truncation and rounding
both below 1e-8 relative on these well-separated spectra, so rtol 1e-6).  Hessian-vector
products against central differences of the closed-form gradient."""
import numpy as np
import pytest

import fastad as fd
from fastad.errors import ComplexValueError
from numpy_ref import central_diff


def real_spectrum_matrix(n, seed):
    """A non-symmetric matrix with well-separated real eigenvalues: S diag(1..n) S^-1."""
    r = np.random.default_rng(seed)
    S = r.normal(size=(n, n)) + 2.0 * np.eye(n)
    return S @ np.diag(np.arange(1.0, n + 1.0) * 1.5) @ np.linalg.inv(S)


def eig_fn(A, c):
    """A scalar of eigenvalues and eigenvectors (numpy's unit-norm, sign-fixed columns)."""
    w, V = np.linalg.eig(A)
    return np.sum(c * w ** 2) + np.sum(np.sin(V) * np.outer(c, c))


@pytest.mark.parametrize("n", [2, 4, 6])
def test_values_and_gradient(n):
    A = real_spectrum_matrix(n, n)
    c = np.linspace(0.5, 1.5, n)
    w_ref, V_ref = np.linalg.eig(A)
    # values: numpy's (the same LAPACK routine: the same order and eigenvector signs)
    flat = lambda X: np.concatenate([np.linalg.eig(X)[0], np.linalg.eig(X)[1].ravel()])
    v, _ = fd.value_and_grad(lambda X: np.sum(flat(X) * np.arange(n + n * n)))(A)
    assert v == pytest.approx(np.sum(flat(A) * np.arange(n + n * n)), rel=1e-12)
    # eigenvalue gradients: the closed form u_i v_i^T / (u_i . v_i), u_i = row i of V^-1
    Vi = np.linalg.inv(V_ref)
    for i in range(n):
        g = fd.grad(lambda X: np.linalg.eigvals(X)[i])(A)  # noqa: B023 (called in this iteration)
        np.testing.assert_allclose(g, np.outer(Vi[i], V_ref[:, i]), rtol=1e-10, atol=1e-12)
    v, g = fd.value_and_grad(lambda X: eig_fn(X, c))(A)
    assert v == pytest.approx(eig_fn(A, c), rel=1e-12)
    np.testing.assert_allclose(g, central_diff(lambda X: eig_fn(X, c), A), rtol=1e-6, atol=1e-8)


def test_forward_mode_and_hvp():
    n = 4
    A = real_spectrum_matrix(n, 7)
    c = np.linspace(0.5, 1.5, n)
    dA = np.random.default_rng(3).normal(size=(n, n))
    _, t = fd.jvp(lambda X: eig_fn(X, c), (A,), (dA,))
    ref = np.sum(fd.grad(lambda X: eig_fn(X, c))(A) * dA)
    assert t == pytest.approx(ref, rel=1e-10)
    hv = fd.hvp(lambda X: eig_fn(X, c))(A, dA)
    g = lambda X: fd.grad(lambda Y: eig_fn(Y, c))(X)
    ref = (g(A + 1e-6 * dA) - g(A - 1e-6 * dA)) / 2e-6
    np.testing.assert_allclose(hv, ref, rtol=1e-5, atol=1e-7)
    # nested: the gradient of an entry of a gradient; d/dA sum w^3 = V^-T diag(3 w^2) V^T
    def closed(X):
        w, V = np.linalg.eig(X)
        return (np.linalg.inv(V).T @ np.diag(3.0 * w ** 2) @ V.T)[0, 1]
    gg = fd.grad(lambda X: fd.grad(lambda Y: np.sum(np.linalg.eigvals(Y) ** 3))(X)[0, 1])(A)
    np.testing.assert_allclose(gg, central_diff(closed, A), rtol=1e-5, atol=1e-7)


def test_complex_spectrum_raises_and_replay_retraces():
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])          # eigenvalues +-i
    for fn in (np.linalg.eig, np.linalg.eigvals):
        with pytest.raises(ComplexValueError, match="eigh"):
            fd.grad(lambda X: np.sum(np.real(fn(X)[0])))(rot)  # noqa: B023 (called in this iteration)
    # a compiled gradient traced at a real spectrum, replayed at a complex one: raises
    g = fd.grad(lambda X: np.sum(np.linalg.eigvals(X)))
    A = np.array([[2.0, 1.0], [0.5, 1.0]])
    np.testing.assert_allclose(g(A), np.eye(2), atol=1e-12)        # d trace / dA = I
    with pytest.raises(ComplexValueError):
        g(np.array([[2.0, -3.0], [3.0, 1.0]]))
    np.testing.assert_allclose(g(A + 0.1), np.eye(2), atol=1e-12)  # and works again after
    assert np.allclose(np.linalg.eigvals(np.diag([1.0, 2.0])), [1.0, 2.0])   # plain: numpy
