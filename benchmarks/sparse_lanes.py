"""Tangent lanes against one sweep per colour (docs/sparse.md), on the sparse benchmarks'
tapes: checks both give the same bits and prints the median time of each.

    PYTHONPATH=src python benchmarks/sparse_lanes.py
"""
import os
import sys
import time

import numpy as np

import fastad as fd
from fastad import _sparsity

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from test_bench_sparse import rosen, banded  # noqa: E402
import optimal_control as oc  # noqa: E402


def median_ms(f, rounds=20):
    f()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def main():
    x = np.random.default_rng(0).uniform(-1, 1, 100000)
    n = 1000
    rng = np.random.default_rng(2)
    z = rng.uniform(-0.5, 0.5, 3 * n + 2)
    v = rng.standard_normal(2 * n + 4)
    cases = [("Rosenbrock Hessian n=1e5", fd.hessian(rosen, sparse=True), (x,)),
             ("banded Jacobian n=1e5 (fwd)", fd.jacfwd(banded, sparse=True), (x,)),
             ("OCP Lagrangian Hessian N=1000",
              fd.hessian(lambda z, v: np.sum(v * oc.dynamics(z, n)), sparse=True), (z, v)),
             ("OCP objective Hessian N=1000",
              fd.hessian(lambda z: oc.cost(z, n), sparse=True), (z,))]
    print("| tape | colours | scalar records, ranged elements | per colour | lanes |")
    print("|---|---|---|---|---|")
    for name, S, args in cases:
        S(*args)
        e, p = S._last, S._last.plan
        xs = np.concatenate([np.atleast_1d(a) for a in args])
        lanes = _sparsity.Lanes()

        def old():
            return _sparsity.compressed(e.tape, xs, e.col, p["colours"], p["ncolours"],  # noqa: B023 (called in this iteration)
                                        e.outs, False)  # noqa: B023 (called in this iteration)

        def new():
            return _sparsity.compressed_lanes(e.tape, xs, e.col, p["colours"],  # noqa: B023 (called in this iteration)
                                              p["ncolours"], e.outs, lanes)  # noqa: B023 (called in this iteration)
        a, b = old(), new()
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        print(f"| {name} | {p['ncolours']} | {_sparsity.lane_work(e.tape)} | "
              f"{median_ms(old):.3g} ms | {median_ms(new):.3g} ms |")


if __name__ == "__main__":
    main()
