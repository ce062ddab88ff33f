"""Linear algebra cost: the gradient of slogdet(A) + sum(w * solve(A, b)) for a 200 x 200
SPD matrix, against the plain numpy forward evaluation of the same function
(docs/linalg.md, "cost").  The target: fastad's value_and_grad (a replay: forward and
reverse sweep) at most 3x numpy's forward.

    python -m pytest benchmarks/test_bench_linalg.py --benchmark-group-by=group
    python benchmarks/test_bench_linalg.py        # the ratio from one run, printed

One thread (benchmarks/conftest.py sets the BLAS thread variables; so does __main__).
"""
import os
import sys

if __name__ == "__main__":
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = "1"

import numpy as np

N = 200


def problem(n=N, seed=0):
    r = np.random.default_rng(seed)
    B = r.normal(size=(n, n))
    A = B @ B.T / n + np.eye(n)
    return A, r.normal(size=n), r.normal(size=n)


def objective(A, b, w):
    return np.linalg.slogdet(A)[1] + np.sum(w * np.linalg.solve(A, b))


def compiled(b, w):
    import fastad as fd
    return fd.value_and_grad(lambda A: objective(A, b, w))


def check(vg, A, b, w):
    """The value, and the gradient against its closed form A^-T - A^-T w (A^-1 b)^T."""
    v, g = vg(A)
    Ai = np.linalg.inv(A)
    x = Ai @ b
    ref = Ai.T - np.outer(Ai.T @ w, x)
    assert abs(v - objective(A, b, w)) < 1e-9 * abs(v)
    assert np.max(np.abs(g - ref)) < 1e-9 * np.max(np.abs(ref))


def test_linalg_numpy_forward(benchmark):
    import pytest
    pytest.importorskip("pytest_benchmark")
    A, b, w = problem()
    benchmark.group = "linalg-slogdet-solve-200"
    benchmark(objective, A, b, w)


def test_linalg_fastad_value_and_grad(benchmark):
    import pytest
    pytest.importorskip("fastad")
    A, b, w = problem()
    vg = compiled(b, w)
    check(vg, A, b, w)                  # trace, checked; the benchmark times replays
    benchmark.group = "linalg-slogdet-solve-200"
    benchmark(vg, A)


def main():
    import timeit
    A, b, w = problem()
    vg = compiled(b, w)
    check(vg, A, b, w)
    reps = 50

    def best(f):
        return min(timeit.repeat(f, number=reps, repeat=7)) / reps

    t_np = best(lambda: objective(A, b, w))
    t_fd = best(lambda: vg(A))
    print(f"n = {N}: numpy forward {t_np * 1e3:.3f} ms, fastad value_and_grad "
          f"{t_fd * 1e3:.3f} ms, ratio {t_fd / t_np:.2f} (target <= 3)")


# The SVD and QR records: the gradient of a function of every factor of a 120 x 80 matrix
# against numpy's forward evaluation (no target; reported as a ratio).
M_DEC, N_DEC = 120, 80


def decomposition_problem(seed=1):
    r = np.random.default_rng(seed)
    return (r.normal(size=(M_DEC, N_DEC)), r.normal(size=(M_DEC, N_DEC)),
            r.normal(size=(N_DEC, N_DEC)))


def svd_objective(A, W, V):
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    return np.sum(W * U) + np.sum(s ** 2) + np.sum(V * Vh)


def qr_objective(A, W, V):
    Q, R = np.linalg.qr(A)
    return np.sum(W * Q) + np.sum(V * R)


def eig_objective(A, W, V):
    w, X = np.linalg.eig(A)
    return np.sum(w ** 2) + np.sum(V * X)


def eig_problem(seed=2):
    """An 80 x 80 non-symmetric matrix with a real, well-separated spectrum."""
    r = np.random.default_rng(seed)
    S = r.normal(size=(N_DEC, N_DEC)) + 4.0 * np.eye(N_DEC)
    return S @ np.diag(np.arange(1.0, N_DEC + 1.0)) @ np.linalg.inv(S)


def decomposition_ratios(reps=10):
    import timeit
    import fastad as fd
    A, W, V = decomposition_problem()
    out = {}
    for name, f, X in (("svd", svd_objective, A), ("qr", qr_objective, A),
                       ("eig", eig_objective, eig_problem())):
        vg = fd.value_and_grad(lambda Y: f(Y, W, V))  # noqa: B023 (called in this iteration)
        vg(X)
        t_np = min(timeit.repeat(lambda: f(X, W, V), number=reps, repeat=5)) / reps  # noqa: B023 (called in this iteration)
        t_fd = min(timeit.repeat(lambda: vg(X), number=reps, repeat=5)) / reps  # noqa: B023 (called in this iteration)
        out[name] = (t_np, t_fd)
    return out


def test_decompositions_fastad_value_and_grad(benchmark):
    import pytest
    fd = pytest.importorskip("fastad")
    A, W, V = decomposition_problem()
    vg = fd.value_and_grad(lambda X: svd_objective(X, W, V))
    vg(A)
    benchmark.group = "linalg-svd-120x80"
    benchmark(vg, A)


def test_decompositions_numpy_forward(benchmark):
    A, W, V = decomposition_problem()
    benchmark.group = "linalg-svd-120x80"
    benchmark(svd_objective, A, W, V)


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    main()
    for name, (t_np, t_fd) in decomposition_ratios().items():
        shape = f"{N_DEC}x{N_DEC}" if name == "eig" else f"{M_DEC}x{N_DEC}"
        print(f"{name} {shape}: numpy forward {t_np * 1e3:.3f} ms, fastad "
              f"value_and_grad {t_fd * 1e3:.3f} ms, ratio {t_fd / t_np:.2f}")
