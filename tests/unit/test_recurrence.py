"""True recurrences kept in order as LOOP records (docs/design.md, "LOOP records").

The reference is the tape as recorded (optimize=False), whose derivatives are tested
against closed forms elsewhere; a LOOP record runs the very records of the unrolled loop in
the very order, so everything here is compared bit for bit (==), not to a tolerance.  The
spring is also checked against its hand-written adjoint (benchmarks/problems.py)."""
import os
import pickle
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastad as fd
from fastad import native
from fastad._tape import Tape, op_table

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import problems  # noqa: E402


def optimized(fun, *args):
    tape = fd.record(fun, *args)
    tape.optimize()
    return tape, tape.optimized


def same(a, b):
    """Bit for bit, arrays or scalars (NaN never occurs in these programs)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert a.tobytes() == b.tobytes(), (a, b)


def all_paths_same(f, x, native="never"):
    """value, gradient, jvp, hvp and hessian of f with rolling against optimize=False."""
    kw = dict(native=native)
    v1, g1 = fd.value_and_grad(f, **kw)(x)
    v0, g0 = fd.value_and_grad(f, optimize=False, native="never")(x)
    same(v1, v0)
    same(g1, g0)
    d = np.cos(np.arange(x.size) + 1.0)
    same(fd.jvp(f, (x,), (d,))[1], fd.jvp(f, (x,), (d,), optimize=False)[1])
    same(fd.hvp(f, **kw)(x, d), fd.hvp(f, optimize=False, native="never")(x, d))
    same(fd.hessian(f)(x), fd.hessian(f, optimize=False)(x))


# ---------------------------------------------------------------------- programs

spring = problems.make_spring(np)


def logistic(x):
    r, y = x[0], x[1]
    s = 0.0
    for _ in range(40):
        y = r * y * (1.0 - y)
        s = s + y
    return s


def running_max(x):
    m = x[0]
    for i in range(1, len(x)):
        m = np.maximum(0.9 * m, x[i]) + 0.01 * m     # carried through more than a max
    return m


def rk4(x):
    """Classical Runge-Kutta on the pendulum y'' = -w^2 sin y, loss: sum of y."""
    w, y, v = x[0], x[1], x[2]
    h, loss = 0.05, 0.0
    for _ in range(30):
        def f(y, v):
            return v, -w * w * np.sin(y)
        k1y, k1v = f(y, v)
        k2y, k2v = f(y + 0.5 * h * k1y, v + 0.5 * h * k1v)
        k3y, k3v = f(y + 0.5 * h * k2y, v + 0.5 * h * k2v)
        k4y, k4v = f(y + h * k3y, v + h * k3v)
        y = y + h / 6.0 * (k1y + 2.0 * k2y + 2.0 * k3y + k4y)
        v = v + h / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v)
        loss = loss + y
    return loss


def carried_vector(x):
    """A 3-state linear system with a nonlinearity, the state a list of scalars, driven by
    the inputs x[3:] (an outside operand advancing by one per iteration)."""
    s = [x[0], x[1], x[2]]
    for i in range(3, len(x)):
        s = [0.9 * s[0] + 0.1 * np.tanh(s[1]) + x[i],
             0.8 * s[1] - 0.2 * s[2] * s[0],
             s[2] + 0.05 * s[0]]
    return s[0] * s[1] + s[2]


# no op pattern repeats three times in a row inside it, so the inner loop does not roll on
# its own and the outer loop's body is the whole inner sequence
_SEQ = (0, 1, 2, 3, 1, 0, 3, 2, 0, 2, 1, 3, 3, 0, 1, 2, 2, 3, 0, 1, 1, 2, 3, 0, 3, 1, 0, 2)


def long_body(x):
    """A LOOP body of 87 records: the threaded sweeps' plan (csrc/loop_sweeps.h) no longer
    fits on the stack and is allocated."""
    fs = (np.sin, np.cos, np.tanh, np.arctan)
    y, s = x[0], 0.0
    for _ in range(20):
        y = np.arcsinh(y)           # an op once per body: the period is found from it
        for k in _SEQ:
            y = fs[k](y) + 0.5 * y
        s = s + y * x[1]
    return s


RECURRENCES = [
    (long_body, np.array([0.3, 1.7])),
    (spring, np.array([3.0, 0.5, 1.0, 0.0])),
    (logistic, np.array([3.7, 0.3])),
    (running_max, np.sin(np.arange(25.0))),
    (rk4, np.array([1.3, 0.4, 0.0])),
    (carried_vector, np.linspace(-0.5, 0.5, 23)),
]


@pytest.mark.parametrize("f,x", RECURRENCES, ids=[f.__name__ for f, _ in RECURRENCES])
def test_recurrence_becomes_one_loop_record_and_agrees_bit_for_bit(f, x):
    tape, o = optimized(f, x)
    assert o["recurrences"] >= 1
    assert o["records_after"] < o["records_before"] / 4
    all_paths_same(f, x)


def test_spring_against_its_hand_written_adjoint():
    p = np.array([3.0, 0.5, 1.0, 0.0])
    tape, o = optimized(spring, p)
    # 1000 steps of 10 records: one LOOP record holding the body once
    assert o["recurrences"] == 1 and o["iterations"] >= 999
    assert o["records_after"] < 60
    val, grad = fd.value_and_grad(spring, native="never")(p)
    ref_val, (ref_grad,) = problems.spring_grad_hand(p)
    assert val == pytest.approx(ref_val, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10)


def test_nested_derivative_through_a_loop_record():
    """grad of (grad . d): the inner gradient recorded through the LOOP record, unrolled by
    the recorded adjoint, then the outer tape optimized again."""
    def inner_dot(x):
        return fd.grad(logistic)(x) @ np.array([1.0, -2.0])
    x = np.array([3.3, 0.4])
    same(fd.grad(inner_dot)(x), fd.grad(inner_dot, optimize=False)(x))


def test_guard_flipping_mid_loop_retraces():
    def f(x):
        y, s = x[0], 0.0
        for i in range(1, len(x)):
            if y > 0.0:                  # a guard on the carried state
                y = 0.5 * y * x[i] + 0.1
            else:
                y = y + x[i]
            s = s + y * y
        return s
    x = np.full(20, 1.5)
    _, o = optimized(f, x)
    assert o["recurrences"] >= 1 and o["guards"] >= 10
    g = fd.grad(f, native="never")
    same(g(x), fd.grad(f, optimize=False)(x))
    y = x.copy()
    y[9] = -40.0                         # the state goes negative from step 9 on
    same(g(y), fd.grad(f, optimize=False)(y))
    assert g.cache_info()["retraces"] == 1


def test_body_reading_two_iterations_back():
    """y[i] = f(y[i-2]): period 1 reads two back (not a loop of period 1); period 2 is a
    recurrence of a pair.  Either way the results are the recorded tape's."""
    def f(x):
        y = [x[0], x[1]]
        for i in range(2, len(x)):
            y.append(np.sin(y[i - 2]) * x[i] + 0.3 * y[i - 1])
        return y[-1] + y[-2]
    x = np.linspace(0.5, 1.5, 30)
    all_paths_same(f, x)


def test_changing_strides_stay_correct():
    def f(x):
        y = x[0]
        for i in range(1, 7):
            y = np.sin(y) * x[i * i % len(x)]       # indices 1, 4, 9, 16, 25, 36 % n
        return y
    x = np.linspace(0.1, 2.0, 40)
    tape, o = optimized(f, x)
    assert o["recurrences"] == 0                     # no constant stride: left as recorded
    same(fd.grad(f)(x), fd.grad(f, optimize=False)(x))


@pytest.mark.parametrize("order", ["rows", "columns"])
def test_nested_loops_over_a_2d_array(order):
    """A recurrence through a 2-D array by rows (one stride throughout: one LOOP record over
    everything) and by columns (the stride jumps at each column: the outer loop is the one
    rolled, one LOOP record over the columns whose body is a whole column -- a loop of
    loops, docs/design.md, "Loops of loops")."""
    A = np.cos(np.arange(48.0)).reshape(8, 6)

    def f(a):
        y = 0.1
        n, m = a.shape
        outer, inner = (n, m) if order == "rows" else (m, n)
        for i in range(outer):
            for j in range(inner):
                y = np.tanh(y + (a[i, j] if order == "rows" else a[j, i])) * 0.9
        return y
    _, o = optimized(f, A)
    assert o["recurrences"] == 1
    assert o["iterations"] == (A.size if order == "rows" else A.shape[1])
    assert o["rolled_records"] == o["records_before"]         # every record in the loop
    same(fd.grad(f)(A), fd.grad(f, optimize=False)(A))
    d = np.sin(np.arange(48.0)).reshape(8, 6)
    same(fd.hvp(f)(A, d), fd.hvp(f, optimize=False)(A, d))


def test_trip_count_and_record_layout_survive_pickling():
    x = np.array([3.7, 0.3])
    tape, o = optimized(logistic, x)
    back = pickle.loads(pickle.dumps(tape))
    same(back.forward(x), tape.forward(x))
    same(back.reverse(), tape.reverse())


def test_corrupt_loop_record_is_rejected_on_load():
    """A pickled LOOP record whose stride would walk past the last slot is refused
    (csrc/loop.h, fa_loop_valid) instead of read out of bounds."""
    x = np.array([3.7, 0.3])
    tape, _ = optimized(logistic, x)
    loop = [name for name, _ in op_table()].index("loop")
    state = tape._raw_state()
    raw = np.asarray(state["rec"], dtype=np.uint8).reshape(-1, 16)
    words = raw.view(np.int32).copy()            # op|flags, r, a, b per record
    i = int(np.flatnonzero(raw[:, 0] == loop)[0])
    P = int(words[i + 1, 2])                     # the EXT word: r = trips, a = body length
    Tape._from_raw_state(dict(state))            # intact: loads
    words[i + 2 + P, 1] = 10 ** 6                # the first body record's result stride
    state["rec"] = words.view(np.uint8).ravel()
    with pytest.raises(ValueError, match="corrupt"):
        Tape._from_raw_state(state)


# ---------------------------------------------------------------------- random programs

UNARY = [np.sin, np.tanh, lambda y: 0.5 * y, lambda y: y * y * 0.1]


@st.composite
def loop_program(draw):
    """A loop of 0..50 steps carrying two values, with a data-dependent branch inside and,
    sometimes, an inner loop."""
    trips = draw(st.integers(0, 50))
    u = draw(st.integers(0, len(UNARY) - 1))
    c = draw(st.floats(0.1, 0.9))
    inner = draw(st.integers(0, 3))
    branch = draw(st.booleans())
    n = draw(st.integers(2, 8))

    def f(x):
        a, b = x[0], x[1]
        for i in range(trips):
            t = UNARY[u](a) * c + x[i % n] * 0.1
            for _ in range(inner):
                t = t * 0.9 + b * 0.01
            if branch and t > 0.3:
                b = b - 0.1 * t
            else:
                b = b + 0.2 * a * t
            a = 0.7 * a + 0.2 * t
        return a * b + a

    x = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n)))
    return f, x


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(loop_program())
def test_random_loop_programs_agree_bit_for_bit(prog):
    f, x = prog
    v1, g1 = fd.value_and_grad(f, native="never")(x)
    v0, g0 = fd.value_and_grad(f, optimize=False, native="never")(x)
    same(v1, v0)
    same(g1, g0)
    d = np.linspace(1.0, 2.0, x.size)
    same(fd.jvp(f, (x,), (d,))[1], fd.jvp(f, (x,), (d,), optimize=False)[1])


# ---------------------------------------------------------------------- native code

def test_native_loop_record_agrees_with_interpreter(tmp_path, monkeypatch):
    """One small compile: the LOOP record as a C for-loop, forward with guards, reverse,
    tangent, against the interpreter bit for bit."""
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path))

    def f(x):
        y, s = x[0], 0.0
        for i in range(1, len(x)):
            if y > -5.0:
                # x[i] a range, x[3] one slot inside it: their adjoints interleave
                y = np.sin(y) * x[i] + 0.5 * y * x[3]
            s = s + y * y
        return s
    x = np.linspace(0.2, 1.2, 40)          # long enough for the loop's own function
    gn = fd.value_and_grad(f, native="always")
    gi = fd.value_and_grad(f, native="never")
    vn, dn = gn(x)
    vi, di = gi(x)
    same(vn, vi)
    same(dn, di)
    assert [native.tier(t) for t in gn.tapes()] == ["native"]
    d = np.ones_like(x)
    # the tangent sweep, over the recorded gradient (itself rolled into LOOP records)
    same(fd.hvp(f, native="always")(x, d), fd.hvp(f, native="never")(x, d))
    y = x.copy()
    y[5] = -60.0                         # the guard fails inside the compiled loop: retrace
    same(gn(y)[1], gi(y)[1])
    same(gn(x)[1], fd.grad(f, optimize=False)(x))
