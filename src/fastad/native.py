"""Tapes compiled to machine code: the compiler, the disk cache and the tiers
(docs/native.md).

A differentiated function's tape is replayed by the interpreter (csrc/sweeps.h) until it
is hot; then its C (fastad._codegen) is compiled, in a background thread, with the C
compiler Python was built with, and its sweeps switch to the machine code atomically
(fastad._native).  Both tiers compute the same results bit for bit, so a caller never
sees the switch.  Tiers, per differentiated function (``native=`` of grad & co.):

  "auto"    (default) compile in the background once the replays' estimated cumulative
            time reaches the estimated compile time (`hot_after`); never wait for it
  "always"  compile before the tape is replayed (the first call waits)
  "never"   interpreter only

FASTAD_NATIVE=0 turns native code off everywhere; FASTAD_NATIVE=always makes "auto" mean
"always" (how the whole test suite is run in the native tier, docs/native.md).  Shared objects
are cached in FASTAD_CACHE_DIR (default: ~/.cache/fastad/native), keyed by a hash of the tape's
records, the generator and the compiler, so another process with the same function loads
them without compiling.
"""
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings

import numpy as np

from fastad import _codegen
from fastad import _native

MODES = ("auto", "always", "never")

# Tapes with more straight-line records than this stay interpreted: their C takes long to
# compile, and past a few ten thousand records straight-line machine code no longer fits
# the CPU's caches and runs slower than the interpreter (docs/native.md).  Loops (ranged
# records) do not count.
MAX_STATEMENTS = 30_000

# Cost model of `hot_after` (seconds; docs/native.md).  Native code saves per replay
# about SAVE_BASE + SAVE_PER_STATEMENT per straight-line record (the interpreter's
# dispatch; ranged records run the same loops in both tiers and save next to nothing),
# and a compile costs about COMPILE_BASE + COMPILE_PER_STATEMENT per straight-line
# record.  The saving was measured on the development machine (benchmarks/
# native_vs_interpreter.py); the compile cost starts from the development machine's and
# is recalibrated by every compile this process makes (`calibrate`): compilers and
# machines differ by 10x, and the measured figure is the one that decides.
SAVE_BASE = 0.1e-6
SAVE_PER_STATEMENT = 5e-9
# ...and per element of a fused chain compiled as one C loop (the interpreter runs it tile
# by tile, one loop per member): (29.5 - 10) us over 8 members of 10^4 elements on the
# vectorized Rosenbrock, 0.24 ns (0.34 ns at 10^6; benchmarks/fusion_ratios.py)
SAVE_PER_FUSED_ELEMENT = 0.25e-9
COMPILE_BASE = 0.15
COMPILE_PER_STATEMENT = 300e-6

FLAGS = ["-shared", "-fPIC", "-O1", "-std=c11", "-fno-math-errno", "-ffp-contract=off",
         "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-function",
         "-Wno-unused-parameter"]

# Process-wide state, each for a reason: one compile at a time (the machine's cores belong
# to the user's program), and one warning per reason (not one per tape or call).
_compile_lock = threading.Lock()
_warned = set()
_warn_lock = threading.Lock()
_scale = [1.0]          # tests shorten the warm-up with set_hot_scale
# the compile cost model [base, per statement], recalibrated by each compile (`calibrate`):
# process-wide because compile speed is the machine's, not a tape's
_compile_model = [COMPILE_BASE, COMPILE_PER_STATEMENT]
_model_lock = threading.Lock()


class NativeError(Exception):
    """Why a tape could not get native code (it stays interpreted)."""


def _warn_once(reason):
    with _warn_lock:
        if reason in _warned:
            return
        _warned.add(reason)
    warnings.warn(f"fastad: {reason}; the tape runs in the interpreter (same results, "
                  "slower). Pass native='never' to silence this.", RuntimeWarning, stacklevel=3)


def set_hot_scale(scale):
    """Multiply every tape's warm-up before background compilation (tests use small values)."""
    _scale[0] = float(scale)


def disabled():
    return os.environ.get("FASTAD_NATIVE", "1").strip().lower() in ("0", "no", "off", "false")


# ------------------------------------------------------------------------ compiler

_cc_cache = {}


def compiler():
    """The C compiler command (CC, else the one Python was built with) and its identity."""
    cmd = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if cmd in _cc_cache:
        return _cc_cache[cmd]
    argv = shlex.split(cmd)
    exe = shutil.which(argv[0]) if argv else None
    if exe is None:
        res = (None, f"no C compiler found (CC={cmd!r} is not on PATH)")
    else:
        # the executable's size and time stand for its version: a stat, where running
        # `cc --version` would add tens of milliseconds to a process's first trace
        st = os.stat(exe)
        res = ([exe] + argv[1:], f"{os.path.realpath(exe)} {st.st_size} {st.st_mtime_ns}")
    _cc_cache[cmd] = res
    return res


def flags():
    return FLAGS + shlex.split(os.environ.get("FASTAD_NATIVE_CFLAGS", ""))


def compile_c(source, out_path, workdir, extra_flags=(), prefix="fastad-"):
    """Compile C `source` into the shared object `out_path`, written under a temporary name
    and renamed atomically (safe when several processes compile the same tape);
    `extra_flags` come after flags()."""
    argv, ident = compiler()
    if argv is None:
        raise NativeError(ident)
    fd, src = tempfile.mkstemp(suffix=".c", prefix=prefix, dir=workdir)
    tmp = src[:-2] + ".so.tmp"
    try:
        with os.fdopen(fd, "w") as f:
            f.write(source)
        proc = subprocess.run(argv + flags() + list(extra_flags) + ["-o", tmp, src, "-lm"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
            raise NativeError(f"the C compiler failed ({' '.join(argv)}):\n{tail}")
        os.replace(tmp, out_path)
    finally:
        for p in (src, tmp):
            try:
                os.unlink(p)
            except OSError:
                pass


# ------------------------------------------------------------------------ disk cache

def cache_dir():
    d = os.environ.get("FASTAD_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "fastad")
    return os.path.join(d, "native")


_private = []


def _writable_dir():
    """The cache directory, or (read-only, not creatable) a private temporary one."""
    d = cache_dir()
    try:
        os.makedirs(d, exist_ok=True)
        if os.access(d, os.W_OK | os.X_OK):
            return d
    except OSError:
        pass
    _warn_once(f"the native-code cache directory {d} is not writable (set FASTAD_CACHE_DIR); "
               "compiled code is kept for this process only")
    if not _private:
        _private.append(tempfile.mkdtemp(prefix="fastad-native-"))
    return _private[0]


def cache_max_bytes():
    return int(float(os.environ.get("FASTAD_CACHE_MAX_MB", "512")) * 2**20)


def _trim(d, keep):
    """Delete the least recently used shared objects beyond the size bound."""
    try:
        entries = []
        for name in os.listdir(d):
            if name.startswith("fastad-") and name.endswith(".so"):
                p = os.path.join(d, name)
                st = os.stat(p)
                entries.append((st.st_atime, st.st_size, p))
    except OSError:
        return
    total = sum(s for _, s, _ in entries)
    for _, size, p in sorted(entries):
        if total <= cache_max_bytes():
            break
        if p != keep:
            try:
                os.unlink(p)
                total -= size
            except OSError:
                pass


_SOURCE_HASH = []


def key_of(tape, sweeps):
    """The cache key: records, sweeps, generator and headers, compiler and flags."""
    argv, ident = compiler()
    h = hashlib.blake2b(digest_size=20)
    h.update(_codegen.structure_hash(_native.record_bytes(tape), sweeps).encode())
    chains = compiled_chains(tape)
    if chains:
        # with the inputs' count: whether the code reads its inputs in place depends on it
        h.update(repr((chains, tape.n_inputs)).encode())
    if not _SOURCE_HASH:
        _SOURCE_HASH.append(_codegen.source_hash())     # the headers do not change
    h.update(_SOURCE_HASH[0].encode())
    # the generator's switches are read at each compile (they may change in a process)
    h.update(_codegen.variant().encode())
    h.update(repr((argv, ident, flags(), sys.platform)).encode())
    return h.hexdigest()


def compiled_chains(tape):
    """The fused chains the generated code compiles as one loop each (docs/design.md,
    "Fusion"): all of the tape's, when their ops give the interpreter's values in a plain C
    loop; else none, and the records are compiled one by one."""
    chains = tape.fused_chains()
    if not chains:
        return []
    from fastad import _codegen_fuse
    try:
        ok = _codegen_fuse.compilable(_native.raw_records(tape), chains, _codegen.c_names())
    except _codegen.Unsupported:
        ok = False
    return chains if ok else []


def _path(d, key):
    return os.path.join(d, f"fastad-{key}.so")


def _try_load(tape, path, key, sweeps):
    """Load a cached shared object; False if there is none, or it is stale or corrupt
    (then it is deleted so that it is rebuilt)."""
    if not os.path.exists(path):
        return False
    try:
        _native.install(tape, path, key.encode(), "fwd" in sweeps, "tan" in sweeps,
                        "rev" in sweeps)
        try:
            os.utime(path)          # recently used: kept by _trim
        except OSError:
            pass
        return True
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return False


def _too_large(tape):
    return len(tape) > MAX_STATEMENTS and _native.straight_line(tape) > MAX_STATEMENTS


def _check_size(tape):
    """Refuse a tape whose straight-line code would be too long: more than MAX_STATEMENTS
    scalar records outside loops and outside table loops (fastad._codegen_table: a long
    tape of a few repeated shapes compiles as a short switch)."""
    if not _too_large(tape):
        return
    from fastad import _codegen_table
    left = _codegen_table.straight_left(_codegen.parse(_native.raw_records(tape)))
    if left > MAX_STATEMENTS:
        raise NativeError(f"the tape has {left} straight-line records, more than the "
                          f"{MAX_STATEMENTS} fastad compiles (docs/native.md)")


def build(tape, sweeps):
    """Give `tape` native sweeps, from the cache or by compiling; raises NativeError.
    Returns True if it compiled, False if it loaded the cache's shared object."""
    argv, ident = compiler()
    if argv is None:
        raise NativeError(ident)
    key = key_of(tape, sweeps)
    for d in dict.fromkeys([cache_dir(), _writable_dir()]):
        if _try_load(tape, _path(d, key), key, sweeps):
            return False
    _check_size(tape)
    try:
        source = _codegen.generate(_native.raw_records(tape), key, sweeps,
                                   chains=compiled_chains(tape), nin=tape.n_inputs)
    except _codegen.Unsupported as e:
        raise NativeError(str(e)) from None
    d = _writable_dir()
    path = _path(d, key)
    with _compile_lock:
        if _try_load(tape, path, key, sweeps):      # another thread has built it
            return False
        compile_c(source, path, d)
        if not _try_load(tape, path, key, sweeps):
            raise NativeError(f"the compiled code at {path} could not be loaded")
    _trim(d, path)
    return True


# ------------------------------------------------------------------------ tiers

def sweeps_for(mode):
    """Which sweeps a differentiation mode runs (fastad._replay's mode names)."""
    if mode in ("jvp", "jacfwd"):
        return ("fwd", "tan")
    if mode == "jacobian":
        return ("fwd", "tan", "rev")
    return ("fwd", "rev")


def compile_estimate(nstmt):
    """Estimated seconds to compile a tape of `nstmt` straight-line records (calibrated)."""
    base, per = _compile_model
    return base + per * nstmt


def hot_after(nstmt, executed=None, fused=0):
    """Replays before an "auto" tape of `nstmt` straight-line records is compiled: when the
    time native code would have saved on them equals the estimated compile time, the
    break-even point of compiling (docs/native.md).  `executed`: the scalar records a
    replay dispatches (more than nstmt when LOOP records run their body many times);
    `fused`: the elements of the fused chains the code compiles (`fused_elements`)."""
    save = (SAVE_BASE + SAVE_PER_STATEMENT * (nstmt if executed is None else executed)
            + SAVE_PER_FUSED_ELEMENT * fused)
    return max(1, int(_scale[0] * compile_estimate(nstmt) / save))


def fused_elements(tape, chains):
    """Elements summed over the members of `chains` (compiled_chains): the work a replay
    runs in the fused loops."""
    rows = _native.raw_records(tape)
    n = 0
    for first, end, _ in chains:
        i = first
        while i < end:
            if rows[i, 1] & 1 and i + 1 < len(rows):     # FA_RANGED: the EXT word's r
                n += int(rows[i + 1, 2])
                i += 2
            else:
                i += 1
    return n


def calibrate(nstmt, seconds):
    """Fold a measured compile (not a cache load) into the compile cost model: small tapes
    measure the fixed cost, larger ones the cost per statement; each new measurement
    weighs half (compilers' times vary with the machine's load)."""
    with _model_lock:
        base, per = _compile_model
        if nstmt < 200:
            _compile_model[0] = 0.5 * base + 0.5 * seconds
        else:
            _compile_model[1] = 0.5 * per + 0.5 * max(seconds - base, 0.0) / nstmt


class Policy:
    """One tape's tier: 'interpreted', 'compiling', 'native' or 'interpreted (why)'."""

    def __init__(self, mode, sweeps):
        self.mode, self.sweeps = mode, sweeps
        self.state = "interpreted"
        self.compile_time = None
        self.thread = None

    def hot(self, tape):
        """The tape has been replayed enough: compile it in the background (called by the
        tape's replay with the GIL held; returns at once)."""
        if self.state != "interpreted":
            return
        self.state = "compiling"
        self.thread = threading.Thread(target=self._work, args=(tape,), daemon=True,
                                       name="fastad-native-compile")
        self.thread.start()

    def _work(self, tape):
        try:
            self.run(tape)
        except Exception as e:      # a background failure never reaches the user's calls
            self.state = f"interpreted ({e})"

    def run(self, tape):
        t0 = time.perf_counter()
        try:
            try:
                compiled = build(tape, self.sweeps)
            except (OSError, subprocess.SubprocessError) as e:   # the compiler could not run
                raise NativeError(f"compiling failed: {e}") from None
        except NativeError as e:
            self.state = f"interpreted ({str(e).splitlines()[0]})"
            _warn_once(f"native code is off for a tape: {e}")
            return
        self.compile_time = time.perf_counter() - t0
        if compiled:
            calibrate(_native.straight_line(tape), self.compile_time)
        else:
            self.compile_time = 0.0         # loaded from the disk cache
        self.state = "native"

    def wait(self, timeout=None):
        """Wait for a background compile (tests and benchmarks)."""
        if self.thread is not None:
            self.thread.join(timeout)


def check_mode(mode):
    """native= of the transforms: "auto", "always" or "never"."""
    if mode not in MODES:
        raise ValueError(f"fastad: native must be 'auto', 'always' or 'never', got {mode!r}")
    return mode


def attach(tape, mode, dmode):
    """Give a freshly traced tape its tier: `mode` is native=..., `dmode` the
    differentiation mode.  Called once per tape, before its first replay."""
    if check_mode(mode) == "never":
        return
    if disabled():
        _warn_once("native code is disabled by FASTAD_NATIVE=0")
        return
    if tape.native_policy is not None or len(tape) == 0:
        return
    if mode == "auto" and os.environ.get("FASTAD_NATIVE", "").strip().lower() == "always":
        mode = "always"         # the test matrix: every tape compiled before its replay
    policy = tape.native_policy = Policy(mode, sweeps_for(dmode))
    if mode == "always":
        policy.run(tape)
        if policy.state == "native":
            _warm_up(tape, policy.sweeps)
        return
    # a cached shared object from an earlier process: no reason to wait
    argv, _ = compiler()
    if argv is not None and not _too_large(tape):
        key = key_of(tape, policy.sweeps)
        if _try_load(tape, _path(cache_dir(), key), key, policy.sweeps):
            policy.state, policy.compile_time = "native", 0.0
            _warm_up(tape, policy.sweeps)
            return
    chains = compiled_chains(tape)
    if tape.fused_chains() and not chains:
        # the interpreter's fused chains leave intermediates out of memory (docs/design.md,
        # "Fusion"), and these are compiled record by record: code swapped in between a
        # fused forward sweep and a compiled reverse sweep would read values never written
        policy.state = "interpreted (fused elementwise chains of transcendental ops)"
        return
    tape.native_countdown = hot_after(_native.straight_line(tape),
                                      _native.straight_line(tape, executed=True),
                                      fused_elements(tape, chains))


# Tapes up to this many slots get a warm-up sweep when their code comes from the cache.
WARM_MAX_SLOTS = 200_000


def _warm_up(tape, sweeps):
    """Run freshly loaded native code once, at the recorded inputs, before the first
    replay: the first run of a shared object's code takes page faults (its pages are
    mapped lazily), which would make the first replay several times slower than the next
    ones.  Done inside the trace, whose cost it barely changes (one replay), on the main
    workspace, which no other thread has yet; the values it writes are the recorded ones
    (native code gives them bit for bit).  Tapes above WARM_MAX_SLOTS skip it: their replay
    dwarfs the faults."""
    if tape.n_slots > WARM_MAX_SLOTS or tape.output_slot < 0:
        return
    from fastad.errors import GuardFailure
    try:
        tape.forward(tape.values[:tape.n_inputs])
    except GuardFailure:        # cannot happen at the recorded inputs; nothing to warm
        return
    if "rev" in sweeps:
        tape.reverse()
    if "tan" in sweeps:
        tape.tangent(np.zeros(tape.n_inputs))


def warm_replay(tape):
    """Should a trace replay `tape` once through the call path before returning?  Yes when
    its native code is installed already (loaded from the cache, or compiled for
    "always") and the tape is small enough that a replay is nothing next to the trace."""
    p = tape.native_policy
    return (p is not None and p.state == "native" and tape.n_slots <= WARM_MAX_SLOTS
            and not tape.callbacks)


def tier(tape):
    """'native', 'compiling', 'interpreted' or 'interpreted (why not)' for a tape."""
    p = tape.native_policy
    if _native.is_native(tape):
        return "native"
    return "interpreted" if p is None else p.state


def wait(fun, timeout=60.0):
    """Wait until the background compiles of `fun`'s tapes (a fastad.grad & co.) end."""
    for t in fun.tapes():
        if t.native_policy is not None:
            t.native_policy.wait(timeout)


def compile_now(fun):
    """Compile every cached tape of `fun` now (blocking); returns their tiers."""
    out = []
    for t in fun.tapes():
        p = t.native_policy
        if p is not None and p.state in ("interpreted", "compiling"):
            p.wait()
            if p.state == "interpreted":
                p.run(t)
        out.append(tier(t))
    return out


def _standalone(tape, name, jvp, part=False):
    import numpy as np
    if tape.output_slot < 0:
        raise ValueError("fastad.Tape.to_c: the tape has no output (its recording failed)")
    try:
        return _codegen.standalone(_native.raw_records(tape), np.asarray(tape.values),
                                   _native.index_pool(tape), tape.n_inputs, tape.output_slot,
                                   name, jvp, part)
    except _codegen.Unsupported as e:
        raise NotImplementedError(f"fastad.Tape.to_c: {e}") from None


HVP_WRAPPER = """
int {name}_hvp(const double *x, const double *v, double *hv)
{{
    double *buf = (double *)malloc(({n4} + {work}) * sizeof(double)), f;
    if (!buf) return -1;
    double *xv = buf, *g = buf + {n2}, *work = buf + {n4};
    memcpy(xv, x, {n} * sizeof(double));
    memcpy(xv + {n}, v, {n} * sizeof(double));
    int rc = {name}_hvpq_value_grad_work(xv, &f, g, work);
    if (rc == 0) memcpy(hv, g, {n} * sizeof(double));
    free(buf);
    return rc;
}}
"""


def export(tape, path, name, jvp=True, hvp_tape=None):
    """Write standalone C for `tape` to `path` and its header beside it (Tape.to_c).
    hvp_tape: the tape of q(x, v) = grad f(x) . v, whose gradient in x is H v (to_c)."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"fastad.Tape.to_c: name must be a C identifier, got {name!r}")
    src, hdr = _standalone(tape, name, jvp)
    if hvp_tape is not None:
        n = tape.n_inputs
        qsrc, _ = _standalone(hvp_tape, f"{name}_hvpq", False, part=True)
        src += qsrc + HVP_WRAPPER.format(name=name, n=n, n2=2 * n, n4=4 * n,
                                         work=2 * max(hvp_tape.n_slots, 1))
        i = hdr.rindex("\n#endif")
        hdr = (hdr[:i] + f"/* hv = the Hessian at x times v */\n"
               f"int {name}_hvp(const double *x, const double *v, double *hv);\n" + hdr[i:])
    path = os.fspath(path)
    hpath = os.path.splitext(path)[0] + ".h"
    src = src.replace(f'#include "{name}.h"', f'#include "{os.path.basename(hpath)}"')
    with open(path, "w") as f:
        f.write(src)
    with open(hpath, "w") as f:
        f.write(hdr)
    return path, hpath


def to_c(f, x, path, name="fastad_fn", hvp=False):
    """Record f at the float array x and write standalone C (Tape.to_c), with
    `name`_hvp(x, v, hv) too when hvp=True (the Hessian-vector product, reverse over the
    recorded reverse sweep).  Returns (c_path, header_path).  See docs/native.md."""
    import numpy as np
    from fastad.api import grad, record
    x = np.asarray(x, dtype=np.float64)
    tape = record(f, x)
    hvp_tape = None
    if hvp:
        g = grad(f, native="never")
        hvp_tape = record(lambda x, v: np.sum(g(x) * v), x, np.zeros_like(x))
    return export(tape, path, name, True, hvp_tape)
