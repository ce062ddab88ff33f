"""Shared helpers of the benchmark tests (imported after conftest set the thread variables)."""
from __future__ import annotations

import os
import time

import pytest

import peers
import problems as P

BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "3"))
SLOW_S = 0.05  # above this a contender is timed with a fixed, small number of rounds
JAX_JIT_MAX_UNROLL = int(os.environ.get("BENCH_JAX_JIT_MAX_UNROLL", "1000"))
JAX_GRAD_MAX_UNROLL = int(os.environ.get("BENCH_JAX_GRAD_MAX_UNROLL", "1000"))
CASADI_MAX_N = int(float(os.environ.get("BENCH_CASADI_MAX_N", "1000000")))

ALL = P.PROBLEMS
WITH_C = [p for p in ALL if p.c_name]


def params(problems):
    return pytest.mark.parametrize("problem", problems, ids=[p.id for p in problems])


def time_once(fn, args=()):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def run_benchmark(benchmark, problem, contender, fn, args=(), *, t_est=None,
                  inner_repeat=1, extra=None):
    """Time fn(*args) in the benchmark group of `problem`.

    Fast calls use pytest-benchmark's calibrated loop; slow ones (first calls,
    eager peers on long loops) a fixed number of rounds within BENCH_BUDGET_S.
    `inner_repeat` says how many gradients one call computes (C loop): the
    report divides by it.
    """
    benchmark.group = problem.group
    benchmark.extra_info.update({
        "problem": problem.name, "size": problem.size, "problem_id": problem.id,
        "title": problem.title, "contender": contender, "inner_repeat": inner_repeat,
    })
    if extra:
        benchmark.extra_info.update(extra)
    if t_est is None:
        t_est, _ = time_once(fn, args)
    if t_est > SLOW_S:
        rounds = max(1, min(15, int(BUDGET_S / t_est)))
        benchmark.extra_info["rounds_policy"] = f"pedantic rounds={rounds}"
        return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark(fn, *args)


def checked(problem, contender, vg, args):
    """Call vg once, check the gradient against the hand-written numpy one,
    and return the time that call took (a first estimate for the timer)."""
    t, out = time_once(vg, args)
    v, g = peers.normalise(out)
    P.check_grad(problem, v, g, who=contender)
    return t
