"""The cost of fresh random draws in a replayed gradient (docs/conventions.md, "Random
draws").

A stochastic variational objective, `eps = rng.standard_normal(d); z = mu + exp(log_s) *
eps`, differentiated with value_and_grad, called the way an optimizer calls it (one float64
vector), four ways:

  fresh      the default: each replay re-draws eps from rng, then sweeps
  argument   eps drawn by the caller and passed as an argument (no detection, no redraw)
  freeze     random="freeze": the first draws reused (wrong for SGD; the speed of a replay)
  retrace    replay=False: the Python function traced on every call

    python -m pytest benchmarks/test_bench_random.py     # pytest-benchmark table
    python benchmarks/test_bench_random.py               # ratios to "argument"

The rows carry no "contender", so benchmarks/report.py leaves them out of docs/benchmarks.md.
"""
import sys
import time
import warnings

import numpy as np
import pytest

if __name__ != "__main__":
    fd = pytest.importorskip("fastad", reason="fastad is not importable (pip install -e .)")
else:
    import fastad as fd

D = 100


def make(kind):
    """(function of the parameter vector for one call, generator)."""
    rng = np.random.default_rng(0)

    def elbo(p):
        mu, log_s = p[:D], p[D:]
        eps = rng.standard_normal(D)
        z = mu + np.exp(log_s) * eps
        return 0.5 * np.sum(z * z) - np.sum(log_s)

    def elbo_eps(p, eps):
        mu, log_s = p[:D], p[D:]
        z = mu + np.exp(log_s) * eps
        return 0.5 * np.sum(z * z) - np.sum(log_s)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "argument":
            vg = fd.value_and_grad(elbo_eps)
            return lambda p: vg(p, rng.standard_normal(D))
        if kind == "freeze":
            vg = fd.value_and_grad(elbo, random="freeze")
        elif kind == "retrace":
            vg = fd.value_and_grad(elbo, replay=False)
        else:
            vg = fd.value_and_grad(elbo)
        vg(np.zeros(2 * D))
    return vg


KINDS = ("argument", "fresh", "freeze", "retrace")


@pytest.mark.parametrize("kind", KINDS)
def test_random_elbo(benchmark, kind):
    call = make(kind)
    p = np.full(2 * D, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benchmark(call, p)
    benchmark.extra_info["d"] = D


def _median(call, p, reps=2000):
    times = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(reps):
            call(p)
        times.append((time.perf_counter() - t) / reps)
    return sorted(times)[3]


if __name__ == "__main__":
    p = np.full(2 * D, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = {k: _median(make(k), p, 200 if k == "retrace" else 2000) for k in KINDS}
    for k in KINDS:
        print(f"{k:9s} {t[k] * 1e6:9.1f} us   {t[k] / t['argument']:6.2f} x argument")
    sys.exit(0)
