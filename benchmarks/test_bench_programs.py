"""Programs as written: a residual vector filled by item assignment (docs/numpy.md).

The same gradient of sum(r(x)^2), r the discrete 1-d Laplacian residual with boundary
rows, written three ways and timed per call the way optimizers call it (one float64
vector, replayed tape):

  fastad-assign   y = np.zeros_like(x); y[0] = ...; y[1:-1] = ...; y[-1] += ...
  fastad-stack    the same residual built with np.concatenate (no assignment)
  jax-at          JAX's functional y.at[...].set / .add under jax.jit (skipped without jax)

Assignment rebinds slots while tracing, so fastad-assign and fastad-stack should replay
the same tape size at the same speed.  Run:  python -m pytest benchmarks/test_bench_programs.py
"""
import numpy as np
import pytest

import fastad as fd

pytest.importorskip("pytest_benchmark")

N = [100, 10_000]


def residual_assign(x):
    y = np.zeros_like(x)
    y[0] = x[0] - 1.0
    y[1:-1] = x[2:] - 2.0 * x[1:-1] + x[:-2]
    y[-1] += x[-1] ** 2
    return np.sum(y ** 2)


def residual_stack(x):
    y = np.concatenate([np.atleast_1d(x[0] - 1.0), x[2:] - 2.0 * x[1:-1] + x[:-2],
                        np.atleast_1d(x[-1] ** 2)])
    return np.sum(y ** 2)


def _x(n):
    return np.linspace(-1.0, 1.0, n) ** 3


@pytest.mark.parametrize("n", N)
@pytest.mark.parametrize("form", ["assign", "stack"])
def test_fastad_residual(benchmark, n, form):
    f = residual_assign if form == "assign" else residual_stack
    vg = fd.value_and_grad(f)
    x = _x(n)
    v, g = vg(x)
    v2, g2 = fd.value_and_grad(residual_stack)(x)
    np.testing.assert_allclose(g, g2, rtol=1e-13, atol=1e-13)
    benchmark.group = f"residual-n{n}"
    benchmark.extra_info["tape_len"] = len(fd.record(f, x))
    benchmark(vg, x)
    assert vg.cache_info()["traces"] == 1


@pytest.mark.parametrize("n", N)
def test_jax_residual(benchmark, n):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def f(x):
        y = jnp.zeros_like(x)
        y = y.at[0].set(x[0] - 1.0)
        y = y.at[1:-1].set(x[2:] - 2.0 * x[1:-1] + x[:-2])
        y = y.at[-1].add(x[-1] ** 2)
        return jnp.sum(y ** 2)

    vg = jax.jit(jax.value_and_grad(f))
    x = _x(n)

    def call(x):
        v, g = vg(x)
        return float(v), np.asarray(g)

    g_ref = fd.grad(residual_assign)(x)
    np.testing.assert_allclose(call(x)[1], g_ref, rtol=1e-12, atol=1e-12)
    benchmark.group = f"residual-n{n}"
    benchmark(call, x)
