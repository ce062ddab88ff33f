"""The lecture notes' worked example, exactly.

    f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2)       at (x1, x2) = (1.5, 0.5)

written as the notes' evaluation trace

    v1 = x1, v2 = x2, v3 = v1*v2, v4 = sin(v2), v5 = exp(v3), v6 = v3 - v4, v7 = v5 + v6.

Every primal, tangent (x-dot = (1, 0)) and adjoint (v7-bar = 1) is compared with its
closed form evaluated in 50-digit mpmath.  The notes' adjoint rule for v2 has a typo
(v2-bar = v2-bar*v1 + v4-bar*cos(v2)); the correct rule is v2-bar = v3-bar*v1 + v4-bar*cos(v2).

Tolerance: each of these quantities is a short, well-conditioned float64 computation (a
handful of correctly-rounded +,-,* and one libm exp/sin/cos, accurate to ~1 ulp).  The
only subtraction, v3 - v4 = 0.75 - 0.479, and v3bar*v1 - cos(v2) = 4.68 - 0.88, lose at
most one bit, so every result is within a few ulp: we allow RTOL = 8 eps relative.
"""

import math

import numpy as np
import pytest
from mpmath import mp, mpf

import fastad as fd
from reference import EPS, NOTES_V, NOTES_VBAR, NOTES_VDOT, rel_close

X1, X2 = 1.5, 0.5
RTOL = 8 * EPS

mp.dps = 50
m1, m2 = mpf(X1), mpf(X2)
# closed forms of the notes' trace, tangents (x-dot = (1, 0)) and adjoints (v7-bar = 1,
# the v2-bar rule corrected): see reference.py
V, VDOT, VBAR = NOTES_V, NOTES_VDOT, NOTES_VBAR

# analytic partial derivatives of f (independent of the trace)
DF_DX1 = m2 + m2 * mp.exp(m1 * m2)
DF_DX2 = m1 + m1 * mp.exp(m1 * m2) - mp.cos(m2)


def f(x1, x2):
    v1 = x1
    v2 = x2
    v3 = v1 * v2
    v4 = np.sin(v2)
    v5 = np.exp(v3)
    v6 = v3 - v4
    v7 = v5 + v6
    return v7


def f_compact(x1, x2):
    return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)


def assert_rel(got, expected, what, rtol=RTOL):
    assert rel_close(got, expected, rtol), f"{what}: got {got!r}, expected {mp.nstr(expected, 20)}"


# ---------------------------------------------------------------- the closed forms themselves


def test_closed_forms_are_consistent():
    """Sanity of the test's own closed forms: the trace's adjoints/tangents equal the
    analytic partials of f (so the tape is compared with the right numbers)."""
    assert abs(VBAR[1] - DF_DX1) < mpf(10) ** -40
    assert abs(VBAR[2] - DF_DX2) < mpf(10) ** -40
    assert abs(VDOT[7] - DF_DX1) < mpf(10) ** -40
    # and with a 50-digit central difference of f (h = 1e-15: truncation ~1e-30)
    h = mpf(10) ** -15
    fm = lambda a, b: a * b + mp.exp(a * b) - mp.sin(b)
    assert abs((fm(m1 + h, m2) - fm(m1 - h, m2)) / (2 * h) - DF_DX1) < mpf(10) ** -25
    assert abs((fm(m1, m2 + h) - fm(m1, m2 - h)) / (2 * h) - DF_DX2) < mpf(10) ** -25


# ---------------------------------------------------------------- the tape


@pytest.fixture
def tape():
    return fd.record(f, X1, X2)


def _slots(tape):
    """Map the notes' v1..v7 to tape slots, asserting the record structure on the way."""
    recs = tape.records()
    ops = [r[0] for r in recs]
    assert ops == ["multiply", "sin", "exp", "subtract", "add"], recs
    s1, s2 = tape.input_slots
    (_, s3, o3), (_, s4, o4), (_, s5, o5), (_, s6, o6), (_, s7, o7) = recs
    return {1: s1, 2: s2, 3: s3, 4: s4, 5: s5, 6: s6, 7: s7}, (o3, o4, o5, o6, o7)


def test_tape_records_ops_in_order_with_operand_slots(tape):
    slots, (o3, o4, o5, o6, o7) = _slots(tape)
    assert tape.n_inputs == 2
    assert len(tape.input_slots) == 2
    assert len(tape) == 5
    assert tuple(o3) == (slots[1], slots[2])          # v3 = v1 * v2
    assert tuple(o4) == (slots[2],)                   # v4 = sin(v2)
    assert tuple(o5) == (slots[3],)                   # v5 = exp(v3)
    assert tuple(o6) == (slots[3], slots[4])          # v6 = v3 - v4
    assert tuple(o7) == (slots[5], slots[6])          # v7 = v5 + v6
    assert tape.output_slot == slots[7]
    assert len(set(slots.values())) == 7              # seven distinct variables
    for r in tape.records():
        assert isinstance(r[0], str) and isinstance(r[1], int) and isinstance(r[2], tuple)


def test_primal_values_v1_to_v7(tape):
    slots, _ = _slots(tape)
    out = tape.forward([X1, X2])
    assert isinstance(out, float)
    assert_rel(out, V[7], "forward() output")
    values = tape.values
    for i in range(1, 8):
        assert_rel(values[slots[i]], V[i], f"v{i}")
    # the closed forms are also the obvious math-module numbers
    assert values[slots[4]] == pytest.approx(math.sin(0.5), rel=RTOL)
    assert values[slots[5]] == pytest.approx(math.exp(0.75), rel=RTOL)


def test_tangents_v1_to_v7_with_xdot_1_0(tape):
    slots, _ = _slots(tape)
    tape.forward([X1, X2])
    out = tape.tangent([1.0, 0.0])
    assert isinstance(out, float)
    assert_rel(out, VDOT[7], "tangent() output")
    tangents = tape.tangents
    for i in range(1, 8):
        assert_rel(tangents[slots[i]], VDOT[i], f"v{i}-dot")
    # explicit numbers of the notes' forward sweep
    assert tangents[slots[1]] == 1.0
    assert tangents[slots[2]] == 0.0
    assert tangents[slots[3]] == 0.5          # v1*0 + 1*v2
    assert tangents[slots[4]] == 0.0          # 0 * cos(v2)
    assert tangents[slots[6]] == 0.5          # v3dot - v4dot


def test_tangents_with_xdot_0_1(tape):
    slots, _ = _slots(tape)
    tape.forward([X1, X2])
    out = tape.tangent([0.0, 1.0])
    assert_rel(out, DF_DX2, "tangent (0,1)")
    t = tape.tangents
    assert_rel(t[slots[3]], m1, "v3-dot")
    assert_rel(t[slots[4]], mp.cos(m2), "v4-dot")
    assert_rel(t[slots[5]], m1 * mp.exp(m1 * m2), "v5-dot")


def test_adjoints_v1_to_v7(tape):
    slots, _ = _slots(tape)
    tape.forward([X1, X2])
    grad = tape.reverse()
    assert isinstance(grad, np.ndarray) and grad.shape == (2,)
    assert_rel(grad[0], VBAR[1], "input adjoint x1")
    assert_rel(grad[1], VBAR[2], "input adjoint x2")
    adj = tape.adjoints
    for i in range(1, 8):
        assert_rel(adj[slots[i]], VBAR[i], f"v{i}-bar")
    assert adj[slots[7]] == 1.0
    assert adj[slots[6]] == 1.0
    assert adj[slots[5]] == 1.0
    assert adj[slots[4]] == -1.0


def test_adjoint_v2_uses_corrected_rule_not_the_notes_typo(tape):
    """The notes print v2-bar = v2-bar*v1 + v4-bar*cos(v2).  Read literally (v2-bar is 0
    before it is computed, as in any adjoint accumulation), that gives -cos(0.5) ~ -0.88;
    the correct rule v3-bar*v1 + v4-bar*cos(v2) gives ~3.80.  The tape must give the latter."""
    slots, _ = _slots(tape)
    tape.forward([X1, X2])
    tape.reverse()
    got = tape.adjoints[slots[2]]
    typo = mpf(0) * V[1] + VBAR[4] * mp.cos(V[2])
    assert abs(typo - VBAR[2]) > 1            # the two rules really differ here
    assert not rel_close(got, typo, 1e-3)
    assert_rel(got, VBAR[2], "v2-bar")
    assert_rel(got, DF_DX2, "v2-bar == df/dx2")


def test_reverse_with_seed_scales_adjoints(tape):
    tape.forward([X1, X2])
    g = tape.reverse(seed=2.0)
    assert_rel(g[0], 2 * VBAR[1], "seed 2, x1")
    assert_rel(g[1], 2 * VBAR[2], "seed 2, x2")


def test_tape_replays_at_new_point(tape):
    """forward() at a new point recomputes the values (the tape is reusable)."""
    a, b = -0.75, 2.0
    ma, mb = mpf(a), mpf(b)
    out = tape.forward([a, b])
    assert_rel(out, ma * mb + mp.exp(ma * mb) - mp.sin(mb), "forward at new point", 16 * EPS)
    g = tape.reverse()
    assert_rel(g[0], mb + mb * mp.exp(ma * mb), "d/dx1 at new point", 16 * EPS)
    assert_rel(g[1], ma + ma * mp.exp(ma * mb) - mp.cos(mb), "d/dx2 at new point", 16 * EPS)
    # and back at the notes' point
    assert_rel(tape.forward([X1, X2]), V[7], "forward back at notes' point")


# ---------------------------------------------------------------- the high-level API


@pytest.mark.parametrize("fun", [f, f_compact], ids=["trace", "compact"])
def test_grad_both_arguments(fun):
    g = fd.grad(fun, argnums=(0, 1))(X1, X2)
    assert isinstance(g, tuple) and len(g) == 2
    assert type(g[0]) is float and type(g[1]) is float
    assert_rel(g[0], DF_DX1, "df/dx1")
    assert_rel(g[1], DF_DX2, "df/dx2")


@pytest.mark.parametrize("fun", [f, f_compact], ids=["trace", "compact"])
def test_grad_default_argnum(fun):
    g = fd.grad(fun)(X1, X2)
    assert type(g) is float
    assert_rel(g, DF_DX1, "df/dx1")
    assert_rel(fd.grad(fun, argnums=1)(X1, X2), DF_DX2, "df/dx2")


def test_value_and_grad():
    v, g = fd.value_and_grad(f)(X1, X2)
    assert type(v) is float and type(g) is float
    assert_rel(v, V[7], "f")
    assert_rel(g, DF_DX1, "df/dx1")
    v, (g1, g2) = fd.value_and_grad(f, argnums=(0, 1))(X1, X2)
    assert_rel(v, V[7], "f")
    assert_rel(g1, DF_DX1, "df/dx1")
    assert_rel(g2, DF_DX2, "df/dx2")


@pytest.mark.parametrize(
    "tangent",
    [(1.0, 0.0), (0.0, 1.0), (0.25, -0.75)],
)
def test_jvp(tangent):
    v, t = fd.jvp(f, (X1, X2), tangent)
    assert type(v) is float and type(t) is float
    assert_rel(v, V[7], "f")
    expected = mpf(tangent[0]) * DF_DX1 + mpf(tangent[1]) * DF_DX2
    assert_rel(t, expected, f"jvp {tangent}")


def test_grad_replay_agrees_with_closed_form_at_several_points():
    g = fd.grad(f, argnums=(0, 1))
    for a, b in [(X1, X2), (0.3, -1.1), (-2.0, 0.25), (X1, X2)]:
        ma, mb = mpf(a), mpf(b)
        g1, g2 = g(a, b)
        terms1 = [mb, mb * mp.exp(ma * mb)]
        terms2 = [ma, ma * mp.exp(ma * mb), -mp.cos(mb)]
        # each term is computed to ~1 ulp of itself, and the sum can cancel
        # (e.g. 0.3 + 0.216 - 0.454 at (0.3, -1.1)), so the absolute error is
        # a few eps times the sum of the |terms|: allow 8 eps * sum|terms|.
        for got, terms, name in [(g1, terms1, "df/dx1"), (g2, terms2, "df/dx2")]:
            tol = 8 * EPS * sum(abs(t) for t in terms)
            assert abs(mpf(got) - sum(terms)) <= tol, \
                f"{name} at {a, b}: got {got}, expected {sum(terms)}"
    assert g.cache_info()["traces"] == 1
