"""Property tests: random expression programs, fastad vs the 50-digit dual-number reference.

Hypothesis draws expression trees over 1-4 inputs (variables, Python float / int / numpy
float64 constants, and every elementwise op of the contract).  Each op whose domain is
restricted is applied through a composition that keeps its argument inside the domain
(log(1 + a*a), sqrt(a*a + c), arcsin(0.9*tanh(a)), arccosh(1.5 + a*a), ...), and
exp/sinh/cosh get bounded arguments so that values stay moderate.

The same tree is evaluated
  * by fastad, through numpy ufuncs or through fd.<name> (drawn), with scalar arguments or
    packed into one array argument read with x[i] (drawn), by value_and_grad (reverse mode,
    then replayed at 3 more random points) and by jvp (forward mode);
  * by reference.MP (mpmath duals, 50 digits), which also yields a first-order float64
    rounding-error bound for every value and derivative (see reference.py).

Tolerance: |fastad - reference| <= 64 eps * bound.  The bound accounts for rounding in
every op, cancellation in the usual derivative formulas and the sensitivity of partials
to errors in intermediate values, so it is tight where the computation is well
conditioned and loose only where float64 itself cannot do better.  Points where float64
could land on the other side of a kink (abs/max/floor/... within ~1000 eps*bound of the
kink) are rejected with ``assume`` (first point) or not compared (replay points).
"""

import numpy as np
from hypothesis import assume, given, note
from hypothesis import strategies as st

import fastad as fd
from reference import MP, assert_close, numpy_namespace, ref_jvp, ref_value_and_grad

try:
    import scipy.special  # noqa: F401

    HAVE_SCIPY = True
except ImportError:  # pragma: no cover
    HAVE_SCIPY = False

NP = numpy_namespace()

# ---------------------------------------------------------------- the expression language

UNARY = {
    "sin": lambda ns, a: ns.sin(a),
    "cos": lambda ns, a: ns.cos(a),
    "tan": lambda ns, a: ns.tan(ns.sin(a)),                 # |sin| <= 1 < pi/2
    "tanh": lambda ns, a: ns.tanh(a),
    "arctan": lambda ns, a: ns.arctan(a),
    "arcsinh": lambda ns, a: ns.arcsinh(a),
    "neg": lambda ns, a: -a,
    "pos": lambda ns, a: +a,
    "abs": lambda ns, a: abs(a),
    "absolute": lambda ns, a: ns.absolute(a),
    "negative": lambda ns, a: ns.negative(a),
    "square": lambda ns, a: ns.square(a),
    "exp": lambda ns, a: ns.exp(ns.sin(a)),
    "exp2": lambda ns, a: ns.exp2(ns.cos(a)),
    "expm1": lambda ns, a: ns.expm1(ns.tanh(a)),
    "log": lambda ns, a: ns.log(1.0 + a * a),
    "log1p": lambda ns, a: ns.log1p(ns.square(a)),
    "log2": lambda ns, a: ns.log2(2.0 + ns.sin(a)),
    "log10": lambda ns, a: ns.log10(1.5 + ns.cos(a)),
    "sqrt": lambda ns, a: ns.sqrt(a * a + 0.25),
    "cbrt": lambda ns, a: ns.cbrt(a),
    "reciprocal": lambda ns, a: ns.reciprocal(1.5 + ns.sin(a)),
    "rdiv": lambda ns, a: 2.0 / (1.25 + ns.cos(a)),
    "arcsin": lambda ns, a: ns.arcsin(0.9 * ns.tanh(a)),
    "arccos": lambda ns, a: ns.arccos(ns.tanh(a) * 0.9),
    "arctanh": lambda ns, a: ns.arctanh(0.9 * ns.tanh(a)),
    "arccosh": lambda ns, a: ns.arccosh(1.5 + a * a),
    "sinh": lambda ns, a: ns.sinh(2.0 * ns.sin(a)),
    "cosh": lambda ns, a: ns.cosh(ns.sin(a) * 2.0),
    "sign": lambda ns, a: ns.sign(a) + a,
    "floor": lambda ns, a: ns.floor(a) + a,
    "ceil": lambda ns, a: ns.ceil(a) - a,
    "rint": lambda ns, a: ns.rint(a) + 0.5 * a,
    "pow_const": lambda ns, a: (1.0 + a * a) ** 1.5,
    "pow_neg": lambda ns, a: (1.0 + a * a) ** -0.5,
    "pow_int": lambda ns, a: a ** 3,
    "rpow": lambda ns, a: 2.0 ** ns.sin(a),
    "np_power_const": lambda ns, a: ns.power(ns.square(a) + 0.5, 2.5),
}
SCIPY_UNARY = {
    "erf": lambda ns, a: ns.erf(a),
    "erfc": lambda ns, a: ns.erfc(a),
    "expit": lambda ns, a: ns.expit(a),
    "logit": lambda ns, a: ns.logit(0.5 + 0.4 * ns.tanh(a)),
}
if HAVE_SCIPY:
    UNARY.update(SCIPY_UNARY)

BINARY = {
    "add": lambda ns, a, b: a + b,
    "sub": lambda ns, a, b: a - b,
    "mul": lambda ns, a, b: a * b,
    "div": lambda ns, a, b: a / (1.0 + b * b),
    "np_add": lambda ns, a, b: ns.add(a, b),
    "np_subtract": lambda ns, a, b: ns.subtract(a, b),
    "np_multiply": lambda ns, a, b: ns.multiply(a, b),
    "np_divide": lambda ns, a, b: ns.divide(a, 2.0 + ns.cos(b)),
    "pow": lambda ns, a, b: (1.5 + ns.sin(a)) ** ns.tanh(b),
    "np_power": lambda ns, a, b: ns.power(1.0 + a * a, ns.sin(b)),
    "arctan2": lambda ns, a, b: ns.arctan2(a, b),
    "hypot": lambda ns, a, b: ns.hypot(a, b),
    "maximum": lambda ns, a, b: ns.maximum(a, b),
    "minimum": lambda ns, a, b: ns.minimum(a, b),
    "fmax": lambda ns, a, b: ns.fmax(a, b),
    "fmin": lambda ns, a, b: ns.fmin(a, b),
}

CONSTANT_VALUES = [0.5, -1.25, 2.0, 3.0, 0.1, -0.7, 1.0, 0.0, 2.75]


def evaluate(tree, ns, xs):
    kind = tree[0]
    if kind == "x":
        return xs[tree[1]]
    if kind == "c":
        return tree[1]
    if kind == "u":
        return UNARY[tree[1]](ns, evaluate(tree[2], ns, xs))
    return BINARY[tree[1]](ns, evaluate(tree[2], ns, xs), evaluate(tree[3], ns, xs))


def uses_var(tree):
    if tree[0] == "x":
        return True
    if tree[0] == "c":
        return False
    return any(uses_var(t) for t in tree[2:])


def show(tree):
    kind = tree[0]
    if kind == "x":
        return f"x{tree[1]}"
    if kind == "c":
        return repr(tree[1])
    return f"{tree[1]}({', '.join(show(t) for t in tree[2:])})"


@st.composite
def trees(draw, n_inputs, depth):
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        if draw(st.integers(0, 4)) == 0:
            value = draw(st.sampled_from(CONSTANT_VALUES))
            flavour = draw(st.sampled_from(["float", "int", "np"]))
            if flavour == "int" and float(value).is_integer():
                value = int(value)
            elif flavour == "np":
                value = np.float64(value)
            return ("c", value)
        return ("x", draw(st.integers(0, n_inputs - 1)))
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(UNARY)))
        return ("u", name, draw(trees(n_inputs, depth - 1)))
    name = draw(st.sampled_from(sorted(BINARY)))
    return ("b", name, draw(trees(n_inputs, depth - 1)), draw(trees(n_inputs, depth - 1)))


# inputs in [-2, 2]; tiny nonzero magnitudes are mapped to 0 so that no intermediate
# underflows (underflow breaks the relative-error model of the bound)
coordinate = st.floats(-2.0, 2.0, allow_nan=False).map(lambda v: 0.0 if abs(v) < 1e-3 else v)


tangent_coordinate = st.floats(-1.0, 1.0).map(lambda v: 0.0 if abs(v) < 1e-3 else v)


def points(n):
    return st.lists(coordinate, min_size=n, max_size=n)


def make_program(tree, n_inputs, packed):
    """Factory ns -> function; scalar arguments or one packed array argument."""
    if packed:
        def make(ns):
            def f(x):
                return evaluate(tree, ns, [x[i] for i in range(n_inputs)])
            return f
    else:
        def make(ns):
            def f(*xs):
                return evaluate(tree, ns, xs)
            return f
    return make


def as_args(point, packed):
    return (np.array(point, dtype=float),) if packed else tuple(point)


@st.composite
def programs(draw):
    n = draw(st.integers(1, 4))
    tree = draw(trees(n, 4))
    assume(uses_var(tree))
    packed = draw(st.booleans())
    namespace = draw(st.sampled_from(["numpy", "fastad"]))
    return n, tree, packed, namespace


def _ns(which):
    return NP if which == "numpy" else fd


def check_value_and_grad(vg, make, n, packed, point, label):
    args = as_args(point, packed)
    argnums = 0 if packed else tuple(range(n))
    ref = ref_value_and_grad(make(MP), args, argnums)
    got_v, got_g = vg(*args)
    if not ref.kinks_ok:
        return False
    assert_close(got_v, ref.value, ref.value_bound, what=f"{label} value at {point}")
    if packed:
        assert isinstance(got_g, np.ndarray) and got_g.shape == (n,)
        assert_close(got_g, ref.grad, ref.grad_bound, what=f"{label} grad at {point}")
    else:
        assert isinstance(got_g, tuple) and len(got_g) == n
        for i in range(n):
            assert_close(got_g[i], ref.grad[i], ref.grad_bound[i],
                         what=f"{label} d/dx{i} at {point}")
    return True


@given(prog=programs(), data=st.data())
def test_random_programs_grad_and_replay(prog, data):
    n, tree, packed, namespace = prog
    note(f"program: {show(tree)}  (n={n}, packed={packed}, ns={namespace})")
    make = make_program(tree, n, packed)
    first = data.draw(points(n), label="first point")
    ref = ref_value_and_grad(make(MP), as_args(first, packed), 0 if packed else tuple(range(n)))
    assume(ref.kinks_ok)

    calls = [0]
    inner = make(_ns(namespace))

    def counted(*args):
        calls[0] += 1
        return inner(*args)

    argnums = 0 if packed else tuple(range(n))
    # fd.grad alone, at the first point
    g = fd.grad(make(_ns(namespace)), argnums=argnums)(*as_args(first, packed))
    if packed:
        assert_close(g, ref.grad, ref.grad_bound, what=f"grad at {first}")
    else:
        for i in range(n):
            assert_close(g[i], ref.grad[i], ref.grad_bound[i], what=f"grad d/dx{i} at {first}")

    vg = fd.value_and_grad(counted, argnums=argnums)
    assert check_value_and_grad(vg, make, n, packed, first, "trace")
    for k in range(3):
        p = data.draw(points(n), label=f"replay point {k}")
        check_value_and_grad(vg, make, n, packed, p, f"replay {k}")
    # the program has no comparisons, so one trace serves every call
    assert calls[0] == 1
    info = vg.cache_info()
    assert info["traces"] == 1 and info["replays"] == 3


@given(prog=programs(), data=st.data())
def test_random_programs_jvp(prog, data):
    n, tree, packed, namespace = prog
    note(f"program: {show(tree)}  (n={n}, packed={packed}, ns={namespace})")
    make = make_program(tree, n, packed)
    point = data.draw(points(n), label="point")
    tangent = data.draw(st.lists(tangent_coordinate, min_size=n, max_size=n), label="tangent")
    primals = as_args(point, packed)
    tangents = as_args(tangent, packed)
    ref = ref_jvp(make(MP), primals, tangents)
    assume(ref.kinks_ok)
    v, t = fd.jvp(make(_ns(namespace)), primals, tangents)
    assert type(v) is float and type(t) is float
    assert_close(v, ref.value, ref.value_bound, what="jvp value")
    assert_close(t, ref.grad, ref.grad_bound, what="jvp tangent")


@given(prog=programs(), data=st.data())
def test_random_programs_tape_reverse_equals_tangents(prog, data):
    """Low-level tape: reverse-mode input adjoints and forward-mode tangents (unit seeds)
    both equal the reference gradient, at the recording point and at a replayed point."""
    n, tree, packed, namespace = prog
    note(f"program: {show(tree)}  (n={n}, packed={packed}, ns={namespace})")
    make = make_program(tree, n, packed)
    p0 = data.draw(points(n), label="record point")
    p1 = data.draw(points(n), label="replay point")
    r0 = ref_value_and_grad(make(MP), as_args(p0, packed), 0 if packed else tuple(range(n)))
    r1 = ref_value_and_grad(make(MP), as_args(p1, packed), 0 if packed else tuple(range(n)))
    assume(r0.kinks_ok and r1.kinks_ok)
    tape = fd.record(make(_ns(namespace)), *as_args(p0, packed))
    assert tape.n_inputs == n
    for p, r in ((p0, r0), (p1, r1)):
        grads = r.grad if not packed else tuple(r.grad)
        bounds = r.grad_bound if not packed else tuple(r.grad_bound)
        assert_close(tape.forward(list(p)), r.value, r.value_bound, what=f"forward at {p}")
        adj = tape.reverse()
        for i in range(n):
            assert_close(adj[i], grads[i], bounds[i], what=f"reverse d/dx{i} at {p}")
        for i in range(n):
            e = [0.0] * n
            e[i] = 1.0
            assert_close(tape.tangent(e), grads[i], bounds[i], what=f"tangent e{i} at {p}")
