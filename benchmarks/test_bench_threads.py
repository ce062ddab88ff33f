"""Replaying one compiled gradient from 2 threads vs 1: the 2-core speed-up.

The scalar-loop Rosenbrock (n = 1000: ~8000 records; n = 10000: ~80000) is traced once;
a round then computes ROUND gradients, all in one thread or split over two threads of a
pool.  The sweeps run without the GIL (tapes of 2000 records or more), so on two cores
the two-thread round should take a little over half as long; what is left serial is the
per-call Python work (argument signature, copying inputs in, the result array out).

    python -m pytest benchmarks/test_bench_threads.py      # pytest-benchmark table
    python benchmarks/test_bench_threads.py                # just the speed-ups

The 2-thread benchmark stores the speed-up over the 1-thread one (same n, same session)
in its extra_info: "speedup" (ratio of the medians) and "speedup_min" (of the fastest
rounds, the better estimate on a machine where other processes take a core now and then:
the script alternates 1- and 2-thread rounds and reports both as well).  These rows carry no
"contender", so benchmarks/report.py leaves them out of docs/benchmarks.md.
"""
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

if __name__ != "__main__":
    fd = pytest.importorskip("fastad", reason="fastad is not importable (pip install -e .)")
else:
    import fastad as fd

ROUND = 64              # gradients per timed round, whatever the number of threads
SIZES = (1000, 10000)
_stats = {}             # (n, threads) -> (median, min) seconds of a round, for the speed-up


def rosen_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def setup_round(n, threads):
    """A traced gradient and a function computing ROUND gradients over `threads` threads."""
    g = fd.grad(rosen_loop)
    xs = [np.random.default_rng(k).uniform(-2, 2, n) for k in range(threads)]
    g(xs[0])
    # sweeps release the GIL from 2000 slots on (rolled loops have few records, many slots)
    assert g.tapes()[0].n_slots >= 2000, "tape too small for nogil sweeps"
    per = ROUND // threads

    def calls(k):
        x = xs[k]
        for _ in range(per):
            g(x)

    if threads == 1:
        return g, lambda: calls(0), None
    pool = ThreadPoolExecutor(threads)

    def one_round():
        for f in [pool.submit(calls, k) for k in range(threads)]:
            f.result()

    one_round()          # start the pool's threads outside the timing
    return g, one_round, pool


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", SIZES)
def test_replay_threads(benchmark, n, threads):
    g, one_round, pool = setup_round(n, threads)
    benchmark.group = f"threads: rosen_loop n={n}, {ROUND} gradients per round"
    benchmark.extra_info.update({"n": n, "threads": threads, "gradients_per_round": ROUND,
                                 "tape_len": len(g.tapes()[0]), "cores": os.cpu_count()})
    try:
        benchmark.pedantic(one_round, rounds=30 if n == 1000 else 10, iterations=1,
                           warmup_rounds=2)
    finally:
        if pool is not None:
            pool.shutdown()
    info = g.cache_info()
    assert info["traces"] == 1, info
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        _stats[n, threads] = stats.stats.median, stats.stats.min
        if threads > 1 and (n, 1) in _stats:
            (med1, min1), (med2, min2) = _stats[n, 1], _stats[n, threads]
            benchmark.extra_info["speedup"] = round(med1 / med2, 3)
            benchmark.extra_info["speedup_min"] = round(min1 / min2, 3)


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(n, rounds=40):
    """Alternate 1- and 2-thread rounds; per mode the (median, min) seconds of a round
    and the process CPU seconds per round (equal in both modes: no extra work in threads)."""
    setups = [setup_round(n, 1), setup_round(n, 2)]
    times, cpu = ([], []), [0.0, 0.0]
    try:
        for _ in range(rounds):
            for k, (_g, one_round, _pool) in enumerate(setups):
                c0, t0 = cpu_seconds(), time.perf_counter()
                one_round()
                times[k].append(time.perf_counter() - t0)
                cpu[k] += cpu_seconds() - c0
    finally:
        setups[1][2].shutdown()
    return [(float(np.median(t)), min(t), c / rounds) for t, c in zip(times, cpu)]


if __name__ == "__main__":
    print(f"{os.cpu_count()} cores, {ROUND} gradients per round, 40 rounds of each, alternated")
    for n in SIZES:
        (med1, min1, cpu1), (med2, min2, cpu2) = measure(n)
        us = 1e6 / ROUND
        print(f"rosen_loop n={n:6d}: per gradient, 1 thread {min1 * us:7.1f} us, 2 threads "
              f"{min2 * us:7.1f} us (fastest rounds): speed-up {min1 / min2:.2f}x (medians: "
              f"{med1 / med2:.2f}x); CPU per gradient {cpu1 * us:.1f} us vs {cpu2 * us:.1f} us")
    sys.exit(0)
