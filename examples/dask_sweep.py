"""Global sensitivity analysis over 10^6 points on a Dask cluster, with fastad gradients.

The derivative-based global sensitivity measures (DGSM) of a model f(x) are
nu_i = E[(df/dx_i)^2] over the input distribution: Monte Carlo over many points, each
needing a gradient.  The model is the Ishigami function, a standard test case,

    f(x) = sin(x1) + a sin(x2)^2 + b x3^4 sin(x1),      x ~ U[-pi, pi]^3,

whose measures have closed forms (printed next to the estimates):

    nu_1 = 1/2 (1 + 2 b pi^4/5 + b^2 pi^8/9),   nu_2 = a^2 / 2,   nu_3 = 8 b^2 pi^6 / 7.

fastad traces f's gradient once, here; fastad.dask_map installs the compiled function
(tapes included) to every worker once, and each chunk of points is one batched replay in
C.  The same code runs on any Dask cluster: replace the LocalCluster by the scheduler's
address (Client("tcp://scheduler:8786")), a dask-jobqueue cluster (SLURMCluster, PBSCluster)
or a Kubernetes one (dask-kubernetes); see docs/scale.md.

    python examples/dask_sweep.py                          # 10^6 points, 2 worker processes
    python examples/dask_sweep.py --points 100000 --workers 4 --chunk 50000
    python examples/dask_sweep.py --quiet-cluster          # less background work per worker

It prints the throughput of a sweep after the first (which traces and ships the function)
next to one process's (fastad.vmap over the same number of points), best of --rounds, for
dask_map followed by Dask's mean and for fastad.dask.map_sum (the sums made in the tasks
and gathered in one round trip).
"""
import argparse
import math
import time

import numpy as np

import fastad as fd
import fastad.dask

A, B = 7.0, 0.1



def ishigami(x):
    return np.sin(x[0]) + A * np.sin(x[1]) ** 2 + B * x[2] ** 4 * np.sin(x[0])


def exact_dgsm():
    pi = math.pi
    return np.array([0.5 * (1 + 2 * B * pi ** 4 / 5 + B ** 2 * pi ** 8 / 9),
                     A ** 2 / 2,
                     8 * B ** 2 * pi ** 6 / 7])


def sweep(g, n, chunk, seed):
    """The DGSM estimates from n gradients at points drawn in the workers (a dask array)."""
    import dask.array as da
    X = da.random.default_rng(seed).uniform(-math.pi, math.pi, size=(n, 3), chunks=(chunk, 3))
    # traces once here, ships it once per worker, and joins chunks of cheap points into
    # tasks of ~0.1 s each (fastad.dask.TASK_SECONDS)
    return (fd.dask_map(g, X) ** 2).mean(axis=0)


def sweep_sum(g, n, chunk, seed, actors=False):
    """The same estimates in one round trip: each task draws its chunk, replays it and
    sums the squared gradients there; the client gathers the sums (fastad.dask.map_sum;
    with `actors`, the tasks run by fastad's actors in the workers, not the scheduler)."""
    import dask.array as da
    X = da.random.default_rng(seed).uniform(-math.pi, math.pi, size=(n, 3), chunks=(chunk, 3))
    return fastad.dask.map_sum(g, X, reduce=lambda G: (G * G).sum(axis=0), actors=actors) / n


def one_process(g, n, seed):
    """The same sweep in this process: one batched replay (fastad.vmap)."""
    X = np.random.default_rng(seed).uniform(-math.pi, math.pi, size=(n, 3))
    return (fd.vmap(g)(X) ** 2).mean(axis=0)


def best_of(fn, rounds):
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def main():
    from distributed import Client, LocalCluster, progress

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--chunk", type=int, default=0,
                   help="points per chunk of the array (default: ~0.1 s of work per task, "
                        "from the timed cost of a point; smaller chunks of cheap points are "
                        "joined by dask_map)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3, help="timed sweeps after the first")
    p.add_argument("--quiet-cluster", action="store_true",
                   help="make the LocalCluster with fastad.dask.QUIET_CLUSTER's settings "
                        "(no profiler, fewer health checks)")
    args = p.parse_args()
    import dask

    g = fd.grad(ishigami)
    t0 = time.perf_counter()
    with dask.config.set(fastad.dask.QUIET_CLUSTER if args.quiet_cluster else {}), \
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        print(f"cluster: {args.workers} worker processes, up in {time.perf_counter() - t0:.1f} s")
        # chunks sized from the cost of a point: tasks of ~0.1 s, one per worker at least
        chunk = args.chunk or fastad.dask.points_per_task(g, np.zeros(3), n=args.points)
        print(f"points per task: {chunk}")
        t1 = time.perf_counter()
        nu = sweep(g, args.points, chunk, args.seed).persist()
        progress(nu)
        nu = nu.compute()
        first = time.perf_counter() - t1
        dt, _ = best_of(lambda: sweep(g, args.points, chunk, args.seed + 1).compute(),
                        args.rounds)
        ds, nu_sum = best_of(lambda: sweep_sum(g, args.points, chunk, args.seed + 1),
                             args.rounds)
        da_, nu_act = best_of(lambda: sweep_sum(g, args.points, chunk, args.seed + 1, True),
                              args.rounds)
        loads = client.run(lambda: __import__("fastad.serialize").serialize.LOADED["compiled"])
    one, _ = best_of(lambda: one_process(g, args.points, args.seed + 1), args.rounds)
    print(f"\n{args.points} gradients (point generation and the mean included): first sweep "
          f"{first:.2f} s (trace, shipping, progress bar); then {dt:.3f} s: "
          f"{args.points / dt:,.0f} points/s; one process {one:.3f} s: "
          f"{args.points / one:,.0f} points/s; {args.workers} workers / one process = "
          f"{one / dt:.2f}x (best of {args.rounds}; wall clock: needs idle cores)")
    print(f"the same sweep with fastad.dask.map_sum (one round trip): {ds:.3f} s: "
          f"{args.points / ds:,.0f} points/s, {one / ds:.2f}x one process")
    print(f"... with map_sum(actors=True) (the scheduler bypassed): {da_:.3f} s: "
          f"{args.points / da_:,.0f} points/s, {one / da_:.2f}x one process")
    print(f"compiled function unpickled per worker: {sorted(loads.values())}")
    print(f"map_sum's estimates (seed {args.seed + 1}): {np.array2string(nu_sum, precision=4)}"
          f"; with actors the same bits: {bool(np.array_equal(nu_sum, nu_act))}")
    exact = exact_dgsm()
    for i in range(3):
        print(f"nu_{i + 1} = {nu[i]:10.4f}   exact {exact[i]:10.4f}   "
              f"relative error {abs(nu[i] - exact[i]) / exact[i]:.2e}")


if __name__ == "__main__":
    main()
