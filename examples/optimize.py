"""scipy.optimize with fastad derivatives, next to the same runs with finite differences.

Two problems, each solved with L-BFGS-B (gradient only) and trust-ncg (gradient and
Hessian-vector products), once with exact derivatives from fastad and once with finite
differences:

1. the Rosenbrock function in n = 10 dimensions (minimum at x = 1), and
2. a nonlinear least-squares fit of y = a exp(-b t) + c to noisy data that this script
   generates from a fixed seed, with the parameters as a dict {"a", "b", "c"} (a pytree).

Two ways to hand fastad's derivatives to SciPy are shown:

    scipy.optimize.minimize(fd.value_and_grad(f), x0, jac=True, hessp=fd.hvp(f), ...)
    fastad.minimize(f, x0, method=...)      # wires the same, and takes pytree parameters

The finite-difference runs are what SciPy does when no jac is given (L-BFGS-B: forward
differences, n + 1 evaluations per gradient); trust-ncg cannot run without a gradient
function, so it gets a forward-difference gradient (scipy.optimize.approx_fprime) and
SciPy's '3-point' finite-difference Hessian of that.  For each run the script prints the
iterations, the number of times the objective's Python code ran, the final value, the
error, and the wall time (tracing included for fastad).

    python examples/optimize.py
    python examples/optimize.py --n 30 --points 200
"""
import argparse
import os
import sys
import time

# These problems are tiny: SciPy's L-BFGS-B calls BLAS on 10x10 matrices, where OpenBLAS's
# worker threads only add overhead and jitter (tens of ms per solve on a busy machine).
# One BLAS thread, unless the caller chose otherwise; this must precede importing numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 (after the BLAS thread setting above)

try:
    import fastad as fd
except ImportError:       # run from a source checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import fastad as fd
from fastad.optimize import minimize  # noqa: E402 (also fastad.minimize)

import scipy.optimize as so  # noqa: E402 (after the BLAS thread setting above)


# ------------------------------------------------------------------------ the problems

def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def make_decay_data(n=60, a=2.5, b=1.3, c=0.5, noise=0.02, seed=0):
    """Noisy samples of y = a exp(-b t) + c on t in [0, 4]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 4.0, n)
    y = a * np.exp(-b * t) + c + noise * rng.standard_normal(n)
    return t, y


def decay_loss(p, t, y):
    """Half the sum of squared residuals of the model a exp(-b t) + c; p = {"a", "b", "c"}."""
    r = p["a"] * np.exp(-p["b"] * t) + p["c"] - y
    return 0.5 * np.sum(r * r)


def decay_loss_flat(v, t, y):
    """The same loss over a flat vector (a, b, c), for the finite-difference runs."""
    return decay_loss({"a": v[0], "b": v[1], "c": v[2]}, t, y)


# ------------------------------------------------------------------------ the runs

class Counted:
    """Counts how many times the objective's Python code runs."""

    def __init__(self, f):
        self.f, self.calls = f, 0
        self.__name__ = getattr(f, "__name__", "f")

    def __call__(self, *args):
        self.calls += 1
        return self.f(*args)


def run_fastad(f, x0, method, args=()):
    """fastad's derivatives through plain scipy.optimize.minimize (the drop-in form)."""
    fc = Counted(f)
    start = time.perf_counter()
    kw = {"hessp": fd.hvp(fc)} if method == "trust-ncg" else {}
    res = so.minimize(fd.value_and_grad(fc), x0, args=args, jac=True, method=method, **kw)
    return res, time.perf_counter() - start, fc.calls


def run_fastad_pytree(f, x0, method, args=()):
    """fastad.minimize: the same wiring, with pytree parameters."""
    fc = Counted(f)
    start = time.perf_counter()
    res = minimize(fc, x0, method=method, args=args)
    return res, time.perf_counter() - start, fc.calls


def run_fd(f, x0, method, args=()):
    """Finite differences: SciPy's default for L-BFGS-B; for trust-ncg a forward-difference
    gradient and SciPy's 3-point Hessian of it."""
    fc = Counted(f)
    start = time.perf_counter()
    if method == "trust-ncg":
        res = so.minimize(fc, x0, args=args, method=method,
                          jac=lambda x, *a: so.approx_fprime(x, fc, np.sqrt(np.finfo(float).eps),
                                                             *a),
                          hess="3-point")
    else:
        res = so.minimize(fc, x0, args=args, method=method)
    return res, time.perf_counter() - start, fc.calls


def timed(run, f, x0, method, args=(), repeat=5):
    """Run a solve `repeat` times (each from scratch: fastad traces anew every time) and
    keep the median wall time."""
    times = []
    for _ in range(repeat):
        res, sec, calls = run(f, x0, method, args)
        times.append(sec)
    return res, float(np.median(times)), calls


def warm_up():
    """One tiny solve per method first, so one-time start-up costs inside SciPy (its
    L-BFGS-B code's first call is slow) are not billed to whichever run comes first."""
    q = lambda x: float(np.sum((x - 1.0) ** 2))
    dq = lambda x: 2.0 * (x - 1.0)
    so.minimize(q, np.zeros(3), jac=dq, method="L-BFGS-B")
    so.minimize(q, np.zeros(3), jac=dq, hessp=lambda x, p: 2.0 * p, method="trust-ncg")


def report(problem, method, how, res, seconds, calls, err):
    print(f"{problem:<12} {method:<9} {how:<8} nit={res.nit:<4d} fcalls={calls:<6d} "
          f"f={float(res.fun):<11.4e} err={err:<9.2e} time={seconds * 1e3:8.2f} ms  "
          f"success={bool(res.success)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10, help="Rosenbrock dimension (default 10)")
    ap.add_argument("--points", type=int, default=60, help="data points of the fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5,
                    help="solves per row; the median wall time is printed (default 5)")
    args = ap.parse_args(argv)

    warm_up()
    print("columns: iterations, times the objective's Python code ran, final value, "
          f"error, wall time (median of {args.repeat} solves, fastad's tracing included)\n")

    # 1. Rosenbrock
    x0 = np.full(args.n, -1.2)
    x0[1::2] = 1.0
    for method in ("L-BFGS-B", "trust-ncg"):
        for how, run in (("fastad", run_fastad), ("findiff", run_fd)):
            res, sec, calls = timed(run, rosenbrock, x0, method, (), args.repeat)
            report(f"rosen n={args.n}", method, how, res, sec, calls,
                   np.max(np.abs(res.x - 1.0)))
    print()

    # 2. nonlinear least squares: y = a exp(-b t) + c
    true = {"a": 2.5, "b": 1.3, "c": 0.5}
    t, y = make_decay_data(args.points, seed=args.seed, **true)
    p0 = {"a": 1.0, "b": 0.5, "c": 0.0}
    v0 = np.array([p0["a"], p0["b"], p0["c"]])
    # the least-squares optimum, for the error column: a tight fastad Newton-type solve
    best = minimize(decay_loss, p0, method="trust-exact", args=(t, y), options={"gtol": 1e-12})
    vbest = np.array([best.x[k] for k in "abc"])
    fits = {}
    for method in ("L-BFGS-B", "trust-ncg"):
        res, sec, calls = timed(run_fastad_pytree, decay_loss, p0, method, (t, y), args.repeat)
        fits[method] = res.x
        report("decay fit", method, "fastad", res, sec, calls,
               np.max(np.abs(np.array([res.x[k] for k in "abc"]) - vbest)))
        res, sec, calls = timed(run_fd, decay_loss_flat, v0, method, (t, y), args.repeat)
        report("decay fit", method, "findiff", res, sec, calls, np.max(np.abs(res.x - vbest)))
    print()
    print(f"true parameters   a={true['a']:.4f} b={true['b']:.4f} c={true['c']:.4f}")
    for method, p in fits.items():
        print(f"fit ({method:<9}) a={p['a']:.4f} b={p['b']:.4f} c={p['c']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
