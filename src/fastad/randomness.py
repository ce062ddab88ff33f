"""Random numbers drawn inside a differentiated function (docs/conventions.md, "Random
draws").

A replayed tape does not run the function's Python code, so without this module a function
that draws samples (`eps = rng.standard_normal(d)`) would reuse its first call's draws on
every replay.  The default, ``random="fresh"``, keeps plain Python semantics instead: every
call gets fresh draws from the same generator, which advances exactly as it would if the
function ran.

How (one `Policy` per `Compiled`, i.e. per function):

* **Detection** (every trace): the random sources reachable from the function are copied
  before the trace and their states compared after it.  Sources: numpy's global generator
  (`np.random.*`), Python's `random` module, and every `np.random.Generator`,
  `np.random.RandomState` and `random.Random` found in the arguments (and one level into
  tuples, lists and dicts), the function's closure, the globals its code names (also
  attributes of modules and objects it names), its defaults, a bound method's object, and
  recursively the functions found there (a few levels deep).
* **Fast path: draws as inputs.**  While tracing, calls of float-valued sampling methods
  are intercepted -- on `Generator`s found in arguments, closure cells, globals or module
  attributes (a recording `Generator` sharing the same bit generator is put in their place
  for the trace), and on the `np.random.*` and `random.*` module functions (swapped for
  recording ones during the trace, when the reachable code names one of them).  Each draw's
  value enters the tape as fresh constant slots followed by a `_copy` record, so everything
  computed from it is recorded.  After the trace the recorded calls are re-run on copies
  of the sources taken before it: if they reproduce every source's state change exactly,
  the tape keeps that plan, and each replay first makes the same calls with the same
  arguments on the same generators and writes the draws into those slots.  A guard that
  fails (a draw changed a branch) restores the generators before the retrace.
* **Fallback: retrace every call** when a trace consumed random numbers the plan does not
  explain (integer draws, `choice`, `shuffle`, a `RandomState` or `random.Random` object
  reached through a variable, a generator function imported by name, a source whose
  draws fail as traced values...).  Each call then runs the Python code: exact, slower.

One warning per function says which path was taken and what the alternatives are.
``random="freeze"`` turns all of this off on purpose: the first call's draws are constants
of the tape (common random numbers).  Not detected: random sources that are none of the
above (other libraries' generators, `os.urandom`, a generator created inside the function
without a seed, objects nested deeper than described).
"""
import random as _pyrandom
import threading
import types
import warnings
import weakref

import numpy as np

__all__ = ["Policy", "check_mode"]

MODES = ("fresh", "freeze")

# Sampling methods whose result is a float or float64 array: these can be re-drawn as tape
# inputs.  Everything else (integers, choice, permutation, shuffle, bytes) advances the
# state unexplained and leads to the retrace path.
_FLOAT_METHODS = (
    "random", "standard_normal", "normal", "uniform", "exponential", "standard_exponential",
    "gamma", "standard_gamma", "beta", "lognormal", "laplace", "logistic", "gumbel",
    "chisquare", "noncentral_chisquare", "f", "noncentral_f", "standard_cauchy",
    "standard_t", "weibull", "pareto", "power", "rayleigh", "triangular", "vonmises",
    "wald", "multivariate_normal", "dirichlet")
_NP_GLOBAL_FLOAT = _FLOAT_METHODS + ("rand", "randn", "random_sample", "ranf", "sample")
_PY_FLOAT = ("random", "uniform", "gauss", "normalvariate", "expovariate", "lognormvariate",
             "betavariate", "gammavariate", "triangular", "vonmisesvariate",
             "paretovariate", "weibullvariate")

_MODULE_NAMES = frozenset(_NP_GLOBAL_FLOAT + _PY_FLOAT)
_SEARCH_DEPTH = 4      # functions reached through functions, and so on


def check_mode(random):
    if random not in MODES:
        raise ValueError(f"fastad: random={random!r}; use random='fresh' (fresh draws on every "
                         "call, the default) or random='freeze' (reuse the first call's draws)")
    return random


# ---------------------------------------------------------------------------- states

def _np_global():
    return np.random.mtrand._rand


def _py_global():
    return _pyrandom._inst


def _is_source(x):
    return isinstance(x, (np.random.Generator, np.random.RandomState, _pyrandom.Random))


def _state(src):
    if isinstance(src, np.random.Generator):
        return src.bit_generator.state
    if isinstance(src, np.random.RandomState):
        return src.get_state(legacy=False)
    return src.getstate()


def _set_state(src, state):
    if isinstance(src, np.random.Generator):
        src.bit_generator.state = state
    elif isinstance(src, np.random.RandomState):
        src.set_state(state)
    else:
        src.setstate(state)


def _same(a, b):
    """Equal generator states (dicts, tuples of ints, arrays)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)       # Python's random: a tuple of ints, compared in C


def _scratch(src, state):
    """A new generator of src's kind in `state` (to rerun recorded calls on)."""
    if isinstance(src, np.random.Generator):
        c = np.random.Generator(type(src.bit_generator)())
    elif isinstance(src, np.random.RandomState):
        c = np.random.RandomState(type(src._bit_generator)())
    else:
        c = _pyrandom.Random()
    _set_state(c, state)
    return c


# ---------------------------------------------------------------------------- finding sources

class _Location:
    """Where a generator was found, so that it can be swapped for a recording one during a
    trace and looked up again at replay (None: an argument, or not swappable)."""
    __slots__ = ("get", "set")

    def __init__(self, get, set_):
        self.get, self.set = get, set_


def _cell_location(cell):
    def set_(v):
        cell.cell_contents = v
    return _Location(lambda: cell.cell_contents, set_)


def _item_location(d, key):
    def set_(v):
        d[key] = v
    return _Location(lambda: d.get(key), set_)


def _attr_location(obj, name):
    return _Location(lambda: getattr(obj, name, None), lambda v: setattr(obj, name, v))


def _code_names(code, out):
    out.update(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_names(c, out)
    return out


def find_sources(fun, args, kwargs, names=None):
    """[(source, location)] reachable from the call, the two module globals first.  The
    names the reachable code uses are added to the set `names`."""
    found = {id(_np_global()): (_np_global(), None), id(_py_global()): (_py_global(), None)}
    seen = set()
    if names is None:
        names = set()

    def value(v, loc, depth):
        if isinstance(v, weakref.ref):
            v = v()
        if _is_source(v):
            if id(v) not in found or found[id(v)][1] is None and loc is not None:
                found[id(v)] = (v, loc)
        elif callable(v) and not isinstance(v, type):
            function(v, depth + 1)

    def named(v, loc, own, depth):
        """A value a function names (global or closure variable); `own`: its code's names,
        the attributes it may read from v (mylib.rng, mylib.sample, self.rng...)."""
        if isinstance(v, types.ModuleType):
            if v is np or v is np.random or v is _pyrandom:
                return
            for attr in own:
                w = v.__dict__.get(attr)
                if w is not None and (_is_source(w) or isinstance(w, types.FunctionType)):
                    value(w, _attr_location(v, attr), depth)
            return
        value(v, loc, depth)
        obj_dict = getattr(v, "__dict__", None)
        if isinstance(obj_dict, dict) and not isinstance(v, (type, types.FunctionType)):
            for attr in own:
                if _is_source(obj_dict.get(attr)):
                    value(obj_dict[attr], _attr_location(v, attr), depth)
                method = getattr(type(v), attr, None)
                if isinstance(method, types.FunctionType):        # model.loss -> self.rng
                    function(types.MethodType(method, v), depth + 1)

    def function(f, depth):
        if depth > _SEARCH_DEPTH or id(f) in seen:
            return
        seen.add(id(f))
        inner = getattr(f, "fun", None)              # a fastad Compiled
        if inner is not None and callable(inner) and not isinstance(f, types.FunctionType):
            function(inner, depth)
        if isinstance(f, types.MethodType):
            holder = f.__self__
            for k, v in list(getattr(holder, "__dict__", {}).items()):
                value(v, _attr_location(holder, k), depth)
            function(f.__func__, depth)
            return
        if hasattr(f, "func") and hasattr(f, "keywords"):      # functools.partial
            for v in list(f.args) + list(f.keywords.values()):
                value(v, None, depth)
            function(f.func, depth)
            return
        if not isinstance(f, types.FunctionType):
            wrapped = getattr(f, "__wrapped__", None)
            if wrapped is not None:
                function(wrapped, depth)
            return
        own = _code_names(f.__code__, set())
        names.update(own)
        for cell in f.__closure__ or ():
            try:
                v = cell.cell_contents
            except ValueError:                       # an empty cell
                continue
            named(v, _cell_location(cell), own, depth)
        g = f.__globals__
        for name in own:
            if name in g:
                named(g[name], _item_location(g, name), own, depth)
        for v in (f.__defaults__ or ()) + tuple((f.__kwdefaults__ or {}).values()):
            value(v, None, depth)

    function(fun, 0)
    for a in args:
        for v in (a if isinstance(a, (tuple, list)) else
                  a.values() if isinstance(a, dict) else (a,)):
            if _is_source(v):
                found[id(v)] = (v, None)
    for v in kwargs.values():
        if _is_source(v):
            found[id(v)] = (v, None)
    return list(found.values())


# ---------------------------------------------------------------------------- recording

_local = threading.local()       # .rec: the Recorder of the trace running in this thread


def _recorder():
    return getattr(_local, "rec", None)


class _RecordingGenerator(np.random.Generator):
    """Stands in for a Generator during a trace: the same bit generator (so the same
    stream and state), with float draws recorded by the tracing thread's Recorder."""

    def __init__(self, original):
        super().__init__(original.bit_generator)
        self._fastad_original = original


def _recording_method(name):
    base = getattr(np.random.Generator, name)

    def method(self, *a, **k):
        rec = _recorder()
        if rec is None:               # another thread, or after the trace
            return base(self, *a, **k)
        return rec.draw(self._fastad_original, name, lambda: base(self, *a, **k), a, k)
    method.__name__ = name
    return method


for _name in _FLOAT_METHODS:
    setattr(_RecordingGenerator, _name, _recording_method(_name))


# The module functions np.random.normal & co. and random.gauss & co. are swapped for
# recording wrappers while at least one trace runs in some thread; `_patched` counts those
# traces (a module-level state guarded by `_patch_lock`, because the modules are shared by
# all threads; other threads' calls pass straight through the wrappers).
_patch_lock = threading.Lock()
_patched = 0
_originals = []       # (module, name, original function)


def _module_wrapper(owner_getter, name, original):
    def wrapper(*a, **k):
        rec = _recorder()
        if rec is None:
            return original(*a, **k)
        return rec.draw(owner_getter(), name, lambda: original(*a, **k), a, k)
    wrapper.__name__ = name
    wrapper.__doc__ = original.__doc__
    return wrapper


def _install():
    global _patched
    with _patch_lock:
        _patched += 1
        if _patched > 1:
            return
        for module, names, owner in ((np.random, _NP_GLOBAL_FLOAT, _np_global),
                                     (_pyrandom, _PY_FLOAT, _py_global)):
            for name in names:
                original = getattr(module, name, None)
                if original is None:
                    continue
                _originals.append((module, name, original))
                setattr(module, name, _module_wrapper(owner, name, original))


def _uninstall():
    global _patched
    with _patch_lock:
        _patched -= 1
        if _patched:
            return
        while _originals:
            module, name, original = _originals.pop()
            setattr(module, name, original)


def _as_float(value):
    """value as a float64 array if it can be a tape input, else None."""
    if isinstance(value, float):
        return np.array(value)
    if isinstance(value, np.ndarray) and value.dtype == np.float64 and value.size:
        return value
    return None


class _Draw:
    __slots__ = ("source", "method", "args", "kwargs", "first", "n", "value")

    def __init__(self, source, method, args, kwargs, first, n, value):
        self.source, self.method, self.args, self.kwargs = source, method, args, kwargs
        self.first, self.n, self.value = first, n, value


class Recorder:
    """The random draws of one trace."""

    def __init__(self, tape, sources, names=()):
        self.tape = tape
        self.sources = sources            # [(source, location)]
        # the np.random / random module functions are swapped for recording ones only if
        # the reachable code names one (a draw through a deeper path is still detected)
        self.patch = not _MODULE_NAMES.isdisjoint(names)
        self.before = [_state(s) for s, _ in sources]
        self.draws = []
        self.opaque = False               # a draw that cannot be a tape input
        self.traced = False               # a draw was handed out as a traced value

    def draw(self, source, method, call, a, k):
        from fastad._tracer import is_traced
        value = call()
        arr = _as_float(value)
        if arr is None or "out" in k or any(is_traced(x) for x in a + tuple(k.values())):
            self.opaque = True
            return value
        self.traced = True
        return self._traced(source, method, a, k, arr)

    def _traced(self, source, method, a, k, arr):
        from fastad._tracer import TracedArray, new_scalar
        from fastad.ops import Op
        copy_op = Op.COPY
        t = self.tape
        first = t.const_array(arr.reshape(-1))
        n = arr.size
        self.draws.append(_Draw(source, method, a, dict(k), first, n, arr.copy()))
        if arr.ndim == 0:
            return new_scalar(t, t.op1(copy_op, first))
        return TracedArray.from_range(t, t.op_ranged(copy_op, first, 1, first, 1, n), arr.shape)

    def changed(self):
        """The sources whose state the trace changed."""
        return [i for i, (s, _) in enumerate(self.sources)
                if not _same(_state(s), self.before[i])]

    def explained(self):
        """Do the recorded calls, made on copies of the sources as they were before the
        trace, reproduce every source's state and every draw?"""
        if self.opaque:
            return False
        copies = {id(s): _scratch(s, b) for (s, _), b in zip(self.sources, self.before)}
        for d in self.draws:
            c = copies.get(id(d.source))
            if c is None:
                return False
            v = _as_float(getattr(c, d.method)(*d.args, **d.kwargs))
            if v is None or not np.array_equal(v, d.value):
                return False
        return all(_same(_state(s), _state(copies[id(s)])) for s, _ in self.sources)

    def restore(self):
        for (s, _), b in zip(self.sources, self.before):
            _set_state(s, b)

    def call(self, fun, targs, kwargs):
        """fun(*targs, **kwargs) with the draws recorded; a function that fails on traced
        draws runs again (generators restored) with plain ones, and then retraces on every
        call."""
        swapped = []
        targs = list(targs)
        for i, a in enumerate(targs):
            if type(a) is np.random.Generator:
                targs[i] = _RecordingGenerator(a)
        for s, loc in self.sources:
            if type(s) is np.random.Generator and loc is not None and loc.get() is s:
                loc.set(_RecordingGenerator(s))
                swapped.append((s, loc))
        prev = _recorder()
        _local.rec = self
        if self.patch:
            _install()
        try:
            return fun(*targs, **kwargs)
        except (TypeError, NotImplementedError):
            # what a traced value raises where numpy or Python needs a plain number
            if not self.traced:
                raise
        finally:
            if self.patch:
                _uninstall()
            _local.rec = prev
            for s, loc in swapped:
                loc.set(s)
        # traced draws broke the function: run it as plain Python on the same draws
        self.restore()
        self.draws, self.opaque = [], True
        targs = [a._fastad_original if type(a) is _RecordingGenerator else a for a in targs]
        return fun(*targs, **kwargs)


# ---------------------------------------------------------------------------- the policy

class Plan:
    """The draws one tape replays, in order."""
    __slots__ = ("draws", "sources")

    def __init__(self, draws, sources):
        self.draws = draws
        self.sources = sources   # [(source, location)] the draws come from

    def redraw(self, args):
        """Make the recorded calls again; [(first slot, float64 array)] or None if a source
        was rebound since the trace (then the caller retraces)."""
        for s, loc in self.sources:
            if loc is not None and loc.get() is not s:
                return None
        out = []
        for d in self.draws:
            v = getattr(d.source, d.method)(*d.args, **d.kwargs)
            arr = _as_float(v)
            if arr is None or arr.size != d.n:
                return None
            out.append((d.first, np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)))
        return out


class Policy:
    """What a Compiled does about random draws: detection at trace, redraw at replay."""

    def __init__(self, fun):
        self.fun = fun
        self.retrace = False           # a trace drew numbers no plan explains
        self.warned = False
        self.plans = weakref.WeakKeyDictionary()     # tape -> Plan
        self.active = False            # some tape has a plan: replays must redraw

    def begin(self, tape, args, kwargs):
        names = set()
        sources = find_sources(self.fun, args, kwargs, names)
        return Recorder(tape, sources, names)

    def end(self, rec, tape):
        """After a successful trace: keep the tape's plan, or switch to retracing."""
        changed = rec.changed()
        if not changed and not rec.draws and not rec.opaque:
            return
        if not self.retrace and rec.explained():
            used = {id(d.source) for d in rec.draws}
            self.plans[tape] = Plan(rec.draws, [(s, loc) for s, loc in rec.sources
                                                if id(s) in used])
            self.active = True
        else:
            self.retrace = True
        self._warn(rec, changed)

    def _warn(self, rec, changed):
        if self.warned:
            return
        self.warned = True
        name = getattr(self.fun, "__qualname__", None) or repr(self.fun)
        what = ", ".join(sorted({_describe(rec.sources[i][0]) for i in changed})) or \
            "a random generator"
        if self.retrace:
            how = ("fastad cannot re-draw these numbers itself, so it runs the Python code on "
                   "every call (a trace per call: correct, but without the speed of replay)")
        else:
            how = ("every replay makes the same generator calls first and uses their draws "
                   "(the generator advances as if the function ran: a small cost per call)")
        warnings.warn(
            f"fastad: {name} draws random numbers from {what} while it runs; to keep fresh "
            f"draws on every call, {how}. Alternatives: pass the samples as an argument, or "
            f"use random='freeze' to reuse the first call's draws on purpose (common random "
            f"numbers). See docs/conventions.md, 'Random draws'.",
            RandomDrawWarning, stacklevel=_user_stacklevel())

    def redraw(self, tape, args):
        """Before replaying `tape`: (the draws to write as [(first slot, values)], or None
        if the tape cannot be replayed; the generators' states before, for `undo`)."""
        plan = self.plans.get(tape)
        if plan is None:
            return [], None
        saved = [(s, _state(s)) for s, _ in plan.sources]
        return plan.redraw(args), saved

    @staticmethod
    def undo(saved):
        """The replay did not fit (a guard failed): rewind the generators."""
        for s, state in saved or ():
            _set_state(s, state)


def _user_stacklevel():
    """The warnings.warn stacklevel of the first frame outside fastad (the user's call)."""
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level


class RandomDrawWarning(UserWarning):
    """A differentiated function draws random numbers (docs/conventions.md)."""


def _describe(src):
    if src is _np_global():
        return "numpy's global generator (np.random)"
    if src is _py_global():
        return "Python's random module"
    if isinstance(src, np.random.Generator):
        return "a np.random.Generator"
    if isinstance(src, np.random.RandomState):
        return "a np.random.RandomState"
    return "a random.Random"
