"""fastad contenders: replay (the normal use) and first call (trace + first sweep).

Skipped as a whole while fastad is not importable.  A problem that uses a numpy
function fastad does not support yet (TypeError naming it) is skipped with that
message; any other error fails the benchmark.
"""
import pytest

fd = pytest.importorskip("fastad", reason="fastad is not importable (pip install -e .)")

import peers  # noqa: E402
import problems as P  # noqa: E402
from harness import ALL, checked, params  # noqa: E402


def _first_call_or_skip(problem, contender, vg, args):
    try:
        return checked(problem, contender, vg, args)
    except TypeError as exc:
        pytest.skip(f"fastad raised TypeError on {problem.id}: {exc}")


@params(ALL)
def test_fastad_replay(bench, problem):
    vg, args = peers.make_fastad(problem)
    _first_call_or_skip(problem, "fastad", vg, args)  # trace (warm-up)
    t = checked(problem, "fastad", vg, args)  # a replay, checked too
    info0 = dict(vg.cache_info())
    bench(problem, "fastad", vg, args, t_est=t)
    info = dict(vg.cache_info())
    assert info["traces"] == info0["traces"] == 1, f"retraced while timing replays: {info}"
    assert info["replays"] > info0["replays"], f"no replay recorded: {info}"
    # replay honours new input values (data arguments included): no stale results
    new = P.perturbed_args(problem)
    v, g = peers.normalise(vg(*new))
    P.check_grad(problem, v, g, who="fastad replay with new inputs", ref=problem.grad_hand(*new))
    tape = vg.tapes()[0]                # the tape replayed (optimized)
    from fastad.trace import optimizer_text
    bench.benchmark.extra_info.update({
        "cache_info": info, "tape_len": len(tape), "tape_nbytes": int(tape.nbytes),
        "tape_n_inputs": int(tape.n_inputs),
        "optimizer": optimizer_text(tape.optimized) if tape.optimized else ""})


@params(ALL)
def test_fastad_noopt_replay(bench, problem):
    """The tape as recorded (optimize=False), beside the optimized replay above."""
    vg, args = peers.make_fastad(problem, optimize=False)
    _first_call_or_skip(problem, "fastad-noopt", vg, args)
    t = checked(problem, "fastad-noopt", vg, args)
    bench(problem, "fastad-noopt", vg, args, t_est=t)
    tape = vg.tapes()[0]
    bench.benchmark.extra_info.update({"tape_len": len(tape), "tape_nbytes": int(tape.nbytes)})


@params(ALL)
def test_fastad_first(bench, problem):
    vg, args = peers.make_fastad_first(problem)
    t = _first_call_or_skip(problem, "fastad-first", vg, args)
    # the new wrapper really traced (no hidden cache shared between wrappers)
    w = fd.value_and_grad(problem.f, argnums=peers.fastad_argnums(problem))
    w(*args)
    assert w.cache_info()["traces"] == 1, w.cache_info()
    bench(problem, "fastad-first", vg, args, t_est=t,
          extra={"note": "new value_and_grad wrapper each call: trace + first sweep"})
