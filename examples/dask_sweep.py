"""Global sensitivity analysis over 10^6 points on a Dask cluster, with fastad gradients.

The derivative-based global sensitivity measures (DGSM) of a model f(x) are
nu_i = E[(df/dx_i)^2] over the input distribution: Monte Carlo over many points, each
needing a gradient.  The model is the Ishigami function, a standard test case,

    f(x) = sin(x1) + a sin(x2)^2 + b x3^4 sin(x1),      x ~ U[-pi, pi]^3,

whose measures have closed forms (printed next to the estimates):

    nu_1 = 1/2 (1 + 2 b pi^4/5 + b^2 pi^8/9),   nu_2 = a^2 / 2,   nu_3 = 8 b^2 pi^6 / 7.

fastad traces f's gradient once, here; fastad.dask_map scatters the compiled function
(tapes included) to every worker once, and each chunk of points is one batched replay in
C.  The same code runs on any Dask cluster: replace the LocalCluster by the scheduler's
address (Client("tcp://scheduler:8786")), a dask-jobqueue cluster (SLURMCluster, PBSCluster)
or a Kubernetes one (dask-kubernetes); see docs/scale.md.

    python examples/dask_sweep.py                          # 10^6 points, 2 worker processes
    python examples/dask_sweep.py --points 100000 --workers 4 --chunk 50000
"""
import argparse
import math
import time

import numpy as np

import fastad as fd

A, B = 7.0, 0.1


def ishigami(x):
    return np.sin(x[0]) + A * np.sin(x[1]) ** 2 + B * x[2] ** 4 * np.sin(x[0])


def exact_dgsm():
    pi = math.pi
    return np.array([0.5 * (1 + 2 * B * pi ** 4 / 5 + B ** 2 * pi ** 8 / 9),
                     A ** 2 / 2,
                     8 * B ** 2 * pi ** 6 / 7])


def main():
    import dask.array as da
    from distributed import Client, LocalCluster, progress

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--chunk", type=int, default=100_000, help="points per task")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    g = fd.grad(ishigami)
    rs = da.random.RandomState(args.seed)
    X = rs.uniform(-math.pi, math.pi, size=(args.points, 3), chunks=(args.chunk, 3))
    t0 = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        print(f"cluster: {args.workers} worker processes, up in {time.perf_counter() - t0:.1f} s")
        t1 = time.perf_counter()
        G = fd.dask_map(g, X)                   # traces once here, scatters once per worker
        nu = (G ** 2).mean(axis=0).persist()
        progress(nu)
        nu = nu.compute()
        dt = time.perf_counter() - t1
        loads = client.run(lambda: __import__("fastad.serialize").serialize.LOADED["compiled"])
    print(f"\n{args.points} gradients in {dt:.2f} s: {args.points / dt:,.0f} points/s "
          f"(point generation and the mean included)")
    print(f"compiled function unpickled per worker: {sorted(loads.values())}")
    exact = exact_dgsm()
    for i in range(3):
        print(f"nu_{i + 1} = {nu[i]:10.4f}   exact {exact[i]:10.4f}   "
              f"relative error {abs(nu[i] - exact[i]) / exact[i]:.2e}")


if __name__ == "__main__":
    main()
