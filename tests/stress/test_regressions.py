"""Regression tests for the memory errors and races found with the sanitizer build and the
thread tests (docs/hardening.md, "Findings").  On the unfixed code each of them
read or wrote out of bounds (an abort under tools/sanitize.sh, silent heap corruption or a
segfault otherwise), returned a wrong gradient, or raised another thread's exception.
"""
import sys
import threading

import numpy as np
import pytest

import fastad as fd
from fastad._tracer import TracedArray

def aborted_tape():
    """The tape of a trace that raised midway, reached through an escaped traced value."""
    leaked = []

    def f(x):
        leaked.append(x * 2.0)
        raise ValueError("midway")

    with pytest.raises(ValueError):
        fd.grad(f)(1.0)
    return leaked[0].tape


@pytest.mark.parametrize("sweep", ["forward", "tangent", "reverse"])
def test_sweeps_of_an_aborted_tape_raise(sweep):
    tape = aborted_tape()
    assert tape.output_slot == -1
    with pytest.raises((RuntimeError, fd.EscapedTracerError)):
        if sweep == "forward":
            tape.forward(np.array([1.0]))
        elif sweep == "tangent":
            tape.tangent(np.array([1.0]))
        else:
            tape.reverse()


def test_finish_checks_the_output_slot():
    tape = fd.Tape()
    with pytest.raises((ValueError, IndexError)):
        tape._finish(5)                  # a tape without slots has no slot 5


def test_records_name_checks_its_index():
    tape = fd.record(lambda x: x * 2.0, 1.0)
    with pytest.raises(IndexError):
        tape.records_name(10**6)
    with pytest.raises((IndexError, OverflowError)):
        tape.records_name(-1)


@pytest.mark.parametrize("cls", [fd.Traced, fd.TracedArray])
def test_traced_types_cannot_be_made_by_hand(cls):
    with pytest.raises(TypeError):
        cls()


def test_traced_repr_of_a_negative_slot():
    t = fd.Tape()
    x = TracedArray.from_idx(t, [-5])[0]
    assert "released" in repr(x) or "invalid" in repr(x)


def test_low_level_sweeps_do_not_race_compiled_replays():
    from test_threads import rosen
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        g = fd.grad(rosen)
        rng = np.random.default_rng(0)
        xs = [rng.uniform(-2, 2, 1000) for _ in range(8)]
        serial = [g(x) for x in xs]
        tape, stop = g.tapes()[0], []

        def low_level():
            while not stop:
                try:
                    tape.forward(xs[0] * 0.5)
                except RuntimeError:          # "being replayed by another call": fine
                    pass

        t = threading.Thread(target=low_level)
        t.start()
        try:
            for _ in range(300):
                for j, x in enumerate(xs):
                    np.testing.assert_array_equal(g(x), serial[j])
        finally:
            stop.append(True)
            t.join()
    finally:
        sys.setswitchinterval(old)


def test_callback_exceptions_stay_in_their_thread():
    from test_threads import custom_sqrt, rosen_with_callback, run_threads
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        g = fd.grad(rosen_with_callback(custom_sqrt()))
        good = np.linspace(0.1, 1.0, 1000)
        g(good)

        def work(k):
            problems = []
            for rep in range(100):
                x = good.copy()
                if k % 2:
                    x[1] = -10.0 - k - rep * 1e-3       # the callback raises
                try:
                    g(x)
                except ValueError as e:
                    want = f"negative {float(x[0] * x[0] + x[1])!r}"
                    if not k % 2 or str(e) != want:
                        problems.append(str(e))
                except Exception as e:              # noqa: BLE001
                    problems.append(f"{type(e).__name__}: {e}")
                else:
                    if k % 2:
                        problems.append("no exception")
            return problems

        assert run_threads(work) == [[], [], [], []]
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("call", [
    lambda f, a: fd.jacrev(f)(a), lambda f, a: fd.jacfwd(f)(a), lambda f, a: fd.jacobian(f)(a),
    lambda f, a: fd.vjp(f, a)[1](np.ones(0))[0], lambda f, a: fd.jvp(f, (a,), (a,))[1],
], ids=["jacrev", "jacfwd", "jacobian", "vjp", "jvp"])
def test_empty_outputs_are_swept_safely(call):
    """A tape whose output is empty has no output slot (-1): the compiled path must still
    work (and the fix of finding 1 must not refuse it), twice: trace, then replay."""
    for _ in range(2):
        out = np.asarray(call(lambda x: x[:0] * 2.0, np.ones(3)))
        assert out.size == 0 or not out.any()


def test_empty_inputs_are_swept_safely():
    for _ in range(2):
        assert fd.hessian(lambda x: np.sum(x ** 3) + 1.0)(np.ones(0)).shape == (0, 0)
        assert fd.grad(lambda x: np.sum(x) + 1.0)(np.ones(0)).shape == (0,)
