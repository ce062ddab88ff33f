"""The memory of batch results kept for reuse (docs/scale.md, "Threads").

A big result's buffer goes back to a pool when the last array using it goes, and a later
batch writes into it: these tests check that results of different calls never share
memory while both are alive, that a reused buffer holds exactly the new results (closed
forms; the reused buffer first holds the old ones, so a row left unwritten would show),
and the pool's bounds.  The threshold KEPT_MIN_BYTES is lowered so small batches take the
pool's path.  Tolerances as in test_vmap.py: a few ulp from closed forms.
"""
import gc

import numpy as np
import pytest

import fastad as fd
from fastad import _batch, batching
from reference import EPS, rosen_grad, rosen_loop

RTOL = 64 * EPS
RNG = np.random.default_rng(11)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * max(1.0, np.abs(b).max()))


def address(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def pooled(monkeypatch):
    """Every result takes the pool's path; the pool starts and ends empty."""
    batching.release_buffers()
    monkeypatch.setattr(_batch, "KEPT_MIN_BYTES", 0)
    yield
    batching.release_buffers()


def branchy(x):
    if x[0] > 0:
        return x[0] ** 2 * x[1]
    return np.sin(x[0]) * x[1]


def branchy_grad(x):
    if x[0] > 0:
        return np.array([2 * x[0] * x[1], x[0] ** 2])
    return np.array([np.cos(x[0]) * x[1], np.sin(x[0])])


def test_live_results_never_share_and_a_dropped_one_is_reused(pooled):
    g = fd.vmap(fd.grad(rosen_loop))
    X1, X2, X3 = (RNG.normal(size=(300, 6)) for _ in range(3))
    G1 = g(X1)
    G2 = g(X2)                                   # G1 alive: a buffer of its own
    assert not np.shares_memory(G1, G2)
    first = address(G1)
    del G1
    gc.collect()
    G3 = g(X3)                                   # G1's buffer, now free, is reused
    assert address(G3) == first
    close(G2, np.array([rosen_grad(x) for x in X2]))
    close(G3, np.array([rosen_grad(x) for x in X3]))


def test_a_view_keeps_its_buffer(pooled):
    g = fd.vmap(fd.grad(rosen_loop))
    X = RNG.normal(size=(200, 5))
    G = g(X)
    tail = G[150:]                               # the view keeps the whole buffer
    kept = tail.copy()
    del G
    H = g(RNG.normal(size=(200, 5)) + 3.0)
    assert not np.shares_memory(H, tail)
    assert np.array_equal(tail, kept)


def test_reused_buffer_holds_every_row_of_a_branchy_batch(pooled):
    # rows that fail the first tape's guards are written later by another tape: a row
    # left out would keep the previous batch's value, which differs from the closed form
    g = fd.vmap(fd.grad(branchy))
    X = RNG.normal(size=(500, 2))
    old = g(X + 10.0)
    where = address(old)
    del old
    G = g(X)
    assert address(G) == where
    close(G, np.array([branchy_grad(x) for x in X]))


def test_fortran_ordered_results_and_shapes(pooled):
    # scalar outputs (value_and_grad of two scalar arguments) come as one column each
    def f(x1, x2):
        return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)
    x1, x2 = RNG.normal(size=400), RNG.normal(size=400)
    vg = fd.vmap(fd.value_and_grad(f, argnums=(0, 1)))
    val, (g1, g2) = vg(x1, x2)
    del val, g1, g2
    val, (g1, g2) = vg(x1, x2)
    e = np.exp(x1 * x2)
    close(val, x1 * x2 + e - np.sin(x2))
    close(g1, x2 + x2 * e)
    close(g2, x1 + x1 * e - np.cos(x2))
    assert val.shape == g1.shape == (400,)


def test_pool_bounds_and_release(pooled, monkeypatch):
    g = fd.vmap(fd.grad(rosen_loop))
    Xs = [RNG.normal(size=(100 + 10 * k, 4)) for k in range(3)]
    results = [g(X) for X in Xs]
    sizes = [r.nbytes for r in results]
    del results
    gc.collect()
    assert batching.release_buffers() >= sum(sorted(sizes)[-2:])   # two kept, at most
    assert _batch.release_buffers() == 0
    monkeypatch.setattr(_batch, "KEPT_MAX_BYTES", 1000)
    G = g(Xs[0])                                  # 3200 bytes: more than the pool may keep
    del G
    assert _batch.release_buffers() == 0


def test_result_array_checks_its_size():
    with pytest.raises(ValueError, match="too large"):
        _batch.result_array(1 << 40, 1 << 30)
    a = _batch.result_array(3, 0)
    assert a.shape == (3, 0)
