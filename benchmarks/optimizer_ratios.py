"""The optimizer's gains as ratios measured back to back in one process (docs/benchmarks.md).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/optimizer_ratios.py [--rounds 9]

For each problem of benchmarks/problems.py, fastad's replayed value_and_grad with the
optimizer (the default), with loops rolled but no fusion (FASTAD_FUSE=0) and with
optimize=False, the hand-written numpy gradient and, when
installed, CasADi SX and jax.jit, are timed in interleaved rounds (A B C A B C ...), so a
load that changes during the run hits every contender alike; the table gives medians and
ratios.  It also times the first call (trace + optimize + first gradient) of the
Rosenbrock loop at n = 10^4 and reports bytes per scalar op of its tape.  The full
pytest-benchmark suite (python benchmarks/run.py) has the optimize=False column too.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd  # noqa: E402
import peers  # noqa: E402
import problems as P  # noqa: E402
from fastad.trace import optimizer_text  # noqa: E402

REPS = 20     # gradients per call of the C loop
PIDS = ["rosen_loop-n10000", "rosen_vec-n10000", "rosen_vec-n1000000", "mlp-n256", "spring-n1000"]


# CPU time of this process, not wall time: on a machine shared with other jobs, time spent
# waiting for a core is not the contender's (--wall to time by the clock instead)
CLOCK = time.process_time


def per_call(f, args, budget=0.02):
    """Seconds per call of f(*args), looping enough calls to fill `budget` seconds."""
    n, t = 1, 0.0
    while True:
        t0 = CLOCK()
        for _ in range(n):
            f(*args)
        t = CLOCK() - t0
        if t >= budget:
            return t / n
        n *= 2


def contenders(problem):
    out = {}
    args = problem.args()
    an = peers.fastad_argnums(problem)
    for name, opt in (("fastad", True), ("fastad-noopt", False)):
        vg = fd.value_and_grad(problem.f, argnums=an, optimize=opt)
        vg(*args)
        out[name] = (vg, args)
    os.environ["FASTAD_FUSE"] = "0"        # rolled, not fused (docs/design.md, "Fusion")
    try:
        vg = fd.value_and_grad(problem.f, argnums=an)
        vg(*args)
        out["fastad-nofuse"] = (vg, args)
    finally:
        del os.environ["FASTAD_FUSE"]
    out["numpy-hand"] = (problem.grad_hand, args)
    for name, maker in (("casadi", getattr(peers, "make_casadi", None)),
                        ("jax-jit", getattr(peers, "make_jax_jit", None))):
        # jax.jit of an unrolled 10^4-step loop compiles for minutes; CasADi SX at 10^6
        # elements builds for as long: left out, as in benchmarks/run.py --quick
        if maker is None or (name == "jax-jit" and "loop" in problem.id) \
                or (name == "jax-jit" and "spring" in problem.id) \
                or (name == "casadi" and problem.id.endswith("n1000000")):
            continue
        try:
            f, a = maker(problem)
            f(*a)
            out[name] = (f, a)
        except Exception as exc:  # a peer that is missing or cannot run this problem
            print(f"  ({name} skipped on {problem.id}: {type(exc).__name__}: {exc})")
    try:       # hand-written C, the loop inside C: time per gradient
        f, a = peers.make_c_loop(problem, REPS)
        f(*a)
        out["c-loop"] = (f, a)
    except Exception as exc:
        print(f"  (c-loop skipped on {problem.id}: {type(exc).__name__}: {exc})")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("-k", default="")
    ap.add_argument("--wall", action="store_true", help="time by the wall clock")
    a = ap.parse_args()
    global CLOCK
    if a.wall:
        CLOCK = time.perf_counter
    print(f"{'problem':22s} {'fastad':>10s} {'noopt/fastad':>13s} {'nofuse/fastad':>14s} "
          f"{'hand/fastad':>12s} "
          f"{'casadi/fastad':>14s} {'jaxjit/fastad':>14s} {'fastad/C-loop':>14s}")
    for pid in PIDS:
        if a.k not in pid:
            continue
        problem = P.BY_ID[pid]
        cs = contenders(problem)
        times = {c: [] for c in cs}
        for _ in range(a.rounds):
            for c, (f, args) in cs.items():
                times[c].append(per_call(f, args))
        med = {c: float(np.median(v)) / (REPS if c == "c-loop" else 1) for c, v in times.items()}
        ref = med["fastad"]
        cell = lambda c, med=med, ref=ref: f"{med[c] / ref:.2f}x" if c in med else "-"
        vs_c = f"{ref / med['c-loop']:.1f}x" if "c-loop" in med else "-"
        print(f"{pid:22s} {ref * 1e6:8.1f}us {cell('fastad-noopt'):>13s} "
              f"{cell('fastad-nofuse'):>14s} {cell('numpy-hand'):>12s} "
              f"{cell('casadi'):>14s} {cell('jax-jit'):>14s} {vs_c:>14s}")
        tape = cs["fastad"][0].tapes()[0]
        if tape.optimized:
            print(f"{'':22s} optimizer: {optimizer_text(tape.optimized)}")
        t0 = CLOCK()
        rec = fd.record(problem.f, *problem.args())
        t1 = CLOCK()
        rec.optimize()
        t2 = CLOCK()
        print(f"{'':22s} trace {(t1 - t0) * 1e3:.2f} ms, optimizer pass {(t2 - t1) * 1e3:.2f} ms "
              f"(CPU), {len(rec)} records after")

    if a.k in "rosen_loop-n10000":
        problem = P.BY_ID["rosen_loop-n10000"]
        args = problem.args()
        first = {True: [], False: []}
        for _ in range(max(3, a.rounds // 2)):
            for opt in (True, False):
                t0 = CLOCK()
                fd.value_and_grad(problem.f, optimize=opt)(*args)
                first[opt].append(CLOCK() - t0)
        f1, f0 = np.median(first[True]), np.median(first[False])
        print(f"first call, Rosenbrock loop n=1e4: optimized {f1 * 1e3:.1f} ms, as recorded "
              f"{f0 * 1e3:.1f} ms, ratio {f1 / f0:.2f}")
        n_ops = 8 * (len(args[0]) - 1)
        for opt in (True, False):
            vg = fd.value_and_grad(problem.f, optimize=opt)
            vg(*args)
            print(f"bytes per scalar op ({'optimized' if opt else 'as recorded'}): "
                  f"{vg.tapes()[0].nbytes / n_ops:.1f}")


if __name__ == "__main__":
    main()
