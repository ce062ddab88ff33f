"""The test reference's error model below the normal range (tests/reference.py, ETA):
a float64 result that underflows is rounded to the subnormal grid, an absolute error the
relative model cannot express.  The bound must cover fastad's subnormal gradients, stay
tight enough to catch a wrong one, and leave normal-range bounds as they were."""
import numpy as np
import pytest

import fastad as fd
from reference import MP, close, numpy_namespace, ref_value_and_grad

pytest.importorskip("scipy")


def make(ns):
    # d/dx erf(1.97 x^3) = 2/sqrt(pi) exp(-(1.97 x^3)^2) * 5.91 x^2: subnormal for x near
    # 2.39, the exp() rounded to the subnormal grid and then multiplied by ~30
    def f(x):
        return abs(0.5 + ns.erf(x ** 3 * 1.97))
    return f


XS = np.linspace(2.386, 2.392, 25)


def test_subnormal_gradients_within_the_bound():
    ns = numpy_namespace()
    g = fd.grad(make(ns))
    subnormal = 0
    for x in XS:
        r = ref_value_and_grad(make(MP), (float(x),), 0)
        got = g(float(x))
        subnormal += 0 < abs(got) < 2.0 ** -1022
        assert close(got, r.grad, r.grad_bound), (x, got, r.grad)
    assert subnormal == len(XS)        # the points do exercise the subnormal range


def test_the_bound_still_catches_a_wrong_gradient():
    # the tolerance here is ~2600-6600 subnormal spacings (64 x the propagated ETA);
    # one part in 10^4 of these gradients is 1.5e5 spacings or more (a wrong derivative
    # rule is off by O(1))
    for x in XS[::6]:
        r = ref_value_and_grad(make(MP), (float(x),), 0)
        wrong = float(r.grad) * (1 + 1e-4)
        assert not close(wrong, r.grad, r.grad_bound), x


def test_normal_range_bounds_unchanged():
    # x*x at 1.5: d = 2x exactly; F = |d| + 2 * |x| * |1| (the two product terms' scale)
    # and no ETA anywhere (every value, partial and term is normal)
    r = ref_value_and_grad(lambda x: x * x, (1.5,), 0)
    assert r.grad == 3 and r.value_bound == 2.25
    assert r.grad_bound == 3 + 2 * 1.5
