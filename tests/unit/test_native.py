"""Native code (docs/native.md): tapes compiled to machine code give the interpreter's
results bit for bit, through every derivative path, and the compiler, the cache and the
tiers degrade to the interpreter rather than ever giving a wrong result.

Compiles are slow, so the default run compiles a few programs that cover many ops each.
The whole suite in the native tier: FASTAD_NATIVE=always python -m pytest (docs/native.md).
"""
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import fastad as fd
from fastad import native, _codegen, _native

from reference import rosen_loop, rosen_grad

HERE = os.path.dirname(os.path.abspath(__file__))
# the fastad this test imports (the installed one in CI, src/ in a checkout built in place)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(fd.__file__)))

pytestmark = pytest.mark.skipif(native.compiler()[0] is None,
                                reason="no C compiler: native code cannot be tested here")


from native_env import cache_dir, same  # noqa: E402,F401 (cache_dir: an autouse fixture)


def tiers(g):
    return [native.tier(t) for t in g.tapes()]


# ------------------------------------------------------------------------ programs

UNARY = {"negative": None, "square": None, "sqrt": "pos", "cbrt": None, "reciprocal": "pos",
         "exp": None, "exp2": None, "expm1": None, "log": "pos", "log2": "pos", "log10": "pos",
         "log1p": "pos", "sin": None, "cos": None, "tan": "half", "arcsin": "unit",
         "arccos": "unit", "arctan": None, "sinh": None, "cosh": None, "tanh": None,
         "arcsinh": None, "arccosh": "gt1", "arctanh": "unit", "absolute": None, "sign": None,
         "floor": "wide", "ceil": "wide", "rint": "wide", "erf": None, "erfc": None,
         "expit": None, "logit": "prob"}
BINARY = ["add", "subtract", "multiply", "divide", "power", "arctan2", "hypot", "maximum",
          "minimum", "fmax", "fmin", "logaddexp"]
DOMAIN = {None: lambda x: x, "pos": lambda x: x * x + 0.1, "half": lambda x: 0.5 * x,
          "unit": lambda x: 0.5 * np.sin(x), "gt1": lambda x: x * x + 1.5,
          "wide": lambda x: 3.0 * x, "prob": lambda x: 0.4 * np.sin(x) + 0.5}


def _fn(name):
    return getattr(fd, name) if name in ("erf", "erfc", "expit", "logit") else getattr(np, name)


def every_op(x):
    """Each op of the table, ranged (n >= 16, numpy's loops) and scalar; broadcasts."""
    s = 0.0
    for name, dom in UNARY.items():
        u = DOMAIN[dom](x)
        s = s + np.sum(_fn(name)(u)) + _fn(name)(u[3])
    y = x[::-1] * 0.5 + 1.5
    for name in BINARY:
        a = np.abs(x) + 0.5 if name == "power" else x
        g = _fn(name)
        s = s + np.sum(g(a, y)) + g(a[2], y[5]) + np.sum(g(a, y[4])) + np.sum(g(a[1], y))
    return s


def kinks(x):
    """Kinks, ties, absolute-zero products, selects and infinities (docs/conventions.md)."""
    s = np.sum(np.abs(x)) + np.sum(np.maximum(x, 0.0)) + np.sum(np.minimum(x, x[::-1]))
    s = s + np.sum(0.0 * np.sqrt(np.abs(x)))            # sqrt'(0) = inf, times 0
    s = s + np.sum(np.where(x > 0, np.sqrt(np.abs(x)), x ** 2))
    s = s + np.sum(np.cumsum(x) * x) + np.sum(x[[3, 0, 0, 2]] ** 2)
    s = s + np.sum(np.reshape(x, (4, -1)).sum(axis=1) ** 2)
    return s + np.sum(np.fmax(x, np.nan))


def branchy(x):
    """Data-dependent branches: every comparison is a guard."""
    s = 0.0
    for i in range(len(x)):
        if x[i] > 0.3:
            s = s + np.sin(x[i]) * x[i]
        elif x[i] < -0.3:
            s = s - x[i] ** 3
        else:
            s = s + np.exp(x[i])
    return s


def spring(p):
    """A recurrence: a damped spring, 60 explicit Euler steps."""
    k, c = p[0], p[1]
    x, v = 1.0, 0.0
    for _ in range(60):
        a = -k * x - c * v
        x, v = x + 0.05 * v, v + 0.05 * a
    return x * x + v * v


# ------------------------------------------------------------------------ tiers agree

def _compare(f, points, **kw):
    gi = fd.value_and_grad(f, native="never", **kw)
    gn = fd.value_and_grad(f, native="always", **kw)
    for x in points:
        a, b = gi(x), gn(x)
        assert same(a[0], b[0]) and same(a[1], b[1]), (x, a, b)
    assert tiers(gn) and all(t == "native" for t in tiers(gn)), tiers(gn)
    return gn


def test_every_op_bit_for_bit_in_both_tiers():
    x = np.linspace(-1.0, 1.0, 20)
    g = _compare(every_op, [x, 0.9 * x, x + 0.01])
    # an independent reference for the values: numpy itself
    assert g(x)[0] == pytest.approx(every_op(x), rel=1e-13)


def test_kinks_zeros_and_nan_conventions_agree():
    x = np.array([0.0, -0.0, 1.0, -1.0, 2.0, 0.0, 3.0, -2.0])
    _compare(kinks, [x, np.linspace(-1, 1, 8)])


def test_long_loops_vectorized_agree():
    """Loops of >= LOOP_MIN elements get their own vectorized functions (O3, clones)."""
    def f(x):
        y = np.exp(np.sin(x)) * x[::-1] + np.maximum(x, 0.1) * x[7]
        return np.sum(np.cumsum(y) * np.where(x > 0, x, 2.0 * x)) + np.sum(x ** 2 / (1 + x[3]))
    x = np.linspace(-1.0, 1.0, 2 * _codegen.LOOP_MIN)
    _compare(f, [x, x * 0.5])
    # and an independent reference: central differences (h = 1e-6: error ~1e-9 relative)
    np.testing.assert_allclose(fd.grad(f, native="always")(x), _central_differences(f, x, 1e-6),
                               rtol=1e-6, atol=1e-6)


def _central_differences(f, x, h):
    out = np.empty_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def test_rosenbrock_loop_against_hand_gradient():
    x = np.linspace(-1.2, 1.3, 50)
    g = _compare(rosen_loop, [x])
    v, d = g(x)
    np.testing.assert_allclose(d, rosen_grad(x), rtol=1e-12)
    assert v == pytest.approx(rosen_loop(x), rel=1e-14)


def test_guards_flip_and_retrace_in_native_code():
    gi = fd.grad(branchy, native="never")
    gn = fd.grad(branchy, native="always")
    x = np.array([0.5, -0.5, 0.0, 1.0])
    assert same(gi(x), gn(x))
    y = np.array([0.5, 0.5, -1.0, 0.0])        # other branches: native code's guard fails
    assert same(gi(y), gn(y))
    assert gn.cache_info()["retraces"] == 1 and tiers(gn) == ["native", "native"]
    expect = np.array([np.sin(0.5) + 0.5 * np.cos(0.5)] * 2 + [-3.0, 1.0])
    np.testing.assert_allclose(gn(y), expect, rtol=1e-14)


def test_jvp_hvp_hessian_and_nested_agree():
    x = np.linspace(-0.8, 0.9, 6)
    v = np.cos(np.arange(6.0))
    p = np.array([3.0, 0.4])
    f = lambda x: np.sum(np.sin(x) * x ** 2) + x[0] * x[1] * x[5]
    Hi = fd.hessian(f, native="never")(x)
    Hn = fd.hessian(f, native="always")(x)
    assert same(Hi, Hn)
    d = np.sin(x) * 2 + 4 * x * np.cos(x) - x ** 2 * np.sin(x)
    Hx = np.diag(d)
    Hx[0, 1] = Hx[1, 0] = x[5]
    Hx[0, 5] = Hx[5, 0] = x[1]
    Hx[1, 5] = Hx[5, 1] = x[0]
    np.testing.assert_allclose(Hn, Hx, rtol=1e-12, atol=1e-14)
    assert same(fd.hvp(spring, native="never")(p, v[:2]), fd.hvp(spring, native="always")(p, v[:2]))
    ji = fd.jacfwd(fd.grad(spring, native="never"), native="never")(p)
    jn = fd.jacfwd(fd.grad(spring, native="always"), native="always")(p)
    assert same(ji, jn)
    # nested: the derivative of a function that takes a derivative inside
    inner = lambda x: fd.grad(lambda y: np.sum(np.exp(x * y) * y))(x)
    gi = fd.grad(lambda x: np.sum(inner(x) ** 2), native="never")(x)
    gn = fd.grad(lambda x: np.sum(inner(x) ** 2), native="always")(x)
    assert same(gi, gn)


def test_threads_replay_while_native_code_is_swapped_in():
    """Threads keep replaying (results never change) while a background compile lands."""
    native.set_hot_scale(1e-9)          # compile on the first replay
    try:
        g = fd.value_and_grad(spring)
        ref = fd.value_and_grad(spring, native="never")
        ps = [np.array([2.0 + i, 0.1 * i]) for i in range(4)]
        want = [ref(p) for p in ps]
        g(ps[0])                        # trace
        errors = []

        def work(i):
            for _ in range(300):
                r = g(ps[i])
                if not (same(r[0], want[i][0]) and same(r[1], want[i][1])):
                    errors.append(i)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        native.wait(g)
        assert not errors and tiers(g) == ["native"]
        assert "native" in str(g.info())
        for p, w in zip(ps, want):
            r = g(p)
            assert same(r[0], w[0]) and same(r[1], w[1])
    finally:
        native.set_hot_scale(1.0)


def test_auto_waits_for_the_tape_to_be_hot():
    g = fd.grad(lambda p: spring(p) + 7.0)      # a tape no other test compiled (cached)
    p = np.array([2.0, 0.3])
    g(p)
    g(p)
    assert tiers(g) == ["interpreted"]      # two replays are far below the compile estimate
    assert native.hot_after(len(g.tapes()[0])) > 100


def structural(x):
    """Every structural record native code compiles: reductions (written out) and matrix
    products and linear algebra (through the runtime's BLAS/LAPACK kernels)."""
    A = np.reshape(x[:9], (3, 3)) + 3.0 * np.eye(3)
    B = np.reshape(x[9:], (3, 3))
    s = np.sum(np.prod(B, axis=1)) + np.max(x) + np.min(x * x[::-1]) + np.sum(np.max(B, axis=0))
    s = s + np.sum(np.tanh(A @ B)) + np.sum(np.linalg.solve(A, B[:, 0]))
    S = A @ A.T + np.eye(3)
    L = np.linalg.cholesky(S)
    s = s + np.linalg.slogdet(S)[1] + np.sum(L) + np.sum(np.linalg.eigh(S)[0] ** 2)
    return s + np.sum(fd.linalg.solve_triangular(L, B[:, 1], lower=True))


def test_reductions_matmul_and_linear_algebra_compile_bit_for_bit():
    x = np.linspace(-1.0, 1.0, 18)
    x[4] = 0.0                              # a zero in a product: prod's exact partials
    g = _compare(structural, [x, 0.7 * x, x + 0.1])
    ops = {r.op for r in g.tapes()[0].records()}
    assert {"prod", "max", "min", "matmul", "solve", "slogdet", "cholesky", "eigh",
            "solve_triangular"} <= ops, ops
    # an independent reference: central differences (h = 1e-6: error ~1e-9 relative)
    np.testing.assert_allclose(g(x)[1], _central_differences(structural, x, 1e-6),
                               rtol=1e-6, atol=1e-6)
    # forward mode and a second derivative through the runtime's kernels
    f = lambda x: np.sum(np.linalg.solve(np.reshape(x[:4], (2, 2)) + 3 * np.eye(2), x[4:])
                         * np.prod(x))
    y = np.array([0.3, -0.5, 0.8, 0.1, 0.6, -0.2])
    assert same(fd.hessian(f, native="never")(y), fd.hessian(f, native="always")(y))


def test_singular_matrix_in_native_code_raises_like_numpy():
    """A record that fails in native code (LAPACK: singular) retraces, and the trace
    raises numpy's error, as in the interpreter."""
    f = lambda x: np.sum(np.linalg.solve(np.reshape(x[:4], (2, 2)), x[4:]))
    g = fd.grad(f, native="always")
    g(np.array([2.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    assert tiers(g) == ["native"]
    with pytest.raises(np.linalg.LinAlgError):
        g(np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))


def test_callbacks_stay_interpreted_and_right():
    @fd.custom_vjp
    def h(x):
        return np.sin(x)
    h.defvjp(lambda x: (np.sin(x), x), lambda x, g: (g * np.cos(x),))
    f = lambda x: np.sum(h(x) * x)
    x = np.linspace(-1, 1, 6)
    native._warned.clear()
    with pytest.warns(RuntimeWarning, match="custom_vjp"):
        g = fd.grad(f, native="always")
        r = g(x)
    assert tiers(g)[0].startswith("interpreted (")
    np.testing.assert_allclose(r, np.sin(x) + x * np.cos(x), rtol=1e-14)


def test_export_refuses_records_that_need_blas():
    tape = fd.record(lambda x: np.sum(np.reshape(x, (2, 2)) @ np.reshape(x, (2, 2))),
                     np.ones(4))
    with pytest.raises(NotImplementedError, match="matmul.*standalone C"):
        tape.to_c("/nonexistent/f.c")


def test_cost_model_is_recalibrated_by_measured_compiles():
    """hot_after is the break-even point: replays whose savings pay for the compile; a
    measured compile moves the estimate (docs/native.md, "Tiers")."""
    saved = list(native._compile_model)
    try:
        n = 5000
        before = native.hot_after(n)
        save = native.SAVE_BASE + native.SAVE_PER_STATEMENT * n
        assert before == int(native.compile_estimate(n) / save)
        native.calibrate(n, native.compile_estimate(n) * 9.0)   # a compiler 9x slower
        assert native.hot_after(n) > 4 * before
        native.calibrate(50, 0.01)                              # a fast fixed cost
        assert native._compile_model[0] < saved[0]
    finally:
        native._compile_model[:] = saved


def test_fused_chains_count_their_elements_in_the_saving(monkeypatch):
    """A tape whose work is one fused chain compiles after fewer replays the longer the
    chain (docs/native.md, "Tiers"): its elements count in the saving."""
    monkeypatch.setenv("FASTAD_FUSE_MIN_N", "1")        # fuse the short chain too
    f = lambda x: np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    counts = {}
    for n in (1000, 100000):
        g = fd.value_and_grad(f, native="never")
        g(np.linspace(-1.0, 1.0, n))
        tape = g.tapes()[0]
        chains = native.compiled_chains(tape)
        assert chains, "the Rosenbrock chain compiles as one loop"
        counts[n] = native.fused_elements(tape, chains)
        # every member of the chain is a ranged record of n - 1 elements (the final sum too)
        assert counts[n] % (n - 1) == 0 and counts[n] >= 5 * (n - 1)
        nstmt = _native.straight_line(tape)
        assert native.hot_after(nstmt, None, counts[n]) < native.hot_after(nstmt)
    assert counts[100000] // 99999 == counts[1000] // 999


def test_generator_refuses_unknown_records():
    rows = np.array([[len(fd._tape.op_table()) + 3, 0, 2, 0, 1]])
    with pytest.raises(_codegen.Unsupported, match="unknown"):
        _codegen.parse(rows)
    with pytest.raises(_codegen.Unsupported, match="flags"):
        _codegen.parse(np.array([[0, 0x40, 2, 0, 1]]))


# ------------------------------------------------------------------------ failures degrade

def test_no_compiler_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/fastad-test-cc")
    native._warned.clear()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = fd.grad(spring, native="always")
        b = fd.grad(lambda p: spring(p) * 2.0, native="always")
        p = np.array([2.0, 0.3])
        for _ in range(3):
            ga, gb = a(p), b(p)
    msgs = [str(x.message) for x in w if "C compiler" in str(x.message)]
    assert len(msgs) == 1 and "not on PATH" in msgs[0]
    assert tiers(a)[0].startswith("interpreted (") and same(gb, 2.0 * ga)
    assert same(ga, fd.grad(spring, native="never")(p))


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("FASTAD_NATIVE", "0")
    native._warned.clear()
    with pytest.warns(RuntimeWarning, match="FASTAD_NATIVE=0"):
        g = fd.grad(spring, native="always")
        g(np.array([2.0, 0.3]))
    assert tiers(g) == ["interpreted"]


def test_compile_error_falls_back(monkeypatch):
    monkeypatch.setenv("FASTAD_NATIVE_CFLAGS", "-Werror -fno-such-flag-for-fastad")
    native._warned.clear()
    with pytest.warns(RuntimeWarning, match="compiler failed"):
        g = fd.grad(lambda p: spring(p) + 1.0, native="always")
        r = g(np.array([2.0, 0.3]))
    assert tiers(g)[0].startswith("interpreted (")
    assert same(r, fd.grad(spring, native="never")(np.array([2.0, 0.3])))


def test_uncreatable_cache_dir_still_compiles(monkeypatch, tmp_path):
    """The cache directory cannot be made (a file is in the way; root ignores permission
    bits, so this is how a read-only location is simulated): private directory, one warning."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(blocker / "sub"))
    native._warned.clear()
    with pytest.warns(RuntimeWarning, match="not writable"):
        g = fd.grad(lambda p: spring(p) * 3.0, native="always")
        r = g(np.array([2.0, 0.3]))
    assert tiers(g) == ["native"]
    assert same(r, fd.grad(lambda p: spring(p) * 3.0, native="never")(np.array([2.0, 0.3])))


# ------------------------------------------------------------------------ the disk cache

CHILD = textwrap.dedent("""
    import sys, time, numpy as np, fastad as fd
    from fastad import native
    def f(p):
        x, v = 1.0, 0.0
        for _ in range(40):
            x, v = x + 0.05 * v, v + 0.05 * (-p[0] * x - p[1] * v)
        return x * x + v * v + {extra}
    g = fd.value_and_grad(f, native=sys.argv[1])
    p = np.array([2.0, 0.3])
    val, grad = g(p)
    t = g.tapes()[0]
    ct = t.native_policy.compile_time if t.native_policy is not None else None
    print(native.tier(t).split()[0], ct, val.hex(), grad[0].hex(), grad[1].hex())
""")


def _child(mode, extra="0.0", env=None):
    e = dict(os.environ, PYTHONPATH=SRC, **(env or {}))
    return subprocess.Popen([sys.executable, "-c", CHILD.format(extra=extra), mode], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _out(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out.split()


def test_cache_reused_by_a_new_process_and_concurrent_compiles(tmp_path):
    env = {"FASTAD_CACHE_DIR": str(tmp_path)}
    # two processes compile the same tape at once: both load a complete shared object
    a, b = _child("always", env=env), _child("always", env=env)
    ra, rb = _out(a), _out(b)
    assert ra[0] == rb[0] == "native" and ra[2:] == rb[2:]
    sos = [p for p in os.listdir(tmp_path / "native") if p.endswith(".so")]
    assert len(sos) == 1 and not [p for p in os.listdir(tmp_path / "native") if "tmp" in p]
    # a third process with "auto" loads it before its first replay, without compiling
    rc = _out(_child("auto", env=env))
    assert rc[0] == "native" and float(rc[1]) == 0.0 and rc[2:] == ra[2:]
    # the interpreter agrees bit for bit
    assert _out(_child("never", env=env))[2:] == ra[2:]


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    env = {"FASTAD_CACHE_DIR": str(tmp_path)}
    first = _out(_child("always", extra="1.0", env=env))
    (so,) = [tmp_path / "native" / p for p in os.listdir(tmp_path / "native")]
    so.write_bytes(so.read_bytes()[:100])           # truncated
    again = _out(_child("always", extra="1.0", env=env))
    assert again[0] == "native" and float(again[1]) > 0.0 and again[2:] == first[2:]
    # a well-formed shared object under the key's name but carrying another key is refused
    other = _out(_child("always", extra="2.0", env=env))
    objs = sorted((tmp_path / "native").iterdir(), key=os.path.getmtime)
    objs[-1].replace(objs[0])                        # the "2.0" code under the "1.0" name
    third = _out(_child("always", extra="1.0", env=env))
    assert third[2:] == first[2:] and third[2:] != other[2:]


# ------------------------------------------------------------------------ standalone C

MAIN = r"""
#include <stdio.h>
#include "%(name)s.h"
int main(void)
{
    double x[%(n)d], dx[%(n)d], g[%(n)d], f, df;
    for (int i = 0; i < %(n)d; i++) { x[i] = %(x0)s + 0.25 * i; dx[i] = 1.0 / (1 + i); }
    int rc = %(name)s_value_grad(x, &f, g);
    printf("%%d %%a", rc, f);
    for (int i = 0; i < %(n)d; i++) printf(" %%a", g[i]);
    rc = %(name)s_jvp(x, dx, &f, &df);
    printf(" %%d %%a\n", rc, df);
    return 0;
}
"""


def _run_export(tmp_path, f, n, x0, name):
    x = x0 + 0.25 * np.arange(n)
    tape = fd.record(f, x)
    c, h = tape.to_c(tmp_path / f"{name}.c", name=name)
    (tmp_path / "main.c").write_text(MAIN % {"name": name, "n": n, "x0": repr(x0)})
    exe = tmp_path / "prog"
    subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-o", str(exe), str(c), str(tmp_path / "main.c"), "-lm"], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    return x, [int(out[0])] + [float.fromhex(s) for s in out[1:n + 2]] + \
        [int(out[n + 2]), float.fromhex(out[n + 3])]


def test_standalone_c_export_compiled_and_run(tmp_path):
    x, out = _run_export(tmp_path, branchy, 6, -0.6, "branchy")
    assert out[0] == 0
    v, g = fd.value_and_grad(branchy, native="never")(x)
    assert out[1] == v and same(out[2:8], g)           # scalar records: bit for bit
    dx = 1.0 / (1.0 + np.arange(6))
    assert out[8] == 0 and out[9] == pytest.approx(fd.jvp(branchy, (x,), (dx,))[1], rel=1e-15)
    # the same file on inputs that take other branches reports it
    src = (tmp_path / "main.c").read_text().replace("-0.6 + 0.25 * i", "0.9 - 0.25 * i")
    (tmp_path / "main.c").write_text(src)
    exe = tmp_path / "prog2"
    subprocess.run(["cc", "-o", str(exe), str(tmp_path / "branchy.c"),
                    str(tmp_path / "main.c"), "-lm"], check=True)
    rc = int(subprocess.run([str(exe)], capture_output=True, text=True).stdout.split()[0])
    assert rc > 0


def test_standalone_export_of_array_code(tmp_path):
    def f(x):
        return (np.sum(np.exp(np.sin(x)) * x[::-1]) + np.sum(np.cumsum(x) ** 2)
                + np.prod(x[:5]) + np.max(x) * np.min(x[3:]))     # reductions: reduce.h
    x, out = _run_export(tmp_path, f, 24, -1.0, "arr")
    v, g = fd.value_and_grad(f, native="never")(x)
    # ranged exp/sin: libm here, numpy's SIMD loops in fastad (within an ulp or so)
    assert out[0] == 0 and out[1] == pytest.approx(v, rel=1e-14)
    np.testing.assert_allclose(out[2:26], g, rtol=1e-13)


# ------------------------------------------------------------------------ random programs

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# the fuzzer's program generator lives with the oracle tests (tests/oracle/test_fuzz.py)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "oracle"))
import test_fuzz as fz  # noqa: E402

# each example compiles a tape (~0.3-1 s): few by default, many in the full matrix
FULL = os.environ.get("FASTAD_NATIVE_FULL") == "1"
_RANDOM = settings(max_examples=60 if FULL else 3, deadline=None,
                   suppress_health_check=list(HealthCheck))


def _outcome(g, *args):
    try:
        with np.errstate(all="ignore"):
            return g(*args)
    except Exception as e:          # both tiers must fail alike
        return type(e).__name__


def _agree(f, argsets):
    gi, gn = fd.value_and_grad(f, native="never"), fd.value_and_grad(f, native="always")
    for args in argsets:
        a, b = _outcome(gi, *args), _outcome(gn, *args)
        if isinstance(a, str) or isinstance(b, str):
            assert a == b
            continue
        assert same(a[0], b[0]) and same(a[1], b[1]), (args, a, b)
    for t in gn.tapes():    # compiled, or refused with the reason (an empty tape: nothing)
        tier = native.tier(t)
        assert tier == "native" or tier.startswith("interpreted (") or len(t) == 0, tier


@_RANDOM
@given(stmts=fz.statements(), out=fz.scalar_exprs(2, max_leaves=5), seed=st.integers(0, 2**31))
def test_random_branchy_programs_agree(stmts, out, seed):
    def f(x):
        return fz.run_statements(stmts, out, np, [x[0], x[1]], None)
    rng = np.random.default_rng(seed)
    _agree(f, [(rng.uniform(-2, 2, 2),) for _ in range(4)])


@_RANDOM
@given(tree=fz.array_exprs(), seed=st.integers(0, 2**31))
def test_random_array_programs_agree(tree, seed):
    def f(x0, x1):
        return fz._to_scalar(np, fz.eval_array(tree, np, [x0, x1, 0.5]))
    rng = np.random.default_rng(seed)
    _agree(f, [(rng.uniform(-2, 2, 3), rng.uniform(-2, 2, (2, 3))) for _ in range(3)])


def test_standalone_hvp_export(tmp_path):
    f = lambda x: np.sum(np.sin(x) * x ** 2) + x[0] * x[1] * x[2]
    x, v = np.array([0.3, -0.7, 1.1]), np.array([1.0, 2.0, 3.0])
    native.to_c(f, x, tmp_path / "hv.c", name="hv", hvp=True)
    (tmp_path / "m.c").write_text(r"""
#include <stdio.h>
#include "hv.h"
int main(void)
{
    double x[3] = {0.3, -0.7, 1.1}, v[3] = {1.0, 2.0, 3.0}, hv[3];
    int rc = hv_hvp(x, v, hv);
    printf("%d %a %a %a\n", rc, hv[0], hv[1], hv[2]);
    return 0;
}
""")
    exe = tmp_path / "hvp"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", str(exe),
                    str(tmp_path / "hv.c"), str(tmp_path / "m.c"), "-lm"], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    H = np.diag(2 * np.sin(x) + 4 * x * np.cos(x) - x ** 2 * np.sin(x))
    H[0, 1] = H[1, 0] = x[2]
    H[0, 2] = H[2, 0] = x[1]
    H[1, 2] = H[2, 1] = x[0]
    assert int(out[0]) == 0
    np.testing.assert_allclose([float.fromhex(s) for s in out[1:]], H @ v, rtol=1e-13)


def test_native_argument_is_checked():
    with pytest.raises(ValueError, match="'auto', 'always' or 'never'"):
        fd.grad(spring, native="fast")
