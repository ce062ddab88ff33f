"""pytest-benchmark configuration for the fastad benchmark suite.

One thread everywhere: the BLAS/OpenMP thread variables are set here, before
numpy is imported by any test module (benchmarks/run.py sets them as well, for
the whole process tree), XLA gets its single-thread flags and PyTorch is
limited with torch.set_num_threads(1) in its module.

Tuning through the environment (all optional):
  BENCH_BUDGET_S             seconds spent timing one slow contender (default 3)
  BENCH_JAX_JIT_MAX_UNROLL   skip jax.jit on Python loops of this length or longer (1000)
  BENCH_JAX_GRAD_MAX_UNROLL  skip eager jax.grad on Python loops longer than this (1000)
  BENCH_CASADI_MAX_N         skip CasADi SX above this many scalar inputs (1000000)
"""
from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_NUMPY_PREIMPORTED = "numpy" in sys.modules

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pytest  # noqa: E402

import peers  # noqa: E402
from harness import run_benchmark  # noqa: E402


def _named_explicitly(config) -> bool:
    """True when the command line names benchmarks/ or a file in it."""
    for arg in config.args:
        path = os.path.abspath(str(arg).split("::", 1)[0])
        if path == HERE or path.startswith(HERE + os.sep):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    # A plain `pytest` at the repository root must not spend ten minutes here:
    # the benchmarks run only when benchmarks/ (or one of its files) is named.
    if _named_explicitly(config):
        return
    skip = pytest.mark.skip(reason="benchmarks run only when benchmarks/ is named: "
                                   "python benchmarks/run.py")
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(skip)


def pytest_report_header(config):
    lines = ["fastad benchmarks: one thread (OMP/OPENBLAS/MKL_NUM_THREADS=1, XLA single thread)"]
    if _NUMPY_PREIMPORTED:
        lines.append("WARNING: numpy was imported before conftest set the thread variables; "
                     "run through benchmarks/run.py")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["cpu_model"] = peers.cpu_model()
    machine_info["cores"] = os.cpu_count()
    machine_info["versions"] = peers.versions()
    machine_info["threads_env"] = {v: os.environ.get(v) for v in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")}
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        machine_info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass


class _Bench:
    """bench(problem, contender, fn, args, ...) times fn; bench.benchmark is the
    pytest-benchmark fixture (for extra_info added after timing)."""

    def __init__(self, benchmark):
        self.benchmark = benchmark

    def __call__(self, problem, contender, fn, args=(), **kw):
        return run_benchmark(self.benchmark, problem, contender, fn, args, **kw)


@pytest.fixture
def bench(benchmark):
    return _Bench(benchmark)


