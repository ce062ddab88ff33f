"""Native code that keeps values and adjoints out of memory (docs/native.md, "Table loops"
and "Assigned adjoints"): table loops' cases hold their values and adjoints in locals and
hand the carried value (a running sum) and its adjoint to the next block in a register;
reverse loops whose range gets its first contribution assign it (0.0 + term) instead of
adding to a zeroed array.  Both must leave the interpreter's results bit for bit: with
guards flipping inside the loop, carried values read again blocks later, operands used
twice, passive operands, and seeds that land where native code assigns.
"""
import os

import numpy as np
import pytest

import fastad as fd
from fastad import native, _codegen, _codegen_table, _native

pytestmark = pytest.mark.skipif(native.compiler()[0] is None,
                                reason="no C compiler: native code cannot be tested here")

from native_env import cache_dir, same  # noqa: E402,F401 (cache_dir: an autouse fixture)


def lagged(x):
    """A running sum whose branches depend on the data and on the sum, which also reads the
    sum of two iterations back (so a carried value's adjoint has contributions from two
    blocks), squares an input (one slot as both operands) and multiplies by constants."""
    s, prev = 0.5, 0.0
    for i in range(len(x)):
        xi = x[i]
        if xi > 0.2:
            t = 0.2 * xi * xi * s
        elif xi > -0.6:
            t = np.sin(xi) + 0.25 * prev
        else:
            t = 0.3 * np.exp(xi) * prev - xi
        prev, s = s, s + t
        if s > 2.0:
            s = s * 0.5
    return s * prev


def lagged_hand_grad(x, h=1e-7):
    """Central differences of `lagged` (its branches hold within h at the test points)."""
    out = np.empty_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (lagged(x + e) - lagged(x - e)) / (2 * h)
    return out


def _tiers(f, x, **kw):
    return fd.value_and_grad(f, native="never", **kw), fd.value_and_grad(f, native="always", **kw)


def test_carried_sum_and_adjoint_locals_in_the_generated_code():
    x = np.random.default_rng(5).uniform(-1.5, 1.5, 40)
    src = _codegen.generate(_native.raw_records(fd.record(lagged, x)), "k", ("fwd", "rev"))
    assert "fa_table_rev(v, g, s_" in src
    assert "cg = h" in src and "= cg;" in src                 # the sum's adjoint handed back
    assert "double h" in src and "= 0.0;" in src              # locals; some start from 0
    assert "fastad_assigned[]" in src                         # ... and are not zeroed
    recs = _codegen.parse(_native.raw_records(fd.record(lagged, x)))
    tabs = _codegen_table.tables(recs)
    carried = [b.shape[1] is not None for t in tabs for b in t.blocks]
    assert sum(carried) >= len(carried) - len(tabs)          # all but each loop's first


def _all_adjoints(f, x, tier):
    """Every slot's adjoint after a reverse sweep of f's tape in the given tier."""
    g = fd.value_and_grad(f, native=tier)
    g(x)
    t = g.tapes()[0]
    assert native.tier(t) == ("native" if tier == "always" else "interpreted")
    t.forward(x)
    t.reverse()
    t.forward(x * (1 + 1e-9))   # a second sweep over the first one's adjoints
    t.reverse()
    return t.adjoints


@pytest.mark.parametrize("f, n", [("lagged", 40), ("rosen_loop", 300)])
def test_every_adjoint_of_the_tape_is_the_interpreters(f, n):
    """Adjoints assigned rather than zeroed and added to, adjoints kept in locals and
    handed over in registers: the whole adjoint array ends bit for bit as the
    interpreter's, not only the gradient."""
    f = globals()[f]
    x = np.random.default_rng(8).uniform(-1.5, 1.5, n)
    a, b = _all_adjoints(f, x, "never"), _all_adjoints(f, x, "always")
    assert same(a, b)


def test_carried_values_bit_for_bit_with_guards_flipping():
    rng = np.random.default_rng(6)
    x = rng.uniform(-1.5, 1.5, 40)
    gi, gn = _tiers(lagged, x)
    a, b = gi(x), gn(x)
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert [native.tier(t) for t in gn.tapes()] == ["native"]
    np.testing.assert_allclose(b[1], lagged_hand_grad(x), rtol=1e-6, atol=1e-6)
    # flip a data guard, then the sum's guard, deep inside the loop: native guards fail and
    # the call retraces exactly as the interpreter does
    y = x.copy()
    y[25] = 0.0 if y[25] > 0.2 or y[25] < -0.6 else 1.0
    z = x.copy()
    z[:] = np.where(np.abs(x) < 0.2, x, x * 1.0000001)      # the same branches
    for p in (y, z, x * 0.999, x + 0.3):
        a, b = gi(p), gn(p)
        assert same(a[0], b[0]) and same(a[1], b[1])
    assert gn.cache_info()["retraces"] == gi.cache_info()["retraces"] > 0
    assert all(native.tier(t) == "native" for t in gn.tapes())


def test_memory_variant_gives_the_same_bits(monkeypatch):
    """FASTAD_NATIVE_TABLE_LOCALS=0 / FASTAD_NATIVE_ASSIGN=0 (the generator's previous
    code) and the default agree bit for bit, tangents included."""
    x = np.random.default_rng(7).uniform(-1.5, 1.5, 32)
    ref = fd.value_and_grad(lagged, native="never")(x)
    jref = fd.jacfwd(lagged, native="never")(x)
    for env in ({}, {"FASTAD_NATIVE_TABLE_LOCALS": "0", "FASTAD_NATIVE_ASSIGN": "0"}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        got = fd.value_and_grad(lagged, native="always")(x)
        assert same(ref[0], got[0]) and same(ref[1], got[1])
        assert same(jref, fd.jacfwd(lagged, native="always")(x))


def rosen_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def test_assigned_ranges_of_the_rolled_rosenbrock():
    x = np.linspace(-1.2, 1.3, 300)
    g = fd.value_and_grad(rosen_loop, native="never")
    g(x)
    tape = g.tapes()[0]                 # rolled by the optimizer into ranged records
    recs = _codegen.parse(_native.raw_records(tape))
    assign, ranges = _codegen.assigned_loops(recs)
    covered = sum(hi - lo for lo, hi in ranges)
    # every intermediate range and most of x: all but x's last slot and the scalars
    assert covered >= 0.9 * tape.n_slots, (covered, tape.n_slots)
    assert not any(lo <= tape.output_slot < hi for lo, hi in ranges)
    src = _codegen.generate(_native.raw_records(tape), "k", ("fwd", "rev"))
    assert "fastad_assigned[]" in src and "= 0.0 + " in src
    gi, gn = _tiers(rosen_loop, x)
    for p in (x, -x, x * 0.0, x + 1e-3):
        a, b = gi(p), gn(p)                     # signed zeros included
        assert same(a[0], b[0]) and same(a[1], b[1])
    # NaNs and infs at the same places (NaN sign bits differ between the tiers' arithmetic
    # loops whether or not the adjoints are assigned)
    for p in (np.full_like(x, np.nan), np.where(x > 0, np.inf, x)):
        a, b = gi(p), gn(p)
        assert np.array_equal(np.isnan(a[1]), np.isnan(b[1]))
        assert same(np.nan_to_num(a[1]), np.nan_to_num(b[1]))
    g = gn(x)[1]
    d = x[1:] - x[:-1] ** 2
    hand = np.zeros_like(x)
    hand[:-1] = -400.0 * x[:-1] * d - 2.0 * (1.0 - x[:-1])
    hand[1:] += 200.0 * d
    np.testing.assert_allclose(g, hand, rtol=1e-12, atol=1e-12)


def test_seed_where_native_code_assigns_falls_back_to_the_interpreter():
    """An output that is also an operand of a later ranged record: its slots get assigned
    by the reverse sweep, so a seed there would be overwritten; such sweeps run in the
    interpreter and give the same (right) rows."""
    def f(x):
        y = np.sin(x)
        return y, np.sum(y * y)       # y is an output, and read by y * y

    x = np.linspace(-1.0, 1.0, 300)
    tape = fd.record(lambda x: f(x)[1], x)
    _, ranges = _codegen.assigned_loops(_codegen.parse(_native.raw_records(tape)))
    assert ranges
    ji = fd.jacrev(f, native="never")(x)
    jn = fd.jacrev(f, native="always")(x)
    assert same(ji[0], jn[0]) and same(ji[1], jn[1])
    np.testing.assert_allclose(jn[0], np.diag(np.cos(x)), rtol=1e-15, atol=0)
    np.testing.assert_allclose(jn[1], 2 * np.sin(x) * np.cos(x), rtol=1e-14, atol=1e-15)
    # hessian and hvp: reverse sweeps seeded by the caller (sweep_reverse_seeded)
    h = lambda x: np.sum(np.sin(x) * np.sin(x)) + rosen_loop(x)          # noqa: E731
    v = np.cos(np.arange(len(x)))
    assert same(fd.hvp(h, native="never")(x, v), fd.hvp(h, native="always")(x, v))
    xs = x[:12]
    assert same(fd.hessian(h, native="never")(xs), fd.hessian(h, native="always")(xs))


def test_standalone_export_adds_to_zeroed_adjoints(tmp_path):
    """Standalone C zeroes every adjoint and assigns none (its caller seeds the output)."""
    x = np.linspace(-1.2, 1.3, 40)
    c, _ = fd.record(rosen_loop, x).to_c(os.path.join(tmp_path, "r.c"), name="r")
    assert "= 0.0 + " not in open(c).read()
