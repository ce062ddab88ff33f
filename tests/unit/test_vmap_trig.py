"""sin and cos in fd.vmap's batched sweeps (docs/scale.md "sin and cos of a batch"):

* libm mode (the default; fastad.batching.set_vector_math(False)): glibc's sincos computes both of a
  record's lanes at once; every value and derivative must be libm's separate sin and cos
  bit for bit (math.sin / math.cos are the reference), huge, subnormal, +-0, inf and nan
  arguments included, for scalar records, array records and tangent sweeps.
* vector mode (libmvec, set_vector_math(True)): within the ulp bound of
  docs/conventions.md against mpmath at 120 bits, and deterministic: a point's results do
  not depend on its place in the batch or on the number of threads.
"""
import math

import numpy as np
import pytest

import fastad as fd
from fastad import batching

# docs/conventions.md: the batched sin and cos from libmvec lie within this many ulps of
# the exact value (measured max over 10^6 arguments: benchmarks/vmap_trig_ulps.py), and
# of libm's
VECTOR_ULPS = 4

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
           1e-300, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308,
           math.pi, math.pi / 2, 1e22, 105414350.0, 105414351.0, 2.426265, 0.855469]


@pytest.fixture
def libm_mode():
    prev = batching.set_vector_math(False)
    yield
    batching.set_vector_math(prev)


@pytest.fixture
def vector_mode():
    if not batching.vector_math_available():
        pytest.skip("this build or CPU has no libmvec (glibc, x86-64 with AVX2): libm only")
    prev = batching.set_vector_math(True)
    yield
    batching.set_vector_math(prev)


def arguments(n, seed):
    """Uniform |x| < 10, normal, log-uniform magnitudes from subnormal to 1e301, doubles
    next to k*pi/2 (where sin or cos is tiny), and the special values."""
    rng = np.random.default_rng(seed)
    q = n // 4
    logu = np.ldexp(rng.uniform(0.5, 1, q), rng.integers(-1074, 1001, q)) * rng.choice([-1, 1], q)
    k = rng.integers(1, 10**6, q) * rng.choice([-1, 1], q)
    near = ((k * (math.pi / 2)).view(np.int64) + rng.integers(-32, 33, q)).view(np.float64)
    return np.concatenate([rng.uniform(-10, 10, q), rng.normal(0, 3, q), logu, near, SPECIAL])


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | (a.view(np.int64) == b.view(np.int64))))


def same_values(a, b):
    """Equal, or both NaN (+0.0 and -0.0 alike: a zero partial gives +0.0, the
    absolute-zero products of docs/conventions.md)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def libm(fn, x):
    """fn (math.sin or math.cos: libm) at every element; NaN at inf and nan."""
    return np.array([fn(v) if math.isfinite(v) else math.nan for v in x.tolist()])


def test_libm_mode_is_libm_bit_for_bit(libm_mode):
    x = arguments(200_000, 1)
    s, ds = fd.vmap(fd.value_and_grad(np.sin))(x)
    c, dc = fd.vmap(fd.value_and_grad(np.cos))(x)
    sin_x, cos_x = libm(math.sin, x), libm(math.cos, x)
    assert same_bits(s, sin_x) and same_bits(ds, cos_x)
    assert same_bits(c, cos_x) and same_values(dc, -sin_x)


def test_libm_mode_array_records_and_tangents(libm_mode):
    """The AUX slots of array records (sin over a range of elements of every lane) and the
    tangent sweep (jacfwd) read the kept cos and sin."""
    X = arguments(4_000, 2)[:4000].reshape(1000, 4)
    X[np.abs(X) > 1e300] = 1.0        # sums of huge values would overflow the comparison
    J = fd.vmap(fd.jacfwd(lambda x: np.sin(x) + np.cos(x)))(X)
    Jr = fd.vmap(fd.jacrev(lambda x: np.sin(x) + np.cos(x)))(X)
    ref = np.stack([np.diag(r) for r in libm(math.cos, X.ravel()).reshape(X.shape)
                    - libm(math.sin, X.ravel()).reshape(X.shape)])
    assert same_bits(J, ref) and same_bits(Jr, ref)
    G = fd.vmap(fd.grad(lambda x: np.sum(np.sin(x))))(X)
    assert same_bits(G, libm(math.cos, X.ravel()).reshape(X.shape))


def test_libm_mode_equals_the_single_call(libm_mode):
    """The notes' f except its exp (numpy's SIMD exp may differ by an ulp: a function
    without it), batched against one call per point."""
    def f(x1, x2):
        return x1 * x2 + np.cos(x1 * x2) - np.sin(x2)
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=3000), rng.normal(size=3000) * 5
    g = fd.value_and_grad(f, argnums=(0, 1))
    v, (g1, g2) = fd.vmap(g)(x1, x2)
    one = np.array([[g(a, b)[0], *g(a, b)[1]] for a, b in zip(x1.tolist(), x2.tolist())])
    assert same_bits(np.stack([v, g1, g2], 1), one)


def ulp_error(got, exact):
    u = math.ulp(float(exact))
    return abs(float((mpmath.mpf(got) - exact) / u)) if u else 0.0


mpmath = pytest.importorskip("mpmath")


def test_vector_mode_within_the_bound(vector_mode):
    mpmath.mp.prec = 120
    x = arguments(20_000, 4)
    s, ds = fd.vmap(fd.value_and_grad(np.sin))(x)
    c, dc = fd.vmap(fd.value_and_grad(np.cos))(x)
    assert same_bits(ds, c) and same_values(dc, -s)   # one pass gives both
    worst = 0.0
    for xi, si, ci in zip(x.tolist(), s.tolist(), c.tolist()):
        if not math.isfinite(xi):
            assert math.isnan(si) and math.isnan(ci)
            continue
        cs, sn = mpmath.libmp.mpf_cos_sin(mpmath.mpf(xi)._mpf_, 120)
        worst = max(worst, ulp_error(si, mpmath.mpf(sn)), ulp_error(ci, mpmath.mpf(cs)))
    assert worst <= VECTOR_ULPS, worst
    assert worst > 1.0      # this is libmvec, not libm (whose error stays near 0.5 ulp)
    for got, ref in ((s, libm(math.sin, x)), (c, libm(math.cos, x))):
        ok = np.isfinite(ref)
        apart = np.abs(got[ok].view(np.int64) - ref[ok].view(np.int64))
        assert apart.max() <= VECTOR_ULPS and np.all(np.sign(got[ok]) * np.sign(ref[ok]) >= 0)
    assert s[0 - len(SPECIAL)] == 0.0 and c[0 - len(SPECIAL)] == 1.0     # sin(+-0), cos(0)
    assert math.copysign(1, s[1 - len(SPECIAL)]) == -1.0                  # sin(-0) = -0


def test_vector_mode_is_deterministic(vector_mode):
    """Results per point do not depend on the batch's order, length or thread count."""
    def f(x1, x2):
        return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)
    rng = np.random.default_rng(5)
    x1, x2 = rng.normal(size=5003), rng.normal(size=5003) * 4
    one = fd.vmap(fd.value_and_grad(f, argnums=(0, 1)))
    two = fd.vmap(fd.value_and_grad(f, argnums=(0, 1)), workers=2)
    a, b = one(x1, x2), two(x1, x2)
    perm = rng.permutation(x1.size)
    p = one(x1[perm], x2[perm])
    head = one(x1[:3], x2[:3])          # a short block: the tail of the vector loop
    for u, w, q, h in zip(batching.tree_flatten(a)[0], batching.tree_flatten(b)[0],
                          batching.tree_flatten(p)[0], batching.tree_flatten(head)[0]):
        assert same_bits(u, w) and same_bits(u[perm], q) and same_bits(u[:3], h)
    # and the closed form: d/dx2 = x1 + x1 exp(x1 x2) - cos(x2)
    np.testing.assert_allclose(a[1][1], x1 + x1 * np.exp(x1 * x2) - np.cos(x2),
                               rtol=1e-12, atol=1e-12)
