"""Dask: a compiled function mapped over the chunks of dask arrays of points, on one
machine or a cluster (docs/scale.md).  ``pip install "fastad[dask]"``.

Each chunk is one batched replay (fastad.vmap) in a worker; the function, with its
recorded tapes, is pickled once and installed on every worker by a worker plugin
(``Client.register_plugin``: the workers there now and any that join later), and each
worker unpickles it once; the tasks name it by a token, not once per task nor once per
call: later calls with the same function reuse the installed copy.  A token is a plain
string, not data the scheduler tracks, so Dask fuses the task that makes a chunk of points
with the task that maps it and places tasks by their points alone (a scattered future as
an argument blocked that fusion and drew tasks to the workers holding a replica).
``map_sum`` sums a reduction of every chunk's results in one round trip.
"""
import collections
import os
import pickle
import threading
import time
import uuid

import numpy as np

from fastad.batching import Batched, vmap
from fastad.pytree import tree_flatten, tree_unflatten

__all__ = ["dask_map", "map_sum", "points_per_task", "release_held", "QUIET_CLUSTER"]

# Settings for a LocalCluster on a few cores, for the user to choose (fastad never changes
# a cluster's settings itself): the workers' statistical profiler (a stack sample every
# 10 ms), the event loops' health check (every 20 ms) and the system monitor (every 0.5 s)
# cost an idle 2-worker cluster ~80 ms of CPU per second, ~16 ms with these -- CPU the
# tasks share their cores with (docs/scale.md, "Where the fixed cost of a call goes").
# Made with `dask.config.set(fastad.dask.QUIET_CLUSTER)` a cluster loses the dashboard's
# profiles and system graphs, and the "unresponsive event loop" warnings come later.
QUIET_CLUSTER = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s"}


# In a worker: the functions unpickled here, by token (a few, the most recent kept; an
# evicted one is unpickled again from its plugin's bytes, which the worker keeps).
_loaded = collections.OrderedDict()
_LOADED_MAX = 8
_loaded_lock = threading.Lock()


# ---------------------------------------------------------------------- task sizes
# Dask's own advice is tasks of 100 ms or more: its scheduler, the messages and a worker's
# bookkeeping cost about a millisecond per task, and a compute() about 10-30 ms on a
# LocalCluster, whatever the task computes (docs/scale.md, "What a point costs").
TASK_SECONDS = 0.1
_TIMED_POINTS = 1024            # the batch timed for the cost of a point


def _function(shipped):
    """The function of a chunk's task: the local one (no cluster), or the token of one a
    _Shipper plugin installed in this worker."""
    if not isinstance(shipped, str):
        return shipped
    with _loaded_lock:
        fn = _loaded.get(shipped)
        if fn is not None:
            _loaded.move_to_end(shipped)
            return fn
    from distributed import get_worker
    plugin = get_worker().plugins.get(shipped)
    if plugin is None:
        raise RuntimeError(f"fastad.dask_map: this worker has no function {shipped!r}: its "
                           "plugin was unregistered (more than 8 other functions were mapped "
                           "since) or the worker joined another scheduler; call dask_map "
                           "again to ship the function")
    return _install(shipped, plugin.blob)


def _install(token, blob):
    with _loaded_lock:
        fn = _loaded.get(token)
        if fn is None:
            fn = _loaded[token] = pickle.loads(blob)
            while len(_loaded) > _LOADED_MAX:
                _loaded.popitem(last=False)
        return fn


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:         # no distributed: dask_map runs on dask's local scheduler only
    _WorkerPlugin = object


class _Shipper(_WorkerPlugin):
    """Installs one compiled function (its pickle) on every worker of a cluster, present
    and future: the scheduler keeps the plugin and hands it to workers that join."""

    def __init__(self, token, blob):
        self.token, self.blob = token, blob

    def setup(self, worker):
        _install(self.token, self.blob)

    def teardown(self, worker):
        with _loaded_lock:
            _loaded.pop(self.token, None)


def _rows(shipped, pos, *blocks):
    """One chunk: the batched results as one (n, ncol) block (leaf after leaf); blocks[pos]
    is a mapped one."""
    res = _function(shipped)(*blocks)
    n = blocks[pos].shape[0]
    leaves = tree_flatten(res)[0]
    if not leaves:
        return np.empty((n, 0))
    if len(leaves) == 1:        # grad, jacobian...: the batched result itself, not a copy
        return np.asarray(leaves[0], dtype=np.float64).reshape(n, -1)
    return np.concatenate([np.asarray(leaf, dtype=np.float64).reshape(n, -1) for leaf in leaves],
                          axis=1)


def _client(client):
    if client is not None:
        return client
    try:
        from distributed import get_client
        return get_client()
    except (ImportError, ValueError):
        return None         # no cluster: dask's local scheduler, the function stays in memory


def dask_map(fun, *args, client=None, workers=1, task_seconds=TASK_SECONDS):
    """``fun`` (a fastad transform such as ``fd.value_and_grad(f)``, or any function
    ``fastad.vmap`` takes) mapped over axis 0 of the dask arrays among `args`.

    Other arguments (floats, numpy arrays) are shared by every point.  The points of a
    chunk are replayed in one batched call; ``workers`` threads per chunk (default 1:
    Dask's own workers give the parallelism).  Returns the output's structure with a dask
    array (batch first) per leaf; nothing runs until you compute it.  The function is
    traced once here, on the first point, to learn the output's shapes, then installed on
    the cluster's workers once (the client given, or the current one; without one Dask's
    local scheduler runs the chunks in this process).

    A task costs Dask about a millisecond whatever it computes, so chunks of cheap points
    are merged: the cost of a point is timed here on a batch of the probe point, and
    neighbouring chunks are joined until a task holds about ``task_seconds`` of work,
    keeping at least one task per worker thread (``task_seconds=None`` keeps the arrays'
    chunks; chunks are never split).  See docs/scale.md, "What a point costs".

    >>> import dask.array as da, numpy as np, fastad as fd
    >>> X = da.from_array(np.arange(6.0).reshape(3, 2), chunks=(2, 2))
    >>> fd.dask_map(fd.grad(lambda x: (x ** 2).sum()), X).compute()
    array([[ 0.,  2.],
           [ 4.,  6.],
           [ 8., 10.]])
    """
    bargs, fn, pos, n, tdef, shapes = _prepare(fun, args, client, workers, task_seconds)
    import dask.array as da
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    ncol = sum(sizes)
    flat = da.blockwise(_rows, "iz", fn, None, pos, None, *bargs,
                        new_axes={"z": ncol},
                        concatenate=True, dtype=np.float64,
                        name=f"fastad-map-{uuid.uuid4().hex}", meta=np.empty((0, 0)))
    if len(shapes) == 1 and len(shapes[0]) == 1:      # one vector per point: flat itself
        return tree_unflatten(tdef, [flat])
    out, col = [], 0
    for shape, size in zip(shapes, sizes):
        part = flat[:, col:col + size]
        out.append(part.reshape((n,) + shape) if shape else part[:, 0])
        col += size
    return tree_unflatten(tdef, out)


def _prepare(fun, args, client, workers, task_seconds):
    """What dask_map and map_sum share: (blockwise arguments of the chunks -- "i" the
    batch --, the function or its token, the position of a mapped block, the number of
    points, the output's tree structure, the shape of each output leaf per point)."""
    try:
        import dask.array as da
    except ImportError:
        raise ImportError("fastad.dask_map needs dask: pip install \"fastad[dask]\"") from None
    mapped = [isinstance(a, da.Array) for a in args]
    if not any(mapped):
        raise TypeError("fastad.dask_map: no argument is a dask array; pass the points as a "
                        "dask.array with the batch along axis 0")
    arrays = [a for a, m in zip(args, mapped) if m]
    for a in arrays:
        if a.ndim == 0:
            raise ValueError("fastad.dask_map: a dask array argument has no axis 0 to map over")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("fastad.dask_map: the dask arrays have different lengths along axis "
                         f"0 ({[a.shape[0] for a in arrays]})")
    batched = fun if isinstance(fun, Batched) else vmap(
        fun, in_axes=tuple(0 if m else None for m in mapped), workers=workers)
    point = _probe_point(args, mapped, arrays)
    leaves, tdef = tree_flatten(_probe(batched, args, mapped, arrays, point))
    shapes = [np.shape(leaf)[1:] for leaf in leaves]
    c = _client(client)
    # without a cluster, Dask's local scheduler runs a thread per core
    fn, threads = _scattered(c, batched, fun) if c is not None else (batched, os.cpu_count() or 1)
    chunks0 = arrays[0].chunks[0]
    if task_seconds is not None and len(chunks0) > threads:
        chunks0 = merged_chunks(chunks0, _timed_point(fun, batched, point, mapped),
                                task_seconds, threads)
    # one chunk along every axis but the batch, and the same batch chunks for every array
    arrays = [a.rechunk({0: chunks0, **{k: -1 for k in range(1, a.ndim)}}) for a in arrays]
    it = iter(arrays)
    # blockwise indices: "i" the batch, and a letter of its own for every other axis of
    # every array (contracted: one chunk each, concatenated)
    bargs, letters = [], iter("abcdefghjklmnopqrstuvwxyABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for a, m in zip(args, mapped):
        if m:
            arr = next(it)
            bargs += [arr, "i" + "".join(next(letters) for _ in range(arr.ndim - 1))]
        else:
            bargs += [a, None]
    return bargs, fn, mapped.index(True), n, tdef, shapes


def _reduced(shipped, pos, reduce, *blocks):
    """One chunk of map_sum: `reduce` of the chunk's batched results, wrapped in a 1-array
    of objects (a block of the blockwise array; only its one element is ever read)."""
    out = np.empty(1, dtype=object)
    out[0] = reduce(_function(shipped)(*blocks))
    return out


def map_sum(fun, *args, reduce, client=None, workers=1, task_seconds=TASK_SECONDS,
            actors=False):
    """The sum over the chunks of dask arrays of points of ``reduce(fun's batched results
    on the chunk)``, computed now: a numpy result (or the pytree `reduce` returns).

    The one-round-trip form of ``dask_map(...)`` followed by a reduction: each task draws
    or reads its chunk of points, replays them in one batched call and reduces them where
    they are, and the client gathers the partial results in one message and adds them in
    chunk order.  Dask's own ``(dask_map(...) ** 2).mean(axis=0).compute()`` goes through
    more steps after the chunks (an alias task per chunk, the aggregate task on one
    worker after a transfer to it, a finalize task): a third of the fixed cost of a call
    on a LocalCluster (docs/scale.md, "Sums in one round trip").  `reduce` receives the
    output's structure with the chunk's points along axis 0 (``fd.value_and_grad``: a
    tuple ``(values, gradients)``) and must return what adds across chunks: sums, not
    means (divide by the number of points afterwards).  The other arguments are those of
    dask_map.  On a cluster, the chunks' partial results stay on the workers until the
    next map_sum on the same client (which releases them once its own graph is sent: a
    release sent as a call returns would delay the next call's graph) or
    ``release_held(client)``.

    ``actors=True`` runs the chunks' tasks in one fastad actor per worker instead (Dask
    actors, made on the first such call and kept), called from here directly: no task
    goes through the scheduler, which saves most of the fixed cost of a call, but the
    scheduler neither knows these tasks (they share the worker's cores with its tasks,
    no progress bar, no work stealing: chunks are dealt to the workers in turn) nor
    retries them; a lost worker makes the call run again the default way (and the next
    one make new actors).  Only chunks that need nothing already on the cluster (points
    drawn or read by their own task) can go to an actor; otherwise the call takes the
    default path (docs/scale.md, "Sums without the scheduler: actors").  Needs Dask
    2024.12 or later (its graphs of ``dask._task_spec`` nodes), as the rest of map_sum.

    >>> import dask.array as da, numpy as np, fastad as fd, fastad.dask
    >>> X = da.from_array(np.arange(6.0).reshape(3, 2), chunks=(2, 2))
    >>> fastad.dask.map_sum(fd.grad(lambda x: (x ** 2).sum()), X,
    ...                     reduce=lambda G: (G ** 2).sum(axis=0))
    array([ 80., 140.])
    """
    bargs, fn, pos, n, _, _ = _prepare(fun, args, client, workers, task_seconds)
    c = _client(client)
    if c is None:       # Dask's local scheduler, in this process
        import dask
        import dask.array as da
        parts = da.blockwise(_reduced, "i", fn, None, pos, None, reduce, None, *bargs,
                             adjust_chunks={"i": 1}, concatenate=True, dtype=object,
                             name=f"fastad-sum-{uuid.uuid4().hex}",
                             meta=np.empty((0,), dtype=object))
        blocks = [b[0] for b in dask.compute(*parts.to_delayed().ravel())]
    else:       # futures gathered in one message; no aggregate task on the cluster
        graph, keys = _sum_graph(bargs, fn, pos, reduce)
        blocks = _by_actors(c, graph, keys) if actors else None
        if blocks is not None:
            return _added(blocks)
        futures = c.get(graph, keys, sync=False)
        _release(_take_held(c.id))      # the last call's futures, after this graph
        blocks = [b[0] for b in c.gather(futures)]
        if futures:
            _hold(c, futures)
    return _added(blocks)


def _added(blocks):
    """The chunks' partial results added in chunk order."""
    total = None
    for block in blocks:
        total = block if total is None else _tree_add(total, block)
    return total


class _Runner:
    """A Dask actor in a worker: runs map_sum's chunk tasks (self-contained graph nodes)
    sent to it, in the worker's actor thread.  An error of a task is returned, not
    raised: the caller tells it from the loss of the worker."""

    def run(self, nodes):
        try:
            return True, [node({})[0] for node in nodes]
        except Exception as e:      # noqa: BLE001 -- raised again by the caller
            return False, e


# The actors of each client (futures keeping them alive, the actors), made on the first
# map_sum(actors=True) on that client, one per worker present then; a few clients kept.
_actors = collections.OrderedDict()
_ACTORS_MAX = 4
_actors_lock = threading.Lock()


def _runners(c):
    with _actors_lock:
        for cid in [cid for cid, (fs, _) in _actors.items() if fs[0].client.status != "running"]:
            del _actors[cid]
        hit = _actors.get(c.id)
        if hit is None:
            tag = uuid.uuid4().hex
            futures = [c.submit(_Runner, actor=True, workers=[w], allow_other_workers=False,
                                pure=False, key=f"fastad-runner-{tag}-{i}")
                       for i, w in enumerate(sorted(c.nthreads()))]
            if not futures:
                raise RuntimeError("no workers yet")    # the default path waits for them
            hit = _actors[c.id] = (futures, [f.result() for f in futures])
            while len(_actors) > _ACTORS_MAX:
                _actors.popitem(last=False)
        return hit[1]


def _by_actors(c, graph, keys):
    """The chunk tasks' results run by the client's actors, chunk i on actor i mod the
    actors; None when a chunk needs another task or data on the cluster, or when a
    worker was lost (its actors are dropped; the caller runs the tasks the default way)."""
    nodes = [graph[k] for k in keys]
    if len(graph) != len(keys) or any(node.dependencies for node in nodes):
        return None
    try:
        runners = _runners(c)
        calls = [r.run(nodes[j::len(runners)]) for j, r in enumerate(runners)
                 if nodes[j::len(runners)]]
        outs = [call.result() for call in calls]
    except Exception:       # noqa: BLE001 -- a worker lost, an actor gone
        with _actors_lock:
            _actors.pop(c.id, None)
        return None
    for ok, res in outs:
        if not ok:
            raise res
    blocks = [None] * len(nodes)
    for j, (_, res) in enumerate(outs):
        blocks[j::len(runners)] = res
    return blocks


def _sum_graph(bargs, fn, pos, reduce):
    """(graph, keys) of map_sum's chunk tasks, built here as a low-level graph: the mapped
    arrays' own graphs after Dask's optimization (their blockwise layers fused, culled),
    and one task per chunk calling _reduced, into which the task making each of its
    chunks is inlined when nothing else uses that chunk (a chunk drawn by ``da.random``
    or read from a file and replayed in one task, as Dask's fusion would do).  Building
    the blockwise layer and optimizing it with the rest cost the client ~1.3 ms a call,
    and the fused task Dask made ran the chunk's task through a subgraph (docs/scale.md,
    "Cutting the rest: a low-level graph and actors")."""
    import dask
    try:                # the public name (newer Dask); the module it re-exports before
        from dask.task_spec import Task, TaskRef
    except ImportError:
        from dask._task_spec import Task, TaskRef
    arrays = [a for a, ind in zip(bargs[::2], bargs[1::2]) if ind is not None]
    graph = {}
    for a in arrays:
        graph.update(a.__dask_graph__())
    # chunks made by tasks of their own (da.random, a read per chunk): nothing to optimize
    # (Dask's optimization would cost the call 0.2 ms to find that out)
    if len(graph) != sum(a.npartitions for a in arrays) or any(
            not isinstance(node, Task) or node.dependencies for node in graph.values()):
        arrays = dask.optimize(*arrays)
        graph = {}
        for a in arrays:
            graph.update(a.__dask_graph__())
    users = collections.Counter()       # how many tasks use each key
    for node in graph.values():
        users.update(getattr(node, "dependencies", ()))
    name = f"fastad-sum-{uuid.uuid4().hex}"
    keys = []
    for i in range(arrays[0].numblocks[0]):
        chunk = [(a.name, i) + (0,) * (a.ndim - 1) for a in arrays]
        it, targs = iter(chunk), []
        for a, ind in zip(bargs[::2], bargs[1::2]):
            if ind is None:
                targs.append(a)
                continue
            k = next(it)
            node = graph.get(k)
            if isinstance(node, Task) and not users[k] and chunk.count(k) == 1:
                del graph[k]
                targs.append(node)
            else:
                targs.append(TaskRef(k))
        keys.append((name, i))
        graph[keys[-1]] = Task(keys[-1], _reduced, fn, pos, reduce, *targs)
    return graph, keys


# The futures of the last map_sum on each client (its chunks' small partial results, kept
# on the workers), released by the next call just after it has sent its graph.  A client
# sends its messages to the scheduler at most once per 10 ms (distributed's BatchedSend):
# futures released as a call returns would send a release message then, and the next
# call's graph, sent a few milliseconds later, would wait for the rest of those 10 ms
# (docs/scale.md, "Where the fixed cost of a call goes").  A few clients are kept.
_held = collections.OrderedDict()
_HELD_MAX = 4
_held_lock = threading.Lock()       # map_sum may run in several threads at once


def _take_held(cid):
    """The futures held for client id `cid` (removed from _held), or ()."""
    with _held_lock:
        return _held.pop(cid, ())


def _hold(c, futures):
    drop = []
    with _held_lock:
        for cid in [cid for cid, fs in _held.items() if fs[0].client.status != "running"]:
            del _held[cid]      # a closed client's: nothing left to release on its cluster
        drop.append(_held.pop(c.id, ()))    # another thread's call on this client, gathered
        _held[c.id] = futures
        _held.move_to_end(c.id)
        while len(_held) > _HELD_MAX:
            drop.append(_held.popitem(last=False)[1])
    for fs in drop:
        _release(fs)


def _release(futures):
    """Release futures now, in this order after the messages already queued (a future
    dropped may live on in a reference cycle until the garbage collector runs, and send
    its release at any moment)."""
    for f in futures:
        if f.client.status == "running":    # a closed client's loop takes no callbacks
            f.release()


def release_held(client=None):
    """Release the partial results the last ``map_sum`` on `client` (every client: None)
    keeps on the workers until the next call (docs/scale.md, "Where the fixed cost of a
    call goes"); they are a few small arrays per chunk, so this is rarely needed."""
    with _held_lock:
        cids = list(_held) if client is None else [client.id]
    for cid in cids:
        _release(_take_held(cid))


def _tree_add(a, b):
    la, tdef = tree_flatten(a)
    return tree_unflatten(tdef, [x + y for x, y in zip(la, tree_flatten(b)[0])])


def _probe_point(args, mapped, arrays):
    """The arguments of a batch of one point of ones (shared arguments as they are)."""
    return [np.ones((1,) + a.shape[1:], dtype=a.dtype if a.dtype.kind == "f" else np.float64)
            if m else a for a, m in zip(_replace(args, mapped, arrays), mapped)]


def _probe(batched, args, mapped, arrays, ones):
    """The batched result at one point, for the output's structure and shapes (this traces
    `fun` here once).  A point of ones, made here: reading the first row of a dask array
    would be a round trip through the cluster (computing a whole chunk) at every call.  A
    function that fails or returns NaN at ones (a log(1 - x)...) is probed at the first row."""
    try:
        with np.errstate(all="ignore"):
            res = batched(*ones)
        if all(np.all(np.isfinite(leaf)) for leaf in tree_flatten(res)[0]):
            return res
    except (ArithmeticError, ValueError):
        pass
    first = [np.asarray(a[:1].compute()) if m else a
             for a, m in zip(_replace(args, mapped, arrays), mapped)]
    ones[:] = first             # the point the cost is timed at, too
    return batched(*first)


# the cost of a point, timed once per function, tape state and point shapes: a repeated
# dask_map does not time it again (a few ms of the call's critical path); a few kept
_timed = collections.OrderedDict()


def _timed_point(fun, batched, point, mapped):
    key = (id(fun), batched.target.cache_info().get("traces"),
           tuple((np.shape(a), m) for a, m in zip(point, mapped)))
    hit = _timed.get(key)
    if hit is not None and hit[0] is fun:
        return hit[1]
    seconds = _point_seconds(batched, point, mapped)
    _timed[key] = (fun, seconds)
    while len(_timed) > _SENT_MAX:
        _timed.popitem(last=False)
    return seconds


def _point_seconds(batched, point, mapped, rounds=2):
    """Seconds per point of a batched replay, timed here on copies of the probe point (best
    of `rounds`, after a warm-up): 16 points first, and _TIMED_POINTS when those took under
    a millisecond (a cheap point needs a batch to show its batched cost; a heavy one must
    not make every call wait).  A point that takes other branches may cost more or less;
    this sizes tasks, it decides nothing else."""
    seconds = 0.0
    for npts in (16, _TIMED_POINTS):
        batch = [np.repeat(a, npts, axis=0) if m else a for a, m in zip(point, mapped)]
        best = float("inf")
        with np.errstate(all="ignore"):
            try:
                for _ in range(rounds + 1):
                    t = time.perf_counter()
                    batched(*batch)
                    best = min(best, time.perf_counter() - t)
            except (ArithmeticError, ValueError):
                return 0.0
        seconds = best / npts
        if best > 1e-3:
            break
    return seconds


def points_per_task(fun, *point, n, client=None, task_seconds=TASK_SECONDS):
    """Chunk length for a dask array of `n` points on which ``dask_map(fun, ...)`` will run
    tasks of about `task_seconds` each, at least one per worker thread of `client` (or of
    the current cluster; this machine's cores without one).  `point` is one point's
    arguments (each mapped; unbatched).  Use it where the points are made, so that
    dask_map has nothing to join: joining chunks drawn on different workers moves them
    between workers (docs/scale.md, "Task sizes from the cost of a point")."""
    batched = fun if isinstance(fun, Batched) else vmap(fun)
    one = [np.asarray(p, dtype=np.float64)[None] for p in point]
    seconds = _point_seconds(batched, one, [True] * len(one))
    c = _client(client)
    if c is None:
        threads = os.cpu_count() or 1
    else:
        threads = _threads(c)
    ntasks = max(threads, round(seconds * n / task_seconds)) if seconds > 0 else threads
    return max(1, -(-n // ntasks))


def merged_chunks(chunks, point_seconds, task_seconds, threads):
    """Neighbouring chunk lengths joined into tasks of about `task_seconds` of work each,
    but at least `threads` tasks (one per worker thread) when there are that many chunks.
    Returns the new chunk lengths (a tuple, same total)."""
    total = sum(chunks)
    want = max(1, round(point_seconds * total / task_seconds)) if point_seconds > 0 else len(chunks)
    ntasks = min(len(chunks), max(want, threads))
    if ntasks == len(chunks):
        return tuple(chunks)
    target = total / ntasks
    out, acc = [], 0
    for n in chunks:
        acc += n
        if acc >= target * 0.999 and len(out) < ntasks - 1:
            out.append(acc)
            acc = 0
    if acc:
        out.append(acc)
    return tuple(out)


# the functions last shipped, with their state: a repeated dask_map ships a function
# once per worker, not once per call; a retrace here since (a new tape) ships it again
# (the old copy stays until evicted: arrays built with it may not have been computed yet).
# Keyed by id (compiled functions take no weak references), so the entries hold their
# functions, and the few most recent are kept (an evicted one's plugin is unregistered).
_sent = collections.OrderedDict()
_SENT_MAX = 8
_sent_lock = threading.Lock()      # guards _sent; held while a function is shipped


def _scattered(c, batched, fun):
    """(the token of `batched` installed on every worker of client `c`, the cluster's
    worker threads).  No round trip to the scheduler when it was shipped before: a worker
    that joined since got it from the plugin when it joined."""
    state = (batched.target.cache_info().get("traces"), batched.in_axes, batched.workers)
    key = (id(fun), id(c), c.id, state)
    with _sent_lock:        # threads mapping one function ship it once
        hit = _sent.get(key)
        if hit is not None and hit[0] is fun:
            _sent.move_to_end(key)
            return hit[2], hit[3]
        import cloudpickle  # a dependency of distributed; closures and lambdas by value
        token = f"fastad-fn-{uuid.uuid4().hex}"
        c.register_plugin(_Shipper(token, cloudpickle.dumps(
            batched, protocol=pickle.HIGHEST_PROTOCOL)), name=token)
        threads = _threads(c)
        _sent[key] = (fun, state, token, threads, c)
        _sent.move_to_end(key)
        while len(_sent) > _SENT_MAX:   # an array built with an evicted one fails, saying so
            old = _sent.popitem(last=False)[1]
            _unregister(old[4], old[2])
    return token, threads


def _threads(c):
    """The worker threads of client `c`'s cluster, asked of the scheduler (the client's
    cached ``scheduler_info()`` was seen to list no workers)."""
    return max(1, sum(int(t) for t in c.nthreads().values()))


def _unregister(c, token):
    try:
        c.unregister_worker_plugin(token)
    except Exception:       # noqa: BLE001 -- a closed client or a worker gone: nothing to free
        pass


def _replace(args, mapped, arrays):
    it = iter(arrays)
    return [next(it) if m else a for a, m in zip(args, mapped)]
