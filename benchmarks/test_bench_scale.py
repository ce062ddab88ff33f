"""Many points: batched replay (vmap), threads, Dask and pickles, as ratios (docs/scale.md).

    python -m pytest benchmarks/test_bench_scale.py      # pytest-benchmark table
    python benchmarks/test_bench_scale.py                # the ratio table of docs/scale.md

Each measure times what a user calls, the way they call it:
  notes    vmap(value_and_grad) of the notes' f over N = 10^5 points (two float arrays), per
           point, next to a Python loop of single calls and jax.jit(jax.vmap(jax.value_and_grad)),
           fastad as it comes (libm's sin/cos) and with libmvec's, rounds alternated:
           `python benchmarks/test_bench_scale.py notes [rounds]`
  rosen    vmap(grad) of the Rosenbrock function (n = 100), as a scalar loop and
           vectorized, over 10^4 points, per point, next to one replayed call g(x); each
           interpreted (native="never") and native ("always": the batch's sweeps compiled
           too), rounds alternated: `python benchmarks/test_bench_scale.py rosen`
  branchy  vmap(grad) of a function with two branches over 10^4 points covering 4 outcome
           patterns: a fresh function (the traces included) and a warm one
  threads  vmap(grad) of Rosenbrock (n = 100) over 10^5 points, workers=2 vs 1, rounds
           alternated; with the CPU seconds of both sweeping threads (the caller's and the
           one it starts), whose larger is the 2-core time on idle cores
  dask     10^6 gradients of the Ishigami function and 2.5*10^5 of a heavier one (an ODE
           loop of ~1300 records), points drawn in the workers, the mean of the squared
           gradients back: a 2-process LocalCluster vs one process, 7 rounds of each
           alternated (medians, and the median of the rounds' ratios), with the CPU
           seconds of the client (and scheduler), each worker and each worker's chunk tasks;
           chunks from fastad.dask.points_per_task unless given:
           `python benchmarks/test_bench_scale.py dask [ishigami|heavy] [N] [chunk]`
  Shared machine?  The wall ratios need two idle cores; the CPU ratios do not (they
  assume the threads/processes would run side by side).  `taskset -c 0,1` pins a
  run to two cores; it cannot remove other users' load from them.
  pickle   a pickled value_and_grad loaded in a new process: its first call vs a warm call
           (after two other unpickled functions' first calls -- one of 3 inputs, one of
           100 like it --, which pay the process's one-time ~20 us of cold code and
           memory and its first arrays of 100; reported too)
Rows carry no "contender", so benchmarks/report.py leaves them out of docs/benchmarks.md.
"""
import json
import math
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest

if __name__ != "__main__":
    fd = pytest.importorskip("fastad", reason="fastad is not importable (pip install -e .)")
else:
    import fastad as fd
import fastad.dask  # noqa: E402 -- after the importorskip above

HERE = os.path.dirname(os.path.abspath(__file__))
N_NOTES, N_ROSEN, N_BRANCHY, N_THREADS, N_DASK = 100_000, 10_000, 10_000, 100_000, 1_000_000


def notes_f(x1, x2):
    return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)


def rosen_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_vec(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def branchy(x):
    a = x[0] * x[1] if x[0] > 0 else np.sin(x[0]) + x[1]
    return a * np.exp(x[2]) if x[1] > 0 else a - x[2] ** 2


def ishigami(x):
    return np.sin(x[0]) + 7.0 * np.sin(x[1]) ** 2 + 0.1 * x[2] ** 4 * np.sin(x[0])


def best(fn, rounds, clock=time.perf_counter):
    """(min, median) seconds of `rounds` calls of fn (after one warm-up).  The table's
    single-thread rows use clock=time.process_time: on a machine shared with other busy
    processes a long call's wall time counts the time the others had the core."""
    fn()
    ts = []
    for _ in range(rounds):
        t = clock()
        fn()
        ts.append(clock() - t)
    return min(ts), float(np.median(ts))


# ---------------------------------------------------------------------- the contenders
def notes_setup():
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=N_NOTES), rng.normal(size=N_NOTES)
    g = fd.value_and_grad(notes_f, argnums=(0, 1))
    v = fd.vmap(g)
    loop_n = 10_000

    def loop():
        for a, b in zip(x1[:loop_n].tolist(), x2[:loop_n].tolist()):
            g(a, b)
    return (lambda: v(x1, x2)), loop, loop_n, x1, x2


def notes_measure(rounds=41):
    """vmap(value_and_grad) of the notes' f over N_NOTES points against
    jax.jit(jax.vmap(jax.value_and_grad)): fastad as it comes (libm's sin and cos: every
    point the single call's bits) and with libmvec's (fastad.batching.set_vector_math(True)),
    rounds alternated.  Returns ns per point: wall medians and process-CPU medians (XLA
    computes in its own thread, which thread_time would miss)."""
    from fastad import batching
    run, loop, loop_n, x1, x2 = notes_setup()
    prev = batching.set_vector_math(False)

    def vector():
        batching.set_vector_math(True)
        try:
            run()
        finally:
            batching.set_vector_math(False)
    runs = {"fastad": run}
    if batching.vector_math_available():
        runs["fastad_vector"] = vector
    try:
        runs["jax"] = jax_notes(x1, x2)
    except ImportError:
        pass
    wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
    try:
        for fn in runs.values():
            fn(), fn()
        for _ in range(rounds):
            for k, fn in runs.items():
                c, t = time.process_time(), time.perf_counter()
                fn()
                wall[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
    finally:
        batching.set_vector_math(prev)
    res = {f"{k}_wall": float(np.median(v)) / N_NOTES * 1e9 for k, v in wall.items()}
    res.update({f"{k}_cpu": float(np.median(v)) / N_NOTES * 1e9 for k, v in cpu.items()})
    res["vector_math"] = batching.vector_math_available()
    res["load_average"] = os.getloadavg()[0]
    return res


def jax_notes(x1, x2):
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    f = jax.jit(jax.vmap(jax.value_and_grad(
        lambda a, b: a * b + jnp.exp(a * b) - jnp.sin(b), argnums=(0, 1))))
    j1, j2 = jnp.asarray(x1), jnp.asarray(x2)
    return lambda: jax.block_until_ready(f(j1, j2))


def rosen_setup(fun=rosen_loop, native="auto"):
    """(vmap over N_ROSEN points, one call) of grad(fun, native=native): "auto" as a user
    gets it, "never" the interpreter only, "always" native code from the first call, the
    batch's compiled sweeps included (docs/native.md, "Batched sweeps")."""
    X = np.random.default_rng(1).uniform(-2, 2, size=(N_ROSEN, 100))
    g = fd.grad(fun, native=native)
    v = fd.vmap(g)
    x = X[0]
    return (lambda: v(X)), (lambda: g(x))


def branchy_setup():
    X = np.random.default_rng(2).normal(size=(N_BRANCHY, 3))

    def fresh():
        g = fd.grad(branchy)
        fd.vmap(g)(X)
        return g.cache_info()["traces"]
    warm = fd.vmap(fd.grad(branchy))
    return fresh, (lambda: warm(X))


def threads_setup(workers):
    X = np.random.default_rng(3).uniform(-2, 2, size=(N_THREADS, 100))
    v = fd.vmap(fd.grad(rosen_loop), workers=workers)
    return lambda: v(X)


class _ThreadClock:
    """Stands in for the threading module of fastad._batch while measuring: records the
    CPU seconds of every worker thread a batched replay starts."""
    def __init__(self, real):
        self.real, self.cpu = real, []

    def Thread(self, target, args=()):
        def timed(*a):
            t = time.thread_time()
            target(*a)
            self.cpu.append(time.thread_time() - t)
        return self.real.Thread(target=timed, args=args)

    def __getattr__(self, name):        # Lock & co.: the real module's
        return getattr(self.real, name)


def threads_measure(rounds=20):
    """vmap(grad) of the Rosenbrock loop over N_THREADS points, workers=2 vs 1, rounds
    alternated.  Returns a dict: wall seconds (min, median) per mode, process CPU seconds
    per round per mode, and the critical path of a 2-worker round (the larger CPU of its
    two sweeping threads: the caller's, which also runs the Python around the sweep, and
    the one it starts): the wall time it takes on two idle cores, whatever the load of
    the machine when measured."""
    from fastad import _batch
    runs = {1: threads_setup(1), 2: threads_setup(2)}
    wall, cpu, path = {1: [], 2: []}, {1: [], 2: []}, []
    clock = _ThreadClock(_batch.threading)
    for run in runs.values():
        run()
    _batch.threading = clock
    try:
        for _ in range(rounds):
            for w, run in runs.items():
                clock.cpu.clear()
                c, t = time.process_time(), time.perf_counter()
                run()
                wall[w].append(time.perf_counter() - t)
                cpu[w].append(time.process_time() - c)
                if w == 2:
                    path.append(max(cpu[w][-1] - sum(clock.cpu), max(clock.cpu)))
    finally:
        _batch.threading = clock.real
    med = lambda xs: float(np.median(xs))
    return {"wall1": (min(wall[1]), med(wall[1])), "wall2": (min(wall[2]), med(wall[2])),
            "cpu1": med(cpu[1]), "cpu2": med(cpu[2]), "path2": med(path)}


def heavy(x):
    """A heavier point: 100 explicit Euler steps of a damped nonlinear oscillator whose
    three parameters are the point (~1300 records)."""
    u, w = 1.0, 0.0
    for _ in range(100):
        u, w = u + 0.05 * w, w - 0.05 * (x[0] ** 2 * u + 0.1 * x[1] * w + 0.1 * np.sin(x[2] * u))
    return u ** 2 + w ** 2


def _cpu_of_process():
    import psutil
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _install_task_clock():
    """In a worker: time the CPU of dask_map's and map_sum's chunk tasks (fastad.dask._rows
    and _reduced, which the tasks name by reference; the replay, and map_sum's reduction),
    apart from the worker's own event loop and heartbeats.  Returns the seconds so far,
    (dask_map's, map_sum's)."""
    import fastad.dask as fdd
    if not hasattr(fdd, "_task_cpu"):
        fdd._task_cpu = {"_rows": 0.0, "_reduced": 0.0}

        def clocked(name, untimed):
            def timed(*a):
                t = time.thread_time()
                try:
                    return untimed(*a)
                finally:
                    fdd._task_cpu[name] += time.thread_time() - t
            return timed
        fdd._rows = clocked("_rows", fdd._rows)
        fdd._reduced = clocked("_reduced", fdd._reduced)
    return fdd._task_cpu["_rows"], fdd._task_cpu["_reduced"]




def dask_measure(fun=ishigami, n=N_DASK, chunk=None, rounds=7, config=None):
    """n gradients of `fun` at uniform points, their mean square back: one process
    (vmap) vs dask_map on a 2-process LocalCluster (points drawn in the workers), `rounds`
    rounds of each alternated (after a warm-up), so that a change of the machine's load
    hits both alike.  Returns a dict: the wall seconds of each (median and min), the
    median of the rounds' ratios (one / dask, each dask round against the one-process
    round before it), CPU seconds of a round in the one process, in each worker process
    and in each worker's chunk tasks, in the client process (with the LocalCluster's
    scheduler), and the loads of the function per worker.  On a loaded machine the
    processes' CPU includes their idle loops over a stretched wall time; the task CPU
    does not.  `config`: dask settings the cluster is made with (fastad.dask.QUIET_CLUSTER)."""
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster
    g = fd.grad(fun)
    v = fd.vmap(g)

    def one():
        X = np.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3))
        return (v(X) ** 2).mean(axis=0)
    with dask.config.set(config or {}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None) as cluster, Client(cluster) as client:
        # the chunks a user gets from fastad.dask.points_per_task (docs/scale.md): tasks of
        # ~0.1 s, one per worker at least; chunk=n//8 measures dask_map joining 8 chunks
        from fastad.dask import points_per_task
        chunk = chunk or points_per_task(g, np.zeros(3), n=n, client=client)

        def points():
            return da.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3),
                                                    chunks=(chunk, 3))

        def two():
            return (fd.dask_map(g, points()) ** 2).mean(axis=0).compute()

        def two_sum():      # the same sweep in one round trip (fastad.dask.map_sum)
            return fastad.dask.map_sum(g, points(), reduce=lambda G: (G * G).sum(axis=0)) / n

        def two_actors():   # the same tasks run by fastad's actors, not the scheduler
            return fastad.dask.map_sum(g, points(), reduce=lambda G: (G * G).sum(axis=0),
                                       actors=True) / n
        client.run(_install_task_clock)
        one(), two(), two_sum(), two_actors()
        ntasks = fd.dask_map(g, da.zeros((n, 3), chunks=(chunk, 3))).numblocks[0]
        k0, w0 = client.run(_install_task_clock), client.run(_cpu_of_process)
        # map_sum right after one process's round, and dask_map + mean after map_sum (whose
        # futures are released by its next call): a compute() started within 10 ms of
        # the release of another's futures waits for the rest of those 10 ms (the client's
        # batched messages; docs/scale.md, "Where the fixed cost of a call goes")
        runs = (("one", one), ("sum", two_sum), ("actors", two_actors), ("dask", two))
        wall, cpu = {k: [] for k, _ in runs}, {k: [] for k, _ in runs}
        for _ in range(rounds):
            for name, run in runs:
                c, t = time.process_time(), time.perf_counter()
                run()
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        k1, w1 = client.run(_install_task_clock), client.run(_cpu_of_process)
        loads = client.run(lambda: __import__("fastad.serialize").serialize.LOADED["compiled"])
    workers = sorted((w1[k] - w0[k]) / (3 * rounds) for k in w1)
    tasks = sorted((k1[k][0] - k0[k][0]) / rounds for k in k1)     # dask_map's tasks
    sum_tasks = sorted((k1[k][1] - k0[k][1]) / (2 * rounds) for k in k1)   # map_sum's
    med = lambda xs: float(np.median(xs))
    return {"one": med(wall["one"]), "dask": med(wall["dask"]), "sum": med(wall["sum"]),
            "one_min": min(wall["one"]), "dask_min": min(wall["dask"]),
            "sum_min": min(wall["sum"]), "actors": med(wall["actors"]),
            "actors_min": min(wall["actors"]),
            "ratio_actors": med([a / b for a, b in zip(wall["one"], wall["actors"])]),
            "ratio": med([a / b for a, b in zip(wall["one"], wall["dask"])]),
            "ratio_sum": med([a / b for a, b in zip(wall["one"], wall["sum"])]),
            "cpu_one": med(cpu["one"]), "cpu_workers": workers,
            "cpu_tasks": tasks, "cpu_sum_tasks": sum_tasks, "cpu_client": med(cpu["dask"]),
            "cpu_client_sum": med(cpu["sum"]), "cpu_client_actors": med(cpu["actors"]),
            "loads": sorted(loads.values()), "tasks": ntasks,
            "load_average": os.getloadavg()[0]}


def dask_back_to_back(n=20_000, rounds=30):
    """The fixed cost of map_sum called back to back (n Ishigami gradients in two chunks,
    drawn in the workers; the work is a few ms): its futures held until the next call (as
    map_sum does) against released as each call returns (fastad.dask.release_held after
    it, as map_sum did before) and map_sum(actors=True) (no scheduler), alternated, three
    calls in a row each, the last two timed.  Returns the median and min wall seconds of
    each, and one process's (fd.vmap)."""
    import dask.array as da
    from distributed import Client, LocalCluster
    g = fd.grad(ishigami)
    v = fd.vmap(g)
    red = lambda G: (G * G).sum(axis=0)        # noqa: E731

    def points():
        return da.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3),
                                                chunks=(n // 2, 3))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        def held():
            return fastad.dask.map_sum(g, points(), reduce=red)

        def released():
            out = fastad.dask.map_sum(g, points(), reduce=red)
            fastad.dask.release_held(client)
            return out

        def one():
            return red(v(np.random.default_rng(4).uniform(-math.pi, math.pi, size=(n, 3))))
        def actors():
            return fastad.dask.map_sum(g, points(), reduce=red, actors=True)
        runs = {"held": held, "released": released, "actors": actors, "one": one}
        for run in runs.values():
            run(), run()
        wall = {k: [] for k in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                for i in range(3):
                    t = time.perf_counter()
                    run()
                    if i:
                        wall[name].append(time.perf_counter() - t)
    return {k: (float(np.median(w)), min(w)) for k, w in wall.items()} | {
        "load_average": os.getloadavg()[0]}


def sumsq_loop(x):
    """Warms a new process for the pickle measure: another function of 100 inputs."""
    s = 0.0
    for i in range(len(x)):
        s = s + x[i] * x[i]
    return s


def pickle_measure():
    """Seconds of an unpickled value_and_grad's calls in a new process: (first call of the
    first unpickled function -- the process's one-time cost included --, first call of a
    second one, a warm call)."""
    sys.path.insert(0, HERE)
    import test_bench_scale as mod      # by reference: the child imports it from HERE
    g = fd.value_and_grad(mod.rosen_loop)
    g(np.linspace(-1, 1, 100))
    h = fd.value_and_grad(mod.branchy)
    h(np.array([0.5, 0.5, 0.5]))
    k = fd.value_and_grad(mod.sumsq_loop)
    k(np.linspace(-1, 1, 100))
    blob = pickle.dumps((h, k, g))
    code = (
        "import pickle, sys, time, json, numpy as np\n"
        f"sys.path.insert(0, {HERE!r})\n"
        "import fastad\n"
        "h, k, g = pickle.loads(sys.stdin.buffer.read())\n"
        "x = np.linspace(-0.5, 1.5, 100)\n"
        "t = time.perf_counter(); h(np.array([0.3, 0.2, 0.1])); cold = time.perf_counter() - t\n"
        "t = time.perf_counter(); k(x); second = time.perf_counter() - t\n"
        "t = time.perf_counter(); g(x); first = time.perf_counter() - t\n"
        "traces = sum(f.cache_info()['traces'] for f in (h, k, g))\n"
        "ts = []\n"
        "for _ in range(2000):\n"
        "    t = time.perf_counter(); g(x); ts.append(time.perf_counter() - t)\n"
        "print(json.dumps([cold, second, first, float(np.median(ts)), traces]))\n")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr.decode()
    cold, second, first, warm, traces = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert traces == 3, "an unpickled function traced again"     # 3: the parent's traces
    return cold, second, first, warm


# ---------------------------------------------------------------------- pytest-benchmark
@pytest.mark.parametrize("who", ["fastad-vmap", "fastad-vmap-vector", "python-loop",
                                 "jax-jit-vmap"])
def test_notes_points(benchmark, who):
    run, loop, loop_n, x1, x2 = notes_setup()
    benchmark.group = f"scale: value_and_grad of the notes' f over {N_NOTES} points"
    if who.startswith("fastad-vmap"):
        from fastad import batching
        if who.endswith("vector") and not batching.vector_math_available():
            pytest.skip("no libmvec in this build or CPU")
        prev = batching.set_vector_math(who.endswith("vector"))
        try:
            benchmark.pedantic(run, rounds=20, warmup_rounds=1)
        finally:
            batching.set_vector_math(prev)
        benchmark.extra_info["points"] = N_NOTES
    elif who == "python-loop":
        benchmark.pedantic(loop, rounds=3, warmup_rounds=1)
        benchmark.extra_info["points"] = loop_n
    else:
        pytest.importorskip("jax")
        benchmark.pedantic(jax_notes(x1, x2), rounds=20, warmup_rounds=2)
        benchmark.extra_info["points"] = N_NOTES


@pytest.mark.parametrize("fun", [rosen_loop, rosen_vec], ids=["loop", "vectorized"])
@pytest.mark.parametrize("who", ["vmap", "single-call", "vmap-never", "single-call-never",
                                 "vmap-always", "single-call-always"])
def test_rosen_points(benchmark, who, fun):
    what, _, mode = who.replace("single-call", "single").partition("-")
    run, single = rosen_setup(fun, mode or "auto")
    benchmark.group = f"scale: grad of {fun.__name__} n=100, {N_ROSEN} points vs one call"
    vm = what == "vmap"
    benchmark.pedantic(run if vm else single, rounds=10 if vm else 2000, warmup_rounds=1)
    benchmark.extra_info["points"] = N_ROSEN if who == "vmap" else 1


@pytest.mark.parametrize("who", ["fresh", "warm"])
def test_branchy_points(benchmark, who):
    fresh, warm = branchy_setup()
    benchmark.group = f"scale: branchy over {N_BRANCHY} points, 4 patterns"
    if who == "fresh":
        traces = benchmark.pedantic(fresh, rounds=5, warmup_rounds=0)
        benchmark.extra_info["tapes_traced"] = traces
    else:
        benchmark.pedantic(warm, rounds=20, warmup_rounds=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_threads_points(benchmark, workers):
    benchmark.group = f"scale: vmap(grad) rosen_loop n=100, {N_THREADS} points, threads"
    benchmark.pedantic(threads_setup(workers), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("fun", [ishigami, heavy], ids=["ishigami", "heavy"])
def test_dask_vs_one_process(benchmark, fun):
    pytest.importorskip("distributed")
    benchmark.group = f"scale: dask 2 workers vs one process, {fun.__name__} gradients"
    m = benchmark.pedantic(dask_measure, args=(fun, N_DASK if fun is ishigami else N_DASK // 4),
                           rounds=1, iterations=1)
    benchmark.extra_info.update(m)
    benchmark.extra_info["speedup"] = m["ratio"]


def test_pickle_first_call(benchmark):
    benchmark.group = "scale: unpickled value_and_grad in a new process"
    cold, second, first, warm = benchmark.pedantic(pickle_measure, rounds=1, iterations=1)
    benchmark.extra_info.update({"cold_first_s": cold, "second_first_s": second,
                                 "first_s": first, "warm_s": warm,
                                 "ratio": first / warm})


# ---------------------------------------------------------------------- the table
def rosen_rows(rounds=5):
    """Per point: vmap(grad) and one call, interpreted (native="never") and native
    ("always": the single call's code and the batch's compiled sweeps), rounds of the four
    alternated, the best of each (process CPU time)."""
    rows = []
    for fun in (rosen_loop, rosen_vec):
        setups = {m: rosen_setup(fun, m) for m in ("never", "always")}
        vm = {m: [] for m in setups}
        one = {m: [] for m in setups}
        for _ in range(rounds):
            for m, (run, single) in setups.items():
                vm[m].append(best(run, 3, time.process_time)[0] / N_ROSEN)
                one[m].append(best(lambda: [single() for _ in range(1000)], 1,  # noqa: B023
                                   time.process_time)[0] / 1000)
        vi, vn = min(vm["never"]), min(vm["always"])
        si, sn = min(one["never"]), min(one["always"])
        rows.append((f"vmap(grad) {fun.__name__} n=100, N=1e4, per point: "
                     f"interpreter's batch-major sweep / compiled",
                     f"{vi * 1e6:.3f} / {vn * 1e6:.3f} us",
                     f"single call interpreted {si * 1e6:.3f} us, native {sn * 1e6:.3f} us; "
                     f"compiled batch / native call {vn / sn:.3f}, / interpreted call "
                     f"{vn / si:.3f}; interpreter's batch / interpreted call {vi / si:.3f}"))
    return rows


def main():
    rows = []
    cpu = time.process_time
    run, loop, loop_n, x1, x2 = notes_setup()
    tl, tl_med = best(loop, 3, cpu)
    per_l = tl / loop_n * 1e9
    m = notes_measure()
    per_v, per_m = m["fastad_cpu"], m.get("fastad_vector_cpu", math.nan)
    jax_txt = (f"{m['jax_cpu']:.1f} ns; fastad/jax = {per_v / m['jax_cpu']:.2f} (vector math "
               f"{per_m / m['jax_cpu']:.2f})" if "jax_cpu" in m else "jax not installed")
    rows.append(("vmap(value_and_grad) notes' f, N=1e5, per point (CPU medians, alternated)",
                 f"{per_v:.1f} ns (vector math: {per_m:.1f} ns)",
                 f"loop {per_l:.0f} ns: ratio {per_v / per_l:.4f}; jax.jit(vmap) {jax_txt}"))
    rows += rosen_rows()
    fresh, warm = branchy_setup()
    t0 = time.perf_counter()
    traces = fresh()
    tf = time.perf_counter() - t0
    tw, _ = best(warm, 20, cpu)
    rows.append(("branchy, N=1e4, 4 patterns", f"fresh {tf * 1e3:.1f} ms ({traces} tapes traced)",
                 f"warm {tw * 1e3:.2f} ms = {tw / N_BRANCHY * 1e9:.0f} ns per point"))
    m = threads_measure()
    rows.append(("threads, rosen_loop n=100, N=1e5 (20 rounds alternated)",
                 f"1: {m['wall1'][0]:.3f} s, 2: {m['wall2'][0]:.3f} s (wall, min)",
                 f"speed-up {m['wall1'][0] / m['wall2'][0]:.2f}x wall (medians "
                 f"{m['wall1'][1] / m['wall2'][1]:.2f}x); CPU per round {m['cpu1']:.3f} s vs "
                 f"{m['cpu2']:.3f} s; 2-thread critical path {m['path2']:.3f} s: "
                 f"{m['cpu1'] / m['path2']:.2f}x on idle cores"))
    try:
        for fun, n in ((ishigami, N_DASK), (heavy, N_DASK // 4)):
            d = dask_measure(fun, n)
            rows.append((f"Dask 2 workers vs 1 process, {n:.0e} {fun.__name__} gradients",
                         f"1: {d['one']:.3f} s, dask: {d['dask']:.3f} s (wall, medians)",
                         f"speed-up {d['ratio']:.2f}x wall (median of rounds; map_sum "
                         f"{d['sum']:.3f} s, {d['ratio_sum']:.2f}x; with actors "
                         f"{d['actors']:.3f} s, {d['ratio_actors']:.2f}x); CPU per call: one "
                         f"process {d['cpu_one']:.3f} s; chunk tasks "
                         f"{d['cpu_tasks'][0]:.3f}+{d['cpu_tasks'][1]:.3f} s "
                         f"({d['cpu_one'] / d['cpu_tasks'][1]:.2f}x; map_sum's "
                         f"{d['cpu_sum_tasks'][0]:.3f}+{d['cpu_sum_tasks'][1]:.3f} s); "
                         f"worker processes "
                         f"{d['cpu_workers'][0]:.3f}+{d['cpu_workers'][1]:.3f} s; client "
                         f"and scheduler {d['cpu_client']:.3f} s; loads per worker "
                         f"{d['loads']}"))
    except ImportError:
        rows.append(("Dask", "distributed not installed", ""))
    cold, second, first, warmc = pickle_measure()
    rows.append(("unpickled value_and_grad (rosen n=100), new process",
                 f"first call {first * 1e6:.1f} us (no trace)",
                 f"warm {warmc * 1e6:.1f} us: ratio {first / warmc:.2f}; the process's first "
                 f"unpickled calls: branchy (3 inputs) {cold * 1e6:.1f} us, then a sum of "
                 f"squares loop (100 inputs) {second * 1e6:.1f} us"))
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; single-thread rows "
          f"in process CPU time, threads/dask/pickle rows in wall time")
    print("| measure | fastad | comparison |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    # one thread for XLA, as benchmarks/conftest.py sets for the pytest runs
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1")
    if sys.argv[1:2] == ["notes"]:     # notes [rounds]
        m = notes_measure(int(sys.argv[2]) if len(sys.argv) > 2 else 41)
        print(f"ns per point, N = {N_NOTES}, medians of rounds alternated; load average "
              f"{m['load_average']:.1f}; libmvec: {m['vector_math']}")
        for k in ("fastad", "fastad_vector", "jax"):
            if f"{k}_wall" in m:
                print(f"  {k:14s} wall {m[f'{k}_wall']:6.2f}   process CPU {m[f'{k}_cpu']:6.2f}")
        for k in ("fastad", "fastad_vector"):
            if "jax_wall" in m and f"{k}_wall" in m:
                print(f"  {k}/jax: {m[f'{k}_wall'] / m['jax_wall']:.2f} wall, "
                      f"{m[f'{k}_cpu'] / m['jax_cpu']:.2f} CPU")
    elif sys.argv[1:2] == ["rosen"]:
        print(rosen_rows())
    elif sys.argv[1:2] == ["pickle"]:
        print([f"{t * 1e6:.2f} us" for t in pickle_measure()])
    elif sys.argv[1:2] == ["threads"]:
        print(threads_measure())
    elif sys.argv[1:3] == ["dask", "backtoback"]:      # dask backtoback [N]
        d = dask_back_to_back(int(float(sys.argv[3])) if len(sys.argv) > 3 else 20_000)
        print("map_sum back to back, wall ms (median, min): " + "; ".join(
            f"{k} {v[0] * 1e3:.1f}, {v[1] * 1e3:.1f}" for k, v in d.items() if k != "load_average")
            + f"; load average {d['load_average']:.1f}")
    elif sys.argv[1:2] == ["dask"]:     # dask [heavy|ishigami] [N] [chunk]
        for label, config in (("default LocalCluster", None),
                              ("LocalCluster made with fastad.dask.QUIET_CLUSTER",
                               fastad.dask.QUIET_CLUSTER)):
            d = dask_measure(heavy if sys.argv[2:3] == ["heavy"] else ishigami,
                             int(float(sys.argv[3])) if len(sys.argv) > 3 else N_DASK,
                             int(float(sys.argv[4])) if len(sys.argv) > 4 else None,
                             config=config)
            print(f"{label}: one process {d['one']:.3f} s; dask_map + mean {d['dask']:.3f} s: "
                  f"{d['ratio']:.2f}x; map_sum {d['sum']:.3f} s: {d['ratio_sum']:.2f}x; "
                  f"map_sum(actors=True) {d['actors']:.3f} s: {d['ratio_actors']:.2f}x "
                  f"(medians of 7 rounds alternated); load average {d['load_average']:.1f}")
            print(d)
    else:
        main()
