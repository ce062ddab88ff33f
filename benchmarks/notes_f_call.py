"""The Python call overhead of a tiny gradient (docs/native.md, "Call overhead").

    PYTHONPATH=src python benchmarks/notes_f_call.py [--repeat R]

The notes' f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2): value_and_grad called from Python the
way users call it -- two floats, and scipy.optimize's way, one float64 vector (the gradient
then is a vector too) -- in the interpreter and in native code, beside CasADi's Function
(its low-overhead buffer API, and the ordinary DM call).  Each line is the best of R
rounds of a timeit loop (ns per call), the contenders interleaved: the minimum is the
least noisy estimate of a call's cost on a loaded machine.
"""
import argparse
import os
import sys
import timeit

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd  # noqa: E402


def f2(x1, x2):
    v = x1 * x2
    return v + np.exp(v) - np.sin(x2)


def fvec(x):
    v = x[0] * x[1]
    return v + np.exp(v) - np.sin(x[1])


def best_ns(calls, repeat, number=20000):
    """Best time per call of each contender, the contenders interleaved round by round so
    that a burst of load elsewhere hits them alike."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for k, call in calls.items():
            best[k] = min(best[k], timeit.timeit(call, number=number) / number * 1e9)
    return best


def contenders():
    x1, x2, xv = 1.5, 0.5, np.array([1.5, 0.5])
    out = {}
    for tier in ("never", "always"):
        name = "interpreter" if tier == "never" else "native"
        g2 = fd.value_and_grad(f2, argnums=(0, 1), native=tier)
        gv = fd.value_and_grad(fvec, native=tier)
        g2(x1, x2)
        gv(xv)
        out[f"fastad {name}, two floats"] = lambda g2=g2: g2(x1, x2)
        out[f"fastad {name}, one vector"] = lambda gv=gv: gv(xv)
    try:
        import casadi as ca
    except ImportError:
        return out
    x = ca.SX.sym("x", 2)
    e = x[0] * x[1] + ca.exp(x[0] * x[1]) - ca.sin(x[1])
    F = ca.Function("f", [x], [e, ca.gradient(e, x)])
    buf, trigger = F.buffer()
    xin, vout, gout = np.zeros(2), np.zeros(1), np.zeros(2)
    buf.set_arg(0, memoryview(xin))
    buf.set_res(0, memoryview(vout))
    buf.set_res(1, memoryview(gout))

    def casadi_buffer(xv=xv):          # the fastest CasADi spelling (benchmarks/peers.py)
        xin[:] = xv
        trigger()
        return vout.item(), gout.copy()

    def casadi_dm(xv=xv):
        v, g = F(xv)
        return float(v), g.full().ravel()

    casadi_buffer._keep = (buf, trigger, F)      # the buffer must outlive the calls
    out["CasADi Function, buffer API, one vector"] = casadi_buffer
    out["CasADi Function, DM call, one vector"] = casadi_dm
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    res = best_ns(contenders(), a.repeat)
    ref = res["fastad native, two floats"]
    for k, v in res.items():
        print(f"{k:42s} {v:8.0f} ns   {v / ref:5.2f}x")


if __name__ == "__main__":
    main()
