"""Optimal control by direct transcription, with exact sparse derivatives from fastad.

The Van der Pol oscillator steered to rest:

    minimize    integral_0^T  x1^2 + x2^2 + u^2  dt
    subject to  x1' = (1 - x2^2) x1 - x2 + u,   x2' = x1,
                x(0) = (0, 1),   x(T) = (0, 0),   -0.75 <= u <= 1,   x1 >= -0.25

discretized on N intervals with the trapezoidal rule.  The unknowns are the states at the
N + 1 nodes and the controls on the N intervals; the dynamics become 2N equality
constraints, written below as a plain Python loop over the intervals.  fastad traces the
loop once, finds the sparsity of the constraint Jacobian and of the Lagrangian's Hessian
on the tape, colours them, and SciPy's trust-constr gets both exactly, as sparse matrices,
each evaluation costing a handful of sweeps (docs/sparse.md).

    python examples/optimal_control.py            # N = 1000, plot to optimal_control.png
    python examples/optimal_control.py --n 100 --no-plot
"""
import argparse
import os
import time

# trust-constr takes many norms of vectors of a few thousand elements; BLAS threads only
# spin on those (and cost seconds on a busy machine)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.optimize import Bounds  # noqa: E402

import fastad as fd  # noqa: E402

T = 10.0


def split(z, n):
    return z[:n + 1], z[n + 1:2 * n + 2], z[2 * n + 2:]


def rhs(x1, x2, u):
    return (1.0 - x2 * x2) * x1 - x2 + u, x1


def dynamics(z, n):
    """The 2N trapezoidal defects, interval by interval, plus the 4 boundary conditions."""
    x1, x2, u = split(z, n)
    h = T / n
    out = []
    for k in range(n):
        f1, f2 = rhs(x1[k], x2[k], u[k])
        g1, g2 = rhs(x1[k + 1], x2[k + 1], u[k])
        out.append(x1[k + 1] - x1[k] - 0.5 * h * (f1 + g1))
        out.append(x2[k + 1] - x2[k] - 0.5 * h * (f2 + g2))
    out += [x1[0], x2[0] - 1.0, x1[n], x2[n]]
    return np.stack(out)


def cost(z, n):
    x1, x2, u = split(z, n)
    h = T / n
    total = 0.0
    for k in range(n):
        total = total + 0.5 * h * (x1[k] ** 2 + x2[k] ** 2 + x1[k + 1] ** 2 + x2[k + 1] ** 2) \
            + h * u[k] ** 2
    return total


def solve(n, verbose=True):
    z0 = np.zeros(3 * n + 2)
    z0[n + 1:2 * n + 2] = np.linspace(1.0, 0.0, n + 1)      # x2 from 1 to 0
    lb = np.full(3 * n + 2, -np.inf)
    ub = np.full(3 * n + 2, np.inf)
    lb[:n + 1] = -0.25                                      # x1 >= -0.25
    lb[2 * n + 2:], ub[2 * n + 2:] = -0.75, 1.0              # control bounds
    con = fd.NonlinearConstraint(lambda z: dynamics(z, n), 0.0, 0.0)
    t0 = time.perf_counter()
    res = fd.minimize(lambda z: cost(z, n), z0, method="trust-constr", constraints=[con],
                      bounds=Bounds(lb, ub), options={"maxiter": 500, "gtol": 1e-8,
                                                      "xtol": 1e-10})
    seconds = time.perf_counter() - t0
    if verbose:
        J = fd.jacobian(lambda z: dynamics(z, n), sparse=True)
        J(res.x)
        info = J.info()
        print(f"N={n}  variables={3 * n + 2}  constraints={2 * n + 4}")
        print(f"constraint Jacobian: nnz={info['nnz']}  colours={info['colours']} "
              f"({info['direction']})")
        print(f"status={res.status} success={res.success} iterations={res.nit} "
              f"cost={res.fun:.8f} max_violation={res.constr_violation:.2e} "
              f"time={seconds:.2f}s")
    return res, seconds


def plot(res, n, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    x1, x2, u = split(res.x, n)
    t = np.linspace(0, T, n + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, x1, label="x1")
    ax.plot(t, x2, label="x2")
    ax.step(t[:-1], u, where="post", label="u")
    ax.set_xlabel("t")
    ax.legend()
    ax.set_title(f"Van der Pol, direct transcription, N = {n}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot saved to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="intervals (default 1000)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--plot", default="optimal_control.png")
    a = ap.parse_args()
    res, _ = solve(a.n)
    if not a.no_plot:
        plot(res, a.n, a.plot)


if __name__ == "__main__":
    main()
