"""Linear algebra on traced matrices (docs/linalg.md): the SOLVE, SLOGDET, CHOLESKY and
TRSOLVE records and the functions composed from them, in reverse mode, forward mode,
Hessian-vector products and nested gradients, against closed forms (d logdet A = A^-T,
d A^-1 = -A^-1 dA A^-1) and central differences, plus the degenerate cases.

Central differences use step 1e-6 on well-conditioned O(1) matrices: truncation ~1e-12
and rounding ~1e-10, so 1e-7 tolerances leave a wide margin and still catch any wrong
rule (which is off by O(1))."""
import numpy as np
import pytest
import scipy.linalg as sl

import fastad as fd
from numpy_ref import central_diff
from fastad import linalg as fl

N = 4


def rng(seed):
    return np.random.default_rng(seed)


def well_conditioned(seed, n=N):
    return rng(seed).normal(size=(n, n)) + n * np.eye(n)


def spd(seed, n=N):
    B = rng(seed).normal(size=(n, n))
    return B @ B.T + n * np.eye(n)




W = rng(99).normal(size=(N, N))
b0 = rng(98).normal(size=N)
B2 = rng(97).normal(size=(N, 2))

# name -> (scalar function of one matrix, point maker)
CASES = {
    "solve_vec": (lambda A: np.sum(W[0] * np.linalg.solve(A, b0)), well_conditioned),
    "solve_mat": (lambda A: np.sum(W[:, :2] * np.linalg.solve(A, B2)), well_conditioned),
    "solve_rhs": (lambda b: np.sum(W[0] * np.linalg.solve(well_conditioned(5), b.reshape(N))),
                  lambda s: rng(s).normal(size=N)),
    "inv": (lambda A: np.sum(W * np.linalg.inv(A)), well_conditioned),
    "slogdet": (lambda A: np.linalg.slogdet(A)[1], well_conditioned),
    "det": (lambda A: np.linalg.det(A), well_conditioned),
    "cholesky": (lambda A: np.sum(W * np.linalg.cholesky(A)), spd),
    "cholesky_upper": (lambda A: np.sum(W * np.linalg.cholesky(A, upper=True)), spd),
    "solve_triangular_lower": (lambda A: np.sum(W[:, :2] * fl.solve_triangular(A, B2, lower=True)),
                               well_conditioned),
    "solve_triangular_upper_T": (lambda A: np.sum(W[0] * fl.solve_triangular(A, b0, trans="T")),
                                 well_conditioned),
    "solve_triangular_unit": (lambda A: np.sum(W[0] * fl.solve_triangular(
        A, b0, lower=True, unit_diagonal=True)), well_conditioned),
    "cho_solve": (lambda A: np.sum(W[0] * fl.cho_solve(fl.cho_factor(A), b0)), spd),
    "cho_solve_lower": (lambda A: np.sum(W[:, :2] * fl.cho_solve(fl.cho_factor(A, lower=True), B2)),
                        spd),
    "lu_solve": (lambda A: np.sum(W[0] * fl.lu_solve(fl.lu_factor(A), b0)), well_conditioned),
    "lu_solve_T": (lambda A: np.sum(W[0] * fl.lu_solve(fl.lu_factor(A), b0, trans=1)),
                   well_conditioned),
    "expm": (lambda A: np.sum(W * fl.expm(A)), lambda s: 0.3 * rng(s).normal(size=(N, N))),
    "expm_squarings": (lambda A: np.sum(W * fl.expm(A)),
                       lambda s: 3.0 * rng(s).normal(size=(N, N))),
    "lstsq": (lambda A: np.sum(W[0, :3] * np.linalg.lstsq(A, b0, rcond=None)[0]),
              lambda s: rng(s).normal(size=(N, 3))),
    "pinv_tall": (lambda A: np.sum(W[:3] * np.linalg.pinv(A)),
                  lambda s: rng(s).normal(size=(N, 3))),
    "pinv_wide": (lambda A: np.sum(W[:, :3] * np.linalg.pinv(A)),
                  lambda s: rng(s).normal(size=(3, N))),
    "matrix_power": (lambda A: np.sum(W * np.linalg.matrix_power(A, 3)), well_conditioned),
    "matrix_power_neg": (lambda A: np.sum(W * np.linalg.matrix_power(A, -2)), well_conditioned),
    "eigh_values": (lambda A: np.sum(np.arange(1.0, N + 1) * np.linalg.eigh(A)[0]), spd),
    "eigh_vectors": (lambda A: np.sum(W * np.linalg.eigh(A)[1] ** 2), spd),
    "eigh_both_upper": (lambda A: np.sum(np.linalg.eigh(A, UPLO="U")[0]
                                         * np.linalg.eigh(A, UPLO="U")[1][0] ** 2), spd),
    "eigvalsh": (lambda A: np.sum(np.sin(np.linalg.eigvalsh(A))), spd),
    "mvn_style": (lambda A: np.linalg.slogdet(A)[1] + b0 @ np.linalg.solve(A, b0), spd),
}


def plain(f):
    """The function on plain numpy values, with fastad.linalg's scipy-style functions
    falling through to scipy (they do on untraced arguments)."""
    return f


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_grad_jvp_against_central_differences(name):
    f, make = CASES[name]
    X = make(1)
    v, g = fd.value_and_grad(f)(X)
    assert v == pytest.approx(f(X), rel=1e-12, abs=1e-14)
    scale = max(1.0, np.abs(g).max())
    np.testing.assert_allclose(g, central_diff(f, X), rtol=1e-7, atol=1e-8 * scale)
    V = rng(2).normal(size=X.shape)
    _, t = fd.jvp(f, (X,), (V,))
    assert t == pytest.approx(np.sum(g * V), rel=1e-10, abs=1e-12)
    # a second point replays the same tape
    X2 = make(3)
    np.testing.assert_allclose(fd.grad(f)(X2), central_diff(f, X2), rtol=1e-7, atol=1e-8 * scale)


SECOND = ["solve_vec", "solve_mat", "inv", "slogdet", "det", "cholesky", "solve_triangular_lower",
          "cho_solve", "expm", "mvn_style", "eigh_values", "eigh_vectors"]


@pytest.mark.parametrize("name", SECOND)
def test_hvp_and_nested_grad(name):
    f, make = CASES[name]
    X = make(1)
    V = rng(4).normal(size=X.shape)
    g = fd.grad(f)
    ref = (g(X + 1e-5 * V) - g(X - 1e-5 * V)) / 2e-5     # central difference of the gradient
    hv = fd.hvp(f)(X, V)
    np.testing.assert_allclose(hv, ref, rtol=1e-6, atol=1e-7)
    nested = fd.grad(lambda Y: np.sum(fd.grad(f)(Y) * V))(X)     # recorded adjoints
    np.testing.assert_allclose(nested, hv, rtol=1e-10, atol=1e-12)


def test_closed_forms():
    A = well_conditioned(7)
    Ai = np.linalg.inv(A)
    np.testing.assert_allclose(fd.grad(lambda X: np.linalg.slogdet(X)[1])(A), Ai.T, rtol=1e-13)
    np.testing.assert_allclose(fd.grad(np.linalg.det)(A), np.linalg.det(A) * Ai.T, rtol=1e-12)
    # d/dA sum(W * A^-1) = -A^-T W A^-T
    np.testing.assert_allclose(fd.grad(lambda X: np.sum(W * np.linalg.inv(X)))(A),
                               -Ai.T @ W @ Ai.T, rtol=1e-12, atol=1e-14)
    # forward mode: d A^-1 = -A^-1 dA A^-1
    dA = rng(8).normal(size=(N, N))
    _, t = fd.jvp(lambda X: np.linalg.inv(X)[1, 2], (A,), (dA,))
    assert t == pytest.approx((-Ai @ dA @ Ai)[1, 2], rel=1e-12)
    # Hessian of logdet: d2/dA2 [V] = -A^-T V^T A^-T
    V = rng(9).normal(size=(N, N))
    np.testing.assert_allclose(fd.hvp(lambda X: np.linalg.slogdet(X)[1])(A, V),
                               -Ai.T @ V.T @ Ai.T, rtol=1e-11, atol=1e-14)


def test_values_match_numpy_and_scipy():
    A, S = well_conditioned(11), spd(12)
    b = rng(13).normal(size=N)

    def run(f, *args):
        return fd.value_and_grad(lambda *a: np.sum(f(*a)))(*args)[0]

    assert run(np.linalg.solve, A, b) == pytest.approx(np.sum(np.linalg.solve(A, b)), rel=1e-13)
    assert run(np.linalg.cholesky, S) == pytest.approx(np.sum(np.linalg.cholesky(S)), rel=1e-13)
    assert run(fl.expm, 0.5 * A / N) == pytest.approx(np.sum(sl.expm(0.5 * A / N)), rel=1e-12)
    sign, logabs = np.linalg.slogdet(A)
    assert fd.value_and_grad(lambda X: np.linalg.slogdet(X)[1])(A)[0] == pytest.approx(logabs)
    x_ref = sl.solve_triangular(A, b, lower=True)
    assert run(lambda X: fl.solve_triangular(X, b, lower=True), A) == pytest.approx(np.sum(x_ref))


@pytest.mark.parametrize("ord", [None, "fro", 1, -1, np.inf, -np.inf, 2, -2, "nuc"])
def test_matrix_norms(ord):
    A = well_conditioned(21) - 2.0
    f = lambda X: np.linalg.norm(X, ord)
    v, g = fd.value_and_grad(f)(A)
    assert v == pytest.approx(np.linalg.norm(A, ord), rel=1e-14)
    np.testing.assert_allclose(g, central_diff(f, A), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("ord", [None, 1, 2, 3, 0.5, np.inf, -np.inf, -1, 0])
def test_vector_norms(ord):
    x = np.array([0.7, -1.3, 2.1, -0.4])
    f = lambda v: np.linalg.norm(v, ord)
    v, g = fd.value_and_grad(f)(x)
    assert v == pytest.approx(np.linalg.norm(x, ord), rel=1e-14)
    np.testing.assert_allclose(g, central_diff(f, x), rtol=1e-7, atol=1e-8)


def test_eigh_values_and_vectors_match_numpy():
    S = spd(71)
    wr, Vr = np.linalg.eigh(S)
    v = fd.value_and_grad(lambda A: np.sum(np.linalg.eigh(A)[0]))(S)[0]
    assert v == pytest.approx(np.sum(wr), rel=1e-13)
    # eigenvectors with numpy's signs (both LAPACK's dsyevd): each column's dot with numpy's
    # is +1
    v = fd.value_and_grad(lambda A: np.sum(np.linalg.eigh(A)[1] * Vr))(S)[0]
    assert v == pytest.approx(N, rel=1e-12)
    # closed form: d w_i / dA = v_i v_i^T, folded onto the lower triangle that is read
    g = fd.grad(lambda A: np.linalg.eigh(A)[0][2])(S)
    G = np.outer(Vr[:, 2], Vr[:, 2])
    np.testing.assert_allclose(g, np.tril(2 * G, -1) + np.diag(np.diag(G)), rtol=1e-10,
                               atol=1e-13)


def test_eigh_repeated_eigenvalues():
    """At 2I every vector is an eigenvector: a function of the eigenvalues alone still has
    its gradient (sum w^2 = |A|_F^2 -> 2A folded), one of the eigenvectors does not."""
    A = 2.0 * np.eye(3)
    g = fd.grad(lambda X: np.sum(np.linalg.eigvalsh(X) ** 2))(A)
    np.testing.assert_allclose(g, 4.0 * np.eye(3))
    g = fd.grad(lambda X: np.sum(np.linalg.eigh(X)[1][:, 0] * np.array([1.0, 2.0, 3.0])))(
        A + np.diag([0.0, 0.0, 0.0]) + 0.5 * np.tril(np.ones((3, 3)), -1))
    assert np.all(np.isfinite(g))           # distinct eigenvalues there: finite
    g = fd.grad(lambda X: np.sum(W[:3, :3] * np.linalg.eigh(X)[1]))(A)
    assert not np.all(np.isfinite(g))       # repeated: no derivative, and it shows


# ------------------------------------------------------------------ degenerate cases

SINGULAR = np.array([[1.0, 2.0], [2.0, 4.0]])


def test_singular_solve_raises_numpys_error_at_trace_and_at_replay():
    f = fd.grad(lambda A: np.sum(np.linalg.solve(A, np.ones(2))))
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        f(SINGULAR)
    g = fd.grad(lambda A: np.sum(np.linalg.inv(A)))
    g(np.eye(2))                                  # traced at a regular matrix ...
    with pytest.raises(np.linalg.LinAlgError):    # ... the replay meets a singular one
        g(SINGULAR)
    np.testing.assert_allclose(g(2 * np.eye(2)), -0.25 * np.ones((2, 2)))


def test_cholesky_of_indefinite_matrix_raises():
    f = fd.grad(lambda A: np.sum(np.linalg.cholesky(A)))
    f(np.eye(2))
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        f(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_solve_triangular_zero_diagonal_raises():
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        fd.grad(lambda A: np.sum(fl.solve_triangular(A, np.ones(2), lower=True)))(
            np.array([[1.0, 0.0], [3.0, 0.0]]))


def test_slogdet_of_singular_matrix_is_numpys_value_with_nan_derivative():
    v, g = fd.value_and_grad(lambda A: np.linalg.slogdet(A)[1])(SINGULAR)
    assert v == -np.inf
    assert np.isnan(g).all()
    assert fd.value_and_grad(np.linalg.det)(SINGULAR)[0] == 0.0
    sign = []
    fd.grad(lambda A: sign.append(np.linalg.slogdet(A)[0]) or np.sum(A))(SINGULAR)
    assert sign == [0.0]


def test_only_the_read_triangle_has_a_derivative():
    S = spd(31)
    g = fd.grad(lambda A: np.sum(W * np.linalg.cholesky(A)))(S)
    assert np.all(np.triu(g, 1) == 0.0)
    g = fd.grad(lambda A: np.sum(fl.solve_triangular(A, b0, lower=True, unit_diagonal=True)))(
        well_conditioned(32))
    assert np.all(np.triu(g) == 0.0)


def test_constant_matrix_traced_rhs_and_plain_values():
    A = well_conditioned(41)
    g = fd.grad(lambda b: np.sum(W[0] * np.linalg.solve(A, b)))(b0)
    np.testing.assert_allclose(g, np.linalg.solve(A.T, W[0]), rtol=1e-13)
    # on plain values the functions are numpy's / scipy's
    np.testing.assert_array_equal(fl.solve_triangular(A, b0, lower=True),
                                  sl.solve_triangular(A, b0, lower=True))
    np.testing.assert_array_equal(fl.expm(0.1 * A), sl.expm(0.1 * A))


def test_lu_solve_with_scipys_factors_and_traced_rhs():
    A = well_conditioned(51)
    lu = sl.lu_factor(A)
    g = fd.grad(lambda b: np.sum(W[0] * fl.lu_solve(lu, b)))(b0)
    np.testing.assert_allclose(g, np.linalg.solve(A.T, W[0]), rtol=1e-12)


def test_structural_records_not_scalar_records():
    A = spd(61, 30)
    b = rng(62).normal(size=30)
    tape = fd.record(lambda X: np.linalg.slogdet(X)[1] + np.sum(np.linalg.solve(X, b)), A)
    recs = tape.records()
    names = [r[0] for r in recs]
    assert names.count("solve") == 1 and names.count("slogdet") == 1
    assert len(names) < 10
    solve_rec = recs[names.index("solve")]
    assert len(solve_rec[1]) == 30 and [len(o) for o in solve_rec[2]] == [900, 30]


def test_concurrent_replays_of_one_linalg_function():
    import threading
    f = fd.grad(lambda A: np.linalg.slogdet(A)[1] + np.sum(np.linalg.solve(A, b0)))
    mats = [spd(80 + i) for i in range(8)]
    f(mats[0])
    out = [None] * len(mats)

    def work(i):
        for _ in range(20):
            out[i] = f(mats[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(mats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for A, g in zip(mats, out):
        Ai = np.linalg.inv(A)
        np.testing.assert_allclose(g, Ai.T - np.outer(Ai.T @ np.ones(N), Ai @ b0), rtol=1e-10)
