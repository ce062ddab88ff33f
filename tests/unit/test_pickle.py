"""Pickling compiled functions and tapes (docs/scale.md): replay in another process without
tracing, retrace where the function is available, a clear error where it is not.

Values are compared with the closed forms of reference.py (Rosenbrock's gradient and
Hessian: a few ulp, so rtol 1e-13) and replays with the original bit for bit (the same
tape swept by the same code)."""
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastad as fd
import fastad.serialize as S
from reference import rosen_grad, rosen_hess, rosen_loop

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)          # the shared references (reference.py)
# the fastad this process imported (src/ or an installed, e.g. sanitized, build)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(fd.__file__)))


def two_branches(x):
    return x ** 2 if x > 0 else -3.0 * x


def run_child(code, pythonpath, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath))
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_transform_round_trips_in_process():
    x = np.linspace(-1.5, 1.2, 6)
    for make in (fd.grad, fd.value_and_grad, fd.hessian, fd.jacobian, fd.jacfwd, fd.jacrev):
        f = make(rosen_loop)
        before = pickle.loads(pickle.dumps(f))        # before its first call: traces there
        ref = f(x)
        after = pickle.loads(pickle.dumps(f))         # after: replays, no trace
        traces = after.cache_info()["traces"]
        for got in (before(x), after(x)):
            for a, b in zip(np.atleast_1d(np.asarray(got, dtype=object)),
                            np.atleast_1d(np.asarray(ref, dtype=object))):
                assert np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        assert after.cache_info()["traces"] == traces
    np.testing.assert_allclose(pickle.loads(pickle.dumps(fd.hessian(rosen_loop)))(x),
                               rosen_hess(x), rtol=1e-13)
    v = pickle.loads(pickle.dumps(fd.vmap(fd.grad(rosen_loop), workers=2)))
    X = np.stack([x, -x])
    np.testing.assert_allclose(v(X), np.array([rosen_grad(x), rosen_grad(-x)]), rtol=1e-13)


def test_tape_round_trips_with_guards_and_constants():
    tape = fd.record(lambda a, b: (a * b + np.sin(a) * 2.5) if a < b else a - b, 1.0, 2.0)
    t2 = pickle.loads(pickle.dumps(tape))
    assert t2.records() == tape.records() and len(t2) == len(tape)
    assert t2.forward([0.5, 3.0]) == tape.forward([0.5, 3.0]) == 0.5 * 3.0 + np.sin(0.5) * 2.5
    assert np.array_equal(t2.reverse(), [3.0 + 2.5 * np.cos(0.5), 0.5])
    with pytest.raises(fd.GuardFailure):
        t2.forward([3.0, 0.5])                       # the guard a < b: traced true


def test_corrupt_tape_is_rejected():
    state = fd.record(lambda a: a * 2.0 + 1.0, 1.0)._raw_state()
    rec = state["rec"].copy()
    rec[0] = 250                                     # an op code the table does not have
    with pytest.raises(ValueError, match="corrupt"):
        fd.Tape._from_raw_state(dict(state, rec=rec))
    rec = state["rec"].copy().view(np.int32)
    rec[2] = 10 ** 6                                 # operand a: a slot the tape lacks
    with pytest.raises(ValueError, match="corrupt"):
        fd.Tape._from_raw_state(dict(state, rec=rec.view(np.uint8)))


def test_incompatible_version_names_both(monkeypatch):
    with monkeypatch.context() as m:     # written by a fastad whose op table differs
        m.setattr(S, "_stamp", lambda: ("0.0.1", S.FORMAT, "0123456789abcdef"))
        data = pickle.dumps(fd.grad(rosen_loop))
    with pytest.raises(pickle.UnpicklingError, match=r"fastad 0\.0\.1.*this is fastad "):
        pickle.loads(data)


def test_closure_needs_cloudpickle(monkeypatch):
    c = 2.0
    g = fd.grad(lambda x: c * x ** 3)
    g(1.0)
    try:
        import cloudpickle  # noqa: F401
        assert pickle.loads(pickle.dumps(g))(2.0) == 24.0   # by value, with cloudpickle
    except ImportError:
        pass                                # not installed: the refusal below is the case
    monkeypatch.setitem(sys.modules, "cloudpickle", None)   # as if it were not installed
    with pytest.raises(pickle.PicklingError, match="install cloudpickle"):
        pickle.dumps(g)


def test_other_process_replays_without_tracing_and_retraces_or_refuses(tmp_path):
    # a module only the parent can import: the child gets the tapes, not the function
    (tmp_path / "parent_only").mkdir()
    (tmp_path / "parent_only" / "pmod.py").write_text(
        "def kink(x):\n    return x ** 2 if x > 0 else -3.0 * x\n")
    sys.path.insert(0, str(tmp_path / "parent_only"))
    try:
        import pmod
        g_missing = fd.grad(pmod.kink)
        g_missing(2.0)                                # traces the x > 0 branch only
    finally:
        sys.path.remove(str(tmp_path / "parent_only"))
    g_ref = fd.value_and_grad(rosen_loop)
    g_ref(np.linspace(-1, 1, 5))
    g_branch = fd.grad(two_branches)      # this test module is importable in the child too
    g_branch(1.0)
    (tmp_path / "fns.pkl").write_bytes(pickle.dumps((g_ref, g_branch, g_missing)))
    res = run_child("""
        import json, pickle, numpy as np
        g_ref, g_branch, g_missing = pickle.load(open("fns.pkl", "rb"))
        t0 = g_ref.cache_info()["traces"]
        x = np.array([0.3, -1.1, 0.7, 1.9, -0.4])
        v, g = g_ref(x)
        out = {"traced": g_ref.cache_info()["traces"] - t0, "v": v, "g": g.tolist()}
        out["branch_pos"] = g_branch(2.5)
        out["branch_neg"] = g_branch(-2.5)           # retraces: the function is importable
        out["missing_ok"] = g_missing(4.0)           # replays the recorded branch
        try:
            g_missing(-1.0)
            out["missing_err"] = None
        except RuntimeError as e:
            out["missing_err"] = str(e)
        print(json.dumps(out))
    """, [SRC, HERE, TESTS], tmp_path)
    x = np.array([0.3, -1.1, 0.7, 1.9, -0.4])
    assert res["traced"] == 0
    assert res["v"] == rosen_loop(x)
    np.testing.assert_allclose(res["g"], rosen_grad(x), rtol=1e-13)
    assert (res["branch_pos"], res["branch_neg"], res["missing_ok"]) == (5.0, -3.0, 8.0)
    assert "without its Python function" in res["missing_err"]
    assert "pmod.kink cannot be imported here" in res["missing_err"]


def test_function_false_ships_tapes_only():
    g = fd.grad(two_branches)
    g(1.0)
    h = pickle.loads(S.dumps(g, function=False))
    assert h(3.0) == 6.0
    with pytest.raises(RuntimeError, match="function=False"):
        h(-1.0)


def test_hvp_pickles_with_its_tapes():
    x, v = np.linspace(-1.2, 0.9, 5), np.arange(5.0)
    h = fd.hvp(rosen_loop)
    h(x, v)
    h2 = pickle.loads(pickle.dumps(h))
    traces = h2.gjvp.cache_info()["traces"]
    np.testing.assert_allclose(h2(-x, v), rosen_hess(-x) @ v, rtol=1e-13)
    assert h2.gjvp.cache_info()["traces"] == traces          # replayed, not traced


def test_loading_warms_the_call_path_without_side_effects():
    """Loading replays the last call's signature twice at the recorded inputs (so a new
    process's first call is not slow, docs/scale.md): the counters read as before pickling,
    nothing is traced, the next call's results are the original's, and a function that
    draws random numbers is not warmed (its generator must not move)."""
    from fastad._replay import warm_calls
    x = np.linspace(-1.5, 1.2, 6)
    g = fd.value_and_grad(rosen_loop)
    g(x)
    g(-x)
    h = pickle.loads(pickle.dumps(g))
    assert h.cache_info() == g.cache_info()
    v, gr = h(x + 0.25)
    assert h.cache_info()["traces"] == g.cache_info()["traces"]
    np.testing.assert_allclose(gr, rosen_grad(x + 0.25), rtol=1e-13)
    assert warm_calls(h) and h.cache_info()["replays"] == g.cache_info()["replays"] + 1
    rng = np.random.default_rng(7)

    def noisy(y):
        return np.sum(y * rng.normal(size=y.shape))
    r = fd.grad(noisy)
    with pytest.warns(Warning, match="draws random numbers"):
        r(x)
    state = rng.bit_generator.state
    assert not warm_calls(r)
    assert rng.bit_generator.state == state
    assert not warm_calls(fd.grad(rosen_loop))          # never called: nothing to warm
