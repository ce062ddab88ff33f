"""Compiled colour lanes (docs/sparse.md, "Compiled colour lanes"): the sparse Jacobian and
Hessian of elementwise tapes from generated C, against the interpreted sweeps they replace,
dense derivatives, closed forms and finite differences; the tapes they refuse, the
fallbacks (no compiler, FASTAD_NATIVE=0), the "auto" policy and the disk cache."""
import os
import sys

import numpy as np
import pytest

import fastad as fd
from fastad import sparse

pytest.importorskip("scipy.sparse")
special = pytest.importorskip("scipy.special")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_env import cache_dir  # noqa: E402,F401 (a private cache, -Werror on the C)
from test_sparse_hvp import UNARY, BINARY, rosen, rosen_hessian  # noqa: E402


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    """Compiled lanes at the first call; one target (no clones): same code, faster gcc."""
    monkeypatch.setattr(sparse, "COMPILED_LANES", "always")
    monkeypatch.setenv("FASTAD_NATIVE_CFLAGS",
                       os.environ.get("FASTAD_NATIVE_CFLAGS", "") + " -DFA_NO_CLONES")


def ran_compiled(S):
    return S._last.plan.get("ran_compiled", False)


def interpreted(make, f, *args):
    """The same derivative by the interpreted sweeps (COMPILED_LANES = False)."""
    old, sparse.COMPILED_LANES = sparse.COMPILED_LANES, False
    try:
        return make(f)(*args)
    finally:
        sparse.COMPILED_LANES = old


def close(a, b, rtol=1e-13):
    """Equal up to the order of sums, relative to the largest entry; non-finite alike."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    fin = np.isfinite(b)
    assert np.array_equal(np.isfinite(a), fin)
    assert np.array_equal(a[~fin], b[~fin], equal_nan=True)
    scale = max(np.abs(b[fin]).max(initial=0.0), 1e-300)
    assert np.abs(a[fin] - b[fin]).max(initial=0.0) <= rtol * scale


def banded(x):
    """The benchmark's banded residual (bandwidth 5, padded with constant zeros)."""
    n = x.shape[0]
    xp = np.concatenate([np.zeros(2), x, np.zeros(2)])
    return ((3.0 - 2.0 * x) * x - xp[1:n + 1] - 2.0 * xp[3:n + 3] + 0.5 * np.sin(xp[0:n])
            + xp[4:n + 4] ** 2 + 1.0)


def banded_jacobian(x):
    n = len(x)
    J = np.zeros((n, n))
    i = np.arange(n)
    J[i, i] = 3.0 - 4.0 * x
    J[i[1:], i[:-1]] = -1.0
    J[i[:-2], i[2:]] = 2 * x[2:]
    J[i[:-1], i[1:]] = -2.0
    J[i[2:], i[:-2]] = 0.5 * np.cos(x[:-2])
    return J


def test_banded_jacobian_closed_form_dense_and_interpreted():
    x = np.random.default_rng(0).uniform(-1, 1, 60)
    J = fd.jacobian(banded, sparse=True)
    got = J(x)
    assert ran_compiled(J)
    info = J.info()
    assert info["direction"] == "forward (columns, compiled colour lanes)"
    assert info["compiled"].startswith("compiled in") and info["colours"] == 5
    np.testing.assert_allclose(got.toarray(), banded_jacobian(x), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got.toarray(), fd.jacfwd(banded)(x), rtol=1e-15, atol=0)
    close(got.data, interpreted(lambda f: fd.jacobian(f, sparse=True), banded, x).data)
    vals, jac = J.value_and_jac(x)
    np.testing.assert_allclose(vals, banded(x), rtol=1e-15)
    # a replay at new inputs
    y = x[::-1] * 0.7
    np.testing.assert_allclose(J(y).toarray(), banded_jacobian(y), rtol=1e-14, atol=1e-15)


def test_rosenbrock_hessian_closed_form_gradient_and_interpreted():
    x = np.random.default_rng(1).uniform(-1.5, 1.5, 300)
    H = fd.hessian(rosen, sparse=True)
    g, h = H.value_and_hess(x)
    assert ran_compiled(H) and H._last.plan["ncolours"] == 3
    assert H.info()["direction"] == "forward over reverse on f's tape (compiled colour lanes)"
    assert H.info()["note"] == ""
    np.testing.assert_allclose(h.toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-11)
    np.testing.assert_allclose(g, fd.grad(rosen)(x), rtol=1e-14, atol=1e-12)
    close(h.data, interpreted(lambda f: fd.hessian(f, sparse=True), rosen, x).data)


def unary_chain(x):
    a, b = x[:-1], x[1:]
    y = 0.0
    for U in UNARY:
        y = y + U(a * b + 0.01) * b
    return y


def binary_chain(x):
    a, b = x[:-1], x[1:]
    y = 0.0
    for B in BINARY:
        y = y + B(a, b + 0.05) * (a + 1.0)
    return y


@pytest.mark.parametrize("chain", [unary_chain, binary_chain])
def test_every_elementwise_op(chain):
    """Every op of the table numpy and scipy.special reach, in one elementwise tape: the
    Jacobian of the chain and the Hessian of sum(y^2 + y), compiled against interpreted
    and dense."""
    x = np.random.default_rng(2).uniform(0.1, 0.9, 12)
    J = fd.jacobian(chain, sparse=True)
    got = J(x)
    assert ran_compiled(J), J.info()["compiled"]
    close(got.data, interpreted(lambda f: fd.jacobian(f, sparse=True), chain, x).data)
    np.testing.assert_allclose(got.toarray(), fd.jacfwd(chain)(x), rtol=1e-13, atol=1e-13)

    def f(x):
        y = chain(x)
        return np.sum(y * y + y)
    H = fd.hessian(f, sparse=True)
    got = H(x)
    assert ran_compiled(H), H.info()["compiled"]
    close(got.data, interpreted(lambda f: fd.hessian(f, sparse=True), f, x).data, rtol=1e-12)
    np.testing.assert_allclose(got.toarray(), fd.hessian(f)(x), rtol=1e-11, atol=1e-11)


def test_hessian_with_gathers_of_constants_and_finite_differences():
    """f = |banded(x)|^2 / 2: gathers of a padded vector (constants among the sources) on
    the Hessian path; against the dense Hessian and central differences of the gradient."""
    def f(x):
        return 0.5 * np.sum(banded(x) ** 2)
    x = np.random.default_rng(3).uniform(-1, 1, 60)
    H = fd.hessian(f, sparse=True)
    got = H(x).toarray()
    assert ran_compiled(H)
    np.testing.assert_allclose(got, fd.hessian(f)(x), rtol=1e-12, atol=1e-12)
    g, h = fd.grad(f), 1e-6
    fdiff = np.array([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    np.testing.assert_allclose(got, fdiff, rtol=1e-6, atol=1e-6)   # O(h^2) truncation


def test_data_arguments_and_argnums():
    """Columns that are not the input slots: a data array (no column, new values honoured)
    and the differentiated argument second."""
    def f(c, x):
        return np.sum(c * x[:-1] ** 2 * x[1:] + np.exp(c * x[1:]))
    rng = np.random.default_rng(4)
    c, x = rng.uniform(0.5, 1.5, 19), rng.uniform(-1, 1, 20)
    H = fd.hessian(f, argnums=1, sparse=True)
    for cc in (c, 2 * c):
        got = H(cc, x)
        assert ran_compiled(H)
        np.testing.assert_allclose(got.toarray(), fd.hessian(f, argnums=1)(cc, x),
                                   rtol=1e-13, atol=1e-13)
    J = fd.jacobian(lambda c, x: c * x[:-1] * np.sin(x[1:]), argnums=1, sparse=True)
    got = J(c, x)
    assert ran_compiled(J)
    np.testing.assert_allclose(got.toarray(), fd.jacfwd(lambda x: c * x[:-1] * np.sin(x[1:]))(x),
                               rtol=1e-15, atol=0)


def test_absolute_zero_products_and_non_finite_partials():
    """sqrt at 0 has an infinite partial: the absolute-zero rule (docs/conventions.md) gives
    the interpreted sweeps' infs, NaNs and zeros exactly where they do."""
    def r(x):
        return np.sqrt(x[1:]) * x[:-1] + np.sqrt(x[:-1] * 0.0 + 1.0)
    x = np.tile([0.0, 1.0, 0.0, 4.0, 0.0, 0.0, 9.0], 4)
    J = fd.jacobian(r, sparse=True)
    got = J(x)
    assert ran_compiled(J)
    close(got.data, interpreted(lambda f: fd.jacobian(f, sparse=True), r, x).data)
    assert not np.isfinite(got.data).all()      # the case is a real one

    def f(x):
        return np.sum(np.sqrt(x[1:]) * x[:-1] ** 2)
    H = fd.hessian(f, sparse=True)
    got = H(x)
    assert ran_compiled(H)
    ref = interpreted(lambda f: fd.hessian(f, sparse=True), f, x)
    close(got.data, ref.data)
    assert not np.isfinite(got.data).all()


def scalar_loop(x):
    total = 0.0
    for i in range(len(x) - 1):
        total = total + (x[i + 1] - x[i] ** 2) ** 2
    return total


def many_colours(x):
    return np.sum(x) ** 2 * 0.5 + np.sum(np.sin(x))    # a dense Hessian: n colours


def computed_shift(x):
    y = x ** 2
    return np.sum(y[1:] * y[:-1])                       # a shifted view of a computed range


@pytest.mark.parametrize("f, why", [(scalar_loop, "scalar"),
                                    (computed_shift, "elements"),
                                    (many_colours, "dense")])
def test_refused_tapes_keep_the_interpreted_sweeps(f, why):
    x = np.random.default_rng(5).uniform(-1, 1, 24)
    H = fd.hessian(f, sparse=True)
    got = H(x)
    assert not ran_compiled(H)
    assert H.info()["compiled"].startswith("no (") and why in H.info()["compiled"]
    np.testing.assert_allclose(got.toarray(), fd.hessian(f)(x), rtol=1e-12, atol=1e-12)


def test_more_colours_than_lanes_are_refused():
    def r(x):                       # row i reads x[i], x[i+1] ... x[i+17]: 18 colours
        n = len(x) - 17
        y = x[:n] * 1.0
        for k in range(1, 18):
            y = y + x[k:k + n] * x[k:k + n]
        return y
    x = np.random.default_rng(6).uniform(-1, 1, 200)
    J = fd.jacobian(r, sparse=True)
    got = J(x)
    assert J.info()["colours"] > 16 and not ran_compiled(J)
    assert "at most 16" in J.info()["compiled"]
    np.testing.assert_allclose(got.toarray(), fd.jacfwd(r)(x), rtol=1e-15, atol=0)


def test_no_compiler_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/fastad-test-cc")
    monkeypatch.setattr(sparse, "_lanes_warned", set())
    x = np.random.default_rng(7).uniform(-1, 1, 30)
    J = fd.jacobian(banded, sparse=True)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        got = J(x)
    assert not ran_compiled(J) and "compiling failed" in J.info()["compiled"]
    np.testing.assert_allclose(got.toarray(), banded_jacobian(x), rtol=1e-14, atol=1e-15)


def test_native_off(monkeypatch):
    monkeypatch.setenv("FASTAD_NATIVE", "0")
    x = np.random.default_rng(8).uniform(-1, 1, 30)
    J = fd.jacobian(banded, sparse=True)
    np.testing.assert_allclose(J(x).toarray(), banded_jacobian(x), rtol=1e-14, atol=1e-15)
    assert not ran_compiled(J) and "FASTAD_NATIVE=0" in J.info()["compiled"]


def test_auto_compiles_when_hot_and_loads_from_the_cache(monkeypatch):
    monkeypatch.setattr(sparse, "COMPILED_LANES", "auto")

    def r(x):       # a tape of its own (no other test compiled it into this cache)
        return np.cos(x[1:]) * x[:-1] - 0.25 * x[1:]
    x = np.random.default_rng(9).uniform(-1, 1, 25)
    J = fd.jacobian(r, sparse=True)
    for call in range(1, sparse.LANES_HOT + 2):
        got = J(x)
        assert ran_compiled(J) == (call > sparse.LANES_HOT)
        np.testing.assert_allclose(got.toarray(), fd.jacfwd(r)(x), rtol=1e-15, atol=0)
        if call == sparse.LANES_HOT:      # the compile started in the background
            assert J.info()["compiled"] in ("compiling", "pending") or \
                J.info()["compiled"].startswith("compiled in")
            J._last.plan["cl"].wait(60)
    assert J.info()["compiled"].startswith("compiled in")
    J2 = fd.jacobian(r, sparse=True)     # a new object, same tape: the code is on disk
    J2(x)
    assert ran_compiled(J2) and J2.info()["compiled"] == "from the cache"
    monkeypatch.setattr(sparse, "COMPILED_LANES", False)
    J3 = fd.jacobian(r, sparse=True)
    J3(x)
    assert not ran_compiled(J3) and J3.info()["compiled"].startswith("off")


def test_many_lanes_in_registers():
    """11 and 13 colours (bands): the lanes spill from registers, the values do not move."""
    def r(x, m=11):
        n = len(x) - m + 1
        y = np.sin(x[:n])
        for k in range(1, m):
            y = y + x[k:k + n] * x[:n] * (0.1 * k)
        return y
    x = np.random.default_rng(10).uniform(-1, 1, 120)
    J = fd.jacobian(r, sparse=True)
    got = J(x)
    assert ran_compiled(J) and J.info()["colours"] == 11
    np.testing.assert_allclose(got.toarray(), fd.jacfwd(r)(x), rtol=1e-14, atol=1e-15)

    def f(x):
        return np.sum(r(x, 7))
    H = fd.hessian(f, sparse=True)
    got = H(x)
    assert ran_compiled(H), H.info()["compiled"]
    assert 8 < H.info()["colours"] <= 16
    np.testing.assert_allclose(got.toarray(), fd.hessian(f)(x), rtol=1e-12, atol=1e-12)


def test_outputs_other_than_one_record_are_refused():
    def r(x):
        return {"a": x[1:] * x[:-1], "b": np.sin(x[1:])}
    x = np.random.default_rng(11).uniform(-1, 1, 30)
    J = fd.jacobian(r, sparse=True)
    got = J(x)
    assert not ran_compiled(J) and "one record" in J.info()["compiled"]
    ref = np.vstack([fd.jacfwd(lambda x: r(x)["a"])(x), fd.jacfwd(lambda x: r(x)["b"])(x)])
    np.testing.assert_allclose(got.toarray(), ref, rtol=1e-15, atol=0)


def test_results_are_independent_of_each_other_and_of_the_cache():
    """Each call returns fresh data and index arrays: editing one matrix in place (as
    eliminate_zeros and direct index edits do) leaves the next call's matrix and the
    cached pattern alone; checked against the closed form."""
    x = np.random.default_rng(11).uniform(-1.5, 1.5, 200)
    H = fd.hessian(rosen, sparse=True)
    h1 = H(x)
    assert ran_compiled(H)
    h1.data[:] = 0.0
    h1.indices[:] = 0
    h1.indptr[:] = 0
    h2 = H(x)
    np.testing.assert_allclose(h2.toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-11)
    assert not np.shares_memory(h2.data, h1.data)
    assert not np.shares_memory(h2.indices, h1.indices)
    h2.data[0] = 0.0
    h2.eliminate_zeros()
    h3 = H(x)
    np.testing.assert_allclose(h3.toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-11)
    J = fd.jacobian(banded, sparse=True)
    j1 = J(x)
    j1.indices[:] = 0
    np.testing.assert_allclose(J(x).toarray(), banded_jacobian(x), rtol=1e-15, atol=0)


def test_recovery_by_int64_take_equals_the_int32_gather(monkeypatch):
    """B too large for 32-bit indices falls back to numpy's take: the same bits (forced
    here by lowering the limit), for identity columns and for columns that are not the
    input slots."""
    from fastad import _codegen_lanes
    x = np.random.default_rng(12).uniform(-1.5, 1.5, 150)

    def f(c, x):
        return np.sum(c * x[:-1] ** 2 * x[1:] + np.exp(c * x[1:]))
    c = np.linspace(0.5, 1.5, 149)
    cases = [(lambda: fd.hessian(rosen, sparse=True), (x,)),
             (lambda: fd.hessian(f, argnums=1, sparse=True), (c, x)),
             (lambda: fd.jacobian(banded, sparse=True), (x,))]
    for make, args in cases:
        S32 = make()
        a = S32(*args)
        assert ran_compiled(S32) and S32._last.plan["cl"]._map[1] is not None
        old, _codegen_lanes.INDEX32 = _codegen_lanes.INDEX32, 10
        try:
            S64 = make()
            b = S64(*args)
        finally:
            _codegen_lanes.INDEX32 = old
        assert ran_compiled(S64) and S64._last.plan["cl"]._map[1] is None
        assert np.array_equal(a.data.view(np.uint64), b.data.view(np.uint64))
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.indptr, b.indptr)


def test_read_only_inputs_are_read_not_copied_or_changed():
    """A single input vector is passed through without a copy: a read-only one traces and
    replays (on the compiled and the interpreted path), and is left unchanged."""
    x = np.random.default_rng(13).uniform(-1.5, 1.5, 120)
    ro = x.copy()
    ro.flags.writeable = False
    for compiled in ("always", False):
        old, sparse.COMPILED_LANES = sparse.COMPILED_LANES, compiled
        try:
            H = fd.hessian(rosen, sparse=True)
            for _ in range(2):
                np.testing.assert_allclose(H(ro).toarray(), rosen_hessian(x), rtol=1e-13,
                                           atol=1e-11)
        finally:
            sparse.COMPILED_LANES = old
        assert np.array_equal(ro, x)


def test_tile_by_tile_zeroing_with_scattered_rows():
    """Rows of B = H S touched out of order (permuted gathers of inputs, a broadcast input
    touched by every tile, reversed views) over many tiles: the kernel's per-tile zeroing
    of B and the gradient (Kernel._tile_plan) gives the dense Hessian, the interpreted
    sweeps' values and the gradient, also when B is reused with the previous call's
    values in it."""
    from fastad import _codegen_lanes
    n = 5 * _codegen_lanes.TILE + 37
    rng = np.random.default_rng(14)
    perm = rng.permutation(n - 1)

    def f(x):
        a = x[1:]
        return np.sum(np.sin(a[perm]) * a ** 2 + x[0] * a[::-1] + np.cos(a * x[:-1]))
    x = rng.uniform(-1, 1, n)
    H = fd.hessian(f, sparse=True)
    H(2 * x)
    got = H(x)
    assert ran_compiled(H)
    np.testing.assert_allclose(got.toarray(), fd.hessian(f)(x), rtol=1e-12, atol=1e-12)
    close(got.data, interpreted(lambda f: fd.hessian(f, sparse=True), f, x).data, 1e-12)
    for xx in (x, 2 * x):   # the gradient is zeroed by the kernel too
        np.testing.assert_allclose(H.value_and_hess(xx)[0], fd.grad(f)(xx), rtol=1e-13,
                                   atol=1e-13)
    k = H._last.plan["cl"]
    _, src32, src, z = k._map
    T = len(z) - 1
    assert src32 is not None and T == -(-k.prog.L // _codegen_lanes.TILE)
    assert z[0] == 0 and np.all(np.diff(z) >= 0) and z[-1] <= n
    # the Rosenbrock's rows are zeroed tile by tile, just ahead of the tile's terms
    x = rng.uniform(-1.5, 1.5, n)
    H = fd.hessian(rosen, sparse=True)
    for _ in range(2):      # the second call reuses B, with the first call's values in it
        np.testing.assert_allclose(H(x).toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-11)
    z = H._last.plan["cl"]._map[3]
    assert 0 < z[1] < z[len(z) - 2] < z[-1] <= n


def test_threads_share_one_kernel_and_get_the_serial_bits():
    """Calls from 4 threads at once on one compiled Hessian: the thread that finds B in
    use takes a fresh, unzeroed one (the kernel zeroes it); every result equals the
    serial result for its input bit for bit, and no result shares memory with another."""
    import threading
    n = 3 * 256 + 5
    rng = np.random.default_rng(15)
    xs = [rng.uniform(-1.5, 1.5, n) for _ in range(4)]
    H = fd.hessian(rosen, sparse=True)
    serial = [H.value_and_hess(x) for x in xs]
    assert ran_compiled(H)
    out, errors = {}, []

    def work(t):
        try:
            for r in range(15):
                out[(t, r)] = H.value_and_hess(xs[(t + r) % 4])
        except Exception as err:        # pragma: no cover - reported below
            errors.append(err)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for (t, r), (g, h) in out.items():
        g0, h0 = serial[(t + r) % 4]
        assert np.array_equal(g.view(np.uint64), g0.view(np.uint64))
        assert np.array_equal(h.data.view(np.uint64), h0.data.view(np.uint64))
    mats = [h for _, h in out.values()]     # no two results share a buffer
    for a, b in zip(mats, mats[1:] + mats[:1]):
        for u, v in ((a.data, b.data), (a.indices, b.indices), (a.indptr, b.indptr)):
            assert not np.shares_memory(u, v)


def test_hessian_without_the_gradient_is_the_same_bits(monkeypatch):
    """H(x) runs the kernel without the gradient (fa_lanes_h: G is never written); its
    nonzeros are value_and_hess's bit for bit and the closed form's, on the Rosenbrock
    over several tiles and on a tape with gathers and a broadcast input."""
    from fastad import _codegen_lanes
    n = 3 * _codegen_lanes.TILE + 11
    x = np.random.default_rng(16).uniform(-1.5, 1.5, n)
    calls = []
    H = fd.hessian(rosen, sparse=True)
    g, h = H.value_and_hess(x)
    k = H._last.plan["cl"]
    monkeypatch.setattr(k, "fn", lambda *a: calls.append("fn") or pytest.fail("fa_lanes"))
    only = H(x)
    assert ran_compiled(H) and calls == []
    assert np.array_equal(only.data.view(np.uint64), h.data.view(np.uint64))
    np.testing.assert_allclose(only.toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-11)
    np.testing.assert_allclose(g, fd.grad(rosen)(x), rtol=1e-14, atol=1e-12)

    def f(x):
        a = x[1:]
        return np.sum(np.sin(a[::-1]) * a ** 2 + x[0] * a + np.cos(a * x[:-1]))
    H = fd.hessian(f, sparse=True)
    only = H(x)
    assert ran_compiled(H)
    np.testing.assert_allclose(only.toarray(), fd.hessian(f)(x), rtol=1e-12, atol=1e-12)
    assert np.array_equal(only.data.view(np.uint64),
                          H.value_and_hess(x)[1].data.view(np.uint64))


def test_calls_interpret_while_the_kernel_compiles(monkeypatch):
    """Under "auto" a call never waits for a compile in progress (docs/sparse.md): with
    the compiler held back, later calls return the interpreted values at once."""
    import threading
    from fastad import _codegen_lanes
    monkeypatch.setattr(sparse, "COMPILED_LANES", "auto")
    release, entered = threading.Event(), threading.Event()
    compile_ = _codegen_lanes._compile

    def held(*a, **kw):
        entered.set()
        assert release.wait(60)
        return compile_(*a, **kw)
    monkeypatch.setattr(_codegen_lanes, "_compile", held)

    def r(x):       # a tape of its own: nothing compiled it into this cache
        return np.tan(0.3 * x[1:]) * x[:-1] + 0.5 * x[1:]
    x = np.random.default_rng(21).uniform(-1, 1, 40)
    J = fd.jacobian(r, sparse=True)
    ref = fd.jacfwd(r)(x)
    try:
        for _ in range(sparse.LANES_HOT):
            J(x)
        assert entered.wait(60)             # the background compile is under way, held
        for _ in range(3):                  # these calls would block if they waited for it
            np.testing.assert_allclose(J(x).toarray(), ref, rtol=1e-15, atol=0)
            assert not ran_compiled(J)
            assert J.info()["compiled"] in ("compiling", "pending")
    finally:
        release.set()
    J._last.plan["cl"].wait(60)
    np.testing.assert_allclose(J(x).toarray(), ref, rtol=1e-13, atol=1e-15)
    assert ran_compiled(J)


def test_tile_buffers_beyond_the_stack_bound_are_refused(monkeypatch):
    """A kernel whose tile buffers would exceed MAX_FRAME bytes of stack is not generated:
    the interpreted sweeps run, and info() says why."""
    from fastad import _codegen_lanes
    monkeypatch.setattr(_codegen_lanes, "MAX_FRAME", 4096)     # two tile buffers
    x = np.random.default_rng(22).uniform(-1, 1, 301)
    H = fd.hessian(rosen, sparse=True)
    got = H(x)
    assert not ran_compiled(H)
    assert "stack" in H.info()["compiled"]
    np.testing.assert_allclose(got.toarray(), rosen_hessian(x), rtol=1e-13, atol=1e-12)


def test_known_factors_change_at_most_the_sign_of_a_zero():
    """The generated kernels fold factors and addends the compiler knows (csrc/hv_dual.h,
    FA_HV_FOLD): a known finite nonzero factor is a plain product, a known zero factor or
    addend is dropped.  The values are those of the interpreted sweeps and of the dense
    Hessian (zeros may differ in sign only, docs/sparse.md); the absolute-zero rule still
    holds where a known factor meets an infinite partial (docs/conventions.md)."""
    x = np.tile([0.0, 1.0, -0.0, 4.0, 0.0, 2.0, -1.0], 5)
    H = fd.hessian(rosen, sparse=True)
    got = H(x)
    assert ran_compiled(H)
    ref = interpreted(lambda f: fd.hessian(f, sparse=True), rosen, x)
    np.testing.assert_array_equal(got.toarray(), ref.toarray())     # -0.0 == 0.0
    np.testing.assert_allclose(got.toarray(), rosen_hessian(x), rtol=1e-15, atol=0)
    assert (got.data == 0).any()                 # the case is a real one

    def f(x):       # constant factors and zero constants around sqrt's infinite partials
        return np.sum(3.0 * np.sqrt(x) * x[::-1] - 2.0 * np.sqrt(x) + 0.0 * np.sqrt(x)
                      + 0.0 * x ** 2 + (x - 0.0) * 1.0 - x / 4.0)
    y = np.tile([0.0, 1.0, 4.0, 0.0, 9.0, 0.25], 3)
    H = fd.hessian(f, sparse=True)
    got = H(y)
    assert ran_compiled(H)
    ref = interpreted(lambda f: fd.hessian(f, sparse=True), f, y)
    close(got.data, ref.data)
    assert not np.isfinite(got.data).all()      # infinite partials reached the Hessian
    dense = fd.hessian(f)(y)
    close(got.toarray(), dense)
    # the closed form where x_i > 0: d2f/dx_i^2 = (0.5 - 0.75 x_(n-1-i)) x_i^-1.5 (0.0 *
    # sqrt(x) adds 0 there, and 0, not NaN, where x_i = 0 and its partial is infinite)
    i = np.nonzero(y > 0)[0]
    np.testing.assert_allclose(got.toarray()[i, i],
                               (0.5 - 0.75 * y[::-1][i]) * y[i] ** -1.5, rtol=1e-14)
    g, _ = H.value_and_hess(y)
    close(g, fd.grad(f)(y))


def test_one_pass_flush_is_item_after_item_bit_for_bit(monkeypatch):
    """A run of input-range terms is added to B's rows (and the gradient) in one pass
    (`_Gen._flush_run`): the same terms in the same order per row, so the same bits as
    adding them item after item -- checked over tiles with a short last one, on tapes
    whose runs reach rows at offsets 0..2 and whose gathers split the runs."""
    from fastad import _codegen_lanes

    def f3(x):
        return np.sum(x[2:] * x[:-2] * np.exp(x[1:-1]) + (x[2:] - x[1:-1]) ** 2
                      + x[:-2] ** 3)
    x = np.random.default_rng(9).uniform(-1.5, 1.5, 2 * _codegen_lanes.TILE + 37)
    for f in (rosen, f3, lambda x: 0.5 * np.sum(banded(x) ** 2)):
        got = []
        for one_pass in (True, False):
            with monkeypatch.context() as mp:
                if not one_pass:
                    mp.setattr(_codegen_lanes._Gen, "_flush_run",
                               lambda self, run: self._flush_items(run))
                H = fd.hessian(f, sparse=True)
                g, h = H.value_and_hess(x)
                assert ran_compiled(H)
                assert ("s < hi; s++" in H._last.plan["cl"].source) == one_pass
                got.append((g, h, H(x)))
        (g1, h1, o1), (g2, h2, o2) = got
        for a, b in ((g1, g2), (h1.data, h2.data), (o1.data, o2.data)):
            assert np.array_equal(a.view(np.uint64), b.view(np.uint64))
        np.testing.assert_allclose(h1.toarray(), fd.hessian(f)(x), rtol=1e-12, atol=1e-12)
