"""fastad.check_grad: central finite differences against fastad's (or an injected)
derivative.

The references are closed-form derivatives, never fastad's own output: the finite
differences check_grad computes are compared with them (a central difference with
h = cbrt(eps) max(1, |x|) is accurate to ~1e-10 relative for these smooth functions), and
check_grad must catch derivative rules that are wrong, even slightly (1e-4 relative).
"""
import math

import numpy as np
import pytest

from fastad.check import GradCheckError, GradCheckResult, check_grad

X1, X2 = 1.5, 0.5


def notes(x1, x2):
    return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)


def notes_grad(x1, x2):                     # by hand
    e = math.exp(x1 * x2)
    return (x2 + x2 * e, x1 + x1 * e - math.cos(x2))


def rosen(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_grad(x):                          # by hand
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def test_notes_example_passes_and_differences_match_closed_form():
    res = check_grad(notes, X1, X2, argnums=(0, 1), modes=("grad", "jvp"))
    assert isinstance(res, GradCheckResult) and res.ok and bool(res)
    ref = notes_grad(X1, X2)
    for c, r in zip(res.checks[:2], ref):
        assert c.mode == "grad"
        assert abs(c.numeric - r) <= 1e-9 * abs(r)          # the difference itself
        assert abs(c.analytic - r) <= 1e-13 * abs(r)
        assert c.abs_err < 1e-9 and c.rel_err < 1e-9
    assert res.checks[2].mode == "jvp" and res.checks[2].ok
    assert res.max_rel_err < 1e-9
    assert "ok" in str(res)


def test_a_wrong_rule_is_caught():
    # a "custom rule" for sin with the wrong sign of its derivative
    with pytest.raises(GradCheckError) as info:
        check_grad(np.sin, 0.3, grad_fn=lambda x: -np.cos(x))
    assert isinstance(info.value, AssertionError)
    res = info.value.result
    assert not res.ok
    assert abs(res.checks[0].abs_err - 2 * math.cos(0.3)) < 1e-9
    assert "FAILED" in str(info.value)
    res = check_grad(np.sin, 0.3, grad_fn=lambda x: -np.cos(x), raise_on_failure=False)
    assert not res and res.checks[0].ok is False


def test_a_slightly_wrong_rule_is_caught():
    wrong = lambda x1, x2: tuple(g * (1 + 1e-4) for g in notes_grad(x1, x2))  # noqa: E731
    res = check_grad(notes, X1, X2, argnums=(0, 1), grad_fn=wrong, raise_on_failure=False)
    assert not res.ok
    assert all(abs(c.rel_err - 1e-4) < 1e-6 for c in res.checks)


def test_a_wrong_forward_rule_is_caught():
    def wrong_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return np.sin(x), t * np.sin(x)          # should be t * cos(x)
    with pytest.raises(GradCheckError):
        check_grad(np.sin, 0.7, modes=("jvp",), jvp_fn=wrong_jvp)
    check_grad(np.sin, 0.7, modes="jvp",
               jvp_fn=lambda p, t: (np.sin(p[0]), t[0] * np.cos(p[0])))


def test_array_argument_wrong_component_is_located():
    x = np.linspace(-1.0, 1.5, 7)
    res = check_grad(rosen, x, grad_fn=rosen_grad)
    assert res.ok and np.max(np.abs(res.checks[0].numeric - rosen_grad(x))) < 1e-6
    res = check_grad(rosen, x)                   # fastad's own gradient
    assert res.ok

    def corrupted(x):
        g = rosen_grad(x)
        g[4] += 1e-3
        return g
    with pytest.raises(GradCheckError) as info:
        check_grad(rosen, x, grad_fn=corrupted)
    c = info.value.result.checks[0]
    assert c.worst == 4 and abs(c.abs_err - 1e-3) < 1e-6
    assert "[4]" in str(info.value)


def test_step_choice():
    res = check_grad(lambda x: x ** 3, 1000.0)
    c = res.checks[0]
    assert c.step == pytest.approx(np.finfo(float).eps ** (1 / 3) * 1000.0, rel=1e-12)
    assert abs(c.numeric - 3e6) <= 1e-9 * 3e6
    res = check_grad(lambda x: x ** 3, 1e-3, eps=1e-4)
    assert res.checks[0].step == 1e-4
    assert res.ok


def test_large_value_small_derivative_is_not_a_false_alarm():
    # the rounding noise of f(x +- h) ~ 1e8 eps / h is allowed for
    check_grad(lambda x: 1e8 + x ** 2 + np.cos(x), 0.25)


def test_static_arguments_and_argnums():
    def f(x, n, y):
        return x ** n * y
    res = check_grad(f, 2.0, 3, 1.5, argnums=(0, 2), modes=("grad", "fwd"))
    assert [c.argnum for c in res.checks[:2]] == [0, 2]
    assert abs(res.checks[0].numeric - 3 * 4.0 * 1.5) < 1e-8
    assert abs(res.checks[1].numeric - 8.0) < 1e-8


def test_sampled_elements_of_a_large_array():
    x = np.linspace(0.0, 1.0, 5000)
    res = check_grad(lambda x: np.sum(np.sin(x) ** 2), x, max_elements=20)
    assert res.ok and res.checks[0].checked == 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        check_grad(np.sin, 0.3, modes=("hvp",))
    with pytest.raises(TypeError, match="real scalar"):
        check_grad(lambda x: np.array([x, x]), 0.3, grad_fn=lambda x: 1.0)
    with pytest.raises(TypeError, match="argnums"):
        check_grad(np.sin, 0.3, argnums="0")
    with pytest.raises(ValueError, match="out of range"):
        check_grad(np.sin, 0.3, argnums=1)
    with pytest.raises(ValueError, match="eps"):
        check_grad(np.sin, 0.3, eps=-1.0)
