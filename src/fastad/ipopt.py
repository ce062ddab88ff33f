"""IPOPT through cyipopt, with fastad's exact sparse derivatives (docs/sparse.md).

    res = fd.minimize(f, x0, method="ipopt", constraints=[fd.NonlinearConstraint(c, lb, ub)],
                      bounds=Bounds(lo, hi), options={"tol": 1e-10})

IPOPT (an interior-point method for large sparse nonlinear programs) asks for the sparse
constraint Jacobian and the sparse Hessian of the Lagrangian, structures fixed up front.
fastad gives both exactly from tapes:

* the objective and its gradient: `fastad.value_and_grad` (one replayed tape);
* the constraints: all of them stacked into one function g(x); its Jacobian is a
  `SparseJacobian` (pattern from the tape, distance-2 colouring, a few sweeps);
* the Lagrangian sigma f(x) + lambda . g(x), with sigma and lambda as data arguments (tape
  inputs without a column): one `SparseHessian` (nonlinear-interaction pattern, star
  colouring, forward over reverse sweeps); IPOPT gets its lower triangle.

The structures are the patterns at x0.  A branch taken differently later makes a new tape
with its own pattern; its values are mapped into the declared structure, and a nonzero
outside it raises (IPOPT cannot change a structure mid-solve).

cyipopt is an optional dependency (the ``ipopt`` extra); it builds against IPOPT's
library: ``apt-get install -y coinor-libipopt-dev liblapack-dev libblas-dev`` on Debian,
then ``pip install cyipopt``.
"""
import numpy as np

__all__ = ["minimize_ipopt"]

#: IPOPT's bound for "no bound" (its nlp_lower/upper_bound_inf default is 1e19)
_INF = 2e19


def _cyipopt():
    try:
        import cyipopt
    except ImportError as e:
        raise ImportError(
            "fastad.minimize(method='ipopt') needs cyipopt (an optional dependency: pip "
            "install 'fastad[ipopt]'). It builds against IPOPT's library, on Debian: "
            "apt-get install -y coinor-libipopt-dev liblapack-dev libblas-dev; then pip "
            "install cyipopt") from e
    return cyipopt


def _constraint_list(constraints, layout, so):
    """[(function of the flat vector, lb, ub, name)] from fastad's or SciPy's constraints."""
    from fastad.constraints import NonlinearConstraint
    if constraints is None:
        return []
    items = [constraints] if isinstance(constraints, dict) or not isinstance(
        constraints, (list, tuple)) else list(constraints)
    out = []
    for k, c in enumerate(items):
        name = f"#{k}"
        if isinstance(c, dict):
            kind = c.get("type")
            if kind not in ("eq", "ineq") or "fun" not in c:
                raise ValueError(f"fastad.minimize: constraint {name} must be a dict with "
                                 "'type' ('eq' or 'ineq') and 'fun'")
            if c.get("jac") is not None:
                raise TypeError(f"fastad.minimize(method='ipopt'): constraint {name} has a "
                                "'jac'; IPOPT gets exact sparse derivatives from fastad, "
                                "so give the function only")
            user, a = c["fun"], tuple(c.get("args", ()))
            lb, ub = 0.0, (0.0 if kind == "eq" else np.inf)
            fun = (lambda x, _u=user, _a=a: _u(layout.unflatten(x), *_a))
        elif isinstance(c, (NonlinearConstraint, so.NonlinearConstraint)):
            if isinstance(c, so.NonlinearConstraint) and (callable(c.jac) or callable(
                    getattr(c, "hess", None))):
                raise TypeError(f"fastad.minimize(method='ipopt'): constraint {name} has "
                                "its own jac or hess; IPOPT gets exact sparse derivatives "
                                "from fastad: use fastad.NonlinearConstraint(fun, lb, ub)")
            user, lb, ub = c.fun, c.lb, c.ub
            fun = (lambda x, _u=user: _u(layout.unflatten(x)))
        elif isinstance(c, so.LinearConstraint):
            A = c.A.toarray() if hasattr(c.A, "toarray") else np.asarray(c.A, dtype=float)
            A = np.atleast_2d(A)
            lb, ub = c.lb, c.ub
            fun = (lambda x, _A=A: _A @ x)
        else:
            raise TypeError(f"fastad.minimize(method='ipopt'): constraint {name} is a "
                            f"{type(c).__name__}; give fastad.NonlinearConstraint, SciPy's "
                            "NonlinearConstraint or LinearConstraint, or a dict")
        out.append((fun, lb, ub, name))
    return out


def _bounds(bounds, n):
    lo, hi = np.full(n, -_INF), np.full(n, _INF)
    if bounds is None:
        return lo, hi
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        blo, bhi = bounds.lb, bounds.ub
    else:
        pairs = list(bounds)
        if len(pairs) != n:
            raise ValueError(f"fastad.minimize: {len(pairs)} bounds for {n} parameters")
        blo = [-np.inf if p[0] is None else p[0] for p in pairs]
        bhi = [np.inf if p[1] is None else p[1] for p in pairs]
    blo = np.broadcast_to(np.asarray(blo, dtype=np.float64), (n,))
    bhi = np.broadcast_to(np.asarray(bhi, dtype=np.float64), (n,))
    if np.isnan(blo).any() or np.isnan(bhi).any() or (blo > bhi).any():
        raise ValueError("fastad.minimize: bounds must not be NaN and need lb <= ub")
    lo[:] = np.maximum(blo, -_INF)
    hi[:] = np.minimum(bhi, _INF)
    return lo, hi


def _lower(pattern):
    """Rows, columns and positions (in the CSR data) of a symmetric pattern's lower
    triangle, which is what IPOPT takes of a Hessian."""
    indptr, indices = pattern
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    keep = np.flatnonzero(rows >= indices)
    return rows[keep], indices[keep].astype(np.int64), keep


class _Structure:
    """A sparse matrix's structure as declared to IPOPT (the pattern at x0), and the map
    from a later tape's pattern into it."""

    def __init__(self, pattern, shape, lower, what):
        self.what, self.shape, self.lower = what, shape, lower
        self.pattern = pattern
        if lower:
            self.rows, self.cols, self.pick = _lower(pattern)
        else:
            indptr, indices = pattern
            self.rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            self.cols = indices.astype(np.int64)
            self.pick = None
        self._maps = {}

    def values(self, pattern, data):
        if pattern is self.pattern:
            return data if self.pick is None else data[self.pick]
        return self._mapped(pattern, data)

    def _mapped(self, pattern, data):
        import scipy.sparse as sp
        indptr, indices = pattern
        got = sp.csr_array((data, indices, indptr), shape=self.shape)
        if self.lower:
            got = sp.tril(got).tocsr()
        mask = sp.csr_array((np.ones(len(self.rows)), (self.rows, self.cols)), shape=self.shape)
        outside = got - got.multiply(mask)
        if outside.count_nonzero():
            raise RuntimeError(
                f"fastad.minimize(method='ipopt'): at this point the {self.what} has a nonzero "
                "outside the sparsity structure declared to IPOPT at x0 (a branch of the "
                "program went the other way, giving a new tape with a wider pattern). IPOPT "
                "cannot change a structure mid-solve: start from a point that takes the "
                "widest branch, or use method='trust-constr'")
        return np.asarray(got[self.rows, self.cols]).ravel()


class _Problem:
    """cyipopt's problem object: every callback a replay of a fastad tape."""

    def __init__(self, flat_fun, args, gfun, m, replay):
        import fastad as fd
        from fastad.sparse import SparseJacobian, SparseHessian
        self.args, self.m = args, m
        self.vg = fd.value_and_grad(flat_fun, replay=replay)
        self._x = None
        self.nit = 0
        self.nfev = self.njev = self.nhev = 0
        if m:
            self.J = SparseJacobian(lambda x: gfun(x) * 1.0, replay=replay)

            def lagrangian(x, lam, sigma, *a):
                return sigma * flat_fun(x, *a) + np.sum(lam * gfun(x))
        else:
            def lagrangian(x, lam, sigma, *a):
                return sigma * flat_fun(x, *a)
        self.H = SparseHessian(lagrangian, replay=replay)

    def declare(self, x0):
        n = len(x0)
        lam0 = np.zeros(max(self.m, 1))[:self.m]
        _, _, hpat = self.H.values(x0, lam0, 1.0, *self.args)
        self.hs = _Structure(hpat, (n, n), True, "Hessian of the Lagrangian")
        if self.m:
            _, _, jpat = self.J.values(x0)
            self.js = _Structure(jpat, (self.m, n), False, "constraint Jacobian")

    def _eval(self, x):
        if self._x is None or not np.array_equal(x, self._x):
            self.nfev += 1
            v, g = self.vg(x, *self.args)
            self._x, self._v, self._g = x.copy(), float(v), np.asarray(g, dtype=np.float64)

    def objective(self, x):
        self._eval(x)
        return self._v

    def gradient(self, x):
        self._eval(x)
        return self._g.copy()

    def constraints(self, x):
        if not self.m:
            return np.zeros(0)
        return self.J.value(np.ascontiguousarray(x, dtype=np.float64))

    def jacobianstructure(self):
        if not self.m:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return self.js.rows, self.js.cols

    def jacobian(self, x):
        if not self.m:
            return np.zeros(0)
        self.njev += 1
        _, data, pattern = self.J.values(np.ascontiguousarray(x, dtype=np.float64))
        return self.js.values(pattern, data)

    def hessianstructure(self):
        return self.hs.rows, self.hs.cols

    def hessian(self, x, lagrange, obj_factor):
        self.nhev += 1
        lam = np.ascontiguousarray(lagrange, dtype=np.float64)[:self.m]
        _, data, pattern = self.H.values(np.ascontiguousarray(x, dtype=np.float64), lam,
                                         float(obj_factor), *self.args)
        return self.hs.values(pattern, data)

    def intermediate(self, alg_mod, iter_count, *rest):
        self.nit = int(iter_count)
        return True


def minimize_ipopt(fun, x0, args=(), *, constraints=None, bounds=None, tol=None,
                   options=None, replay=True):
    """IPOPT on ``fun(x, *args)`` with exact sparse derivatives (what
    ``fastad.minimize(..., method="ipopt")`` calls; see the module docstring and
    docs/sparse.md).  `options` go to IPOPT's ``add_option`` (IPOPT's names, e.g.
    ``max_iter``, ``tol``, ``print_level``, ``mu_strategy``; SciPy's ``maxiter`` and
    ``disp`` are translated).  Returns a SciPy `OptimizeResult` with ``x`` (x0's
    structure), ``x_flat``, ``fun``, ``jac`` (the gradient), ``status`` and ``message``
    (IPOPT's), ``success``, ``nit``, ``nfev``/``njev``/``nhev``, and IPOPT's multipliers
    ``mult_g``, ``mult_x_L``, ``mult_x_U``; ``res.jac_info`` / ``res.hess_info`` hold the
    pattern and colouring statistics."""
    cyipopt = _cyipopt()
    from fastad.optimize import _Layout, _scipy_optimize
    from fastad.constraints import check_bounds
    so = _scipy_optimize()
    layout = _Layout(x0)
    x0f = np.ascontiguousarray(layout.x0, dtype=np.float64)
    n = len(x0f)

    if layout.plain:
        flat_fun = fun
    else:
        def flat_fun(x, *a):
            return fun(layout.unflatten(x), *a)

    cons = _constraint_list(constraints, layout, so)
    sizes, lbs, ubs = [], [], []
    for cfun, lb, ub, name in cons:
        out = np.asarray(cfun(x0f), dtype=np.float64)
        if out.ndim > 1:
            raise ValueError(f"fastad.minimize: constraint {name} must return a float or a "
                             f"1-d array, got shape {out.shape}")
        m_k = int(out.size)
        lo, hi = check_bounds(lb, ub, m_k, name)
        sizes.append(m_k)
        lbs.append(np.maximum(lo, -_INF))
        ubs.append(np.minimum(hi, _INF))
    m = sum(sizes)
    funs = [c[0] for c in cons]

    def gfun(x):
        parts = [np.reshape(f(x), (-1,)) for f in funs]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    xl, xu = _bounds(bounds, n)
    prob = _Problem(flat_fun, tuple(args), gfun, m, replay)
    prob.declare(x0f)
    cl = np.concatenate(lbs) if m else np.zeros(0)
    cu = np.concatenate(ubs) if m else np.zeros(0)
    nlp = cyipopt.Problem(n=n, m=m, problem_obj=prob, lb=xl, ub=xu, cl=cl, cu=cu)
    opts = {"print_level": 0, "sb": "yes"}
    for key, value in dict(options or {}).items():
        if key == "maxiter":
            key = "max_iter"
        elif key == "disp":
            key, value = "print_level", (5 if value else 0)
        opts[key] = value
    if tol is not None:
        opts["tol"] = float(tol)
    for key, value in opts.items():
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"fastad.minimize(method='ipopt'): IPOPT option {key!r} takes "
                            "an int, a float or a string ('yes'/'no'), not a bool")
        nlp.add_option(key, int(value) if isinstance(value, (int, np.integer)) else value)
    x, info = nlp.solve(x0f)
    msg = info["status_msg"]
    res = so.OptimizeResult(
        x=layout.restore(np.ascontiguousarray(x, dtype=np.float64)),
        x_flat=np.ascontiguousarray(x, dtype=np.float64), fun=float(info["obj_val"]),
        jac=prob.gradient(np.ascontiguousarray(x, dtype=np.float64)),
        status=int(info["status"]), success=int(info["status"]) in (0, 1),
        message=msg.decode() if isinstance(msg, bytes) else str(msg),
        nit=prob.nit, nfev=prob.nfev, njev=prob.njev, nhev=prob.nhev,
        mult_g=np.asarray(info["mult_g"]), mult_x_L=np.asarray(info["mult_x_L"]),
        mult_x_U=np.asarray(info["mult_x_U"]), constr=np.asarray(info["g"]),
        hess_info=prob.H.info(), jac_info=prob.J.info() if m else None)
    return res
