"""Every elementwise function of the API contract, through fd.grad / fd.value_and_grad and
through fd.jvp, at several points including the edges of its domain, against the
50-digit mpmath reference in reference.py.

Tolerances (see reference.py): for a single operation on an exact float64 input the
reference bound is |f(x)| for the value and |f'(x)| + S(x) for the derivative, where S is
the error scale of a sane float64 formula for f' (S = |f'| except where the usual formula
subtracts nearly equal numbers, e.g. 1 - tanh(x)**2, 1/sqrt(1 - x*x)).  We accept
64 eps times that bound: libm/numpy functions are accurate to a few ulp, while a wrong
derivative rule is off by O(1).

The reference's own derivative table is cross-checked against 50-digit central
differences (test_reference_table_matches_central_differences), so the expected numbers
do not rest on the same formulas only.
"""

import math

import numpy as np
import pytest
from mpmath import mp, mpf

import fastad as fd
from reference import (
    CONTRACT_BINARY,
    CONTRACT_UNARY,
    MP,
    OPS,
    SCIPY_UNARY,
    assert_close,
    central_diff,
    numpy_namespace,
    ref_jvp,
    ref_value_and_grad,
)

NP = numpy_namespace()

UNARY_POINTS = {
    "negative": [-3.0, 0.0, 2.5, 1e300],
    "square": [-3.0, 0.0, 0.1, 1e150],
    "sqrt": [1e-300, 0.25, 2.0, 1e300],
    "cbrt": [-27.0, -1e-300, 1e-300, 0.001, 8.0, 1e300],
    "exp": [-700.0, -1.0, 0.0, 1e-10, 700.0],
    "exp2": [-1000.0, -0.5, 0.0, 3.0, 1000.0],
    "expm1": [-50.0, -1e-10, 0.0, 1e-10, 50.0],
    "log": [1e-300, 1e-5, 1.0, 2.0, 1e300],
    "log2": [1e-300, 0.3, 1.0, 8.0, 1e300],
    "log10": [1e-300, 0.3, 1.0, 1000.0, 1e300],
    "log1p": [-0.9999999999, -0.5, 0.0, 1e-20, 1e10, 1e300],
    "sin": [0.0, 1e-8, 1.0, 1.5707963267948966, -3.0, 1e6],
    "cos": [0.0, 1e-8, 1.0, 1.5707963267948966, -3.0, 1e6],
    "tan": [0.0, 1e-8, 1.0, -1.5, 1.5707963, 1e6],
    "arcsin": [-0.9999999999, -0.5, 0.0, 1e-8, 0.5, 0.9999999999],
    "arccos": [-0.9999999999, -0.5, 0.0, 1e-8, 0.5, 0.9999999999],
    "arctan": [-1e150, -1.0, 0.0, 1e-10, 3.0, 1e150],
    "sinh": [-700.0, -1.0, 0.0, 1e-10, 2.0, 700.0],
    "cosh": [-700.0, -1.0, 0.0, 1e-10, 2.0, 700.0],
    "tanh": [-10.0, -1.0, 0.0, 1e-10, 0.5, 5.0, 20.0],
    "arcsinh": [-1e150, -2.0, 0.0, 1e-10, 1.0, 1e150],
    "arccosh": [1.0000000001, 1.5, 2.0, 1e10, 1e150],
    "arctanh": [-0.9999999999, -0.5, 0.0, 1e-10, 0.5, 0.9999999999],
    "absolute": [-2.0, -1e-300, 1e-300, 3.0],
    "reciprocal": [-4.0, -1e-150, 1e-150, 0.3, 1e150],
    "sign": [-2.7, -1e-300, 0.4, 3.0],
    "floor": [-2.7, -0.3, 0.4, 1.6, 1e15 + 0.5],
    "ceil": [-2.7, -0.3, 0.4, 1.6, 1e15 + 0.5],
    "rint": [-2.7, -0.3, 0.4, 1.6, 1e15 + 0.25],
}
SCIPY_POINTS = {
    "erf": [-6.0, -1.0, 0.0, 1e-10, 0.5, 3.0, 6.0, 26.0],
    "erfc": [-6.0, -1.0, 0.0, 1e-10, 0.5, 3.0, 6.0, 26.0],
    "expit": [-700.0, -30.0, -1.0, 0.0, 1.0, 30.0, 40.0],
    "logit": [1e-300, 1e-10, 0.25, 0.5, 0.9999999999],
}
BINARY_POINTS = {
    "add": [(1.5, -2.25), (0.0, 0.0), (1e300, -1e300)],
    "subtract": [(1.5, -2.25), (3.0, 3.0), (1e-300, 2e-300)],
    "multiply": [(1.5, -2.25), (0.0, 5.0), (1e150, 1e-150), (-3.0, 0.0)],
    "divide": [(1.5, -2.25), (0.0, 3.0), (1.0, 1e-150), (1e150, 1e150), (-7.0, 0.5)],
    "power": [(2.0, 3.0), (0.5, -1.5), (1e-3, 0.5), (3.0, 0.0), (10.0, 100.0), (1.0, 2.5),
              (7.5, 1e-10)],
    "arctan2": [(1.0, 2.0), (-1.0, -2.0), (1e-10, 1.0), (1.0, 0.0), (0.0, -1.0), (1e150, 1e150)],
    "hypot": [(3.0, 4.0), (-5.0, 12.0), (0.0, 2.0), (1e200, 1e200), (1e-200, 3e-200)],
    "maximum": [(1.0, 2.0), (3.0, -1.0), (-1e300, 1e300)],
    "minimum": [(1.0, 2.0), (3.0, -1.0), (-1e300, 1e300)],
    "fmax": [(1.0, 2.0), (3.0, -1.0), (-1e300, 1e300)],
    "fmin": [(1.0, 2.0), (3.0, -1.0), (-1e300, 1e300)],
}

assert set(UNARY_POINTS) == set(CONTRACT_UNARY)
assert set(BINARY_POINTS) == set(CONTRACT_BINARY)
assert set(SCIPY_POINTS) == set(SCIPY_UNARY)

NAMESPACES = ["numpy", "fastad"]


def _ns(which):
    return NP if which == "numpy" else fd


def _unary_cases(points):
    return [
        pytest.param(name, x, which, id=f"{name}-{x!r}-{which}")
        for name, xs in points.items()
        for x in xs
        for which in NAMESPACES
    ]


def _binary_cases():
    return [
        pytest.param(name, a, b, which, id=f"{name}-{a!r},{b!r}-{which}")
        for name, pts in BINARY_POINTS.items()
        for a, b in pts
        for which in NAMESPACES
    ]


def unary_program(name):
    return lambda ns: (lambda x: getattr(ns, name)(x))


def binary_program(name):
    return lambda ns: (lambda a, b: getattr(ns, name)(a, b))


def check_unary(name, x, which):
    make = unary_program(name)
    ref = ref_value_and_grad(make(MP), (x,))
    v, g = fd.value_and_grad(make(_ns(which)))(x)
    assert type(v) is float and type(g) is float
    assert_close(v, ref.value, ref.value_bound, what=f"{name}({x!r}) value")
    assert_close(g, ref.grad, ref.grad_bound, what=f"{name}'({x!r}) via value_and_grad")
    g2 = fd.grad(make(_ns(which)))(x)
    assert_close(g2, ref.grad, ref.grad_bound, what=f"{name}'({x!r}) via grad")
    # forward mode with a non-unit tangent
    t = -0.75
    rj = ref_jvp(make(MP), (x,), (t,))
    jv, jt = fd.jvp(make(_ns(which)), (x,), (t,))
    assert type(jv) is float and type(jt) is float
    assert_close(jv, rj.value, rj.value_bound, what=f"{name}({x!r}) jvp value")
    assert_close(jt, rj.grad, rj.grad_bound, what=f"{name}'({x!r})*{t} via jvp")


@pytest.mark.parametrize("name,x,which", _unary_cases(UNARY_POINTS))
def test_unary(name, x, which):
    check_unary(name, x, which)


@pytest.mark.parametrize("name,x,which", _unary_cases(SCIPY_POINTS))
def test_scipy_special(name, x, which):
    pytest.importorskip("scipy.special")
    check_unary(name, x, which)


@pytest.mark.parametrize("name,a,b,which", _binary_cases())
def test_binary_both_arguments(name, a, b, which):
    make = binary_program(name)
    ref = ref_value_and_grad(make(MP), (a, b), argnums=(0, 1))
    v, (ga, gb) = fd.value_and_grad(make(_ns(which)), argnums=(0, 1))(a, b)
    assert type(v) is float and type(ga) is float and type(gb) is float
    assert_close(v, ref.value, ref.value_bound, what=f"{name}{a, b} value")
    assert_close(ga, ref.grad[0], ref.grad_bound[0], what=f"d{name}/da at {a, b}")
    assert_close(gb, ref.grad[1], ref.grad_bound[1], what=f"d{name}/db at {a, b}")
    # each argument alone (argnums int)
    assert_close(fd.grad(make(_ns(which)), argnums=1)(a, b), ref.grad[1], ref.grad_bound[1],
                 what=f"d{name}/db argnums=1")
    tangents = (0.5, -1.25)
    rj = ref_jvp(make(MP), (a, b), tangents)
    jv, jt = fd.jvp(make(_ns(which)), (a, b), tangents)
    assert_close(jv, rj.value, rj.value_bound, what=f"{name}{a, b} jvp value")
    assert_close(jt, rj.grad, rj.grad_bound, what=f"{name} jvp at {a, b}")


def test_power_negative_base_integer_exponent():
    # d/dx x**y = y*x**(y-1) = 3*4 = 12 at (-2, 3), also with a traced exponent
    assert fd.grad(lambda x, y: x ** y)(-2.0, 3.0) == 12.0
    assert fd.grad(lambda x: x ** 3)(-2.0) == 12.0
    assert fd.grad(lambda x: np.power(x, 3.0))(-2.0) == 12.0
    assert tuple(fd.value_and_grad(lambda x: x ** 2)(-3.0)) == (9.0, -6.0)


# ------------------------------------------------------------ the reference itself


def _table_cases():
    cases = []
    for name, xs in {**UNARY_POINTS, **SCIPY_POINTS}.items():
        for x in xs:
            cases.append(pytest.param(name, x, id=f"{name}-{x!r}"))
    return cases


@pytest.mark.parametrize("name,x", _table_cases())
def test_reference_table_matches_central_differences(name, x):
    """The reference's closed-form derivative agrees with a 90-digit central difference
    (see reference.central_diff: error < 1e-40 relative at these points), checked to 1e-20."""
    op = OPS[name]
    fx = mpf(x)
    numeric = central_diff(lambda t: op.value(t), fx)
    (analytic,) = op.partials(fx)
    assert abs(numeric - analytic) <= mpf(10) ** -20 * (abs(analytic) + mpf(10) ** -300), (name, x)


@pytest.mark.parametrize(
    "name,a,b",
    [pytest.param(n, a, b, id=f"{n}-{a!r},{b!r}")
     for n, pts in BINARY_POINTS.items() for a, b in pts],
)
def test_reference_binary_table_matches_central_differences(name, a, b):
    op = OPS[name]
    ma, mb = mpf(a), mpf(b)
    pa, pb = op.partials(ma, mb)
    for which, analytic in ((0, pa), (1, pb)):
        # arctan2 at (0, x<0) sits on its branch cut: the value jumps from pi to -pi as y
        # crosses 0, so the derivative there is the one-sided one from y >= 0 (y = +0.0)
        on_cut = name == "arctan2" and which == 0 and ma == 0 and mb < 0
        if which == 0:
            numeric = central_diff(lambda t: op.value(t, mb), ma, one_sided=on_cut)
        else:
            numeric = central_diff(lambda t: op.value(ma, t), mb)
        assert abs(numeric - analytic) <= mpf(10) ** -20 * (abs(analytic) + mpf(10) ** -300), \
            (name, a, b, which)


# ------------------------------------------------------------ fd.<name> on plain numbers


@pytest.mark.parametrize("name", CONTRACT_UNARY)
def test_fd_function_on_plain_float_is_numpy_result(name):
    x = 1.25 if name == "arccosh" else 0.75      # inside every domain
    got = getattr(fd, name)(x)
    expected = getattr(np, name)(x)
    assert isinstance(got, (float, np.floating))
    assert float(got) == float(expected)


@pytest.mark.parametrize("name", CONTRACT_BINARY)
def test_fd_binary_function_on_plain_floats_is_numpy_result(name):
    got = getattr(fd, name)(0.75, 1.5)
    assert isinstance(got, (float, np.floating))
    assert float(got) == float(getattr(np, name)(0.75, 1.5))


def test_fd_sin_plain_float_and_array():
    assert fd.sin(2.0) == np.sin(2.0)
    arr = np.linspace(-1, 1, 5)
    np.testing.assert_array_equal(fd.sin(arr), np.sin(arr))


@pytest.mark.parametrize("name", SCIPY_UNARY)
def test_fd_scipy_function_on_plain_float(name):
    sps = pytest.importorskip("scipy.special")
    assert float(getattr(fd, name)(0.3)) == float(getattr(sps, name)(0.3))


# ------------------------------------------------------------ operators, reflected forms

CONSTANTS = [
    pytest.param(2.5, id="float"),
    pytest.param(3, id="int"),
    pytest.param(np.float64(2.5), id="np.float64"),
    pytest.param(np.int64(3), id="np.int64"),
]

OPERATORS = {
    "x+c": lambda x, c: x + c,
    "c+x": lambda x, c: c + x,
    "x-c": lambda x, c: x - c,
    "c-x": lambda x, c: c - x,
    "x*c": lambda x, c: x * c,
    "c*x": lambda x, c: c * x,
    "x/c": lambda x, c: x / c,
    "c/x": lambda x, c: c / x,
    "x**c": lambda x, c: x ** c,
    "c**x": lambda x, c: c ** x,
}

# independent closed forms of the derivative w.r.t. x
OPERATOR_DERIVATIVES = {
    "x+c": lambda x, c: mpf(1),
    "c+x": lambda x, c: mpf(1),
    "x-c": lambda x, c: mpf(1),
    "c-x": lambda x, c: mpf(-1),
    "x*c": lambda x, c: c,
    "c*x": lambda x, c: c,
    "x/c": lambda x, c: 1 / c,
    "c/x": lambda x, c: -c / x ** 2,
    "x**c": lambda x, c: c * x ** (c - 1),
    "c**x": lambda x, c: mp.log(c) * c ** x,
}


def _operator_cases():
    cases = []
    for op in OPERATORS:
        for c in CONSTANTS:
            for x in (1.7, -0.6):
                cval = c.values[0]
                if op == "x**c" and x < 0 and float(cval) != int(cval):
                    continue    # negative base, non-integer exponent: NaN, not a derivative test
                cases.append(pytest.param(op, cval, x, id=f"{op}-{c.id}-{x}"))
    return cases


@pytest.mark.parametrize("op,c,x", _operator_cases())
def test_operator_with_constant(op, c, x):
    fun = lambda t: OPERATORS[op](t, c)
    v, g = fd.value_and_grad(fun)(x)
    assert type(v) is float and type(g) is float
    ref = ref_value_and_grad(fun, (x,))           # the same expression on mpmath duals
    assert_close(v, ref.value, ref.value_bound, what=f"{op} value, c={c!r}, x={x}")
    assert_close(g, ref.grad, ref.grad_bound, what=f"{op} derivative, c={c!r}, x={x}")
    closed = OPERATOR_DERIVATIVES[op](mpf(x), mpf(float(c)))
    assert abs(mpf(g) - closed) <= 64 * 2.0 ** -52 * abs(closed) * 2, (op, c, x, g, closed)
    jv, jt = fd.jvp(fun, (x,), (2.0,))
    assert_close(jt, 2 * ref.grad, 2 * ref.grad_bound, what=f"{op} jvp")


@pytest.mark.parametrize("x", [-1.5, 2.0, 1e-300])
def test_unary_operators(x):
    mx = mpf(x)
    assert tuple(fd.value_and_grad(lambda t: -t)(x)) == (-x, -1.0)
    assert tuple(fd.value_and_grad(lambda t: +t)(x)) == (x, 1.0)
    assert tuple(fd.value_and_grad(lambda t: abs(t))(x)) == (abs(x), 1.0 if x > 0 else -1.0)
    assert tuple(fd.jvp(lambda t: -t, (x,), (3.0,))) == (-x, -3.0)
    assert tuple(fd.jvp(lambda t: abs(t), (x,), (3.0,))) == (abs(x), 3.0 if x > 0 else -3.0)
    # composition: d/dt (-(t*t)) = -2t exactly in binary
    assert fd.grad(lambda t: -(t * t))(x) == float(-2 * mx)


def test_traced_power_operator_both_sides():
    # x ** y with both traced, through the operator: closed forms y*x**(y-1), log(x)*x**y
    for a, b in [(2.0, 3.0), (0.5, -1.5), (3.0, 0.5)]:
        ga, gb = fd.grad(lambda x, y: x ** y, argnums=(0, 1))(a, b)
        ma, mb = mpf(a), mpf(b)
        ea, eb = mb * ma ** (mb - 1), mp.log(ma) * ma ** mb
        assert abs(mpf(ga) - ea) <= 64 * 2.0 ** -52 * abs(ea), (a, b, ga)
        assert abs(mpf(gb) - eb) <= 64 * 2.0 ** -52 * abs(eb), (a, b, gb)


def test_numpy_scalar_results_mix_with_tracers():
    # np.float64 produced by numpy on constants, then combined with a tracer
    def f(x):
        c = np.sin(np.float64(0.5))          # plain numpy scalar
        return c * x + np.float64(2.0) ** x - x / np.float64(4.0)

    x = 1.3
    g = fd.grad(f)(x)
    expected = mp.sin(mpf(0.5)) + mp.log(2) * mpf(2) ** mpf(x) - mpf(0.25)
    assert abs(mpf(g) - expected) <= 64 * 2.0 ** -52 * 3, g


# ------------------------------------------------------------ kink conventions


@pytest.mark.parametrize("which", NAMESPACES)
def test_abs_derivative_at_zero_is_one(which):
    ns = _ns(which)
    assert fd.grad(lambda x: ns.absolute(x))(0.0) == 1.0
    assert fd.grad(lambda x: abs(x))(0.0) == 1.0
    assert tuple(fd.jvp(lambda x: ns.absolute(x), (0.0,), (2.0,))) == (0.0, 2.0)


@pytest.mark.parametrize("which", NAMESPACES)
@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
def test_max_min_tie_splits_half(name, which):
    fn = getattr(_ns(which), name)
    if name in ("maximum", "minimum"):  # the contract states the 0.5 split for these
        assert fd.grad(lambda x, y: fn(x, y), argnums=(0, 1))(1.0, 1.0) == (0.5, 0.5)
        assert fd.grad(lambda x: fn(x, 1.0))(1.0) == 0.5
        assert tuple(fd.jvp(lambda x, y: fn(x, y), (1.0, 1.0), (1.0, 0.0))) == (1.0, 0.5)
    # whatever the split, both sides of a tie of the same variable add up to 1
    assert fd.grad(lambda x: fn(x, x))(-2.5) == 1.0


def test_sqrt_derivative_at_zero_is_inf():
    assert fd.grad(np.sqrt)(0.0) == math.inf
    assert fd.grad(lambda x: fd.sqrt(x))(0.0) == math.inf
    v, t = fd.jvp(np.sqrt, (0.0,), (1.0,))
    assert v == 0.0 and t == math.inf


def test_power_kinks():
    # d/dy x**y at x == 0 is 0 (not 0 * log(0) = NaN)
    for y in (2.0, 0.5, 3.0):
        assert fd.grad(lambda x, y: x ** y, argnums=1)(0.0, y) == 0.0
        assert fd.grad(lambda x, y: np.power(x, y), argnums=1)(0.0, y) == 0.0
    # d/dx x**0 is 0, also at x == 0, with constant and traced exponent
    assert tuple(fd.value_and_grad(lambda x: x ** 0)(0.0)) == (1.0, 0.0)
    assert tuple(fd.value_and_grad(lambda x: x ** 0.0)(0.0)) == (1.0, 0.0)
    assert tuple(fd.value_and_grad(lambda x: x ** 0)(2.5)) == (1.0, 0.0)
    assert fd.grad(lambda x, y: x ** y, argnums=0)(0.0, 0.0) == 0.0
    assert fd.grad(lambda x, y: np.power(x, y), argnums=(0, 1))(0.0, 0.0) == (0.0, 0.0)
    assert tuple(fd.jvp(lambda x: x ** 0.0, (0.0,), (1.0,))) == (1.0, 0.0)


@pytest.mark.parametrize("which", NAMESPACES)
@pytest.mark.parametrize("name,x,value", [
    ("sign", 0.0, 0.0), ("sign", -3.0, -1.0), ("sign", 2.0, 1.0),
    ("floor", 2.0, 2.0), ("floor", -2.5, -3.0),
    ("ceil", 2.0, 2.0), ("ceil", -2.5, -2.0),
    ("rint", 2.5, 2.0), ("rint", 3.5, 4.0), ("rint", -0.4, -0.0),
])
def test_piecewise_constant_have_zero_derivative(name, x, value, which):
    fn = getattr(_ns(which), name)
    v, g = fd.value_and_grad(lambda t: fn(t) * 3.0 + t)(x)
    assert v == 3.0 * value + x
    assert g == 1.0
    assert fd.grad(lambda t: fn(t))(x) == 0.0
    assert fd.jvp(lambda t: fn(t), (x,), (1.0,))[1] == 0.0


@pytest.mark.parametrize("which", NAMESPACES)
@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_fmax_fmin_ignore_nan(name, which):
    fn = getattr(_ns(which), name)
    nan = math.nan
    v, (ga, gb) = fd.value_and_grad(lambda a, b: fn(a, b), argnums=(0, 1))(nan, 2.0)
    assert v == 2.0 and ga == 0.0 and gb == 1.0
    v, (ga, gb) = fd.value_and_grad(lambda a, b: fn(a, b), argnums=(0, 1))(2.0, nan)
    assert v == 2.0 and ga == 1.0 and gb == 0.0
    v, t = fd.jvp(lambda a, b: fn(a, b), (nan, 2.0), (5.0, 7.0))
    assert v == 2.0 and t == 7.0


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_propagate_nan(name):
    fn = getattr(np, name)
    v, g = fd.value_and_grad(lambda a, b: fn(a, b), argnums=1)(math.nan, 2.0)
    assert math.isnan(v)


def test_absolute_zero_rule():
    # 0 * sqrt(x) at x = 0: the adjoint reaching sqrt is 0, times sqrt'(0) = inf -> 0, not NaN
    assert fd.grad(lambda x: 0.0 * np.sqrt(x))(0.0) == 0.0
    assert fd.grad(lambda x: np.sqrt(x) * 0.0)(0.0) == 0.0
    assert fd.grad(lambda x: 0.0 * np.cbrt(x))(0.0) == 0.0
    assert fd.grad(lambda x: 0.0 * np.arcsin(x))(1.0) == 0.0
    assert fd.grad(lambda x: 0.0 * x ** 0.5)(0.0) == 0.0
    v, (gx, gy) = fd.value_and_grad(lambda x, y: x + 0.0 * np.sqrt(y), argnums=(0, 1))(1.0, 0.0)
    assert (v, gx, gy) == (1.0, 1.0, 0.0)
    # forward mode: a zero tangent entering sqrt at 0 gives 0, not 0*inf = NaN
    assert tuple(fd.jvp(lambda x, y: x + np.sqrt(y), (1.0, 0.0), (1.0, 0.0))) == (1.0, 1.0)
    # but a nonzero adjoint really gives inf (the rule is not a blanket NaN filter)
    assert fd.grad(lambda x, y: x + np.sqrt(y), argnums=1)(1.0, 0.0) == math.inf
