"""fastad.custom_vjp: user rules, recorded as callbacks and run again at every replay."""
import math

import numpy as np
import pytest

import fastad as fd


def make_lgamma_times():
    """f(x, y) = lgamma(x) * y with its rule d/dx = digamma(x) y, d/dy = lgamma(x), written
    with math.lgamma and a digamma from its series, independent of fastad."""
    calls = {"f": 0, "bwd": 0}

    def digamma(x, h=1e-5):     # central difference of lgamma: error O(h^2) ~ 1e-10
        return (math.lgamma(x + h) - math.lgamma(x - h)) / (2 * h)

    @fd.custom_vjp
    def f(x, y):
        calls["f"] += 1
        return math.lgamma(x) * y

    def f_fwd(x, y):
        return f(x, y), (x, y)

    def f_bwd(res, g):
        calls["bwd"] += 1
        x, y = res
        return g * digamma(x) * y, g * math.lgamma(x)

    f.defvjp(f_fwd, f_bwd)
    return f, digamma, calls


def test_scalar_rule_is_used_and_replayed():
    f, digamma, calls = make_lgamma_times()
    g = fd.grad(lambda x, y: f(x, y) ** 2, argnums=(0, 1))
    for x, y in [(2.5, 1.5), (3.5, 0.5), (0.7, -2.0)]:
        v = math.lgamma(x) * y
        gx, gy = g(x, y)
        # tolerance: digamma by central differences has relative error ~1e-9
        assert gx == pytest.approx(2 * v * digamma(x) * y, rel=1e-8)
        assert gy == pytest.approx(2 * v * math.lgamma(x), rel=1e-12)
    info = g.cache_info()
    assert info["traces"] == 1 and info["replays"] == 2
    assert calls["bwd"] == 3          # the rule ran at every call, replays included


def test_array_rule():
    @fd.custom_vjp
    def h(x):
        return np.sin(x)

    h.defvjp(lambda x: (np.sin(x), x), lambda x, g: (g * np.cos(x),))
    g = fd.grad(lambda x: np.sum(h(x) * x))
    for x in (np.array([0.1, 0.5, 2.0]), np.array([-1.0, 3.0, 0.25])):
        np.testing.assert_allclose(g(x), np.sin(x) + x * np.cos(x), rtol=1e-14)


def test_static_arguments_pass_through():
    @fd.custom_vjp
    def scale(x, k):
        return x * k

    scale.defvjp(lambda x, k: (x * k, k), lambda k, g: (g * k, None))
    assert fd.grad(lambda x: scale(x, 3))(2.0) == 3.0


def test_forward_mode_and_nesting_refuse_clearly():
    @fd.custom_vjp
    def h(x):
        return np.sin(x)

    h.defvjp(lambda x: (np.sin(x), x), lambda x, g: (g * np.cos(x),))
    with pytest.raises(NotImplementedError, match="custom reverse-mode rule"):
        fd.jvp(lambda x: h(x), (0.3,), (1.0,))
    with pytest.raises(NotImplementedError, match="custom_vjp"):
        fd.grad(fd.grad(lambda x: h(x)))(0.3)
    assert fd.grad(lambda x: h(x))(0.3) == pytest.approx(math.cos(0.3), rel=1e-15)


def test_bad_rules_say_what_is_wrong():
    @fd.custom_vjp
    def f(x):
        return x * 2.0

    with pytest.raises(TypeError, match="defvjp"):
        fd.grad(f)(1.0)
    f.defvjp(lambda x: (x * 2.0, None), lambda res, g: g * 2.0)      # not a tuple
    with pytest.raises(TypeError, match="one cotangent per argument"):
        fd.grad(f)(1.0)
    assert fd.grad(lambda x: x * 2.0)(1.0) == 2.0                     # fastad still usable


def test_plain_call_outside_tracing():
    @fd.custom_vjp
    def f(x):
        return x + 1.0

    assert f(1.0) == 2.0
