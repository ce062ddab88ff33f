"""check_grad: fastad's derivatives against central finite differences.

    >>> import numpy as np, fastad as fd
    >>> fd.check_grad(lambda x, y: x * y + np.exp(x * y) - np.sin(y), 1.5, 0.5,
    ...               argnums=(0, 1), modes=("grad", "jvp"))        # doctest: +SKIP
    check_grad(<lambda>): ok ...

Like `jax.test_util.check_grads` and `torch.autograd.gradcheck`: the gradient of every
differentiated argument is compared component by component with a central difference,

    (f(x + h e_j) - f(x - h e_j)) / (2h),    h = cbrt(eps) * max(1, |x_j|),

the step that balances the difference's truncation error (~h^2 f''') against the rounding
error of f (~eps |f| / h): with float64 both are ~1e-11 relative for a smooth f.  The step
is made exactly representable (h = (x + h) - x).  "jvp" mode compares the directional
derivative along a random direction with the central difference along it (two function
evaluations however large the arguments).

A component passes when |fastad - fd| <= atol + rtol * |fd| + noise, where noise =
8 eps (|f(x+h)| + |f(x-h)|) / (2h) is the rounding error of the difference quotient itself
(it matters when |f| is large compared with its derivative).

SciPy's `approx_fprime` is not used: it takes forward differences (error ~sqrt(eps)), not
central ones, and reports no per-component noise.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import math

import numpy as np

__all__ = ["check_grad", "GradCheckError", "GradCheckResult", "Check"]

EPS = float(np.finfo(np.float64).eps)
STEP = EPS ** (1.0 / 3.0)      # ~6.06e-6
NOISE_ULPS = 8.0
# What check_grad compares: the reverse-mode gradient ("grad") or a forward-mode
# directional derivative ("jvp").  A transform's name picks by its mode's family (grad,
# value_and_grad and vjp sweep in reverse, jvp forward); "rev"/"fwd" name the sweep itself.
_SWEEPS = {"rev": "grad", "reverse": "grad", "fwd": "jvp", "forward": "jvp"}


def _check_kind(name):
    """"grad" or "jvp" for a modes= entry, or None if check_grad has no such check."""
    from fastad._replay import MODES
    if name in _SWEEPS:
        return _SWEEPS[name]
    mode = MODES.get(name)
    if mode is None or mode.family == "jacobian":
        return None
    return "jvp" if mode.family == "jvp" else "grad"


class GradCheckError(AssertionError):
    """fastad's derivative and the finite difference disagree beyond the tolerance.
    `.result` is the GradCheckResult."""

    def __init__(self, result: GradCheckResult) -> None:
        self.result = result
        super().__init__(str(result))


class Check:
    """One comparison: the gradient of one argument ("grad") or a directional derivative
    ("jvp").  analytic/numeric are floats or arrays of the argument's shape; abs_err and
    rel_err the largest errors over its components; worst the index of the component
    furthest beyond its tolerance (None for a scalar); ok whether every component
    passes; noise the largest rounding-noise allowance; step the largest step h."""

    def __init__(self, mode, argnum, analytic, numeric, abs_err, rel_err, worst, ok,
                 noise, step, checked=None):
        self.mode, self.argnum = mode, argnum
        self.analytic, self.numeric = analytic, numeric
        self.abs_err, self.rel_err, self.worst, self.ok = abs_err, rel_err, worst, ok
        self.noise, self.step, self.checked = noise, step, checked

    @property
    def name(self):
        return f"grad arg {self.argnum}" if self.mode == "grad" else \
            f"jvp args {', '.join(map(str, self.argnum))}"

    def __repr__(self):
        return (f"Check({self.name}: max abs err {self.abs_err:.3g}, max rel err "
                f"{self.rel_err:.3g}, {'ok' if self.ok else 'FAILED'})")


class GradCheckResult:
    """What check_grad found: `ok`, `value` (f at the point), `checks` (a Check per
    argument and mode), and the tolerances.  True in a boolean context when ok."""

    def __init__(self, name: str, value: Any, checks: list[Check], rtol: float,
                 atol: float) -> None:
        self.name, self.value, self.checks = name, value, checks
        self.rtol, self.atol = rtol, atol
        self.ok = all(c.ok for c in checks)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def max_abs_err(self) -> float:
        return max((c.abs_err for c in self.checks), default=0.0)

    @property
    def max_rel_err(self) -> float:
        return max((c.rel_err for c in self.checks), default=0.0)

    def __str__(self) -> str:
        status = "ok" if self.ok else "FAILED: fastad's derivative differs from the finite " \
                                      "difference"
        lines = [f"check_grad({self.name}): {status} (rtol={self.rtol:g}, atol={self.atol:g})"]
        rows = [("check", "max abs err", "max rel err", "worst at", "status")]
        for c in self.checks:
            worst = "-" if c.worst is None else str(c.worst)
            rows.append((c.name, f"{c.abs_err:.3g}", f"{c.rel_err:.3g}", worst,
                         "ok" if c.ok else "FAILED"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            lines.append("  " + "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
        for c in self.checks:
            if c.ok:
                continue
            a, n = c.analytic, c.numeric
            if c.worst is not None and isinstance(a, np.ndarray):
                a, n = a[c.worst], n[c.worst]
            where = f"[{c.worst}]" if c.worst is not None else ""
            lines.append(f"  {c.name}{where}: fastad {float(a)!r}, finite difference "
                         f"{float(n)!r} (step {c.step:.3g})")
        return "\n".join(lines)

    __repr__ = __str__


def _scalar_out(fun, args):
    out = fun(*args)
    a = np.asarray(out)
    if a.size != 1 or a.dtype.kind not in "fiub":
        raise TypeError(f"fastad.check_grad: the function must return a real scalar, got "
                        f"{type(out).__name__}" + (f" of shape {a.shape}" if a.ndim else ""))
    return float(a.reshape(()))


def _as_float(a, i):
    if isinstance(a, (bool, np.bool_)):
        raise TypeError(f"fastad.check_grad: argument {i} is a bool; pass a float")
    if isinstance(a, (int, float, np.integer, np.floating)):
        return float(a)
    if isinstance(a, np.ndarray) and a.dtype.kind in "fiu":
        return np.array(a, dtype=np.float64)
    raise TypeError(f"fastad.check_grad: argument {i} (differentiated, in argnums) must be a "
                    f"float or a real numpy array, got {type(a).__name__}")


def _normalise_argnums(argnums, nargs):
    many = isinstance(argnums, (tuple, list))
    nums = tuple(argnums) if many else (argnums,)
    if not nums or not all(isinstance(a, int) and not isinstance(a, bool) for a in nums):
        raise TypeError(f"fastad.check_grad: argnums must be an int or a non-empty tuple of "
                        f"ints, got {argnums!r}")
    out = []
    for a in nums:
        if not -nargs <= a < nargs:
            raise ValueError(f"fastad.check_grad: argnums {a} is out of range for "
                             f"{nargs} argument(s)")
        out.append(a % nargs)
    return tuple(out), many


def _compare(analytic, numeric, noise, rtol, atol):
    a = np.asarray(analytic, dtype=float)
    d = np.asarray(numeric, dtype=float)
    err = np.abs(a - d)
    err = np.where(np.isnan(err) & (np.isnan(a) == np.isnan(d)) & np.isnan(a), 0.0, err)
    tol = atol + rtol * np.abs(d) + noise
    scale = np.maximum(np.abs(a), np.abs(d))
    rel = np.divide(err, scale, out=np.zeros_like(err), where=scale > 0)
    bad = ~(err <= tol)                      # NaN compares False: a failure
    # the component furthest beyond (or, if all pass, closest to) its tolerance
    excess = np.where(bad & ~np.isfinite(err), np.inf, np.nan_to_num(err - tol))
    worst = int(np.argmax(excess)) if excess.size else 0
    abs_err = float(np.nanmax(np.where(np.isnan(err), np.inf, err))) if err.size else 0.0
    rel_err = float(np.nanmax(np.where(np.isnan(rel), np.inf, rel))) if rel.size else 0.0
    return abs_err, rel_err, worst, not bad.any()


def check_grad(fun: Callable[..., Any], *args: Any, argnums: int | Sequence[int] = 0,
               eps: float | None = None, rtol: float = 1e-6, atol: float = 1e-8,
               modes: Sequence[str] = ("grad",), grad_fn: Callable[..., Any] | None = None,
               jvp_fn: Callable[..., Any] | None = None, raise_on_failure: bool = True,
               max_elements: int | None = None, seed: int = 0) -> GradCheckResult:
    """Compare fastad's derivatives of `fun` at `args` with central finite differences.

    fun: a scalar-valued function (called on plain floats/arrays for the differences).
    argnums: the argument(s) to check (int or tuple, as for fastad.grad).
    eps: a fixed step h; default cbrt(machine eps) * max(1, |x_j|) per component.
    rtol, atol: a component passes if |fastad - fd| <= atol + rtol*|fd| + noise (module
        docstring).
    modes: "grad" (reverse mode, every component) and/or "jvp" (forward mode, along a
        random direction); "rev"/"fwd" are accepted as in JAX.
    grad_fn: the gradient to check instead of fastad.grad(fun, argnums): a function of
        args returning what fastad.grad would (a tuple when argnums is a tuple).  Use it
        to check a hand-written rule.
    jvp_fn: instead of fastad.jvp, a function (primals, tangents) -> (value, tangent) over
        the argnums arguments.
    raise_on_failure: raise GradCheckError (an AssertionError) when a check fails;
        otherwise return the failed result.
    max_elements: check at most this many components of each array argument (a random
        sample, always including the first and last); None checks all (2 calls of fun
        per component).
    seed: for the random direction and sample.

    Returns a GradCheckResult: print it, or read .ok, .checks, .max_abs_err, .max_rel_err.
    """
    if not callable(fun):
        raise TypeError(f"fastad.check_grad: expected a function, got {type(fun).__name__}")
    if isinstance(modes, str):
        modes = (modes,)
    kinds = []
    for m in modes:
        kind = _check_kind(m)
        if kind is None:
            raise ValueError(f"fastad.check_grad: unknown mode {m!r}; fastad checks 'grad' "
                             "(reverse mode) and 'jvp' (forward mode)")
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        raise ValueError("fastad.check_grad: modes selects nothing to check")
    if eps is not None and not (isinstance(eps, (int, float)) and eps > 0
                                and math.isfinite(eps)):
        raise ValueError(f"fastad.check_grad: eps must be a positive number, got {eps!r}")
    if rtol < 0 or atol < 0:
        raise ValueError("fastad.check_grad: rtol and atol must be >= 0")
    nums, many = _normalise_argnums(argnums, len(args))
    point = list(args)     # a list: the checked arguments are replaced by floats
    for i in nums:
        point[i] = _as_float(point[i], i)
    name = getattr(fun, "__name__", None) or type(fun).__name__
    value = _scalar_out(fun, point)
    rng = np.random.default_rng(seed)
    checks = []
    if "grad" in kinds:
        if grad_fn is None:
            from fastad.api import grad
            grad_fn = grad(fun, argnums=nums if many else nums[0], replay=False)
        g = grad_fn(*point)
        gs = tuple(g) if many else (g,)
        if len(gs) != len(nums):
            raise ValueError(f"fastad.check_grad: the gradient has {len(gs)} parts for "
                             f"argnums {nums}")
        for i, gi in zip(nums, gs):
            checks.append(_check_argument(fun, point, i, gi, eps, rtol, atol, rng,
                                          max_elements))
    if "jvp" in kinds:
        checks.append(_check_direction(fun, point, nums, eps, rtol, atol, rng, jvp_fn))
    result = GradCheckResult(name, value, checks, rtol, atol)
    if raise_on_failure and not result.ok:
        raise GradCheckError(result)
    return result


def _step(x, eps):
    return eps if eps is not None else STEP * max(1.0, abs(x))


def _central(fun, args, i, j, eps):
    """(derivative, noise, step) along component j of argument i (j None: a scalar)."""
    x0 = args[i]
    xj = float(x0) if j is None else float(x0.flat[j])
    h = _step(xj, eps)
    xp, xm = xj + h, xj - h
    hp, hm = xp - xj, xj - xm                       # the steps actually taken

    def at(v):
        a = list(args)
        if j is None:
            a[i] = v
        else:
            arr = x0.copy()
            arr.flat[j] = v
            a[i] = arr
        return _scalar_out(fun, a)
    fp, fm = at(xp), at(xm)
    d = (fp - fm) / (hp + hm)
    noise = NOISE_ULPS * EPS * (abs(fp) + abs(fm)) / (hp + hm)
    return d, noise, h


def _check_argument(fun, args, i, analytic, eps, rtol, atol, rng, max_elements):
    x = args[i]
    if isinstance(x, float):
        a = float(np.asarray(analytic, dtype=float).reshape(()))
        d, noise, h = _central(fun, args, i, None, eps)
        abs_err, rel_err, _, ok = _compare(a, d, noise, rtol, atol)
        return Check("grad", i, a, d, abs_err, rel_err, None, ok, noise, h)
    a = np.asarray(analytic, dtype=float)
    if a.shape != x.shape:
        raise ValueError(f"fastad.check_grad: the gradient of argument {i} has shape "
                         f"{a.shape}, the argument {x.shape}")
    n = x.size
    idx = np.arange(n)
    if max_elements is not None and n > max_elements:
        pick = rng.choice(np.arange(1, n - 1), size=max(0, max_elements - 2), replace=False)
        idx = np.unique(np.concatenate([[0, n - 1], pick]))
    num = np.full(n, np.nan)
    noise = np.zeros(n)
    steps = 0.0
    for j in idx:
        num[j], noise[j], h = _central(fun, args, i, int(j), eps)
        steps = max(steps, h)
    af = a.ravel()
    abs_err, rel_err, w, ok = _compare(af[idx], num[idx], noise[idx], rtol, atol)
    worst = np.unravel_index(int(idx[w]), x.shape) if n else None
    worst = tuple(int(k) for k in worst) if worst is not None else None
    if worst is not None and len(worst) == 1:
        worst = worst[0]
    return Check("grad", i, a, num.reshape(x.shape), abs_err, rel_err, worst, ok,
                 float(noise.max(initial=0.0)), steps, checked=len(idx))


def _check_direction(fun, args, nums, eps, rtol, atol, rng, jvp_fn):
    """Directional derivative along a random direction vs the central difference."""
    dirs = []
    for i in nums:
        x = args[i]
        dirs.append(float(rng.standard_normal()) if isinstance(x, float)
                    else rng.standard_normal(x.shape))
    vmax = max(float(np.max(np.abs(v))) if np.size(v) else 0.0 for v in dirs) or 1.0
    xmax = max(float(np.max(np.abs(args[i]))) if np.size(args[i]) else 0.0 for i in nums)
    h = eps if eps is not None else STEP * max(1.0, xmax) / vmax

    def g(*ds):
        a = list(args)
        for i, v in zip(nums, ds):
            a[i] = v
        return fun(*a)
    primals = tuple(args[i] for i in nums)
    if jvp_fn is None:
        from fastad.api import jvp
        _, analytic = jvp(g, primals, tuple(dirs))
    else:
        out = jvp_fn(primals, tuple(dirs))
        analytic = out[1] if isinstance(out, tuple) else out
    analytic = float(np.asarray(analytic, dtype=float).reshape(()))
    fp = _scalar_out(g, [p + h * v for p, v in zip(primals, dirs)])
    fm = _scalar_out(g, [p - h * v for p, v in zip(primals, dirs)])
    d = (fp - fm) / (2 * h)
    noise = NOISE_ULPS * EPS * (abs(fp) + abs(fm)) / (2 * h)
    abs_err, rel_err, _, ok = _compare(analytic, d, noise, rtol, atol)
    return Check("jvp", nums, analytic, d, abs_err, rel_err, None, ok, noise, h)
