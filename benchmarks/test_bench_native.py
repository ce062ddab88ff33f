"""fastad with native code (docs/native.md): the tape compiled to machine code before the
timed replays (native="always"), and the compile time in extra_info.

Rerun on its own (the machine should be quiet):
    python benchmarks/run.py -k "native or c_loop or c_hand or fastad_replay or jax_jit"
"""
import time

import pytest

fd = pytest.importorskip("fastad", reason="fastad is not importable (pip install -e .)")

import peers  # noqa: E402
import problems as P  # noqa: E402
from harness import ALL, checked, params  # noqa: E402


@params(ALL)
def test_fastad_native(bench, problem):
    from fastad import native
    if native.compiler()[0] is None:
        pytest.skip("no C compiler for native code")
    vg = fd.value_and_grad(problem.f, argnums=peers.fastad_argnums(problem), native="always")
    args = problem.args()
    t0 = time.perf_counter()
    try:
        checked(problem, "fastad-native", vg, args)     # trace + compile (or cache) + sweep
    except TypeError as exc:
        pytest.skip(f"fastad raised TypeError on {problem.id}: {exc}")
    first = time.perf_counter() - t0
    tiers = [native.tier(t) for t in vg.tapes()]
    compile_s = [t.native_policy.compile_time for t in vg.tapes()
                 if t.native_policy is not None and t.native_policy.compile_time is not None]
    t = checked(problem, "fastad-native", vg, args)
    bench(problem, "fastad-native", vg, args, t_est=t,
          extra={"tiers": tiers, "compile_s": compile_s, "first_call_s": first,
                 "note": "native='always': compiled (or loaded from the cache) before timing"})
    new = P.perturbed_args(problem)
    v, g = peers.normalise(vg(*new))
    P.check_grad(problem, v, g, who="fastad-native with new inputs", ref=problem.grad_hand(*new))
