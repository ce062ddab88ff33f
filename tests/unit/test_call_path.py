"""The call path's fast path (docs/native.md, "Call overhead"): a call like the last one
reuses its signature without building the cache key, and answers exactly what the general
path answers -- new shapes, other argument types, guards, cache_clear."""
import numpy as np
import pytest

import fastad as fd


def f(x1, x2):
    v = x1 * x2
    return v + np.exp(v) - np.sin(x2)


def df(x1, x2):
    v = x1 * x2
    return (x2 * (1 + np.exp(v)), x1 * (1 + np.exp(v)) - np.cos(x2))


def test_scalars_and_vectors_alternate_with_the_right_gradients():
    g2 = fd.value_and_grad(f, argnums=(0, 1))
    gv = fd.grad(lambda x: np.sum(x ** 3))
    for x1, x2 in [(1.5, 0.5), (0.2, -0.3), (1.5, 0.5)]:
        v, g = g2(x1, x2)
        assert v == pytest.approx(f(x1, x2), rel=1e-15)
        assert g == pytest.approx(df(x1, x2), rel=1e-14)
    assert g2.cache_info()["traces"] == 1 and g2.cache_info()["replays"] == 2
    for x in [np.arange(3.0), np.arange(4.0), np.arange(3.0) + 1, np.ones((2, 2))]:
        np.testing.assert_array_equal(gv(x), 3 * x ** 2)      # exact: small integers
        assert gv(x).shape == x.shape
    assert gv.cache_info()["traces"] == 3 and gv.cache_info()["signatures"] == 3


def test_other_argument_types_take_the_general_path():
    gv = fd.grad(lambda x: np.sum(x ** 2))
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(gv(x), 2 * x)
    np.testing.assert_array_equal(gv(x.astype(np.float32)), 2 * x)     # converted
    np.testing.assert_array_equal(gv(x[::-1].copy()[::-1]), 2 * x)     # not contiguous
    np.testing.assert_array_equal(gv(x.reshape(2, 2)), 2 * x.reshape(2, 2))
    g = fd.grad(f)
    assert g(np.float64(1.5), 0.5) == pytest.approx(df(1.5, 0.5)[0], rel=1e-14)
    assert g(1.5, 0.5) == pytest.approx(df(1.5, 0.5)[0], rel=1e-14)
    with pytest.raises(TypeError, match="argument 0 is differentiated"):
        g("1.5", 0.5)
    # a static argument: keyed by value, never the fast path
    h = fd.grad(lambda x, k: x ** k)
    assert h(2.0, 3) == 12.0 and h(2.0, 2) == 4.0 and h(2.0, 3) == 12.0
    assert h.cache_info()["traces"] == 2


def test_guards_and_cache_clear_through_the_fast_path():
    g = fd.grad(lambda x: np.sin(x) if x > 0 else x ** 2)
    assert g(0.5) == pytest.approx(np.cos(0.5), rel=1e-15)
    assert g(-0.5) == -1.0                      # the guard fails: retrace
    assert g(0.7) == pytest.approx(np.cos(0.7), rel=1e-15)
    info = g.cache_info()
    assert info["traces"] == 2 and info["retraces"] == 1 and info["replays"] == 1
    g.cache_clear()
    assert g(0.5) == pytest.approx(np.cos(0.5), rel=1e-15)
    assert g.cache_info()["traces"] == 3


def test_keywords_and_jvp_still_work():
    g = fd.grad(lambda x, scale=1.0: scale * x ** 2)
    assert g(3.0) == 6.0 and g(3.0, scale=2.0) == 12.0 and g(3.0) == 6.0
    for _ in range(2):
        assert fd.jvp(f, (1.5, 0.5), (1.0, 0.0))[1] == pytest.approx(df(1.5, 0.5)[0],
                                                                      rel=1e-14)
