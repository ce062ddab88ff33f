"""Public API surface: wrappers' metadata, return types and shapes, argnums, the traced-array
sequence protocol, cache_info, and the low-level tape.

Expected derivatives here are exact in binary floating point (products of small integers
and dyadic numbers), so they are compared with ==; where they are not, the closed form is
evaluated in mpmath and the tolerance is justified inline.
"""

import math

import numpy as np
import pytest
from mpmath import mp, mpf

import fastad as fd
from reference import EPS, MP, assert_close, numpy_namespace, ref_value_and_grad

NP = numpy_namespace()


def documented(x, y=2.0):
    """Multiply and add: a docstring to be preserved."""
    return x * y + x


WRAPPERS = [
    pytest.param(lambda f: fd.grad(f), id="grad"),
    pytest.param(lambda f: fd.grad(f, argnums=(0, 1)), id="grad-tuple"),
    pytest.param(lambda f: fd.grad(f, replay=False), id="grad-noreplay"),
    pytest.param(lambda f: fd.value_and_grad(f), id="value_and_grad"),
    pytest.param(lambda f: fd.value_and_grad(f, argnums=1, replay=False),
                 id="value_and_grad-noreplay"),
]


# ------------------------------------------------------------------ functools.wraps


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_wraps_metadata(wrap):
    w = wrap(documented)
    assert w.__name__ == "documented"
    assert w.__doc__ == documented.__doc__
    assert w.__wrapped__ is documented
    assert w.__qualname__ == documented.__qualname__
    assert w.__module__ == documented.__module__
    assert callable(w)


def test_wraps_preserves_function_attributes():
    def f(x):
        return x * x

    f.custom = "kept"
    assert fd.grad(f).custom == "kept"


# ------------------------------------------------------------------ return types and shapes


def test_float_argument_gives_python_float():
    g = fd.grad(lambda x: x * x)(1.5)
    assert type(g) is float and g == 3.0


def test_int_argument_gives_python_float():
    g = fd.grad(lambda x: x * x)(3)
    assert type(g) is float and g == 6.0
    v, g = fd.value_and_grad(lambda x: x * x * x)(2)
    assert type(v) is float and type(g) is float and (v, g) == (8.0, 12.0)


def test_numpy_scalar_argument_gives_python_float():
    g = fd.grad(lambda x: x * x)(np.float64(1.5))
    assert type(g) is float and g == 3.0


@pytest.mark.parametrize("shape", [(1,), (5,), (2, 3), (2, 1, 3)])
def test_array_argument_gives_array_of_same_shape(shape):
    def f(x):
        s = 0.0
        for idx, v in enumerate(np.ndindex(*x.shape)):
            s = s + x[v] * x[v] * (idx + 1.0)
        return s

    x = np.arange(math.prod(shape), dtype=float).reshape(shape) - 1.0
    g = fd.grad(f)(x)
    assert isinstance(g, np.ndarray)
    assert g.shape == shape and g.dtype == np.float64
    weights = np.arange(1, x.size + 1, dtype=float).reshape(shape)
    np.testing.assert_array_equal(g, 2.0 * weights * x)   # exact: small integers
    v, g2 = fd.value_and_grad(f)(x)
    assert type(v) is float and v == float(np.sum(weights * x * x))
    np.testing.assert_array_equal(g2, g)


def test_array_argument_is_not_modified_and_result_is_a_new_array():
    x = np.array([1.0, 2.0, 3.0])
    keep = x.copy()
    g = fd.grad(lambda a: a[0] * a[1] * a[2])
    r1 = g(x)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(r1, [6.0, 3.0, 2.0])
    r2 = g(np.array([2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(r2, [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(r1, [6.0, 3.0, 2.0])   # the first result was not overwritten


def test_value_and_grad_returns_tuple():
    out = fd.value_and_grad(lambda x, y: x * y, argnums=(0, 1))(3.0, 4.0)
    assert isinstance(out, tuple) and len(out) == 2
    v, g = out
    assert type(v) is float and v == 12.0
    assert isinstance(g, tuple) and g == (4.0, 3.0)


def test_jvp_returns_floats():
    out = fd.jvp(lambda x, y: x * y, (2.0, 3.0), (1.0, 0.0))
    assert isinstance(out, tuple) and len(out) == 2
    assert type(out[0]) is float and type(out[1]) is float
    assert out == (6.0, 3.0)


def test_jvp_with_array_primal():
    def f(x, s):
        return x[0] * x[1] * s + x[2]

    x = np.array([2.0, 3.0, 5.0])
    v, t = fd.jvp(f, (x, 0.5), (np.array([1.0, -1.0, 4.0]), 2.0))
    # df = s*x1*dx0 + s*x0*dx1 + dx2 + x0*x1*ds = 1.5 - 1 + 4 + 12
    assert v == 8.0 and t == 16.5


# ------------------------------------------------------------------ argnums


def f3(x, y, z):
    return x * 2.0 + y * 3.0 * x + z * z * 5.0


def test_argnums_int_selects_argument():
    assert fd.grad(f3)(1.0, 2.0, 3.0) == 8.0            # 2 + 3y
    assert fd.grad(f3, argnums=1)(1.0, 2.0, 3.0) == 3.0  # 3x
    assert fd.grad(f3, argnums=2)(1.0, 2.0, 3.0) == 30.0  # 10z


def test_argnums_tuple_order_is_respected():
    assert fd.grad(f3, argnums=(2, 0))(1.0, 2.0, 3.0) == (30.0, 8.0)
    assert fd.grad(f3, argnums=(0, 1, 2))(1.0, 2.0, 3.0) == (8.0, 3.0, 30.0)


def test_argnums_tuple_of_one_returns_tuple():
    g = fd.grad(f3, argnums=(1,))(1.0, 2.0, 3.0)
    assert isinstance(g, tuple) and g == (3.0,)


def test_argnums_mixed_scalar_and_array():
    def f(s, x):
        return s * x[0] + s * s * x[1]

    gs, gx = fd.grad(f, argnums=(0, 1))(3.0, np.array([2.0, 5.0]))
    assert type(gs) is float and gs == 2.0 + 2 * 3.0 * 5.0
    assert isinstance(gx, np.ndarray) and gx.shape == (2,)
    np.testing.assert_array_equal(gx, [3.0, 9.0])


def test_keyword_default_arguments_are_left_alone():
    assert fd.grad(documented)(1.5) == 3.0          # y = 2 default: d/dx (2x + x)
    assert fd.grad(documented)(1.5, 4.0) == 5.0


# ------------------------------------------------------------------ traced array protocol


def test_traced_array_sequence_protocol_1d():
    seen = {}

    def f(x):
        seen["len"] = len(x)
        seen["shape"] = x.shape
        seen["ndim"] = x.ndim
        seen["size"] = x.size
        s = 0.0
        count = 0
        for xi in x:                      # iteration yields traced scalars
            s = s + xi * xi
            count += 1
        seen["count"] = count
        return s + x[-1] * 10.0           # negative index

    x = np.array([1.0, -2.0, 3.0, 0.5, 4.0])
    g = fd.grad(f)(x)
    assert seen == {"len": 5, "shape": (5,), "ndim": 1, "size": 5, "count": 5}
    np.testing.assert_array_equal(g, [2.0, -4.0, 6.0, 1.0, 18.0])


@pytest.mark.parametrize("sl,weights", [
    (slice(1, None), [0, 1, 1, 1, 1, 1, 1]),
    (slice(None, None, 2), [1, 0, 1, 0, 1, 0, 1]),
    (slice(1, None, 3), [0, 1, 0, 0, 1, 0, 0]),
    (slice(None, -2), [1, 1, 1, 1, 1, 0, 0]),
    (slice(None, None, -1), [1, 1, 1, 1, 1, 1, 1]),
    (slice(5, 1, -2), [0, 0, 0, 1, 0, 1, 0]),
])
def test_traced_array_slicing(sl, weights):
    info = {}

    def f(x):
        part = x[sl]
        info["len"] = len(part)
        info["shape"] = part.shape
        s = 0.0
        for k in range(len(part)):
            s = s + part[k] * part[k]
        return s

    x = np.arange(7, dtype=float) - 2.0
    g = fd.grad(f)(x)
    expected_len = len(range(7)[sl])
    assert info == {"len": expected_len, "shape": (expected_len,)}
    np.testing.assert_array_equal(g, 2.0 * x * np.array(weights, dtype=float))


def test_traced_array_2d_protocol():
    seen = {}

    def f(A):
        seen["len"] = len(A)
        seen["shape"] = A.shape
        seen["ndim"] = A.ndim
        seen["size"] = A.size
        seen["row_shape"] = A[1].shape
        s = 0.0
        nrows = 0
        for row in A:                      # iteration over rows
            nrows += 1
            for v in row:
                s = s + v * v
        return s + A[1, 2] * 7.0 + A[0][1] * 3.0 + A[-1, -1]

    A = np.arange(12, dtype=float).reshape(3, 4)
    g = fd.grad(f)(A)
    assert seen == {"len": 3, "shape": (3, 4), "ndim": 2, "size": 12, "row_shape": (4,)}
    expected = 2.0 * A
    expected[1, 2] += 7.0
    expected[0, 1] += 3.0
    expected[2, 3] += 1.0
    np.testing.assert_array_equal(g, expected)


def test_traced_array_2d_slicing_rows_and_columns():
    def f(A):
        s = 0.0
        col = A[:, 1]
        for k in range(len(col)):
            s = s + col[k] * 2.0
        sub = A[1:, ::2]
        for i in range(sub.shape[0]):
            for j in range(sub.shape[1]):
                s = s + sub[i, j] * sub[i, j]
        return s

    A = np.arange(12, dtype=float).reshape(3, 4)
    g = fd.grad(f)(A)
    expected = np.zeros((3, 4))
    expected[:, 1] += 2.0
    expected[1:, ::2] += 2.0 * A[1:, ::2]
    np.testing.assert_array_equal(g, expected)


def test_traced_scalar_elements_mix_with_numpy():
    def f(x):
        return np.sin(x[0]) * np.exp(x[1]) + np.hypot(x[0], x[2])

    x = np.array([0.3, -0.2, 0.4])
    g = fd.grad(f)(x)
    ref = ref_value_and_grad(lambda a: MP.sin(a[0]) * MP.exp(a[1]) + MP.hypot(a[0], a[2]), (x,))
    assert_close(g, ref.grad, ref.grad_bound, what="mixed numpy on elements")


# ------------------------------------------------------------------ cache_info, replay=False


def test_cache_info_counts():
    calls = [0]

    def f(x):
        calls[0] += 1
        return x * x

    g = fd.grad(f)
    info = g.cache_info()
    assert set(info) >= {"traces", "replays", "tapes"}
    assert info["traces"] == 0 and info["replays"] == 0 and info["tapes"] == 0
    for k in range(5):
        assert g(float(k)) == 2.0 * k
    info = g.cache_info()
    assert all(type(info[k]) is int for k in ("traces", "replays", "tapes"))
    assert (info["traces"], info["replays"], info["tapes"]) == (1, 4, 1)
    assert calls[0] == 1


def test_replay_false_traces_every_call():
    calls = [0]

    def f(x):
        calls[0] += 1
        return x * x * x

    g = fd.grad(f, replay=False)
    for k in range(4):
        assert g(float(k)) == 3.0 * k * k
    assert calls[0] == 4
    assert g.cache_info()["traces"] == 4
    assert g.cache_info()["replays"] == 0


def test_wrappers_are_independent():
    g1 = fd.grad(lambda x: x * 3.0)
    g2 = fd.grad(lambda x: x * 5.0)
    assert g1(1.0) == 3.0 and g2(1.0) == 5.0 and g1(2.0) == 3.0 and g2(2.0) == 5.0


def test_same_function_different_signatures():
    calls = [0]

    def f(x):
        calls[0] += 1
        s = 0.0
        for idx in np.ndindex(*x.shape):
            s = s + x[idx] * x[idx]
        return s

    g = fd.grad(f)
    np.testing.assert_array_equal(g(np.array([1.0, 2.0])), [2.0, 4.0])
    np.testing.assert_array_equal(g(np.array([1.0, 2.0, 3.0])), [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(g(np.array([[1.0], [2.0]])), [[2.0], [4.0]])
    np.testing.assert_array_equal(g(np.array([5.0, 6.0])), [10.0, 12.0])
    np.testing.assert_array_equal(g(np.array([[3.0], [-1.0]])), [[6.0], [-2.0]])
    assert calls[0] == 3                   # shapes (2,), (3,), (2, 1)
    assert g.cache_info()["traces"] == 3


# ------------------------------------------------------------------ the tape object


def test_record_inputs_flattened_in_order():
    def f(a, M, n, b):
        s = a * b
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                s = s + M[i, j] * (i + 2.0 * j) * n
        return s

    M = np.arange(6, dtype=float).reshape(3, 2)
    tape = fd.record(f, 2.0, M, 3, 5.0)
    assert tape.n_inputs == 1 + 6 + 1                 # int n is not an input
    assert len(tape.input_slots) == 8
    assert len(set(tape.input_slots)) == 8
    x = [2.0] + list(M.ravel()) + [5.0]
    assert tape.forward(x) == 2.0 * 5.0 + 3 * sum(M[i, j] * (i + 2.0 * j)
                                                  for i in range(3) for j in range(2))
    adj = tape.reverse()
    assert adj.shape == (8,)
    expected = [5.0] + [3 * (i + 2.0 * j) for i in range(3) for j in range(2)] + [2.0]
    np.testing.assert_array_equal(adj, expected)
    values = tape.values
    for k, slot in enumerate(tape.input_slots):
        assert values[slot] == x[k]


def test_tape_constants():
    tape = fd.record(lambda x: x * 2.5 + 1.25, 3.0)
    recs = tape.records()
    assert [r[0] for r in recs] == ["multiply", "add"]
    (xs,) = tape.input_slots
    _, mul_slot, mul_ops = recs[0]
    _, add_slot, add_ops = recs[1]
    assert xs in mul_ops
    consts = [tape.constant_value(s) for s in mul_ops if s != xs]
    assert consts == [2.5]
    assert mul_slot in add_ops
    assert [tape.constant_value(s) for s in add_ops if s != mul_slot] == [1.25]
    assert tape.constant_value(xs) is None
    assert tape.constant_value(mul_slot) is None
    assert tape.output_slot == add_slot
    assert tape.forward([2.0]) == 6.25


def test_tape_guards_and_guard_failure():
    def f(x):
        if x > 0.0:
            return x * x
        return -x

    tape = fd.record(f, 1.0)
    recs = tape.records()
    guards = [r for r in recs if r[1] == -1]
    assert len(guards) == 1
    assert guards[0][0] in ("less", "less_equal", "equal", "not_equal")
    assert [r[0] for r in recs if r[1] != -1] == ["multiply"]
    assert tape.forward([3.0]) == 9.0
    with pytest.raises(fd.GuardFailure):
        tape.forward([-1.0])
    # the tape remains usable on its own branch
    assert tape.forward([0.5]) == 0.25
    np.testing.assert_array_equal(tape.reverse(), [1.0])


def test_tape_tangent_and_reverse_after_forward():
    tape = fd.record(lambda x, y: np.sin(x) * y, 0.3, 2.0)
    tape.forward([0.7, -1.5])
    t = tape.tangent([2.0, 0.5])
    mx, my = mpf(0.7), mpf(-1.5)
    expected = 2 * mp.cos(mx) * my + mpf(0.5) * mp.sin(mx)
    # two products of ~1-ulp quantities and one addition: 8 eps * sum of |terms|
    assert abs(mpf(t) - expected) <= 8 * EPS * (abs(2 * mp.cos(mx) * my)
                                                + abs(mpf(0.5) * mp.sin(mx)))
    adj = tape.reverse()
    assert abs(mpf(adj[0]) - mp.cos(mx) * my) <= 8 * EPS * abs(mp.cos(mx) * my)
    assert abs(mpf(adj[1]) - mp.sin(mx)) <= 8 * EPS * abs(mp.sin(mx))


def test_tape_size_and_nbytes():
    small = fd.record(lambda x: x * x + x, 1.0)
    assert len(small) == 2

    def many(x):
        s = x
        for _ in range(5000):
            s = s * 1.0001 + x
        return s

    big = fd.record(many, 1.0)
    assert len(big) == 10000
    assert isinstance(big.nbytes, int) and big.nbytes > 0
    assert big.nbytes > small.nbytes
    # values + adjoints alone are 16 bytes per slot: a tape of 10000 records is > 160 kB
    assert big.nbytes >= 16 * 10000
