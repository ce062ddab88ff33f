"""The main job: `python -m fastad` walks through the lecture notes' worked example and
times a traced-then-replayed Rosenbrock gradient against plain Python."""
import math
import time

import numpy as np

import fastad as fd


def notes_example(x1, x2):
    """f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2), written as the notes' evaluation trace."""
    v3 = x1 * x2
    v4 = np.sin(x2)
    v5 = np.exp(v3)
    v6 = v3 - v4
    v7 = v5 + v6
    return v7


def rosen(x):
    """Rosenbrock's function as a scalar loop over x[i]."""
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_grad(x):
    """Rosenbrock's gradient written by hand (the reference)."""
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def _table(title, names, values):
    print(title)
    for name, v in zip(names, values):
        print(f"  {name:<4} = {v: .12f}")


def _best_of(fun, repeat=5, number=10):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fun()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def main(n=10_000):
    x1, x2 = 1.5, 0.5
    tape = fd.record(notes_example, x1, x2)
    slots = [0, 1] + [r for _, r, _ in tape.records()]
    names = [f"v{i}" for i in range(1, 8)]
    print("f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2) at (x1, x2) = (1.5, 0.5)\n")
    print("evaluation trace:  v1 = x1, v2 = x2, v3 = v1*v2, v4 = sin(v2), v5 = exp(v3),")
    print("                   v6 = v3 - v4, v7 = v5 + v6 = f\n")
    _table("primal values (forward sweep)", names, tape.values[slots])
    tape.tangent([1.0, 0.0])
    _table("\ntangents, x-dot = (1, 0) (forward mode)", [f"{n}'" for n in names],
           tape.tangents[slots])
    tape.reverse()
    _table("\nadjoints, v7-bar = 1 (reverse mode)", [f"{n}b" for n in names],
           tape.adjoints[slots])
    g = fd.grad(notes_example, argnums=(0, 1))(x1, x2)
    print(f"\ngradient: df/dx1 = {g[0]:.12f}, df/dx2 = {g[1]:.12f}")
    print(f"tape: {len(tape)} records, {tape.nbytes} bytes "
          f"({fd.RECORD_BYTES} per record + 16 per slot for value and adjoint)\n")

    x = np.linspace(-1.0, 1.0, n)
    grad = fd.grad(rosen)
    t0 = time.perf_counter()
    g_first = grad(np.full(n, -1.2))
    t_first = time.perf_counter() - t0
    t_replay = _best_of(lambda: grad(x))
    t_plain = _best_of(lambda: rosen(x), repeat=3, number=1)
    err = np.max(np.abs(grad(x) - rosen_grad(x)))
    rt = grad.tapes()[0]
    print(f"Rosenbrock as a Python loop, n = {n}: {len(rt)} records, "
          f"{rt.nbytes / 2**20:.1f} MiB tape")
    print(f"  first call (trace + gradient):   {t_first * 1e3:8.2f} ms")
    print(f"  replayed gradient:               {t_replay * 1e3:8.2f} ms")
    print(f"  plain Python evaluating rosen:   {t_plain * 1e3:8.2f} ms   "
          f"(the replayed gradient is {t_plain / t_replay:.1f}x faster)")
    print(f"  max |error| vs hand-written gradient: {err:.2e}; "
          f"g(-1.2, ...)[0] = {g_first[0]:.1f}")
    _native_vs_interpreter(n)


def _native_vs_interpreter(n=300):
    """The same gradient as machine code (docs/native.md), side by side with the interpreter."""
    from fastad import native
    x = np.linspace(-1.0, 1.0, n)
    interp = fd.grad(rosen, native="never")
    interp(x)
    t0 = time.perf_counter()
    nat = fd.grad(rosen, native="always")
    nat(x)                                   # trace, then compile (or load from the cache)
    t_first = time.perf_counter() - t0
    tape = nat.tapes()[0]
    tier = native.tier(tape)
    print(f"\nRosenbrock loop, n = {n} ({len(tape)} records), interpreter vs native code:")
    if tier != "native":
        print(f"  native code unavailable here: {tier}")
        return
    ct = tape.native_policy.compile_time
    t_i, t_n = _best_of(lambda: interp(x), number=200), _best_of(lambda: nat(x), number=200)
    same = np.array_equal(interp(x), nat(x))
    how = f"{ct:8.2f} s" if ct else "    none (loaded from the cache)"
    print(f"  compile time (background under native='auto'): {how}")
    print(f"  first call with native='always' (trace + compile): {t_first:8.2f} s")
    print(f"  replayed gradient, interpreter:  {t_i * 1e6:8.1f} us")
    print(f"  replayed gradient, native code:  {t_n * 1e6:8.1f} us   "
          f"({t_i / t_n:.1f}x; results bit-for-bit equal: {same})")


if __name__ == "__main__":
    main()
