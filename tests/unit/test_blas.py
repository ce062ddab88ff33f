"""MATMUL records through BLAS (docs/design.md, "BLAS"): values, both adjoints and tangents
of products large enough for dgemm, against numpy's closed forms, for non-square shapes
(a transposition mixed up in the row-major/column-major mapping would show)."""
import numpy as np
import pytest

import fastad as fd

SHAPES = [(37, 23, 19), (64, 64, 1), (1, 80, 90), (130, 3, 40)]


def _ops(m, k, p, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(m, k)), rng.normal(size=(k, p)), rng.normal(size=(m, p)))


@pytest.mark.parametrize("m,k,p", SHAPES)
def test_matmul_value_and_both_adjoints(m, k, p):
    A, B, W = _ops(m, k, p)
    f = lambda A, B: np.sum(W * (A @ B))
    for _ in range(2):                   # the trace, then a replay
        v, (gA, gB) = fd.value_and_grad(f, argnums=(0, 1))(A, B)
        np.testing.assert_allclose(v, np.sum(W * (A @ B)), rtol=1e-12)
        np.testing.assert_allclose(gA, W @ B.T, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gB, A.T @ W, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m,k,p", SHAPES)
def test_matmul_tangent(m, k, p):
    A, B, W = _ops(m, k, p, seed=1)
    U, V, _ = _ops(m, k, p, seed=2)
    f = lambda A, B: np.sum(W * (A @ B))
    _, t = fd.jvp(f, (A, B), (U, V))
    np.testing.assert_allclose(t, np.sum(W * (U @ B + A @ V)), rtol=1e-11)


def test_matmul_hvp_through_recorded_adjoint():
    # the second derivative goes through the recorded (emitted) adjoints of the products
    A, B, W = _ops(30, 20, 12, seed=3)
    V = np.random.default_rng(4).normal(size=A.shape)
    f = lambda A: np.sum((A @ B) ** 2 * W)
    # H v = 2 ((V B) * W) B^T
    np.testing.assert_allclose(fd.hvp(f)(A, V), 2 * ((V @ B) * W) @ B.T, rtol=1e-11, atol=1e-11)
