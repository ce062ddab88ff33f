"""What two threads give on this machine without fastad: the ceiling for
`test_bench_scale.py threads` (docs/scale.md, "Measured").

    python benchmarks/thread_ceiling.py [rounds]

Compiles a GIL-free C loop (a[i] = a[i] * c + d over 4 kB, in L1) twice -- scalar
(-O1 -fno-tree-vectorize) and vectorized (-O3 -march=native) -- and times the same work
on one thread and split over two threads (ctypes releases the GIL), rounds alternated,
medians.  Compute that fills the vector units scales by what the two cores really have:
on a virtual machine whose two vCPUs share a physical core's units, far less than 2x.
"""
import ctypes
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from fastad import native

SRC = """
void spin(double *a, long n, long reps)
{
    for (long r = 0; r < reps; r++)
        for (long i = 0; i < n; i++)
            a[i] = a[i] * 0.999999 + 1e-7;
}
"""
FLAGS = {"scalar": ["-O1", "-fno-tree-vectorize"], "vectorized": ["-O3", "-march=native"]}


def build(d, kind):
    argv, why = native.compiler()
    if argv is None:
        sys.exit(f"thread_ceiling: {why}")
    src, so = os.path.join(d, "spin.c"), os.path.join(d, f"spin_{kind}.so")
    with open(src, "w") as f:
        f.write(SRC)
    subprocess.run(argv + FLAGS[kind] + ["-shared", "-fPIC", "-o", so, src], check=True)
    lib = ctypes.CDLL(so)
    lib.spin.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long]
    return lib


def measure(lib, rounds, n=512, work=3.2e8):
    arrs = [np.ones(n), np.ones(n)]
    reps = int(work) // n

    def one():
        lib.spin(arrs[0].ctypes.data, n, reps)

    def two():
        # the caller's thread takes one half, as fastad's workers do: a second thread
        # started while the first already computes can wait milliseconds in a busy
        # core's queue before the scheduler moves it
        th = threading.Thread(target=lib.spin, args=(arrs[1].ctypes.data, n, reps // 2))
        th.start()
        lib.spin(arrs[0].ctypes.data, n, reps // 2)
        th.join()
    times = {one: [], two: []}
    for _ in range(rounds):
        for fn in (one, two):
            t = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - t)
    return float(np.median(times[one])), float(np.median(times[two]))


def main(rounds=15):
    with tempfile.TemporaryDirectory() as d:
        for kind in FLAGS:
            t1, t2 = measure(build(d, kind), rounds)
            print(f"{kind:10s} one thread {t1 * 1e3:6.1f} ms, two {t2 * 1e3:6.1f} ms: "
                  f"{t1 / t2:.2f}x (medians of {rounds}); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
