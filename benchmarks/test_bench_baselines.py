"""Baselines: the plain function, the hand-written numpy gradient, hand-written C."""
import time

import numpy as np
import pytest

import peers
from harness import ALL, WITH_C, checked, params


@params(ALL)
def test_plain(bench, problem):
    fn, args = peers.make_plain(problem)
    ref_v, _ = problem.reference()
    t0 = time.perf_counter()
    v = fn(*args)
    t = time.perf_counter() - t0
    np.testing.assert_allclose(float(v), ref_v, rtol=1e-9)
    bench(problem, "plain", fn, args, t_est=t, extra={"note": "function value only, no gradient"})


@params(ALL)
def test_numpy_hand(bench, problem):
    vg, args = peers.make_numpy_hand(problem)
    t = checked(problem, "numpy-hand", vg, args)
    bench(problem, "numpy-hand", vg, args, t_est=t)


@params(WITH_C)
def test_c_hand(bench, problem):
    try:
        vg, args = peers.make_c(problem)
    except Exception as exc:  # no compiler
        pytest.skip(f"C compiler unavailable: {exc}")
    t = checked(problem, "c", vg, args)
    bench(problem, "c", vg, args, t_est=t,
          extra={"note": "ctypes call per gradient, output preallocated"})


@params(WITH_C)
def test_c_loop(bench, problem):
    try:
        one, args1 = peers.make_c(problem)
    except Exception as exc:
        pytest.skip(f"C compiler unavailable: {exc}")
    # calibrate: reps so that one ctypes call computes ~20 ms of gradients
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        one(*args1)
    per = (time.perf_counter() - t0) / n
    reps = max(1, int(0.02 / max(per, 1e-9)))
    loop, args = peers.make_c_loop(problem, reps)
    out = loop()
    from peers import normalise
    from problems import check_grad

    v, g = normalise(out)
    check_grad(problem, v, g, who="c-loop")
    bench(problem, "c-loop", loop, args, inner_repeat=reps,
          extra={"note": f"{reps} gradients per ctypes call, loop inside C"})
