"""The sparse targets measured in CPU time of the calling thread (docs/sparse.md): fastad's
sparse Hessian and Jacobian against one gradient and against CasADi's sparse Functions, on
the formulations of test_bench_sparse.py.  CPU time (`time.thread_time`) rather than wall
time, so that a machine shared with other work still gives comparable ratios (caches and
memory bandwidth are still shared: rerun on a quiet machine with benchmarks/sparse_table.py).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src taskset -c 1 python benchmarks/sparse_cpu.py [repeats]

Each repeat prints the table again (medians of 40 calls each).  The first two rows are the
default path (the compiled colour lanes, docs/sparse.md, compiled before timing); the
others are the interpreted sweeps for comparison (`fastad.sparse.COMPILED_LANES = False`:
the tangent sweeps over the recorded gradient, and forward over reverse on f's tape with
`FOR_HESSIAN = "always"`).
"""
import os
import sys
import time

import numpy as np

import fastad as fd
from fastad import sparse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_bench_sparse import N, X, rosen, banded, casadi_banded  # noqa: E402


def cpu_ms(f, rounds=40):
    """Median CPU time of one call, in ms (after one warm-up call)."""
    f()
    ts = []
    for _ in range(rounds):
        t0 = time.thread_time()
        f()
        ts.append(time.thread_time() - t0)
    return float(np.median(ts)) * 1e3


def main(repeats=1):
    import casadi as ca
    x = ca.SX.sym("x", N)
    hess, _ = ca.hessian(ca.sum1(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2), x)
    FH = ca.Function("H", [x], [hess])
    FJ = ca.Function("J", [x], [ca.jacobian(casadi_banded(x, ca), x)])
    g, H = fd.grad(rosen), fd.hessian(rosen, sparse=True)
    g2, J = fd.grad(lambda x: 0.5 * np.sum(banded(x) ** 2)), fd.jacobian(banded, sparse=True)
    assert abs(H(X) - FH(X).sparse()).max() < 1e-8 * abs(H(X)).max()
    assert abs(J(X) - FJ(X).sparse()).max() < 1e-10 * abs(J(X)).max()
    print("compiled colour lanes:", sparse.wait(H), "/", sparse.wait(J))
    H_old, J_old = fd.hessian(rosen, sparse=True), fd.jacobian(banded, sparse=True)

    def interpreted(S, for_hessian=False):
        def run():
            old = sparse.COMPILED_LANES, sparse.FOR_HESSIAN
            sparse.COMPILED_LANES, sparse.FOR_HESSIAN = False, for_hessian
            try:
                return S(X)
            finally:
                sparse.COMPILED_LANES, sparse.FOR_HESSIAN = old
        return run
    fwd_over_rev = interpreted(H_old, "always")
    assert abs(fwd_over_rev() - H(X)).max() <= 1e-13 * abs(H(X)).max()
    assert abs(interpreted(H_old)() - H(X)).max() <= 1e-13 * abs(H(X)).max()
    assert abs(interpreted(J_old)() - J(X)).max() <= 1e-13 * abs(J(X)).max()
    for _ in range(repeats):
        print(f"n = {N}; CPU ms per call (medians of 40)")
        print("| problem | fastad gradient | fastad sparse | ratio | CasADi sparse |")
        print("|---|---|---|---|---|")
        for name, grad, S, F in (("Rosenbrock Hessian (compiled colour lanes)", g,
                                  lambda: H(X), FH),
                                 ("banded Jacobian (compiled colour lanes)", g2,
                                  lambda: J(X), FJ),
                                 ("Rosenbrock Hessian, interpreted: recorded gradient", g,
                                  interpreted(H_old), FH),
                                 ("Rosenbrock Hessian, interpreted: forward over reverse",
                                  g, fwd_over_rev, FH),
                                 ("banded Jacobian, interpreted", g2, interpreted(J_old),
                                  FJ)):
            a, c = cpu_ms(lambda: grad(X)), cpu_ms(lambda: F(X))  # noqa: B023 (called in this iteration)
            b = cpu_ms(S)
            print(f"| {name} | {a:.3g} | {b:.3g} | {b / a:.1f}x | {c:.3g} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
