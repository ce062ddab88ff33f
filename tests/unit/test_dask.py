"""fastad.dask_map on a real two-process Dask cluster (loopback only), checked point by
point against closed forms and against the single-process batched replay
(docs/scale.md).  Skipped only when dask/distributed are not installed (the [dask] extra).

Tolerance: the points are replayed by the same tapes and kernels in every process; only
the SIMD block a point lands in may differ from the single-process run, which moves
exp/sin/cos by at most an ulp or two: rtol 64 eps."""
import numpy as np
import pytest

import fastad as fd
import fastad.dask
from reference import EPS

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

RTOL = 64 * EPS


def make_problem():
    scale = 0.5            # a closure: travels to the workers by value (cloudpickle)

    def f(x):
        if x[0] > 0:
            return x[0] ** 2 * x[1] + scale * np.exp(x[1])
        return np.sin(x[0]) * x[1] + scale * np.exp(x[1])

    def grad_closed(X):
        pos = X[:, 0] > 0
        g0 = np.where(pos, 2 * X[:, 0] * X[:, 1], np.cos(X[:, 0]) * X[:, 1])
        g1 = np.where(pos, X[:, 0] ** 2, np.sin(X[:, 0])) + scale * np.exp(X[:, 1])
        return np.stack([g0, g1], axis=1)

    return f, grad_closed


def test_dask_map_local_scheduler():
    f, grad_closed = make_problem()
    X = np.random.default_rng(1).normal(size=(300, 2))
    G = fd.dask_map(fd.grad(f), da.from_array(X, chunks=(64, 2))).compute()
    np.testing.assert_allclose(G, grad_closed(X), rtol=RTOL, atol=RTOL)
    with pytest.raises(TypeError, match="no argument is a dask array"):
        fd.dask_map(fd.grad(f), X)


def _scheduler_keys(client):
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))


def _forgotten(client, keys, timeout=10.0):
    """Whether the scheduler forgets `keys` within `timeout` seconds (a release is a
    message the scheduler handles in its own time)."""
    import time
    end = time.monotonic() + timeout
    while keys & _scheduler_keys(client):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_dask_map_two_worker_processes():
    f, grad_closed = make_problem()
    g = fd.value_and_grad(f)
    X = np.random.default_rng(2).normal(size=(40000, 2))
    Xd = da.from_array(X, chunks=(4000, 2))                 # 10 chunks for 2 workers
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        vals, G = fd.dask_map(g, Xd)
        # cheap points: the 10 chunks are merged into fewer, larger tasks (one per worker
        # unless the timing of a point went badly wrong)
        assert 2 <= G.numblocks[0] < 10
        vals, G = da.compute(vals, G)
        # a second call ships nothing: the workers keep the function installed by the first
        G2 = fd.dask_map(g, Xd[:8000])[1].compute()
        # points drawn in the workers: the task drawing a chunk is fused into the task
        # mapping it (one task per chunk), and map_sum reduces there, gathering the sums
        R = da.random.default_rng(5).normal(size=(20000, 2), chunks=(5000, 2))
        graph = dict(dask.optimize(fd.dask_map(g, R, task_seconds=None)[1])[0].__dask_graph__())
        assert not any(str(k[0]).startswith("normal-") for k in graph)
        sums = fastad.dask.map_sum(g, R, task_seconds=None, reduce=lambda vg: (
            vg[0].sum(), (vg[1] ** 2).sum(axis=0), vg[1].shape[0]))
        first = {f.key for f in fastad.dask._held[client.id]}
        assert len(first) == 4 and first <= _scheduler_keys(client)
        R = R.compute()
        # points already held by the workers (persisted futures): the tasks read them there
        gsum = fastad.dask.map_sum(g, Xd.persist(), task_seconds=None,
                                   reduce=lambda vg: vg[1].sum(axis=0))
        # each map_sum keeps its chunks' partial results until the next call, which
        # releases them once its own graph is sent (docs/scale.md, "Where the fixed cost
        # of a call goes"); release_held frees the last call's
        second = {f.key for f in fastad.dask._held[client.id]}
        assert len(second) == 10 and second <= _scheduler_keys(client)
        assert _forgotten(client, first)
        fastad.dask.release_held(client)
        assert client.id not in fastad.dask._held
        assert _forgotten(client, second)
        fastad.dask.map_sum(g, Xd[:8000], task_seconds=None, reduce=lambda vg: vg[0].sum())
        assert client.id in fastad.dask._held
        loaded = client.run(lambda: __import__("fastad.serialize").serialize.LOADED["compiled"])
        # map_sum from two threads at once on one client: every call its own right sum,
        # one set of futures held afterwards (after `loaded` was read: a thread's first
        # call may trace, and a new tape is shipped again)
        from concurrent.futures import ThreadPoolExecutor
        ref = fd.vmap(g)(X[:8000])[1].sum(axis=0)
        with ThreadPoolExecutor(2) as pool:
            outs = list(pool.map(lambda _: fastad.dask.map_sum(
                g, Xd[:8000], task_seconds=None, reduce=lambda vg: vg[1].sum(axis=0)),
                range(6)))
        for o in outs:
            np.testing.assert_allclose(o, ref, rtol=1e-13)
        assert list(fastad.dask._held) == [client.id]
        # actors=True: the same chunk tasks run by one fastad actor per worker, called
        # directly (docs/scale.md, "Sums without the scheduler: actors"): the same bits
        red = lambda vg: (vg[0].sum(), (vg[1] ** 2).sum(axis=0), vg[1].shape[0])  # noqa: E731
        Rd = da.random.default_rng(5).normal(size=(20000, 2), chunks=(5000, 2))
        by_actors = [fastad.dask.map_sum(g, Rd, task_seconds=None, reduce=red, actors=True)
                     for _ in range(2)]
        futs = fastad.dask._actors[client.id][0]
        assert len(futs) == 2
        # points held on the cluster cannot go to an actor: the default path, same sums
        gsum_a = fastad.dask.map_sum(g, Xd.persist(), task_seconds=None, actors=True,
                                     reduce=lambda vg: vg[1].sum(axis=0))
        # an error of the user's reduce is raised as it is
        with pytest.raises(ZeroDivisionError):
            fastad.dask.map_sum(g, Rd, task_seconds=None, reduce=lambda vg: 1 / 0,
                                actors=True)
        # actors lost: that call runs the default way, the next one makes new actors
        client.cancel(futs)
        by_actors.append(fastad.dask.map_sum(g, Rd, task_seconds=None, reduce=red,
                                             actors=True))
        assert client.id not in fastad.dask._actors
        by_actors.append(fastad.dask.map_sum(g, Rd, task_seconds=None, reduce=red,
                                             actors=True))
        assert fastad.dask._actors[client.id][0] != futs
    fastad.dask.release_held()      # the closed client's futures: dropped, nothing sent
    assert not fastad.dask._held
    v1, G1 = fd.vmap(g)(X)                                  # one process
    np.testing.assert_allclose(vals, v1, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(G, G1, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(G, grad_closed(X), rtol=RTOL, atol=RTOL)
    v_closed = np.where(X[:, 0] > 0, X[:, 0] ** 2 * X[:, 1], np.sin(X[:, 0]) * X[:, 1]) \
        + 0.5 * np.exp(X[:, 1])
    np.testing.assert_allclose(vals, v_closed, rtol=RTOL, atol=RTOL)
    np.testing.assert_array_equal(G2, G[:8000])
    # map_sum: the chunks' sums, added in chunk order, bit for bit those of one process
    # replaying each chunk; and the values and gradients they sum are the closed forms'
    assert sums[2] == 20000
    want = None
    for k in range(4):
        v, G = fd.vmap(g)(R[5000 * k:5000 * (k + 1)])
        part = (v.sum(), (G ** 2).sum(axis=0))
        want = part if want is None else (want[0] + part[0], want[1] + part[1])
    assert sums[0] == want[0]
    want_g = None
    for k in range(10):
        part = fd.vmap(g)(X[4000 * k:4000 * (k + 1)])[1].sum(axis=0)
        want_g = part if want_g is None else want_g + part
    np.testing.assert_array_equal(gsum, want_g)
    np.testing.assert_array_equal(gsum_a, want_g)
    for a in by_actors:
        assert a[0] == want[0] and a[2] == 20000
        np.testing.assert_array_equal(a[1], want[1])
    np.testing.assert_array_equal(sums[1], want[1])
    np.testing.assert_allclose(sums[1], (grad_closed(R) ** 2).sum(axis=0), rtol=1e-12)
    # scattered once: each worker unpickled the compiled function once for its chunks of
    # both calls
    assert sorted(loaded.values()) == [1, 1]


def test_dask_map_output_shapes_from_a_point_where_ones_fail():
    # log(1 - x) is -inf at the probe point of ones: the shapes come from the first row
    def f(x):
        return np.log(1.0 - x) * x[::-1]
    X = np.random.default_rng(3).uniform(-0.9, 0.5, size=(120, 3))
    J = fd.dask_map(fd.jacobian(f), da.from_array(X, chunks=(50, 3))).compute()
    ref = np.einsum("ni,ij->nij", -X[:, ::-1] / (1.0 - X), np.eye(3)) \
        + np.log(1.0 - X)[:, :, None] * np.eye(3)[::-1][None]
    np.testing.assert_allclose(J, ref, rtol=RTOL, atol=RTOL)


def test_cheap_chunks_are_merged_into_tasks_of_useful_size():
    """merged_chunks joins neighbouring chunks so that a task holds about task_seconds of
    work, never fewer tasks than worker threads nor more than chunks (docs/scale.md)."""
    from fastad.dask import merged_chunks
    eight = (125_000,) * 8
    # 1e6 points at 150 ns: 0.15 s of work, 0.1 s per task -> 1 task, but 2 threads -> 2
    assert merged_chunks(eight, 150e-9, 0.1, 2) == (500_000, 500_000)
    # heavy points (4 us): 4 s of work -> 40 tasks wanted, only 8 chunks: kept
    assert merged_chunks(eight, 4e-6, 0.1, 2) == eight
    # 1.2 s of work -> 12 tasks wanted over 8 chunks: kept; 0.4 s -> 4 tasks of 2 chunks
    assert merged_chunks(eight, 1.2e-6, 0.1, 2) == eight
    assert merged_chunks(eight, 0.4e-6, 0.1, 2) == (250_000,) * 4
    # uneven chunks keep their total and their boundaries
    odd = (10, 30, 5, 5, 50)
    got = merged_chunks(odd, 1e-3, 0.05, 1)
    assert sum(got) == 100 and len(got) == 2
    assert set(np.cumsum(got)) <= set(np.cumsum(odd))
    # a cost that could not be timed (0) keeps the chunks
    assert merged_chunks(odd, 0.0, 0.1, 2) == odd


def test_points_per_task_from_the_cost_of_a_point():
    """Without a cluster: one task per core at least; tiny tasks asked -> one point each;
    tasks of ~0.1 s of a point costing far less -> exactly one per core (docs/scale.md)."""
    import os
    from fastad.dask import points_per_task
    g = fd.grad(lambda x: np.sin(x[0]) * x[1])
    cores = os.cpu_count() or 1
    assert points_per_task(g, np.zeros(2), n=1000) == -(-1000 // cores)
    assert points_per_task(g, np.zeros(2), n=1000, task_seconds=1e-15) == 1


def test_quiet_cluster_names_dask_settings_that_exist():
    """QUIET_CLUSTER (docs/scale.md) must name real keys of distributed's configuration,
    each made quieter than its default: a misspelt key would be set silently."""
    import dask.config
    from dask.utils import parse_timedelta
    for key, value in fastad.dask.QUIET_CLUSTER.items():
        default = dask.config.get(key)              # KeyError for a key that does not exist
        if isinstance(value, bool):
            assert default is True and value is False
        else:
            assert parse_timedelta(value) > parse_timedelta(default)


def test_map_sum_low_level_graph_one_task_per_chunk():
    """map_sum's graph on a cluster (fastad.dask._sum_graph, built without blockwise): the
    task drawing a chunk is inlined into the task reducing it, one task per chunk; a chunk
    passed twice (or used by another task) stays a task of its own.  Run here by Dask's
    synchronous scheduler, each chunk's sum is bit for bit fd.vmap's on that chunk."""
    from dask.local import get_sync
    f, grad_closed = make_problem()
    g = fd.grad(f)
    R = da.random.default_rng(7).normal(size=(3000, 2), chunks=(1000, 2))
    red = lambda G: (G * G).sum(axis=0)                        # noqa: E731
    bargs, fn, pos, _, _, _ = fastad.dask._prepare(g, (R,), None, 1, None)
    graph, keys = fastad.dask._sum_graph(bargs, fn, pos, red)
    assert len(graph) == len(keys) == 3
    Rn = R.compute()
    for k, block in enumerate(get_sync(graph, keys)):
        np.testing.assert_array_equal(block[0], red(fd.vmap(g)(Rn[1000 * k:1000 * (k + 1)])))
        np.testing.assert_allclose(block[0], red(grad_closed(Rn[1000 * k:1000 * (k + 1)])),
                                   rtol=1e-12)
    h = fd.grad(lambda x, y: (x * y).sum())
    bargs, fn, pos, _, _, _ = fastad.dask._prepare(h, (R, R), None, 1, None)
    graph, keys = fastad.dask._sum_graph(bargs, fn, pos, lambda G: G.sum(axis=0))
    assert len(graph) == 6        # the three chunks kept as tasks, each used twice
    total = sum(b[0] for b in get_sync(graph, keys))
    np.testing.assert_allclose(total, Rn.sum(axis=0), rtol=1e-12)


def test_actors_wait_for_workers_on_the_default_path():
    """map_sum(actors=True) on a cluster without workers yet makes no actors: the chunks
    are left to the scheduler (which waits for workers), nothing is cached."""
    g = fd.grad(lambda x: (x ** 2).sum())
    R = da.random.default_rng(7).normal(size=(100, 2), chunks=(50, 2))
    bargs, fn, pos, _, _, _ = fastad.dask._prepare(g, (R,), None, 1, None)
    graph, keys = fastad.dask._sum_graph(bargs, fn, pos, lambda G: G.sum(axis=0))
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert fastad.dask._by_actors(client, graph, keys) is None
        assert client.id not in fastad.dask._actors
