"""Random draws inside a differentiated function (docs/conventions.md, "Random draws").

The reference for every call is the function run as plain Python on a generator seeded
like fastad's, with its gradient by central finite differences *of the same draws* (the
generator is rewound to the call's state before each evaluation).  fastad must give the
same sequence of values and gradients over several calls, and leave the generator in the
same state, as the plain runs do.
"""
import copy
import random
import warnings

import numpy as np
import pytest

import fastad as fd
from fastad.randomness import RandomDrawWarning

H = 1e-6          # central differences on smooth functions of O(1): error ~1e-10
CALLS = 5


def _fd_grad(f, x, rewind):
    """Central differences of f at x, rewinding the generator before every evaluation so
    each one sees the draws of the same call."""
    x = np.asarray(x, dtype=float)
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = H
        rewind()
        up = f(x + e)
        rewind()
        down = f(x - e)
        g.flat[i] = (up - down) / (2 * H)
    return g


def _check_sequence(make, xs, **kwargs):
    """make() seeds a random source and returns (function, source).  Run fastad's calls,
    then seed again and run the plain reference calls; compare every call and the
    generator's final state."""
    f, src = make()
    vg = fd.value_and_grad(f, **kwargs)
    with pytest.warns(RandomDrawWarning) as record:
        got = [vg(x) for x in xs]
    assert len(record) == 1, [str(w.message) for w in record]
    after = copy.deepcopy(_state(src))
    f, src = make()
    for x, (value, grad) in zip(xs, got):
        saved = copy.deepcopy(_state(src))

        def rewind(saved=saved):
            _set(src, saved)
        want_grad = _fd_grad(f, x, rewind)
        rewind()
        want_value = f(x)              # the plain call: advances the generator
        assert value == pytest.approx(want_value, rel=1e-13, abs=1e-13)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-6)
    assert _same_state(_state(src), after), "the generators advanced differently"
    return vg, str(record[0].message)


@pytest.fixture(autouse=True)
def _keep_global_generators():
    """The tests seed numpy's and Python's global generators: put them back after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    yield
    np.random.set_state(np_state)
    random.setstate(py_state)


def _set(src, state):
    if isinstance(src, _Both):
        np.random.set_state(state[0])
        src.helper.rng.bit_generator.state = state[1]
    elif isinstance(src, np.random.Generator):
        src.bit_generator.state = state
    elif isinstance(src, np.random.RandomState):
        src.set_state(state)
    else:
        src.setstate(state)


def _state(src):
    if isinstance(src, _Both):
        return (np.random.get_state(legacy=False), src.helper.rng.bit_generator.state)
    if isinstance(src, np.random.Generator):
        return src.bit_generator.state
    if isinstance(src, np.random.RandomState):
        return src.get_state(legacy=False)
    return src.getstate()


def _same_state(a, b):
    if isinstance(a, tuple) and isinstance(a[0], dict):
        return all(_same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return all(_same_state(a[k], b[k]) for k in a)
    return np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


XS = [np.array([0.3, -0.2]), np.array([0.5, 0.1]), np.array([0.3, -0.2]),
      np.array([-1.0, 0.4]), np.array([0.0, 0.0])]


# ---------------------------------------------------------------- the fast path: redraws

def _elbo_closure():
    """A stochastic variational objective drawing from a Generator in its closure."""
    rng = np.random.default_rng(42)

    def elbo(p):
        eps = rng.standard_normal(3)
        z = p[0] + np.exp(p[1]) * eps
        return np.sum(z ** 2) / 2 - p[1] + 0.1 * rng.uniform(-1.0, 1.0) * p[0]
    return elbo, rng


def test_generator_in_closure_fresh_draws_every_call():
    vg, message = _check_sequence(_elbo_closure, XS)
    info = vg.cache_info()
    assert info["traces"] == 1 and info["replays"] == CALLS - 1   # replayed, draws redrawn
    assert "replay makes the same generator calls" in message
    assert "random='freeze'" in message and "argument" in message


_MODULE_RNG = None


def _module_global():
    global _MODULE_RNG
    _MODULE_RNG = np.random.default_rng(5)

    def f(p):
        return np.sum(np.sin(p * _MODULE_RNG.normal(1.0, 0.5, size=2)))
    return f, _MODULE_RNG


def test_generator_as_argument():
    rng_ad, rng_py = np.random.default_rng(3), np.random.default_rng(3)

    def f(p, rng):
        return np.sum(np.cos(p) * rng.exponential(2.0, size=2))
    vg = fd.value_and_grad(f)
    with pytest.warns(RandomDrawWarning):
        got = [vg(x, rng_ad) for x in XS]
    for x, (value, grad) in zip(XS, got):
        saved = copy.deepcopy(_state(rng_py))
        want_grad = _fd_grad(lambda y: f(y, rng_py), x, lambda saved=saved: _set(rng_py, saved))
        _set(rng_py, saved)
        assert value == pytest.approx(f(x, rng_py), rel=1e-13)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-6)
    assert vg.cache_info()["traces"] == 1
    assert _same_state(_state(rng_ad), _state(rng_py))


def test_numpy_global_generator():
    def make():
        np.random.seed(11)

        def f(p):
            return np.sum(p ** 2 * np.random.randn(2)) + np.random.uniform() * p[0]
        return f, np.random.mtrand._rand
    vg, message = _check_sequence(make, XS)
    assert "np.random" in message
    assert vg.cache_info()["traces"] == 1


def test_python_random_module():
    def make():
        random.seed(9)

        def f(p):
            return np.sum(np.tanh(p + random.gauss(0.0, 1.0))) * random.random()
        return f, random._inst
    vg, _ = _check_sequence(make, XS)
    assert vg.cache_info()["traces"] == 1


def test_branch_on_a_draw_follows_the_draw():
    """A draw that decides a branch: the branch's guard fails on another draw, the
    generator is rewound and the right path runs."""
    def make():
        rng = np.random.default_rng(1)

        def f(p):
            if rng.random() < 0.5:
                return np.sum(p ** 2) * rng.normal()
            return np.sum(np.sin(p))
        return f, rng
    _check_sequence(make, XS * 2)


# ---------------------------------------------------------------- the fallback: retrace

def test_integer_draws_retrace_every_call():
    def make():
        rng = np.random.default_rng(8)

        def f(p):
            i = int(rng.integers(0, 2))
            return p[i] ** 3 + p[1 - i]
        return f, rng
    vg, message = _check_sequence(make, XS)
    assert vg.cache_info()["traces"] == CALLS
    assert "runs the Python code on every call" in message


@pytest.mark.parametrize("kind", ["RandomState", "random.Random"])
def test_generator_objects_without_interception_retrace(kind):
    """A RandomState or random.Random object in the closure: its draws are detected by the
    state comparison, not intercepted, so each call runs the Python code."""
    def make():
        if kind == "RandomState":
            src = np.random.RandomState(6)
            draw = lambda: src.standard_normal(2)
        else:
            src = random.Random(6)
            draw = lambda: np.array([src.gauss(0.0, 1.0), src.random()])

        def f(p):
            return np.sum(np.exp(p) * draw())
        return f, src
    vg, message = _check_sequence(make, XS)
    assert vg.cache_info()["traces"] == CALLS
    assert kind.split(".")[-1] in message


def test_draws_used_as_python_floats_retrace():
    """float(draw) fails on a traced draw: fastad reruns that trace on plain draws (the
    generator rewound) and retraces from then on."""
    def make():
        rng = np.random.default_rng(4)

        def f(p):
            scale = float(rng.standard_normal())
            return np.sum(p ** 2) * scale
        return f, rng
    vg, _ = _check_sequence(make, XS)
    assert vg.cache_info()["traces"] == CALLS


def test_draws_in_a_helper_of_another_module(tmp_path, monkeypatch):
    """f calls helper.sample (a function of another module) that draws from np.random and
    from a Generator global of that module: both are re-drawn at replay."""
    (tmp_path / "fastad_rand_helper.py").write_text(
        "import numpy as np\n"
        "rng = np.random.default_rng(12)\n"
        "def sample(n):\n"
        "    return np.random.normal(size=n) + rng.standard_normal(n)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fastad_rand_helper as helper

    def make():
        np.random.seed(13)
        helper.rng = np.random.default_rng(12)

        def f(p):
            return np.sum(np.sin(p) * helper.sample(2))
        return f, _Both(helper)
    vg, _ = _check_sequence(make, XS)
    assert vg.cache_info()["traces"] == 1


class _Both:
    """The two generators of the helper test, as one source for _check_sequence."""

    def __init__(self, helper):
        self.helper = helper


def test_generator_on_an_object_the_function_calls():
    class Model:
        def __init__(self):
            self.rng = np.random.default_rng(30)

        def loss(self, p):
            return np.sum(p ** 2 * self.rng.uniform(0.5, 1.5, size=2))

    def make():
        model = Model()
        return (lambda p: model.loss(p)), model.rng
    vg, _ = _check_sequence(make, XS)
    assert vg.cache_info()["traces"] == 1


def test_module_global_generator():
    _check_sequence(_module_global, XS)


# ---------------------------------------------------------------- other transforms

def test_jvp_and_hessian_draw_afresh():
    rng, ref = np.random.default_rng(21), np.random.default_rng(21)

    def f(x):
        return np.sum(x ** 3 * rng.standard_normal(2))
    with pytest.warns(RandomDrawWarning):
        tangents = [fd.jvp(f, (x,), (np.ones(2),))[1] for x in XS[:3]]
    for x, t in zip(XS[:3], tangents):
        d = ref.standard_normal(2)
        assert t == pytest.approx(np.sum(3 * x ** 2 * d), rel=1e-13)
    with pytest.warns(RandomDrawWarning):
        hessians = [fd.hessian(f)(x) for x in XS[:3]]
    hess = fd.hessian(f)     # one wrapper over several calls: replayed, redrawn
    with pytest.warns(RandomDrawWarning):
        replayed = [hess(x) for x in XS[:3]]
    for x, h in zip(XS[:3] * 2, hessians + replayed):
        d = ref.standard_normal(2)
        np.testing.assert_allclose(h, np.diag(6 * x * d), rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------- freeze and no warning

def test_freeze_reuses_the_first_draws():
    f, rng = _elbo_closure()
    g, ref = _elbo_closure()
    vg = fd.value_and_grad(f, random="freeze")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [vg(x) for x in XS]
    saved = copy.deepcopy(_state(ref))
    for x, (value, grad) in zip(XS, got):      # every call sees the first call's draws
        _set(ref, saved)
        assert value == pytest.approx(g(x), rel=1e-13)
        np.testing.assert_allclose(grad, _fd_grad(g, x, lambda: _set(ref, saved)),
                                   rtol=1e-6, atol=1e-6)
    _set(ref, saved)
    g(XS[0])                                   # only the trace drew
    assert _same_state(_state(rng), _state(ref))
    assert vg.cache_info()["traces"] == 1


def test_draws_that_do_not_affect_the_output():
    """Documented choice: the draws are still made on every call (the generator advances
    as in plain Python, which later code may rely on) and the function warns once."""
    rng, ref = np.random.default_rng(2), np.random.default_rng(2)

    def f(x):
        rng.standard_normal(3)
        return x * x
    g = fd.grad(f)
    with pytest.warns(RandomDrawWarning) as record:
        assert [g(x) for x in (1.0, 2.0, 3.0)] == [2.0, 4.0, 6.0]
    assert len(record) == 1
    for _ in range(3):
        ref.standard_normal(3)
    assert _same_state(_state(rng), _state(ref))


def test_no_randomness_no_warning():
    rng = np.random.default_rng(0)       # reachable but never drawn from

    def f(x):
        return np.sum(x ** 2) + 0.0 * (rng is None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = fd.grad(f)
        for x in XS:
            np.testing.assert_array_equal(g(x), 2 * x)
    assert g.cache_info()["traces"] == 1


def test_random_keyword_is_checked():
    with pytest.raises(ValueError, match="random='fresh'"):
        fd.grad(lambda x: x, random="fixed")
