"""fastad.minimize(method="ipopt") (docs/sparse.md): Hock-Schittkowski 71 and 35 reach
their known optima, with the iterations IPOPT takes given hand-written exact derivatives;
the structures handed to IPOPT are the true ones.  Skipped when cyipopt is absent."""
import numpy as np
import pytest

import fastad as fd

cyipopt = pytest.importorskip("cyipopt")
so = pytest.importorskip("scipy.optimize")


# Hock-Schittkowski 71: f* = 17.0140173 at (1, 4.7429994, 3.8211503, 1.3794082)
def hs71_f(x):
    return x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]


def hs71_c(x):
    return np.stack([x[0] * x[1] * x[2] * x[3], x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2])


HS71_X = [1.0, 4.7429994, 3.8211503, 1.3794082]


class _HS71:
    """IPOPT's own tutorial problem with hand-written derivatives (the reference)."""

    def objective(self, x):
        return hs71_f(x)

    def gradient(self, x):
        return np.array([x[0] * x[3] + x[3] * (x[0] + x[1] + x[2]), x[0] * x[3],
                         x[0] * x[3] + 1.0, x[0] * (x[0] + x[1] + x[2])])

    def constraints(self, x):
        return hs71_c(x)

    def jacobian(self, x):
        return np.concatenate([np.prod(x) / x, 2 * x])

    def hessianstructure(self):
        return np.nonzero(np.tril(np.ones((4, 4))))

    def hessian(self, x, lam, s):
        H = s * np.array([[2 * x[3], 0, 0, 0], [x[3], 0, 0, 0], [x[3], 0, 0, 0],
                          [2 * x[0] + x[1] + x[2], x[0], x[0], 0]])
        H += lam[0] * np.array([[0, 0, 0, 0], [x[2] * x[3], 0, 0, 0],
                                [x[1] * x[3], x[0] * x[3], 0, 0],
                                [x[1] * x[2], x[0] * x[2], x[0] * x[1], 0]])
        H += lam[1] * 2 * np.eye(4)
        r, c = self.hessianstructure()
        return H[r, c]

    def intermediate(self, alg_mod, iter_count, *rest):
        self.nit = iter_count


def test_hs71_reaches_the_optimum_with_exact_iterations():
    x0 = np.array([1.0, 5.0, 5.0, 1.0])
    cons = fd.NonlinearConstraint(hs71_c, [25.0, 40.0], [np.inf, 40.0])
    res = fd.minimize(hs71_f, x0, method="ipopt", constraints=[cons],
                      bounds=so.Bounds(np.ones(4), np.full(4, 5.0)), tol=1e-10)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, HS71_X, atol=1e-6)
    assert abs(res.fun - 17.0140173) < 1e-6
    ref = _HS71()
    nlp = cyipopt.Problem(n=4, m=2, problem_obj=ref, lb=np.ones(4), ub=np.full(4, 5.0),
                          cl=[25.0, 40.0], cu=[2e19, 40.0])
    nlp.add_option("print_level", 0)
    nlp.add_option("sb", "yes")
    nlp.add_option("tol", 1e-10)
    xr, info = nlp.solve(x0)
    assert res.nit == ref.nit
    np.testing.assert_allclose(res.x, xr, atol=1e-9)
    np.testing.assert_allclose(res.mult_g, info["mult_g"], atol=1e-7)
    # the Lagrangian's Hessian is dense here, the constraint Jacobian too
    assert res.hess_info["nnz"] == 16 and res.jac_info["nnz"] == 8


# Hock-Schittkowski 35: f* = 1/9 at (4/3, 7/9, 4/9)
def hs35_f(x):
    return (9 - 8 * x[0] - 6 * x[1] - 4 * x[2] + 2 * x[0] ** 2 + 2 * x[1] ** 2 + x[2] ** 2
            + 2 * x[0] * x[1] + 2 * x[0] * x[2])


def test_hs35_with_a_dict_constraint_and_pytree_parameters():
    x0 = {"a": 0.5, "bc": np.full(2, 0.5)}

    def f(p):
        return hs35_f(np.concatenate([np.reshape(p["a"], (1,)), p["bc"]]))

    cons = {"type": "ineq", "fun": lambda p: 3.0 - p["a"] - p["bc"][0] - 2 * p["bc"][1]}
    res = fd.minimize(f, x0, method="ipopt", constraints=cons,
                      bounds=[(0, None)] * 3, options={"tol": 1e-12})
    assert res.success, res.message
    assert abs(res.x["a"] - 4 / 3) < 1e-7
    np.testing.assert_allclose(res.x["bc"], [7 / 9, 4 / 9], atol=1e-7)
    assert abs(res.fun - 1 / 9) < 1e-8       # within IPOPT's constraint tolerance
    # the Hessian's lower triangle: (0,0) (1,0) (1,1) (2,0) (2,2)
    assert res.hess_info["nnz"] == 7


def test_unconstrained_sparse_problem_uses_the_colouring():
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    res = fd.minimize(rosen, np.full(200, -1.2), method="ipopt", options={"maxiter": 500})
    assert res.success, res.message
    np.testing.assert_allclose(res.x, np.ones(200), atol=1e-6)
    assert res.hess_info["colours"] == 3 and res.jac_info is None


def test_ipopt_refuses_what_it_cannot_use():
    with pytest.raises(TypeError, match="does not take hess"):
        fd.minimize(hs35_f, np.zeros(3), method="ipopt", hess=lambda x: np.eye(3))
    c = so.NonlinearConstraint(hs71_c, 25.0, 40.0, jac=lambda x: np.zeros((2, 4)))
    with pytest.raises(TypeError, match="own jac"):
        fd.minimize(hs71_f, np.ones(4), method="ipopt", constraints=[c])
    with pytest.raises(ValueError, match="lb > ub"):
        fd.minimize(hs71_f, np.ones(4), method="ipopt",
                    constraints=[fd.NonlinearConstraint(hs71_c, 41.0, 40.0)])


def test_a_new_tape_maps_into_the_declared_structure_or_raises():
    """A branch taken differently gives a new tape and pattern: values inside the structure
    declared at x0 are mapped into it, a nonzero outside it is refused."""
    from fastad.ipopt import _Structure
    declared = (np.array([0, 2, 3]), np.array([0, 1, 1], dtype=np.int32))   # (0,0) (0,1) (1,1)
    s = _Structure(declared, (2, 2), False, "constraint Jacobian")
    np.testing.assert_array_equal(s.values(declared, np.array([1.0, 2.0, 3.0])), [1, 2, 3])
    narrower = (np.array([0, 1, 2]), np.array([1, 1], dtype=np.int32))       # (0,1) (1,1)
    np.testing.assert_array_equal(s.values(narrower, np.array([5.0, 7.0])), [0, 5, 7])
    wider = (np.array([0, 2, 4]), np.array([0, 1, 0, 1], dtype=np.int32))
    with pytest.raises(RuntimeError, match="outside the sparsity structure"):
        s.values(wider, np.array([1.0, 2.0, 4.0, 3.0]))
    # a Hessian: only the lower triangle is declared and compared
    h = _Structure(wider, (2, 2), True, "Hessian of the Lagrangian")
    assert h.rows.tolist() == [0, 1, 1] and h.cols.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(h.values(declared, np.array([1.0, 2.0, 3.0])), [1, 0, 3])
