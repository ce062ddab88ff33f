"""Turn a Problem into a value-and-gradient callable for each contender.

Every ``make_*`` function returns ``(vg, call_args)`` where ``vg(*call_args)``
computes the value and gradient of ``problem`` with that contender.  The
result is normalised (``normalise``) before the gradient check, never inside
the timed call: a timed call does what a user of that library would do to get
a value and a gradient from numpy inputs, and no more.

Peers are imported lazily, so a missing one only skips its own benchmarks.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

from problems import SPRING_STEPS, Problem, branchy_ifelse

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"
BUILD_DIR = Path(os.environ.get("BENCH_BUILD_DIR", HERE / ".build"))

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _packed_argnums(problem: Problem):
    an = problem.argnums
    assert an == tuple(range(len(an))), "differentiated args come first"
    return len(an)


def normalise(result):
    """(value, grad-or-tuple) from any contender -> (float, tuple of ndarray)."""
    value, grads = result[0], result[1]
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    out = []
    for g in grads:
        if hasattr(g, "detach"):  # torch
            g = g.detach().numpy()
        out.append(np.array(g, dtype=np.float64))
    if hasattr(value, "item"):
        value = value.item()
    return float(value), tuple(out)


# ---------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------


def make_plain(problem: Problem):
    return problem.f, problem.args()


def make_numpy_hand(problem: Problem):
    return problem.grad_hand, problem.args()


# ---------------------------------------------------------------------------
# fastad
# ---------------------------------------------------------------------------


def fastad_argnums(problem: Problem):
    an = problem.argnums
    return an[0] if len(an) == 1 else an


def make_fastad(problem: Problem, optimize: bool = True):
    import fastad as fd

    vg = fd.value_and_grad(problem.f, argnums=fastad_argnums(problem), optimize=optimize)
    return vg, problem.args()


def make_fastad_first(problem: Problem):
    """A new wrapper every call: trace + first sweep each time."""
    import fastad as fd

    f = problem.f
    an = fastad_argnums(problem)

    def first_call(*args):
        return fd.value_and_grad(f, argnums=an)(*args)

    return first_call, problem.args()


# ---------------------------------------------------------------------------
# hand-written C through ctypes
# ---------------------------------------------------------------------------

_C_LIBS: dict[str, ctypes.CDLL] = {}


def cc_version() -> str:
    try:
        out = subprocess.run(["cc", "--version"], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()[0]
    except Exception as exc:  # pragma: no cover
        return f"unavailable ({exc})"


def build_c(name: str) -> ctypes.CDLL:
    """Compile benchmarks/c/<name>.c with the system `cc -O2` (cached by hash)."""
    if name in _C_LIBS:
        return _C_LIBS[name]
    src = C_DIR / f"{name}.c"
    hdr = C_DIR / "common.h"
    flags = ["-O2", "-shared", "-fPIC"]
    h = hashlib.sha256(src.read_bytes() + hdr.read_bytes()
                       + " ".join(flags).encode()).hexdigest()[:12]
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    so = BUILD_DIR / f"lib{name}-{h}.so"
    if not so.exists():
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        cmd = ["cc", *flags, f"-I{C_DIR}", "-o", str(tmp), str(src), "-lm"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        os.replace(tmp, so)
    lib = ctypes.CDLL(str(so))
    for sym, extra in ((f"{name}_vg", []), (f"{name}_vg_repeat", [ctypes.c_long])):
        fn = getattr(lib, sym)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, *extra]
        fn.restype = ctypes.c_double
    _C_LIBS[name] = lib
    return lib


def _c_setup(problem: Problem):
    lib = build_c(problem.c_name)
    args = problem.args()
    if problem.scalar_args:
        xbuf = np.array(args, dtype=np.float64)
    else:
        xbuf = np.ascontiguousarray(args[0], dtype=np.float64)
    n = SPRING_STEPS if problem.name == "spring" else xbuf.size
    g = np.zeros(xbuf.size)
    return lib, args, xbuf, g, n


def make_c(problem: Problem):
    """ctypes call per gradient; pointers precomputed, output preallocated (the floor)."""
    lib, args, xbuf, g, n = _c_setup(problem)
    fn = getattr(lib, f"{problem.c_name}_vg")
    xp, gp = xbuf.ctypes.data, g.ctypes.data
    if problem.scalar_args:
        def vg(x1, x2):
            xbuf[0] = x1
            xbuf[1] = x2
            return fn(xp, n, gp), g
        vg._keep = (xbuf, g)
        return vg, args

    def vg(x):
        return fn(xp, n, gp), g

    vg._keep = (xbuf, g)
    return vg, (xbuf,)


def make_c_loop(problem: Problem, reps: int):
    """`reps` gradients computed by a loop inside C: one ctypes call."""
    lib, args, xbuf, g, n = _c_setup(problem)
    fn = getattr(lib, f"{problem.c_name}_vg_repeat")
    xp, gp = xbuf.ctypes.data, g.ctypes.data

    def vg_loop():
        return fn(xp, n, gp, reps), g

    vg_loop._keep = (xbuf, g)
    return vg_loop, ()


# ---------------------------------------------------------------------------
# PyTorch eager
# ---------------------------------------------------------------------------


def make_torch(problem: Problem):
    import torch

    torch.set_num_threads(1)
    f = problem.make(torch)
    k = _packed_argnums(problem)
    args = problem.args()

    if problem.scalar_args:
        def vg(*a):
            ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in a]
            out = f(*ts)
            gs = torch.autograd.grad(out, ts)
            return out.item(), tuple(t.item() for t in gs)
        return vg, args

    def vg(*a):
        params = [torch.from_numpy(v).requires_grad_() for v in a[:k]]
        data = [torch.from_numpy(v) for v in a[k:]]
        out = f(*params, *data)
        gs = torch.autograd.grad(out, params)
        return out.item(), tuple(t.numpy() for t in gs)

    return vg, args


# ---------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jax, jnp


def _jax_args(problem: Problem):
    jax, jnp = _jax()
    # Inputs are placed on the device once, outside the timed call (JAX's best case).
    return tuple(jnp.asarray(a, dtype=jnp.float64) for a in problem.args())


def make_jax_grad(problem: Problem):
    jax, jnp = _jax()
    f = problem.make(jnp)
    inner = jax.value_and_grad(f, argnums=problem.argnums)

    def vg(*a):
        return jax.block_until_ready(inner(*a))

    return vg, _jax_args(problem)


def make_jax_jit(problem: Problem, fresh: bool = False):
    """jax.jit(jax.value_and_grad(f)).  fresh=True wraps f in a new function
    object so that nothing is cached: the first call traces and compiles."""
    jax, jnp = _jax()
    f = problem.make(jnp)
    if fresh:
        g = f
        f = lambda *a: g(*a)  # noqa: E731 - a new object defeats jit's cache
    inner = jax.jit(jax.value_and_grad(f, argnums=problem.argnums))

    def vg(*a):
        return jax.block_until_ready(inner(*a))

    return vg, _jax_args(problem)


def make_jax_jit_first(problem: Problem):
    jax, jnp = _jax()
    base = problem.make(jnp)
    an = problem.argnums

    def first_call(*a):
        f = lambda *b: base(*b)  # noqa: E731 - new object each time: trace + compile
        return jax.block_until_ready(jax.jit(jax.value_and_grad(f, argnums=an))(*a))

    return first_call, _jax_args(problem)


# ---------------------------------------------------------------------------
# HIPS autograd
# ---------------------------------------------------------------------------


def make_autograd(problem: Problem):
    import autograd
    import autograd.numpy as anp

    f = problem.make(anp)
    k = _packed_argnums(problem)
    args = problem.args()
    if k == 1:
        return autograd.value_and_grad(f, 0), args

    def packed(params, *data):
        return f(*params, *data)

    inner = autograd.value_and_grad(packed, 0)

    def vg(*a):
        return inner(tuple(a[:k]), *a[k:])

    return vg, args


# ---------------------------------------------------------------------------
# CasADi (SX graph built once; Function evaluated)
# ---------------------------------------------------------------------------


def casadi_namespace():
    import casadi as ca

    def _sum(a):
        return ca.sum1(ca.sum2(a)) if a.shape[1] > 1 else ca.sum1(a)

    return types.SimpleNamespace(
        sin=ca.sin, cos=ca.cos, exp=ca.exp, log=ca.log, tanh=ca.tanh, sqrt=ca.sqrt,
        sum=_sum, mean=lambda a: _sum(a) / a.numel(),
    )


def casadi_rewritten(problem: Problem) -> bool:
    """True when CasADi runs a rewritten program (Python `if` -> if_else)."""
    return problem.branches


def build_casadi(problem: Problem):
    """Build the SX graph of value and gradient; returns (ca.Function, layout)."""
    import casadi as ca

    args = problem.args()
    syms, exprs, layout = [], [], []
    for i, a in enumerate(args):
        if np.isscalar(a):
            s = ca.SX.sym(f"a{i}")
            e = s
            layout.append(())
        else:
            a = np.asarray(a)
            s = ca.SX.sym(f"a{i}", a.size)
            if a.ndim == 2:  # numpy C order -> casadi (column-major) matrix
                e = ca.reshape(s, a.shape[1], a.shape[0]).T
            else:
                e = s
            if problem.casadi_loop:
                e = ca.vertsplit(s)  # a list of SX scalars: the loop code uses len() and x[i]
            layout.append(a.shape)
        syms.append(s)
        exprs.append(e)
    if problem.branches:
        out = branchy_ifelse(exprs[0], ca)
    elif problem.casadi_fn is not None:
        out = problem.casadi_fn(*exprs)
    else:
        out = problem.make(casadi_namespace())(*exprs)
    wrt = ca.vertcat(*[syms[i] for i in problem.argnums])
    grad = ca.gradient(out, wrt)
    F = ca.Function(problem.name, syms, [out, grad])
    return F, layout


def _split(flat, layout, argnums):
    grads, o = [], 0
    for i in argnums:
        shape = layout[i]
        size = int(np.prod(shape)) if shape else 1
        part = flat[o:o + size]
        grads.append(float(part[0]) if shape == () else part.reshape(shape))
        o += size
    return tuple(grads)


def casadi_buffer_vg(problem: Problem, F, layout):
    """Evaluate F through CasADi's low-overhead buffer API (inputs copied in,
    value and a fresh gradient array out)."""
    buf, trigger = F.buffer()
    ins = [np.zeros(int(np.prod(s)) if s else 1) for s in layout]
    for k, b in enumerate(ins):
        buf.set_arg(k, memoryview(b))
    vout = np.zeros(1)
    gout = np.zeros(sum(int(np.prod(layout[i])) if layout[i] else 1 for i in problem.argnums))
    buf.set_res(0, memoryview(vout))
    buf.set_res(1, memoryview(gout))
    argnums = problem.argnums

    if problem.scalar_args and len(ins) == 2 and len(argnums) == 2:
        i0, i1 = ins

        def vg(a0, a1):  # the fastest spelling found for two scalars
            i0[0] = a0
            i1[0] = a1
            trigger()
            g0, g1 = gout.tolist()
            return vout.item(), (g0, g1)
    elif problem.scalar_args:
        def vg(*a):
            for b, v in zip(ins, a):
                b[0] = v
            trigger()
            return vout.item(), tuple(gout.tolist())
    else:
        def vg(*a):
            for b, v in zip(ins, a):
                np.copyto(b, v.reshape(-1))
            trigger()
            return vout.item(), _split(gout.copy(), layout, argnums)

    vg._keep = (buf, trigger, ins, vout, gout, F)
    return vg


def make_casadi(problem: Problem):
    F, layout = build_casadi(problem)
    return casadi_buffer_vg(problem, F, layout), problem.args()


def make_casadi_dm(problem: Problem):
    """The ordinary `F(x)` call (numpy in, DM out, converted back to numpy)."""
    F, layout = build_casadi(problem)
    argnums = problem.argnums

    def vg(*a):
        v, g = F(*[x if np.isscalar(x) else x.reshape(-1) for x in a])
        return float(v), _split(g.full().ravel(), layout, argnums)

    vg._keep = F
    return vg, problem.args()


def make_casadi_first(problem: Problem):
    """Graph build + gradient + Function + first call, every time."""

    def first_call(*a):
        F, layout = build_casadi(problem)
        v, g = F(*[x if np.isscalar(x) else x.reshape(-1) for x in a])
        return float(v), _split(g.full().ravel(), layout, problem.argnums)

    return first_call, problem.args()


def versions() -> dict:
    """Versions of Python, numpy and every peer that imports."""
    import importlib
    import platform

    out = {"python": platform.python_version()}
    for mod in ("numpy", "scipy", "torch", "jax", "jaxlib", "autograd", "casadi",
                "fastad", "pytest_benchmark", "matplotlib"):
        try:
            m = importlib.import_module(mod)
            out[mod] = getattr(m, "__version__", "installed")
        except Exception:
            out[mod] = None
    if out.get("autograd") == "installed":
        try:
            from importlib.metadata import version
            out["autograd"] = version("autograd")
        except Exception:
            pass
    out["cc"] = cc_version()
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":  # quick self-check: python benchmarks/peers.py
    print(versions(), file=sys.stderr)
