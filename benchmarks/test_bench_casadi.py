"""CasADi: SX graph of value and gradient built once, Function evaluated.

`casadi` evaluates through CasADi's low-overhead buffer API (inputs copied in,
a fresh gradient array out); `casadi-dm` is the ordinary `F(x)` call returning
DM matrices; `casadi-first` is graph build + Function + first call.  SX cannot
evaluate a Python `if`, so for the branchy problem CasADi runs a rewrite with
`if_else` (both branches built and evaluated): its contenders get the suffix
`-ifelse`.
"""
import pytest

pytest.importorskip("casadi", reason="CasADi not installed (pip install casadi)")

import peers  # noqa: E402
from harness import ALL, CASADI_MAX_N, checked, params  # noqa: E402


def _name(problem, base):
    return base + ("-ifelse" if peers.casadi_rewritten(problem) else "")


def _skip_huge(problem):
    if problem.size > CASADI_MAX_N:
        pytest.skip(f"CasADi SX with {problem.size} scalars: set BENCH_CASADI_MAX_N to run it")


def _extra(problem):
    if peers.casadi_rewritten(problem):
        return {"note": "program rewritten with casadi.if_else (SX cannot take a Python if)"}
    return {}


@params(ALL)
def test_casadi(bench, problem):
    _skip_huge(problem)
    name = _name(problem, "casadi")
    vg, args = peers.make_casadi(problem)
    checked(problem, name, vg, args)
    t = checked(problem, name, vg, args)
    bench(problem, name, vg, args, t_est=t, extra={**_extra(problem), "api": "Function.buffer"})


@params(ALL)
def test_casadi_dm(bench, problem):
    _skip_huge(problem)
    if problem.size > 100000:
        pytest.skip("same Function as `casadi` (only the Python call path differs); "
                    "not rebuilt at this size to save time")
    name = _name(problem, "casadi-dm")
    vg, args = peers.make_casadi_dm(problem)
    checked(problem, name, vg, args)
    t = checked(problem, name, vg, args)
    bench(problem, name, vg, args, t_est=t, extra={**_extra(problem), "api": "F(x) -> DM"})


@params(ALL)
def test_casadi_first(bench, problem):
    _skip_huge(problem)
    name = _name(problem, "casadi-first")
    vg, args = peers.make_casadi_first(problem)
    t = checked(problem, name, vg, args)
    bench(problem, name, vg, args, t_est=t,
          extra={**_extra(problem), "note": "SX graph + gradient + Function + first call"})
