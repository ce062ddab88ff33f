"""Sparse Jacobians and Hessians (docs/sparse.md): patterns against the nonzeros of dense
derivatives on generated programs, sparse values against dense values, colourings checked
for validity, and the bad inputs."""
import numpy as np
import pytest

import fastad as fd
from fastad import sparse, _sparsity

sp = pytest.importorskip("scipy.sparse")
from hypothesis import given, settings, strategies as st, HealthCheck  # noqa: E402

UNARY = [np.sin, np.exp, np.tanh, np.square, np.negative, np.abs, np.cos,
         lambda v: np.log(1.0 + v * v), np.floor]
BINARY = [np.add, np.subtract, np.multiply, lambda a, b: a / (1.0 + b * b), np.maximum,
          lambda a, b: a * 0.0 + b]


@st.composite
def programs(draw):
    """A straight-line program over n inputs: scalar ops on picked values, plus array
    reductions and selects; m outputs picked from the values."""
    n = draw(st.integers(3, 7))
    steps = []
    for _ in range(draw(st.integers(1, 14))):
        k = draw(st.sampled_from(["u", "b", "b", "sum", "prod", "where", "gather"]))
        nv = n + len(steps)
        if k == "u":
            steps.append(("u", draw(st.integers(0, len(UNARY) - 1)), draw(st.integers(0, nv - 1))))
        elif k == "b":
            steps.append(("b", draw(st.integers(0, len(BINARY) - 1)),
                          draw(st.integers(0, nv - 1)), draw(st.integers(0, nv - 1))))
        elif k == "gather":      # a slice of x, reduced with weights (gather + multiply + sum)
            lo = draw(st.integers(0, n - 2))
            steps.append(("gather", lo, draw(st.integers(lo + 1, n))))
        else:
            picks = draw(st.lists(st.integers(0, nv - 1), min_size=1, max_size=4))
            steps.append((k, picks))
    nv = n + len(steps)
    outs = draw(st.lists(st.integers(0, nv - 1), min_size=1, max_size=5))
    x = np.array(draw(st.lists(st.floats(0.3, 1.7), min_size=n, max_size=n)))
    return n, steps, outs, x


def run_program(prog, x):
    n, steps, outs, _ = prog
    vals = [x[i] for i in range(n)]
    for s in steps:
        if s[0] == "u":
            vals.append(UNARY[s[1]](vals[s[2]]))
        elif s[0] == "b":
            vals.append(BINARY[s[1]](vals[s[2]], vals[s[3]]))
        elif s[0] == "gather":
            w = np.arange(1.0, s[2] - s[1] + 1.0)
            vals.append(np.sum(x[s[1]:s[2]] ** 2 * w))
        else:
            arr = np.array([vals[i] for i in s[1]]) if not isinstance(vals[0], float) \
                else np.array([vals[i] for i in s[1]])
            if s[0] == "sum":
                vals.append(np.sum(np.stack([vals[i] * 1.0 for i in s[1]])))
            elif s[0] == "prod":
                vals.append(np.prod(np.stack([vals[i] * 1.0 for i in s[1]])))
            else:
                a = np.stack([vals[i] * 1.0 for i in s[1]])
                vals.append(np.sum(np.where(a > 1.0, a * a, a)))
            del arr
    return [vals[i] * 1.0 for i in outs]


def vector_fn(prog):
    def f(x):
        return np.stack(run_program(prog, x))
    return f


def scalar_fn(prog):
    def f(x):
        outs = run_program(prog, x)
        total = 0.0
        for k, o in enumerate(outs):
            total = total + (k + 1.5) * o
        return total
    return f


EXTRA = {"jac": [0, 0], "hess": [0, 0]}     # extra pattern entries, true nonzeros


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_jacobian_pattern_covers_dense_nonzeros(prog):
    x = prog[3]
    f = vector_fn(prog)
    dense = np.atleast_2d(fd.jacobian(f)(x))
    P = fd.jacobian_sparsity(f)(x).toarray()
    assert P.shape == dense.shape
    missing = (dense != 0) & ~P
    assert not missing.any(), (prog, dense, P)
    EXTRA["jac"][0] += int((P & (dense == 0)).sum())
    EXTRA["jac"][1] += int((dense != 0).sum())
    J = fd.jacobian(f, sparse=True)(x)
    assert isinstance(J, sp.csr_array)
    np.testing.assert_allclose(J.toarray(), dense, rtol=1e-12, atol=1e-12)
    for mode in (fd.jacfwd, fd.jacrev):
        np.testing.assert_allclose(mode(f, sparse=True)(x).toarray(), dense,
                                   rtol=1e-12, atol=1e-12)
    assert_lanes_equal_per_colour(fd.jacfwd(f, sparse=True), x)


def assert_lanes_equal_per_colour(S, x):
    """The lane path (all colours in one pass) gives the per-colour sweeps' bits."""
    S(x)
    e, plan = S._last, S._last.plan
    if not _sparsity.lanes_ok(e.tape):
        return
    args = (e.tape, x, e.col, plan["colours"], plan["ncolours"], e.outs)
    old = _sparsity.compressed(*args, False)
    new = _sparsity.compressed_lanes(*args, _sparsity.Lanes())
    assert np.array_equal(old[0], new[0]) and np.array_equal(old[1], new[1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_hessian_pattern_covers_dense_nonzeros(prog):
    x = prog[3]
    f = scalar_fn(prog)
    dense = np.atleast_2d(fd.hessian(f)(x))
    P = fd.hessian_sparsity(f)(x).toarray()
    assert (P == P.T).all()
    missing = (dense != 0) & ~P
    assert not missing.any(), (prog, dense, P)
    EXTRA["hess"][0] += int((P & (dense == 0)).sum())
    EXTRA["hess"][1] += int((dense != 0).sum())
    H = fd.hessian(f, sparse=True)
    Hs = H(x)
    np.testing.assert_allclose(Hs.toarray(), dense, rtol=1e-10, atol=1e-10)
    assert_lanes_equal_per_colour(H, x)


def test_conservative_extras_are_reported(capsys):
    """How many entries the conservative rules add (docs/sparse.md quotes this run)."""
    for key, (extra, true) in EXTRA.items():
        if true:
            print(f"{key}: {extra} extra pattern entries over {true} true nonzeros")
    # exactness for programs without selects, maxima or floors: a banded function
    f = lambda x: x[1:] * x[:-1] + np.sin(x[1:])
    x = np.linspace(0.5, 1.5, 9)
    P = fd.jacobian_sparsity(f)(x).toarray()
    assert (P == (fd.jacobian(f)(x) != 0)).all()


# ------------------------------------------------------------------- structural records

def dense_check(f, x, rtol=1e-12):
    P = fd.jacobian_sparsity(f)(x).toarray()
    dense = np.asarray(fd.jacobian(f)(x)).reshape(P.shape)
    assert not ((dense != 0) & ~P).any()
    np.testing.assert_allclose(fd.jacobian(f, sparse=True)(x).toarray(), dense, rtol=rtol,
                               atol=1e-12)
    return P, dense


def test_structural_records_exact():
    x = np.linspace(0.2, 1.4, 6)
    A = np.arange(12.0).reshape(3, 4) / 10
    P, _ = dense_check(lambda x: np.cumsum(x[:3]) * x[3:], x)
    assert (P == np.array([[1, 0, 0, 1, 0, 0], [1, 1, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1]],
                          dtype=bool)).all()
    P, _ = dense_check(lambda x: x[:4].reshape(2, 2) @ x[4:].reshape(2, 1), x)
    assert (P == np.array([[1, 1, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=bool)).all()
    P, _ = dense_check(lambda x: A @ x[[0, 2, 3, 5]], x)
    assert (P == np.array([[1, 0, 1, 1, 0, 1]] * 3, dtype=bool)).all()
    P, _ = dense_check(lambda x: x.reshape(2, 3).prod(axis=1), x)
    assert (P == np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=bool)).all()


def test_max_and_select_are_conservative():
    x = np.array([1.0, 3.0, 2.0, 0.5])
    P, dense = dense_check(lambda x: np.stack([np.max(x[:3]), np.where(x[3] > 0, x[0], x[1])]), x)
    # max depends on its argmax only at these values, but the argmax can change without a
    # guard: the pattern keeps the whole segment
    assert P[0, :3].all() and dense[0, 0] == 0


def test_branch_outcomes_give_their_own_pattern():
    def f(x):
        if x[0] > 0:
            return x * x[1]
        return x * 2.0
    J = fd.jacobian(f, sparse=True)
    a = J(np.array([1.0, 2.0, 3.0]))
    assert J.info()["nnz"] == 5
    b = J(np.array([-1.0, 2.0, 3.0]))
    np.testing.assert_allclose(b.toarray(), 2 * np.eye(3))
    assert J.info()["nnz"] == 3 and J.info()["traces"] == 2
    np.testing.assert_allclose(a.toarray(), fd.jacobian(f)(np.array([1.0, 2.0, 3.0])))
    J(np.array([5.0, 1.0, 1.0]))
    assert J.info()["traces"] == 2         # the first tape replays


def test_hessian_pattern_of_chained_rosenbrock_is_tridiagonal():
    from reference import rosen
    x = np.linspace(-1, 1, 50)
    P = fd.hessian_sparsity(rosen)(x)
    dense = fd.hessian(rosen)(x)
    assert (P.toarray() == (dense != 0)).all()
    H = fd.hessian(rosen, sparse=True)
    np.testing.assert_allclose(H(x).toarray(), dense, rtol=1e-13)
    assert H.info()["colours"] <= 3 and H.info()["colouring"] == "star"


def test_pytree_inputs_flattened_in_documented_order():
    def f(p, scale):
        return scale * np.concatenate([p["b"] * p["a"], np.sin(p["a"]) * np.ones(1)])
    p = {"b": np.array([1.0, 2.0]), "a": 0.5}
    J = fd.jacobian(f, sparse=True)(p, 3.0)
    # columns: dict keys in sorted order -> a (1), then b (2)
    expect = 3.0 * np.array([[1.0, 0.5, 0.0], [2.0, 0.0, 0.5], [np.cos(0.5), 0, 0]])
    np.testing.assert_allclose(J.toarray(), expect)
    # the data argument is an input too: a new value is honoured at replay
    J2 = fd.jacobian(f, sparse=True)
    J2(p, 3.0)
    np.testing.assert_allclose(J2(p, 1.0).toarray(), expect / 3.0)
    assert J2.info()["traces"] == 1


def test_argnums_selects_columns():
    f = lambda x, y: x * y[0] + y[1]
    J = fd.jacobian(f, argnums=1, sparse=True)(np.ones(3), np.array([2.0, 3.0]))
    np.testing.assert_allclose(J.toarray(), np.array([[1.0, 1], [1, 1], [1, 1]]))
    J = fd.jacobian(f, argnums=(1, 0), sparse=True)(np.ones(3), np.array([2.0, 3.0]))
    np.testing.assert_allclose(J.toarray()[:, 2:], 2 * np.eye(3))


def test_dense_pattern_falls_back_with_a_note():
    f = lambda x: np.sum(x) * x
    J = fd.jacobian(f, sparse=True)
    x = np.linspace(1, 2, 5)
    np.testing.assert_allclose(J(x).toarray(), fd.jacobian(f)(x))
    info = J.info()
    assert info["dense_fallback"] and "dense" in info["note"] and info["colours"] == 5


def test_reverse_direction_chosen_for_few_dense_rows():
    def f(x):
        return np.stack([np.sum(x ** 2), np.sum(np.sin(x))] + [x[0] * x[1]])
    x = np.linspace(0.1, 1, 40)
    J = fd.jacobian(f, sparse=True)
    np.testing.assert_allclose(J(x).toarray(), fd.jacobian(f)(x), rtol=1e-13)
    info = J.info()
    assert info["direction"] == "reverse (rows)" and info["colours"] == 3


def test_pattern_too_large_is_a_clear_error():
    f = lambda x: np.cumsum(x)
    with pytest.raises(MemoryError, match="too large for a sparse derivative"):
        fd.jacobian_sparsity(f, max_entries=1000)(np.ones(200))


def _unknown_kinds(kind, names):
    """The op classes with sin turned into a structural record the analysis has no rule
    for, as a record kind added to the tape after this module was written would be."""
    bad = kind.copy()
    bad[names.index("sin")] = 4
    return bad


def test_unknown_record_kind_is_conservative_not_an_error():
    kind, jm, hm, names = sparse.op_classes()
    bad = _unknown_kinds(kind, names)

    def f(x):
        return np.stack([x[0] * 2.0, np.sin(x[1]) + x[2], x[3] * x[3]])
    x = np.array([0.3, 0.5, 0.7, 0.9])
    e = sparse.SparseJacobian(f).prog.entry_for((x,))
    ip, ix = _sparsity.jacobian_pattern(e.tape, e.col, e.ncols, e.outs, bad, jm, names,
                                        sparse.MAX_ENTRIES)
    P = sp.csr_array((np.ones(len(ix), dtype=bool), ix, ip), shape=(3, 4)).toarray()
    # every slot written from the unknown record on depends on every column (the first
    # output was computed before it but is conservatively widened too); the last is
    # recomputed after it from its operand, an input, and keeps its own set
    assert P[:2].all() and P[2].tolist() == [False, False, False, True]
    dense = fd.jacobian(f)(x)
    assert not ((dense != 0) & ~P).any()
    # an op code past the table is treated the same way
    ip2, ix2 = _sparsity.jacobian_pattern(e.tape, e.col, e.ncols, e.outs,
                                          kind[:names.index("sin")], jm, names,
                                          sparse.MAX_ENTRIES)
    assert len(ix2) == 12

    def g(x):
        return x[0] * x[1] + np.sin(x[2]) + x[3]
    h = sparse.SparseHessian(g)
    e = h.prog.entry_for((x,))
    ip, ix = _sparsity.hessian_pattern(e.tape, e.hi, e.fslot, e.col, e.ncols, bad, jm, hm,
                                       names, sparse.MAX_ENTRIES)
    assert len(ix) == 16        # every pair


def test_linear_algebra_records_are_dense_blocks():
    """solve/slogdet records: every result depends on every operand entry (a dense
    block), so patterns are conservative and the sparse values equal the dense ones."""
    rng = np.random.default_rng(3)
    B = rng.uniform(-1, 1, (3, 3))

    def f(x):
        A = np.reshape(x[:9], (3, 3)) + 4.0 * np.eye(3)
        y = np.linalg.solve(A, x[9:12])
        return np.concatenate([y, x[12:] ** 2, [np.linalg.slogdet(A)[1]]])
    x = rng.uniform(-1, 1, 16)
    dense = fd.jacobian(f)(x)
    P = fd.jacobian_sparsity(f)(x).toarray()
    assert not ((dense != 0) & ~P).any()
    assert P[:3, :12].all() and not P[:3, 12:].any()        # the block, and no more
    assert (P[3:7, 12:] == np.eye(4, dtype=bool)).all() and not P[3:7, :12].any()
    J = fd.jacobian(f, sparse=True)(x)
    np.testing.assert_allclose(J.toarray(), dense, rtol=1e-12, atol=1e-12)

    def g(x):
        A = np.reshape(x[:9], (3, 3))
        S = A + A.T + 8.0 * np.eye(3)
        w = np.linalg.solve(S, x[:3])
        return np.sum(w ** 3) + np.linalg.slogdet(S)[1] + np.sum(np.sin(x[9:]))
    x = rng.uniform(-1, 1, 12)
    # reference: central differences of the exact gradient (step 1e-5: error ~1e-10 x
    # third derivatives of order 10 here); the dense fastad.hessian of a tape with these
    # records is refused by the tape optimizer at present
    grad, h = fd.grad(g), 1e-5
    Hd = np.array([(grad(x + h * e) - grad(x - h * e)) / (2 * h) for e in np.eye(12)])
    P = fd.hessian_sparsity(g)(x).toarray()
    assert not ((np.abs(Hd) > 1e-7) & ~P).any()
    assert (P[9:, 9:] == np.eye(3, dtype=bool)).all() and not P[:9, 9:].any()
    np.testing.assert_allclose(fd.hessian(g, sparse=True)(x).toarray(), Hd,
                               rtol=1e-6, atol=1e-6)
    del B


def _lane_cases():
    rng = np.random.default_rng(4)
    M = rng.uniform(-1, 1, (6, 6))

    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def banded(x):
        n = x.shape[0]
        xp = np.concatenate([np.zeros(2), x, np.zeros(2)])
        return (3.0 - 2.0 * x) * x - xp[1:n + 1] + 0.5 * np.sin(xp[0:n]) + xp[4:n + 4] ** 2

    def loop(x):                    # scalar records, as a Python loop writes them
        out = []
        for k in range(len(x) - 1):
            out.append(np.exp(x[k] * 0.3) * x[k + 1] - np.sqrt(1.0 + x[k] ** 2))
        return np.stack(out)

    def structural(x):              # gather, cumsum, prod, max, matmul, solve
        y = M @ np.tanh(x[:6])
        z = np.cumsum(x[6:] * x[6:])
        A = np.reshape(x[:4], (2, 2)) + 3.0 * np.eye(2)
        s = np.linalg.solve(A, x[4:6])
        return np.concatenate([y * np.prod(x[6:9]), z, [np.max(x[2:8] ** 2)], s])

    def dense_scalar(x):            # dense Hessian: 20 colours, two passes of lanes
        return np.sum(x) ** 3 + np.sum(np.cos(x) * x[::-1])

    x = rng.uniform(-1, 1, 40)
    return [(sparse.SparseHessian(rosen), x), (sparse.SparseJacobian(banded, mode="fwd"), x),
            (sparse.SparseJacobian(loop, mode="fwd"), x[:12]),
            (sparse.SparseJacobian(structural, mode="fwd"), x[:12]),
            (sparse.SparseHessian(structural_sum(structural)), x[:12]),
            (sparse.SparseHessian(dense_scalar), x[:20])]


def structural_sum(f):
    return lambda x: np.sum(f(x) ** 2)


def test_lane_sweeps_equal_per_colour_sweeps_bit_for_bit():
    """All colours carried as tangent lanes in one pass (csrc/lanes.h) give exactly the
    per-colour tangent sweeps' values: same partials, same products, same order."""
    for S, x in _lane_cases():
        S(x)
        e, plan = S._last, S._last.plan
        assert _sparsity.lanes_ok(e.tape)
        old = _sparsity.compressed(e.tape, x, e.col, plan["colours"], plan["ncolours"],
                                   e.outs, False)
        lanes = _sparsity.Lanes()
        for _ in range(2):          # the lanes are reused between calls
            new = _sparsity.compressed_lanes(e.tape, x, e.col, plan["colours"],
                                             plan["ncolours"], e.outs, lanes)
            assert np.array_equal(old[0], new[0]) and np.array_equal(old[1], new[1])
        assert old[1].any()


def test_lanes_refuse_callbacks():
    """A custom_vjp callback calls into Python: such a tape keeps one sweep per colour."""
    @fd.custom_vjp
    def cube(x):
        return x ** 3

    cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (3 * x ** 2 * g,))
    S = sparse.SparseJacobian(lambda x: cube(x) + x, mode="rev")
    x = np.linspace(0.1, 1, 5)
    np.testing.assert_allclose(S(x).toarray(), np.diag(3 * x ** 2 + 1), rtol=1e-12)
    assert not _sparsity.lanes_ok(S._last.tape)


def test_callbacks_are_conservative():
    @fd.custom_vjp
    def first(x):
        return x[0] * 1.0

    def first_fwd(x):
        return x[0] * 1.0, None

    def first_bwd(res, g):
        out = np.zeros(3)
        out[0] = g
        return (out,)
    first.defvjp(first_fwd, first_bwd)
    f = lambda x: np.stack([first(x[:3]), x[3] * 2])
    x = np.arange(1.0, 5.0)
    P = fd.jacobian_sparsity(f)(x).toarray()
    assert P[0, :3].all() and not P[0, 3] and P[1].tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(fd.jacrev(f, sparse=True)(x).toarray(),
                               [[1, 0, 0, 0], [0, 0, 0, 2]])


# ------------------------------------------------------------------------------ colourings

def distance2_valid(P, colours):
    """No two columns of one colour share a row."""
    P = sp.csr_array(P)
    for i in range(P.shape[0]):
        cols = P.indices[P.indptr[i]:P.indptr[i + 1]]
        c = colours[cols]
        if len(set(c.tolist())) != len(c):
            return False
    return True


def star_valid(P, colours):
    """Adjacent vertices differ, and every edge (i, j) is recoverable: j is the only
    neighbour of i with colour c(j), or i the only neighbour of j with colour c(i)."""
    A = sp.csr_array(P).toarray().astype(bool)
    np.fill_diagonal(A, False)
    n = A.shape[0]
    for i in range(n):
        for j in np.flatnonzero(A[i]):
            if colours[i] == colours[j]:
                return False
            ok_i = np.sum(colours[np.flatnonzero(A[i])] == colours[j]) == 1
            ok_j = np.sum(colours[np.flatnonzero(A[j])] == colours[i]) == 1
            if not (ok_i or ok_j):
                return False
    return True


def random_pattern(rng, m, n, density, symmetric=False):
    P = rng.random((m, n)) < density
    if symmetric:
        P = P | P.T
        np.fill_diagonal(P, True)
    return sp.csr_array(P)


@pytest.mark.parametrize("seed", range(8))
def test_colourings_are_valid_on_random_patterns(seed):
    rng = np.random.default_rng(seed)
    m, n = rng.integers(5, 40, size=2)
    P = random_pattern(rng, m, n, rng.uniform(0.02, 0.3))
    ip, ix = P.indptr.astype(np.int64), P.indices.astype(np.int32)
    tp, tx = _sparsity.transpose(ip, ix, n)
    c, k = _sparsity.colour_columns(ip, ix, tp, tx, n)
    assert distance2_valid(P, c) and k == c.max() + 1 if n else True
    c, k = _sparsity.colour_columns(tp, tx, ip, ix, m)
    assert distance2_valid(P.T, c)
    S = random_pattern(rng, n, n, rng.uniform(0.02, 0.2), symmetric=True)
    c, k = _sparsity.star_colouring(S.indptr.astype(np.int64), S.indices.astype(np.int32), n)
    assert star_valid(S, c)
    # and the recovery of values from the compressed product is exact
    H = S.toarray() * rng.standard_normal((n, n))
    H = H + H.T
    seeds = np.zeros((n, k))
    seeds[np.arange(n), c] = 1
    B = np.ascontiguousarray(H @ seeds)
    Hs = sp.csr_array(H)
    Hs.sort_indices()
    data = _sparsity.recover_star(Hs.indptr.astype(np.int64), Hs.indices.astype(np.int32),
                                  c, B, k)
    np.testing.assert_allclose(data, Hs.data, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_direct_recovery_maps_are_exact(seed):
    """Each nonzero is read from the compressed matrix through a map computed once per
    colouring: columns coloured (B = J S), rows coloured (B = J^T S)."""
    rng = np.random.default_rng(100 + seed)
    m, n = rng.integers(5, 40, size=2)
    P = random_pattern(rng, m, n, rng.uniform(0.05, 0.3))
    J = P.toarray() * rng.standard_normal((m, n))
    Js = sp.csr_array(J)
    Js.sort_indices()
    ip, ix = Js.indptr.astype(np.int64), Js.indices.astype(np.int32)
    tp, tx = _sparsity.transpose(ip, ix, n)
    for by_row in (False, True):
        if by_row:
            c, k = _sparsity.colour_columns(tp, tx, ip, ix, m)
            B = np.ascontiguousarray(J.T @ np.eye(k)[c])
        else:
            c, k = _sparsity.colour_columns(ip, ix, tp, tx, n)
            B = np.ascontiguousarray(J @ np.eye(k)[c])
        data = _sparsity.recover_direct(ip, ix, c, B, by_row)
        np.testing.assert_allclose(data, Js.data, rtol=1e-13, atol=1e-13)
        with pytest.raises(ValueError, match="colour"):
            bad = c.copy()
            bad[0] = k
            _sparsity.recovery_sources(ip, ix, bad, k, "rows" if by_row else "columns")


def test_banded_colour_counts():
    n = 1000
    band = sp.diags([np.ones(n - abs(k)) for k in range(-2, 3)], range(-2, 3)).tocsr()
    ip, ix = band.indptr.astype(np.int64), band.indices.astype(np.int32)
    tp, tx = _sparsity.transpose(ip, ix, n)
    assert _sparsity.colour_columns(ip, ix, tp, tx, n)[1] == 5
    tri = sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1]).tocsr()
    c, k = _sparsity.star_colouring(tri.indptr.astype(np.int64), tri.indices.astype(np.int32), n)
    assert k == 3 and star_valid(tri[:60, :60], c[:60])


def test_sparse_inside_a_traced_function_says_so():
    inner = fd.jacobian(lambda y: y * y, sparse=True)
    with pytest.raises(NotImplementedError, match="sparse=False"):
        fd.grad(lambda x: inner(x).sum())(np.ones(3))
