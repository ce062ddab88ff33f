"""Memory measurements for the benchmark report.

1. fastad tape size: ``fd.record(f, *args)`` for each problem; ``len(tape)``
   records, ``tape.nbytes`` bytes (records + values + adjoints + constants),
   bytes per record (a scalar op on scalar tapes) and bytes per array element.
2. Peak memory of one value-and-gradient of the n = 10^6 vectorized
   Rosenbrock, per contender, each in its own subprocess: the peak resident
   set (VmHWM, reset through /proc/self/clear_refs after imports and input
   set-up; ``resource.getrusage`` maxrss when that is not possible) above the
   resident set just before the call, for the first call and for a later one,
   and the tracemalloc peak (Python objects and numpy buffers) of a later call.

Usage: python benchmarks/memory.py [--out docs/bench/memory.json] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PEAK_PROBLEM = "rosen_vec-n1000000"
PEAK_CONTENDERS = ["numpy-hand", "c", "fastad", "torch", "jax-grad", "jax-jit", "autograd",
                   "casadi"]
TAPE_PROBLEMS = ["notes_f", "rosen_loop-n10000", "spring-n1000", "branchy-n1000",
                 "rosen_vec-n10000", "rosen_vec-n1000000", "mlp-n256"]


# ---------------------------------------------------------------------------
# helpers run in the child
# ---------------------------------------------------------------------------


def _status_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    """Reset VmHWM to the current RSS; False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_kb():
    try:
        return _status_kb("VmHWM")
    except (OSError, KeyError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_kb():
    try:
        return _status_kb("VmRSS")
    except (OSError, KeyError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _trim():
    """Give freed heap memory back to the OS (glibc), so a later call's peak is not
    hidden by memory that the previous call freed but that is still resident."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


def _measure_call(fn, args):
    import gc

    gc.collect()
    _trim()
    resettable = _reset_peak()
    base = _rss_kb()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    peak = _peak_kb()
    del out
    return {"delta_mb": (peak - base) / 1024.0, "rss_before_mb": base / 1024.0,
            "peak_mb": peak / 1024.0, "seconds": dt, "hwm_reset": resettable}


def child(contender: str, problem_id: str) -> dict:
    import tracemalloc

    import peers
    from problems import BY_ID

    problem = BY_ID[problem_id]
    makers = {
        "numpy-hand": peers.make_numpy_hand, "c": peers.make_c, "fastad": peers.make_fastad,
        "torch": peers.make_torch, "jax-grad": peers.make_jax_grad,
        "jax-jit": peers.make_jax_jit, "autograd": peers.make_autograd,
        "casadi": None,
    }
    res = {"contender": contender, "problem": problem_id}
    if contender == "casadi":
        args = problem.args()
        import gc

        gc.collect()
        _reset_peak()
        base = _rss_kb()
        t0 = time.perf_counter()
        F, layout = peers.build_casadi(problem)
        vg = peers.casadi_buffer_vg(problem, F, layout)
        out = vg(*args)
        res["first"] = {"delta_mb": (_peak_kb() - base) / 1024.0,
                        "seconds": time.perf_counter() - t0,
                        "note": "SX graph build + Function + first call"}
        del out
    else:
        vg, args = makers[contender](problem)
        res["first"] = _measure_call(vg, args)
    res["later"] = _measure_call(vg, args)
    tracemalloc.start()
    out = vg(*args)
    res["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del out
    import resource

    res["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res["input_mb"] = sum(getattr(a, "nbytes", 8) for a in problem.args()) / 2**20
    return res


# ---------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------


def _width(x):
    try:
        return len(x)  # a range of slots (ranged record)
    except TypeError:
        return 1  # one slot


def _scalar_ops(rec):
    """Scalar operations one record stands for: the widest of its result and
    operand slot ranges (a reduction of n elements counts n)."""
    _op, res, operands = rec[0], rec[1], rec[2]
    return max([_width(res)] + [_width(o) for o in operands])


def tape_stats() -> dict:
    try:
        import fastad as fd
    except Exception as exc:
        return {"error": f"fastad not importable: {exc}"}
    from problems import BY_ID

    out = {}
    for pid in TAPE_PROBLEMS:
        p = BY_ID[pid]
        args = p.args()
        try:
            tape = fd.record(p.f, *args)
        except TypeError as exc:
            out[pid] = {"error": f"TypeError: {exc}"}
            continue
        n_rec = len(tape)
        nbytes = int(tape.nbytes)
        n_in = int(tape.n_inputs)
        entry = {"records": n_rec, "nbytes": nbytes, "n_inputs": n_in,
                 "bytes_per_record": nbytes / max(n_rec, 1)}
        if p.name in ("rosen_vec", "mlp"):
            entry["bytes_per_input_element"] = nbytes / max(n_in, 1)
        try:
            recs = tape.records()
            guards = ("less", "less_equal", "equal", "not_equal", "greater", "greater_equal")
            entry["guards"] = sum(r[0] in guards for r in recs)
            entry["scalar_ops"] = sum(_scalar_ops(r) for r in recs)  # a guard is a comparison op
            entry["bytes_per_scalar_op"] = nbytes / max(entry["scalar_ops"], 1)
        except Exception as exc:
            entry["records_error"] = repr(exc)
        entry.update(_replayed_stats(fd, p, args, entry.get("scalar_ops")))
        out[pid] = entry
    return out


def _replayed_stats(fd, p, args, scalar_ops):
    """Bytes of the tape the replay runs (after the optimizer: rolled loops, reductions),
    per scalar op of the program as recorded, so the two sizes compare op for op."""
    from peers import make_fastad

    try:
        vg, _ = make_fastad(p)
        vg(*args)
        tapes = vg.tapes()
        nbytes = int(sum(t.nbytes for t in tapes))
        out = {"replayed_records": int(sum(len(t) for t in tapes)), "replayed_nbytes": nbytes}
        if scalar_ops:
            out["replayed_bytes_per_scalar_op"] = nbytes / scalar_ops
        return out
    except Exception as exc:
        return {"replayed_error": repr(exc)}


def peak_all(contenders) -> dict:
    out = {}
    for c in contenders:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", c, PEAK_PROBLEM]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            out[c] = {"error": "timeout (600 s)"}
            continue
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            out[c] = {"error": tail[0][:300]}
        else:
            out[c] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  peak memory {c}: {out[c].get('first', out[c])}", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "bench", "memory.json"))
    ap.add_argument("--only", nargs="*", help="peak-memory contenders (default: all)")
    ap.add_argument("--child", nargs=2, metavar=("CONTENDER", "PROBLEM"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child)))
        return 0
    result = {"tape": tape_stats(), "peak_problem": PEAK_PROBLEM,
              "peak": peak_all(a.only or PEAK_CONTENDERS)}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
