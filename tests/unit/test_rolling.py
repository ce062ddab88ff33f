"""Loop rolling (docs/design.md, "The optimizer"): detection, and rolled tapes against the
tape as recorded (optimize=False), which is the reference here -- every derivative of it
is tested against closed forms elsewhere.  Accumulations are rolled into reductions that
add in the loop's own order, so sums agree bit for bit; products and transcendental values
may differ in the last bits (docs/conventions.md, "Rolled loops"), hence rtol 1e-13."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import fastad as fd
from reference import rosen, rosen_grad

RTOL = 1e-13


def rolled(fun, *args):
    """The tape of fun(*args) after the optimizer, and what the optimizer did."""
    tape = fd.record(fun, *args)
    tape.optimize()
    return tape, tape.optimized


def rosen_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def close(a, b, rtol=RTOL):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(b))))


# ---------------------------------------------------------------------- detection

def test_rosenbrock_loop_becomes_vectorized():
    x = np.random.default_rng(0).normal(size=200)
    tape, o = rolled(rosen_loop, x)
    assert o["loops"] == 1 and o["reductions"] == 1
    assert o["iterations"] >= 197          # the first iteration adds to the float 0.0
    assert o["records_after"] < o["records_before"] / 20
    assert o["bytes_after"] / (8 * 199) <= 20      # bytes per scalar op of the loop
    assert tape.forward(x) == pytest.approx(rosen(x), rel=1e-13)
    np.testing.assert_allclose(tape.reverse(), rosen_grad(x), rtol=1e-12)


def test_stride_that_changes_stays_unrolled():
    def f(x):
        s = 0.0
        for i in range(6):
            s = s + np.sin(x[i * i])          # slots 0, 1, 4, 9, 16, 25: no constant stride
        return s
    x = np.linspace(0.1, 2.0, 26)
    _, o = rolled(f, x)
    assert o["loops"] == 0


def test_read_two_iterations_back_stays_unrolled():
    def f(x):
        y = [x[0], x[1]]
        for i in range(2, len(x)):
            y.append(y[i - 2] * x[i])         # each step reads the one written two steps back
        return sum(y[k] * (k + 1.0) for k in range(len(y)))
    x = np.linspace(0.5, 1.5, 12)
    tape = fd.record(f, x)
    recorded = len(tape)
    tape.optimize()
    # the products (period 1, reading two back) are not a loop of period 1; read as a loop
    # of period 2 they are a true recurrence (each pair reads the last), kept in order as a
    # LOOP record (tests/unit/test_recurrence.py); the final weighted sum may roll
    o = tape.optimized
    assert o["rolled_records"] <= recorded - 10 or o["recurrences"] >= 1
    g_ref = fd.grad(f, optimize=False)(x)
    close(fd.grad(f)(x), g_ref)


def test_partial_sums_used_later_stay_unrolled():
    def f(x):
        s, hist = 0.0, []
        for i in range(len(x)):
            s = s + x[i] * x[i]
            hist.append(s)
        return s + 0.5 * hist[3]
    x = np.linspace(-1.0, 1.0, 10)
    _, o = rolled(f, x)
    # a run may end at the partial sum read later (its last value survives), never span it
    # as a reduction; or the whole loop is kept in order, every partial sum kept (LOOP)
    assert o["iterations"] < 10 or o["recurrences"] >= 1
    close(fd.grad(f)(x), 2 * x + np.where(np.arange(10) <= 3, x, 0.0))
    assert fd.value_and_grad(f)(x)[0] == pytest.approx(np.sum(x * x) + 0.5 * np.sum(x[:4] ** 2))


def test_true_recurrence_stays_in_order():
    def f(x):
        y = x[0]
        for i in range(1, len(x)):
            y = np.sin(y) * x[i]
        return y
    x = np.linspace(0.5, 1.0, 8)
    _, o = rolled(f, x)
    # no reduction, no ranged record: one LOOP record running the steps in order
    assert o["reductions"] == 0 and o["loops"] == o["recurrences"] == 1
    assert fd.value_and_grad(f)(x)[1].tolist() == fd.grad(f, optimize=False)(x).tolist()


def test_guards_kept_per_iteration_and_rechecked():
    def f(x):
        s = 0.0
        for i in range(len(x)):
            if x[i] > 0:
                s = s + x[i] ** 3
            else:
                s = s - x[i]
        return s
    x = np.linspace(0.1, 1.0, 20)
    _, o = rolled(f, x)
    assert o["loops"] == 1 and o["guards"] >= 18
    g = fd.grad(f)
    close(g(x), 3 * x ** 2)
    y = x.copy()
    y[7] = -0.5                    # a guard changes outcome: retrace, right answer
    close(g(y), np.where(y > 0, 3 * y ** 2, -1.0))
    assert g.cache_info()["retraces"] == 1


def test_irregular_branches_roll_where_regular():
    def f(x):
        s = 0.0
        for i in range(len(x)):
            s = s + (x[i] * x[i] if x[i] > 0 else -x[i])
        return s
    x = np.concatenate([np.linspace(0.1, 1, 10), -np.linspace(0.1, 1, 10)])
    _, o = rolled(f, x)
    assert o["loops"] >= 1
    close(fd.grad(f)(x), np.where(x > 0, 2 * x, -1.0))


def test_accumulations_product_max_min():
    def f(x):
        p, m, n = 1.0, x[0], x[0]
        for i in range(1, len(x)):
            p = p * (1.0 + 0.1 * x[i])
            m = np.maximum(m, x[i] * x[i])
            n = np.minimum(n, np.sin(x[i]))
        return p + 2.0 * m + 3.0 * n
    x = np.random.default_rng(3).normal(size=30)
    _, o = rolled(f, x)
    assert o["reductions"] >= 3
    g = fd.grad(f)(x)
    # closed form: d p / d x_i = p * 0.1 / (1 + 0.1 x_i); max/min pick one element each
    p = np.prod(1.0 + 0.1 * x[1:])
    ref = np.zeros_like(x)
    ref[1:] += p * 0.1 / (1.0 + 0.1 * x[1:])
    sq = np.concatenate([[x[0]], x[1:] ** 2])
    k = int(np.argmax(sq))
    ref[k] += 2.0 * (1.0 if k == 0 else 2 * x[k])
    sn = np.concatenate([[x[0]], np.sin(x[1:])])
    k = int(np.argmin(sn))
    ref[k] += 3.0 * (1.0 if k == 0 else np.cos(x[k]))
    close(g, ref, rtol=1e-12)


def test_info_and_trace_say_what_the_optimizer_did():
    x = np.linspace(0.0, 1.0, 50)
    g = fd.grad(rosen_loop)
    g(x)
    text = str(g.info())
    assert "optimizer: rolled 1 loop" in text and "1 accumulation" in text
    assert "optimizer" not in str(fd.grad(rosen_loop, optimize=False).info())
    tr = fd.trace(rosen_loop, x[:6])
    assert any(r["op"] == "add" for r in tr.rows)          # the trace shows the records as recorded
    assert "optimizer" in str(tr) and "rolled 1 loop" in str(tr)


# ---------------------------------------------------------------------- rolled == recorded

def spring(p):
    k, c, x, v = p[0], p[1], p[2], p[3]
    loss = 0.0
    for _ in range(40):
        a = -k * x - c * v
        x = x + 0.01 * v
        v = v + 0.01 * a
        loss = loss + x * x
    return loss


def rows_cols(A):
    s = 0.0
    for i in range(A.shape[0]):
        s = s + A[i, 0] * np.tanh(A[i, 1])          # by row: stride = number of columns
    for j in range(A.shape[1]):
        s = s + np.exp(0.1 * A[0, j]) * A[1, j]     # by column: stride 1
    return s


def nested_loops(A):
    s = 0.0
    for i in range(A.shape[0]):
        r = 0.0
        for j in range(A.shape[1]):
            r = r + np.sin(A[i, j]) * A[i, j]
        s = s + r * r
    return s


def two_args(x, w):
    s = 0.0
    for i in range(len(x)):
        s = s + w[i] * np.log1p(x[i] ** 2)
    return s * s


def with_linalg(x):
    # a rolled loop between linear-algebra records: their operand ranges are renamed
    A = x[:16].reshape(4, 4) + 4.0 * np.eye(4)
    y = np.linalg.solve(A, x[16:20])
    s = np.linalg.slogdet(A)[1]
    for i in range(4, len(x)):
        s = s + np.sin(x[i]) * y[0]
    L = np.linalg.cholesky(A @ A.T)
    return s + np.sum(L * L)


def with_eig_betainc(x):
    # the same with the records added last to the linear-algebra block (EIG, BETAINC)
    from scipy import special
    A = np.diag(np.arange(1.0, 5.0)) + 0.1 * x[:16].reshape(4, 4)
    w = np.linalg.eigvals(A)
    s = np.sum(w * w)
    for i in range(16, len(x)):
        s = s + np.cos(x[i]) * w[0]
    p = special.betainc(2.0 + x[16:19] ** 2, 3.0 + x[19:22] ** 2, 0.3 + 0.1 * np.tanh(x[22:25]))
    return s + np.sum(p)


PROGRAMS = [
    (with_linalg, lambda r: (r.normal(size=40),)),
    (with_eig_betainc, lambda r: (r.normal(size=40),)),
    (rosen_loop, lambda r: (r.normal(size=40),)),
    (spring, lambda r: (np.array([2.0, 0.3, 1.0, 0.0]) + 0.1 * r.normal(size=4),)),
    (rows_cols, lambda r: (r.normal(size=(12, 7)),)),
    (nested_loops, lambda r: (r.normal(size=(6, 9)),)),
    (two_args, lambda r: (r.normal(size=15), r.normal(size=15))),
]


@pytest.mark.parametrize("fun,make", PROGRAMS, ids=[p[0].__name__ for p in PROGRAMS])
def test_rolled_matches_recorded(fun, make):
    r = np.random.default_rng(7)
    args = make(r)
    argnums = tuple(range(len(args)))
    for opt_args in (args, make(r)):               # trace, then a replay at new values
        v1, g1 = fd.value_and_grad(fun, argnums)(*opt_args)
        v0, g0 = fd.value_and_grad(fun, argnums, optimize=False)(*opt_args)
        close(v1, v0)
        for a, b in zip(g1, g0):
            close(a, b)
    tangents = tuple(r.normal(size=np.shape(a)) for a in args)
    close(fd.jvp(fun, args, tangents)[1], fd.jvp(fun, args, tangents, optimize=False)[1])
    x0, rest = args[0], args[1:]
    f1 = lambda x: fun(x, *rest)
    v = r.normal(size=np.shape(x0))
    close(fd.hvp(f1)(x0, v), fd.hvp(f1, optimize=False)(x0, v), rtol=1e-12)
    close(fd.hessian(f1)(x0), fd.hessian(f1, optimize=False)(x0), rtol=1e-12)
    # nested: the gradient of a function that calls grad inside
    outer = lambda x: np.sum(fd.grad(f1)(x) ** 2)
    close(fd.grad(outer)(x0), fd.grad(outer, optimize=False)(x0), rtol=1e-12)


def test_tape_with_linear_algebra_is_optimized():
    # its loop rolls, and the linear-algebra records after it read renamed ranges
    x = np.random.default_rng(3).normal(size=40)
    tape, o = rolled(with_linalg, x)
    assert o["loops"] == 1 and o["records_after"] < o["records_before"]
    _, o = rolled(with_eig_betainc, x)
    assert o["loops"] == 1 and o["records_after"] < o["records_before"]
    v1, g1 = fd.value_and_grad(with_linalg)(x)
    v0, g0 = fd.value_and_grad(with_linalg, optimize=False)(x)
    close(v1, v0)
    close(g1, g0)


def test_rolled_tape_threads_and_pytrees():
    from concurrent.futures import ThreadPoolExecutor
    def f(params):
        s = 0.0
        for i in range(len(params["x"])):
            s = s + params["w"] * params["x"][i] ** 2
        return s
    g = fd.grad(f)
    xs = [{"x": np.linspace(0, 1, 30) + k, "w": 1.0 + k} for k in range(8)]
    g(xs[0])
    with ThreadPoolExecutor(4) as ex:
        out = list(ex.map(g, xs))
    for p, o in zip(xs, out):
        close(o["x"], 2 * p["w"] * p["x"])
        close(o["w"], np.sum(p["x"] ** 2))


# ---------------------------------------------------------------------- generated loops

UNARY = [np.sin, np.tanh, np.cos, lambda u: u * u, lambda u: 0.5 * u]
BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - 0.3 * b]


@st.composite
def loop_programs(draw):
    body = draw(st.lists(st.tuples(st.integers(0, len(UNARY) - 1), st.integers(0, len(BINARY) - 1),
                                   st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=5))
    acc = draw(st.sampled_from(["sum", "prod", "max", "none"]))
    branch = draw(st.booleans())
    trips = draw(st.integers(0, 50))
    shift = draw(st.integers(0, 2))
    seed = draw(st.integers(0, 2 ** 16))
    return body, acc, branch, trips, shift, seed


def build(body, acc, branch, shift):
    def f(x, c):
        s = x[0] if acc in ("max", "prod") else 0.0
        out = []
        for i in range(len(x) - 2):
            vals = [x[i], x[i + shift], c, x[-1]]
            for u, b, p, q in body:
                vals.append(BINARY[b](UNARY[u](vals[p]), vals[-1 - q % len(vals)]))
            t = vals[-1]
            if branch and x[i] > 0.0:
                t = t * x[i]
            if acc == "sum":
                s = s + t
            elif acc == "prod":
                s = s * (1.0 + 0.01 * np.tanh(t))
            elif acc == "max":
                s = np.maximum(s, t)
            else:
                out.append(t)
        return s if acc != "none" else sum(out, 0.0) + x[0]
    return f


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop_programs())
def test_generated_loops_roll_like_recorded(prog):
    body, acc, branch, trips, shift, seed = prog
    f = build(body, acc, branch, shift)
    r = np.random.default_rng(seed)
    x, c = r.normal(size=trips + 2), float(r.normal())
    v1, g1 = fd.value_and_grad(f, (0, 1))(x, c)
    v0, g0 = fd.value_and_grad(f, (0, 1), optimize=False)(x, c)
    close(v1, v0)
    close(g1[0], g0[0])
    close(g1[1], g0[1])
    d = r.normal(size=x.shape)
    close(fd.jvp(f, (x, c), (d, 0.0))[1], fd.jvp(f, (x, c), (d, 0.0), optimize=False)[1])


def test_guard_after_reassociated_sum_keeps_tape_as_recorded():
    # s = s + x_i + y_i rolls to a reduction over x_i + y_i, which may round differently;
    # a guard comparing s with exactly the unrolled value must then keep the recorded tape
    def unrolled_and_rolled(x, y):
        u = r = 0.0
        for a, b in zip(x, y):
            u = (u + a) + b
            r = r + (a + b)
        return u, r
    rng = np.random.default_rng(11)
    for _ in range(200):
        x, y = rng.normal(size=20), rng.normal(size=20) * 1e-3
        u, r = unrolled_and_rolled(x, y)
        if r > u:
            break
    assert r > u

    def f(x, y):
        s = 0.0
        for i in range(len(x)):
            s = s + x[i] + y[i]
        return s * 2.0 if s > u else s * 3.0
    g = fd.value_and_grad(f, (0, 1))
    v, (gx, gy) = g(x, y)
    assert v == 3.0 * u                          # the branch the trace took, exactly
    close(gx, np.full(20, 3.0))
    close(gy, np.full(20, 3.0))
    assert g.tapes()[0].optimized["abandoned"]
