"""Loops of loops (docs/design.md, "Loops of loops"): an outer Python loop around inner
loops rolls as one loop whose body holds the inner loops unrolled, when that body fits in
the optimizer's longest period; loops that only look periodic stay as they are.

The reference is the tape as recorded (optimize=False), whose derivatives are tested
against closed forms elsewhere.  A LOOP record runs the unrolled records in their order,
so recurrences are compared bit for bit (==); an accumulation rolled into a reduction
over combined terms adds in another order (docs/conventions.md, "Rolled loops"), so those
values are compared to 1e-13 relative."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastad as fd


def optimized(fun, *args):
    tape = fd.record(fun, *args)
    tape.optimize()
    return tape.optimized


def same(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert a.tobytes() == b.tobytes(), (a, b)


def close(a, b, rtol=1e-13):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(b)))))


def all_paths(f, x, cmp=same):
    """value, grad, jvp, hvp, hessian and a nested grad, rolled against optimize=False"""
    v1, g1 = fd.value_and_grad(f, native="never")(x)
    v0, g0 = fd.value_and_grad(f, optimize=False, native="never")(x)
    cmp(v1, v0)
    cmp(g1, g0)
    d = np.cos(np.arange(x.size) + 1.0).reshape(x.shape)
    cmp(fd.jvp(f, (x,), (d,))[1], fd.jvp(f, (x,), (d,), optimize=False)[1])
    cmp(fd.hvp(f, native="never")(x, d), fd.hvp(f, optimize=False, native="never")(x, d))
    cmp(fd.hessian(f)(x), fd.hessian(f, optimize=False)(x))

    def dir_grad(y):                       # a gradient inside a gradient
        return fd.grad(f, native="never")(y).ravel() @ d.ravel()
    cmp(fd.grad(dir_grad)(x), fd.grad(lambda y: fd.grad(f, optimize=False)(y).ravel()
                                      @ d.ravel(), optimize=False)(x))


A = np.cos(np.arange(48.0)).reshape(8, 6)


# ---------------------------------------------------------------------- programs

def sum_by_rows(x):
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            s = s + x[i, j] ** 2
    return s


def sum_by_columns(x):
    s = 0.0
    for j in range(x.shape[1]):
        for i in range(x.shape[0]):
            s = s + x[i, j] ** 2
    return s


def row_norms(x):
    """an outer accumulation of inner accumulations"""
    s = 0.0
    for i in range(x.shape[0]):
        r = 0.0
        for j in range(x.shape[1]):
            r = r + x[i, j] * x[i, j]
        s = s + np.sqrt(r + 1.0)
    return s


def heat(p):
    """time stepping (40 steps) with an inner loop over the state: each step reads the
    last, so the outer loop is a recurrence whose body is the inner loop unrolled"""
    y = [p[k] for k in range(6)]
    for _ in range(40):
        new = [y[0]]
        for i in range(1, 5):
            new.append(y[i] + 0.2 * (y[i - 1] - 2.0 * y[i] + y[i + 1]) * p[6])
        new.append(y[5])
        y = new
    return sum(v * v for v in y)


def nested_recurrence(p):
    """an inner recurrence inside an outer one"""
    a = p[0]
    for _ in range(30):
        b = a
        for i in range(5):
            b = np.tanh(b * 0.9 + p[1 + i])
        a = 0.5 * a + b
    return a


# ---------------------------------------------------------------------- rolled

def test_double_loop_by_rows_is_one_flat_loop():
    # x[i, j] advances by one slot throughout: one loop over all 48 elements
    o = optimized(sum_by_rows, A)
    assert o["loops"] == 1 and o["reductions"] == 1 and o["iterations"] == A.size
    assert o["records_after"] <= 6 < o["records_before"]
    all_paths(sum_by_rows, A)            # a sum in the loop's own order: bit for bit


def test_double_loop_by_columns_rolls_the_outer_loop():
    # the stride jumps at each column: the inner loops alone would be 6 loops; the outer
    # loop (one column per iteration) is one
    o = optimized(sum_by_columns, A)
    assert o["loops"] == 1 and o["reductions"] == 1 and o["iterations"] == A.shape[1]
    assert o["rolled_records"] == o["records_before"]
    all_paths(sum_by_columns, A, cmp=close)     # the column's terms are added first
    v = fd.value_and_grad(sum_by_columns)(A)
    assert v[0] == pytest.approx(np.sum(A ** 2), rel=1e-14)
    same(v[1], 2 * A)


def test_outer_accumulation_of_inner_accumulations():
    o = optimized(row_norms, A)
    assert o["loops"] == 1 and o["iterations"] == A.shape[0]
    assert o["rolled_records"] == o["records_before"]
    all_paths(row_norms, A, cmp=close)
    r = np.sqrt(np.sum(A ** 2, axis=1) + 1.0)
    close(fd.grad(row_norms)(A), A / r[:, None])


def test_time_stepping_with_inner_loop_is_one_loop_record():
    p = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8])
    o = optimized(heat, p)
    assert o["recurrences"] >= 1
    assert o["records_after"] < o["records_before"] / 8
    assert o["rolled_records"] >= 0.95 * o["records_before"]
    all_paths(heat, p)                   # a LOOP record: the unrolled records, in order


def test_nested_recurrence_is_one_loop_record():
    p = np.linspace(0.1, 0.9, 6)
    o = optimized(nested_recurrence, p)
    assert o["recurrences"] >= 1 and o["reductions"] == 0
    assert o["records_after"] < o["records_before"] / 5
    all_paths(nested_recurrence, p)


# ---------------------------------------------------------------------- not periodic

def test_triangular_loop_keeps_its_outer_loop_unrolled():
    # the inner trip count grows with the row: the rows roll, the loop over them cannot
    def f(x):
        s = 0.0
        for i in range(x.shape[0]):
            for j in range(i + 1):
                s = s + np.sin(x[i, j])
        return s
    B = np.cos(np.arange(64.0)).reshape(8, 8)
    o = optimized(f, B)
    assert o["loops"] >= 3                       # rows of 3 .. 8 terms, one loop each
    assert o["iterations"] < 36                  # never one loop over the 36 terms
    all_paths(f, B, cmp=close)


def test_outer_loop_whose_strides_change_stays_unrolled():
    # row i reads from slot i*i on: the rows are loops, the outer loop has no stride
    def f(x):
        y = 0.3
        for i in range(6):
            for j in range(4):
                y = np.tanh(y * 0.8 + x[i * i + j])
        return y
    x = np.linspace(-1.0, 1.0, 40)
    o = optimized(f, x)
    assert o["iterations"] <= 24 and o["loops"] >= 2
    assert o["loops"] == o["recurrences"]
    all_paths(f, x)


def test_outer_loop_reading_two_steps_back_is_not_a_loop_of_one_step():
    # each step reads the state two steps back: as a loop of one step it would read an
    # element written two iterations back, which must not roll; read as a loop of two
    # steps it is a recurrence, kept in order (the final sum over the rows may roll)
    def f(p):
        hist = [[p[0], p[1], p[2]], [p[2], p[1], p[0]]]
        for _ in range(12):
            old = hist[-2]
            hist.append([np.sin(old[k]) * 0.9 + p[3] for k in range(3)])
        return sum(v for row in hist for v in row)
    p = np.array([0.2, 0.4, 0.6, 0.1])
    o = optimized(f, p)
    assert o["loops"] >= 1
    all_paths(f, p, cmp=close)


# ---------------------------------------------------------------------- generated

UNARY = [np.sin, np.tanh, lambda y: 0.5 * y, lambda y: y * y * 0.1]


@st.composite
def nested_program(draw):
    """An outer loop (1..12 steps) around an inner loop (1..6 steps) over a row or a
    column of a 2-D array, carrying a value through both loops or only the inner one, with
    an accumulation or not and, sometimes, a data-dependent branch in the inner body."""
    outer = draw(st.integers(1, 12))
    inner = draw(st.integers(1, 6))
    u = draw(st.integers(0, len(UNARY) - 1))
    by = draw(st.sampled_from(["row", "column"]))
    carry = draw(st.sampled_from(["both", "inner", "none"]))
    acc = draw(st.booleans())
    branch = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 16))

    def f(x):
        a, s = x[0, 0], 0.0
        for i in range(outer):
            b = a if carry == "both" else x[i % x.shape[0], 0]
            for j in range(inner):
                e = x[i % x.shape[0], j] if by == "row" else x[j, i % x.shape[1]]
                t = UNARY[u](b if carry != "none" else e) * 0.7 + e * 0.2
                if branch and t > 0.4:
                    t = t - 0.1 * e
                if carry != "none":
                    b = t
                if acc:
                    s = s + t * t
            a = 0.5 * a + b * 0.3 if carry == "both" else a
        return a + s
    r = np.random.default_rng(seed)
    x = r.uniform(-1.0, 1.0, size=(12, 12))
    return f, x


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(nested_program())
def test_generated_nested_loops_agree_with_the_recorded_tape(prog):
    f, x = prog
    v1, g1 = fd.value_and_grad(f, native="never")(x)
    v0, g0 = fd.value_and_grad(f, optimize=False, native="never")(x)
    close(v1, v0)
    close(g1, g0)
    d = np.sin(np.arange(x.size) + 0.5).reshape(x.shape)
    close(fd.jvp(f, (x,), (d,))[1], fd.jvp(f, (x,), (d,), optimize=False)[1])
    close(fd.hvp(f, native="never")(x, d), fd.hvp(f, optimize=False, native="never")(x, d))


# ---------------------------------------------------------------------- varying guards

def count_and_sum(x):
    """a guard whose outcome varies from iteration to iteration, the records around it the
    same whatever the outcome (the count is a Python int)"""
    s, n = 0.0, 0
    for i in range(len(x)):
        if x[i] > 0:
            n += 1
        s = s + x[i] * x[i]
    return s * n


def count_and_recur(x):
    y, n = 0.1, 0
    for i in range(len(x)):
        if x[i] > 0:
            n += 1
        y = np.tanh(y * 0.9 + x[i])
    return y * n


def test_accumulation_with_varying_guard_outcomes_is_one_loop():
    x = np.random.default_rng(3).normal(size=60)
    o = optimized(count_and_sum, x)
    assert o["loops"] == 1 and o["reductions"] == 1
    assert o["guards"] == x.size                 # one guard per iteration, its own outcome
    npos = int(np.sum(x > 0))
    g = fd.value_and_grad(count_and_sum, native="never")
    v, gx = g(x)
    assert v == fd.value_and_grad(count_and_sum, optimize=False)(x)[0]
    same(gx, 2.0 * npos * x)
    y = x.copy()
    k = int(np.argmax(x > 0))
    y[k] = -y[k]                                 # one outcome flips: the guard is rechecked
    v, gy = g(y)
    assert g.tapes() and len(g.tapes()) == 2     # retraced
    same(gy, 2.0 * (npos - 1) * y)


def test_recurrence_with_varying_guard_outcomes_rolls_where_regular():
    # a LOOP record keeps one outcome per guard: runs of 4 or more equal outcomes roll
    x = np.concatenate([np.full(10, 0.3), -np.full(10, 0.2), np.linspace(-1, 1, 9)])
    o = optimized(count_and_recur, x)
    assert o["recurrences"] >= 2
    assert o["iterations"] <= x.size
    all_paths(count_and_recur, x)


def test_long_vectorizable_inner_loop_is_not_folded_into_a_loop_record():
    # each step updates 40 state values independently (ranged records over 40 elements);
    # the steps form a recurrence, which as one LOOP record would run those records one
    # by one: the inner loops stay rolled on their own, one loop per step (a rotation of
    # the inner body may carry a value and become a LOOP record of its own)
    def f(p):
        y = [p[k] for k in range(42)]
        for _ in range(6):
            y = [y[0]] + [y[i] + 0.1 * (y[i - 1] - y[i]) for i in range(1, 41)] + [y[41]]
        return sum(v * v for v in y)
    p = np.linspace(0.0, 1.0, 42)
    o = optimized(f, p)
    assert o["loops"] >= 6 and o["iterations"] >= 6 * 39
    all_paths(f, p, cmp=close)
