"""Run benchmarks/test_bench_sparse.py and print its table of ratios (docs/sparse.md).

    python benchmarks/sparse_table.py [--json PATH] [-- extra pytest args]

Medians from one pytest-benchmark run, single-threaded BLAS (benchmarks/conftest.py);
ratios are to the first row of each group (fastad's gradient where there is one).
"""
import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def table(path):
    with open(path) as fh:
        data = json.load(fh)
    groups = {}
    for b in data["benchmarks"]:
        ei = b.get("extra_info", {})
        groups.setdefault(b["group"], []).append((ei.get("sparse_contender", b["name"]),
                                                  b["stats"]["median"], ei))
    order = ["sparse-hessian", "sparse-jacobian", "sparse-pattern", "sparse-ocp"]
    lines = ["| group | contender | median | ratio | notes |", "|---|---|---|---|---|"]
    for g in order + sorted(set(groups) - set(order)):
        rows = groups.get(g, [])
        if not rows:
            continue
        base = rows[0][1]
        for name, med, ei in rows:
            notes = ", ".join(f"{k}={v}" for k, v in ei.items() if k != "sparse_contender")
            lines.append(f"| {g} | {name} | {med * 1e3:.3g} ms | {med / base:.2f} | {notes} |")
    cpu = platform.processor() or platform.machine()
    lines.append("")
    lines.append(f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}.")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=os.path.join(ROOT, "docs", "bench", "sparse.json"))
    a = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "pytest", os.path.join(HERE, "test_bench_sparse.py"), "-q",
           "-p", "no:cacheprovider", "--benchmark-only", f"--benchmark-json={a.json}",
           "--benchmark-group-by=group", "--benchmark-max-time=1"] + extra
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if os.path.exists(a.json):
        sys.path.insert(0, HERE)
        from run import strip_raw_data      # every round's time: megabytes, not needed
        strip_raw_data(a.json)
        print(table(a.json))
    return rc


if __name__ == "__main__":
    sys.exit(main())
