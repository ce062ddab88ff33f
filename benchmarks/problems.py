"""Benchmark problems for fastad and its peers.

Every problem is written once as ordinary Python/numpy code.  The same source
text is reused by the array libraries through a *namespace* argument ``xp``
(``numpy``, ``torch``, ``jax.numpy``, ``autograd.numpy`` or a small CasADi
adapter): ``make_<problem>(xp)`` returns the function, and the plain numpy
version (``xp = numpy``) is exactly what fastad traces.  So every contender
differentiates the same program, operation for operation.

Each problem also has

* a hand-written numpy (or plain Python) value-and-gradient, the reference that
  every contender's gradient is checked against before it is timed;
* for the Rosenbrock, spring, branchy (and the notes' f) problems a
  hand-written C value-and-gradient in ``benchmarks/c/<name>.c``.

Value-and-gradient convention used throughout the suite:
``vg(*args) -> (value: float, grads: tuple)`` with one gradient per entry of
``problem.argnums``, each of the shape of its argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# --------------------------------------------------------------------------
# 1. The notes' f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2)
# --------------------------------------------------------------------------


def make_notes_f(xp):
    def notes_f(x1, x2):
        return x1 * x2 + xp.exp(x1 * x2) - xp.sin(x2)

    return notes_f


def notes_f_grad_hand(x1, x2):
    t = x1 * x2
    e = math.exp(t)
    value = t + e - math.sin(x2)
    return value, (x2 * (1.0 + e), x1 * (1.0 + e) - math.cos(x2))


# --------------------------------------------------------------------------
# 2. Rosenbrock as a scalar loop over x[i]
# --------------------------------------------------------------------------


def make_rosen_loop(xp):
    def rosen_loop(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        return s

    return rosen_loop


def rosen_grad_hand(x):
    """Hand-written numpy value and gradient of the Rosenbrock function."""
    a = x[:-1]
    b = x[1:]
    d = b - a * a
    one_m = 1.0 - a
    value = float(np.sum(100.0 * d * d + one_m * one_m))
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * d - 2.0 * one_m
    g[1:] += 200.0 * d
    return value, (g,)


# --------------------------------------------------------------------------
# 3. Rosenbrock vectorized (the text)
# --------------------------------------------------------------------------


def make_rosen_vec(xp):
    def rosen_vec(x):
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return rosen_vec


# --------------------------------------------------------------------------
# 4. MLP loss, X 256x8, hidden 32
# --------------------------------------------------------------------------

MLP_N, MLP_D, MLP_H = 256, 8, 32


def make_mlp(xp):
    def mlp_loss(W1, b1, W2, b2, X, y):
        return xp.mean((xp.tanh(X @ W1 + b1) @ W2 + b2 - y) ** 2)

    return mlp_loss


def mlp_loss_params(params, X, y):
    """The issue's spelling (parameters packed in a tuple); same function."""
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    return np.mean((h @ W2 + b2 - y) ** 2)


def mlp_grad_hand(W1, b1, W2, b2, X, y):
    """Hand-written numpy backprop."""
    h = np.tanh(X @ W1 + b1)
    r = h @ W2 + b2 - y
    value = float(np.mean(r * r))
    dout = (2.0 / r.shape[0]) * r
    gW2 = h.T @ dout
    gb2 = np.array([dout.sum()])
    dz = np.multiply.outer(dout, W2)
    dz *= 1.0 - h * h
    gW1 = X.T @ dz
    gb1 = dz.sum(axis=0)
    return value, (gW1, gb1, gW2, gb2)


def mlp_casadi(W1, b1, W2, b2, X, y):
    """The MLP loss spelled for CasADi (no broadcasting: b1 is repeated)."""
    import casadi as ca

    n = X.shape[0]
    h = ca.tanh(ca.mtimes(X, W1) + ca.repmat(b1.T, n, 1))
    r = ca.mtimes(h, W2) + b2 - y
    return ca.sum1(r * r) / n


# --------------------------------------------------------------------------
# 5. Damped spring, 1000 explicit-Euler steps, gradient w.r.t. (k, c, x0, v0)
# --------------------------------------------------------------------------

SPRING_STEPS = 1000
SPRING_DT = 0.01


def make_spring(xp):
    def spring(p):
        k = p[0]
        c = p[1]
        x = p[2]
        v = p[3]
        loss = 0.0
        for _ in range(SPRING_STEPS):
            a = -k * x - c * v
            x = x + SPRING_DT * v
            v = v + SPRING_DT * a
            loss = loss + x * x
        return loss

    return spring


def spring_grad_hand(p):
    """Hand-written adjoint of the Euler loop (plain Python floats)."""
    k, c, x, v = (float(t) for t in p)
    dt, n = SPRING_DT, SPRING_STEPS
    xs = [x]
    vs = [v]
    loss = 0.0
    for _ in range(n):
        a = -k * x - c * v
        x = x + dt * v
        v = v + dt * a
        loss += x * x
        xs.append(x)
        vs.append(v)
    xb = 2.0 * xs[n]
    vb = 0.0
    kb = cb = 0.0
    for i in range(n - 1, -1, -1):
        xi, vi = xs[i], vs[i]
        kb -= vb * dt * xi
        cb -= vb * dt * vi
        xb, vb = xb - vb * dt * k, xb * dt + vb * (1.0 - dt * c)
        if i >= 1:
            xb += 2.0 * xi
    return loss, (np.array([kb, cb, xb, vb]),)


# --------------------------------------------------------------------------
# 6. Data-dependent branches: `if` on traced values inside a loop over x[i]
# --------------------------------------------------------------------------


def make_branchy(xp):
    def branchy(x):
        s = 0.0
        for i in range(len(x)):
            xi = x[i]
            if xi > 1.0:
                s = s + xi * xp.log(xi)
            elif xi > -1.0:
                s = s + 0.5 * xi * xi + xp.sin(xi)
            else:
                s = s + xp.exp(xi + 1.0) - xi
            if s > 10.0:  # branch on the running state, not only on the data
                s = s - 10.0
        return s

    return branchy


def branchy_grad_hand(x):
    """Hand-written numpy value and gradient (vectorized by masks)."""
    hi = x > 1.0
    mid = (x > -1.0) & ~hi
    lo = ~(hi | mid)
    term = np.empty_like(x)
    d = np.empty_like(x)
    xh, xm, xl = x[hi], x[mid], x[lo]
    term[hi] = xh * np.log(xh)
    d[hi] = np.log(xh) + 1.0
    term[mid] = 0.5 * xm * xm + np.sin(xm)
    d[mid] = xm + np.cos(xm)
    term[lo] = np.exp(xl + 1.0) - xl
    d[lo] = np.exp(xl + 1.0) - 1.0
    # the value needs the sequential wrap-around; the gradient does not
    s = 0.0
    for t in term.tolist():
        s += t
        if s > 10.0:
            s -= 10.0
    return s, (d,)


def branchy_ifelse(x, ca):
    """CasADi spelling of `branchy`: SX cannot take a Python `if`, so every
    branch becomes ``if_else`` (both sides are built and evaluated)."""
    s = 0.0
    for xi in x:
        t = ca.if_else(
            xi > 1.0,
            xi * ca.log(ca.fmax(xi, 1e-300)),  # log guarded: if_else evaluates both sides
            ca.if_else(xi > -1.0, 0.5 * xi * xi + ca.sin(xi), ca.exp(xi + 1.0) - xi),
        )
        s = s + t
        s = ca.if_else(s > 10.0, s - 10.0, s)
    return s


# --------------------------------------------------------------------------
# Problem registry
# --------------------------------------------------------------------------


@dataclass
class Problem:
    name: str  # problem id ('rosen_loop')
    size: int  # n (0 when not meaningful)
    title: str  # human label used as the benchmark group
    make: Callable[[Any], Callable]  # make(xp) -> function
    args: Callable[[], tuple]  # fresh, seeded numpy arguments
    argnums: tuple  # positions differentiated
    grad_hand: Callable  # hand value-and-gradient (numpy / Python)
    c_name: str | None = None  # benchmarks/c/<c_name>.c, symbol <c_name>_vg
    loop_len: int = 0  # length of the unrolled Python loop (0: none)
    branches: bool = False  # Python `if` on traced values
    scalar_args: bool = False  # arguments are Python floats
    casadi_fn: Callable | None = None  # CasADi-specific spelling (else make(adapter))
    casadi_loop: bool = False  # give CasADi a list of SX scalars (the code uses len/x[i])
    note: str = ""
    _ref: Any = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"{self.name}-n{self.size}" if self.size else self.name

    @property
    def group(self) -> str:
        return self.title

    @property
    def f(self):
        """The plain numpy function (what fastad traces)."""
        return self.make(np)

    def reference(self):
        """(value, grads) from the hand-written numpy gradient (cached)."""
        if self._ref is None:
            self._ref = self.grad_hand(*self.args())
        return self._ref


def _rng(seed):
    return np.random.default_rng(seed)


def _rosen_x(n):
    return lambda: (_rng(n).uniform(-1.5, 1.5, n),)


def _mlp_args():
    r = _rng(42)
    X = r.standard_normal((MLP_N, MLP_D))
    y = r.standard_normal(MLP_N)
    W1 = r.standard_normal((MLP_D, MLP_H)) / math.sqrt(MLP_D)
    b1 = 0.1 * r.standard_normal(MLP_H)
    W2 = r.standard_normal(MLP_H) / math.sqrt(MLP_H)
    b2 = np.array([0.05])
    return (W1, b1, W2, b2, X, y)


ROSEN_LOOP_SIZES = (10, 100, 1000, 10000)
ROSEN_VEC_SIZES = (100, 10000, 1000000)
BRANCHY_N = 1000


def all_problems() -> list[Problem]:
    probs = [
        Problem(
            "notes_f", 0, "notes f(x1,x2)", make_notes_f,
            lambda: (1.5, 0.5), (0, 1), notes_f_grad_hand,
            c_name="notes_f", scalar_args=True,
        )
    ]
    for n in ROSEN_LOOP_SIZES:
        probs.append(Problem(
            "rosen_loop", n, f"rosenbrock loop n={n}", make_rosen_loop, _rosen_x(n), (0,),
            rosen_grad_hand, c_name="rosen", loop_len=n, casadi_loop=True,
        ))
    for n in ROSEN_VEC_SIZES:
        probs.append(Problem(
            "rosen_vec", n,
            f"rosenbrock vectorized n={n:.0e}" if n >= 10000 else f"rosenbrock vectorized n={n}",
            make_rosen_vec, _rosen_x(n), (0,), rosen_grad_hand, c_name="rosen",
        ))
    probs.append(Problem(
        "mlp", MLP_N, f"mlp loss X {MLP_N}x{MLP_D} hidden {MLP_H}", make_mlp, _mlp_args,
        (0, 1, 2, 3), mlp_grad_hand, casadi_fn=mlp_casadi,
    ))
    probs.append(Problem(
        "spring", SPRING_STEPS, f"spring {SPRING_STEPS} Euler steps", make_spring,
        lambda: (np.array([4.0, 0.3, 1.0, 0.0]),), (0,), spring_grad_hand,
        c_name="spring", loop_len=SPRING_STEPS, casadi_loop=True,
    ))
    probs.append(Problem(
        "branchy", BRANCHY_N, f"branchy n={BRANCHY_N}", make_branchy,
        lambda: (_rng(7).uniform(-3.0, 3.0, BRANCHY_N),), (0,), branchy_grad_hand,
        c_name="branchy", loop_len=BRANCHY_N, branches=True, casadi_loop=True,
    ))
    return probs


PROBLEMS = all_problems()
BY_ID = {p.id: p for p in PROBLEMS}


def perturbed_args(problem: Problem, factor: float = 1.001) -> tuple:
    """The problem's arguments scaled by `factor` (data arguments too)."""
    return tuple(a * factor for a in problem.args())


def check_grad(problem: Problem, value, grads, who: str = "", rtol: float = 1e-8, ref=None):
    """Assert that (value, grads) agree with the hand-written numpy gradient
    (of the problem's own arguments, or `ref` = grad_hand(*other_args))."""
    ref_v, ref_g = problem.reference() if ref is None else ref
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) == 1 and len(ref_g) > 1:  # one flat array for several scalar inputs (C)
        ref_g = (np.concatenate([np.ravel(r) for r in ref_g]),)
    assert len(grads) == len(ref_g), f"{who}: {len(grads)} gradients, expected {len(ref_g)}"
    np.testing.assert_allclose(float(value), ref_v, rtol=rtol, atol=1e-10,
                               err_msg=f"{who}: value of {problem.id}")
    for k, (g, r) in enumerate(zip(grads, ref_g)):
        g = np.asarray(g, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        assert g.shape == r.shape or g.size == r.size, (
            f"{who}: gradient {k} of {problem.id} has shape {g.shape}, expected {r.shape}")
        scale = max(1.0, float(np.max(np.abs(r))) if r.size else 1.0)
        np.testing.assert_allclose(g.reshape(r.shape), r, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{who}: gradient {k} of {problem.id}")
