"""Generated sweeps timed in C alone, without Python's call path (docs/native.md, "Table
loops and vectorized reverse loops").

    PYTHONPATH=src python benchmarks/native_sweeps_c.py [problem ids...]

For each problem: its value_and_grad tape's C as fastad generates it in each variant of
VARIANTS (environment switches of the generator: straight-line code instead of table
loops; table loops with values and adjoints through memory and adjoints added to a fully
zeroed array, the generator of version 11; the default), each compiled with fastad's
compiler and flags (the gcc CPU time is printed), then fastad_fwd and fastad_rev (with
the zeroing of the adjoints the runtime does before it: every slot, or those outside the
ranges the code assigns, fastad_assigned) timed by a small C driver, best of 30 rounds of
200 calls, the variants interleaved.  Pin it to one core (taskset -c 1) for stable
numbers.
"""
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastad as fd  # noqa: E402
from fastad import _codegen, _native, native  # noqa: E402

import problems as P  # noqa: E402

DEFAULT = ["branchy-n1000", "rosen_loop-n10000", "spring-n1000"]

VARIANTS = [
    ("straight", {"FASTAD_NATIVE_TABLES": "0"}),
    ("memory", {"FASTAD_NATIVE_TABLE_LOCALS": "0", "FASTAD_NATIVE_ASSIGN": "0"}),
    ("default", {}),
]

DRIVER = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
typedef int64_t (*fwd_fn)(double *, const int32_t *, void *);
typedef void (*rev_fn)(const double *, double *, const int32_t *);
static int novec(void) { return 0; }
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
/* the runtime's zeroing (native_abi.h, fa_native_zero): the slots outside the assigned
 * ranges (every slot when the code assigns none) */
static void zero(double *g, long n, const int64_t *a, const int64_t *na)
{
    long s = 0;
    for (int64_t k = 0; a && na && k < *na; k++) {
        if (a[2 * k] > s) memset(g + s, 0, (a[2 * k] - s) * 8);
        if (a[2 * k + 1] > s) s = a[2 * k + 1];
    }
    if (n > s) memset(g + s, 0, (n - s) * 8);
}
int main(int argc, char **argv)
{
    long n = atol(argv[1]), out = atol(argv[2]), nix = atol(argv[4]);
    int k = argc - 6;
    double *v0 = malloc(n * 8), *v = malloc(n * 8), *g = malloc(n * 8);
    int32_t *ix = malloc((nix > 0 ? nix : 1) * 4);
    FILE *f = fopen(argv[3], "rb");
    if (!f || fread(v0, 8, n, f) != (size_t)n) return 1;
    fclose(f);
    f = fopen(argv[5], "rb");
    if (!f || (nix > 0 && fread(ix, 4, nix, f) != (size_t)nix)) return 1;
    fclose(f);
    fwd_fn F[8]; rev_fn R[8]; double best[8][2];
    const int64_t *A[8], *NA[8];
    if (k > 8) return 1;
    for (int i = 0; i < k; i++) {
        void *h = dlopen(argv[6 + i], RTLD_NOW);
        if (!h) { printf("%s\n", dlerror()); return 1; }
        F[i] = (fwd_fn)dlsym(h, "fastad_fwd");
        R[i] = (rev_fn)dlsym(h, "fastad_rev");
        A[i] = (const int64_t *)dlsym(h, "fastad_assigned");
        NA[i] = (const int64_t *)dlsym(h, "fastad_nassigned");
        best[i][0] = best[i][1] = 1e9;
    }
    for (int round = 0; round < 30; round++)
        for (int i = 0; i < k; i++) {
            memcpy(v, v0, n * 8);
            double t0 = now();
            for (int r = 0; r < 200; r++)
                if (F[i](v, ix, (void *)novec) >= 0) { printf("guard failed\n"); return 1; }
            double t1 = now();
            for (int r = 0; r < 200; r++) { zero(g, n, A[i], NA[i]); g[out] = 1.0; R[i](v, g, ix); }
            double t2 = now();
            if ((t1 - t0) / 200 < best[i][0]) best[i][0] = (t1 - t0) / 200;
            if ((t2 - t1) / 200 < best[i][1]) best[i][1] = (t2 - t1) / 200;
        }
    for (int i = 0; i < k; i++) printf("%.2f %.2f\n", best[i][0] * 1e6, best[i][1] * 1e6);
    return 0;
}
"""


def compile_so(src, path):
    argv, _ = native.compiler()
    with open(path + ".c", "w") as f:
        f.write(src)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv + native.flags() + ["-o", path, path + ".c", "-lm"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main(ids):
    d = tempfile.mkdtemp(prefix="fastad-sweeps-")
    argv, _ = native.compiler()
    subprocess.run(argv + ["-O2", "-o", f"{d}/drv", "-x", "c", "-", "-ldl"], input=DRIVER,
                   text=True, check=True)
    print(f"{'problem':20s} {'variant':>8s} {'gcc CPU':>8s} {'fwd':>9s} {'rev':>9s}")
    for pid in ids:
        p = P.BY_ID[pid]
        g = fd.value_and_grad(p.f, native="never")
        g(*p.args())
        t = g.tapes()[0]
        if t.fused_chains():
            print(f"{pid:20s} (fused chains: not timed here)")
            continue
        np.asarray(t.values, dtype=np.float64).tofile(f"{d}/v.bin")
        ix = np.asarray(_native.index_pool(t), dtype=np.int32)
        ix.tofile(f"{d}/ix.bin")
        sos, cpu = [], []
        for name, env in VARIANTS:
            os.environ.update(env)
            src = _codegen.generate(_native.raw_records(t), "bench", ("fwd", "rev"))
            for k in env:
                os.environ.pop(k)
            so = f"{d}/{pid}-{name}.so"
            cpu.append(compile_so(src, so))
            sos.append(so)
        res = subprocess.run([f"{d}/drv", str(t.n_slots), str(t.output_slot), f"{d}/v.bin",
                              str(len(ix)), f"{d}/ix.bin"] + sos,
                             capture_output=True, text=True, check=True).stdout.split("\n")
        for (name, _), c, line in zip(VARIANTS, cpu, res):
            fw, rv = line.split()
            print(f"{pid:20s} {name:>8s} {c:7.2f}s {fw:>7s}us {rv:>7s}us", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
