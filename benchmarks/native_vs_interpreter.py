"""Interpreter vs native code, side by side with hand-written C (docs/native.md).

    PYTHONPATH=src python benchmarks/native_vs_interpreter.py [problem ids...]

For each problem: the replayed value_and_grad in both tiers (median of rounds within a
budget), the hand-written C with its repeat loop inside C (per gradient), and the time
of the first call with native="always" (trace + compile, or a cache load).  Use an empty
FASTAD_CACHE_DIR to include compile times.  Prints one line per problem.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd  # noqa: E402
from fastad import native  # noqa: E402

import peers  # noqa: E402
import problems as P  # noqa: E402

DEFAULT = ["notes_f", "branchy-n1000", "spring-n1000", "rosen_loop-n1000", "rosen_loop-n10000",
           "rosen_vec-n10000", "rosen_vec-n1000000"]


def median_time(f, args, budget=0.5):
    f(*args)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f(*args)
        if time.perf_counter() - t0 > 0.05:
            break
        n *= 4
    ts, end = [], time.perf_counter() + budget
    while time.perf_counter() < end or len(ts) < 3:
        t0 = time.perf_counter()
        for _ in range(n):
            f(*args)
        ts.append((time.perf_counter() - t0) / n)
    return float(np.median(ts))


def main(ids):
    print(f"{'problem':20s} {'interp':>10s} {'native':>10s} {'int/nat':>8s} {'C loop':>10s} "
          f"{'nat/C':>7s} {'first call':>11s}  tier")
    for pid in ids:
        p = P.BY_ID[pid]
        an, args = peers.fastad_argnums(p), p.args()
        gi = fd.value_and_grad(p.f, argnums=an, native="never")
        gn = fd.value_and_grad(p.f, argnums=an, native="always")
        gi(*args)
        t0 = time.perf_counter()
        gn(*args)
        first = time.perf_counter() - t0
        ti, tn = median_time(gi, args), median_time(gn, args)
        tc = float("nan")
        if p.c_name:
            reps = 100
            c, cargs = peers.make_c_loop(p, reps)
            tc = median_time(c, cargs) / reps
        tier = native.tier(gn.tapes()[0])
        print(f"{pid:20s} {ti * 1e6:8.2f}us {tn * 1e6:8.2f}us {ti / tn:8.2f} {tc * 1e6:8.2f}us "
              f"{tn / tc:7.2f} {first:10.2f}s  {tier[:60]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
