"""JAX (float64): eager jax.value_and_grad, jax.jit(value_and_grad) and its first call.

Inputs are moved to the device once, outside the timed calls, and each timed
call blocks until its results are ready.  Compile time is excluded from the
jax-jit timing and reported in its extra_info (compile_s) and as the
`jax-jit-first` contender (trace + compile + first run of a fresh function).
"""
import pytest

jax = pytest.importorskip("jax", reason="JAX not installed (pip install jax jaxlib)")
jax.config.update("jax_enable_x64", True)

import peers  # noqa: E402
from harness import ALL, JAX_GRAD_MAX_UNROLL, JAX_JIT_MAX_UNROLL, checked, params, time_once  # noqa: E402


def _skip_jit_if_needed(problem):
    if problem.branches:
        # jit cannot trace a Python `if` on a traced value: show JAX's own error
        vg, args = peers.make_jax_jit(problem, fresh=True)
        try:
            vg(*args)
        except jax.errors.ConcretizationTypeError as exc:
            pytest.skip("jax.jit cannot run a Python `if` on traced values: "
                        + str(exc).splitlines()[0])
    if problem.loop_len >= JAX_JIT_MAX_UNROLL:
        pytest.skip(f"jax.jit unrolls the {problem.loop_len}-iteration Python loop; compile time "
                    f"explodes (about 20 s at n=1000, minutes at 10^4). "
                    f"Set BENCH_JAX_JIT_MAX_UNROLL above {problem.loop_len} to run it")


@params(ALL)
def test_jax_grad(bench, problem):
    if problem.loop_len > JAX_GRAD_MAX_UNROLL:
        pytest.skip(f"eager jax.grad costs ~0.3-1 ms per scalar op here (~8 s per call and ~50 s "
                    f"first call at n=1000); a {problem.loop_len}-iteration loop would take "
                    f"minutes. "
                    f"Set BENCH_JAX_GRAD_MAX_UNROLL to run it")
    vg, args = peers.make_jax_grad(problem)
    checked(problem, "jax-grad", vg, args)
    t = checked(problem, "jax-grad", vg, args)
    bench(problem, "jax-grad", vg, args, t_est=t)


@params(ALL)
def test_jax_jit(bench, problem):
    _skip_jit_if_needed(problem)
    vg, args = peers.make_jax_jit(problem)
    t_compile, _ = time_once(vg, args)  # trace + compile + first run
    t = checked(problem, "jax-jit", vg, args)
    bench(problem, "jax-jit", vg, args, t_est=t,
          extra={"compile_s": t_compile, "note": "compile excluded; see jax-jit-first"})


@params(ALL)
def test_jax_jit_first(bench, problem):
    _skip_jit_if_needed(problem)
    vg, args = peers.make_jax_jit_first(problem)
    t = checked(problem, "jax-jit-first", vg, args)
    bench(problem, "jax-jit-first", vg, args, t_est=t,
          extra={"note": "trace + XLA compile + first run of a fresh function"})
