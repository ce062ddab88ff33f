"""Sparse derivatives (docs/sparse.md): fastad's colour sweeps against one gradient and
against CasADi's sparse `hessian` / `jacobian` Functions on the same formulation.

    python benchmarks/sparse_table.py          # runs this file, prints the ratio table

Groups (each row is timed as a user calls it; CasADi's Functions are built once, outside
the timing, and called with a numpy vector, returning a sparse DM):
  sparse-hessian      chained Rosenbrock, n = 10^5: fastad gradient, fastad sparse Hessian,
                      CasADi sparse Hessian
  sparse-jacobian     banded residual (bandwidth 5), n = 10^5: fastad gradient of
                      0.5 |r|^2, fastad sparse Jacobian, CasADi sparse Jacobian
  sparse-pattern      pattern + colouring of the banded residual at n = 10^6 (once per tape)
  sparse-ocp          optimal control example, N = 1000: the derivatives trust-constr asks
                      for per iteration (objective gradient and sparse Hessian, constraint
                      sparse Jacobian and Lagrangian Hessian), fastad against CasADi
"""
import os
import sys

import numpy as np
import pytest

import fastad as fd
from fastad import sparse, _sparsity

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

N = int(os.environ.get("BENCH_SPARSE_N", "100000"))
N_PATTERN = int(os.environ.get("BENCH_SPARSE_PATTERN_N", "1000000"))
N_OCP = int(os.environ.get("BENCH_SPARSE_OCP_N", "1000"))


def rosen(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def banded(x):
    """r_i = (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 0.5 sin(x_{i-2}) + x_{i+2}^2 + 1."""
    n = x.shape[0]
    xp = np.concatenate([np.zeros(2), x, np.zeros(2)])
    return ((3.0 - 2.0 * x) * x - xp[1:n + 1] - 2.0 * xp[3:n + 3] + 0.5 * np.sin(xp[0:n])
            + xp[4:n + 4] ** 2 + 1.0)


def casadi_banded(x, ca):
    n = x.shape[0]
    z = ca.DM.zeros(2)
    xp = ca.vertcat(z, x, z)
    return ((3.0 - 2.0 * x) * x - xp[1:n + 1] - 2.0 * xp[3:n + 3] + 0.5 * ca.sin(xp[0:n])
            + xp[4:n + 4] ** 2 + 1.0)


def info(benchmark, contender, **extra):
    benchmark.extra_info.update({"sparse_contender": contender, **extra})


X = np.random.default_rng(0).uniform(-1, 1, N)


# ------------------------------------------------------------------------- Hessian
@pytest.mark.benchmark(group="sparse-hessian")
def test_hessian_gradient(benchmark):
    g = fd.grad(rosen)
    g(X)
    info(benchmark, "fastad gradient")
    benchmark(g, X)


@pytest.mark.benchmark(group="sparse-hessian")
def test_hessian_fastad(benchmark):
    H = fd.hessian(rosen, sparse=True)
    H(X)
    sparse.wait(H)                  # the compiled colour lanes, as after a few calls
    ref = H(X)
    d = ref.diagonal()
    np.testing.assert_allclose(d[1:-1], 1200 * X[1:-1] ** 2 - 400 * X[2:] + 202, rtol=1e-10)
    i = H.info()
    info(benchmark, "fastad sparse hessian", colours=i["colours"], nnz=i["nnz"],
         compiled="compiled colour lanes" in i["direction"])
    benchmark(H, X)


@pytest.mark.benchmark(group="sparse-hessian")
def test_hessian_casadi(benchmark):
    ca = pytest.importorskip("casadi")
    x = ca.SX.sym("x", N)
    f = ca.sum1(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    H, _ = ca.hessian(f, x)
    F = ca.Function("H", [x], [H])
    ours = fd.hessian(rosen, sparse=True)(X)
    theirs = F(X).sparse()
    assert abs(ours - theirs).max() < 1e-8 * abs(theirs).max()
    info(benchmark, "casadi sparse hessian", nnz=int(H.nnz()))
    benchmark(F, X)


# ------------------------------------------------------------------------ Jacobian
@pytest.mark.benchmark(group="sparse-jacobian")
def test_jacobian_gradient(benchmark):
    g = fd.grad(lambda x: 0.5 * np.sum(banded(x) ** 2))
    g(X)
    info(benchmark, "fastad gradient")
    benchmark(g, X)


@pytest.mark.benchmark(group="sparse-jacobian")
def test_jacobian_fastad(benchmark):
    J = fd.jacobian(banded, sparse=True)
    J(X)
    sparse.wait(J)                  # the compiled colour lanes, as after a few calls
    J(X)
    i = J.info()
    info(benchmark, "fastad sparse jacobian", colours=i["colours"], nnz=i["nnz"],
         compiled="compiled colour lanes" in i["direction"])
    benchmark(J, X)


@pytest.mark.benchmark(group="sparse-jacobian")
def test_jacobian_casadi(benchmark):
    ca = pytest.importorskip("casadi")
    x = ca.SX.sym("x", N)
    F = ca.Function("J", [x], [ca.jacobian(casadi_banded(x, ca), x)])
    ours = fd.jacobian(banded, sparse=True)(X)
    theirs = F(X).sparse()
    assert abs(ours - theirs).max() < 1e-10 * abs(theirs).max()
    info(benchmark, "casadi sparse jacobian")
    benchmark(F, X)


# --------------------------------------------------------- pattern and colouring
@pytest.mark.benchmark(group="sparse-pattern")
def test_pattern_and_colouring(benchmark):
    x = np.random.default_rng(1).uniform(-1, 1, N_PATTERN)
    J = sparse.SparseJacobian(banded)
    e = J.prog.entry_for((x,))          # the trace is not part of this measure
    kind, jm, hm, names = sparse.op_classes()

    def pattern_and_colouring():
        p = _sparsity.jacobian_pattern(e.tape, e.col, e.ncols, e.outs, kind, jm, names,
                                       sparse.MAX_ENTRIES)
        return sparse._plan_jacobian(p, len(e.outs), e.ncols, "fwd")

    plan = pattern_and_colouring()
    assert plan["ncolours"] == 5
    info(benchmark, "fastad pattern+colouring", n=N_PATTERN)
    benchmark.pedantic(pattern_and_colouring, rounds=5, iterations=1)


# --------------------------------------------------------------- optimal control
def _ocp_point():
    import optimal_control as oc
    rng = np.random.default_rng(2)
    n = N_OCP
    z = rng.uniform(-0.5, 0.5, 3 * n + 2)
    v = rng.standard_normal(2 * n + 4)
    return oc, n, z, v


@pytest.mark.benchmark(group="sparse-ocp")
def test_ocp_fastad(benchmark):
    oc, n, z, v = _ocp_point()
    vg = fd.value_and_grad(lambda z: oc.cost(z, n))
    Hf = fd.hessian(lambda z: oc.cost(z, n), sparse=True)
    Jc = fd.jacobian(lambda z: oc.dynamics(z, n), sparse=True)
    Hc = fd.hessian(lambda z, v: np.sum(v * oc.dynamics(z, n)), sparse=True)

    def per_iteration():
        return vg(z), Hf(z), Jc(z), Hc(z, v)
    per_iteration()
    info(benchmark, "fastad", colours_jac=Jc.info()["colours"], colours_hess=Hc.info()["colours"])
    benchmark(per_iteration)


@pytest.mark.benchmark(group="sparse-ocp")
def test_ocp_casadi(benchmark):
    ca = pytest.importorskip("casadi")
    oc, n, z, v = _ocp_point()
    Z = ca.SX.sym("z", 3 * n + 2)
    lam = ca.SX.sym("v", 2 * n + 4)
    x1, x2, u = Z[:n + 1], Z[n + 1:2 * n + 2], Z[2 * n + 2:]
    h = oc.T / n
    defects, f = [], 0
    for k in range(n):
        f1, f2 = oc.rhs(x1[k], x2[k], u[k])
        g1, g2 = oc.rhs(x1[k + 1], x2[k + 1], u[k])
        defects += [x1[k + 1] - x1[k] - 0.5 * h * (f1 + g1),
                    x2[k + 1] - x2[k] - 0.5 * h * (f2 + g2)]
        f = f + 0.5 * h * (x1[k] ** 2 + x2[k] ** 2 + x1[k + 1] ** 2 + x2[k + 1] ** 2) \
            + h * u[k] ** 2
    c = ca.vertcat(*defects, x1[0], x2[0] - 1.0, x1[n], x2[n])
    Hf, g = ca.hessian(f, Z)
    Hc, _ = ca.hessian(ca.dot(lam, c), Z)
    F = ca.Function("d", [Z, lam], [f, g, Hf, ca.jacobian(c, Z), Hc])
    out = F(z, v)
    Jc = fd.jacobian(lambda z: oc.dynamics(z, n), sparse=True)(z)
    assert abs(Jc - out[3].sparse()).max() < 1e-10
    info(benchmark, "casadi")
    benchmark(F, z, v)
