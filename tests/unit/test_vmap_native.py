"""fastad.vmap's batched sweeps compiled to C (fastad._codegen_batch, fastad.native_batch;
docs/native.md, "Batched sweeps").

The reference for every lane is the single call of the same transform, interpreted
(native="never") and native (native="always"): compiled batches must equal both *bit for
bit* (same op table rules, same libm or numpy loop per element, same order of every sum).
Independent references: the Rosenbrock gradient's closed form and central differences
(the op mixes; tolerance 1e-6 relative, far above their O(h^2) ~ 1e-8 error with h =
1e-5 and well below any real error).  Each distinct tape compiles once (~0.3 s) into a
temporary cache directory shared by the module.
"""
import os
import sys

import numpy as np
import pytest

import fastad as fd
from fastad import native, native_batch
from reference import EPS, rosen_grad, rosen_loop

pytestmark = pytest.mark.skipif(native.compiler()[0] is None, reason="no C compiler")


sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_env import cache_dir  # noqa: E402,F401 (autouse: a private cache, -Werror on the C)


@pytest.fixture(scope="module", autouse=True)
def native_default():
    """FASTAD_NATIVE at its default: the tier's own policy is what these tests check."""
    old = os.environ.pop("FASTAD_NATIVE", None)
    yield
    if old is not None:
        os.environ["FASTAD_NATIVE"] = old


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float64).tobytes()


def states(vm):
    return vm.cache_info()["batch_native"]


def leaves(t):
    if isinstance(t, (tuple, list)):
        return [x for e in t for x in leaves(e)]
    return [t]


def singles(g, X):
    """The single calls' results at every point (rows of X, or of each array of a tuple
    X), stacked leaf by leaf (a tuple when the result is one)."""
    args = X if isinstance(X, tuple) else (X,)
    out = [g(*[a[i] for a in args]) for i in range(len(args[0]))]
    if isinstance(out[0], tuple):
        return tuple(np.array([leaves(o)[k] for o in out]) for k in range(len(leaves(out[0]))))
    return np.array(out)


def assert_lanes_equal_single_calls(fun, X, transform=fd.grad, **kw):
    """vmap of the compiled transform equals the interpreted and the native single call
    at every point, bit for bit; returns the batch."""
    gn = transform(fun, native="always", **kw)
    gi = transform(fun, native="never", **kw)
    vm = fd.vmap(gn)
    got = vm(*X) if isinstance(X, tuple) else vm(X)
    assert "native" in states(vm), states(vm)
    for ref in (singles(gn, X), singles(gi, X)):
        if isinstance(got, tuple):
            assert len(leaves(got)) == len(ref)
            for a, b in zip(leaves(got), ref):
                assert bits(a) == bits(b)
        elif isinstance(got, list):         # a list output: one batched array per entry
            assert bits(np.moveaxis(np.asarray(got), 0, 1)) == bits(ref)
        else:
            assert bits(got) == bits(ref)
    return got


def central(f, x, h=1e-5):
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# ------------------------------------------------------------------ the functions

def mix_loop(x):
    """A Python loop of transcendental ops, divisions, powers, constants and guards."""
    s = 0.0
    for i in range(len(x) - 1):
        a, b = x[i], x[i + 1]
        s = s + (np.exp(0.3 * a) * np.log(1.5 + a * a) - np.sin(a) * np.cos(b)
                 + np.tanh(a - b) / (2.0 + b * b) + np.sqrt(1.0 + a * a) * (np.abs(b) + 1.0) ** 1.5)
    return s + max(x[0], 0.25) * x[1]       # a guard: two patterns over the batch


def mix_vec(x):
    """The same kinds of ops as array records (numpy's loops past 16 elements)."""
    y = np.exp(0.3 * x) * np.log(1.5 + x * x) + np.sin(x) * np.cos(x[::-1])
    z = np.tanh(x[:-1] - x[1:]) / (2.0 + x[1:] ** 2) + (np.abs(x) + 1.0)[1:] ** 1.5
    return np.sum(y) + np.sum(z * x[:-1] * x[1:]) + np.sum(np.cumsum(x) * 0.5)


def chain(x):
    """x[k] * x[k+1]: a record whose two operand ranges straddle (its reverse loops stay
    separate in the compiled code)."""
    s = 0.0
    for i in range(len(x) - 1):
        s = s + x[i] * x[i + 1] + x[i] ** 3
    return s


def branchy(x):
    if x[0] > 0:
        return x[0] ** 2 * x[1] + np.exp(x[1])
    elif x[1] > 0:
        return np.sin(x[0]) * x[1]
    return x[0] - 3.0 * x[1]


def branchy_grad(x):
    if x[0] > 0:
        return np.array([2 * x[0] * x[1], x[0] ** 2 + np.exp(x[1])])
    if x[1] > 0:
        return np.array([np.cos(x[0]) * x[1], np.sin(x[0])])
    return np.array([1.0, -3.0])


# ------------------------------------------------------------------ tests

def test_rosenbrock_loop_bit_for_bit_and_closed_form():
    X = np.random.default_rng(0).uniform(-2, 2, size=(333, 100))   # 333: a short last block
    got = assert_lanes_equal_single_calls(rosen_loop, X)
    ref = np.array([rosen_grad(x) for x in X])
    np.testing.assert_allclose(got, ref, rtol=1e3 * EPS, atol=1e3 * EPS * np.abs(ref).max())


@pytest.mark.parametrize("fun,n", [(mix_loop, 6), (mix_loop, 24), (mix_vec, 5),
                                   (mix_vec, 24), (chain, 30)])
def test_op_mixes_bit_for_bit_and_differences(fun, n):
    X = np.random.default_rng(n).uniform(-1.5, 1.5, size=(37, n))
    got = assert_lanes_equal_single_calls(fun, X)
    for x, g in zip(X[:5], got[:5]):
        np.testing.assert_allclose(g, central(fun, x), rtol=1e-6, atol=1e-6)
    vals, grads = assert_lanes_equal_single_calls(fun, X, fd.value_and_grad)
    assert bits(grads) == bits(got)
    np.testing.assert_allclose(vals, [fun(x) for x in X], rtol=1e-13)


def test_plain_function_values_bit_for_bit():
    X = np.random.default_rng(5).uniform(-1.5, 1.5, size=(41, 24))
    vm = fd.vmap(mix_vec)
    vm(X)                                   # traces; the tape's policy is "auto"
    native_batch.kernel(vm.target.tapes()[0]).build()
    got = vm(X)
    assert states(vm) == ["native"]
    ref = singles(fd.value_and_grad(mix_vec, native="never"), X)[0]
    assert bits(got) == bits(ref)


def test_branches_exact_per_lane_and_traced_once_per_pattern():
    X = np.random.default_rng(7).normal(size=(300, 2))
    gn = fd.grad(branchy, native="always")
    vm = fd.vmap(gn)
    got = vm(X)
    info = vm.cache_info()
    assert info["traces"] == 3 and info["batch_traced"] == 2
    assert states(vm) == ["native"] * 3
    assert bits(got) == bits(singles(fd.grad(branchy, native="never"), X))
    np.testing.assert_allclose(got, [branchy_grad(x) for x in X], rtol=1e-14, atol=1e-14)
    vm(X[::-1])                             # every pattern known now: nothing traced
    assert vm.cache_info()["traces"] == 3


def test_nan_and_inf_rows_stay_in_their_rows():
    X = np.random.default_rng(8).uniform(-2, 2, size=(20, 100))
    X[3, 7] = np.nan
    X[11, 0] = np.inf
    X[12, 99] = -np.inf
    got = assert_lanes_equal_single_calls(rosen_loop, X)
    assert np.isnan(got[3, 6:9]).all() and np.isfinite(got[4]).all()
    clean = [i for i in range(20) if i not in (3, 11, 12)]
    np.testing.assert_allclose(got[clean], [rosen_grad(X[i]) for i in clean], rtol=1e-12)


def test_branch_taken_by_nan_lane():
    X = np.array([[1.0, 2.0], [np.nan, 1.0], [-1.0, np.nan], [-1.0, -2.0]])
    assert_lanes_equal_single_calls(branchy, X)


def test_empty_batch_and_workers_identical():
    vm = fd.vmap(fd.grad(rosen_loop, native="always"))
    assert vm(np.zeros((0, 100))).shape == (0, 100)
    X = np.random.default_rng(9).uniform(-2, 2, size=(1000, 100))
    one = vm(X)
    assert states(vm) == ["native"]
    two = fd.vmap(vm.fun, workers=2)(X)
    assert bits(one) == bits(two)
    lanes = X[::-3]                         # not contiguous: copied, lanes in another order
    assert bits(vm(lanes)) == bits(one[::-3])


def test_background_compile_when_hot_and_cache_reuse(cache_dir):  # noqa: F811 (the fixture)
    def f(x):                               # a tape of its own (not compiled before)
        s = 0.0
        for i in range(len(x) - 1):
            s = s + (x[i + 1] - x[i]) ** 2 * 3.0 + x[i] / (1.0 + x[i] * x[i])
        return s
    X = np.random.default_rng(10).uniform(-1, 1, size=(64, 12))
    native.set_hot_scale(1e-9)              # hot after the first batch
    try:
        vm = fd.vmap(fd.grad(f))
        first = vm(X)                       # interpreted; starts the compile
        tape = vm.target.tapes()[0]
        native_batch.wait(tape)
        assert native_batch.state(tape) == "native"
        assert bits(vm(X)) == bits(singles(fd.grad(f, native="never"), X))
        np.testing.assert_allclose(first, vm(X), rtol=1e-14)
        n_objects = len([p for p in os.listdir(os.path.join(cache_dir, "native"))
                         if p.startswith("fastad-batch-")])
        vm2 = fd.vmap(fd.grad(f))           # a new tape of the same records
        vm2(X)
        k = native_batch.kernel(vm2.target.tapes()[0])
        assert k.state == "native" and k.seconds == 0.0     # loaded, not compiled
        assert len([p for p in os.listdir(os.path.join(cache_dir, "native"))
                    if p.startswith("fastad-batch-")]) == n_objects
    finally:
        native.set_hot_scale(1.0)


def test_off_without_native_code(monkeypatch):
    def f(x):
        return np.sum(np.sin(x) * x)
    X = np.random.default_rng(11).normal(size=(40, 5))
    ref = singles(fd.grad(f, native="never"), X)
    monkeypatch.setenv("FASTAD_NATIVE", "0")
    with pytest.warns(RuntimeWarning, match="FASTAD_NATIVE=0") if \
            "native code is disabled by FASTAD_NATIVE=0" not in native._warned else _nothing():
        vm = fd.vmap(fd.grad(f))
        got = vm(X)
    assert states(vm) == ["interpreted (native code is off for this tape)"]
    np.testing.assert_allclose(got, ref, rtol=64 * EPS)
    monkeypatch.setenv("FASTAD_NATIVE", "1")
    vm = fd.vmap(fd.grad(f, native="never"))
    vm(X)
    assert states(vm) == ["interpreted (native code is off for this tape)"]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_no_compiler_and_unsupported_records_stay_interpreted(monkeypatch):
    def f(x):
        return np.sum(np.cos(x) * x * 1.25)
    X = np.random.default_rng(12).normal(size=(30, 4))
    ref = singles(fd.grad(f, native="never"), X)
    monkeypatch.setenv("CC", "/nonexistent/fastad-test-cc")
    with pytest.warns(RuntimeWarning):
        vm = fd.vmap(fd.grad(f, native="always"))
        got = vm(X)
    assert states(vm)[0].startswith("interpreted (no C compiler found")
    np.testing.assert_allclose(got, ref, rtol=64 * EPS)
    monkeypatch.delenv("CC")

    def p(x):                               # a PROD record: not in the batched generator
        return np.prod(x) + np.sum(x * x)
    vm = fd.vmap(fd.grad(p, native="always"))
    got = vm(X)
    assert states(vm) == ["interpreted (the tape has a PROD record, which the batched "
                          "code generator does not compile)"]
    np.testing.assert_allclose(got, [[np.prod(x) / x[i] + 2 * x[i] for i in range(4)]
                                     for x in X], rtol=1e-13)


def test_long_tape_generated_in_the_background(monkeypatch):
    """Tapes past GENERATE_NOW records get their C written by the compile's thread (not
    in a call); the object then also comes from the cache there."""
    monkeypatch.setattr(native_batch, "GENERATE_NOW", 0)

    def f(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + (2.0 + x[i] * x[i + 1]) * 0.5 / (3.0 + x[i + 1] * x[i + 1])
        return s
    X = np.random.default_rng(13).uniform(-1, 1, size=(50, 9))
    ref = singles(fd.grad(f, native="never"), X)
    native.set_hot_scale(1e-9)
    try:
        for _ in range(2):                  # compiled, then loaded from the cache
            vm = fd.vmap(fd.grad(f))
            vm(X)                           # hot at once: the compile's thread starts
            tape = vm.target.tapes()[0]
            native_batch.wait(tape)
            assert native_batch.state(tape) == "native"
            assert bits(vm(X)) == bits(ref)
        assert native_batch.kernel(tape).seconds == 0.0
    finally:
        native.set_hot_scale(1.0)


def test_auto_leaves_libm_heavy_scalar_tapes_to_the_interpreter():
    """exp and sin of scalars: compiled, each lane calls libm (the single call's bits),
    slower than the interpreter's SIMD loops; "auto" keeps the interpreter, "always"
    compiles."""
    def notes_f(x1, x2):
        return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)
    x1, x2 = np.random.default_rng(14).normal(size=(2, 50))

    def auto_keeps_the_interpreter():
        native.set_hot_scale(1e-9)
        try:
            vm = fd.vmap(fd.value_and_grad(notes_f, argnums=(0, 1)))
            vm(x1, x2)
            assert states(vm)[0].startswith("interpreted (per lane, libm's")
        finally:
            native.set_hot_scale(1.0)
    auto_keeps_the_interpreter()
    vals, (g1, g2) = assert_lanes_equal_single_calls(notes_f, (x1, x2), fd.value_and_grad,
                                                     argnums=(0, 1))
    # "always" left its object in the cache: "auto" still does not take it (the tier, and
    # so the speed, never depends on what another run compiled)
    auto_keeps_the_interpreter()
    e = np.exp(x1 * x2)
    np.testing.assert_allclose(g1, x2 + x2 * e, rtol=1e-14)
    np.testing.assert_allclose(g2, x1 + x1 * e - np.cos(x2), rtol=1e-14, atol=1e-15)


def recurrence(x):
    """A carried value (LOOP records, csrc/loop.h), a guard inside the loop's body."""
    s = 0.0
    for i in range(len(x)):
        s = 0.9 * s + x[i] * x[i] - 0.1 * s * x[i]
        s = max(s, -100.0)
    return s


def oscillator(x):
    y, v = x[0], x[1]
    for _ in range(60):
        y, v = y + 0.01 * v, v - 0.01 * (y * y * y - y) - 0.001 * v
    return y * y + v


@pytest.mark.parametrize("fun,n", [(recurrence, 30), (oscillator, 2)])
def test_loop_records_bit_for_bit_and_differences(fun, n):
    X = np.random.default_rng(15).uniform(-1, 1, size=(45, n))
    gi = fd.grad(fun, native="never")
    gi(X[0])
    assert any(p.name == "LOOP" for p in _records(gi.tapes()[0]))
    got = assert_lanes_equal_single_calls(fun, X)
    for x, g in zip(X[:4], got[:4]):
        np.testing.assert_allclose(g, central(fun, x), rtol=1e-6, atol=1e-7)


def _records(tape):
    from fastad import _codegen, _native
    return _codegen.parse(_native.raw_records(tape))


def vector_f(x):
    return [x[0] * x[1], np.exp(x[1]) + x[2] * x[0], np.sin(x[2]) * x[2] ** 2]


@pytest.mark.parametrize("transform", [fd.jacfwd, fd.jacrev, fd.jacobian])
def test_jacobians_compiled_bit_for_bit(transform):
    """Tangent sweeps (jacfwd) and several reverse seeds (jacrev) compiled too."""
    X = np.random.default_rng(16).normal(size=(29, 3))
    got = np.moveaxis(np.asarray(assert_lanes_equal_single_calls(vector_f, X, transform)),
                      0, 1)
    for x, J in zip(X[:3], got[:3]):
        ref = np.array([[x[1], x[0], 0.0], [x[2], np.exp(x[1]), x[0]],
                        [0.0, 0.0, np.cos(x[2]) * x[2] ** 2 + 2 * x[2] * np.sin(x[2])]])
        np.testing.assert_allclose(J, ref, rtol=1e-14, atol=1e-15)


def test_hessian_compiled_bit_for_bit():
    def f(x):
        return np.sum(np.sin(x) * x[::-1]) + x[0] * x[1] ** 3
    X = np.random.default_rng(17).normal(size=(23, 3))
    got = assert_lanes_equal_single_calls(f, X, fd.hessian)
    x = X[0]
    H = np.diag(-np.sin(x) * x[::-1]) + np.diag(np.cos(x)) @ np.eye(3)[::-1] \
        + (np.diag(np.cos(x)) @ np.eye(3)[::-1]).T
    H[0, 1] += 3 * x[1] ** 2
    H[1, 0] += 3 * x[1] ** 2
    H[1, 1] += 6 * x[0] * x[1]
    np.testing.assert_allclose(got[0], H, rtol=1e-13, atol=1e-14)


@pytest.mark.skipif(not fd.batching.vector_math_available(), reason="no libmvec")
def test_vector_math_keeps_the_interpreters_sweep_for_sin_and_cos():
    """set_vector_math(True) asks for libmvec's sin and cos: a compiled tape with them
    then runs the interpreter's sweep (the same bits as a never-compiled one)."""
    def f(x):
        return np.sum(np.sin(x) * np.cos(2.0 * x))
    X = np.random.default_rng(18).normal(size=(64, 40))
    vn = fd.vmap(fd.grad(f, native="always"))
    vi = fd.vmap(fd.grad(f, native="never"))
    libm = vn(X)
    assert states(vn) == ["native"]
    prev = fd.batching.set_vector_math(True)
    try:
        vector = vn(X)
        assert states(vn)[0].startswith("interpreted (libmvec's sin and cos")
        assert bits(vector) == bits(vi(X))
        assert bits(vector) != bits(libm)   # libmvec's values, not libm's, were asked
    finally:
        fd.batching.set_vector_math(prev)
    assert bits(vn(X)) == bits(libm)
    np.testing.assert_allclose(libm, np.cos(X) * np.cos(2 * X) - 2 * np.sin(X) * np.sin(2 * X),
                               rtol=1e-13, atol=1e-14)


def rosen_vec(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_fused_chains_stay_interpreted_and_equal_the_single_call(monkeypatch):
    """A fused chain's final sum is added in 8 partial sums by both single-call tiers
    (docs/design.md, "Fusion"); the batched generator writes one running sum, so such a
    tape is refused, and its lanes equal the single call bit for bit."""
    monkeypatch.setenv("FASTAD_FUSE_MIN_N", "1")
    X = np.random.default_rng(21).normal(size=(16, 300))
    for transform in (fd.value_and_grad, fd.grad):
        gn = transform(rosen_vec, native="always")
        vm = fd.vmap(gn)
        got = vm(X)
        assert states(vm)[0].startswith("interpreted (the tape has fused chains"), states(vm)
        for ref in (singles(gn, X), singles(transform(rosen_vec, native="never"), X)):
            for a, b in zip(leaves(got), ref if isinstance(ref, tuple) else (ref,)):
                assert bits(a) == bits(b)
    np.testing.assert_allclose(got, [rosen_grad(x) for x in X], rtol=1e-13, atol=1e-12)


def test_tapes_too_big_for_compiled_blocks_stay_interpreted(monkeypatch):
    """8 lanes of 4.7e5 slots would take 90 MB of blocks per thread: the interpreter
    sweeps such a tape lane by lane instead."""
    monkeypatch.setenv("FASTAD_FUSE_MIN_N", str(10**9))
    def f(x):
        return np.sum(x * x * 0.5)
    X = np.random.default_rng(22).normal(size=(3, 1 << 18))
    vm = fd.vmap(fd.grad(f, native="always"))
    got = vm(X)
    assert states(vm)[0].startswith("interpreted (a block of 8 lanes"), states(vm)
    assert bits(got) == bits(X)                 # d/dx sum(x*x*0.5) = x, exactly


def test_a_failing_background_build_is_reported_not_raised(monkeypatch, tmp_path):
    """Anything a build raises (here the compiler call) ends in the state, the batch stays
    interpreted and right."""
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path))
    real = native.compile_c

    def boom(*a, prefix="fastad-", **k):       # the batched build's compile only
        if prefix == "fastad-batch-":
            raise RuntimeError("compiler exploded")
        return real(*a, prefix=prefix, **k)
    monkeypatch.setattr(native, "compile_c", boom)
    X = np.random.default_rng(23).normal(size=(20, 30))
    vm = fd.vmap(fd.grad(rosen_loop, native="always"))
    got = vm(X)
    assert states(vm) == ["interpreted (RuntimeError: compiler exploded)"]
    np.testing.assert_allclose(got, [rosen_grad(x) for x in X], rtol=1e-13, atol=1e-12)
