"""Every way fastad computes a first or a second derivative: the "paths" that must all agree
on docs/conventions.md (absolute-zero products, kink rules).

THE ONE LIST: `PATHS` below.  A new way of computing derivatives (a compiled tier, a new
transform) appends its `Path` here, and tests/oracle/test_conventions_matrix.py (closed forms at
every convention case) and tests/oracle/test_fuzz.py (random programs with kinks, every path
against every other) check it with no other edit.

A path is `Path(name, order, make)`: `make(f)` takes a scalar function `f` of a float64
vector and returns a function of a point `x` of shape (n,) giving the gradient (order 1,
shape (n,)) or the Hessian (order 2, shape (n, n)) as that path computes it.  `make`
builds the fastad wrappers once, so calling its result at a second point replays them
(see `evaluate`).
"""
from collections import namedtuple

import numpy as np

import fastad as fd

Path = namedtuple("Path", "name order make")


def _per_index(make_one):
    """A path from one wrapper per index i (a scalar of the gradient or a Hessian row):
    make_one(f, i, n) returns a function of x; wrappers are built once per (i, n)."""
    def make(f):
        cache = {}

        def run(x):
            n = x.size
            rows = []
            for i in range(n):
                if (i, n) not in cache:
                    cache[i, n] = make_one(f, i, n)
                rows.append(cache[i, n](x))
            return np.array(rows, dtype=float)
        return run
    return make


def _e(i, n):
    return np.eye(n)[i]


# ---------------------------------------------------------------- first derivatives

def _grad(f):
    return fd.grad(f)


def _value_and_grad(f):
    g = fd.value_and_grad(f)
    return lambda x: g(x)[1]


def _tangent(f, i, n):           # the interpreter's tangent sweep, one basis direction
    return lambda x: fd.jvp(f, (x,), (_e(i, n),))[1]


def _vjp(f):
    return lambda x: fd.vjp(f, x)[1](1.0)[0]


def _recorded_adjoint_values(f):
    # the gradient as the values of its adjoint recorded on an enclosing tape (csrc/emit.c)
    def outer(w, y):
        return w * fd.grad(f)(y)
    return lambda x: fd.jvp(outer, (1.0, x), (0.0, np.zeros_like(x)))[0]


def _reverse_over_recorded_adjoint(f):
    # d/dw of w * grad f(y): a reverse sweep through the recorded adjoint's values
    j = fd.jacrev(lambda w, y: w * fd.grad(f)(y))
    return lambda x: j(1.0, x)


def _tangent_over_recorded_adjoint(f):
    j = fd.jacfwd(lambda w, y: w * fd.grad(f)(y))
    return lambda x: j(1.0, x)


def _grad_of_jvp_direction(f):
    # grad over v of the recorded jvp J(y) v, which is linear in v: the gradient of f
    g = fd.grad(lambda v, y: fd.jvp(f, (y,), (v,))[1])
    return lambda x: g(np.ones_like(x), x)


# ---------------------------------------------------------------- second derivatives

def _hvp(f, i, n):
    h = fd.hvp(f)
    return lambda x: h(x, _e(i, n))


def _jvp_of_grad(f, i, n):        # tangent sweep over the recorded adjoint
    g = fd.grad(f)
    return lambda x: fd.jvp(g, (x,), (_e(i, n),))[1]


def _grad_of_grad(f, i, n):       # reverse sweep over the recorded adjoint
    return fd.grad(lambda y: fd.grad(f)(y)[i])


def _value_and_grad_of_grad(f, i, n):
    g = fd.value_and_grad(lambda y: fd.grad(f)(y)[i])
    return lambda x: g(x)[1]


def _grad_of_jvp(f, i, n):        # reverse over a recorded jvp, J e_i
    return fd.grad(lambda y: fd.jvp(f, (y,), (_e(i, n),))[1])


def _jvp_of_jvp(f, i, n):         # forward over a recorded jvp: row i, by n tangents
    def inner(y):
        return fd.jvp(f, (y,), (_e(i, n),))[1]
    return lambda x: np.array([fd.jvp(inner, (x,), (_e(j, n),))[1] for j in range(n)])


def _dense_of(S):
    return lambda x: S(x).toarray()


def _forward_over_reverse(h):
    """h with fastad.sparse's forward over reverse on f's own tape wherever it has lane
    rules (FOR_HESSIAN = "always"; the default is the recorded-gradient path)."""
    from fastad import sparse

    def run(x):
        old, sparse.FOR_HESSIAN = sparse.FOR_HESSIAN, "always"
        try:
            return h(x)
        finally:
            sparse.FOR_HESSIAN = old
    return run


PATHS = [
    Path("grad (reverse sweep)", 1, _grad),
    Path("value_and_grad", 1, _value_and_grad),
    Path("jvp (tangent sweep)", 1, _per_index(_tangent)),
    Path("jacfwd", 1, fd.jacfwd),
    Path("jacrev", 1, fd.jacrev),
    Path("vjp", 1, _vjp),
    Path("recorded adjoint, values", 1, _recorded_adjoint_values),
    Path("reverse over recorded adjoint", 1, _reverse_over_recorded_adjoint),
    Path("tangent over recorded adjoint", 1, _tangent_over_recorded_adjoint),
    Path("grad of jvp (direction)", 1, _grad_of_jvp_direction),
    Path("hessian", 2, fd.hessian),
    Path("jacfwd(grad)", 2, lambda f: fd.jacfwd(fd.grad(f))),
    Path("jacrev(grad)", 2, lambda f: fd.jacrev(fd.grad(f))),
    Path("jacobian(grad)", 2, lambda f: fd.jacobian(fd.grad(f))),
    Path("hvp", 2, _per_index(_hvp)),
    Path("jvp(grad)", 2, _per_index(_jvp_of_grad)),
    Path("grad(grad)", 2, _per_index(_grad_of_grad)),
    Path("value_and_grad(grad)", 2, _per_index(_value_and_grad_of_grad)),
    Path("grad(jvp)", 2, _per_index(_grad_of_jvp)),
    Path("jvp(jvp)", 2, _per_index(_jvp_of_jvp)),
    # machine code (docs/native.md): the generated C must keep the interpreter's conventions
    Path("grad (native code)", 1, lambda f: fd.grad(f, native="always")),
    Path("jacfwd (native tangent sweep)", 1, lambda f: fd.jacfwd(f, native="always")),
    Path("hessian (native code)", 2, lambda f: fd.hessian(f, native="always")),
    # sparse Hessians (docs/sparse.md): forward over reverse on f's own tape, lane rules
    # of csrc/hvp_lanes.h (or the recorded gradient's tangent sweeps for other records)
    Path("hessian(sparse=True)", 2, lambda f: _dense_of(fd.hessian(f, sparse=True))),
    Path("hessian(sparse=True), forward over reverse", 2,
         lambda f: _forward_over_reverse(_dense_of(fd.hessian(f, sparse=True)))),
    # the batched sweep of vmap (docs/scale.md), one point per row
    Path("vmap(grad) (batched sweep)", 1, lambda f: (lambda x: fd.vmap(fd.grad(f))(x[None])[0])),
]


def paths(order):
    return [p for p in PATHS if p.order == order]


def evaluate(path, f, x, x_trace=None):
    """`path`'s derivative of f at x, traced at x; and if x_trace is given, also from one
    set of wrappers traced at x_trace and then called at x (a replay, or a retrace where a
    guard says so).  Returns the list of results (float64 arrays)."""
    x = np.asarray(x, dtype=float)
    out = [np.asarray(path.make(f)(x), dtype=float)]
    if x_trace is not None:
        d = path.make(f)
        d(np.asarray(x_trace, dtype=float))
        out.append(np.asarray(d(x), dtype=float))
    return out
