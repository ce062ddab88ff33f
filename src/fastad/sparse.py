"""Sparse Jacobians and Hessians: patterns from the tape, colourings, compressed sweeps.

    P = fd.jacobian_sparsity(c)(x)          # scipy.sparse boolean pattern, from the tape
    J = fd.jacobian(c, sparse=True)(x)      # scipy.sparse.csr_array: a few sweeps, not n
    H = fd.hessian(f, sparse=True)(x)       # symmetric, star-coloured forward-over-reverse

How (docs/sparse.md): the function is traced once per argument signature; the pattern is
computed from the tape's records (fastad._sparsity: index sets for the Jacobian,
nonlinear interactions for the Hessian), coloured, and cached with the tape.  Each call
then evaluates the compressed matrix -- by generated C carrying all colours at once for an
elementwise tape (fastad._codegen_lanes, "compiled colour lanes"), else by replaying the
tape with one tangent sweep (or reverse sweep) per colour in C -- and recovers the values
into CSR.  A changed branch outcome retraces, and the new tape gets
its own pattern.

Layout.  Rows are the function's outputs flattened (pytree leaves in order, each in C
order); columns are the differentiated arguments (`argnums` in the order given) flattened
the same way, dict keys in sorted order (fastad.pytree).  Other float and float-array
arguments are data (new values are honoured at replay); anything else is static (part of
the cache key).
"""
import ast
import functools
import time

import numpy as np

from fastad import _sparsity
from fastad._replay import push_trace, pop_trace
from fastad import _record
from fastad._tape import Tape
from fastad.ops import KIND, NAME, PARTIALS, Kind
from fastad._tracer import is_traced, make_inputs, output_slot
from fastad.pytree import tree_flatten, tree_unflatten

__all__ = ["jacobian_sparsity", "hessian_sparsity", "sparse_jacobian", "sparse_hessian",
           "SparseJacobian", "SparseHessian", "wait"]

#: patterns denser than this fraction are computed with dense sweeps (noted in info())
DENSE_FRACTION = 0.25
#: most index entries a pattern computation may hold (4 bytes each): 2 GB by default
MAX_ENTRIES = 1 << 29
#: Hessians by forward over reverse on f's own tape: False (the default: tangent sweeps
#: over the recorded gradient, measured faster on a quiet core for array and loop programs
#: alike, docs/sparse.md), True (forward over reverse on tapes with at least as many
#: ranged elements as scalar records) or "always"; all agree to rounding
FOR_HESSIAN = False
#: compiled colour lanes (fastad._codegen_lanes, docs/sparse.md): one generated C loop over
#: the elements of an elementwise tape with all colours in registers.  "auto" (default):
#: loaded at the first call when the disk cache holds the code, else compiled in the
#: background from a tape's LANES_HOT-th call on (calls interpret meanwhile); "always":
#: compiled at the first call (blocking); False: never.  Values agree with the
#: interpreted sweeps to rounding
COMPILED_LANES = "auto"
LANES_HOT = 3
#: most work a greedy colouring may take (sum of squared row lengths) before the dense path
MAX_COLOUR_WORK = 1 << 28
_MAX_TAPES = 8


# ------------------------------------------------------------ op classes, from the op table

_PIECEWISE_CONSTANT = {"D_EQ", "D_NE", "D_SIGNPOS", "D_GTSHARE", "D_FMAXDA"}


def _zero(node):
    """Is a partial, written in the op table's D_* language, identically zero?"""
    if isinstance(node, ast.Name):
        return node.id == "D_0"
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "D_K":
        arg = node.args[0]
        return isinstance(arg, ast.Constant) and arg.value == 0
    return False


def _deps(node, unary):
    """The operands ('a', 'b') a partial depends on with a nonzero derivative of its own:
    a second partial is nonzero exactly there.  Unknown forms count as depending on all."""
    every = {"a"} if unary else {"a", "b"}
    if isinstance(node, ast.Name):
        if node.id in ("a", "b"):
            return {node.id}
        if node.id == "r":
            return set(every)
        return set()                      # D_0, D_1, named constants
    if isinstance(node, (ast.Constant, ast.UnaryOp)):
        return set()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name == "D_K" or name in _PIECEWISE_CONSTANT:
            return set()
        if name == "D_SELNOT":            # a 0/1 condition picks the value: its slope is 0
            return _deps(node.args[1], unary)
        out = set()
        for arg in node.args:
            out |= _deps(arg, unary)
        return out
    return set(every)


@functools.lru_cache(maxsize=None)
def op_classes():
    """(kind, jm, hm, names), arrays indexed by op code, derived from the op table:
    kind 1 unary, 2 binary, 3 guard, 4 structural; jm bit 0/1: the partial with respect
    to operand a/b is not identically zero; hm bits 0/1/2: the second partial d2/da2,
    d2/dadb, d2/db2 is not identically zero."""
    n = len(NAME)
    kind = np.zeros(n, dtype=np.uint8)
    jm = np.zeros(n, dtype=np.uint8)
    hm = np.zeros(n, dtype=np.uint8)
    for op, name in NAME.items():
        kind[op] = KIND[op]
        if name not in PARTIALS:
            continue
        unary = KIND[op] == Kind.UNARY
        da, db = (ast.parse(p, mode="eval").body if p else None for p in PARTIALS[name])
        if not _zero(da):
            jm[op] |= 1
            d = _deps(da, unary)
            hm[op] |= (1 if "a" in d else 0) | (2 if "b" in d else 0)
        if db is not None and not _zero(db):
            jm[op] |= 2
            d = _deps(db, unary)
            hm[op] |= (2 if "a" in d else 0) | (4 if "b" in d else 0)
    return kind, jm, hm, [NAME[op] for op in sorted(NAME)]


# -------------------------------------------------------------------- tracing and caching

class _Entry:
    """One tape and what is cached with it: its column map, outputs, pattern, colouring."""

    def __init__(self, tape, col, ncols, outs, out_shape, hi=None, fslot=None):
        self.tape, self.col, self.ncols, self.outs = tape, col, ncols, outs
        self.out_shape = out_shape
        self.hi, self.fslot = hi, fslot     # Hessian tapes: f's records and output slot
        self.pattern = None                 # (indptr, indices)
        self.plan = None                    # colouring and direction
        self.stats = {}


def _is_float_leaf(x):
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (float, np.floating)):
        return True
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


class _Program:
    """A function traced for sparse derivatives: argument flattening, one tape per
    branch outcome per signature (8 at most, most recently used first)."""

    def __init__(self, fun, argnums, who, hessian=False, replay=True, max_entries=None):
        if not callable(fun):
            raise TypeError(f"fastad.{who}: expected a function to differentiate, got "
                            f"{type(fun).__name__} {fun!r}")
        if isinstance(argnums, int) and not isinstance(argnums, bool):
            argnums = (argnums,)
        elif not (isinstance(argnums, (tuple, list)) and argnums and all(
                isinstance(a, int) and not isinstance(a, bool) for a in argnums)):
            raise TypeError(f"fastad.{who}: argnums must be an int or a non-empty tuple of "
                            f"ints, got {argnums!r}")
        self.fun, self.argnums, self.who = fun, tuple(argnums), who
        self.hessian, self.replay = hessian, replay
        self.max_entries = MAX_ENTRIES if max_entries is None else int(max_entries)
        self.cache = {}
        self.traces = self.replays = self.retraces = 0

    def flatten(self, args):
        """(key, flat inputs, per-argument leaves and their roles)."""
        nums = [a % len(args) if -len(args) <= a < len(args) else None for a in self.argnums]
        if None in nums:
            raise TypeError(f"fastad.{self.who}: argnums={self.argnums!r} needs more "
                            f"positional arguments than the {len(args)} passed")
        key, parts, plan = [], [], []
        for i, a in enumerate(args):
            leaves, treedef = tree_flatten(a)
            roles = []
            for j, leaf in enumerate(leaves):
                if is_traced(leaf):
                    raise NotImplementedError(
                        f"fastad.{self.who} was called inside a function being "
                        "differentiated; sparse derivatives are not recorded into an "
                        "enclosing tape. Use the dense one there (sparse=False)")
                if i in nums:
                    arr = np.asarray(leaf)
                    if isinstance(leaf, (bool, np.bool_)) or arr.dtype.kind not in "fiu":
                        raise TypeError(f"fastad.{self.who}: argument {i} is differentiated "
                                        f"but leaf {j} is a {type(leaf).__name__}; pass floats "
                                        "or float arrays")
                    roles.append(("x", arr.shape if isinstance(leaf, np.ndarray) else None))
                    parts.append(np.asarray(arr, dtype=np.float64).ravel())
                elif _is_float_leaf(leaf):
                    roles.append(("d", leaf.shape if isinstance(leaf, np.ndarray) else None))
                    parts.append(np.asarray(leaf, dtype=np.float64).ravel())
                else:
                    roles.append(("s", leaf))
            plan.append((treedef, roles))
            key.append((treedef, tuple(r if r[0] != "s" else ("s", _hashable(r[1]))
                                       for r in roles)))
        # one part (the usual single vector): no copy (0.02 ms at n = 10^5); x is only
        # read, by the sweeps and kernels of this call
        x = np.ascontiguousarray(parts[0] if len(parts) == 1 else np.concatenate(parts)) \
            if parts else np.zeros(0)
        key = tuple(key)
        try:
            hash(key)
        except TypeError:
            key = None
        return key, x, plan, nums

    def run(self, args, attempt):
        """attempt(entry, x) on a tape whose guards hold at args, tracing one if none does;
        attempt replays the tape and returns None when a guard fails."""
        key, x, plan, nums = self.flatten(args)
        entries = self.cache.get(key) if (key is not None and self.replay) else None
        if entries:
            for k, e in enumerate(list(entries)):
                res = attempt(e, x)
                if res is not None:
                    if k and e in entries:
                        entries.remove(e)
                        entries.insert(0, e)
                    self.replays += 1
                    return e, res
            self.retraces += 1
        e = self.trace(args, x, plan, nums)
        if key is not None and self.replay:
            lst = self.cache.setdefault(key, [])
            lst.insert(0, e)
            del lst[_MAX_TAPES:]
        res = attempt(e, x)
        if res is None:     # pragma: no cover - a tape traced at x replays at x
            raise RuntimeError("fastad internal error: a fresh tape failed its own guards")
        return e, res

    def entry_for(self, args):
        """An entry whose guards hold at args (for the patterns alone)."""
        def forward_only(e, x):
            return _sparsity.compressed(e.tape, x, e.col, np.zeros(e.ncols, dtype=np.int32),
                                        0, e.outs, False)
        return self.run(args, forward_only)[0]

    def trace(self, args, x, plan, nums):
        self.traces += 1
        tape = Tape()
        layout, sizes, owner = [], [], []
        for i, (_treedef, roles) in enumerate(plan):
            for role, shape in roles:
                if role == "s":
                    continue
                layout.append(shape)
                sizes.append(1 if shape is None else int(np.prod(shape, dtype=np.int64)))
                owner.append(i if role == "x" else None)
        # columns in argnums order: argument nums[0]'s leaves first, then nums[1]'s, ...
        offset, ncols = {}, 0
        for a in dict.fromkeys(nums):
            offset[a] = ncols
            ncols += sum(s for s, o in zip(sizes, owner) if o == a)
        colarr = np.empty(len(x), dtype=np.int64)
        pos = 0
        for size, o in zip(sizes, owner):
            if o is None:
                colarr[pos:pos + size] = -1
            else:
                colarr[pos:pos + size] = np.arange(offset[o], offset[o] + size)
                offset[o] += size
            pos += size
        # make_inputs takes a writable buffer; x may be the caller's read-only array
        traced = iter(make_inputs(tape, x if x.flags.writeable else x.copy(), layout))
        targs = []
        for treedef, roles in plan:
            leaves = [r[1] if r[0] == "s" else next(traced) for r in roles]
            targs.append(tree_unflatten(treedef, leaves))
        push_trace(tape)
        try:
            out = self.fun(*targs)
            hi = fslot = None
            if self.hessian:
                fslot = output_slot(tape, out)
                if fslot < 0:
                    raise TypeError(f"fastad.{self.who}: the function must return a real "
                                    f"scalar, got {type(out).__name__} "
                                    f"{getattr(out, 'shape', '')}")
                hi = len(tape)
                adj = tape.emit_reverse(0, hi, fslot)
                outs = np.empty(ncols, dtype=np.int64)
                zero = None
                for s in range(len(colarr)):
                    if colarr[s] >= 0:
                        g = int(adj[s])
                        if g < 0:
                            zero = tape.const(0.0) if zero is None else zero
                            g = zero
                        outs[colarr[s]] = g
                out_shape = (ncols,)
            else:
                leaves, _ = tree_flatten(out)
                slots = [_record.output_slots(tape, leaf)[0] for leaf in leaves]
                outs = np.concatenate(slots).astype(np.int64) if slots else \
                    np.zeros(0, dtype=np.int64)
                out_shape = (len(outs),)
                if len(outs) == 0:
                    raise ValueError(f"fastad.{self.who}: the function's output is empty")
        except BaseException:
            tape._abort()
            raise
        finally:
            pop_trace()
        tape._finish(int(outs[0]) if len(outs) else int(fslot))
        e = _Entry(tape, np.ascontiguousarray(colarr), ncols, np.ascontiguousarray(outs),
                   out_shape, hi, fslot)
        return e


def _hashable(v):
    try:
        hash(v)
        return v
    except TypeError:
        return _Unhashable()


class _Unhashable:
    """A static argument that cannot be hashed: the call is never cached."""
    __hash__ = None


# ----------------------------------------------------------------------- patterns (API)

def _jac_pattern(prog, e):
    if e.pattern is None:
        kind, jm, hm, names = op_classes()
        t0 = time.perf_counter()
        e.pattern = _sparsity.jacobian_pattern(e.tape, e.col, e.ncols, e.outs, kind, jm,
                                               names, prog.max_entries)
        e.stats["pattern_seconds"] = time.perf_counter() - t0
    return e.pattern


def _hess_pattern(prog, e):
    if e.pattern is None:
        kind, jm, hm, names = op_classes()
        t0 = time.perf_counter()
        e.pattern = _sparsity.hessian_pattern(e.tape, e.hi, e.fslot, e.col, e.ncols, kind,
                                              jm, hm, names, prog.max_entries)
        e.stats["pattern_seconds"] = time.perf_counter() - t0
    return e.pattern


def _csr(pattern, shape, data=None, cache=None):
    """A csr_array of `pattern` (indptr, indices) with its own copies of the index
    arrays, so that a user editing the matrix in place (eliminate_zeros,
    indices[...] = ...) never reaches the cached pattern or another call's matrix.
    `cache` (a dict kept with the pattern) holds the index arrays in
    scipy's index dtype once: scipy's constructor then checks only their lengths and
    dtypes instead of converting int64 ones on every call (0.05 ms at 3 x 10^5 nonzeros,
    docs/sparse.md)."""
    import scipy.sparse as sp
    if cache is None or "csr_index" not in cache:
        indptr, indices = pattern
        if len(indices) < 2 ** 31 - 1 and max(shape) < 2 ** 31 - 1:
            index = (np.asarray(indptr, dtype=np.int32), np.asarray(indices, dtype=np.int32))
        else:
            index = (np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64))
        if cache is None:
            indptr, indices = index
            indptr, indices = (indptr.copy() if indptr is pattern[0] else indptr,
                               indices.copy() if indices is pattern[1] else indices)
            if data is None:
                data = np.ones(len(indices), dtype=bool)
            return sp.csr_array((data, indices, indptr), shape=shape)
        cache["csr_index"] = index
    indptr, indices = cache["csr_index"]
    if data is None:
        data = np.ones(len(indices), dtype=bool)
    return sp.csr_array((data, indices.copy(), indptr.copy()), shape=shape)


def jacobian_sparsity(fun, argnums=0, *, max_entries=None):
    """The Jacobian's sparsity pattern, read from the tape: ``jacobian_sparsity(f)(x)`` is a
    boolean `scipy.sparse.csr_array` of shape (outputs, inputs), flattened as
    docs/sparse.md says.  Exact for the branch outcomes taken at x (conservative through
    `max`/`min` reductions, selects and custom_vjp callbacks: never a missing nonzero).
    Raises MemoryError when the pattern would exceed `max_entries` index entries."""
    prog = _Program(fun, argnums, "jacobian_sparsity", max_entries=max_entries)

    @functools.wraps(fun)
    def pattern(*args):
        e = prog.entry_for(args)
        return _csr(_jac_pattern(prog, e), (len(e.outs), e.ncols))
    return pattern


def hessian_sparsity(fun, argnums=0, *, max_entries=None):
    """The Hessian's sparsity pattern of a scalar function, by nonlinear-interaction
    propagation over the tape (docs/sparse.md): a symmetric boolean `csr_array`."""
    prog = _Program(fun, argnums, "hessian_sparsity", hessian=True, max_entries=max_entries)

    @functools.wraps(fun)
    def pattern(*args):
        e = prog.entry_for(args)
        return _csr(_hess_pattern(prog, e), (e.ncols, e.ncols))
    return pattern


# ------------------------------------------------------------------- sparse derivatives

def _dense_plan(n, note):
    return {"colours": np.arange(n, dtype=np.int32), "ncolours": n, "dense": True,
            "note": note}


def _plan_jacobian(pattern, m, n, mode):
    """Colour the rows or the columns (whichever needs fewer sweeps, unless `mode` says),
    or fall back to dense sweeps for a dense pattern."""
    indptr, indices = pattern
    nnz = len(indices)
    t0 = time.perf_counter()
    if m * n and nnz > DENSE_FRACTION * m * n:
        rev = mode == "rev" or (mode == "auto" and m < n)
        plan = _dense_plan(m if rev else n, f"dense: the pattern fills {nnz / (m * n):.0%} "
                           f"of the matrix (> {DENSE_FRACTION:.0%}), so "
                           f"{m if rev else n} plain sweeps are used instead of colouring")
        plan["reverse"] = rev
        return plan
    colptr, rowind = _sparsity.transpose(indptr, indices, n)
    options = []
    if mode in ("auto", "fwd") and _sparsity.colour_cost(indptr) <= MAX_COLOUR_WORK:
        c, k = _sparsity.colour_columns(indptr, indices, colptr, rowind, n)
        options.append((k, 0, False, c))
    # rows need at least as many colours as the longest column has entries: skip colouring
    # them when the columns already did that well
    rows_bound = int(np.diff(colptr).max()) if n else 0
    if options and mode == "auto" and options[0][0] <= rows_bound:
        pass
    elif mode in ("auto", "rev") and _sparsity.colour_cost(colptr) <= MAX_COLOUR_WORK:
        c, k = _sparsity.colour_columns(colptr, rowind, indptr, indices, m)
        options.append((k, 1, True, c))
    if not options:
        rev = mode == "rev" or (mode == "auto" and m < n)
        plan = _dense_plan(m if rev else n, "dense: colouring this pattern would cost more "
                           f"than {MAX_COLOUR_WORK} steps (a dense row or column)")
        plan["reverse"] = rev
        return plan
    k, _, rev, c = min(options, key=lambda o: (o[0], o[1]))
    return {"colours": c, "ncolours": k, "dense": False, "reverse": rev, "note": "",
            "colouring_seconds": time.perf_counter() - t0}


class SparseJacobian:
    """``J = SparseJacobian(f)(x)``: the Jacobian as a `scipy.sparse.csr_array`, by one
    tangent sweep per column colour (forward; all colours at once in generated C for an
    elementwise tape, docs/sparse.md) or one reverse sweep per row colour, whichever is
    fewer (``mode='fwd'`` / ``'rev'`` forces one).  `fastad.jacobian`,
    `jacfwd` and `jacrev` with ``sparse=True`` return one of these.  ``value_and_jac``
    gives the flat output too; ``info()`` the pattern and colouring statistics."""

    def __init__(self, fun, argnums=0, *, mode="auto", replay=True, max_entries=None):
        if mode not in ("auto", "fwd", "rev"):
            raise ValueError(f"fastad: mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
        self.mode = mode
        self.prog = _Program(fun, argnums, "jacobian(sparse=True)", replay=replay,
                             max_entries=max_entries)
        self._last = None
        functools.update_wrapper(self, fun)

    def _prepare(self, e):
        if e.plan is None:
            pattern = _jac_pattern(self.prog, e)
            e.plan = _plan_jacobian(pattern, len(e.outs), e.ncols, self.mode)
            if e.plan["reverse"]:       # reverse sweeps skip adjoints no column reads
                e.tape.mark_passive(e.col >= 0)
        return e.plan

    def values(self, *args):
        """(flat output values, the Jacobian's nonzeros in CSR order, its pattern
        (indptr, indices)) at args: the parts of `value_and_jac` without building a
        matrix (fastad.ipopt hands IPOPT the nonzeros).  The pattern is the same object
        for every call on one tape."""
        def attempt(e, x):
            plan = self._prepare(e)
            return _sweeps(e, plan, x)
        e, res = self.prog.run(args, attempt)
        vals, B, done = res
        data = B if done else _recover(e, B, "rows" if e.plan["reverse"] else "columns")
        self._last = e
        return vals, data, e.pattern

    def value_and_jac(self, *args):
        """(flat output values, Jacobian csr_array) at args."""
        vals, data, pattern = self.values(*args)
        e = self._last
        return vals, _csr(pattern, (len(e.outs), e.ncols), data, e.plan)

    def __call__(self, *args):
        return self.value_and_jac(*args)[1]

    def value(self, *args):
        """The flat output values at args (a replay of the tape, no derivative sweep)."""
        def forward_only(e, x):
            return _sparsity.compressed(e.tape, x, e.col, np.zeros(e.ncols, dtype=np.int32),
                                        0, e.outs, False)
        return self.prog.run(args, forward_only)[1][0]

    def info(self):
        """Pattern and colouring statistics of the most recently used tape."""
        return _info(self.prog, self._last, "jacobian")


class SparseHessian:
    """``H = SparseHessian(f)(x)``: the Hessian of a scalar function as a symmetric
    `scipy.sparse.csr_array`.  The pattern comes from nonlinear-interaction propagation,
    the colouring is a star colouring, and the values come from forward over reverse on
    f's tape with all colours at once (compiled colour lanes) where the tape allows, else
    from one tangent sweep per colour over the recorded gradient (docs/sparse.md).
    `fastad.hessian(f, sparse=True)` returns one of these."""

    def __init__(self, fun, argnums=0, *, replay=True, max_entries=None):
        self.prog = _Program(fun, argnums, "hessian(sparse=True)", hessian=True,
                             replay=replay, max_entries=max_entries)
        self._last = None
        functools.update_wrapper(self, fun)

    def _prepare(self, e):
        if e.plan is None:
            indptr, indices = _hess_pattern(self.prog, e)
            n = e.ncols
            t0 = time.perf_counter()
            if n and len(indices) > DENSE_FRACTION * n * n:
                e.plan = _dense_plan(n, f"dense: the pattern fills {len(indices) / n / n:.0%} "
                                     f"of the matrix (> {DENSE_FRACTION:.0%}), so {n} "
                                     "Hessian-vector products are used instead of colouring")
            else:
                c, k = _sparsity.star_colouring(indptr, indices, n)
                e.plan = {"colours": c, "ncolours": k, "dense": False, "note": "",
                          "colouring_seconds": time.perf_counter() - t0}
            e.plan["reverse"] = False
        return e.plan

    def values(self, *args):
        """(gradient, the Hessian's nonzeros in CSR order, its symmetric pattern
        (indptr, indices)) at args, without building a matrix (see
        `SparseJacobian.values`)."""
        return self._values(args, True)

    def _values(self, args, grad):
        """values(*args); grad=False: the gradient may be None (the compiled colour lanes
        then skip it, docs/sparse.md)."""
        def attempt(e, x):
            plan = self._prepare(e)
            return _sweeps(e, plan, x, grad)
        e, res = self.prog.run(args, attempt)
        grad, B, done = res
        data = B if done else _recover(e, B, "columns" if e.plan["dense"] else "star")
        self._last = e
        return grad, data, e.pattern

    def value_and_hess(self, *args):
        """(gradient, Hessian csr_array) at args."""
        grad, data, pattern = self.values(*args)
        e = self._last
        return grad, _csr(pattern, (e.ncols, e.ncols), data, e.plan)

    def __call__(self, *args):
        _, data, pattern = self._values(args, False)
        e = self._last
        return _csr(pattern, (e.ncols, e.ncols), data, e.plan)

    def info(self):
        """Pattern and colouring statistics of the most recently used tape."""
        return _info(self.prog, self._last, "hessian")


def _recover(e, B, how):
    """The nonzeros in CSR order from the compressed matrix B: one gather through the
    recovery map, computed once per tape and colouring (`_sparsity.recovery_sources`)."""
    plan = e.plan
    if "sources" not in plan:
        indptr, indices = e.pattern
        plan["sources"] = _sparsity.recovery_sources(indptr, indices, plan["colours"],
                                                     plan["ncolours"], how)
    return _sparsity.recover(B, plan["sources"])


def _lane_major_sources(e, plan, rows, how):
    """The recovery map into the compiled lanes' lane-major B (K x rows): flat index
    r * K + k of the interpreted layout becomes k * rows + r."""
    if "sources_t" not in plan:
        if "sources" not in plan:
            indptr, indices = e.pattern
            plan["sources"] = _sparsity.recovery_sources(indptr, indices, plan["colours"],
                                                         plan["ncolours"], how)
        K, src = plan["ncolours"], plan["sources"]
        plan["sources_t"] = np.ascontiguousarray((src % K) * rows + src // K)
    return plan["sources_t"]


def _use_lanes(e, plan):
    """Carry the colours as tangent lanes in one pass?  Where it pays (measured,
    docs/sparse.md): two colours or more, on a tape made mostly of scalar records."""
    if plan["reverse"] or plan["ncolours"] < 2 or not _sparsity.lanes_ok(e.tape):
        return False
    scalar, ranged = _sparsity.lane_work(e.tape)
    return scalar >= ranged


def _hessian_route(e, plan):
    """Forward over reverse on f's own records (`_sparsity.hessian_lanes`) when every one
    of them has a second-order lane rule (csrc/hvp_lanes.h); else the tangent sweeps over
    the recorded gradient, with the reason in info()."""
    if "hv" not in plan:
        slots, op = _sparsity.hv_check(e.tape, e.hi)
        plan["hv_slots"] = slots
        plan["hv_lanes"] = (_sparsity.Lanes(), _sparsity.Lanes()) if slots >= 0 else None
        plan["hv_note"] = "" if slots >= 0 else (
            "tangent sweeps over the recorded gradient: "
            + (f"a {NAME.get(op, op)!s} record has no second-order lane rule" if op >= 0
               else "the tape's records do not end where f's do"))
        scalar, ranged = _sparsity.lane_work(e.tape)
        plan["hv_pays"] = ranged >= scalar
        plan["hv"] = slots
    slots = plan["hv_slots"]
    route = FOR_HESSIAN == "always" or (FOR_HESSIAN and plan["hv_pays"])
    plan["hv"] = slots if (route and slots >= 0) else -1
    if slots >= 0 and not route:
        plan["hv_note"] = ("tangent sweeps over the recorded gradient: " +
                           ("measured faster on tapes of scalar records" if FOR_HESSIAN
                            else "fastad.sparse.FOR_HESSIAN is False"))
    elif slots >= 0:
        plan["hv_note"] = ""
    return plan["hv"]


_lanes_warned = set()


def _lanes_note(plan, note):
    plan["cl"], plan["cl_note"] = None, note
    return None


def _compiled_lanes(e, plan):
    """The compiled colour-lane kernel of this tape and colouring once it is built, else
    None (with the reason in plan["cl_note"] when it never will be)."""
    if not COMPILED_LANES:
        return None
    if "cl" not in plan and (plan["dense"] or plan["reverse"]):
        return _lanes_note(plan, "a dense pattern: one sweep per column" if plan["dense"]
                           else "rows coloured: reverse sweeps")
    if "cl" not in plan:
        from fastad import _codegen_lanes, native
        if native.disabled():
            return _lanes_note(plan, "native code is off: FASTAD_NATIVE=0")
        try:
            if e.hi is not None:
                prog = _codegen_lanes.analyse(e.tape, hi=e.hi, fslot=e.fslot)
            else:
                prog = _codegen_lanes.analyse(e.tape, outs=e.outs)
            plan["cl"] = _codegen_lanes.Kernel(prog, "jac" if e.hi is None else "hess",
                                               plan["ncolours"], plan["colours"], e.col,
                                               e.ncols)
            plan["cl_note"] = ""
        except _codegen_lanes.Unsupported as err:
            return _lanes_note(plan, str(err))
    k = plan["cl"]
    if k is None or k.fn is not None:
        return k
    k.uses += 1
    if COMPILED_LANES == "always" and k.error is None:
        k.build()                         # blocking; a failure lands in k.error
    elif k.uses >= LANES_HOT:
        k.start()                         # compiles in the background, once
    if k.error is not None:
        reason = k.error
        if reason not in _lanes_warned:
            _lanes_warned.add(reason)
            import warnings
            warnings.warn(f"fastad: {reason}; sparse derivatives run their interpreted "
                          "sweeps (same values to rounding). Set "
                          "fastad.sparse.COMPILED_LANES = False to silence this.",
                          RuntimeWarning, stacklevel=5)
        return _lanes_note(plan, f"compiling failed: {reason}")
    return k if k.fn is not None else None


def _sweeps(e, plan, x, grad=True):
    """One call's compressed sweeps: (first output, B, False), or with the compiled colour
    lanes where the tape allows them (`_compiled_lanes`) (first output, the nonzeros,
    True); None when a guard fails.  grad=False (a Hessian's caller that does not use
    the gradient): the compiled lanes return None for it."""
    k = _compiled_lanes(e, plan)
    plan["ran_compiled"] = k is not None       # for info() only
    if k is not None:       # (first output, the nonzeros already recovered, True)
        rows = len(e.outs) if e.hi is None else e.ncols
        first, data = k(x, _lane_major_sources(e, plan, rows, "star" if e.hi is not None
                                               else "columns"), grad)
        return first, data, True
    res = _interpreted(e, plan, x)
    return None if res is None else (res[0], res[1], False)


def _interpreted(e, plan, x):
    """The compressed sweeps of one call: for a Hessian, forward over reverse on f's own
    tape where its records allow (`_hessian_route`); else all column colours carried
    together as tangent lanes in one pass over the tape where that pays
    (`_sparsity.compressed_lanes`, bit for bit the same values), else one sweep per
    colour."""
    if e.hi is not None and _hessian_route(e, plan) >= 0:
        tl, gl = plan["hv_lanes"]
        return _sparsity.hessian_lanes(e.tape, x, e.col, plan["colours"], plan["ncolours"],
                                       e.hi, e.fslot, plan["hv"], tl, gl)
    if not plan["reverse"]:
        if "lanes" not in plan:
            plan["lanes"] = _sparsity.Lanes() if _use_lanes(e, plan) else None
        if plan["lanes"] is not None:
            return _sparsity.compressed_lanes(e.tape, x, e.col, plan["colours"],
                                              plan["ncolours"], e.outs, plan["lanes"])
    return _sparsity.compressed(e.tape, x, e.col, plan["colours"], plan["ncolours"], e.outs,
                                plan["reverse"])


def _info(prog, e, what):
    out = {"traces": prog.traces, "replays": prog.replays, "retraces": prog.retraces,
           "tapes": sum(len(v) for v in prog.cache.values())}
    if e is None:
        return out
    indptr, indices = e.pattern
    m = len(e.outs)
    n = e.ncols
    plan = e.plan
    rows = np.diff(indptr)
    out.update({
        "shape": (m, n), "nnz": int(len(indices)),
        "density": len(indices) / (m * n) if m * n else 0.0,
        "max_row_nnz": int(rows.max()) if len(rows) else 0,
        "colours": int(plan["ncolours"]),
        "colouring": ("dense" if plan["dense"] else
                      "star" if what == "hessian" else "distance-2"),
        "direction": (("forward over reverse on f's tape (compiled colour lanes)"
                       if plan.get("ran_compiled") else
                       "forward over reverse on f's tape (second-order adjoint lanes)"
                       if plan.get("hv", -1) >= 0 else
                       "forward over reverse (tangent sweeps over the recorded gradient)")
                      if what == "hessian"
                      else "reverse (rows)" if plan["reverse"] else
                      "forward (columns, compiled colour lanes)" if plan.get("ran_compiled")
                      else "forward (columns)"),
        "compiled": _compiled_state(plan),
        "sweeps_per_call": int(plan["ncolours"]),
        "dense_fallback": bool(plan["dense"]),
        "note": "; ".join(m for m in (plan["note"], "" if plan.get("ran_compiled") else
                                      plan.get("hv_note", "")) if m),
        "tape_records": len(e.tape),
        "pattern_seconds": e.stats.get("pattern_seconds"),
        "colouring_seconds": plan.get("colouring_seconds"),
    })
    return out


def _compiled_state(plan):
    """info()["compiled"]: the compiled colour lanes' state for this tape."""
    k = plan.get("cl")
    if not COMPILED_LANES:
        return "off (fastad.sparse.COMPILED_LANES is False)"
    if k is None:
        return f"no ({plan['cl_note']})" if "cl" in plan else "not tried"
    if k.fn is None:
        return ("compiling" if k.thread is not None else
                f"pending (compiled from call {LANES_HOT})")
    return ("from the cache" if k.seconds is None else f"compiled in {k.seconds:.2f} s")


def wait(S, timeout=60.0):
    """Have the compiled colour lanes of the tape `S` (a SparseJacobian or SparseHessian)
    used last ready now: compile them if they are pending, and wait for the compile
    (benchmarks and tests; calls never need it, they interpret until the code is there).
    Returns info()["compiled"]."""
    e = S._last
    if e is not None and e.plan is not None:
        k = e.plan.get("cl")
        if k is not None and k.fn is None and k.error is None:
            k.start()
            k.wait(timeout)
    return S.info().get("compiled", "not tried")


def sparse_jacobian(fun, argnums=0, *, mode="auto", has_aux=False, replay=True,
                    max_entries=None):
    """A `SparseJacobian` of `fun` (see there); what ``jacobian(fun, sparse=True)`` gives."""
    if has_aux:
        raise ValueError("fastad: sparse=True does not support has_aux=True; return the "
                         "auxiliary data from a separate call")
    return SparseJacobian(fun, argnums, mode=mode, replay=replay, max_entries=max_entries)


def sparse_hessian(fun, argnums=0, *, has_aux=False, replay=True, max_entries=None):
    """A `SparseHessian` of `fun` (see there); what ``hessian(fun, sparse=True)`` gives."""
    if has_aux:
        raise ValueError("fastad: sparse=True does not support has_aux=True; return the "
                         "auxiliary data from a separate call")
    return SparseHessian(fun, argnums, replay=replay, max_entries=max_entries)
