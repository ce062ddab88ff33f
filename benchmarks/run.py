"""Run the whole benchmark suite and write the report, in one command.

    pip install -e ".[bench]" && python benchmarks/run.py

Steps: pytest-benchmark on benchmarks/ (JSON + junit XML for skip reasons),
memory measurements (benchmarks/memory.py), then benchmarks/report.py, which
writes docs/benchmarks.md and docs/bench/ratios.png.

Options:
  --quick          short timings, no n=10^6 CasADi, eager JAX only up to n=100 (for a smoke run)
  --out-dir DIR    where results.json, junit.xml, memory.json, ratios.png go (default docs/bench)
  --md PATH        the markdown report (default docs/benchmarks.md)
  --no-memory      skip the memory measurements (the report keeps the previous memory.json)
  --note TEXT      a line about the run's conditions, printed in the report
  -k EXPR          only the benchmarks matching EXPR (pytest -k)
  anything after -- goes to pytest unchanged
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def strip_raw_data(path):
    """pytest-benchmark stores every round's time (stats.data): tens of MB. Keep the stats."""
    import json

    with open(path) as fh:
        data = json.load(fh)
    for b in data.get("benchmarks", []):
        b.get("stats", {}).pop("data", None)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description="run the fastad benchmark suite and write the report")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "docs", "bench"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("-k", dest="keyword", default=None)
    ap.add_argument("--note", default="", help="a line about the run's conditions for the report")
    a = ap.parse_args(argv)

    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = "1"
    env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("JAX_ENABLE_X64", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if a.quick:
        env.setdefault("BENCH_BUDGET_S", "0.5")
        env.setdefault("BENCH_JAX_GRAD_MAX_UNROLL", "100")
        env.setdefault("BENCH_CASADI_MAX_N", "10000")

    out = os.path.abspath(a.out_dir)
    os.makedirs(out, exist_ok=True)
    js, junit = os.path.join(out, "results.json"), os.path.join(out, "junit.xml")
    cmd = [sys.executable, "-m", "pytest", HERE, "-p", "no:cacheprovider", "-q", "-rs",
           "--benchmark-only", f"--benchmark-json={js}", f"--junitxml={junit}",
           "--benchmark-sort=name", "--benchmark-columns=median,iqr,rounds,iterations",
           "--benchmark-group-by=group",
           # rounds of at least 100 µs: sub-microsecond calls are looped, so the timer's
           # own cost (~50 ns) does not swamp them
           "--benchmark-min-time=0.0001"]
    if a.quick:
        cmd += ["--benchmark-max-time=0.1", "--benchmark-min-rounds=3"]
    if a.keyword:
        cmd += ["-k", a.keyword]
    cmd += extra
    t0 = time.time()
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    print(f"pytest finished with exit code {rc} after {time.time() - t0:.0f} s", flush=True)
    if rc not in (0, 1) or not os.path.exists(js):
        return rc or 1
    strip_raw_data(js)

    mem = os.path.join(out, "memory.json")
    if not a.no_memory:
        mcmd = [sys.executable, os.path.join(HERE, "memory.py"), "--out", mem]
        if a.quick:
            mcmd += ["--only", "numpy-hand", "c", "fastad", "jax-jit", "torch"]
        print("+", " ".join(mcmd), flush=True)
        subprocess.call(mcmd, cwd=ROOT, env=env)

    rcmd = [sys.executable, os.path.join(HERE, "report.py"), "--json", js, "--junit", junit,
            "--memory", mem, "--md", os.path.abspath(a.md),
            "--png", os.path.join(out, "ratios.png"),
            "--note", a.note]
    print("+", " ".join(rcmd), flush=True)
    rrc = subprocess.call(rcmd, cwd=ROOT, env=env)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    return rc or rrc


if __name__ == "__main__":
    sys.exit(main())
