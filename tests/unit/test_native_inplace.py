"""Native code reading a gradient's input array in place and writing the gradient straight
into the result (docs/native.md, "Inputs read in place").  The in-place sweeps are the
workspace sweeps' code with other pointers, so every result is compared bit for bit with
the copying path of the same tape (a strided or byte-swapped input takes it), with the
tape's own sweeps, and with the interpreter and the closed form (reference.rosen_grad) to
the tolerances of tests/unit/test_fusion.py."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastad as fd
from native_env import cache_dir, same  # noqa: F401  (the module's private cache)
from reference import rosen, rosen_grad


@pytest.fixture(autouse=True)
def fuse_short_chains(monkeypatch):
    """Fuse chains of any length (the default fuses from 32768 elements): short arrays
    test the same code quickly and reach the tile edges."""
    monkeypatch.setenv("FASTAD_FUSE_MIN_N", "1")


def native():
    from fastad import native as nat
    if nat.compiler()[0] is None:
        pytest.skip("no C compiler: the native tier is off")
    return nat


def rosen_vec(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def strided(x):
    """The same values in a non-contiguous array (the copying path)."""
    buf = np.zeros(2 * x.size)
    buf[::2] = x
    return buf[::2]


def source_of(g):
    from fastad import _codegen, _native
    tape = g.tapes()[0]
    return _codegen.generate(_native.raw_records(tape), "k", ("fwd", "rev"),
                             chains=native().compiled_chains(tape), nin=tape.n_inputs)


N = 3001        # above the 2000 slots from which sweeps release the GIL


def test_inplace_is_the_copying_path_bit_for_bit():
    nat = native()
    x = np.linspace(-1.2, 1.3, N)
    g = fd.value_and_grad(rosen_vec, native="always")
    g(x)
    assert "fastad_fwd_x" in source_of(g) and "fastad_rev_x" in source_of(g)
    tape = g.tapes()[0]
    assert nat.tier(tape) == "native"
    for xx in (x, np.cos(3 * x), np.full(N, np.nan), np.zeros(N), -np.ones(N) * 1e200):
        v, gr = g(xx)                       # in place
        vc, gc = g(strided(xx))             # copied into the workspace
        assert same(v, vc) and same(gr, gc)
        assert same(v, tape.forward(xx)) and same(gr, tape.reverse())   # the tape's sweeps
        vi, gi = fd.value_and_grad(rosen_vec, native="never")(xx)
        assert same(v, vi)
        if np.isfinite(xx).all() and np.abs(xx).max() < 1e3:
            np.testing.assert_allclose(gr, gi, rtol=1e-14, atol=0)
            np.testing.assert_allclose(gr, rosen_grad(xx), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(v, rosen(xx), rtol=1e-12)
    # grad, argnums as a tuple, jacobian's (copying) sweeps on the same kind of code
    gg = fd.grad(rosen_vec, native="always")
    assert same(gg(x), g(x)[1])
    gt = fd.grad(rosen_vec, argnums=(0,), native="always")(x)
    assert isinstance(gt, tuple) and same(gt[0], g(x)[1])
    assert same(fd.jacobian(rosen_vec, native="always")(x), g(x)[1])


def test_tangents_and_hvp_unchanged():
    native()
    x = np.linspace(-1.2, 1.3, N)
    v = np.sin(x)
    a = fd.jvp(rosen_vec, (x,), (v,))
    b = fd.jvp(rosen_vec, (strided(x),), (v,))
    assert same(a[0], b[0]) and same(a[1], b[1])
    h = fd.hvp(rosen_vec, native="always")(x, v)
    hi = fd.hvp(rosen_vec, native="never")(x, v)
    np.testing.assert_allclose(h, hi, rtol=1e-14, atol=0)


def test_results_never_alias_the_input_or_the_tape():
    native()
    g = fd.value_and_grad(rosen_vec, native="always")
    x = np.linspace(-1.0, 1.0, N)
    ref0 = g(strided(x))
    v0, g0 = g(x)
    assert not np.shares_memory(g0, x)
    x2 = x.copy()
    x[:] = 0.5                              # the caller reuses its array
    assert same(g0, ref0[1]) and same(v0, ref0[0])
    v1, g1 = g(x)
    assert not np.shares_memory(g1, g0)
    np.testing.assert_allclose(g1, rosen_grad(np.full(N, 0.5)), rtol=1e-12, atol=1e-12)
    g1[:] = 7.0                             # the caller scribbles on the gradient
    assert same(g(x2)[1], ref0[1]) and same(g0, ref0[1])


@pytest.mark.parametrize("conv", [
    lambda x: x.astype(np.float32),                     # converted: float32 values
    lambda x: x.astype(">f8"),                          # byte-swapped float64
    lambda x: strided(x),                               # non-contiguous
    lambda x: x[::-1].copy()[::-1],                     # a reversed view
])
def test_other_arrays_take_the_copying_path(conv):
    native()
    g = fd.value_and_grad(rosen_vec, native="always")
    x = np.linspace(-1.0, 1.3, N)
    xc = conv(x)
    want = g(np.asarray(xc, dtype=np.float64).copy())
    got = g(xc)
    assert same(got[0], want[0]) and same(got[1], want[1])


def test_misaligned_array_is_copied():
    native()
    g = fd.value_and_grad(rosen_vec, native="always")
    x = np.linspace(-1.0, 1.3, N)
    raw = np.zeros(N * 8 + 1, dtype=np.uint8)
    xm = raw[1:].view(np.float64)           # not aligned to 8 bytes
    xm[:] = x
    assert not xm.flags.aligned
    a, b = g(xm), g(x.copy())
    assert same(a[0], b[0]) and same(a[1], b[1])


def test_int_input_is_promoted():
    native()
    g = fd.grad(rosen_vec, native="always")
    xi = np.arange(-1500, 1501) % 5 - 2
    assert same(g(xi), g(xi.astype(np.float64)))


def test_tapes_reading_inputs_elsewhere_stay_copying():
    native()

    def f(x):       # x[0] * x[1]: scalar records read input slots
        return rosen_vec(x) + x[0] * x[1]

    g = fd.value_and_grad(f, native="always")
    x = np.linspace(-1.0, 1.3, N)
    g(x)
    assert "fastad_fwd_x" not in source_of(g)
    v, gr = g(x)
    want = rosen_grad(x)
    want[0] += x[1]
    want[1] += x[0]
    np.testing.assert_allclose(gr, want, rtol=1e-12, atol=1e-12)
    vi, gi = fd.value_and_grad(f, native="never")(x)
    assert same(v, vi)
    np.testing.assert_allclose(gr, gi, rtol=1e-14, atol=0)


def test_two_arguments_take_the_copying_path():
    native()

    def f(x, c):
        return np.sum((x - c) ** 2 * c)

    x, c = np.linspace(-1.0, 1.0, N), np.linspace(0.5, 2.0, N)
    g = fd.grad(f, native="always")
    np.testing.assert_allclose(g(x, c), 2 * (x - c) * c, rtol=1e-14)
    gs = fd.grad(f, argnums=1, native="always")
    np.testing.assert_allclose(gs(x, c), (x - c) ** 2 - 2 * (x - c) * c, rtol=1e-13, atol=1e-15)


def test_threads_replay_in_place():
    native()
    g = fd.value_and_grad(rosen_vec, native="always")
    xs = [np.linspace(-0.5, 1.0, N) + 0.01 * k for k in range(8)]
    g(xs[0])
    ref = [g(strided(x)) for x in xs]
    with ThreadPoolExecutor(4) as ex:
        out = list(ex.map(g, xs * 4))
    for (a, b), (c, d) in zip(out, ref * 4):
        assert same(a, c) and same(b, d)


def test_one_pass_and_two_pass_code():
    """A tape that is one fused chain ending in its sum is swept in one pass (fastad_vg_x);
    a record after the chain (here a guard on the sum and a product) needs the forward
    sweep first, and a guard that flips retraces as on the copying path."""
    native()

    def branchy(x):
        s = rosen_vec(x)
        return s * 2.0 if s > 1000.0 else s * 3.0

    g1 = fd.value_and_grad(rosen_vec, native="always")
    g1(np.linspace(-1.0, 1.0, N))
    assert "fastad_vg_x" in source_of(g1)
    g2 = fd.value_and_grad(branchy, native="always")
    x = np.linspace(-1.0, 1.0, N)
    g2(x)
    src = source_of(g2)
    assert "fastad_fwd_x" in src and "fastad_vg_x" not in src
    small = np.full(N, 1.0) + 1e-4 * np.sin(np.arange(N))     # sum < 1000: the other branch
    for xx in (x, small, x):
        v, gr = g2(xx)
        vc, gc = g2(strided(xx))
        assert same(v, vc) and same(gr, gc)
        k = 2.0 if rosen(xx) > 1000.0 else 3.0
        np.testing.assert_allclose(gr, k * rosen_grad(xx), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(v, k * rosen(xx), rtol=1e-12)
    assert g2.cache_info()["retraces"] >= 1
