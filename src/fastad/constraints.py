"""Constraints for fastad.minimize, and fastad.least_squares: exact sparse derivatives.

    fd.minimize(f, x0, method="trust-constr",
                constraints=[fd.NonlinearConstraint(c, lb, ub)])
    fd.least_squares(residuals, x0)

A nonlinear constraint ``lb <= c(x) <= ub`` (`fastad.NonlinearConstraint`, or SciPy's with
a finite-difference or absent ``jac``) is handed to SciPy with

* trust-constr: the constraint Jacobian as a `scipy.sparse.csr_array` from
  `fastad.sparse.SparseJacobian` (a few colour sweeps), and ``hess(x, v)``, the sparse
  Hessian of ``v . c(x)`` from `SparseHessian` (star colouring, forward over reverse).
  With the objective's sparse Hessian, trust-constr assembles the exact Hessian of the
  Lagrangian from these;
* SLSQP and the other methods: the dense Jacobian from `fastad.jacobian`.

Bounds are checked before SciPy sees them: their shape against the constraint's output,
no NaN, lb <= ub, and no equality at an infinite value.  docs/sparse.md has the details.
"""
import numpy as np

__all__ = ["NonlinearConstraint", "least_squares"]


class NonlinearConstraint:
    """``lb <= fun(x) <= ub`` for `fastad.minimize`, with `fun` a plain Python function of
    the parameters (in x0's structure) returning a float or a 1-d array.  Its exact
    Jacobian (sparse for trust-constr) and Hessian are derived by fastad.  Use ``lb == ub``
    for equalities and ``-np.inf`` / ``np.inf`` for one-sided constraints."""

    def __init__(self, fun, lb, ub, keep_feasible=False):
        if not callable(fun):
            raise TypeError(f"fastad.NonlinearConstraint: fun must be a function, got "
                            f"{type(fun).__name__}")
        self.fun, self.lb, self.ub, self.keep_feasible = fun, lb, ub, keep_feasible

    def __repr__(self):
        return f"fastad.NonlinearConstraint({getattr(self.fun, '__name__', self.fun)!r}, " \
               f"lb={self.lb!r}, ub={self.ub!r})"


def check_bounds(lb, ub, m, name):
    """Broadcast lb and ub to the constraint's m outputs, or raise saying what is wrong."""
    lb = np.asarray(lb, dtype=np.float64)
    ub = np.asarray(ub, dtype=np.float64)
    for what, b in (("lb", lb), ("ub", ub)):
        if b.ndim > 1 or (b.ndim == 1 and b.shape[0] != m):
            raise ValueError(
                f"fastad.minimize: constraint {name} has {m} output(s) but its {what} has "
                f"shape {b.shape}; give a scalar or an array of shape ({m},)")
        if np.isnan(b).any():
            raise ValueError(f"fastad.minimize: constraint {name}'s {what} contains NaN; use "
                             "-np.inf / np.inf for a side without a bound")
    lb, ub = np.broadcast_to(lb, (m,)).copy(), np.broadcast_to(ub, (m,)).copy()
    if (lb > ub).any():
        k = int(np.flatnonzero(lb > ub)[0])
        raise ValueError(f"fastad.minimize: constraint {name} has lb > ub at output {k} "
                         f"({lb[k]} > {ub[k]}): no point satisfies it")
    if (np.isinf(lb) & (lb == ub)).any():
        k = int(np.flatnonzero(np.isinf(lb) & (lb == ub))[0])
        raise ValueError(f"fastad.minimize: constraint {name} asks output {k} to equal "
                         f"{lb[k]}; SciPy refuses infinite equality bounds")
    return lb, ub


def wire_nonlinear(c, cfun, x0_flat, method, so, fd, replay, name):
    """A scipy NonlinearConstraint for `c` (ours or SciPy's) over the flat parameter vector
    `cfun` takes, with exact derivatives: sparse ones for trust-constr, dense otherwise."""
    from fastad.sparse import SparseJacobian, SparseHessian
    out = np.atleast_1d(np.asarray(cfun(x0_flat), dtype=np.float64))
    if out.ndim != 1:
        raise ValueError(f"fastad.minimize: constraint {name} must return a float or a 1-d "
                         f"array, got shape {out.shape}")
    m = out.shape[0]
    lb, ub = check_bounds(c.lb, c.ub, m, name)
    scalar = np.ndim(cfun(x0_flat)) == 0
    J = SparseJacobian(lambda x: cfun(x) * 1.0, replay=replay)

    def value(x):       # a replay of the traced constraint, not a run of its Python
        v = J.value(np.ascontiguousarray(x, dtype=np.float64))
        return float(v[0]) if scalar else v

    if method == "trust-constr":

        def lagr(x, v):
            return np.sum(v * cfun(x))
        H = SparseHessian(lagr, replay=replay)

        def jac(x):
            return J(np.ascontiguousarray(x, dtype=np.float64))

        def hess(x, v):
            return H(np.ascontiguousarray(x, dtype=np.float64),
                     np.ascontiguousarray(np.atleast_1d(v), dtype=np.float64))
        return so.NonlinearConstraint(value, lb, ub, jac=jac, hess=hess,
                                      keep_feasible=c.keep_feasible)
    Jd = fd.jacobian(cfun, replay=replay)

    def jac(x):
        return np.atleast_2d(np.asarray(Jd(np.ascontiguousarray(x, dtype=np.float64)),
                                        dtype=np.float64))
    return so.NonlinearConstraint(value, lb, ub, jac=jac, keep_feasible=c.keep_feasible)


def least_squares(fun, x0, args=(), *, replay=True, **kw):
    """`scipy.optimize.least_squares` on ``fun(x, *args)`` (a vector of residuals) with the
    exact sparse Jacobian: fastad traces `fun` once, finds the Jacobian's pattern on the
    tape, colours it, and each Jacobian costs one sweep per colour (``jac_sparsity`` needs
    no finite differences).  `x0` may be a pytree (flattened as `fastad.minimize` does);
    ``res.x`` has its structure and ``res.x_flat`` is the flat vector.  Every other
    keyword goes to SciPy (``method`` 'trf' or 'dogbox' for sparse Jacobians; 'lm' gets
    a dense one).  ``res.jac_info`` holds the pattern and colouring statistics."""
    from fastad.optimize import _Layout, _scipy_optimize
    from fastad.sparse import SparseJacobian
    so = _scipy_optimize()
    if not callable(fun):
        raise TypeError(f"fastad.least_squares: expected a function of the parameters, got "
                        f"{type(fun).__name__}")
    if not isinstance(args, tuple):
        args = (args,)
    layout = _Layout(x0)

    def flat_fun(x, *a):
        return fun(layout.unflatten(x), *a) * 1.0
    J = SparseJacobian(flat_fun, replay=replay)
    dense = kw.get("method", "trf") == "lm"

    def residuals(x, *a):
        return J.value(np.ascontiguousarray(x, dtype=np.float64), *a)

    def jacobian(x, *a):
        jac = J(np.ascontiguousarray(x, dtype=np.float64), *a)
        return jac.toarray() if dense else jac

    if "jac" in kw:
        raise TypeError("fastad.least_squares: the Jacobian is derived by fastad; call "
                        "scipy.optimize.least_squares directly to pass your own")
    res = so.least_squares(residuals, layout.x0.copy(), jac=jacobian, args=args, **kw)
    res.x_flat = np.ascontiguousarray(res.x, dtype=np.float64)
    res.x = layout.restore(res.x_flat)
    res.jac_info = J.info()
    return res
