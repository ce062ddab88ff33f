"""Pickling compiled functions and tapes, so they replay in another process (docs/scale.md).

``pickle.dumps(fd.grad(f))`` carries the recorded tapes (records, constants, layout,
guard outcomes; csrc/serial.h copies the raw arrays, so every record kind travels) and
the function: by reference (module and name) when it is importable, by value with
cloudpickle when it is a lambda, a closure or defined in ``__main__``.  After
``pickle.loads`` a call replays without running the function; the function is needed
only to trace again (a new argument signature, or a guard that comes out differently).
If it cannot be imported there (or was left out: ``dumps(obj, function=False)``), a
replay still works and a needed retrace raises an error saying so -- never a wrong value.

Every pickle carries the fastad version, the format and a hash of the op table
(csrc/ops.h); loading one from a fastad whose op codes differ fails with both versions
named.  Unpickling runs code (the function's module is imported, cloudpickled code is
rebuilt): load pickles only from sources you trust, as with every pickle.
"""
import functools
import hashlib
import importlib
import io
import pickle
import threading

__all__ = ["dumps", "loads", "FORMAT", "op_table_hash"]

FORMAT = 1
# compiled functions unpickled in this process: lets a Dask test (and you) check that a
# function scattered to a worker was loaded there once, not once per task
LOADED = {"compiled": 0}
_local = threading.local()      # dumps(function=False) in progress, per thread


def op_table_hash():
    """A short hash of the op table (names, kinds, partials) and the record size: tapes
    from a fastad with the same hash have the same op codes."""
    from fastad._tape import RECORD_BYTES, op_partials, op_table
    text = repr((op_table(), sorted(op_partials().items()), RECORD_BYTES))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp():
    import fastad
    return (fastad.__version__, FORMAT, op_table_hash())


def _check(stamp):
    import fastad
    here = _stamp()
    if tuple(stamp)[1:] != here[1:]:
        raise pickle.UnpicklingError(
            f"fastad: this pickle was written by fastad {stamp[0]} (format {stamp[1]}, op "
            f"table {stamp[2]}) and this is fastad {fastad.__version__} (format {here[1]}, op "
            f"table {here[2]}); their tapes are not compatible. Pickle the function again with "
            f"this version (it traces again on its first call).")


def dumps(obj, *, function=True, protocol=pickle.HIGHEST_PROTOCOL):
    """``pickle.dumps(obj)``; with ``function=False`` compiled functions travel without
    their Python function (tapes only: a needed retrace then raises)."""
    _local.no_function = not function
    try:
        buf = io.BytesIO()
        pickle.Pickler(buf, protocol).dump(obj)
        return buf.getvalue()
    finally:
        _local.no_function = False


loads = pickle.loads


# ---------------------------------------------------------------------- tapes
def reduce_tape(tape):
    return (_load_tape, (_stamp(), tape._raw_state()))


def _load_tape(stamp, state):
    from fastad._tape import Tape
    _check(stamp)
    tape = Tape._from_raw_state(state)
    _warm(tape)
    return tape


def _warm(tape):
    """Replay the tape once at its recorded inputs (its values are unchanged by that), so
    the first call after loading finds its workspace allocated, the tape in cache and the
    sweep's dispatch learnt: the first call is then close to a warm one.  Tapes with
    custom_vjp callbacks are not run here (their Python would run at load time)."""
    from fastad._tape import GuardFailure
    if tape.output_slot < 0 or tape.callbacks or tape.n_slots == 0:
        return
    try:
        tape.forward(tape.values[:tape.n_inputs])
        tape.reverse()
    except (GuardFailure, FloatingPointError):
        pass


# ---------------------------------------------------------------------- functions
class MissingFunction:
    """Stands for a compiled function's Python function where it is not available: the
    tapes replay; a retrace (which would run it) raises."""

    def __init__(self, name, why):
        self.__name__ = self.__qualname__ = name
        self.why = why

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"fastad: {self.__name__} was unpickled without its Python function ({self.why}). "
            f"Its recorded tapes replay, but this call needs a new trace (a new argument "
            f"signature, or a comparison that came out differently from every recorded "
            f"branch), which runs the function. Make the function importable in this "
            f"process, or pickle it by value (cloudpickle) with its function.")

    def __reduce__(self):
        return (MissingFunction, (self.__name__, self.why))


def _importable(fun):
    """(module, qualname) if `fun` is found again by importing its module, else None."""
    module, qualname = getattr(fun, "__module__", None), getattr(fun, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return (module, qualname) if obj is fun else None


def _function_ref(fun):
    from fastad._replay import Compiled
    if getattr(_local, "no_function", False):
        name = getattr(fun, "__qualname__", getattr(fun, "__name__", "the function"))
        return ("missing", name, "it was pickled with function=False")
    if isinstance(fun, (Compiled, MissingFunction)):
        return ("object", fun)          # pickled in turn, with its own tapes
    ref = _importable(fun)
    if ref is not None:
        return ("ref",) + ref
    try:
        import cloudpickle
    except ImportError:
        raise pickle.PicklingError(
            f"fastad: {getattr(fun, '__qualname__', fun)!r} is a lambda, a closure or defined "
            f"in __main__, so it cannot be pickled by reference; install cloudpickle (pip "
            f"install cloudpickle, what Dask uses) to pickle it by value, or define it at "
            f"module level in an importable module.") from None
    return ("value", cloudpickle.dumps(fun))


def _resolve(ref):
    kind = ref[0]
    if kind == "object":
        return ref[1]
    if kind == "missing":
        return MissingFunction(ref[1], ref[2])
    if kind == "ref":
        module, qualname = ref[1], ref[2]
        try:
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj
        except Exception as e:
            return MissingFunction(qualname, f"{module}.{qualname} cannot be imported here: "
                                             f"{type(e).__name__}: {e}")
    try:
        return pickle.loads(ref[1])
    except ImportError as e:
        raise ImportError("fastad: this compiled function's Python function was pickled by "
                          "value with cloudpickle; install cloudpickle in this process to "
                          f"load it ({e})") from e


def reduce_compiled(compiled):
    from fastad._replay import export_state, spec_of
    spec = spec_of(compiled)
    fun = spec.pop("fun")
    return (_load_compiled, (_stamp(), _function_ref(fun), spec, export_state(compiled)))


def _load_compiled(stamp, ref, spec, state):
    from fastad._replay import Compiled, import_state, warm_calls
    _check(stamp)
    fun = _resolve(ref)
    LOADED["compiled"] += 1
    compiled = Compiled(fun, **spec)
    try:
        functools.update_wrapper(compiled, fun)
    except AttributeError:
        pass
    import_state(compiled, state)
    # two replays through the call path at the recorded inputs (counters restored): the
    # first call in the new process then costs about what a warm one does (docs/scale.md)
    try:
        warm_calls(compiled)
    except Exception:       # only a warm-up: the user's own call reruns it and reports
        pass
    return compiled
