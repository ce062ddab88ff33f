"""fastad.minimize: scipy.optimize.minimize with exact derivatives wired in.

    import numpy as np, fastad as fd
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    res = fd.minimize(rosen, np.full(10, -1.2), method="trust-ncg")
    res.x, res.nit

What is wired, and how:

* the objective and its gradient come from one replayed tape, `fastad.value_and_grad`,
  handed to SciPy as ``fun`` with ``jac=True`` (one C sweep pair per evaluation);
* the Hessian: ``hessp`` from `fastad.hvp` (forward over the recorded reverse sweep, one
  tangent sweep per product, no retrace per vector) for the methods that take one
  (Newton-CG, trust-ncg, trust-krylov, trust-constr), and ``hess`` from
  `fastad.hessian` for the methods that need the full matrix (dogleg, trust-exact);
* constraints given as dicts ``{'type': 'eq' | 'ineq', 'fun': c}`` get ``'jac'`` from
  `fastad.jacobian` when they have none; a `fastad.NonlinearConstraint`, or a
  `scipy.optimize.NonlinearConstraint` whose ``jac`` is a finite-difference scheme
  ('2-point', '3-point', 'cs'), gets the exact one -- for trust-constr a sparse Jacobian,
  the sparse Hessian of ``v . c(x)`` and the objective's sparse Hessian, i.e. the exact
  Hessian of the Lagrangian (fastad.constraints, docs/sparse.md);
* ``bounds`` and everything else in ``**kw`` go to SciPy unchanged;
* ``method="ipopt"`` is not SciPy's: it runs IPOPT through cyipopt (an optional extra)
  with the exact sparse constraint Jacobian and Hessian of the Lagrangian
  (fastad.ipopt, docs/sparse.md).

Parameters may be a pytree: a float, an array of any shape, or nested tuples, lists and
dicts of these.  They are flattened (dict keys in sorted order, as `fastad.pytree` does)
into one float64, C-contiguous vector -- SciPy only ever sees that vector, so L-BFGS-B
and friends never meet a float32 or strided array -- and your function, constraint
functions and callback receive the parameters in their original structure.  In the result,
``res.x`` has that structure and ``res.x_flat`` is the flat vector (``res.jac`` and the
other fields are SciPy's, over the flat vector).  ``bounds`` and `LinearConstraint`s are
over the flat vector, in the flattened order.

SciPy is an optional dependency of fastad (it comes with the ``test`` extra); without it
`minimize` raises an ImportError saying how to install it.
"""
from __future__ import annotations

from typing import Any, Callable

import inspect

import numpy as np

from fastad.pytree import tree_flatten, tree_unflatten

__all__ = ["minimize"]

# methods that use a Hessian-vector product, and those that need the full Hessian
_HESSP_METHODS = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
_HESS_METHODS = {"dogleg", "trust-exact"}
# methods that use no gradient at all: only the function value is wired
_NO_GRAD_METHODS = {"nelder-mead", "powell", "cobyla", "cobyqa"}
_FD_SCHEMES = ("2-point", "3-point", "cs")


def _scipy_optimize():
    try:
        import scipy.optimize as so
    except ImportError as e:        # pragma: no cover - exercised only without scipy
        raise ImportError(
            "fastad.minimize needs SciPy (an optional dependency of fastad): "
            "pip install scipy  (or pip install 'fastad[test]'). fastad.value_and_grad and "
            "fastad.hvp work with any optimizer without it.") from e
    return so


class _Layout:
    """How a pytree of floats and arrays maps to one flat float64 vector and back."""

    def __init__(self, x0):
        leaves, self.treedef = tree_flatten(x0)
        if not leaves:
            raise ValueError("fastad.minimize: x0 has no parameters (an empty structure)")
        self.plain = type(x0) is np.ndarray and x0.ndim == 1     # no wrapping needed
        self.kinds, self.shapes, self.offsets, parts = [], [], [], []
        n = 0
        for i, leaf in enumerate(leaves):
            if isinstance(leaf, bool) or isinstance(leaf, np.bool_):
                raise TypeError(f"fastad.minimize: parameter leaf {i} is a bool; parameters "
                                "must be floats or float arrays")
            if isinstance(leaf, (float, int, np.floating, np.integer)):
                kind, shape = "scalar", ()
            else:
                arr = np.asarray(leaf)
                if arr.dtype.kind not in "fiu":
                    raise TypeError(f"fastad.minimize: parameter leaf {i} is a "
                                    f"{type(leaf).__name__} of dtype {arr.dtype}; parameters "
                                    "must be floats or real float arrays")
                kind, shape = "array", arr.shape
            size = int(np.prod(shape, dtype=np.int64))
            self.kinds.append(kind)
            self.shapes.append(shape)
            self.offsets.append(n)
            parts.append(np.asarray(leaf, dtype=np.float64).ravel())
            n += size
        self.size = n
        self.x0 = np.ascontiguousarray(np.concatenate(parts), dtype=np.float64)

    def unflatten(self, x):
        """The structure, with leaves cut out of the flat vector `x` (a float64 array or a
        traced array: slicing and reshaping are recorded like any other operation)."""
        if self.plain:
            return x
        leaves = []
        for kind, shape, o in zip(self.kinds, self.shapes, self.offsets):
            if kind == "scalar":
                leaves.append(x[o])
            elif len(shape) == 0:
                leaves.append(x[o])
            else:
                n = int(np.prod(shape, dtype=np.int64))
                leaves.append(x[o:o + n].reshape(shape))
        return tree_unflatten(self.treedef, leaves)

    def restore(self, x):
        """Like unflatten, for a numeric result: floats as floats, arrays as fresh copies."""
        x = np.asarray(x, dtype=np.float64)
        if self.plain:
            return x.copy()
        leaves = []
        for kind, shape, o in zip(self.kinds, self.shapes, self.offsets):
            n = int(np.prod(shape, dtype=np.int64))
            if kind == "scalar":
                leaves.append(float(x[o]))
            else:
                leaves.append(x[o:o + n].reshape(shape).copy())
        return tree_unflatten(self.treedef, leaves)


def _flat64(a):
    return np.ascontiguousarray(a, dtype=np.float64).ravel()


def _tree_to_flat(t):
    """A pytree result (a gradient or a Hessian product in x0's structure) as one flat
    float64 vector; an array is only raveled."""
    leaves, _ = tree_flatten(t)
    if len(leaves) == 1:
        return _flat64(leaves[0])
    return np.ascontiguousarray(np.concatenate([_flat64(leaf) for leaf in leaves]))


def _structured(user, layout, n_vectors, flatten=True):
    """A derivative function the caller passed (jac, hessp, hess), given SciPy's flat
    vectors as x0's structure; its result is flattened back (jac, hessp) or kept (hess:
    already the (n, n) matrix over the flat vector)."""
    def f(*args):
        vecs = [layout.restore(v) for v in args[:n_vectors]]
        out = user(*vecs, *args[n_vectors:])
        return _tree_to_flat(out) if flatten else out
    return f


def minimize(fun: Callable[..., Any], x0: Any, method: str = "BFGS", args: tuple[Any, ...] = (), *,
             replay: bool = True, **kw: Any) -> Any:
    """Minimize ``fun(x, *args)`` with `scipy.optimize.minimize`, exact derivatives wired in.

    `fun` returns a real scalar and is differentiated with fastad (traced once, replayed in
    C for every later evaluation).  `x0` is a float, an array, or a pytree (nested tuples,
    lists, dicts) of them; `fun` receives parameters of that structure.  `method` is any
    SciPy method name.  The gradient always comes from `fastad.value_and_grad`
    (``jac=True``); a Hessian-vector product from `fastad.hvp` goes to Newton-CG,
    trust-ncg, trust-krylov and trust-constr, the full `fastad.hessian` to dogleg and
    trust-exact.  Dict constraints without ``'jac'`` get one from `fastad.jacobian`.
    ``method="ipopt"`` runs IPOPT (cyipopt) with exact sparse derivatives instead of SciPy
    (`fastad.ipopt.minimize_ipopt`; it takes ``constraints``, ``bounds``, ``tol`` and
    ``options``).
    Passing ``jac``, ``hess`` or ``hessp`` yourself overrides the wired one.  Every other
    keyword (``bounds``, ``tol``, ``options``, ``callback``, ...) goes to SciPy.
    ``replay=False`` traces on every evaluation (for functions that read changing globals).
    With pytree parameters, a ``jac``/``hessp`` you pass receives them (and the direction)
    in x0's structure and may return that structure; a ``hess`` returns the matrix over the
    flat vector.

    Returns SciPy's `OptimizeResult`, with ``res.x`` in x0's structure and ``res.x_flat``
    the flat float64 vector SciPy worked on.

    >>> import numpy as np, fastad as fd
    >>> res = fd.minimize(lambda p: (p["a"] - 1.0) ** 2 + np.sum((p["b"] + 2.0) ** 2),
    ...                   {"a": 0.0, "b": np.zeros(2)}, method="L-BFGS-B")
    >>> round(res.x["a"], 6), np.round(res.x["b"], 6)
    (1.0, array([-2., -2.]))
    """
    so = _scipy_optimize()
    import fastad as fd

    if not callable(fun):
        raise TypeError(f"fastad.minimize: expected a function to minimize, got "
                        f"{type(fun).__name__}")
    if not isinstance(args, tuple):
        args = (args,)
    name = method.lower() if isinstance(method, str) else None
    if name == "ipopt":         # not a SciPy method: cyipopt, exact sparse derivatives
        return _ipopt(fun, x0, args, replay, kw)
    layout = _Layout(x0)

    if layout.plain:
        flat_fun = fun
    else:
        def flat_fun(x, *a):
            return fun(layout.unflatten(x), *a)
        flat_fun.__name__ = getattr(fun, "__name__", "fun")

    user_jac = kw.pop("jac", None)
    user_hess = kw.pop("hess", None)
    user_hessp = kw.pop("hessp", None)
    if not layout.plain:        # the caller's own derivatives see the structure too
        if callable(user_jac):
            user_jac = _structured(user_jac, layout, 1)
        if callable(user_hessp):
            user_hessp = _structured(user_hessp, layout, 2)
        if callable(user_hess):
            user_hess = _structured(user_hess, layout, 1, flatten=False)

    if user_jac is not None and user_jac is not True:
        # the caller chose the gradient: give SciPy the plain objective
        def objective(x, *a):
            return float(flat_fun(x, *a))
        jac = user_jac
    elif name in _NO_GRAD_METHODS:
        def objective(x, *a):
            return float(flat_fun(x, *a))
        jac = None
    else:
        vg = fd.value_and_grad(flat_fun, replay=replay)

        def objective(x, *a):
            v, g = vg(x, *a)
            return float(v), _flat64(g)
        jac = True

    hess = user_hess
    hessp = user_hessp
    if hess is None and hessp is None:
        if name == "trust-constr" and _has_nonlinear(kw.get("constraints"), so):
            # the exact sparse Hessian: trust-constr adds the constraints' sparse
            # Hessians to it, which makes the Lagrangian's (docs/sparse.md)
            hs = fd.hessian(flat_fun, replay=replay, sparse=True)

            def hess(x, *a):
                return hs(np.ascontiguousarray(x, dtype=np.float64), *a)
        elif name in _HESSP_METHODS:
            hv = fd.hvp(flat_fun, replay=replay)

            def hessp(x, p, *a):
                return _flat64(hv(x, _flat64(p), *a))
        elif name in _HESS_METHODS:
            h = fd.hessian(flat_fun, replay=replay)

            def hess(x, *a):
                return np.ascontiguousarray(np.atleast_2d(h(x, *a)), dtype=np.float64)

    if "constraints" in kw and kw["constraints"] is not None:
        kw["constraints"] = _wire_constraints(kw["constraints"], layout, so, fd, replay, name)
    if kw.get("callback") is not None and not layout.plain:
        kw["callback"] = _wrap_callback(kw["callback"], layout)

    extra = {}
    if jac is not None:
        extra["jac"] = jac
    if hess is not None:
        extra["hess"] = hess
    if hessp is not None:
        extra["hessp"] = hessp
    res = so.minimize(objective, layout.x0.copy(), args=args, method=method, **extra, **kw)
    res.x_flat = np.ascontiguousarray(res.x, dtype=np.float64)
    res.x = layout.restore(res.x_flat)
    return res


def _ipopt(fun, x0, args, replay, kw):
    from fastad.ipopt import minimize_ipopt
    known = {"constraints", "bounds", "tol", "options"}
    extra = sorted(set(kw) - known)
    if extra:
        raise TypeError(f"fastad.minimize(method='ipopt') does not take {', '.join(extra)}: "
                        "IPOPT gets exact sparse derivatives from fastad, and its settings "
                        "go in options={...} (docs/sparse.md)")
    return minimize_ipopt(fun, x0, args, replay=replay, **kw)


def _constraint_jacobian(cfun, layout, fd, replay):
    """d cfun / dx over the flat vector, shape (m, n) (or (n,) for a scalar constraint):
    `fastad.jacobian`, one replayed tape, reverse sweeps when the constraint has fewer
    outputs than there are parameters and tangent sweeps otherwise."""
    J = fd.jacobian(cfun, replay=replay)

    def jac(x, *a):
        return np.ascontiguousarray(J(np.ascontiguousarray(x, dtype=np.float64), *a),
                                    dtype=np.float64)
    return jac


def _has_nonlinear(constraints, so):
    from fastad.constraints import NonlinearConstraint
    items = constraints if isinstance(constraints, (list, tuple)) else [constraints]
    return any(isinstance(c, (NonlinearConstraint, so.NonlinearConstraint)) for c in items)


def _wire_constraints(constraints, layout, so, fd, replay, name=None):
    from fastad.constraints import NonlinearConstraint, wire_nonlinear
    single = isinstance(constraints, dict) or not isinstance(constraints, (list, tuple))
    items = [constraints] if single else list(constraints)
    out = []
    for k, c in enumerate(items):
        derive = isinstance(c, NonlinearConstraint) or (
            isinstance(c, so.NonlinearConstraint) and (c.jac is None or (
                isinstance(c.jac, str) and c.jac in _FD_SCHEMES)))
        if derive:      # exact derivatives: sparse for trust-constr (fastad.constraints)
            user = c.fun
            cfun = user if layout.plain else (lambda x, _u=user: _u(layout.unflatten(x)))
            out.append(wire_nonlinear(c, cfun, layout.x0, name, so, fd, replay, f"#{k}"))
            continue
        if isinstance(c, dict):
            c = dict(c)
            if "fun" not in c:
                raise ValueError("fastad.minimize: a constraint dict needs a 'fun' entry")
            user = c["fun"]
            cfun = user if layout.plain else (lambda x, *a, _u=user: _u(layout.unflatten(x), *a))
            c["fun"] = _numeric(cfun)
            if c.get("jac") is None:
                c["jac"] = _constraint_jacobian(cfun, layout, fd, replay)
            elif not layout.plain:
                ujac = c["jac"]
                c["jac"] = lambda x, *a, _j=ujac: _j(layout.unflatten(x), *a)
            out.append(c)
        elif isinstance(c, so.NonlinearConstraint):
            user = c.fun
            cfun = user if layout.plain else (lambda x, *a, _u=user: _u(layout.unflatten(x)))
            jac = c.jac
            if isinstance(jac, str) and jac in _FD_SCHEMES:
                jac = _constraint_jacobian(cfun, layout, fd, replay)
            elif callable(jac) and not layout.plain:
                jac = (lambda x, _j=jac: _j(layout.unflatten(x)))
            out.append(so.NonlinearConstraint(_numeric(cfun), c.lb, c.ub, jac=jac, hess=c.hess,
                                              keep_feasible=c.keep_feasible))
        else:       # LinearConstraint and anything else: over the flat vector, unchanged
            out.append(c)
    return out[0] if single else out


def _numeric(cfun):
    def f(x, *a):
        v = cfun(x, *a)
        return v if np.ndim(v) == 0 else np.ascontiguousarray(v, dtype=np.float64)
    return f


def _wrap_callback(callback, layout):
    """Give the user's callback parameters in x0's structure (both of SciPy's forms:
    ``callback(xk)`` and ``callback(intermediate_result)``)."""
    try:
        params = list(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        params = []
    if params == ["intermediate_result"]:
        def cb(intermediate_result):
            # a copy: trust-constr hands over its own state object
            r = type(intermediate_result)(dict(intermediate_result))
            if "x" in r:
                r.x = layout.restore(r.x)
            return callback(intermediate_result=r)
        return cb

    def cb(xk, *rest):
        return callback(layout.restore(xk), *rest)
    return cb
