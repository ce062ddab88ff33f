"""Table loops in native code (docs/native.md, "Table loops"): repeated blocks of scalar
records compiled as one loop over index tables give the interpreter's results bit for bit
(values, gradients, tangents), and a guard that flips inside the loop retraces exactly as
in the interpreter.
"""

import numpy as np
import pytest

import fastad as fd
from fastad import native, _codegen, _codegen_table, _native

pytestmark = pytest.mark.skipif(native.compiler()[0] is None,
                                reason="no C compiler: native code cannot be tested here")


from native_env import cache_dir, same  # noqa: E402,F401 (cache_dir: an autouse fixture)


def branchy(x):
    """Benchmarks' branchy: three data-dependent branches and a wrap on the running sum."""
    s = 0.0
    for i in range(len(x)):
        xi = x[i]
        if xi > 1.0:
            s = s + xi * np.log(xi)
        elif xi > -1.0:
            s = s + 0.5 * xi * xi + np.sin(xi)
        else:
            s = s + np.exp(xi + 1.0) - xi
        if s > 10.0:
            s = s - 10.0
    return s


def hand(x):
    """Value and gradient of branchy, written out (the gradient does not see the wrap)."""
    s, g = 0.0, np.empty_like(x)
    for i, xi in enumerate(x):
        if xi > 1.0:
            s, g[i] = s + xi * np.log(xi), np.log(xi) + 1.0
        elif xi > -1.0:
            s, g[i] = s + 0.5 * xi * xi + np.sin(xi), xi + np.cos(xi)
        else:
            s, g[i] = s + np.exp(xi + 1.0) - xi, np.exp(xi + 1.0) - 1.0
        if s > 10.0:
            s -= 10.0
    return s, g


N = 60


def test_branchy_tape_becomes_one_table_loop_of_few_shapes():
    x = np.random.default_rng(1).uniform(-3, 3, N)
    tape = fd.record(branchy, x)
    recs = _codegen.parse(_native.raw_records(tape))
    tabs = _codegen_table.tables(recs)
    covered = sum(len(b.recs) for t in tabs for b in t.blocks)
    scalar = sum(1 for p in recs if not p.flags & _codegen.RANGED)
    assert len(tabs) == 1 and covered >= 0.95 * scalar, (covered, scalar)
    # one block per iteration (cut before the wrap's guard): 3 branches x 2 wrap outcomes,
    # run two by two (pairs of blocks: at most 36 shapes, and the odd one out)
    assert len(tabs[0].blocks) == N // 2
    assert len(_codegen_table.Shapes(tabs).shapes) <= 36 + 6
    src = _codegen.generate(_native.raw_records(tape), "k", chains=())
    # one function per sweep runs every table loop of the tape
    assert src.count("switch (s_[j])") == 3
    assert src.count("fa_table_fwd(v, s_") == src.count("fa_table_rev(v, g, s_") == len(tabs)


def test_table_loop_agrees_bit_for_bit_and_retraces_like_the_interpreter():
    rng = np.random.default_rng(2)
    x = rng.uniform(-3, 3, N)
    gi = fd.value_and_grad(branchy, native="never")
    gn = fd.value_and_grad(branchy, native="always")
    a, b = gi(x), gn(x)
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert [native.tier(t) for t in gn.tapes()] == ["native"]
    src = _codegen.generate(_native.raw_records(gn.tapes()[0]), "k", ("fwd", "rev"))
    assert "fa_table_fwd(v, s_" in src          # the loop is a table loop
    s, g = hand(x)
    np.testing.assert_allclose(b[0], s, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(b[1], g, rtol=1e-14)
    # the same branches at other values: replayed, no retrace
    y = x * (1.0 + 1e-9)
    assert same(gi(y)[1], gn(y)[1]) and gn.cache_info()["retraces"] == 0
    # flip one branch guard deep inside the loop, and then the wrap's guard: each call's
    # native guard fails, so it retraces exactly as the interpreter does
    for k in (N // 2, N - 3):
        z = x.copy()
        z[k] = 0.0 if abs(x[k]) > 1.0 else 2.0
        a, b = gi(z), gn(z)
        assert same(a[0], b[0]) and same(a[1], b[1])
        np.testing.assert_allclose(b[1], hand(z)[1], rtol=1e-14)
    assert gn.cache_info()["retraces"] == gi.cache_info()["retraces"] == 2
    assert all(native.tier(t) == "native" for t in gn.tapes())


def test_table_loop_tangent_sweep_agrees():
    x = np.random.default_rng(3).uniform(-3, 3, 24)
    ji = fd.jacfwd(branchy, native="never")(x)
    jn = fd.jacfwd(branchy, native="always")(x)
    assert same(ji, jn)
    np.testing.assert_allclose(jn, hand(x)[1], rtol=1e-14)


def test_long_tape_of_few_shapes_is_compiled_a_long_irregular_one_refused(monkeypatch):
    """The size limit counts the straight-line records left outside table loops."""
    monkeypatch.setattr(native, "MAX_STATEMENTS", 100)
    x = np.random.default_rng(4).uniform(-3, 3, N)      # ~400 records, 6 shapes
    gi = fd.value_and_grad(branchy, native="never")
    gn = fd.value_and_grad(branchy, native="always")
    a, b = gi(x), gn(x)
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert [native.tier(t) for t in gn.tapes()] == ["native"]

    def irregular(x):       # no guard to cut at, no repeated block: all straight-line
        ops = [np.sin, np.cos, np.arctan, np.tanh, np.sinh]
        s = 0.0
        for i in range(len(x)):
            s = ops[(i * i + 3 * i // 2) % 5](s * 0.5 + x[i]) * x[(7 * i) % len(x)]
        return s
    g = fd.value_and_grad(irregular, native="always")
    with pytest.warns(RuntimeWarning, match="straight-line records"):
        v, d = g(x)
    assert native.tier(g.tapes()[0]).startswith("interpreted (the tape has")
    r = fd.value_and_grad(irregular, native="never")(x)
    assert same(v, r[0]) and same(d, r[1])


EXPORT_MAIN = r"""
#include <stdio.h>
#include "br.h"
int main(int argc, char **argv)
{
    double x[br_N_INPUTS], g[br_N_INPUTS], dx[br_N_INPUTS], f, df;
    (void)argv;
    for (int i = 0; i < br_N_INPUTS; i++) {
        x[i] = -3.0 + 0.125 * i;
        dx[i] = 1.0 / (1.0 + i);
    }
    if (argc > 1) x[20] = 2.0;          /* another branch than the recorded one */
    int rc = br_value_grad(x, &f, g);
    printf("%d %a", rc, f);
    for (int i = 0; i < br_N_INPUTS; i++) printf(" %a", g[i]);
    rc = br_jvp(x, dx, &f, &df);
    printf(" %d %a\n", rc, df);
    return 0;
}
"""


def test_standalone_export_with_table_loops(tmp_path):
    """to_c of a branchy tape: table loops in standalone C (-pedantic -Werror), bit for bit."""
    import subprocess
    n = 48
    x = -3.0 + 0.125 * np.arange(n)
    tape = fd.record(branchy, x)
    c, h = tape.to_c(tmp_path / "br.c", name="br")
    assert "br_fa_table_fwd(v, s_" in open(c).read()
    (tmp_path / "main.c").write_text(EXPORT_MAIN)
    exe = tmp_path / "prog"
    subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-o", str(exe), str(c), str(tmp_path / "main.c"), "-lm"], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    v, g = fd.value_and_grad(branchy, native="never")(x)
    assert int(out[0]) == 0 and float.fromhex(out[1]) == v
    assert same([float.fromhex(s) for s in out[2:2 + n]], g)
    dx = 1.0 / (1.0 + np.arange(n))
    assert int(out[2 + n]) == 0
    assert float.fromhex(out[3 + n]) == pytest.approx(float(g @ dx), rel=1e-14)
    flip = subprocess.run([str(exe), "flip"], capture_output=True, text=True, check=True)
    assert int(flip.stdout.split()[0]) > 0          # the guard inside the loop reports it


def _program(seed):
    """A loop whose iterations take data-dependent branches (on the input and on the
    carried state), with two carried values, a lagged input and ops drawn from `seed`: its
    tape is table loops of several shapes whose slots are offsets, literals and table
    words."""
    rng = np.random.default_rng(seed)
    un = [np.sin, np.cos, np.tanh, np.arctan, lambda z: np.exp(np.sin(z))]
    picks = [(un[rng.integers(5)], un[rng.integers(5)], float(rng.uniform(-0.5, 0.5)))
             for _ in range(3)]

    def f(x):
        s, u = 0.0, 1.0
        for i in range(len(x)):
            xi, xl = x[i], x[i - 1]
            f1, f2, c = picks[0] if xi > 0.4 else picks[1] if xi > -0.4 else picks[2]
            s = s + f1(xi * u) * xl + c
            if s > u:
                u = u + 0.5 * f2(s - u)
            else:
                s = s * 0.9
        return s + u
    return f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_loops_with_branches_agree_in_table_loops(seed):
    f = _program(seed)
    x = np.random.default_rng(100 + seed).uniform(-1.2, 1.2, 40)
    gi = fd.value_and_grad(f, native="never")
    gn = fd.value_and_grad(f, native="always")
    a, b = gi(x), gn(x)
    assert same(a[0], b[0]) and same(a[1], b[1])
    src = _codegen.generate(_native.raw_records(gn.tapes()[0]), "k", ("fwd", "rev"))
    assert "fa_table_fwd(v, s_" in src
    # central differences (the branches hold within h): the gradient is right, not only equal
    h = 1e-6
    e = np.eye(len(x))[7]
    fd_ = (f(x + h * e) - f(x - h * e)) / (2 * h)
    assert b[1][7] == pytest.approx(fd_, rel=1e-6, abs=1e-8)
    for k in range(6):          # other points: same branches or not, both tiers alike
        y = x + np.random.default_rng(seed * 10 + k).normal(0, 0.05 * k, len(x))
        a, b = gi(y), gn(y)
        assert same(a[0], b[0]) and same(a[1], b[1])
    assert gn.cache_info()["retraces"] == gi.cache_info()["retraces"] > 0
    assert all(native.tier(t) == "native" for t in gn.tapes())
