"""Where the fixed cost of a fastad.dask.map_sum call goes on a 2-process LocalCluster
(docs/scale.md, "Where the fixed cost of a call goes").  Diagnostics, not a benchmark
table: each mode prints what it measured.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py timeline [N]
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py actors [N]
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py ceiling
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py latency
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py against [COMMIT] [N]
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py messages
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py background
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dask_fixed_cost.py inworker

timeline    one call's milestones, milliseconds after the call began (medians of 15 calls of
            N = 10^6 Ishigami gradients, 50 ms apart): the client's Client.get (graph sent),
            the scheduler's update_graph, the chunk tasks' start (Dask's task stream) and the
            start of their replay (after the points are drawn), their end, the scheduler's
            task-finished, the results gathered.  Wall times: they need idle cores.
actors      the same for map_sum(actors=True) (no scheduler milestones: n/a).
against     map_sum of this tree against fastad/dask.py of a commit (default 730c31b: before
            the low-level graph), alternated: `against [COMMIT] [N]`.
latency     the round trip of an actor call that does nothing, and of a one-task submit and
            its result, through the scheduler's proxy and directly to the worker.
ceiling     two plain processes (multiprocessing, no Dask) doing half the sweep each against
            one process doing all of it: what two cores give at most.
messages    how long map_sum's graph waits in the client's batched stream to the scheduler
            (at most one message per 10 ms) when calls run back to back: the last call's
            futures held until the next call's graph is sent (map_sum) against released as
            each call returns (fastad.dask.release_held after it, as before).  A latency
            measured on the message itself, so load changes it little.
background  the CPU an idle 2-worker LocalCluster burns per second, made with Dask's default
            settings and with fastad.dask.QUIET_CLUSTER.
inworker    a chunk of 5*10^5 points replayed and reduced, whole or in sub-chunks of 32768 and
            8192 points, timed (thread CPU) and page faults counted, in this process and in a
            worker process of a LocalCluster (whose nanny sets MALLOC_TRIM_THRESHOLD_=65536).
"""
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd                                         # noqa: E402
import fastad.dask as fdd                                   # noqa: E402
from fastad.dask import QUIET_CLUSTER                       # noqa: E402
from test_bench_scale import ishigami                       # noqa: E402


def _cluster(config=None, workers=2):
    import dask
    from distributed import LocalCluster
    with dask.config.set(config or {}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address=None)


def _points(n, chunk):
    import dask.array as da
    return da.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3), chunks=(chunk, 3))


def _sq(G):
    return (G * G).sum(axis=0)


# ---------------------------------------------------------------------- timeline
def _stamp_replays(actors=False):
    """In a worker: log (start, end) wall clock of map_sum's replays (fastad.dask._reduced,
    named by reference in the tasks), and the start of the actors' calls; returns and
    clears the log (of the actors' calls with `actors`)."""
    if not hasattr(fdd, "_stamps"):
        fdd._stamps, untimed = [], fdd._reduced

        def stamped(*a):
            t = time.time()
            try:
                return untimed(*a)
            finally:
                fdd._stamps.append((t, time.time()))
        fdd._reduced = stamped
        fdd._actor_stamps, unstamped = [], fdd._Runner.run

        def run(self, nodes):       # map_sum(actors=True): when the actor's call began
            fdd._actor_stamps.append(time.time())
            return unstamped(self, nodes)
        fdd._Runner.run = run
    if actors:
        out = list(fdd._actor_stamps)
        fdd._actor_stamps.clear()
        return out
    out = list(fdd._stamps)
    fdd._stamps.clear()
    return out


def timeline(n=10**6, calls=15, actors=False):
    from distributed import Client, get_task_stream
    from distributed.scheduler import Scheduler
    marks = {}

    def stamp(cls, name, tag, is_async):
        real = getattr(cls, name)
        if is_async:
            async def wrapped(self, *a, **k):
                marks.setdefault(tag + "0", time.time())
                try:
                    return await real(self, *a, **k)
                finally:
                    marks[tag + "1"] = time.time()
        else:
            def wrapped(self, *a, **k):
                marks.setdefault(tag + "0", time.time())
                try:
                    return real(self, *a, **k)
                finally:
                    marks[tag + "1"] = time.time()
        setattr(cls, name, wrapped)
    stamp(Scheduler, "update_graph", "graph", True)
    stamp(Scheduler, "handle_task_finished", "finished", False)
    g = fd.grad(ishigami)
    with _cluster() as cluster, Client(cluster) as client:
        stamp(Client, "get", "get", False)
        stamp(Client, "gather", "gather", False)
        chunk = fdd.points_per_task(g, np.zeros(3), n=n, client=client)
        client.run(_stamp_replays)
        for _ in range(3):
            fdd.map_sum(g, _points(n, chunk), reduce=_sq, actors=actors)
        client.run(_stamp_replays)
        rows = []
        for _ in range(calls):
            time.sleep(0.05)
            marks.clear()
            with get_task_stream() as ts:
                t0 = time.time()
                fdd.map_sum(g, _points(n, chunk), reduce=_sq, actors=actors)
                t1 = time.time()
            began = sorted(e for v in client.run(_stamp_replays, True).values() for e in v)
            replays = sorted(e for v in client.run(_stamp_replays).values() for e in v)
            comp = sorted((s["start"], s["stop"]) for t in ts.data for s in t["startstops"]
                          if s["action"] == "compute") or [(math.nan, math.nan)]
            m = {k: marks.get(k, math.nan) for k in ("get0", "get1", "graph0", "graph1",
                                                      "finished1", "gather1")}
            rows.append([t1 - t0, m["get0"] - t0, m["get1"] - t0, m["graph0"] - t0,
                         m["graph1"] - t0, comp[0][0] - t0, comp[-1][0] - t0,
                         (began[0] if began else math.nan) - t0,
                         (began[-1] if began else math.nan) - t0,
                         replays[0][0] - t0, replays[-1][0] - t0,
                         max(r[1] for r in replays) - t0, max(c[1] for c in comp) - t0,
                         m["finished1"] - t0, m["gather1"] - t0])
    names = ["wall", "Client.get called", "Client.get returned", "update_graph began",
             "update_graph ended", "first task began", "last task began",
             "first actor call began", "last actor call began",
             "first replay began", "last replay began", "last replay ended",
             "last task ended", "last task-finished handled", "gathered"]
    med = np.median(np.array(rows), axis=0) * 1e3
    lo, hi = np.percentile(np.array(rows), [25, 75], axis=0) * 1e3
    print(f"map_sum{'(actors=True)' if actors else ''} of {n} Ishigami gradients, 2 tasks; "
          f"ms after the call began, median "
          f"(quartiles) of {calls} calls; load average {os.getloadavg()[0]:.1f}")
    for name, m, a, b in zip(names, med, lo, hi):
        print(f"  {name:28s} {m:7.1f}  ({a:.1f}-{b:.1f})")


# ---------------------------------------------------------------------- messages
def messages(n=20_000, calls=20, repeats=2):
    from distributed import Client
    g = fd.grad(ishigami)
    waits = []
    with _cluster() as cluster, Client(cluster) as client:
        bs = client.scheduler_comm
        sent, real_send, real_write = {}, bs.send, bs.comm.write

        def send(*msgs):
            for m in msgs:
                if isinstance(m, dict) and m.get("op") == "update-graph":
                    sent[id(m)] = time.perf_counter()
            return real_send(*msgs)

        async def write(msgs, *a, **k):
            now = time.perf_counter()
            for m in msgs:
                t = sent.pop(id(m), None)
                if t is not None:
                    waits.append(now - t)
            return await real_write(msgs, *a, **k)
        bs.send, bs.comm.write = send, write
        fdd.map_sum(g, _points(n, n // 2), reduce=_sq)
        res = {"held (map_sum)": [], "released as each call returns": []}
        for _ in range(repeats):
            for mode, out in res.items():
                waits.clear()
                for _ in range(calls):
                    fdd.map_sum(g, _points(n, n // 2), reduce=_sq)
                    if mode.startswith("released"):
                        fdd.release_held(client)
                out.extend(waits)
        bs.send, bs.comm.write = real_send, real_write
    print(f"map_sum called back to back ({n} points, 2 tasks): the graph's wait in the "
          f"client's batched stream, ms; load average {os.getloadavg()[0]:.1f}")
    for mode, ws in res.items():
        print(f"  futures {mode:32s} median {np.median(ws) * 1e3:.2f}  max {max(ws) * 1e3:.2f}"
              f"  ({len(ws)} calls)")


# ---------------------------------------------------------------------- background
def _process_cpu():
    import psutil
    t = psutil.Process().cpu_times()
    return t.user + t.system


def background(seconds=5.0):
    import psutil
    from distributed import Client
    me = psutil.Process()
    for label, config in (("Dask's defaults", None), ("QUIET_CLUSTER", QUIET_CLUSTER)):
        with _cluster(config) as cluster, Client(cluster) as client:
            time.sleep(2.0)
            w0, c0, t0 = client.run(_process_cpu), sum(me.cpu_times()[:2]), time.time()
            time.sleep(seconds)
            w1, c1, dt = client.run(_process_cpu), sum(me.cpu_times()[:2]), time.time() - t0
        workers = [round((w1[k] - w0[k]) / dt * 1e3, 1) for k in w1]
        print(f"idle 2-worker LocalCluster, {label}: worker processes {workers} ms of CPU per "
              f"second; client, scheduler and nannies {(c1 - c0) / dt * 1e3:.1f} ms/s "
              f"(psutil: 10 ms ticks); load average {os.getloadavg()[0]:.1f}")


# ---------------------------------------------------------------------- inworker
def chunk_costs(n=500_000, rounds=15):
    """(thread CPU ms, page faults) medians of a chunk's replay and reduction, whole and in
    sub-chunks, in the calling process."""
    import resource
    g = fd.grad(ishigami)
    v = fd.vmap(g)
    X = np.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3))

    def sub(m):
        tot = None
        for i in range(0, n, m):
            s = _sq(v(X[i:i + m]))
            tot = s if tot is None else tot + s
        return tot
    cases = {"whole": lambda: _sq(v(X)), "sub-chunks of 32768": lambda: sub(32768),
             "sub-chunks of 8192": lambda: sub(8192)}
    for f in cases.values():
        f(), f()
    cpu, faults = {k: [] for k in cases}, {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            r0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            t = time.thread_time()
            f()
            cpu[k].append(time.thread_time() - t)
            faults[k].append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - r0)
    return {k: (round(float(np.median(cpu[k])) * 1e3, 1), int(np.median(faults[k])))
            for k in cases}


def inworker():
    from distributed import Client
    here = chunk_costs()
    with _cluster(workers=1) as cluster, Client(cluster) as client:
        client.run(sys.path.insert, 0, HERE)     # the worker imports test_bench_scale
        there = list(client.run(chunk_costs).values())[0]
        trim = list(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())[0]
    print(f"5*10^5 Ishigami gradients replayed and their squares summed: thread CPU ms, page "
          f"faults (medians); load average {os.getloadavg()[0]:.1f}")
    print(f"  this process:                         {here}")
    print(f"  a LocalCluster worker (MALLOC_TRIM_THRESHOLD_={trim}): {there}")


# ---------------------------------------------------------------------- ceiling
def _half_worker(n, start, done):
    """A plain process: draws, replays and reduces n points each time it is told to."""
    v = fd.vmap(fd.grad(ishigami))

    def run():
        X = np.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3))
        return _sq(v(X))
    run(), run()
    while start.get() is not None:
        t = time.perf_counter()
        run()
        done.put(time.perf_counter() - t)


def ceiling(n=10**6, rounds=15):
    """What two processes can gain on this machine without Dask: two plain processes
    (multiprocessing, told to start through a queue) each drawing, replaying and reducing
    n/2 points, against one process doing all n (fd.vmap), alternated."""
    import multiprocessing as mp
    v = fd.vmap(fd.grad(ishigami))

    def one():
        X = np.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3))
        return (v(X) ** 2).mean(axis=0)
    one(), one()
    starts, done = [mp.Queue() for _ in range(2)], mp.Queue()
    procs = [mp.Process(target=_half_worker, args=(n // 2, q, done)) for q in starts]
    for p in procs:
        p.start()
    try:
        for q in starts:            # both warmed up before timing
            q.put(1)
        done.get(), done.get()
        w1, w2, inner = [], [], []
        for _ in range(rounds):
            t = time.perf_counter()
            one()
            w1.append(time.perf_counter() - t)
            time.sleep(0.02)
            t = time.perf_counter()
            for q in starts:
                q.put(1)
            ts = [done.get(), done.get()]
            w2.append(time.perf_counter() - t)
            inner.append(max(ts))
            time.sleep(0.02)
    finally:
        for q in starts:
            q.put(None)
        for p in procs:
            p.join()
    m = lambda xs: float(np.median(xs)) * 1e3        # noqa: E731
    print(f"{n} Ishigami gradients drawn, replayed and squared-summed (wall ms, medians of "
          f"{rounds} alternated): one process {m(w1):.1f}; two plain processes {m(w2):.1f} "
          f"(the slower one's own {m(inner):.1f}): {m(w1) / m(w2):.2f}x; load average "
          f"{os.getloadavg()[0]:.1f}")


# ---------------------------------------------------------------------- latency
class _Noop:
    """An actor whose call returns its argument: the round trip of an actor call."""

    def run(self, x):
        return x


def _ident(x):
    return x


def latency(calls=200):
    """Round trips of nothing on a 2-worker LocalCluster: a call of an actor's method (as
    map_sum(actors=True) makes) and a one-task submit + result (the scheduler's path),
    alternated, with the client's actor calls through the scheduler's proxy (Dask's
    default) and sent to the worker directly (Client(direct_to_workers=True))."""
    import dask
    from distributed import Client
    for direct in (False, True):
        with dask.config.set({"distributed.client.direct-to-workers": direct}), \
                _cluster() as cluster, Client(cluster) as client:
            w = sorted(client.nthreads())[0]
            actor = client.submit(_Noop, actor=True, workers=[w]).result()
            ta, ts = [], []
            for i in range(calls):
                t = time.perf_counter()
                actor.run(i).result()
                ta.append(time.perf_counter() - t)
                t = time.perf_counter()
                client.submit(_ident, i, workers=[w], pure=False).result()
                ts.append(time.perf_counter() - t)
        f = lambda x: f"min {min(x) * 1e3:.2f}, median {np.median(x) * 1e3:.2f} ms"  # noqa: E731
        print(f"direct_to_workers={direct}: an actor call {f(ta)}; a task submitted and its "
              f"result {f(ts)}; load average {os.getloadavg()[0]:.1f}")


# ---------------------------------------------------------------------- against
def against(commit, n=10**6, rounds=30):
    """map_sum of this tree against fastad/dask.py of `commit` (git show, loaded beside it
    as a module of its own, in the client and the workers), alternated, three calls in a
    row each, the last two timed: wall medians and mins, and the client process's CPU
    (which holds the LocalCluster's scheduler) per call."""
    import importlib
    import subprocess
    import tempfile
    from distributed import Client
    src = subprocess.run(["git", "show", f"{commit}:src/fastad/dask.py"], check=True,
                         capture_output=True, text=True, cwd=os.path.dirname(HERE)).stdout
    tmp = tempfile.mkdtemp(prefix="fastad-dask-")
    with open(os.path.join(tmp, "fastad_dask_then.py"), "w") as f:
        f.write(src)
    sys.path.insert(0, tmp)
    then = importlib.import_module("fastad_dask_then")
    g = fd.grad(ishigami)
    with _cluster() as cluster, Client(cluster) as client:
        client.run(sys.path.insert, 0, tmp)
        runs = {commit: then.map_sum, "this tree": fdd.map_sum}
        wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
        for ms in runs.values():
            ms(g, _points(n, n // 2), reduce=_sq)
        for _ in range(rounds):
            for k, ms in runs.items():
                for i in range(3):
                    c, t = time.process_time(), time.perf_counter()
                    ms(g, _points(n, n // 2), reduce=_sq)
                    if i:
                        wall[k].append(time.perf_counter() - t)
                        cpu[k].append(time.process_time() - c)
    print(f"map_sum of {n} Ishigami gradients in two tasks, {rounds} alternated rounds of two "
          f"timed calls; load average {os.getloadavg()[0]:.1f}")
    for k in runs:
        print(f"  {k:12s} wall median {np.median(wall[k]) * 1e3:.1f} ms (min "
              f"{min(wall[k]) * 1e3:.1f}), client process CPU {np.median(cpu[k]) * 1e3:.2f} ms")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "timeline"
    if mode == "timeline":
        timeline(int(float(sys.argv[2])) if len(sys.argv) > 2 else 10**6)
    elif mode == "against":
        against(sys.argv[2] if len(sys.argv) > 2 else "730c31b",
                int(float(sys.argv[3])) if len(sys.argv) > 3 else 10**6)
    elif mode == "latency":
        latency()
    elif mode == "ceiling":
        ceiling()
    elif mode == "actors":
        timeline(int(float(sys.argv[2])) if len(sys.argv) > 2 else 10**6, actors=True)
    elif mode == "messages":
        messages()
    elif mode == "background":
        background()
    elif mode == "inworker":
        inworker()
    else:
        sys.exit(f"unknown mode {mode!r}: timeline [N] | actors [N] | ceiling | latency | against "
                 "messages | background | inworker")
