"""Threads: one compiled function replayed from many threads at once, and several threads
tracing at once.

The sweeps of a tape with 2000 records or more run with the GIL released, so replays of
the scalar-loop Rosenbrock (n = 1000: about 8000 records) from four threads really do
overlap; a concurrent replay of a tape whose main workspace is busy gets a private one.
Every result must be bit-for-bit the result of the same call made serially.

Tracing state lives in the tape being recorded (no module-level "current trace"), so
threads tracing different functions, or the same function, at once each get their own
tape.  A short switch interval makes the interpreter interleave the traces finely.
"""
import sys
import threading

import numpy as np
import pytest

import fastad as fd

N_THREADS = 4


def rosen(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_branchy(x):
    # two tapes (guards on x[0] and on the running sum): concurrent calls with both
    # outcomes reorder the signature's tape list while other threads sweep its tapes
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    if x[0] > 0:
        s = s * x[0]
    else:
        s = s - x[0]
    return s


@pytest.fixture
def fine_switching():
    """Switch threads every 10 us instead of 5 ms while the test runs."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def run_threads(work, n=N_THREADS):
    """Run work(k) in n threads started together; return their results in order, and
    re-raise the first exception a thread raised."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def body(k):
        try:
            barrier.wait()
            results[k] = work(k)
        except BaseException as exc:      # noqa: BLE001 -- re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


def inputs(n, count, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2.0, 2.0, n) for _ in range(count)]


@pytest.mark.parametrize("wrap", [fd.grad, fd.value_and_grad])
def test_replay_from_four_threads_equals_serial(wrap):
    g = wrap(rosen)
    xs = inputs(1000, 64, seed=1)
    g(xs[0])
    assert g.tapes()[0].n_slots > 2000       # big enough for the nogil sweeps
    serial = [g(x) for x in xs]

    def work(k):
        out = []
        for _rep in range(6):
            for j in range(len(xs)):
                j = (j + 16 * k) % len(xs)   # the threads call with different inputs
                out.append((j, g(xs[j])))
        return out

    for out in run_threads(work):
        assert len(out) == 6 * len(xs)
        for j, res in out:
            if wrap is fd.grad:
                np.testing.assert_array_equal(res, serial[j])
            else:
                assert res[0] == serial[j][0]
                np.testing.assert_array_equal(res[1], serial[j][1])
    info = g.cache_info()
    assert info["traces"] == 1 and info["tapes"] == 1, info


def test_jvp_from_four_threads_equals_serial():
    xs = inputs(1000, 32, seed=2)
    vs = inputs(1000, 32, seed=3)
    fd.jvp(rosen, (xs[0],), (vs[0],))
    serial = [fd.jvp(rosen, (x,), (v,)) for x, v in zip(xs, vs)]

    def work(k):
        return [(j, fd.jvp(rosen, (xs[j],), (vs[j],)))
                for rep in range(4) for j in range(len(xs))]

    for out in run_threads(work):
        for j, res in out:
            assert res == serial[j]


def test_replay_with_retraces_from_four_threads(fine_switching):
    """Guards failing in some threads while others sweep: results still equal serial."""
    g = fd.value_and_grad(rosen_branchy)
    xs = inputs(1000, 32, seed=4)
    for j, x in enumerate(xs):
        x[0] = abs(x[0]) + 0.1 if j % 2 else -abs(x[0]) - 0.1
    g(xs[0])
    g(xs[1])                                  # both branches traced
    serial = [g(x) for x in xs]
    assert g.cache_info()["tapes"] == 2

    def work(k):
        return [(j, g(xs[j])) for rep in range(3) for j in range(k % 2, len(xs), 1)]

    for out in run_threads(work):
        for j, (v, grad) in out:
            assert v == serial[j][0]
            np.testing.assert_array_equal(grad, serial[j][1])
    # no duplicate tapes: a thread whose tape list another thread reorders mid-sweep
    # still tries every tape once
    info = g.cache_info()
    assert info["traces"] == 2 and info["tapes"] == 2, info


def make_program(k):
    """Thread k's own function (different structure per thread) and its exact gradient."""
    c = 1.0 + k

    def scalar(x, y):
        s = x * y
        for _ in range(20 + k):
            s = np.sin(s) * c + y
        return s

    def array(x):
        return np.sum(np.exp(c * x) * x) + np.prod(x[:3]) if k % 2 else np.sum(x ** 3 * c)

    return scalar, array


def reference(k, x, y, a):
    """The same gradients, by the same formulas written out by hand."""
    c = 1.0 + k
    s, ds_dx, ds_dy = x * y, y, x
    for _ in range(20 + k):
        cs = np.cos(s)
        s, ds_dx, ds_dy = np.sin(s) * c + y, c * cs * ds_dx, c * cs * ds_dy + 1.0
    if k % 2:
        ga = np.exp(c * a) * (1.0 + c * a)
        ga[:3] += np.array([a[1] * a[2], a[0] * a[2], a[0] * a[1]])
    else:
        ga = 3.0 * c * a ** 2
    return (ds_dx, ds_dy), ga


def test_threads_tracing_different_functions(fine_switching):
    rng = np.random.default_rng(5)
    points = [(rng.uniform(0.1, 1.0), rng.uniform(0.1, 1.0), rng.uniform(-1, 1, 7))
              for _ in range(8)]

    def work(k):
        out = []
        for rep in range(15):
            scalar, array = make_program(k)       # fresh functions: every call traces
            gs = fd.grad(scalar, argnums=(0, 1))
            ga = fd.grad(array)
            for x, y, a in points[rep % 4::4]:
                out.append(((x, y, a), gs(x, y), ga(a)))
            assert gs.cache_info()["traces"] == 1 and ga.cache_info()["traces"] == 1
        return out

    for k, out in enumerate(run_threads(work)):
        for (x, y, a), gs, ga in out:
            want_s, want_a = reference(k, x, y, a)
            np.testing.assert_allclose(gs, want_s, rtol=1e-12)
            np.testing.assert_allclose(ga, want_a, rtol=1e-12)


def test_threads_tracing_one_function(fine_switching):
    """One compiled function, replay=False: every call from every thread traces, on its
    own tape, and keys by a static argument land in one shared signature cache."""
    def f(x, k):
        s = x
        for _ in range(30):
            s = s * x + float(k)
        return s

    def df(x, k):
        s, d = x, 1.0
        for _ in range(30):
            s, d = s * x + k, d * x + s
        return d

    g_fresh = fd.grad(f, replay=False)
    g_cached = fd.grad(f)
    xs = np.linspace(-0.9, 0.9, 12)

    def work(k):
        out = []
        for x in xs:
            out.append((k, x, g_fresh(float(x), k), g_cached(float(x), k)))
        return out

    for out in run_threads(work):
        for k, x, a, b in out:
            assert a == b
            assert a == pytest.approx(df(x, k), rel=1e-12)
    assert g_fresh.cache_info()["traces"] == N_THREADS * len(xs)
    assert g_cached.cache_info()["signatures"] == N_THREADS
    assert g_cached.cache_info()["traces"] == N_THREADS


def test_replay_while_other_threads_trace(fine_switching):
    """Replays of a big tape (nogil sweeps) overlapping with traces in other threads."""
    g = fd.grad(rosen)
    xs = inputs(1000, 16, seed=6)
    serial = [g(x) for x in xs]

    def work(k):
        if k % 2:
            return [("replay", j, g(xs[j])) for rep in range(4) for j in range(len(xs))]
        out = []
        for j in range(6):
            h = fd.grad(lambda x, j=j: rosen(x[: 50 + j]))     # a fresh trace each time
            out.append(("trace", j, h(xs[j])))
        return out

    for out in run_threads(work):
        for kind, j, res in out:
            if kind == "replay":
                np.testing.assert_array_equal(res, serial[j])
            else:
                want = np.zeros(1000)
                want[: 50 + j] = g(xs[j][: 50 + j])
                np.testing.assert_allclose(res, want, rtol=1e-13)


# ---------------------------------------------------------------- nested derivatives, callbacks

def test_threads_nesting_derivatives_at_once(fine_switching):
    """Each thread keeps its own stack of open traces: a derivative taken inside a traced
    function records into that thread's tape, never another thread's."""
    rng = np.random.default_rng(7)
    points = [rng.uniform(-1.0, 1.0, 4) for _ in range(3)]

    def work(k):
        c = 1.0 + k
        out = []
        for rep in range(6):
            def f(x, c=c):                          # fresh each time: every call traces
                return np.sum(c * x ** 3) + x[0] * x[1]
            x = points[rep % 3]
            inner = fd.grad(lambda y: np.sum(fd.grad(f)(y) * y))(x)   # grad of grad
            out.append((x, fd.hessian(f)(x), inner))
        return k, out

    for k, out in run_threads(work):
        c = 1.0 + k
        for x, hess, inner in out:
            want = np.diag(6.0 * c * x)
            want[0, 1] = want[1, 0] = 1.0
            np.testing.assert_allclose(hess, want, rtol=1e-13, atol=1e-15)
            # d/dy sum(grad f(y) * y) = H y + grad f(y)
            gradf = 3.0 * c * x ** 2 + np.array([x[1], x[0], 0.0, 0.0])
            np.testing.assert_allclose(inner, want @ x + gradf, rtol=1e-13, atol=1e-15)


def custom_sqrt():
    @fd.custom_vjp
    def h(x):
        if x < 0:
            raise ValueError(f"negative {float(x)!r}")
        return np.sqrt(x)

    h.defvjp(lambda x: (h(x), x), lambda x, g: (g * 0.5 / np.sqrt(x),))
    return h


def rosen_with_callback(h):
    def f(x):
        return rosen(x) + h(x[0] * x[0] + x[1])
    return f


def test_replay_with_callbacks_from_four_threads():
    """custom_vjp records call back into Python from the nogil sweeps (taking the GIL)."""
    g = fd.value_and_grad(rosen_with_callback(custom_sqrt()))
    xs = inputs(1000, 16, seed=8)
    for x in xs:
        x[1] = abs(x[1]) + 0.5
    serial = [g(x) for x in xs]

    def work(k):
        return [(j, g(xs[j])) for rep in range(6) for j in range(len(xs))]

    for out in run_threads(work):
        for j, (v, grad) in out:
            assert v == serial[j][0]
            np.testing.assert_array_equal(grad, serial[j][1])
    assert g.cache_info()["traces"] == 1
