"""Hostile and careless input (docs/hostile_inputs.md).

One test (or parametrized group) per bad input; each asserts the exact behaviour: the
exception type and the key words of its message, or the value/derivative against a closed
form or the documented conventions (docs/conventions.md). The table of all of them is
docs/hostile_inputs.md.
"""

import math
import sys

import numpy as np
import pytest

import fastad as fd

inf, nan = math.inf, math.nan


def assert_same(got, expected):
    """Exact equality with NaN == NaN, and the same shape and float64 dtype for arrays."""
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), got
        assert got.shape == expected.shape and got.dtype == np.float64, (got.shape, got.dtype)
        assert np.array_equal(got, expected, equal_nan=True), (got, expected)
    else:
        assert isinstance(got, float), type(got)
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (got, expected)


# ====================================================================== wrong types

@pytest.mark.parametrize("bad,words", [
    ("abc", ["argument 0", "differentiated", "str", "float"]),
    (None, ["argument 0", "differentiated", "NoneType", "float"]),
    (["a", "b"], ["argument 0", "differentiated", "str", "float"]),
    (True, ["argument 0", "differentiated", "bool", "float"]),
])
def test_wrong_type_of_differentiated_argument(bad, words):
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x: x * 2.0)(bad)
    for w in words:
        assert w in str(info.value), str(info.value)


@pytest.mark.parametrize("argnums", ["0", None, ["a"], 0.0, (0, "1")])
def test_wrong_type_of_argnums(argnums):
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x, y: x * y, argnums=argnums)(1.0, 2.0)
    assert "argnums must be an int or a tuple of ints" in str(info.value), str(info.value)


def test_function_that_is_not_callable():
    with pytest.raises(TypeError, match="expected a function to differentiate, got int 3"):
        fd.grad(3)(1.0)


def test_too_few_arguments_for_argnums():
    with pytest.raises(TypeError, match="requires at least 1 positional arguments"):
        fd.grad(lambda x: x * 2.0)()


def test_bad_pytree_leaf_names_its_argument():
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x, p: x * 2.0, argnums=1)(1.0, [1.0, "a"])
    assert "argument 1" in str(info.value), str(info.value)


# ====================================================================== complex

@pytest.mark.parametrize("pos", [0, 1], ids=["differentiated", "data"])
@pytest.mark.parametrize("bad,words", [
    (1.0 + 2.0j, ["is complex", "real programs"]),
    (np.complex128(1j), ["is complex", "real programs"]),
    (np.array([1.0 + 2.0j, 3.0]), ["complex array (complex128)", "real and imaginary parts"]),
    (np.zeros((2, 2), np.complex64), ["complex array (complex64)", "real and imaginary parts"]),
], ids=["py-complex", "np-complex128", "complex128-array", "complex64-array"])
def test_complex_inputs_are_refused(bad, words, pos):
    args = [1.0, 1.0]
    args[pos] = bad
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x, y: 2.0, argnums=pos)(*args)
    msg = str(info.value)
    assert f"argument {pos}" in msg, msg
    for w in words:
        assert w in msg, msg


# ====================================================================== integer arrays

@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint16])
def test_differentiated_integer_array_is_promoted_to_float(dtype):
    g = fd.grad(lambda x: (x ** 3).sum())
    out = g(np.array([1, 2, 3], dtype=dtype))
    assert_same(out, np.array([3.0, 12.0, 27.0]))       # 3 x**2


def test_differentiated_integer_scalar_is_promoted_to_float():
    assert_same(fd.grad(lambda x: x * x)(3), 6.0)
    assert_same(fd.grad(lambda x: x * x)(np.int64(3)), 6.0)


def test_differentiated_integer_array_is_an_input_new_values_replay(counter):
    def f(x):
        counter.tick()
        return (x ** 3).sum()

    g = fd.grad(f)
    assert_same(g(np.array([1, 2])), np.array([3.0, 12.0]))
    assert_same(g(np.array([3, 4])), np.array([27.0, 48.0]))
    assert_same(g(np.array([3.0, 4.0])), np.array([27.0, 48.0]))
    assert counter.n == 1


def test_integer_array_not_differentiated_is_static_and_indexes(counter):
    def f(x, idx):
        counter.tick()
        return (x[idx] ** 2).sum()

    g = fd.grad(f)
    x = np.arange(5.0)
    assert_same(g(x, np.array([0, 2, 2])), np.array([0.0, 0.0, 8.0, 0.0, 0.0]))
    assert_same(g(x + 1.0, np.array([0, 2, 2])), np.array([2.0, 0.0, 12.0, 0.0, 0.0]))
    assert counter.n == 1                                # same indices: replay
    assert_same(g(x, np.array([4])), np.array([0.0, 0.0, 0.0, 0.0, 8.0]))
    assert counter.n == 2                                # new content: new trace


# ====================================================================== bool arrays

def test_differentiated_bool_array_is_refused():
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x: (x * 1.0).sum())(np.array([True, False]))
    msg = str(info.value)
    assert "differentiated" in msg and "bool array" in msg and "float array" in msg, msg


def test_bool_array_not_differentiated_is_static_mask(counter):
    def f(x, m):
        counter.tick()
        return np.where(m, x * x, x).sum() + x[m].sum()

    g = fd.grad(f)
    x = np.full(3, 2.0)
    assert_same(g(x, np.array([True, False, True])), np.array([5.0, 1.0, 5.0]))
    assert_same(g(x, np.array([False, False, True])), np.array([1.0, 1.0, 5.0]))
    assert counter.n == 2


# ====================================================================== object arrays

@pytest.mark.parametrize("pos", [0, 1], ids=["differentiated", "data"])
@pytest.mark.parametrize("bad", [np.array([1.0, 2.0], dtype=object),
                                 np.array([1.0, "a"], dtype=object)], ids=["floats", "mixed"])
def test_object_arrays_are_refused(bad, pos):
    args = [1.0, 1.0]
    args[pos] = bad
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x, y: 2.0, argnums=pos)(*args)
    msg = str(info.value)
    assert f"argument {pos} is an object array" in msg and "np.asarray(x, dtype=float)" in msg


# ====================================================================== zero-size arrays

@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0)])
def test_zero_size_sum(shape):
    v, g = fd.value_and_grad(lambda x: np.sum(x ** 2))(np.zeros(shape))
    assert_same(v, 0.0)
    assert_same(g, np.zeros(shape))


def test_zero_size_mean_is_nan_like_numpy():
    v, g = fd.value_and_grad(lambda x: np.mean(x))(np.zeros(0))
    assert math.isnan(v)                                 # np.mean([]) is nan too
    assert_same(g, np.zeros(0))


def test_zero_size_array_next_to_a_scalar():
    v, (ga, gs) = fd.value_and_grad(lambda a, s: np.sum(a) + s * s, argnums=(0, 1))(
        np.zeros((0, 3)), 3.0)
    assert_same(v, 9.0)
    assert_same(ga, np.zeros((0, 3)))
    assert_same(gs, 6.0)


# ====================================================================== 0-d arrays

def test_0d_array_argument_gets_a_0d_gradient():
    g = fd.value_and_grad(lambda x: np.sin(x) * x)
    for x0 in (2.0, -0.5):                               # trace, then replay
        v, d = g(np.array(x0))
        assert_same(v, math.sin(x0) * x0)
        assert isinstance(d, np.ndarray) and d.shape == () and d.dtype == np.float64
        assert d == pytest.approx(math.cos(x0) * x0 + math.sin(x0), rel=1e-15)


def test_0d_array_and_float_give_their_own_types():
    g = fd.grad(lambda x: x ** 3)
    assert_same(g(np.array(2.0)), np.array(12.0))
    assert_same(g(2.0), 12.0)


# ====================================================================== memory layout

W = np.arange(1.0, 7.0).reshape(2, 3)


def _layouts():
    c = np.arange(6.0).reshape(2, 3)
    big = np.arange(24.0).reshape(4, 6)
    return {
        "C": c,
        "fortran": np.asfortranarray(c),
        "strided": big[::2, ::2],
        "reversed": c[:, ::-1],
        "transposed-view": np.ascontiguousarray(c.T).T,
    }


@pytest.mark.parametrize("layout", list(_layouts()))
def test_layouts_give_correct_gradients_fresh(layout):
    a = _layouts()[layout]
    assert a.shape == (2, 3)
    out = fd.grad(lambda x: (W * x ** 2).sum())(a)
    assert_same(out, 2.0 * W * a)


def test_layouts_replay_one_tape():
    g = fd.grad(lambda x: (W * x ** 2).sum() + x[0, 2] * x[1, 0])
    for a in _layouts().values():                        # every layout replays the C tape
        expected = 2.0 * W * a
        expected[0, 2] += a[1, 0]
        expected[1, 0] += a[0, 2]
        assert_same(g(a), expected)
    info = g.info()
    assert info.traces == 1 and info.replays == 4


def test_non_contiguous_1d_slice():
    big = np.arange(10.0)
    x = big[::2]
    assert not x.flags.c_contiguous
    assert_same(fd.grad(lambda x: (x ** 3).sum())(x), 3.0 * x ** 2)


def test_read_only_array_argument():
    ro = np.arange(3.0)
    ro.setflags(write=False)
    g = fd.value_and_grad(lambda x: (x * x).sum())
    v, d = g(ro)
    assert_same(v, 5.0)
    assert_same(d, 2.0 * np.arange(3.0))
    assert d.flags.writeable                             # the gradient is a fresh array
    assert not ro.flags.writeable and np.array_equal(ro, np.arange(3.0))
    r0 = np.array(2.0)
    r0.setflags(write=False)
    assert_same(fd.grad(lambda x: x * x)(r0), np.array(4.0))


# ====================================================================== NaN and inf inputs

@pytest.mark.parametrize("fun,x,value,deriv", [
    (lambda x: x * x, nan, nan, nan),
    (np.sin, nan, nan, nan),
    (lambda x: x * x, inf, inf, inf),
    (np.exp, inf, inf, inf),
    (np.exp, -inf, 0.0, 0.0),
    (np.tanh, inf, 1.0, 0.0),                            # 1 - tanh(x)**2
    (lambda x: 1.0 / x, inf, 0.0, -0.0),
    (np.log, 0.0, -inf, inf),                            # documented: grad(log)(0) = inf
    (np.sqrt, -1.0, nan, nan),                           # documented: grad(sqrt)(-1) = NaN
], ids=["sq-nan", "sin-nan", "sq-inf", "exp-inf", "exp-neginf", "tanh-inf",
        "recip-inf", "log-0", "sqrt-neg"])
def test_nan_and_inf_propagate_per_ieee(fun, x, value, deriv):
    v, d = fd.value_and_grad(fun)(x)
    assert_same(v, value)
    assert_same(d, deriv)


def test_nan_in_one_array_component_stays_there():
    v, d = fd.value_and_grad(lambda x: (x * x).sum())(np.array([1.0, nan, 3.0]))
    assert math.isnan(v)
    assert_same(d, np.array([2.0, nan, 6.0]))


# ====================================================================== huge exponents

@pytest.mark.parametrize("x,value,deriv", [
    (2.0, inf, inf),                                     # 1e308 * 2**(1e308 - 1)
    (1.0, 1.0, 1e308),                                   # 1e308 * 1**...
    (0.5, 0.0, 0.0),                                     # 1e308 * 0.5**(huge) = 1e308 * 0
])
def test_power_with_huge_exponent(x, value, deriv):
    v, d = fd.value_and_grad(lambda x: x ** 1e308)(x)
    assert_same(v, value)
    assert_same(d, deriv)


@pytest.mark.parametrize("x,value,deriv", [
    (2.0, 100.0, 100.0 * math.log(10.0)),
    (400.0, inf, inf),                                   # ln(10) * 10**x overflows too
])
def test_traced_exponent_overflow(x, value, deriv):
    v, d = fd.value_and_grad(lambda x: 10.0 ** x)(x)
    assert_same(v, value)
    assert d == pytest.approx(deriv, rel=1e-15) if math.isfinite(deriv) else d == deriv


# ====================================================================== user function raises

class Boom(Exception):
    pass


def test_function_raising_midway_propagates_same_object_and_retraces(counter):
    err = Boom("midway")

    def f(x, fail):
        counter.tick()
        y = np.sin(x) * x                                # records before the failure
        z = np.exp(y)
        if fail:
            raise err
        return z + y

    g = fd.grad(f)
    with pytest.raises(Boom) as info:
        g(0.5, True)
    assert info.value is err
    assert len(g.tapes()) == 0                           # no half tape cached
    d = lambda x: (math.exp(math.sin(x) * x) + 1.0) * (math.cos(x) * x + math.sin(x))
    assert g(0.5, False) == pytest.approx(d(0.5), rel=1e-14)
    assert counter.n == 2                                # the next call traced again
    assert g(0.7, False) == pytest.approx(d(0.7), rel=1e-14)
    assert counter.n == 2                                # and that tape replays
    with pytest.raises(Boom) as info:
        g(0.5, True)
    assert info.value is err
    assert len(g.tapes()) == 1
    tape = fd.record(lambda x: np.sin(x) * x, 0.5)      # a new recording is clean
    assert [r[0] for r in tape.records()] == ["sin", "multiply"]


# ====================================================================== bad results

@pytest.mark.parametrize("ret,words", [
    (lambda x: x * 2.0, ["shape (3,)", ".sum()", "jacobian"]),
    (lambda x: None, ["NoneType", ".sum()", "jacobian"]),
    (lambda x: "a", ["str", ".sum()", "jacobian"]),
], ids=["array", "None", "str"])
def test_non_scalar_result(ret, words):
    with pytest.raises(TypeError) as info:
        fd.grad(ret)(np.ones(3))
    msg = str(info.value)
    assert "must return a real scalar" in msg, msg
    for w in words:
        assert w in msg, msg


def test_python_int_constant_result_has_zero_gradient():
    assert_same(fd.grad(lambda x: 3)(1.0), 0.0)
    v, d = fd.value_and_grad(lambda x: 3)(1.0)
    assert_same(v, 3.0)
    assert_same(d, 0.0)
    assert_same(fd.grad(lambda x: 3)(np.ones(2)), np.zeros(2))


# ====================================================================== escaped tracers

ESCAPED_USES = {
    "add": lambda t: t + 1.0,
    "radd": lambda t: 2.0 * t,
    "neg": lambda t: -t,
    "compare": lambda t: t > 0.0,
    "ufunc": lambda t: np.exp(t),
}


@pytest.mark.parametrize("use", list(ESCAPED_USES))
def test_escaped_scalar_tracer_in_plain_python(use):
    leak = []

    def f(x):
        leak.append(np.sin(x))
        return x * x

    assert fd.grad(f)(3.0) == 6.0
    with pytest.raises(fd.EscapedTracerError) as info:
        ESCAPED_USES[use](leak[0])
    assert "used after the function being differentiated returned" in str(info.value)
    assert repr(leak[0]).startswith("Traced(")         # inspecting it is harmless


@pytest.mark.parametrize("use", ["add", "index", "sum"])
def test_escaped_array_tracer_in_plain_python(use):
    leak = []
    fd.grad(lambda x: (leak.append(x * 2.0) or x).sum())(np.ones(3))
    t = leak[0]
    with pytest.raises(fd.EscapedTracerError, match="after the function being differentiated"):
        {"add": lambda: t + 1.0, "index": lambda: t[0], "sum": lambda: t.sum()}[use]()


@pytest.mark.parametrize("kind", ["scalar", "array"])
def test_escaped_tracer_inside_another_traced_function(kind):
    leak = []
    if kind == "scalar":
        fd.grad(lambda x: leak.append(x * 2.0) or x * x)(1.0)
        other, arg = (lambda y: y * leak[0]), 2.0
    else:
        fd.grad(lambda x: (leak.append(x * 2.0) or x).sum())(np.ones(3))
        other, arg = (lambda y: (y * leak[0]).sum()), np.ones(3)
    with pytest.raises(fd.EscapedTracerError, match="used after"):
        fd.grad(other)(arg)
    assert fd.grad(lambda y: y * y)(2.0) == 4.0          # fastad is fine afterwards


# ====================================================================== recursion limit

def _rec(x, n):
    return x if n == 0 else _rec(x, n - 1) + x           # (n + 1) * x


def _depth():
    f, d = sys._getframe(), 0
    while f is not None:
        f, d = f.f_back, d + 1
    return d


def test_recursion_near_the_limit():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_depth() + 400)
    try:
        g = fd.grad(_rec)
        assert_same(g(1.0, 300), 301.0)                  # ~100 frames below the limit
        with pytest.raises(RecursionError):
            g(1.0, 600)                                  # over the limit
    finally:
        sys.setrecursionlimit(old)
    assert_same(g(2.0, 300), 301.0)                      # the good tape replays
    assert_same(g(2.0, 50), 51.0)                        # and new traces work
    assert fd.grad(lambda y: np.sin(y) * y)(0.0) == 0.0


def test_infinite_recursion():
    def runaway(x):
        return runaway(x * 1.0)

    with pytest.raises(RecursionError):
        fd.grad(runaway)(1.0)
    assert fd.grad(lambda y: y * y)(3.0) == 6.0


# ====================================================================== KeyboardInterrupt

def test_keyboard_interrupt_during_a_long_trace(counter):
    def f(x, interrupt):
        counter.tick()
        s = 0.0
        for i in range(20000):                           # 60,000 records before the interrupt
            s = s + np.sin(x * float(i))
        if interrupt:
            raise KeyboardInterrupt
        return s

    g = fd.grad(f)
    with pytest.raises(KeyboardInterrupt):
        g(0.3, True)
    assert len(g.tapes()) == 0
    expected = sum(i * math.cos(0.3 * i) for i in range(20000))
    assert g(0.3, False) == pytest.approx(expected, rel=1e-10, abs=1e-9)
    assert counter.n == 2
    assert fd.grad(lambda y: y * y)(3.0) == 6.0


# ====================================================================== item 6: ties and kinks

def test_maximum_minimum_tie_splits_half():
    for op in (np.maximum, np.minimum, fd.maximum, fd.minimum):
        assert fd.grad(lambda a, b, op=op: op(a, b), argnums=(0, 1))(1.0, 1.0) == (0.5, 0.5)
    g = fd.grad(lambda x: np.maximum(x, 0.0).sum())(np.array([0.0, 1.0, -1.0]))
    assert_same(g, np.array([0.5, 1.0, 0.0]))
    assert_same(fd.grad(lambda x: np.maximum(x, x))(1.0), 1.0)   # 0.5 + 0.5


def test_python_max_is_a_branch_not_a_split():
    # max(a, b) in Python compares (a guard) and returns a; not np.maximum's 0.5/0.5
    assert fd.grad(lambda a, b: max(a, b), argnums=(0, 1))(1.0, 1.0) == (1.0, 0.0)


def test_abs_at_zero_is_one():
    for fun in (np.abs, abs, fd.abs):
        assert_same(fd.grad(fun)(0.0), 1.0)
    assert_same(fd.grad(np.abs)(-0.0), 1.0)
    assert_same(fd.grad(lambda x: np.abs(x).sum())(np.zeros(2)), np.ones(2))


def test_where_untaken_side_gets_exactly_zero():
    # at the tie x = 0 the condition x > 0 is False: the derivative is the else side's
    g = fd.grad(lambda x: np.where(x > 0, x * x, 3.0 * x).sum())
    assert_same(g(np.array([0.0, 1.0, -1.0])), np.array([3.0, 2.0, 3.0]))
    # an untaken side with an infinite or NaN value contributes 0, not 0*inf
    assert_same(fd.grad(lambda x: np.where(x > 0, np.sqrt(x), 0.0).sum())(
        np.array([0.0, 4.0])), np.array([0.0, 0.25]))
    assert_same(fd.grad(lambda x: np.where(x > 0, x, nan * x).sum())(
        np.array([1.0])), np.array([1.0]))
    v, d = fd.value_and_grad(lambda x: np.where(x > 0, x, inf * x).sum())(np.array([1.0]))
    assert_same(v, 1.0)
    assert_same(d, np.array([1.0]))


def test_where_log_at_nonpositive_is_zero():
    g = fd.grad(lambda x: np.where(x > 0, np.log(x), 0.0).sum())
    assert_same(g(np.array([0.0, -1.0, 2.0])), np.array([0.0, 0.0, 0.5]))


@pytest.mark.parametrize("fun,x,value,deriv", [
    (np.sqrt, 0.0, 0.0, inf),
    (np.cbrt, 0.0, 0.0, inf),
    (np.log, 0.0, -inf, inf),
    (lambda x: x ** 0.5, 0.0, 0.0, inf),                 # 0.5 * 0**-0.5
    (lambda x: x ** 0, 0.0, 1.0, 0.0),                   # documented: d/da a**0 = 0
    (lambda x: x ** 0.0, 0.0, 1.0, 0.0),
    (lambda x: x ** 0.0, 5.0, 1.0, 0.0),
    (lambda y: 0.0 ** y, 2.0, 0.0, 0.0),                 # documented: d/db 0**b = 0
    (lambda y: 0.0 ** y, 0.5, 0.0, 0.0),
], ids=["sqrt", "cbrt", "log", "x**0.5", "x**0", "x**0.0", "5**0.0", "0**y", "0**y-half"])
def test_sqrt_log_pow_at_zero(fun, x, value, deriv):
    v, d = fd.value_and_grad(fun)(x)
    assert_same(v, value)
    assert_same(d, deriv)


def test_pow_both_traced_at_zero():
    # d/da a**b = b a**(b-1); d/db a**b = 0 at a = 0 (documented)
    assert fd.grad(lambda a, b: a ** b, argnums=(0, 1))(0.0, 2.0) == (0.0, 0.0)
    assert fd.grad(lambda a, b: a ** b, argnums=(0, 1))(0.0, 0.0) == (0.0, 0.0)
    ga, gb = fd.grad(lambda a, b: (a ** b).sum(), argnums=(0, 1))(
        np.zeros(2), np.array([2.0, 0.5]))
    assert_same(ga, np.array([0.0, inf]))
    assert_same(gb, np.zeros(2))


def test_sqrt_at_zero_in_arrays():
    assert_same(fd.grad(lambda x: np.sqrt(x).sum())(np.zeros(2)), np.array([inf, inf]))


def test_hypot_at_origin_is_zero():
    assert fd.grad(lambda a, b: np.hypot(a, b), argnums=(0, 1))(0.0, 0.0) == (0.0, 0.0)


# ====================================================================== item 6: exp overflow

def test_exp_overflow_value_inf_gradient_inf_no_nan():
    assert fd.value_and_grad(np.exp)(1000.0) == (inf, inf)
    v, d = fd.value_and_grad(lambda x: np.exp(x).sum())(np.array([1000.0, 0.0]))
    assert_same(v, inf)
    assert_same(d, np.array([inf, 1.0]))
    assert fd.value_and_grad(lambda x: np.exp(x) ** 2)(400.0) == (inf, inf)
    assert fd.value_and_grad(lambda x: np.exp(-x))(-1000.0) == (inf, -inf)


def test_exp_overflow_then_zero_adjoint_follows_the_convention():
    # log(exp(x)) at 1000: adjoint of log is 1/inf = 0, times exp's partial inf: 0 by the
    # "zeros beat infinities" rule (docs/conventions.md); the closed form 1 is lost
    assert fd.value_and_grad(lambda x: np.log(np.exp(x)))(1000.0) == (inf, 0.0)
    # exp(x) - exp(x): inf - inf is NaN in value and derivative, per IEEE
    v, d = fd.value_and_grad(lambda x: np.exp(x) - np.exp(x))(1000.0)
    assert math.isnan(v) and math.isnan(d)


# ====================================================================== item 6: 0 * inf

@pytest.mark.parametrize("fun", [
    lambda x: 0.0 * np.sqrt(x),
    lambda x: np.sqrt(x) * 0.0,
    lambda x: 0.0 * np.log(x),
    lambda x: 0.0 * np.cbrt(x),
], ids=["0*sqrt", "sqrt*0", "0*log", "0*cbrt"])
def test_zero_adjoint_times_infinite_partial_is_zero(fun):
    assert_same(fd.grad(fun)(0.0), 0.0)


def test_zero_adjoint_times_infinite_partial_in_arrays():
    assert_same(fd.grad(lambda x: (0.0 * np.sqrt(x)).sum())(np.zeros(2)), np.zeros(2))
    assert_same(fd.grad(lambda x: np.sum(np.exp(x) * 0.0))(np.array([1000.0])),
                np.zeros(1))


def test_zero_tangent_times_infinite_partial_is_zero():
    # forward mode: tangent (1, 0) at (x, y) = (1, 0): sqrt(y)'s partial is inf, tangent 0
    out, tan = fd.jvp(lambda x, y: x * 2.0 + np.sqrt(y), (1.0, 0.0), (1.0, 0.0))
    assert_same(out, 2.0)
    assert_same(tan, 2.0)


# ====================================================================== nested derivatives

NESTED_0D = {
    "grad(grad)": lambda f, x: fd.grad(fd.grad(f))(x),
    "hessian": lambda f, x: fd.hessian(f)(x),
    "hvp": lambda f, x: fd.hvp(f)(x, np.array(1.0)),
    "jacfwd(grad)": lambda f, x: fd.jacfwd(fd.grad(f))(x),
    "jacrev(grad)": lambda f, x: fd.jacrev(fd.grad(f))(x),
}


@pytest.mark.parametrize("which", list(NESTED_0D))
def test_nested_derivative_at_0d_array(which):
    out = NESTED_0D[which](lambda x: x ** 3, np.array(2.0))
    assert np.shape(out) == () and float(out) == 12.0      # 6 x


def test_nested_derivative_at_float_and_1_element_array():
    assert fd.hessian(lambda x: x ** 3)(2.0) == 12.0
    assert_same(fd.hessian(lambda x: (x ** 3).sum())(np.array([2.0])), np.array([[12.0]]))


def test_second_derivative_of_where_untaken_side_scalar_and_hessian():
    f = lambda x: np.where(x > 0, np.log(x), 0.0)
    assert fd.grad(fd.grad(f))(0.0) == 0.0
    assert fd.hessian(f)(0.0) == 0.0
    fa = lambda x: np.where(x > 0, np.log(x), 0.0).sum()
    assert_same(fd.hessian(fa)(np.array([0.0])), np.array([[0.0]]))
    assert_same(fd.hvp(fa)(np.array([0.0]), np.array([1.0])), np.array([0.0]))


@pytest.mark.parametrize("inner", [np.log, np.sqrt, lambda x: 1.0 / x],
                         ids=["log", "sqrt", "reciprocal"])
def test_grad_of_grad_of_where_untaken_side_array(inner):
    f = lambda x: np.where(x > 0, inner(x), 0.0).sum()
    out = fd.grad(lambda y: fd.grad(f)(y).sum())(np.array([0.0, -1.0]))
    assert_same(out, np.array([0.0, 0.0]))


def test_jacrev_of_grad_of_where_untaken_side_array():
    f = lambda x: np.where(x > 0, np.log(x), 0.0).sum()
    assert_same(fd.jacfwd(fd.grad(f))(np.array([0.0])), np.array([[0.0]]))
    assert_same(fd.jacrev(fd.grad(f))(np.array([0.0])), np.array([[0.0]]))


def test_where_with_constant_mask_second_derivative_is_zero():
    # a constant (non-traced) mask, and 0*log: no NaN in reverse over reverse
    z = np.array([0.0])
    gg = lambda f: fd.grad(lambda y: fd.grad(f)(y).sum())(z)
    assert_same(gg(lambda x: np.where(np.array([False]), np.log(x), 0.0).sum()), z)
    assert_same(gg(lambda x: (0.0 * np.log(x)).sum()), z)


# ====================================================================== bad tangents / cotangents

@pytest.mark.parametrize("bad,err,words", [
    (1j, TypeError, ["tangent of primal 0", "complex"]),
    ("a", TypeError, ["tangent of primal 0", "str"]),
    (None, TypeError, ["tangent of primal 0", "NoneType"]),
])
def test_jvp_bad_tangent(bad, err, words):
    with pytest.raises(err) as info:
        fd.jvp(lambda x: x * 2.0, (1.0,), (bad,))
    for w in words:
        assert w in str(info.value), str(info.value)


def test_jvp_tangent_of_wrong_shape():
    with pytest.raises(ValueError, match=r"primal 0 has shape \(3,\) but its tangent has shape"):
        fd.jvp(lambda x: (x * 2.0).sum(), (np.ones(3),), (np.ones(2),))


def test_vjp_cotangent_of_wrong_shape():
    _, f_vjp = fd.vjp(lambda x: x ** 2, np.ones(3))
    with pytest.raises(ValueError, match=r"cotangent of the output's shape \(3,\), got \(2,\)"):
        f_vjp(np.ones(2))


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
@pytest.mark.parametrize("which", ["hvp", "vjp"])
def test_complex_vector_for_hvp_and_vjp_is_refused(which):
    f = lambda x: (x ** 3).sum()
    x = np.ones(3)
    with pytest.raises(TypeError, match="complex"):
        if which == "hvp":
            fd.hvp(f)(x, 1j * np.ones(3))
        else:
            fd.vjp(lambda x: x ** 2, x)[1](1j * np.ones(3))


# ====================================================================== other odd argument types

@pytest.mark.parametrize("arr", [np.array([1.5], np.float16), np.array([1.5], np.float32),
                                 np.array([1.5], np.longdouble)], ids=["f16", "f32", "f128"])
def test_other_float_widths_are_promoted_to_float64(arr):
    assert_same(fd.grad(lambda x: (x * x).sum())(arr), np.array([3.0]))


@pytest.mark.parametrize("bad,words", [
    (np.ndarray.view(np.array([[1.0, 2.0]]), np.matrix), ["differentiated", "matrix"]),
    (np.ma.array([1.0, 2.0], mask=[0, 1]), ["differentiated", "MaskedArray"]),
    (np.zeros(2, dtype=[("a", "f8")]), ["differentiated", "array", "float array"]),
], ids=["matrix", "masked", "structured"])
def test_ndarray_subclasses_and_structured_arrays_are_refused(bad, words):
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x: 1.0)(bad)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_int_too_large_for_float():
    with pytest.raises(OverflowError, match="int too large to convert to float"):
        fd.grad(lambda x: x * 2.0)(10 ** 400)


@pytest.mark.parametrize("data", [np.array(["a", "b"]), np.array(["2020-01-01"], "M8[D]"),
                                  {"a": [1]}, [[1]]], ids=["str-array", "datetime", "dict",
                                                           "nested-list"])
def test_odd_data_arguments_are_static(data):
    assert_same(fd.grad(lambda x, d: x * 2.0)(1.5, data), 2.0)
