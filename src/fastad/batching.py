"""fastad.vmap: a function of one point mapped over a batch of points, replayed in C.

`vmap(fd.value_and_grad(f))(X)` replays the tape of `f`'s gradient for every row of X in
one call into C (fastad._batch): no Python runs per point.  Branches stay exact per point:
every point's guards are checked; points whose outcomes differ from a tape's are tried on
the signature's other tapes, and the first point of a pattern no tape fits is traced once
(the same retrace rule as a single call), after which the rest of that pattern replays on
the new tape.  See docs/scale.md.

A plain function (not a fastad transform) is traced too and its values replayed; fastad
transforms called inside it are recorded into its tape (fastad.nested), so
``vmap(lambda x, v: fd.jvp(f, (x,), (v,)))`` and ``vmap(fd.hvp(f))`` replay in C as well.
"""
import functools
import os
import threading
import weakref

import numpy as np

from fastad import native_batch
from fastad import _batch
from fastad._batch import Plan, result_array, set_vector_math, vector_math_available
from fastad._replay import Compiled, signature_of, spec_of
from fastad._tracer import is_traced
from fastad.pytree import tree_flatten, tree_unflatten

__all__ = ["vmap", "set_vector_math", "vector_math_available", "release_buffers"]

_buffers = threading.local()        # per thread: the input matrix of the last batch
_MAX_KEPT = 1 << 23                 # doubles (64 MB): a bigger one is not kept

# modes whose tapes are read by a plan: (value read?, reverse sweeps?, jacobian?)
_C_MODES = ("values", "grad", "value_and_grad", "jacfwd", "jacrev", "jacobian")


def release_buffers():
    """Free the memory batches keep for reuse: the buffers under big results (4 MB and
    more) that no array uses any more, and this thread's input matrix.  Returns the bytes
    freed.  Batches keep at most two result buffers, 256 MB in all, so that the next
    batch writes its results without paying the kernel for fresh pages (docs/scale.md,
    "The memory of results"); call this to give that memory back sooner."""
    x = _buffers.__dict__.pop("x", None)
    return _batch.release_buffers() + (x.nbytes if x is not None else 0)


def vmap(fun, in_axes=0, out_axes=0, *, workers=1):
    """`fun` mapped over a batch axis of its arguments, as ``jax.vmap``.

    `in_axes` gives, per positional argument, the axis holding the batch (an int, negative
    counting from the end) or None for an argument every point shares; a single int or
    None applies to every argument, and an argument that is a pytree takes its entry for
    every leaf.  The batch axes must all have the same length N.  Every output leaf gets
    the batch at axis `out_axes` (an int, or a tuple with one int per output of a tuple);
    ``None`` returns an output once, unbatched: it must then be the same at every point
    (JAX refuses an output that depends on a mapped argument; fastad compares the values,
    bit for bit, and raises ValueError when they differ).
    Keyword arguments are shared by every point.

    `fun` is a fastad transform (grad, value_and_grad, jacobian, jacfwd, jacrev, hessian)
    or any function of floats and arrays, whose values are then mapped (hvp and jvp taken
    inside it are recorded with it).  The batch replays in C in one call; ``workers=k``
    splits it over k threads that sweep without the GIL (``"auto"``: the usable cores),
    with results identical bit for bit to ``workers=1``.

    >>> import numpy as np, fastad as fd
    >>> fd.vmap(fd.grad(lambda x: x * x))(np.array([1.0, 2.0, 3.0]))
    array([2., 4., 6.])
    """
    return Batched(fun, in_axes, out_axes, workers)


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_workers(workers):
    if workers == "auto":
        return _usable_cores()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"fastad.vmap: workers must be a positive int or 'auto', got "
                         f"{workers!r}")
    return int(workers)


def _check_axis_spec(spec, what):
    """in_axes/out_axes entries: an int or None, or (for in_axes) a tuple/list of them."""
    ok = lambda a: a is None or (isinstance(a, (int, np.integer)) and not isinstance(a, bool))
    if ok(spec):
        return spec
    if isinstance(spec, (tuple, list)) and all(ok(a) for a in spec):
        return tuple(spec)
    raise TypeError(f"fastad.vmap: {what} must be an int, None, or a tuple of ints and None "
                    f"(one per argument), got {spec!r}")


class Batched:
    """What `vmap` returns; call it like `fun` with batched arguments."""

    def __init__(self, fun, in_axes, out_axes, workers):
        if not callable(fun):
            raise TypeError(f"fastad.vmap: expected a function, got {type(fun).__name__}")
        self.fun = fun
        self.in_axes = _check_axis_spec(in_axes, "in_axes")
        self.out_axes = _check_axis_spec(out_axes, "out_axes")
        self.workers = _check_workers(workers)
        if isinstance(fun, Compiled):
            spec = spec_of(fun)
            self.mode, self.argnums = spec["mode"], spec["argnums"]
            self.has_aux, self.replay = spec["has_aux"], spec["replay"]
            self.target = fun
        else:
            self.mode, self.argnums, self.has_aux, self.replay = "values", (), False, True
            # traced for values: a jvp-mode Compiled records any output structure; its
            # tangents (zero) are not read
            self.target = Compiled(fun, (), True, "jvp", True)
        self.plans = weakref.WeakKeyDictionary()      # tape -> (plan key, Plan)
        self.stats = {"calls": 0, "points": 0, "traced": 0, "loop_points": 0}
        functools.update_wrapper(self, fun, updated=())

    # ------------------------------------------------------------------ arguments
    def _axes(self, nargs):
        if not isinstance(self.in_axes, tuple):
            return (self.in_axes,) * nargs
        if len(self.in_axes) != nargs:
            raise ValueError(f"fastad.vmap: in_axes has {len(self.in_axes)} entries but the call "
                             f"passed {nargs} positional arguments; give one entry (an int or "
                             f"None) per argument")
        return self.in_axes

    def _batch_args(self, args):
        """(args with every batch axis moved to 0, which are batched, N)."""
        axes = self._axes(len(args))
        if args and all(a is None for a in axes):
            raise ValueError("fastad.vmap: in_axes maps no argument (all None); at least one "
                             "argument must carry the batch")
        moved, sizes = [], {}
        for i, (a, ax) in enumerate(zip(args, axes)):
            if ax is None:
                moved.append(a)
                continue
            leaves, tdef = tree_flatten(a)
            out = []
            for leaf in leaves:
                if not (isinstance(leaf, np.ndarray) or is_traced(leaf)) or \
                        getattr(leaf, "ndim", 0) == 0:
                    raise TypeError(
                        f"fastad.vmap: argument {i} is mapped over axis {ax} (in_axes) but is "
                        f"a {type(leaf).__name__} with no such axis; pass a numpy array with "
                        f"the batch along that axis, or in_axes=None for an argument every "
                        f"point shares")
                nd = leaf.ndim
                if not -nd <= ax < nd:
                    raise ValueError(f"fastad.vmap: argument {i} has {nd} dimensions, so it has "
                                     f"no axis {ax} to map over (in_axes)")
                sizes.setdefault(leaf.shape[ax], []).append(i)
                out.append(leaf if ax % nd == 0 else np.moveaxis(leaf, ax, 0))
            moved.append(tree_unflatten(tdef, out))
        if len(sizes) > 1:
            desc = "; ".join(f"{n} for argument(s) {sorted(set(ix))}" for n, ix in sizes.items())
            raise ValueError(f"fastad.vmap: the mapped axes have different lengths ({desc}); "
                             f"every mapped argument must have the same batch size")
        if not sizes:
            raise ValueError("fastad.vmap: no argument carries the batch")
        return moved, [ax is not None for ax in axes], next(iter(sizes))

    @staticmethod
    def _lane(moved, batched, i):
        return tuple(_take(a, i) if b else a for a, b in zip(moved, batched))

    @staticmethod
    def _probe(moved, batched):
        """A point of the right shapes (ones) for an empty batch: its outputs' shapes."""
        def one(leaf):
            shape = leaf.shape[1:]
            return np.ones(shape) if shape else 1.0
        return tuple(_tree_map(one, a) if b else a for a, b in zip(moved, batched))

    # ------------------------------------------------------------------ single points
    def _single(self, lane, kwargs):
        """The result for one point (what is batched), through the fastad transform."""
        if self.mode == "values":
            tangents = tuple(_tree_map(_zero_like, a) for a in lane)
            return self.target.run(lane, kwargs, tangents)[0]
        return self.target(*lane, **kwargs)

    def _raw(self, lane, kwargs):
        """The result for one point inside an enclosing trace (recorded there)."""
        if self.mode == "values":
            return self.fun(*lane, **kwargs)
        return self.target(*lane, **kwargs)

    # ------------------------------------------------------------------ the call
    def __call__(self, *args, **kwargs):
        moved, batched, N = self._batch_args(args)
        self.stats["calls"] += 1
        self.stats["points"] += N
        if any(is_traced(leaf) for a in args for leaf in tree_flatten(a)[0]):
            return self._loop(moved, batched, N, kwargs, self._raw)   # inside a trace
        c_path = (self.mode in _C_MODES and not self.has_aux and self.replay
                  and all(type(a) in (np.ndarray, float) or not isinstance(a, (tuple, list, dict))
                          for a in moved))
        if not c_path:
            return self._loop(moved, batched, N, kwargs, self._single)
        lane0 = self._lane(moved, batched, 0) if N else self._probe(moved, batched)
        res0 = self._single(lane0, kwargs)
        leaves0, tdef = tree_flatten(res0)
        shapes = [np.shape(leaf) for leaf in leaves0]
        if N == 0:
            return self._assemble(tdef, [np.empty((0,) + s) for s in shapes])
        sig = signature_of(self.target, lane0, kwargs)
        if sig is None:
            return self._loop(moved, batched, N, kwargs, self._single)
        layout = sig[0]
        X, buf = self._inputs(moved, batched, layout, N)
        if X is None:                       # a mapped argument is static (an int array...)
            return self._loop(moved, batched, N, kwargs, self._single)
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        try:
            # scalar outputs (value_and_grad of scalar arguments): one contiguous array each
            out = self._replay(moved, batched, N, kwargs, layout, sig[1], X, sum(sizes),
                               "F" if all(s == () for s in shapes) else "C")
        finally:
            if buf is not None and buf.size <= _MAX_KEPT:
                _buffers.x = buf
        cols = np.cumsum([0] + sizes)
        return self._assemble(tdef, [out[:, cols[k]:cols[k + 1]].reshape((N,) + shapes[k])
                                     for k in range(len(shapes))])

    def _inputs(self, moved, batched, layout, N):
        """(The (N, nin) matrix of every point's tape inputs, or None; the buffer to keep).
        The matrix lives in a buffer kept per thread: a fresh array of that size costs a
        page fault per 4 kB at every call, a third of the time of a call on a small tape.
        When one mapped float64 array is the whole input (an (N, n) matrix of points) it is
        read in place: its copy was the serial part that kept threads from scaling."""
        nin = sum(size for kind, off, size in layout)
        direct = _in_place(moved, batched, layout, N, nin)
        if direct is not None:
            return direct, None
        # taken out while in use: a trace during this batch may run another batch
        buf = _buffers.__dict__.pop("x", None)
        if buf is None or buf.size < N * nin:
            buf = np.empty(max(N * nin, 1))
        # scalar arguments (one tape input each): one contiguous column each, a plain copy
        scalars = all(size == 1 for kind, off, size in layout if kind != 0)
        X = buf[:N * nin].reshape(nin, N).T if scalars else buf[:N * nin].reshape(N, nin)
        for a, b, (kind, off, size) in zip(moved, batched, layout):
            if kind == 0:
                if b:
                    return None, buf
                continue
            X[:, off:off + size] = (np.asarray(a, dtype=np.float64).reshape(N, size) if b
                                    else np.asarray(a, dtype=np.float64).reshape(size))
        return X, buf

    def _replay(self, moved, batched, N, kwargs, layout, tapes, X, ncol, order="C"):
        """Every point's row of results: replayed on the tapes that fit, a pattern no tape
        fits traced once (at its first point) and the rest of it replayed on the new tape."""
        out = result_array(N, ncol, order)
        fitted = np.zeros(N, dtype=np.uint8)
        pending = None                       # every lane, until a tape leaves some
        tried, traced = set(), set()
        while pending is None or pending.size:
            fresh = [t for t in tapes if t not in tried]
            if not fresh:
                if pending is None:
                    pending = np.arange(N, dtype=np.int64)
                lane_no = int(pending[0])
                lane = self._lane(moved, batched, lane_no)
                if lane_no in traced:         # its own tape did not fit it: never loop on that
                    raise RuntimeError("fastad internal error: a point does not replay on the "
                                       "tape traced at it")
                traced.add(lane_no)
                self.stats["traced"] += 1
                self._single(lane, kwargs)      # traces the new pattern (a retrace)
                sig = signature_of(self.target, lane, kwargs)
                tapes = sig[1] if sig is not None else []
                if sig is None or sig[0] != layout:
                    raise RuntimeError("fastad internal error: the signature changed in a batch")
                continue
            for tape in fresh:
                tried.add(tape)
                plan = self._plan(tape, layout, ncol)
                native_batch.prepare(plan, tape, N if pending is None else pending.size)
                nfit = plan.run(X, pending, out, fitted, self.workers)
                if nfit == (N if pending is None else pending.size):
                    pending = pending[:0] if pending is not None else np.zeros(0, np.int64)
                    break
                pending = (np.flatnonzero(fitted == 0) if pending is None
                           else pending[fitted[pending] == 0])
        return out

    def _loop(self, moved, batched, N, kwargs, single):
        """Point by point through Python: pytree arguments, has_aux, replay=False, static
        mapped arguments, and calls inside a trace."""
        self.stats["loop_points"] += N
        if N == 0:
            res0 = self._single(self._probe(moved, batched), kwargs)
            leaves0, tdef = tree_flatten(res0)
            return self._assemble(tdef, [np.empty((0,) + np.shape(leaf)) for leaf in leaves0])
        results = [single(self._lane(moved, batched, i), kwargs) for i in range(N)]
        flat = [tree_flatten(r) for r in results]
        tdef = flat[0][1]
        for _, d in flat:
            if d != tdef:
                raise ValueError("fastad.vmap: the function returns different structures at "
                                 "different points")
        return self._assemble(tdef, [_stack([f[0][k] for f in flat])
                                     for k in range(len(flat[0][0]))])

    def _assemble(self, tdef, leaves):
        """The batched leaves (batch first) with the batch moved to out_axes."""
        axes = self.out_axes
        if isinstance(axes, tuple):
            top = tree_unflatten(tdef, leaves)
            if not isinstance(top, (tuple, list)) or len(top) != len(axes):
                raise ValueError(f"fastad.vmap: out_axes has {len(axes)} entries but the "
                                 f"function's output is not a tuple of that length")
            return type(top)(_tree_map(lambda leaf, ax=ax: _move_out(leaf, ax), part)
                             for part, ax in zip(top, axes))
        return tree_unflatten(tdef, [_move_out(leaf, axes) for leaf in leaves])

    # ------------------------------------------------------------------ plans
    def _plan(self, tape, layout, ncol):
        key = (tuple(layout), ncol)
        hit = self.plans.get(tape)
        if hit is not None and hit[0] == key:
            return hit[1]
        plan = _make_plan(self.mode, self.argnums, tape, layout, ncol)
        self.plans[tape] = (key, plan)
        return plan

    def cache_info(self):
        """The transform's counts (traces, replays, ...) and the batches': calls, points,
        patterns traced during batches, points that went through the Python loop."""
        info = dict(self.target.cache_info())
        info.update({f"batch_{k}": v for k, v in self.stats.items()})
        # the tier of each tape's batched sweeps (docs/native.md, "Batched sweeps")
        info["batch_native"] = [native_batch.plan_state(t, hit[1])
                                for t, hit in list(self.plans.items())]
        return info

    def __reduce__(self):
        return (Batched, (self.fun, self.in_axes, self.out_axes, self.workers))


def _make_plan(mode, argnums, tape, layout, ncol):
    """The Plan reading `mode`'s result for one point off `tape`, columns in the order of
    the flattened result (fastad._batch)."""
    meta = tape.meta
    outs = (np.asarray(meta.slots, dtype=np.int64) if meta is not None
            else np.array([tape.output_slot], dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    nothing = (empty, np.zeros(1, dtype=np.int64), empty, empty)
    v = (empty, empty)
    argnums = tuple(a % len(layout) for a in argnums)
    ins = [np.arange(layout[a][1], layout[a][1] + layout[a][2], dtype=np.int64) for a in argnums]
    flat_in = np.concatenate(ins) if ins else empty
    if mode == "values":
        v = (outs, np.arange(outs.size, dtype=np.int64))
        rev = tan = nothing
    elif mode in ("grad", "value_and_grad"):
        first = 1 if mode == "value_and_grad" else 0
        if first:
            v = (outs[:1], np.zeros(1, dtype=np.int64))
        rev = (outs[:1], np.array([0, flat_in.size], dtype=np.int64), flat_in,
               np.arange(first, first + flat_in.size, dtype=np.int64))
        tan = nothing
    else:
        rev, tan = _jacobian_plan(mode, meta, outs, ins)
    n_expected = max([v[1].max(initial=-1), rev[3].max(initial=-1), tan[3].max(initial=-1)]) + 1
    if n_expected != ncol:
        raise ValueError("fastad.vmap: the function's output has a different shape at "
                         "different points (a branch changed it); vmap needs one shape")
    return Plan(tape, ncol, v[0], v[1], *rev, *tan)


def _jacobian_plan(mode, meta, outs, ins):
    """Reverse sweeps per output row or tangent sweeps per input column, with the columns
    of each (row, input) entry in the order of the flattened Jacobian: output leaf after
    leaf, and within a leaf the block of each differentiated argument."""
    empty = np.zeros(0, dtype=np.int64)
    nothing = (empty, np.zeros(1, dtype=np.int64), empty, empty)
    leaf_rows = ([int(np.prod(s, dtype=np.int64)) for s in meta.leaf_shapes()]
                 if meta is not None else [1])
    nout, widths = outs.size, [b.size for b in ins]
    ncolin = sum(widths)
    # pos[i, c]: the flattened position of d out[i] / d input column c
    pos = np.empty((nout, ncolin), dtype=np.int64)
    base, r0 = 0, 0
    for nrow in leaf_rows:
        c0 = 0
        for w in widths:
            pos[r0:r0 + nrow, c0:c0 + w] = base + np.arange(nrow * w).reshape(nrow, w)
            base += nrow * w
            c0 += w
        r0 += nrow
    in_slots = np.concatenate(ins) if ins else empty
    if mode == "jacobian":
        mode = "jacrev" if nout < ncolin else "jacfwd"
    if mode == "jacrev":
        rev = (outs, np.arange(0, nout * ncolin + 1, max(ncolin, 1), dtype=np.int64)[:nout + 1]
               if ncolin else np.zeros(nout + 1, dtype=np.int64),
               np.tile(in_slots, nout), pos.ravel())
        return rev, nothing
    tan = (in_slots, np.arange(0, nout * ncolin + 1, max(nout, 1), dtype=np.int64)[:ncolin + 1]
           if nout else np.zeros(ncolin + 1, dtype=np.int64),
           np.tile(outs, ncolin), pos.T.ravel())
    return nothing, tan


# ---------------------------------------------------------------------- small helpers
def _in_place(moved, batched, layout, N, nin):
    """The one mapped argument as the (N, nin) input matrix without a copy, or None: when
    it is a C-contiguous float64 array holding every tape input of every point."""
    if any(b and kind == 0 for b, (kind, off, size) in zip(batched, layout)):
        return None                         # a mapped static argument: the Python loop
    active = [(a, b, off, size) for a, b, (kind, off, size) in zip(moved, batched, layout)
              if kind != 0]
    if len(active) != 1:
        return None
    a, b, off, size = active[0]
    if not (b and off == 0 and size == nin and type(a) is np.ndarray
            and a.dtype == np.float64 and a.flags.c_contiguous and a.size == N * nin):
        return None
    return a.reshape(N, nin)


def _tree_map(f, tree, *rest):
    leaves, tdef = tree_flatten(tree)
    others = [tree_flatten(r)[0] for r in rest]
    return tree_unflatten(tdef, [f(*xs) for xs in zip(leaves, *others)])


def _take(a, i):
    return _tree_map(lambda leaf: leaf[i], a)


def _zero_like(a):
    if isinstance(a, (float, int, np.floating, np.integer)) and not isinstance(a, (bool, np.bool_)):
        return 0.0
    if isinstance(a, np.ndarray) and a.dtype.kind in "fiu":
        return np.zeros(a.shape)
    return a


def _unbatched(leaf):
    """An output leaf with out_axes=None: its one value, the same at every point."""
    if is_traced(leaf):
        raise NotImplementedError("fastad.vmap: out_axes=None inside a function being "
                                  "differentiated is not supported; give out_axes an int")
    leaf = np.asarray(leaf)
    if leaf.shape[0] == 0:
        raise ValueError("fastad.vmap: out_axes=None needs at least one point to take the "
                         "output from; the batch is empty")
    first = leaf[0]
    if not all(np.array_equal(row, first, equal_nan=True) for row in leaf[1:]):
        raise ValueError("fastad.vmap: out_axes=None, but the output differs from point to "
                         "point (it depends on a mapped argument); give out_axes an int")
    return first[()] if first.ndim == 0 else first


def _stack(leaves):
    if any(is_traced(leaf) for leaf in leaves):
        from fastad import arrays       # traced leaves: stacked on the enclosing tape
        return np.stack([arrays.asarray(leaf) if not hasattr(leaf, "shape") else leaf
                         for leaf in leaves]) \
            if hasattr(arrays, "asarray") else np.stack(leaves)
    return np.stack([np.asarray(leaf, dtype=np.float64) for leaf in leaves])


def _move_out(leaf, ax):
    if ax is None:
        return _unbatched(leaf)
    nd = np.ndim(leaf)
    if not -nd <= ax < nd:
        raise ValueError(f"fastad.vmap: out_axes={ax} is out of range for an output with "
                         f"{nd - 1} dimensions besides the batch")
    return leaf if ax % nd == 0 else np.moveaxis(leaf, 0, ax)
