"""Cached native code in a new process (docs/native.md, "Cache"): no compile, and the first
replay as fast as a warm one.

    PYTHONPATH=src python benchmarks/native_new_process.py [--steps N] [--rounds R]

A first child process compiles the tape of a spring simulation (N explicit Euler steps, a
recurrence of scalar records) into an empty cache directory.  Then R fresh child
processes each call value_and_grad with native="auto": the first call traces and finds the
shared object in the cache (no compile: its compile time reads 0), the second call is the
first replay, and the following ones are warm.  Printed: the first call, the first
replay, the median warm replay and their ratio, per process.
"""
import argparse
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import sys, time
import numpy as np
import fastad as fd
from fastad import native

def spring(p):
    x, v = 1.0, 0.0
    for _ in range({steps}):
        a = -p[0] * x - p[1] * v
        x, v = x + 0.01 * v, v + 0.01 * a
    return x * x + v * v

g = fd.value_and_grad(spring, native=sys.argv[1])
p = np.array([2.0, 0.3])
t0 = time.perf_counter(); g(p); first = time.perf_counter() - t0
t0 = time.perf_counter(); g(p); replay1 = time.perf_counter() - t0
warm = []
for _ in range(200):
    t0 = time.perf_counter(); g(p); warm.append(time.perf_counter() - t0)
tape = g.tapes()[0]
pol = tape.native_policy
print(native.tier(tape).split()[0], pol.compile_time if pol else None, first, replay1,
      float(np.median(warm)))
"""


def child(mode, steps, env):
    out = subprocess.run([sys.executable, "-c", CHILD.format(steps=steps), mode], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], float(out[1]) if out[1] != "None" else None, *map(float, out[2:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, FASTAD_CACHE_DIR=d)
        tier, ct, first, _, warm = child("always", a.steps, env)
        print(f"compiling process: {tier}, compile {ct:.2f} s, first call {first:.2f} s, "
              f"warm replay {warm * 1e6:.1f} us")
        print(f"{'new process':12s} {'tier':8s} {'compile':>8s} {'first call':>11s} "
              f"{'1st replay':>11s} {'warm':>9s} {'1st/warm':>9s}")
        for r in range(a.rounds):
            tier, ct, first, rep1, warm = child("auto", a.steps, env)
            print(f"{r:<12d} {tier:8s} {ct:7.2f}s {first * 1e3:9.2f}ms {rep1 * 1e6:9.1f}us "
                  f"{warm * 1e6:7.1f}us {rep1 / warm:9.2f}")


if __name__ == "__main__":
    main()
