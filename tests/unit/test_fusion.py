"""Fusion of elementwise chains (docs/design.md, "Fusion"): which records are fused, and
fused sweeps against the same tape swept record by record (FASTAD_FUSE=0), which is the
reference here -- every derivative of it is tested against closed forms elsewhere.  The
fused sweeps run the records' own rules in the records' own order per element, so they
agree bit for bit, except for a chain's final sum (added in lanes) and what depends on its
value, and the adjoints of slots reached through shifted views (docs/conventions.md,
"Fused chains"), checked to 1e-13."""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastad as fd
from reference import rosen, rosen_grad

RTOL = 1e-13


@pytest.fixture(autouse=True)
def fuse_short_chains(monkeypatch):
    """Transforms fuse only chains of FA_FUSE_MIN_N (32768) elements or more; these tests
    run the same machinery on short arrays, which is quicker and reaches the tile edges."""
    monkeypatch.setenv("FASTAD_FUSE_MIN_N", "1")


def test_default_fuses_only_long_chains(monkeypatch):
    """By default a chain shorter than 32768 elements is left unfused (its arrays fit the
    caches, where tiles cost more than the passes they save); a longer one is fused; a
    chain ending in its sum is fused from 8192 elements (its lanes save the running sum's
    latency, and native code of it runs in registers)."""
    monkeypatch.delenv("FASTAD_FUSE_MIN_N")
    for n, chains in ((40000, 1), (10000, 0)):       # no final sum
        tape = fd.record(lambda x: (np.tanh(x) * x + 1.0)[3], np.linspace(-1.0, 1.0, n))
        tape.optimize()
        assert tape.optimized["fused_chains"] == chains
    for n, chains in ((1000, 0), (8000, 0), (10000, 1), (40000, 1)):
        g = fd.value_and_grad(rosen)
        x = np.linspace(-1.0, 1.0, n)
        v, grad = g(x)
        assert g.tapes()[0].optimized["fused_chains"] == chains
        assert v == pytest.approx(rosen(x), rel=1e-13)
        np.testing.assert_allclose(grad, rosen_grad(x), rtol=1e-13, atol=1e-12)


def tapes(fun, *args, keep=()):
    """fun's tape fused, and the same recording unfused."""
    fused, plain = fd.record(fun, *args), fd.record(fun, *args)
    fused.optimize(keep, fuse=True)
    plain.optimize(keep, fuse=False)
    return fused, plain


def same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(b), initial=0)))


def unfused(make):
    """A transform built with fusion off (read when its first call optimizes the tape)."""
    old = os.environ.get("FASTAD_FUSE")
    os.environ["FASTAD_FUSE"] = "0"
    try:
        return make()
    finally:
        if old is None:
            del os.environ["FASTAD_FUSE"]
        else:
            os.environ["FASTAD_FUSE"] = old


def both(make, *args):
    """make()(*args) fused and unfused."""
    a = make()(*args)
    b = unfused(lambda: make()(*args))
    return a, b


def rosen_vec(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def chain(x):
    # transcendental ops (numpy's SIMD loops), a broadcast constant, a final sum
    y = np.exp(0.1 * x) * np.tanh(x) + np.log1p(x * x) / (2.0 + np.sin(x))
    return np.sum(np.sqrt(y * y + 1.0))


# ---------------------------------------------------------------------- planning

def test_vectorized_rosenbrock_is_one_chain_with_nothing_written():
    x = np.linspace(-1.5, 1.5, 3001)
    tape, _ = tapes(rosen_vec, x)
    o = tape.optimized
    assert o["fused_chains"] == 1 and o["fused_records"] == 8 and o["fused_sums"] == 1
    assert o["fused_live"] == 0 and o["words_after_fusion"] == 2
    (first, end, live), = tape.fused_chains()
    assert (first, end) == (0, 16) and live == [False] * 7 + [True]   # the sum: the output
    assert tape.forward(x) == pytest.approx(rosen(x), rel=1e-13)
    close(tape.reverse(), rosen_grad(x), rtol=1e-12)


def test_intermediate_read_outside_is_written():
    def f(x):
        y = np.sin(x) * x            # read again below by a view at an offset
        z = np.cos(y) + y
        return np.sum(z * z) + y[3] * np.sum(y[1:] * 2.0)
    x = np.linspace(-2.0, 2.0, 1200)
    tape, plain = tapes(f, x)
    chains = tape.fused_chains()
    assert chains and any(any(live) for _, _, live in chains)
    close(tape.forward(x), plain.forward(x))     # sums in lanes; y[3]'s adjoint reads one
    close(tape.reverse(), plain.reverse())


def test_kept_slot_is_written_and_aux_returned():
    def f(x):
        y = np.tanh(x) * 3.0
        return np.sum(y * y), y
    x = np.linspace(-1.0, 1.0, 700)
    (v1, aux1), g1 = fd.value_and_grad(f, has_aux=True)(x)
    (v0, aux0), g0 = unfused(lambda: fd.value_and_grad(f, has_aux=True))(x)
    same(aux1, np.tanh(x) * 3.0)
    same(aux1, aux0)
    same(v1, v0)
    same(g1, g0)


def test_offset_read_inside_ends_the_chain():
    def f(x):
        y = np.exp(x) + 1.0
        return np.sum(y[1:] * y[:-1])  # y at an offset: not a chain read
    x = np.linspace(0.0, 1.0, 100)
    tape, plain = tapes(f, x)
    for _first, _end, live in tape.fused_chains():
        assert all(isinstance(b, bool) for b in live)
    same(tape.forward(x), plain.forward(x))
    same(tape.reverse(), plain.reverse())


def test_optimize_false_and_fuse_off_do_not_fuse():
    x = np.linspace(0.0, 1.0, 50)
    g = fd.value_and_grad(rosen_vec, optimize=False)
    g(x)
    assert "fused" not in str(g.info())
    g = fd.value_and_grad(rosen_vec)
    g(x)
    assert "fused 1 elementwise chain" in str(g.info())
    tape, plain = tapes(rosen_vec, x)
    assert plain.fused_chains() == [] and plain.optimized["fused_chains"] == 0


def test_trace_says_what_is_fused():
    text = str(fd.trace(rosen_vec, np.linspace(0.0, 1.0, 20)))
    assert "fused 1 elementwise chain" in text
    assert "subtract" in text           # the records as recorded


# ---------------------------------------------------------------------- sweeps

@pytest.mark.parametrize("n", [1, 5, 17, 512, 513, 2100])
def test_chain_bit_for_bit(n):
    x = np.linspace(-0.9, 1.7, n)
    tape, plain = tapes(chain, x)
    assert tape.optimized["fused_chains"] >= 1
    for xx in (x, x[::-1] * 1.3):
        close(tape.forward(xx), plain.forward(xx))      # the final sum, in lanes
        if n < 3:                                       # lanes reassociate from 3 terms
            same(tape.forward(xx), plain.forward(xx))
        same(tape.reverse(), plain.reverse())
        d = np.cos(3.0 * xx)
        close(tape.tangent(d), plain.tangent(d))
        same(tape.reverse(2.5), plain.reverse(2.5))


def test_transforms_against_unfused():
    x = np.linspace(-0.9, 1.7, 40)
    v = np.sin(np.arange(40.0))
    a, b = both(lambda: fd.value_and_grad(chain), x)
    close(a[0], b[0])
    same(a[1], b[1])
    a, b = both(lambda: fd.hvp(chain), x, v)
    same(a, b)
    a, b = both(lambda: fd.hessian(chain), x)
    same(a, b)
    a, b = both(lambda: (lambda x: fd.jvp(chain, (x,), (v,))[1]), x)
    close(a, b)
    nested = lambda: fd.grad(lambda x: np.sum(fd.grad(chain)(x) ** 2))
    a, b = both(nested, x)
    close(a, b)
    # the Rosenbrock's shifted views: the documented reordering, to 1e-13
    a, b = both(lambda: fd.value_and_grad(rosen_vec), np.linspace(-1.2, 1.3, 5000))
    close(a[0], b[0])
    close(a[1], b[1])
    a, b = both(lambda: fd.hessian(rosen_vec), x)
    close(a, b)


def test_jacobian_of_an_array_output():
    def f(x):
        return np.tanh(x) * x + np.exp(-x * x)
    x = np.linspace(-2.0, 2.0, 30)
    a, b = both(lambda: fd.jacrev(f), x)
    same(a, b)
    close(np.diag(a), (1 - np.tanh(x) ** 2) * x + np.tanh(x) - 2 * x * np.exp(-x * x))
    a, b = both(lambda: fd.jacfwd(f), x)
    same(a, b)


def test_broadcast_scalar_parameter():
    def f(x, c):
        return np.sum(np.exp(c * x) - c * np.sin(x)) * c
    x, c = np.linspace(-1.0, 1.0, 1500), 0.7
    a, b = both(lambda: fd.value_and_grad(f, (0, 1)), x, c)
    close(a[0], b[0])           # sum in lanes, and d/dc reads it
    same(a[1][0], b[1][0])
    close(a[1][1], b[1][1])
    # d/dc against the closed form
    ref = np.sum(np.exp(c * x) - c * np.sin(x)) + c * np.sum(x * np.exp(c * x) - np.sin(x))
    assert a[1][1] == pytest.approx(ref, rel=1e-12)


def test_gather_inside_a_chain():
    idx = np.array([3, 0, 0, 7, 2, 9, 9, 9, 1] * 70)
    def f(x):
        y = x[idx] * 2.0 + 1.0
        return np.sum(np.sin(y) * y)
    x = np.linspace(-1.0, 1.0, 10)
    a, b = both(lambda: fd.value_and_grad(f), x)
    close(a[0], b[0])
    close(a[1], b[1])
    y = x[idx] * 2.0 + 1.0
    ref = np.zeros(10)
    np.add.at(ref, idx, 2.0 * (np.cos(y) * y + np.sin(y)))
    close(a[1], ref, rtol=1e-12)


def test_nan_inf_and_zero_inputs():
    def f(x):
        return np.sum(0.0 * np.sqrt(x) + np.maximum(x, 0.5) * np.abs(x) + np.exp(-x))
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, 0.5, 2.0] * 80)
    tape, plain = tapes(f, x)
    assert tape.optimized["fused_chains"] >= 1
    np.testing.assert_array_equal(tape.forward(x), plain.forward(x))     # NaN either way
    np.testing.assert_array_equal(tape.reverse(), plain.reverse())
    d = np.ones_like(x)
    np.testing.assert_array_equal(tape.tangent(d), plain.tangent(d))
    a, b = both(lambda: fd.grad(f), np.abs(x))
    np.testing.assert_array_equal(a, b)
    assert a[1] == 0.0 or np.isnan(a[1]) == np.isnan(b[1])


def test_threads_share_a_fused_tape():
    g = fd.grad(chain)
    xs = [np.linspace(-0.5, 1.0, 3000) + 0.01 * k for k in range(8)]
    ref = [unfused(lambda: fd.grad(chain))(x) for x in xs]
    g(xs[0])
    with ThreadPoolExecutor(4) as ex:
        out = list(ex.map(g, xs))
    for a, b in zip(out, ref):
        same(a, b)


def _need_compiler():
    from fastad import native
    if native.compiler()[0] is None:
        pytest.skip("no C compiler: the native tier is off")
    return native


def test_native_code_agrees_with_fused_interpreter():
    native = _need_compiler()
    # transcendental ops: compiled record by record (numpy's SIMD values), never swapped
    # in under "auto" (docs/design.md, "Fusion")
    x = np.linspace(-0.9, 1.7, 700)
    g = fd.value_and_grad(chain, native="always")
    a = g(x)
    b = fd.value_and_grad(chain, native="never")(x)
    assert native.compiled_chains(g.tapes()[0]) == []
    close(a[0], b[0], rtol=1e-14)
    close(a[1], b[1], rtol=1e-14)
    auto = fd.value_and_grad(chain)         # another length: no cached code to load
    auto(np.linspace(-0.9, 1.7, 1701))
    assert "fused elementwise chains" in native.tier(auto.tapes()[0])


def test_native_fused_chain_is_one_loop():
    native = _need_compiler()
    from fastad import _codegen, _native
    x = np.linspace(-1.2, 1.3, 3001)
    g = fd.value_and_grad(rosen_vec, native="always")
    tape = g.tapes()[0] if g(x) is not None else None
    chains = native.compiled_chains(tape)
    assert len(chains) == 1
    src = _codegen.generate(_native.raw_records(tape), "k", ("fwd", "tan", "rev"), chains=chains)
    # one loop per sweep: forward and tangent in the sum's lanes, reverse over tiles
    assert src.count("k0 + FA_LANES <= 3000; k0 += FA_LANES)") == 2
    assert src.count("for (int64_t k0 = 0; k0 < 3000; k0 += 512)") == 1
    assert native.tier(tape) == "native"
    for xx in (x, np.cos(x)):
        a, b = g(xx), fd.value_and_grad(rosen_vec, native="never")(xx)
        same(a[0], b[0])
        close(a[1], b[1], rtol=1e-14)
        close(a[1], rosen_grad(xx), rtol=1e-12)
    v = np.sin(x)
    close(fd.hvp(rosen_vec, native="always")(x, v), fd.hvp(rosen_vec, native="never")(x, v),
          rtol=1e-14)
    f = lambda x: x * x * 3.0 - x
    same(fd.jacfwd(f, native="always")(x[:40]), fd.jacfwd(f, native="never")(x[:40]))


# ---------------------------------------------------------------------- generated programs

UNARY = [np.sin, np.tanh, np.exp, lambda u: u * u, lambda u: 0.5 * u, np.abs, np.cos,
         lambda u: np.sqrt(u * u + 1.0), np.arctan]
BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - 0.3 * b,
          lambda a, b: a / (1.5 + b * b), np.maximum, np.hypot]


@st.composite
def elementwise_programs(draw):
    body = draw(st.lists(st.tuples(st.integers(0, len(UNARY) - 1),
                                   st.integers(0, len(BINARY) - 1), st.integers(0, 4)),
                         min_size=1, max_size=7))
    n = draw(st.sampled_from([1, 3, 16, 100, 511, 700, 1100]))
    final = draw(st.sampled_from(["sum", "mean", "dot", "array"]))
    seed = draw(st.integers(0, 2 ** 16))
    return body, n, final, seed


def build(body, final):
    def terms(x, c):
        """The terms the final reduction adds."""
        vals = [x, c, x * c]
        # generated chains overflow and divide 0/0 on purpose (IEEE values are compared
        # too): numpy's warnings about it, when the reference runs on plain arrays, are noise
        with np.errstate(all="ignore"):
            for u, b, q in body:
                vals.append(BINARY[b](UNARY[u](vals[-1]), vals[-1 - q % len(vals)]))
        y = vals[-1] + 0.0 * x
        return y * x if final == "dot" else y

    def f(x, c):
        y = terms(x, c)
        if final in ("sum", "dot"):
            return np.sum(y)
        if final == "mean":
            return np.mean(y) * c
        return y
    f.terms = terms
    return f


def within(a, b, tol):
    """a and b equal (infinities included), both NaN, or at most tol apart."""
    a, b = float(a), float(b)
    return a == b or (np.isnan(a) and np.isnan(b)) or abs(a - b) <= tol


def sum_tol(t, scale=1.0):
    """How far two orders of adding the terms t may be apart: each is within
    (n - 1) u sum|t| of the exact sum (u the unit roundoff), whatever the order."""
    return 2.0 * len(t) * np.finfo(float).eps * float(np.sum(np.abs(t))) * abs(scale) + 1e-300


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elementwise_programs())
def test_generated_programs_bit_for_bit(prog):
    body, n, final, seed = prog
    f = build(body, final)
    r = np.random.default_rng(seed)
    x, c = r.normal(size=n), float(r.normal())
    if final != "array":
        tape, plain = tapes(f, x, c)
        assert tape.optimized["fused_chains"] >= 1
        xc = np.append(x, c)
        # the final sum in lanes (docs/conventions.md, "Fused chains"), within the bound
        # of any two summation orders (sum_tol), which holds even where the terms cancel
        scale = c / n if final == "mean" else 1.0
        assert within(tape.forward(xc), plain.forward(xc), sum_tol(f.terms(x, c), scale))
        ga, gb = tape.reverse(), plain.reverse()
        same(ga[:-1], gb[:-1])
        if final == "mean":     # d/dc reads the sum
            assert within(ga[-1], gb[-1],
                          2 * sum_tol(f.terms(x, c), 1.0 / n) + 1e-15 * abs(gb[-1]))
        else:
            same(ga[-1], gb[-1])
        d = r.normal(size=n + 1)
        dt = fd.jvp(f.terms, (x, c), (d[:-1], d[-1]))[1]
        tol = sum_tol(dt, scale)
        if final == "mean":     # the tangent of c / n reads the sum too
            tol += 2 * sum_tol(f.terms(x, c), d[-1] / n)
        assert within(tape.tangent(d), plain.tangent(d), tol)
    else:
        a, b = both(lambda: fd.jacrev(lambda x: f(x, c)), x[:7])
        same(a, b)
    if final == "sum" and n <= 100:
        g = lambda x: f(x, c)
        a, b = both(lambda: fd.hvp(g), x, np.cos(x))
        same(a, b)


def test_bad_fuse_min_n_says_what_to_set(monkeypatch):
    monkeypatch.setenv("FASTAD_FUSE_MIN_N", "many")
    with pytest.raises(ValueError, match="FASTAD_FUSE_MIN_N='many' is not a whole number"):
        fd.grad(rosen)(np.linspace(-1.0, 1.0, 10))


# ---------------------------------------------------------------------- the final sum's lanes

def lanes_sum(t):
    """The documented order of a fused chain's final sum (csrc/reduce.h, FA_LANES): lane j
    adds t[j], t[j + 8], ... in order; the lanes are added pairwise."""
    acc = [0.0] * 8
    for k, v in enumerate(t):
        acc[k % 8] += float(v)
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


def affine(x):
    return np.sum(x * 3.0 - 1.0)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 511, 512, 513, 1537])
def test_final_sum_adds_in_lanes(n):
    x = np.cos(np.arange(n) * 1.7) * 10.0 ** (np.arange(n) % 7)    # magnitudes 1 .. 1e6
    t = x * 3.0 - 1.0
    v, g = fd.value_and_grad(affine)(x)
    assert v == lanes_sum(t)                                      # bit for bit
    assert abs(v - math.fsum(t)) <= 2 * n * np.finfo(float).eps * np.sum(np.abs(t))
    same(g, np.full(n, 3.0))
    d = np.sin(np.arange(n) + 0.5)
    _, tv = fd.jvp(affine, (x,), (d,))
    assert tv == lanes_sum(np.where(d * 3.0 == 0.0, 0.0, d * 3.0))


@pytest.mark.parametrize("special,expect", [((np.inf,), np.inf), ((np.nan,), np.nan),
                                            ((np.inf, -np.inf), np.nan)])
def test_final_sum_lanes_propagate_nan_and_inf(special, expect):
    x = np.linspace(-1.0, 1.0, 1030)
    for k, s in enumerate(special):      # in different lanes and tiles
        x[3 + 517 * k] = s
    v = fd.value_and_grad(affine)(x)[0]
    assert (np.isnan(v) and np.isnan(expect)) or v == expect
    assert np.isnan(v) == np.isnan(lanes_sum(x * 3.0 - 1.0))


@pytest.mark.parametrize("n", [1, 2, 9, 513, 1025, 3001])
def test_native_tiles_agree_with_interpreter_bit_for_bit(n):
    """Native code of a fused chain adds adjoints to memory tile by tile in the
    interpreter's order (fastad._codegen_fuse.rev), and its sum in the same lanes, so even
    the shifted views' adjoints agree bit for bit."""
    _need_compiler()
    x = np.linspace(-1.2, 1.3, n + 1)
    nat = fd.value_and_grad(rosen_vec, native="always")
    itp = fd.value_and_grad(rosen_vec, native="never")
    for xx in (x, np.cos(7.0 * x), x[::-1] * 0.5):
        a, b = nat(xx), itp(xx)
        same(a[0], b[0])
        same(a[1], b[1])
        close(a[1], rosen_grad(xx), rtol=1e-12)
        assert a[0] == pytest.approx(rosen(xx), rel=1e-13)
    d = np.sin(np.arange(n + 1.0))
    same(fd.hvp(rosen_vec, native="always")(x, d), fd.hvp(rosen_vec, native="never")(x, d))


def test_native_fused_code_marks_itself():
    """The generated object says it runs the fused chains (fastad_fused): its reverse sweep
    then skips zeroing the fused intermediates' adjoints, which it never reads; code of
    records one by one must not say so (it reads every adjoint)."""
    _need_compiler()
    from fastad import _codegen, _native, native
    x = np.linspace(-1.2, 1.3, 700)
    g = fd.value_and_grad(rosen_vec, native="always")
    g(x)
    tape = g.tapes()[0]
    chains = native.compiled_chains(tape)
    rows = _native.raw_records(tape)
    assert "fastad_fused" in _codegen.generate(rows, "k", chains=chains)
    assert "fastad_fused" not in _codegen.generate(rows, "k", chains=())
    # record-by-record code (a transcendental chain) replayed again and again: its
    # intermediates' adjoints are zeroed every time
    h = fd.value_and_grad(chain, native="always")
    for xx in (np.linspace(-0.9, 1.7, 700), np.linspace(-0.5, 1.1, 700)):
        a, b = h(xx), fd.value_and_grad(chain, native="never")(xx)
        close(a[1], b[1], rtol=1e-14)


def test_native_fused_gather_agrees_bit_for_bit():
    """A gather inside a fused chain: native code adds its adjoints per tile, after the
    element loop, in the interpreter's order (repeated indices collect several terms)."""
    native = _need_compiler()
    idx = np.array([3, 0, 0, 7, 2, 9, 9, 9, 1] * 70)
    def f(x):
        y = x[idx]
        return np.sum((y * 2.0 + 1.0) ** 2 * y)
    x = np.linspace(-1.0, 1.0, 10)
    g = fd.value_and_grad(f, native="always")
    a = g(x)
    assert native.compiled_chains(g.tapes()[0]) and native.tier(g.tapes()[0]) == "native"
    b = fd.value_and_grad(f, native="never")(x)
    same(a[0], b[0])
    same(a[1], b[1])
    y = x[idx]
    ref = np.zeros(10)
    np.add.at(ref, idx, 4.0 * (y * 2.0 + 1.0) * y + (y * 2.0 + 1.0) ** 2)
    close(a[1], ref, rtol=1e-12)
