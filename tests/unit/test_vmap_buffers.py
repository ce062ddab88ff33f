"""The memory of batch results kept for reuse (docs/scale.md, "Threads").

A big result's buffer goes back to a pool when the last array using it goes, and a later
batch writes into it: these tests check that results of different calls never share
memory while both are alive, that a reused buffer holds exactly the new results (closed
forms; the reused buffer first holds the old ones, so a row left unwritten would show),
and the pool's bounds.  The size threshold is lowered (set_kept_limits) so small batches
take the pool's path.  Tolerances as in test_vmap.py: a few ulp from closed forms.
"""
import copy
import gc
import pickle

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
def pooled():
    """Every result takes the pool's path; the pool starts and ends empty."""
    batching.release_buffers()
    _batch.set_kept_limits(min_bytes=0)
    yield
    _batch.set_kept_limits()
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
    G3 = fd.vmap(fd.grad(rosen_loop), workers=2)(X3)   # G1's buffer, now free, is reused
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
    where = address(val)
    del val, g1, g2
    val, (g1, g2) = vg(x1, x2)
    assert address(val) == where                 # the same buffer, written column-wise
    e = np.exp(x1 * x2)
    close(val, x1 * x2 + e - np.sin(x2))
    close(g1, x2 + x2 * e)
    close(g2, x1 + x1 * e - np.cos(x2))
    assert val.shape == g1.shape == (400,)


def test_pool_keeps_the_two_most_recent_within_its_bytes(pooled):
    g = fd.vmap(fd.grad(rosen_loop))
    a, b, c = (g(RNG.normal(size=(100 + 10 * k, 4))) for k in range(3))
    sizes = [a.nbytes, b.nbytes, c.nbytes]
    del a
    del b
    del c                                        # freed in this order: b and c are kept
    assert _batch.kept_sizes() == sizes[1:]
    _batch.set_kept_limits(min_bytes=0, max_bytes=sizes[2])
    assert _batch.kept_sizes() == sizes[2:]      # the oldest dropped to fit the bytes
    big = g(RNG.normal(size=(2000, 4)))          # more than the pool may keep in all
    del big
    assert _batch.kept_sizes() == sizes[2:]
    assert batching.release_buffers() == sizes[2]
    assert _batch.kept_sizes() == []


def test_a_full_pool_of_small_buffers_gives_way_to_big_ones(pooled):
    g = fd.vmap(fd.grad(rosen_loop))
    small = [g(RNG.normal(size=(50, 4))) for _ in range(2)]
    del small                                    # the pool: two small buffers
    X = RNG.normal(size=(3000, 4))
    G = g(X)
    where = address(G)
    del G                                        # the oldest small one gives way
    H = g(X)
    assert address(H) == where
    close(H, np.array([rosen_grad(x) for x in X]))


def test_pool_changed_by_python_code_meanwhile(pooled):
    # result_array runs Python code (a garbage collection may start in it, running
    # finalizers, callbacks or another thread): here a gc callback takes one kept buffer
    # and lets a small result die mid-call.  The result must never land on a buffer too
    # small for it, nor on one another array uses.
    for threshold in range(1, 12):
        batching.release_buffers()
        held = {"tiny": None}
        small, large, held["tiny"] = (_batch.result_array(r, 10) for r in (10, 100, 6))
        where_tiny = address(held["tiny"])
        del small, large                          # kept: small, large

        def meddle(phase, info, held=held):
            if phase == "start" and "other" not in held:
                held["other"] = _batch.result_array(10, 10)     # takes `small`
                held.pop("tiny")                  # kept: large, tiny
        old = gc.get_threshold()
        gc.collect()
        gc.callbacks.append(meddle)
        gc.set_threshold(threshold)
        try:
            R = _batch.result_array(100, 10)      # needs `large` (1000 doubles)
        finally:
            gc.set_threshold(*old)
            gc.callbacks.remove(meddle)
        assert address(R) != where_tiny
        if "other" in held:
            assert not np.shares_memory(R, held["other"])
        R[...] = 1.0                              # the whole of it is ours to write
        del R


def test_a_lease_cannot_be_copied():
    # a copy of the object that holds a result's buffer would give the buffer back to
    # the pool while the result still uses it
    _batch.set_kept_limits(min_bytes=0)
    try:
        G = fd.vmap(fd.grad(rosen_loop))(RNG.normal(size=(40, 3)))
        lease = G.base
        while isinstance(lease, np.ndarray):
            lease = lease.base
        assert type(lease).__name__ == "_Lease"
        with pytest.raises(TypeError, match="cannot be copied"):
            copy.copy(lease)
        with pytest.raises(TypeError, match="cannot be copied"):
            pickle.dumps(lease)
        assert np.array_equal(pickle.loads(pickle.dumps(G)), G)   # the result pickles
    finally:
        _batch.set_kept_limits()
        batching.release_buffers()


def test_result_array_checks_its_arguments():
    with pytest.raises(ValueError, match="too large"):
        _batch.result_array(1 << 40, 1 << 30)
    with pytest.raises(ValueError, match="internal error"):
        _batch.result_array(-1, 3)
    with pytest.raises(ValueError, match="internal error"):
        _batch.result_array(3, 3, "K")
    with pytest.raises(ValueError, match=">= 0"):
        _batch.set_kept_limits(max_count=-1)
    assert _batch.result_array(3, 0).shape == (3, 0)
