"""Fusion of elementwise chains (docs/design.md, "Fusion"): the vectorized Rosenbrock
value_and_grad timed back to back in interleaved rounds, as ratios.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fusion_ratios.py [--rounds 7]

Contenders: fastad's interpreter fused (the default) and unfused (FASTAD_FUSE=0), native
code (native="always": the fused chain as one C loop), the hand-written numpy gradient,
jax.jit(value_and_grad) when installed, and the hand-written C gradient (loop inside C).
CPU time of this process (a shared machine's waits are not counted).
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

REPS = 20


def per_call(f, args, budget=0.05):
    n = 1
    while True:
        t0 = time.process_time()
        for _ in range(n):
            f(*args)
        t = time.process_time() - t0
        if t >= budget:
            return t / n
        n *= 2


def contenders(problem):
    args = problem.args()
    out = {}
    for name, native, fuse in (("fused", "never", "1"), ("unfused", "never", "0"),
                               ("native", "always", "1")):
        os.environ["FASTAD_FUSE"] = fuse
        vg = fd.value_and_grad(problem.f, native=native)
        vg(*args)
        out[name] = (vg, args)
    os.environ.pop("FASTAD_FUSE")
    out["numpy-hand"] = (problem.grad_hand, args)
    try:
        f, a = peers.make_jax_jit(problem)
        f(*a)
        out["jax-jit"] = (f, a)
    except Exception as exc:
        print(f"  (jax skipped: {type(exc).__name__}: {exc})")
    try:
        f, a = peers.make_c_loop(problem, REPS)
        f(*a)
        out["c-loop"] = (f, a)
    except Exception as exc:
        print(f"  (hand C skipped: {type(exc).__name__}: {exc})")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    for pid in ("rosen_vec-n10000", "rosen_vec-n1000000"):
        cs = contenders(P.BY_ID[pid])
        times = {c: [] for c in cs}
        for _ in range(a.rounds):
            for c, (f, args) in cs.items():
                times[c].append(per_call(f, args))
        med = {c: float(np.median(v)) / (REPS if c == "c-loop" else 1) for c, v in times.items()}
        print(pid + ": " + ", ".join(f"{c} {t * 1e6:.1f} us" for c, t in med.items()))
        for who in ("fused", "native"):
            r = med[who]
            print(f"  {who}: unfused/{who} {med['unfused'] / r:.2f}x, hand numpy/{who} "
                  f"{med['numpy-hand'] / r:.2f}x"
                  + (f", jax.jit/{who} {med['jax-jit'] / r:.2f}x" if "jax-jit" in med else "")
                  + (f", {who}/hand C {r / med['c-loop']:.2f}x" if "c-loop" in med else ""))


if __name__ == "__main__":
    main()
