"""Accuracy of the batched sin and cos (docs/scale.md, docs/conventions.md): the ulp error of
fd.vmap's sin values and cos derivatives against mpmath (120 bits), with libmvec
(fastad._batch.set_vector_math(True), the default where available) and with libm (off),
and how far the two lie apart.

    PYTHONPATH=src python benchmarks/vmap_trig_ulps.py [N]       # N arguments, default 10^6

The arguments: a quarter each of uniform |x| < 10, normal (sd 3), log-uniform magnitudes
2^-1074 .. 2^1000 (subnormal to 1e301) with random signs, and doubles within 32 ulps of
k*pi/2 (|k| < 10^6), where sin or cos is tiny and a loose argument reduction shows.
tests/unit/test_vmap_trig.py asserts the bound on a sample of these families.
"""
import math
import sys
import time

import mpmath
import numpy as np

import fastad as fd
from fastad import _batch

mpmath.mp.prec = 120


def arguments(n, seed=0):
    """The four families above, n arguments in all (float64)."""
    rng = np.random.default_rng(seed)
    q = n // 4
    uniform = rng.uniform(-10, 10, q)
    normal = rng.normal(0, 3, q)
    logu = np.ldexp(rng.uniform(0.5, 1, q), rng.integers(-1074, 1001, q)) * rng.choice([-1, 1], q)
    # not 0: below 0.0's bits lie NaNs
    k = rng.integers(1, 10**6, n - 3 * q) * rng.choice([-1, 1], n - 3 * q)
    near = (k * (math.pi / 2)).view(np.int64) + rng.integers(-32, 33, n - 3 * q)
    near = near.view(np.float64)
    return np.concatenate([uniform, normal, logu, near])


def ulp_errors(x, got, fn):
    """|got - fn(x)| in ulps of the exact value, fn an mpmath function, per element."""
    err = np.zeros(x.size)
    for i, (xi, gi) in enumerate(zip(x.tolist(), got.tolist())):
        if not math.isfinite(xi):
            continue
        exact = fn(mpmath.mpf(xi))
        u = math.ulp(float(exact))
        err[i] = abs(float((mpmath.mpf(gi) - exact) / u))
    return err


def batched(x, vector):
    """sin(x) and its derivative cos(x) as fd.vmap computes them."""
    prev = _batch.set_vector_math(vector)
    try:
        return fd.vmap(fd.value_and_grad(np.sin))(x)
    finally:
        _batch.set_vector_math(prev)


def ulps_apart(a, b):
    """How many doubles lie between a and b (elementwise; equal: 0)."""
    ia, ib = a.view(np.int64), b.view(np.int64)
    ia = np.where(ia < 0, np.int64(-2**63) - ia, ia)    # monotone integer order of floats
    ib = np.where(ib < 0, np.int64(-2**63) - ib, ib)
    return np.abs(ia - ib)


def main():
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 10**6
    x = arguments(n)
    print(f"{n} arguments; libmvec available: {_batch.vector_math_available()}")
    s_vec, c_vec = batched(x, True)
    s_lib, c_lib = batched(x, False)
    for name, a, b in (("sin", s_vec, s_lib), ("cos", c_vec, c_lib)):
        apart = ulps_apart(a, b)
        print(f"{name}: libmvec vs libm: max {apart.max()} ulps apart, "
              f"{(apart == 0).mean() * 100:.1f} % identical")
    t = time.perf_counter()
    for name, fn, vec, lib in (("sin", mpmath.sin, s_vec, s_lib),
                               ("cos", mpmath.cos, c_vec, c_lib)):
        ev, el = ulp_errors(x, vec, fn), ulp_errors(x, lib, fn)
        worst = int(np.argmax(ev))
        print(f"{name}: error against mpmath: libmvec max {ev.max():.3f} ulp (at x = "
              f"{x[worst]!r}), mean {ev.mean():.3f}; libm max {el.max():.3f} ulp, "
              f"mean {el.mean():.3f}")
    print(f"({time.perf_counter() - t:.0f} s in mpmath)")


if __name__ == "__main__":
    main()
