"""Record once, replay, never silently wrong.

Programs with branches and data-dependent loop counts are called alternately at points
on different sides; every result must equal the 50-digit reference (reference.py, same
program text on mpmath duals; tolerance 64 eps * first-order error bound, see there) and
a fresh trace (fd.grad(f, replay=False)).  cache_info() and a call counter show that the
Python body runs once per distinct branch path and not on replay.

"Equals a fresh trace": trace-time values may come from numpy's own ufunc loops while
replay uses the C kernels; both are accurate to a few ulp, so we compare with
rtol = 1e-13 (a few hundred ulp of slack, while any replay error -- stale values, wrong
branch, missing ops -- is O(1)).
"""

import numpy as np
import pytest
from mpmath import mp, mpf

import fastad as fd
from reference import EPS, MP, assert_close, numpy_namespace, ref_value_and_grad

NP = numpy_namespace()
FRESH_RTOL = 1e-13


def counted(make, ns=NP):
    """(function, counter) where counter[0] counts runs of the Python body."""
    inner = make(ns)
    calls = [0]

    def f(*args):
        calls[0] += 1
        return inner(*args)

    return f, calls


def assert_same(got, fresh, what):
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(fresh, dtype=float),
                               rtol=FRESH_RTOL, atol=0, err_msg=what)


def check_against_reference(got, ref, what):
    if isinstance(ref.grad, tuple):
        assert isinstance(got, tuple) and len(got) == len(ref.grad), what
        for i, (g, r, b) in enumerate(zip(got, ref.grad, ref.grad_bound)):
            assert_close(g, r, b, what=f"{what} [{i}]")
    else:
        assert_close(got, ref.grad, ref.grad_bound, what=what)


# ------------------------------------------------------------------ branches


def make_branchy(ns):
    def f(x, y):
        if x > 0:
            return ns.sin(x) * y + x * x
        else:
            return ns.exp(x) * y - x
    return f


def test_branch_alternating_20_calls():
    f, calls = counted(make_branchy)
    g = fd.grad(f, argnums=(0, 1))
    fresh = fd.grad(make_branchy(NP), argnums=(0, 1), replay=False)
    rng = np.random.default_rng(1)
    for k in range(20):
        x = float(rng.uniform(0.1, 2.0)) * (1 if k % 2 == 0 else -1)
        y = float(rng.uniform(-2.0, 2.0))
        got = g(x, y)
        ref = ref_value_and_grad(make_branchy(MP), (x, y), (0, 1))
        assert ref.kinks_ok
        check_against_reference(got, ref, f"call {k} at {(x, y)}")
        assert_same(got, fresh(x, y), f"call {k} vs fresh trace")
        # closed form as a third opinion
        mx, my = mpf(x), mpf(y)
        if x > 0:
            ex = (mp.cos(mx) * my + 2 * mx, mp.sin(mx))
        else:
            ex = (mp.exp(mx) * my - 1, mp.exp(mx))
        assert abs(mpf(got[0]) - ex[0]) <= 64 * EPS * (abs(mp.cos(mx) * my) + 2 * abs(mx) + 1
                                                       + abs(mp.exp(mx) * my))
        assert abs(mpf(got[1]) - ex[1]) <= 64 * EPS * abs(ex[1])
    info = g.cache_info()
    assert calls[0] == 2, "the Python body must run once per branch, not on replay"
    assert info["traces"] == 2
    assert info["tapes"] == 2
    assert info["replays"] == 18


def test_value_and_grad_branch_values_follow_branch():
    f, calls = counted(make_branchy)
    vg = fd.value_and_grad(f)
    for x in [1.0, -1.0, 2.0, -2.0, 0.5, -0.5]:
        v, gx = vg(x, 3.0)
        ref = ref_value_and_grad(make_branchy(MP), (x, 3.0))
        assert_close(v, ref.value, ref.value_bound, what=f"value at {x}")
        assert_close(gx, ref.grad, ref.grad_bound, what=f"grad at {x}")
    assert calls[0] == 2
    assert vg.cache_info()["traces"] == 2


def make_branch_two_vars(ns):
    def f(x, y):
        if x > y:
            return x * ns.cos(y)
        return y * ns.cos(x) + 1.0
    return f


def test_branch_comparing_two_traced_values():
    f, calls = counted(make_branch_two_vars)
    g = fd.grad(f, argnums=(0, 1))
    fresh = fd.grad(make_branch_two_vars(NP), argnums=(0, 1), replay=False)
    pts = [(1.0, 0.5), (0.5, 1.0), (2.0, -1.0), (-1.0, 2.0), (3.0, 2.9), (2.9, 3.0)]
    for p in pts * 2:
        got = g(*p)
        ref = ref_value_and_grad(make_branch_two_vars(MP), p, (0, 1))
        check_against_reference(got, ref, f"at {p}")
        assert_same(got, fresh(*p), f"fresh at {p}")
    assert calls[0] == 2
    assert g.cache_info()["traces"] == 2


GUARDS = {
    "x > c": (lambda x: x > 0.5, [0.7, 0.3]),
    "x >= c": (lambda x: x >= 0.5, [0.5, 0.3]),
    "x < c": (lambda x: x < 0.5, [0.3, 0.5]),
    "x <= c": (lambda x: x <= 0.5, [0.5, 0.7]),
    "x == c": (lambda x: x == 0.5, [0.5, 0.7]),
    "x != c": (lambda x: x != 0.5, [0.7, 0.5]),
    "c < x (reflected)": (lambda x: 0.5 < x, [0.7, 0.5]),
    "c >= x (reflected)": (lambda x: 0.5 >= x, [0.5, 0.7]),
    "bool(x)": (lambda x: bool(x), [0.7, 0.0]),
    "if x:": (lambda x: True if x else False, [0.0, -0.3]),
    "not x": (lambda x: not x, [0.0, 0.3]),
}


@pytest.mark.parametrize("name", list(GUARDS))
def test_every_comparison_kind_is_a_guard(name):
    cond, pts = GUARDS[name]

    def make(ns):
        def f(x):
            if cond(x):
                return ns.sin(x) * 3.0
            return x * x * x
        return f

    f, calls = counted(make)
    g = fd.value_and_grad(f)
    fresh = fd.value_and_grad(make(NP), replay=False)
    for k in range(10):
        x = pts[k % 2]
        v, gx = g(x)
        ref = ref_value_and_grad(make(MP), (x,))
        assert_close(v, ref.value, ref.value_bound, what=f"{name} value at {x}")
        assert_close(gx, ref.grad, ref.grad_bound, what=f"{name} grad at {x}")
        fv, fgx = fresh(x)
        assert_same((v, gx), (fv, fgx), f"{name} fresh at {x}")
    # the two test points take different branches
    assert cond(pts[0]) != cond(pts[1])
    assert calls[0] == 2
    assert g.cache_info()["traces"] == 2
    assert g.cache_info()["tapes"] == 2


# ------------------------------------------------------------------ data-dependent loops


def make_loop(ns):
    def f(x):
        y = x
        while y < 10.0:
            y = y * 1.5 + 0.25 * ns.sin(y)
        return y * ns.cos(x)
    return f


def _loop_count(x):
    y = x
    n = 0
    while y < 10.0:
        y = y * 1.5 + 0.25 * np.sin(y)
        n += 1
    return n


def test_data_dependent_loop_count():
    xs = [0.3, 4.0, 1.0, 12.0, 2.0, 0.3, 7.0, 1.0, 4.0, 12.0, 2.0, 7.0]
    counts = {_loop_count(x) for x in xs}
    assert len(counts) >= 5          # the points really need different numbers of iterations
    f, calls = counted(make_loop)
    g = fd.value_and_grad(f)
    fresh = fd.value_and_grad(make_loop(NP), replay=False)
    for x in xs:
        v, gx = g(x)
        ref = ref_value_and_grad(make_loop(MP), (x,))
        assert ref.kinks_ok
        assert_close(v, ref.value, ref.value_bound, what=f"loop value at {x}")
        assert_close(gx, ref.grad, ref.grad_bound, what=f"loop grad at {x}")
        assert_same((v, gx), fresh(x), f"loop fresh at {x}")
    distinct = len({_loop_count(x) for x in xs})
    assert calls[0] == distinct
    info = g.cache_info()
    assert info["traces"] == distinct
    assert info["replays"] == len(xs) - distinct


def test_loop_over_traced_threshold_with_jvp():
    # jvp retraces / replays consistently too; compare with the reference
    for x in [0.3, 4.0, 12.0, 1.0]:
        v, t = fd.jvp(make_loop(NP), (x,), (2.0,))
        ref = ref_value_and_grad(make_loop(MP), (x,))
        assert_close(v, ref.value, ref.value_bound, what=f"jvp value at {x}")
        assert_close(t, 2 * ref.grad, 2 * ref.grad_bound, what=f"jvp tangent at {x}")


def make_newton_sqrt(ns):
    """Newton iteration for sqrt(a) until converged: iteration count depends on a."""
    def f(a):
        y = a
        while ns.absolute(y * y - a) > 1e-12 * a:
            y = 0.5 * (y + a / y)
        return y
    return f


def test_newton_iteration_until_converged():
    f, calls = counted(make_newton_sqrt)
    g = fd.grad(f)
    for a in [2.0, 100.0, 2.0, 1e6, 100.0, 3.0]:
        got = g(a)
        # d/da of the iterate (not of sqrt) -- the reference differentiates the same program
        ref = ref_value_and_grad(make_newton_sqrt(MP), (a,))
        assert_close(got, ref.grad, ref.grad_bound, what=f"newton grad at {a}")
        # and it is close to the true d sqrt(a)/da at convergence (loose: iterate derivative)
        assert abs(got - 0.5 / np.sqrt(a)) <= 1e-5 * (0.5 / np.sqrt(a))
        assert_same(got, fd.grad(make_newton_sqrt(NP), replay=False)(a), f"fresh at {a}")


# ------------------------------------------------------------------ Rosenbrock


def rosen(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_grad_reference(x):
    """Analytic gradient in mpmath, and a per-component error scale: the sum of the
    absolute values of everything added, with the cancelling difference
    x[i+1] - x[i]**2 counted by its operands (|x[i+1]| + x[i]**2)."""
    m = [mpf(v) for v in x]
    n = len(m)
    g, scale = [], []
    for i in range(n):
        gi, si = mpf(0), mpf(0)
        if i < n - 1:
            t = m[i + 1] - m[i] ** 2
            gi += -400 * m[i] * t - 2 * (1 - m[i])
            si += 400 * abs(m[i]) * (abs(m[i + 1]) + m[i] ** 2) + 2 * (1 + abs(m[i]))
        if i > 0:
            t = m[i] - m[i - 1] ** 2
            gi += 200 * t
            si += 200 * (abs(m[i]) + m[i - 1] ** 2)
        g.append(gi)
        scale.append(si)
    return g, scale


def rosen_value_reference(x):
    m = [mpf(v) for v in x]
    total, scale = mpf(0), mpf(0)
    for i in range(len(m) - 1):
        t = m[i + 1] - m[i] ** 2
        u = 1 - m[i]
        total += 100 * t ** 2 + u ** 2
        scale += 200 * abs(t) * (abs(m[i + 1]) + m[i] ** 2) + 2 * abs(u) * (1 + abs(m[i]))
    # summation of n positive terms: error <= n * eps * total
    return total, scale + len(m) * total


@pytest.mark.parametrize("n", [10, 1000])
def test_rosenbrock_scalar_loop(n):
    calls = [0]

    def f(x):
        calls[0] += 1
        return rosen(x)

    vg = fd.value_and_grad(f)
    rng = np.random.default_rng(n)
    inputs = [np.full(n, -1.2), np.linspace(0, 1, n), rng.uniform(-2, 2, n), np.ones(n)]
    for x in inputs:
        v, g = vg(x)
        assert isinstance(g, np.ndarray) and g.shape == (n,) and g.dtype == np.float64
        ev, es = rosen_value_reference(x)
        assert abs(mpf(v) - ev) <= 64 * EPS * es, (v, ev)
        eg, sg = rosen_grad_reference(x)
        bad = [i for i in range(n) if abs(mpf(g[i]) - eg[i]) > 64 * EPS * sg[i]]
        assert not bad, (f"n={n}: components {bad[:5]} differ, "
                         f"e.g. got {g[bad[0]]} expected {eg[bad[0]]}")
    assert calls[0] == 1, "rosen's Python body must not run on replay"
    info = vg.cache_info()
    assert info["traces"] == 1 and info["replays"] == len(inputs) - 1
    # at the minimum the gradient is exactly zero
    assert np.all(vg(np.ones(n))[1] == 0.0)


def test_rosenbrock_grad_matches_dual_reference_small():
    x = np.array([-1.2, 1.0, 0.3, -0.7, 2.0])
    g = fd.grad(rosen)(x)
    ref = ref_value_and_grad(rosen, (x,))
    assert_close(g, ref.grad, ref.grad_bound, what="rosen n=5")


# ------------------------------------------------------------------ data arguments


def make_data_fn(ns):
    def f(x, a, w):
        s = x * a
        for i in range(len(w)):
            s = s + ns.sin(x * w[i])
        return s
    return f


def test_float_and_array_data_arguments_are_tape_inputs():
    f, calls = counted(make_data_fn)
    vg = fd.value_and_grad(f)               # argnums=0: a and w are data
    rng = np.random.default_rng(7)
    for k in range(6):
        x = float(rng.uniform(-2, 2))
        a = float(rng.uniform(-3, 3))
        w = rng.uniform(-2, 2, 4)
        v, g = vg(x, a, w)
        ref = ref_value_and_grad(make_data_fn(MP), (x, a, w))
        assert_close(v, ref.value, ref.value_bound, what=f"value call {k}")
        assert_close(g, ref.grad, ref.grad_bound, what=f"grad call {k}")
        # closed form
        expected = mpf(a) + sum(mpf(wi) * mp.cos(mpf(x) * mpf(wi)) for wi in w)
        assert abs(mpf(g) - expected) <= 64 * EPS * (abs(a) + sum(abs(wi) for wi in w))
    assert calls[0] == 1, "new float/array data values must not retrace"
    assert vg.cache_info()["traces"] == 1
    # a different array shape is a different signature
    w5 = np.linspace(-1, 1, 5)
    g5 = vg(0.3, 1.5, w5)[1]
    ref = ref_value_and_grad(make_data_fn(MP), (0.3, 1.5, w5))
    assert_close(g5, ref.grad, ref.grad_bound, what="shape (5,)")
    assert vg.cache_info()["traces"] == 2


def test_gradient_with_respect_to_data_position():
    g = fd.grad(make_data_fn(NP), argnums=(1, 2))
    x, a, w = 0.7, 2.0, np.array([0.5, -1.0, 1.5])
    ga, gw = g(x, a, w)
    assert type(ga) is float and isinstance(gw, np.ndarray) and gw.shape == (3,)
    ref = ref_value_and_grad(make_data_fn(MP), (x, a, w), (1, 2))
    assert_close(ga, ref.grad[0], ref.grad_bound[0], what="d/da")
    assert_close(gw, ref.grad[1], ref.grad_bound[1], what="d/dw")
    ga2, gw2 = g(-0.4, 5.0, np.array([1.0, 2.0, 3.0]))
    ref2 = ref_value_and_grad(make_data_fn(MP), (-0.4, 5.0, np.array([1.0, 2.0, 3.0])), (1, 2))
    assert_close(ga2, ref2.grad[0], ref2.grad_bound[0], what="d/da replay")
    assert_close(gw2, ref2.grad[1], ref2.grad_bound[1], what="d/dw replay")


def make_int_loop(ns):
    def f(x, n):
        y = x
        for _ in range(n):
            y = ns.sin(y) + 0.5 * y
        return y
    return f


def test_int_argument_changing_loop_count_retraces():
    f, calls = counted(make_int_loop)
    g = fd.grad(f)
    for n in [3, 5, 3, 5, 8, 3]:
        for x in (0.4, -1.3):
            got = g(x, n)
            ref = ref_value_and_grad(make_int_loop(MP), (x, n))
            assert_close(got, ref.grad, ref.grad_bound, what=f"n={n}, x={x}")
    assert calls[0] == 3, "one trace per distinct int value"
    assert g.cache_info()["traces"] == 3


def make_mode_fn(ns):
    def f(x, mode):
        if mode == "sin":
            return ns.sin(x)
        return ns.cos(x)
    return f


def test_string_argument_is_part_of_signature():
    g = fd.grad(make_mode_fn(NP))
    for mode in ["sin", "cos", "sin", "cos"]:
        got = g(0.9, mode)
        expected = mp.cos(mpf(0.9)) if mode == "sin" else -mp.sin(mpf(0.9))
        assert abs(mpf(got) - expected) <= 8 * EPS, (mode, got)
    assert g.cache_info()["traces"] == 2


def test_closure_values_are_frozen_at_trace_time_unless_replay_false():
    scale = {"k": 2.0}

    def f(x):
        return x * scale["k"]          # read from outside the arguments: a constant of the tape

    g = fd.grad(f)
    g_fresh = fd.grad(f, replay=False)
    assert g(1.0) == 2.0 and g_fresh(1.0) == 2.0
    scale["k"] = 5.0
    assert g(1.0) == 2.0               # documented: frozen at trace time
    assert g_fresh(1.0) == 5.0         # replay=False retraces and sees the new value
    assert g_fresh.cache_info()["traces"] == 2


# ------------------------------------------------------------------ argnums and shapes


def make_matrix_fn(ns):
    def f(s, A):
        total = 0.0
        rows, cols = A.shape
        for i in range(rows):
            for j in range(cols):
                total = total + (i + 1.0) * ns.sin(A[i, j] * s) + A[i, j] * A[i, j] * (j - 1.5)
        return total
    return f


def test_argnums_tuple_and_2d_array_shape():
    A = np.arange(12, dtype=float).reshape(3, 4) / 7.0 - 0.5
    s = 0.8
    g = fd.grad(make_matrix_fn(NP), argnums=(1, 0))
    gA, gs = g(s, A)
    assert isinstance(gA, np.ndarray) and gA.shape == (3, 4) and gA.dtype == np.float64
    assert type(gs) is float
    ref = ref_value_and_grad(make_matrix_fn(MP), (s, A), (1, 0))
    assert_close(gA, ref.grad[0], ref.grad_bound[0], what="d/dA")
    assert_close(gs, ref.grad[1], ref.grad_bound[1], what="d/ds")
    # closed form for d/dA[i, j]
    for i in range(3):
        for j in range(4):
            t1 = (i + 1) * mpf(s) * mp.cos(mpf(A[i, j]) * mpf(s))
            t2 = 2 * mpf(A[i, j]) * (j - mpf(1.5))
            # two terms, each computed to a few ulp; their sum may cancel
            assert abs(mpf(gA[i, j]) - (t1 + t2)) <= 64 * EPS * (abs(t1) + abs(t2)), (i, j)
    # replay with new values, same shape
    A2 = -A[::-1].copy() * 1.3
    gA2, gs2 = g(-0.4, A2)
    ref2 = ref_value_and_grad(make_matrix_fn(MP), (-0.4, A2), (1, 0))
    assert_close(gA2, ref2.grad[0], ref2.grad_bound[0], what="d/dA replay")
    assert_close(gs2, ref2.grad[1], ref2.grad_bound[1], what="d/ds replay")
    assert g.cache_info()["traces"] == 1


def test_branch_on_array_elements():
    def make(ns):
        def f(x):
            if x[0] > x[1]:
                return x[0] * ns.exp(x[1])
            return x[1] * ns.exp(x[0]) + x[2]
        return f

    f, calls = counted(make)
    g = fd.grad(f)
    for p in [[1.0, 0.0, 3.0], [0.0, 1.0, 3.0], [2.0, -1.0, 0.5], [-1.0, 2.0, 0.5]] * 3:
        x = np.array(p)
        got = g(x)
        ref = ref_value_and_grad(make(MP), (x,))
        assert_close(got, ref.grad, ref.grad_bound, what=f"at {p}")
        assert_same(got, fd.grad(make(NP), replay=False)(x), f"fresh at {p}")
    assert calls[0] == 2
