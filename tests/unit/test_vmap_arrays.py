"""fastad.vmap of vectorized programs (tapes of array records): the batch-major sweep of
csrc/batch.h over elementwise array records, sums, gathers and broadcast operands,
checked against closed forms, against a Python loop of single calls and against the
lane-by-lane sweep; threads bit for bit (docs/scale.md).

Tolerances: as in test_vmap.py, a few correctly rounded operations and libm or
numpy-SIMD exp/sin/cos per quantity; RTOL = 64 eps leaves room for SIMD loops that
differ from libm in the last bits.  The batch-major sums add in the single call's
order, so a sum of n terms adds no error of its own.
"""
import numpy as np

import fastad as fd
from fastad import _batch
from reference import EPS

RTOL = 64 * EPS
RNG = np.random.default_rng(11)


def close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol,
                               atol=rtol * max(1.0, np.nanmax(np.abs(b), initial=1.0)))


def rosen_vec(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_vec_grad(X):          # closed form, row by row
    G = np.zeros_like(X)
    a, b = X[:, :-1], X[:, 1:]
    G[:, :-1] += -400.0 * a * (b - a ** 2) - 2.0 * (1.0 - a)
    G[:, 1:] += 200.0 * (b - a ** 2)
    return G


def batch_major_used(batched):
    plans = [hit[1] for hit in batched.plans.values()]
    assert plans, "no plan was made: the batch did not go through C"
    return all(p.batch_major for p in plans)


def test_vectorized_rosenbrock_batch_major_matches_closed_form_and_single_calls():
    X = RNG.uniform(-2, 2, size=(500, 30))
    g = fd.value_and_grad(rosen_vec)
    v = fd.vmap(g)
    vals, G = v(X)
    assert batch_major_used(v)
    close(G, rosen_vec_grad(X), rtol=1e-13)
    close(vals, [rosen_vec(x) for x in X], rtol=1e-13)
    singles = [g(x) for x in X[:50]]
    close(vals[:50], [s[0] for s in singles], rtol=1e-14)
    close(G[:50], [s[1] for s in singles], rtol=1e-14)


def test_variable_broadcast_operand_is_split_per_element():
    # x[0] * x[1:]: a variable scalar against a range (one record per element, each over
    # the lanes); 2.0 * exp(x): a constant broadcast (one record over the whole block)
    def f(x):
        return np.sum(x[0] * x[1:] ** 2) + np.sum(2.0 * np.exp(x))
    X = RNG.normal(size=(300, 6))
    v = fd.vmap(fd.grad(f))
    G = v(X)
    assert batch_major_used(v)
    ref = 2.0 * np.exp(X)
    ref[:, 0] += np.sum(X[:, 1:] ** 2, axis=1)
    ref[:, 1:] += 2.0 * X[:, :1] * X[:, 1:]
    close(G, ref)


def test_gather_and_segmented_sum():
    # fancy indexing (GATHER) and a sum per row of a reshaped block (SUM with m > 1)
    idx = np.array([3, 0, 2, 2, 5])

    def f(x):
        y = x[idx] * x[:5]
        rows = np.sum(x.reshape(2, 3) ** 2, axis=1)
        return np.sum(y) + rows[0] * rows[1]
    X = RNG.normal(size=(200, 6))
    v = fd.vmap(fd.value_and_grad(f))
    vals, G = v(X)
    assert batch_major_used(v)
    r0, r1 = np.sum(X[:, :3] ** 2, axis=1), np.sum(X[:, 3:] ** 2, axis=1)
    close(vals, np.sum(X[:, idx] * X[:, :5], axis=1) + r0 * r1)
    ref = np.zeros_like(X)
    for k, i in enumerate(idx):
        ref[:, i] += X[:, k]
        ref[:, k] += X[:, i]
    ref[:, :3] += 2 * X[:, :3] * r1[:, None]
    ref[:, 3:] += 2 * X[:, 3:] * r0[:, None]
    close(G, ref)


def test_jacfwd_and_hessian_of_array_programs():
    def f(x):
        return np.sin(x) * np.sum(x)
    X = RNG.normal(size=(100, 4))
    J = fd.vmap(fd.jacfwd(f))(X)
    s = np.sum(X, axis=1)
    ref = np.sin(X)[:, :, None] * np.ones((1, 1, 4)) \
        + np.einsum("ni,ij->nij", np.cos(X) * s[:, None], np.eye(4))
    close(J, ref)
    H = fd.vmap(fd.hessian(rosen_vec))(X)
    Hs = [fd.hessian(rosen_vec)(x) for x in X[:20]]
    close(H[:20], Hs, rtol=1e-13)


def test_array_tape_threads_bit_identical_and_lane_by_lane_agrees():
    X = RNG.uniform(-2, 2, size=(3000, 40))
    g = fd.value_and_grad(rosen_vec)
    one = fd.vmap(g)(X)
    two = fd.vmap(g, workers=2)(X)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    _batch.set_block_limits(16, 16, 1)      # no block fits: lane by lane
    try:
        v = fd.vmap(g, workers=2)
        lanes = v(X)
    finally:
        _batch.set_block_limits()
    close(lanes[0], one[0], rtol=1e-14)
    close(lanes[1], one[1], rtol=1e-14)


def test_branches_of_an_array_program_stay_exact_per_point():
    def f(x):
        s = np.sum(x ** 2)
        if s > 2.0:
            return np.sqrt(s)
        return np.sum(np.cos(x))
    X = RNG.normal(size=(400, 3))
    g = fd.grad(f)
    v = fd.vmap(g)
    G = v(X)
    assert batch_major_used(v)
    s = np.sum(X ** 2, axis=1, keepdims=True)
    close(G, np.where(s > 2.0, X / np.sqrt(s), -np.sin(X)))
    assert g.cache_info()["traces"] == 2


def test_unsupported_records_fall_back_to_lane_by_lane():
    A = RNG.normal(size=(3, 3))

    def f(x):
        return np.sum(np.cumsum(A @ x) ** 2)
    X = RNG.normal(size=(50, 3))
    v = fd.vmap(fd.grad(f))
    G = v(X)
    assert not batch_major_used(v)           # MATMUL and CUMSUM: lane by lane
    L = np.tril(np.ones((3, 3))) @ A
    close(G, 2 * (X @ L.T) @ L)


def test_points_read_in_place_are_left_alone_and_not_reused():
    # an (N, n) float64 batch is read in place (no copy); a later batch whose inputs are
    # copied (two arguments) must not write into it
    from fastad import batching

    def f(x, c):
        return np.sum(c * x ** 2)
    X = RNG.normal(size=(400, 5))
    X0 = X.copy()
    c = 1.5
    g = fd.vmap(fd.grad(f), in_axes=(0, None))
    assert batching._in_place([X, c], [True, False], [(1, 0, 5), (0, -1, 0)], 400, 5) is not None
    G1 = fd.vmap(fd.grad(lambda x: np.sum(np.sin(x))))(X)
    G2 = g(X, c)                                  # c is static: X still read in place
    G3 = fd.vmap(fd.grad(f, argnums=(0, 1)))(X[:, ::-1], np.full(400, 2.0))  # copied
    np.testing.assert_array_equal(X, X0)
    close(G1, np.cos(X))
    close(G2, 2 * c * X)
    close(G3[0], 4.0 * X[:, ::-1])
    close(G3[1], np.sum(X ** 2, axis=1))
    Xf = np.asfortranarray(X)                      # not C-contiguous: copied, same result
    assert batching._in_place([Xf], [True], [(1, 0, 5)], 400, 5) is None
    close(fd.vmap(fd.grad(lambda x: np.sum(np.sin(x))))(Xf), G1, rtol=0)
