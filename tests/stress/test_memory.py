"""Memory: tapes die with the last compiled function or traced value that refers to them;
a tape that would pass the int32 index width raises OverflowError and one that cannot be
allocated raises MemoryError, both before anything is allocated or written, and fastad
stays usable afterwards.
"""
import gc
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

import fastad as fd
from fastad._tape import op_table

OPS = {name: code for code, (name, kind) in enumerate(op_table())}
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def make_function(i):
    """A fresh function (a new closure each time) with a tape of about 150 records and
    a few hundred slots: scalar ops, a branch, and ranged array records."""
    c = 1.0 + (i % 13) / 7.0

    def f(x, a):
        s = x * c
        for _ in range(40):
            s = np.sin(s) + x * 0.5
        if s > 0:
            s = s * s
        return s + np.sum(np.exp(a * c) * a) + np.max(a)

    return f


def under_asan():
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


@pytest.mark.skipif(under_asan(), reason="AddressSanitizer's quarantine keeps freed memory "
                    "mapped, so RSS says nothing about leaks there")
def test_10000_trace_call_discard_cycles_keep_rss_flat():
    a = np.linspace(-1.0, 1.0, 64)

    def cycle(i):
        g = fd.value_and_grad(make_function(i), argnums=(0, 1)) if i % 2 else \
            fd.grad(make_function(i), argnums=(0, 1))
        g(0.3, a)            # traces
        g(0.4, a)            # replays
        return g

    for i in range(1000):    # warm up free lists, allocator arenas, numpy caches
        cycle(i)
    gc.collect()
    before = rss_bytes()
    for i in range(10_000):
        cycle(i)
    gc.collect()
    grown = rss_bytes() - before
    # one leaked tape per cycle would be well over 100 MB
    assert grown < 10 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB over 10,000 cycles"


def test_tapes_die_with_the_compiled_function():
    def f(x, k):
        return x * x if x > 0 else -x * k         # two tapes per signature (guards)

    g = fd.grad(f)
    for k in (1, 2, 3):                            # three signatures
        g(1.0, k)
        g(-1.0, k)
    tapes = [weakref.ref(t) for t in g.tapes()]
    assert len(tapes) == 6
    del g
    gc.collect()
    assert all(t() is None for t in tapes)


def test_tapes_die_without_the_cycle_collector():
    g = fd.grad(lambda x: np.sin(x) * x)
    g(1.0)
    t = weakref.ref(g.tapes()[0])
    gc.disable()
    try:
        del g
        assert t() is None, "a reference cycle keeps a tape alive until gc runs"
    finally:
        gc.enable()


def test_cache_clear_and_eviction_free_tapes():
    g = fd.grad(lambda x, k: x * k)
    g(1.0, 0)
    first = weakref.ref(g.tapes()[0])
    for k in range(1, 70):                         # 64 signatures kept: 0 is evicted
        g(1.0, k)
    gc.collect()
    assert first() is None
    rest = [weakref.ref(t) for t in g.tapes()]
    g.cache_clear()
    gc.collect()
    assert all(t() is None for t in rest)


def test_tape_of_a_failed_trace_is_freed():
    def f(x):
        y = np.exp(x) * x  # noqa: F841 (the test reads y from this frame to find the tape)
        raise ValueError("midway")

    g = fd.grad(f)
    tapes = []
    for _ in range(3):
        try:
            g(1.0)
        except ValueError as exc:
            tb = exc.__traceback__
            while tb.tb_next:
                tb = tb.tb_next
            tapes.append(weakref.ref(tb.tb_frame.f_locals["y"].tape))
            del exc, tb
    gc.collect()
    assert g.cache_info()["tapes"] == 0
    assert all(t() is None for t in tapes)


def test_escaped_traced_value_keeps_only_its_tape():
    kept = []

    def f(x):
        kept.append(x * 2.0)
        return x * 3.0

    g = fd.grad(f)
    assert g(1.0) == 3.0
    t = weakref.ref(kept[0].tape)
    del g
    gc.collect()
    assert t() is not None                      # the escaped value still refers to it
    with pytest.raises(fd.EscapedTracerError):
        kept[0] + 1.0
    kept.clear()
    gc.collect()
    assert t() is None


@pytest.mark.parametrize("api", ["jvp", "vjp"])
def test_jvp_and_vjp_caches_die_with_the_function(api):
    def make(c):
        return lambda x: np.sum(x * x * c)

    f = make(2.0)
    if api == "jvp":
        fd.jvp(f, (np.ones(3),), (np.ones(3),))
    else:
        fd.vjp(f, np.ones(3))[1](1.0)
    alive = weakref.ref(f)
    del f
    gc.collect()
    assert alive() is None


def test_other_wrappers_free_fresh_functions():
    """Every other entry point keeps nothing of a function once its wrapper is gone."""
    a = np.linspace(0.1, 1.0, 5)
    calls = [
        lambda f: fd.grad(f)(a), lambda f: fd.value_and_grad(f)(a),
        lambda f: fd.jacfwd(f)(a), lambda f: fd.jacrev(f)(a), lambda f: fd.jacobian(f)(a),
        lambda f: fd.hessian(f)(a), lambda f: fd.hvp(f)(a, a),
        lambda f: fd.grad(lambda x: np.sum(fd.grad(f)(x)))(a),
        lambda f: fd.grad(lambda x: (f(x), 1.0), has_aux=True)(a),
        lambda f: fd.grad(lambda d: f(d["x"]))({"x": a}),
        lambda f: fd.record(f, a).reverse(),
    ]
    for k, call in enumerate(calls):
        def f(x, c=1.0 + k):
            return np.sum(np.sin(x * c) * x) + x[0] * x[1]
        call(f)
        alive = weakref.ref(f)
        del f
        gc.collect()
        assert alive() is None, f"entry point {k} keeps the function alive"


# -------------------------------------------------------------------- index width, memory

def huge_ranged(n):
    """A traced function whose one array op asks for n result slots at once: the tape
    is tiny, so the size checks must refuse it before allocating."""
    def f(x, big):
        if big:
            x.tape.op_ranged(OPS["sin"], x.slot, 0, x.slot, 0, n)    # never returns
        return np.sin(x) * x
    return f


def test_tape_past_the_index_width_raises_overflow_and_fastad_stays_usable():
    g = fd.grad(huge_ranged(2**31 - 1))
    with pytest.raises(OverflowError, match=r"more than 2\*\*31 - 1 slots"):
        g(0.5, True)
    assert g.cache_info()["tapes"] == 0          # no half tape kept
    assert g(0.5, False) == pytest.approx(np.cos(0.5) * 0.5 + np.sin(0.5))
    assert fd.grad(lambda x: x * x)(3.0) == 6.0


def test_structural_records_past_the_index_width_raise_overflow():
    def f(x, which):
        t, s = x.tape, x.slot
        if which == "sum":
            t.reduce(OPS["sum"], s, 2**20, 2**12)                # 2**32 elements
        elif which == "matmul":
            t.matmul(s, s, 2**16, 2**16, 1)                       # a 2**32-element operand
        return x

    g = fd.grad(f)
    for which in ("sum", "matmul"):
        with pytest.raises(OverflowError):
            g(0.5, which)
    assert g(0.5, "none") == 1.0


def test_index_width_is_checked_exactly_at_the_boundary():
    """A ranged op that would make the slot count exactly 2**31 is refused; the largest
    count the int32 fields can address is 2**31 - 1."""
    def f(x):
        free = 2**31 - 1 - x.tape.n_slots
        with pytest.raises(OverflowError):
            x.tape.op_ranged(OPS["sin"], x.slot, 0, x.slot, 0, free + 1)
        return x * 2.0

    assert fd.grad(f)(1.0) == 2.0


MEMORY_CHILD = textwrap.dedent("""
    import os, resource, sys
    import numpy as np
    import fastad as fd
    from fastad._tape import op_table

    OPS = {name: code for code, (name, kind) in enumerate(op_table())}
    if "libasan" not in open("/proc/self/maps").read():
        # address space: what the process has now plus 256 MB; the tape below asks for
        # 2 GB of values, so its allocation fails without touching any memory
        page = os.sysconf("SC_PAGE_SIZE")
        size = int(open("/proc/self/statm").read().split()[0]) * page
        resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.RLIM_INFINITY))
    # (under AddressSanitizer, ASAN_OPTIONS makes allocations over 1 GB return NULL)

    def f(x, big):
        if big:
            x.tape.op_ranged(OPS["sin"], x.slot, 0, x.slot, 0, 200_000_000)
        return np.sin(x) * x

    g = fd.grad(f)
    try:
        g(0.5, True)
    except MemoryError as exc:
        print("MemoryError:", exc)
    else:
        sys.exit("no MemoryError")
    assert g.cache_info()["tapes"] == 0
    assert abs(g(0.5, False) - (np.cos(0.5) * 0.5 + np.sin(0.5))) < 1e-15
    assert fd.grad(lambda x: np.sum(x * x))(np.ones(1000)).sum() == 2000.0
    print("usable")
""")


def test_tape_out_of_memory_raises_memoryerror_and_fastad_stays_usable():
    env = dict(os.environ)
    # under tools/sanitize.sh: big allocations fail instead of aborting, and ASan's warning
    # about the refused allocation goes to the child's stderr, not to the report logs
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1"
                           ":max_allocation_size_mb=1024:log_path=stderr").lstrip(":")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MemoryError: fastad: out of memory growing the tape" in proc.stdout
    assert "usable" in proc.stdout
