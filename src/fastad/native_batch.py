"""fastad.vmap's batch-major sweeps in machine code: when to compile, the disk cache, the
loading (docs/native.md, "Batched sweeps").

A tape batched by fastad.vmap is swept block by block by the interpreter (csrc/batch.h)
until its points' estimated saving pays for a compile; then fastad._codegen_batch's C is
compiled in a background thread and the tape's plans (fastad._batch.Plan) switch to it
between two batches, never during one.  A call never waits for a compile, except under
native="always", which compiles before the first batch as it does for a single call.
Every lane's results are the single call's bit for bit (see fastad._codegen_batch), in
either tier.

Follows the single call's tier settings: nothing is compiled for a tape without a native
policy (native="never", FASTAD_NATIVE=0, an empty tape); FASTAD_NATIVE=always compiles
before the first batch.  Without a C compiler, or for a tape the generator does not
cover, the batch stays interpreted and `state(tape)` says why.
"""
import ctypes
import hashlib
import os
import platform
import threading
import time
import weakref

from fastad import _batch, _codegen, _codegen_batch, _native, native

# Estimated seconds a compiled block saves per point and element of work (an element
# loop's element, a scalar record), against the interpreter's batch-major sweep: the
# Rosenbrock loop's 1.6e3 elements per point went from ~0.4 to ~0.2 us a point
# (docs/native.md, "Batched sweeps").  With native.compile_estimate, the points after
# which a tape is compiled (`hot_after`).
SAVE_PER_ELEMENT = 0.1e-9
SAVE_PER_POINT = 1e-9
# ... but where the single call has libm (a scalar record, or a range shorter than numpy's
# loop threshold, of an op that is not correctly rounded) the compiled block calls libm
# per lane, where the interpreter's block runs numpy's SIMD loop over its lanes (and sin
# and cos in one sincos pass): the notes' f (exp and sin of scalars) took 26 ns a point
# compiled against 16 ns interpreted.  A tape whose estimated saving is not positive is
# not compiled under native="auto".
COST_PER_LIBM_ELEMENT = 5e-9


def _work(recs):
    """(elements a point's sweeps run, those of them that call libm per lane)."""
    exact = _codegen._exact()
    work = slow = 0
    for p in recs:
        if p.name == "LOOP":            # its body, trip count times
            w, sl = _work(p.body)
            work, slow = work + p.n * w, slow + p.n * sl
            continue
        n = p.n if p.flags & _codegen.RANGED else 1
        work += n
        if p.kind in ("unary", "binary") and p.name not in exact and \
                not (p.flags & _codegen.RANGED and p.n >= _codegen_batch.VEC_MIN):
            slow += n
    return work, slow


# tapes up to this many records are generated when first batched (a few ms), so an object
# in the disk cache serves the first batch; longer ones in the background compile's thread
GENERATE_NOW = 2000
# a compile at -O3 costs this many times the single call's -O1 estimate
COMPILE_FACTOR = 3.0
# doubles per array of a compiled block (values, tangents, adjoints: three per thread):
# a bigger tape stays with the interpreter, which sweeps it lane by lane in nslot doubles
MAX_BLOCK_DOUBLES = 1 << 21


def opt_flags():
    """Flags after native.flags(): -O3 (the lane loops vectorize), and the x86-64 level of
    this CPU where numpy reports it (the lanes fill AVX2 registers; the level is part of
    the cache key through the source's flags)."""
    out = ["-O3"]
    if platform.machine() in ("x86_64", "AMD64"):
        feats = _cpu_features()
        if all(feats.get(f) for f in ("AVX512F", "AVX512CD", "AVX512VL", "AVX512BW",
                                      "AVX512DQ")):
            out.append("-march=x86-64-v4")
        elif all(feats.get(f) for f in ("AVX2", "FMA3", "F16C")):
            out.append("-march=x86-64-v3")
    return out


def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:             # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return __cpu_features__


class Kernel:
    """One tape's compiled batched sweeps: 'interpreted', 'compiling', 'native' or
    'interpreted (why)' in `state`; the plans it serves switch when it is loaded."""

    def __init__(self, tape, mode):
        self.mode = mode
        self.state = "interpreted"
        self.points = 0
        self.addrs = None               # set_native's arguments once loaded
        self.thread = None
        self.seconds = None             # compile time, 0.0 from the cache, None: neither
        self._lock = threading.Lock()   # guards addrs/state between threads
        self.source = self.key = self.trig = self._args = None
        self.assigned = ()
        self.hot = 1
        argv, ident = native.compiler()
        try:
            if tape.fused_chains():
                # the single call sums a fused chain's final SUM in 8 partial sums
                # (docs/design.md, "Fusion"); the generator writes one running sum
                raise _codegen.Unsupported("the tape has fused chains, whose sums the "
                                           "single call adds in another order")
            L = _codegen_batch.lanes_for(tape.n_slots)
            if (tape.n_slots + 1) * L > MAX_BLOCK_DOUBLES:
                raise _codegen.Unsupported(
                    f"a block of {L} lanes of its {tape.n_slots} slots would take "
                    f"{3 * 8 * (tape.n_slots + 1) * L / 2**20:.0f} MB per thread")
            rows = _native.raw_records(tape)
            recs = _codegen.parse(rows)
            _codegen_batch.check(recs)
        except _codegen.Unsupported as e:
            self.state = f"interpreted ({e})"
            return
        if argv is None:
            self.state = f"interpreted ({ident})"
            return
        self.trig = _codegen_batch.has_trig(recs)
        self._args = (rows, tape.n_slots, tape.n_inputs)
        if len(recs) <= GENERATE_NOW:       # cheap: a cached object is used at once
            try:
                self._generate()
            except _codegen.Unsupported as e:
                self.state, self._args = f"interpreted ({e})", None
                return
        work, slow = _work(recs)
        save = SAVE_PER_POINT + SAVE_PER_ELEMENT * work - COST_PER_LIBM_ELEMENT * slow
        if save <= 0:
            self.hot = None
            if mode != "always":
                self.state = ("interpreted (per lane, libm's transcendental functions "
                              "would be slower than the interpreter's SIMD loops; "
                              "native='always' compiles it, for the single call's bits)")
            return
        est = native.compile_estimate(len(recs)) * COMPILE_FACTOR
        self.hot = max(1, int(native._scale[0] * est / save))

    def _generate(self):
        """The C and its key (raises Unsupported for what only generating finds)."""
        if self.key is not None:
            return
        argv, ident = native.compiler()
        self.source, self.assigned = _codegen_batch.generate(*self._args)
        h = hashlib.blake2b(digest_size=20)
        h.update(self.source.encode())
        h.update(repr((argv, ident, native.flags() + opt_flags())).encode())
        self.key = h.hexdigest()

    def _path(self, d):
        return os.path.join(d, f"fastad-batch-{self.key}.so")

    def _load(self, path):
        """Open a compiled object and hand its sweeps to the plans; False if absent or
        unusable (then deleted, to be rebuilt)."""
        if not os.path.exists(path):
            return False
        try:
            lib = ctypes.CDLL(path)
            lanes = ctypes.c_int.in_dll(lib, "fastad_lanes").value
            fwd = ctypes.cast(lib.fastad_bfwd, ctypes.c_void_p).value
            rev = ctypes.cast(lib.fastad_brev, ctypes.c_void_p).value
            zero = ctypes.cast(lib.fastad_bzero, ctypes.c_void_p).value
            tan = ctypes.cast(lib.fastad_btan, ctypes.c_void_p).value
        except (OSError, AttributeError, ValueError):
            try:
                os.unlink(path)
            except OSError:
                pass
            return False
        try:
            os.utime(path)          # recently used: kept by the cache's trim
        except OSError:
            pass
        with self._lock:
            self.addrs = (fwd, rev, zero, tan, lanes, self.trig, lib)
            self.state = "native"
        return True

    def load_cached(self):
        if self.key is None:
            return False
        for d in dict.fromkeys([native.cache_dir(), native._writable_dir()]):
            if self._load(self._path(d)):
                self.seconds = 0.0
                return True
        return False

    def build(self):
        """Compile (unless the cache has it) and load; a failure goes to `state`."""
        if self._args is None or self.addrs is not None:
            return
        try:
            self._generate()
            if self.load_cached():
                return
            d = native._writable_dir()
            path = self._path(d)
            with native._compile_lock:      # one compile at a time (native.py)
                if self._load(path):
                    self.seconds = 0.0
                    return
                t0 = time.perf_counter()
                native.compile_c(self.source, path, d, opt_flags(), prefix="fastad-batch-")
                self.seconds = time.perf_counter() - t0
                if not self._load(path):
                    raise native.NativeError(f"the compiled code at {path} could not be "
                                             "loaded")
            native._trim(d, path)
        except (native.NativeError, OSError, _codegen.Unsupported) as e:
            self.state = f"interpreted ({str(e).splitlines()[0]})"
        except Exception as e:      # noqa: BLE001 -- a background thread: say it in state
            self.state = f"interpreted ({type(e).__name__}: {e})"

    def serve(self, plan):
        """Give `plan` the compiled sweeps if they are loaded (plans are not kept here: a
        plan holds its tape, which would then never be dropped)."""
        addrs = self.addrs
        if addrs is None or plan.native_lanes or self.refuses(plan):
            return
        plan.set_native(*addrs)

    def refuses(self, plan):
        """A seed where the compiled reverse sweep assigns adjoints (never for grad & co.,
        whose seed is the output; a jacrev whose output another output reads): the plan
        keeps the interpreter."""
        return any(lo <= s < hi for s in plan.seeds() for lo, hi in self.assigned)

    def count(self, points):
        """`points` were batched on the tape: start the compile once they pay for it."""
        self.points += points
        if self.state == "interpreted" and self.hot is not None and self.points >= self.hot:
            with self._lock:
                if self.state != "interpreted":
                    return
                self.state = "compiling"
            self.thread = threading.Thread(target=self.build, daemon=True,
                                           name="fastad-batch-compile")
            self.thread.start()

    def wait(self, timeout=60.0):
        if self.thread is not None:
            self.thread.join(timeout)


# tape -> its Kernel (weak: a tape dropped with its function drops its kernel); a dict
# shared by every vmap of the tape's function, guarded by _lock
_kernels = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def kernel(tape):
    """The tape's Kernel, made at the first batch (None: no native code for the tape)."""
    with _lock:
        k = _kernels.get(tape)
        if k is not None:
            return k
        policy = tape.native_policy
        if policy is None or native.disabled():
            return None
        mode = policy.mode
        if os.environ.get("FASTAD_NATIVE", "").strip().lower() == "always":
            mode = "always"
        k = _kernels[tape] = Kernel(tape, mode)
    if k._args is None or (k.hot is None and mode != "always"):
        return k        # never compiled under "auto": nor taken from the cache
    if not k.load_cached() and mode == "always":
        k.state = "compiling"
        k.build()
    return k


def prepare(plan, tape, points):
    """Before `plan` of `tape` sweeps `points` lanes (fastad.batching): count them towards
    the compile, and hand the plan the compiled sweeps once they are loaded."""
    k = kernel(tape)
    if k is not None:
        k.count(points)
        k.serve(plan)
    return k


def state(tape):
    """'native', 'compiling', 'interpreted' or 'interpreted (why)' for a batched tape."""
    with _lock:
        k = _kernels.get(tape)
    if k is None:
        return "interpreted" if tape.native_policy is not None and not native.disabled() \
            else "interpreted (native code is off for this tape)"
    return k.state


def plan_state(tape, plan):
    """state(tape) for the batches of `plan` (fastad.batching's cache_info)."""
    with _lock:
        k = _kernels.get(tape)
    if k is not None and k.state == "native" and k.refuses(plan):
        return ("interpreted (a reverse sweep is seeded where the compiled code assigns "
                "adjoints)")
    if k is not None and k.state == "native" and not plan.uses_native(_batch.vector_math()):
        return "interpreted (libmvec's sin and cos: set_vector_math(True))"
    return state(tape)


def wait(tape, timeout=60.0):
    """Wait for the tape's background compile (tests, benchmarks)."""
    with _lock:
        k = _kernels.get(tape)
    if k is not None:
        k.wait(timeout)
