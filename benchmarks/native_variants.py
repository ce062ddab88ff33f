"""Native value_and_grad against hand-written C, per variant of the generator (docs/native.md,
"Table loops" and "Assigned adjoints").

    FASTAD_CACHE_DIR=$(mktemp -d) PYTHONPATH=src taskset -c 1 \\
        python benchmarks/native_variants.py [problem ids...]

For each problem: value_and_grad compiled with native="always" in each variant of VARIANTS
(environment switches read when the code is generated; each variant has its own cache
key), called the way users call it, and the hand-written C with its repeat loop inside C.
Each is timed in 3 x 60 rounds (20 calls a round; 2 x 100 gradients for C) interleaved,
and the *best* round is kept: on a machine other processes load, the best round is the
one they did not interrupt, and medians move by 2x between runs.  Prints one line per
problem and variant, with the ratio to hand C.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd  # noqa: E402

import peers  # noqa: E402
import problems as P  # noqa: E402

DEFAULT = ["branchy-n1000", "rosen_loop-n10000"]

# the generator of version 11 (values and adjoints through memory, every adjoint zeroed),
# and the default
VARIANTS = [("memory", {"FASTAD_NATIVE_TABLE_LOCALS": "0", "FASTAD_NATIVE_ASSIGN": "0"}),
            ("default", {})]


def best(f, args, n, rounds=60):
    f(*args)
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            f(*args)
        ts.append((time.perf_counter() - t0) / n)
    return min(ts)


def main(ids):
    for pid in ids:
        p = P.BY_ID[pid]
        an, args = peers.fastad_argnums(p), p.args()
        gs = []
        for name, env in VARIANTS:
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            g = fd.value_and_grad(p.f, argnums=an, native="always")
            g(*args)                        # compiled here, with the variant's switches
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
            gs.append((name, g))
        c, cargs = peers.make_c_loop(p, 100)
        times = {name: [] for name, _ in gs}
        tc = []
        for _ in range(3):
            for name, g in gs:
                times[name].append(best(g, args, 20))
            tc.append(best(c, cargs, 2) / 100)
        tc = min(tc)
        for name, _ in gs:
            tn = min(times[name])
            print(f"{pid:20s} {name:8s} native {tn * 1e6:8.2f}us  hand C {tc * 1e6:8.2f}us  "
                  f"native / C {tn / tc:5.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
