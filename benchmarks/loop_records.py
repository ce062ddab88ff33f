"""LOOP records (docs/design.md, "LOOP records"): what the optimizer does to the spring and
branchy, what the pass costs against the trace, and the replay with and without it, in
both tiers, beside the hand-written C.

    FASTAD_CACHE_DIR=$(mktemp -d) PYTHONPATH=src python benchmarks/loop_records.py [ids...]

An empty FASTAD_CACHE_DIR makes the "first call" column the compile time (trace +
compile + first gradient with native="always").  Prints one block per problem.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd  # noqa: E402

import peers  # noqa: E402
import problems as P  # noqa: E402
from native_vs_interpreter import median_time  # noqa: E402

DEFAULT = ["spring-n1000", "branchy-n1000"]


def pass_cost(p, args, rounds=7):
    """Median trace time and optimizer time (ms) of fd.record + Tape.optimize."""
    tr, op = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        tape = fd.record(p.f, *args)
        t1 = time.perf_counter()
        tape.optimize()
        op.append(time.perf_counter() - t1)
        tr.append(t1 - t0)
    return 1e3 * float(np.median(tr)), 1e3 * float(np.median(op)), tape.optimized


def main(ids):
    for pid in ids:
        p = P.BY_ID[pid]
        an, args = peers.fastad_argnums(p), p.args()
        trace, opt, o = pass_cost(p, args)
        print(f"{pid}: records {o['records_before']} -> {o['records_after']}, "
              f"{o['loops']} loops ({o['recurrences']} LOOP records), bytes "
              f"{o['bytes_before']} -> {o['bytes_after']}; trace {trace:.2f} ms, "
              f"optimizer {opt:.3f} ms ({100 * opt / trace:.0f}% of the trace)")
        c = None
        if p.c_name:
            reps = 100
            cf, cargs = peers.make_c_loop(p, reps)
            c = median_time(cf, cargs) / reps
        for optimize in (True, False):
            for native in ("never", "always"):
                g = fd.value_and_grad(p.f, argnums=an, native=native, optimize=optimize)
                t0 = time.perf_counter()
                g(*args)
                first = time.perf_counter() - t0
                t = median_time(g, args, 0.3)
                ratio = f"  {t / c:5.2f}x hand C" if c else ""
                print(f"  optimize={optimize!s:5s} native={native:6s} {1e6 * t:9.2f} us"
                      f"{ratio}  first call {first:.2f} s")
        if c:
            print(f"  hand C (loop inside C) {1e6 * c:9.2f} us")


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
