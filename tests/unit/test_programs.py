"""Programs as written (docs/numpy.md): arrays built by item assignment, lists mixing floats
and traced values, integers taken from traced values, the structural numpy functions,
einsum in every form, and nested jvp of non-scalar outputs.

References.  Every program is plain numpy code, so the value reference is the same
function run by numpy on float arrays, and the derivative reference is central
differences of that numpy run (numpy_ref.central_diff, h = 1e-6 relative: truncation
~h^2 |f'''| and rounding ~eps |f| / h are both below 1e-9 for these O(1) functions, so
rtol 1e-6 leaves a wide margin while a wrong rule is off by O(1)).  The piecewise
functions (sort, interp, remainder, rounding, integer indexing) are evaluated at points at
least 1e-3 away from their kinks, so a central difference never straddles one.  Forward
mode is checked as jvp along a random direction against the same differences; nested
mode as fd.hessian against central differences of fd.grad (itself checked against numpy
above), rtol 1e-5.  Replays are checked at a second point: the tape must be replayed (no
new trace) and agree with a fresh reference there.
"""
import math

import numpy as np
import pytest

import fastad as fd
from numpy_ref import central_diff

# numpy deprecates np.cross of 2-vectors (still supported); the reference runs it too
pytestmark = pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors")

X4 = np.array([0.3127, 1.4561, -0.8813, 2.2049])
X4b = np.array([0.3342, 1.4172, -0.9024, 2.1731])        # same pieces as X4
W = np.array([0.7, -1.3, 0.4, 2.1, -0.6, 1.1, 0.9, -0.2, 0.5, 1.7, -1.9, 0.3])


def weights(shape):
    n = int(np.prod(shape))
    return np.resize(W, n).reshape(shape)


def loss(op):
    """sum(W * op(x)) with fixed weights of op's output shape (plain numpy and traced)."""
    def f(x):
        y = op(x)
        return np.sum(weights(np.shape(y)) * y)
    f.__name__ = getattr(op, "__name__", "op")
    return f


def check(f, x=X4, x2=X4b, nested=True):
    """f's value and gradient (reverse), jvp (forward) and Hessian (nested) against
    numpy and central differences, at x and, replayed, at x2."""
    def fnp(y):                 # plain numpy; a size-1 output of any shape as a float
        return np.asarray(f(y), dtype=np.float64).reshape(())[()]

    g_fd = central_diff(fnp, x)
    vg = fd.value_and_grad(f)
    for pt, ref_g in ((x, g_fd), (x2, central_diff(fnp, x2))):
        v, g = vg(pt)
        np.testing.assert_allclose(v, fnp(pt), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(g, ref_g, rtol=1e-6, atol=1e-7)
    assert vg.cache_info()["traces"] == 1, vg.cache_info()
    d = np.random.default_rng(len(x)).normal(size=x.shape)
    _, t = fd.jvp(f, (x,), (d,))
    np.testing.assert_allclose(t, g_fd @ d.ravel() if x.ndim == 1 else np.sum(g_fd * d),
                               rtol=1e-6, atol=1e-7)
    if nested:
        H = fd.hessian(f)(x)
        gf = fd.grad(f)
        H_fd = np.stack([central_diff(lambda y, k=k: gf(y)[k], x) for k in range(x.size)])
        np.testing.assert_allclose(H, H_fd, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- assignment

def residual(x):
    y = np.zeros_like(x)
    y[0] = x[0] - 1.0
    y[1:-1] = x[2:] - 2.0 * x[1:-1] + x[:-2]
    y[-1] += x[-1] ** 2
    return np.sum(y ** 2)


def residual_like(x):
    y = np.zeros(len(x), like=x)
    for i in range(len(x)):
        y[i] = np.sin(x[i]) * (i + 1)
    return np.sum(y * x)


def residual_fd_zeros(x):
    y = fd.zeros(x.shape)       # numpy's zeros when run by plain numpy (outside a trace)
    y[::2] = x[::2] ** 3
    y[1::2] += x[1::2] * x[0]
    return np.sum(y)


def masked_const(x):
    y = np.ones_like(x)
    y[np.array([True, False, True, False])] = x[:2] ** 2
    return np.sum(y * x)


def masked_traced(x):
    y = x.copy()
    y[x > 1.0] = 0.5            # a traced mask: y = where(x > 1, 0.5, y)
    return np.sum(y ** 3)


def row_view(x):
    y = np.empty_like(x).reshape(2, 2)
    row = y[1]                  # a view: assigning into it writes y, as in numpy
    y[0] = x[:2] * 2.0
    row[:] = np.exp(x[2:])
    return np.sum(y * np.array([[1.0, 2.0], [3.0, 4.0]]))


def copy_is_not_a_view(x):
    y = x.copy()
    y[0] = 10.0
    return np.sum(x * y)        # x itself is unchanged


def fancy_accumulate(x):
    y = np.zeros(3, like=x)
    idx = np.array([0, 2, 2])
    y[idx] += x[:3]              # numpy's buffered semantics: the last write wins
    return np.sum(y * np.array([1.0, 2.0, 3.0])) + y[2] * x[3]


def in_place_sort(x):
    y = x.copy()
    y.sort()
    return np.sum(y * np.arange(1.0, 5.0))


def full_and_int_like(x):
    y = fd.full((2, 2), x[0])               # a traced fill value
    y[1, 1] = x[3] * x[2]
    k = np.zeros_like(x, dtype=int)         # an int array stays numpy's
    assert type(k) is np.ndarray and k.dtype.kind == "i"
    return np.sum(y * np.array([[1.0, 2.0], [3.0, 4.0]])) + x[k[0]] ** 2


ASSIGN = [full_and_int_like, residual, residual_like, residual_fd_zeros, masked_const,
          masked_traced, row_view, copy_is_not_a_view, fancy_accumulate, in_place_sort]


@pytest.mark.parametrize("f", ASSIGN, ids=lambda f: f.__name__)
def test_assignment_programs(f):
    check(f)


def test_assignment_closed_form():
    # residual: d/dx sum(y^2) by hand for n = 4
    x = X4
    y = np.array([x[0] - 1, x[2] - 2 * x[1] + x[0], x[3] - 2 * x[2] + x[1], x[3] ** 2])
    J = np.array([[1, 0, 0, 0], [1, -2, 1, 0], [0, 1, -2, 1], [0, 0, 0, 2 * x[3]]])
    np.testing.assert_allclose(fd.grad(residual)(x), 2 * J.T @ y, rtol=1e-14)


def test_assignment_into_plain_numpy_array_says_what_to_do():
    def f(x):
        y = np.zeros(4)
        y[1] = x[0] ** 2
        return np.sum(y)

    with pytest.raises(TypeError) as info:
        fd.grad(f)(X4)
    msg = str(info.value)
    assert "assigned into a numpy float array" in msg, msg
    assert "np.zeros_like(x)" in msg and "y[i] = ..." in msg, msg

    def g(x):
        y = np.zeros((2, 4))
        y[0] = np.sin(x)
        return np.sum(y)

    with pytest.raises(TypeError) as info:
        fd.grad(g)(X4)
    assert "np.zeros_like(x)" in str(info.value), str(info.value)


def test_assignment_into_a_broadcast_view_is_refused_like_numpy():
    def f(x):
        y = np.broadcast_to(x, (2, 4))
        y[0, 0] = 1.0
        return np.sum(y)

    with pytest.raises(ValueError, match="read-only"):
        fd.grad(f)(X4)


def test_assigning_an_escaped_traced_array_is_refused():
    kept = []
    fd.grad(lambda x: (kept.append(x), np.sum(x))[1])(X4)

    def f(x):
        y = np.zeros_like(x)
        y[:] = kept[0]
        return np.sum(y)

    with pytest.raises(fd.EscapedTracerError):
        fd.grad(f)(X4)


def test_fd_zeros_outside_a_trace_is_numpy():
    z = fd.zeros((2, 3))
    assert type(z) is np.ndarray and z.shape == (2, 3) and not z.any()
    assert type(fd.ones(2)) is np.ndarray and fd.full(2, 3.0).tolist() == [3.0, 3.0]


# ---------------------------------------------------------------------------- lists

LISTS = {
    "asarray": lambda x: np.sum(np.asarray([0.0, x[0]]) ** 2 * np.array([1.0, 3.0])),
    "array": lambda x: np.sum(np.array([x[0], 1.0, x[1]]) ** 3),
    "mean_of_arrays": lambda x: np.sum(np.mean([x, x + 2.0 * x[0]]) * x),
    "mean_of_scalars": lambda x: np.mean([x[0], x[1] ** 2, 1.0]) * x[2],
    "scalar_minus_list": lambda x: np.sum((x[0] - [3, 5, 2]) ** 2),
    "list_plus_array": lambda x: np.sum(([0.5, 1.0, 1.5, 2.0] + x) ** 2),
    "array_of_list_in_ufunc": lambda x: np.sum(np.sin(np.array([x[0], x[1] * x[2]]))),
    "scalar_times_traced_list": lambda x: np.sum(np.multiply(x[0], [x[1], 1.0])
                                                 + x[2:] * (x[3], 2.0)),
    "array_like": lambda x: np.sum(np.array([x[1], 2.0, x[0] * x[2]], like=x) ** 2),
    "item_tolist": lambda x: x[1:2].item() * x.reshape(2, 2).tolist()[1][0],
    "nested_list": lambda x: np.sum(np.array([[x[0], 1.0], [2.0, x[3]]]) @ x[:2]),
}


@pytest.mark.parametrize("name", sorted(LISTS))
def test_lists_become_traced_arrays(name):
    check(LISTS[name])


def test_list_closed_forms():
    x = X4
    np.testing.assert_allclose(fd.grad(LISTS["scalar_minus_list"])(x),
                               [2 * np.sum(x[0] - np.array([3, 5, 2])), 0, 0, 0], rtol=1e-14)
    # [1, 2] * t: numpy refuses it for a float64 t (a list times a non-int), fastad makes
    # it the float array numpy gives for np.array([1, 2]) * t
    np.testing.assert_allclose(fd.grad(lambda x: np.sum(([1, 2] * x[1]) ** 2))(x),
                               [0, 2 * 5 * x[1], 0, 0], rtol=1e-14)


# ---------------------------------------------------------------------------- integers

TABLE = np.array([1.5, -2.0, 0.25, 4.0, 3.0])


def lookup(x):
    i = int(x[0] * 2.0)                  # int() truncates, with a guard on its value
    return TABLE[i] * x[1] ** 2 + x[i]


def floor_index(x):
    k = math.floor(x[1])
    j = x[2].astype(int) + 2                  # a traced scalar's astype: numpy's int64
    return x[k] * x[3] + TABLE[math.ceil(x[0])] * x[2] + TABLE[j] * x[0] ** 2


def advect(x):
    # semi-Lagrangian step: departure points x*1.5 on a periodic grid of u
    u = np.sin(np.arange(6.0))
    s = x * 1.5 + 2.0
    i = np.floor(s).astype(int)
    frac = s - np.floor(s)
    return np.sum(((1.0 - frac) * u[i % 6] + frac * u[(i + 1) % 6]) * x)


def astype_index(x):
    k = (np.abs(x) * 2).astype(int)
    return np.sum(x[k % 4] * x)


@pytest.mark.parametrize("f", [lookup, floor_index, advect, astype_index],
                         ids=lambda f: f.__name__)
def test_integers_from_traced_values(f):
    check(f)


def test_integer_guard_replays_while_same_and_retraces_when_it_changes():
    g = fd.grad(lookup)
    x = np.array([1.2, 0.5, 3.0, 4.0])          # int(2.4) = 2
    np.testing.assert_allclose(g(x), [0, 2 * TABLE[2] * 0.5, 1.0, 0], rtol=1e-15)
    x2 = np.array([1.4, 0.7, 3.0, 4.0])         # int(2.8) = 2: replay
    np.testing.assert_allclose(g(x2), [0, 2 * TABLE[2] * 0.7, 1.0, 0], rtol=1e-15)
    assert g.cache_info()["retraces"] == 0 and g.cache_info()["replays"] == 1
    x3 = np.array([1.6, 0.7, 3.0, 4.0])         # int(3.2) = 3: the guard fails, retrace
    np.testing.assert_allclose(g(x3), [0, 2 * TABLE[3] * 0.7, 0, 1.0], rtol=1e-15)
    assert g.cache_info()["retraces"] == 1
    np.testing.assert_allclose(g(x), [0, 2 * TABLE[2] * 0.5, 1.0, 0], rtol=1e-15)
    assert g.cache_info()["traces"] == 2        # both tapes are kept: back to the first


def test_astype_int_guard_retraces_when_any_element_changes():
    f = fd.value_and_grad(astype_index)
    f(X4)
    f(X4b)
    assert f.cache_info()["traces"] == 1
    x = X4.copy()
    x[2] = -1.1                                  # int(2.2) = 2 instead of 1
    v, g = f(x)
    assert f.cache_info()["retraces"] == 1
    np.testing.assert_allclose(v, astype_index(x), rtol=1e-14)
    np.testing.assert_allclose(g, central_diff(astype_index, x), rtol=1e-6)


def test_int_of_nan_raises_value_error():
    with pytest.raises(ValueError, match="NaN"):
        fd.grad(lambda x: x * int(x))(float("nan"))


def test_traced_scalar_as_index_says_to_use_int():
    with pytest.raises(TypeError, match=r"int\(x\)"):
        fd.grad(lambda x: x[x[0]])(np.array([0.0, 1.0]))


# ---------------------------------------------------------------------------- functions

W2 = np.array([[0.3, -1.2], [2.0, 0.7]])
XP = np.array([-1.0, 0.0, 0.5, 2.0, 3.0])
FP = np.array([0.2, -0.4, 1.1, 0.6, 2.5])

FUNCS = {
    "round": lambda x: np.sum(np.round(x, 2) * x + np.around(x) * x ** 2),
    "round_negative_decimals": lambda x: np.sum(np.round(x * 100, -1) * x),
    "remainder": lambda x: np.sum(np.remainder(x, 0.7) ** 2 + (3.0 % (x + 2.0))),
    "mod_operator": lambda x: (x[1] % 0.4) * x[0] + np.sum((x % -0.9) * x),
    "fmod": lambda x: np.sum(np.fmod(x, 0.6) * np.fmod(2.5, x + 3.0)),
    "floor_divide": lambda x: np.sum((x // 0.3) * x + divmod(x[1], 0.5)[1]),
    "trunc": lambda x: np.sum(np.trunc(x * 3) * x + np.fix(x) * x),
    "diff": loss(lambda x: np.diff(x ** 2, n=2, prepend=0.5, append=[x[0], 1.0])),
    "diff_2d": loss(lambda x: np.diff(np.outer(x, x[:3]), axis=0)),
    "append": loss(lambda x: np.append(x, x[:2] ** 2)),
    "append_axis": loss(lambda x: np.append(x.reshape(2, 2), [[x[0], 1.0]], axis=0)),
    "split": lambda x: sum(np.prod(p) for p in np.split(x, 2)),
    "array_split": lambda x: sum(np.sum(p ** (k + 2)) for k, p in
                                 enumerate(np.array_split(x, 3))),
    "hsplit_vsplit": lambda x: np.sum(np.hsplit(x.reshape(2, 2), 2)[1] ** 3) +
    np.sum(np.vsplit(x.reshape(2, 2), 2)[0] * x[3]),
    "pad_constant": loss(lambda x: np.pad(x, (2, 1), constant_values=x[1])),
    "pad_edge_reflect": loss(lambda x: np.concatenate([np.pad(x, 2, mode=m) for m in
                                                       ("edge", "reflect", "symmetric",
                                                        "wrap")])),
    "pad_2d": loss(lambda x: np.pad(x.reshape(2, 2) ** 2, ((1, 0), (0, 2)), mode="edge")),
    "take_delete_resize_rot90": loss(lambda x: np.concatenate([
        np.take_along_axis(x.reshape(2, 2), np.array([[1, 0], [1, 1]]), 1).ravel(),
        np.delete(x, 1), np.resize(x[:3], 5), np.rot90(x.reshape(2, 2)).ravel()])),
    "kron": loss(lambda x: np.kron(x[:2], x[1:] ** 2)),
    "kron_2d": loss(lambda x: np.kron(x.reshape(2, 2), W2 * x[0])),
    "cross": loss(lambda x: np.cross(x[:3], x[1:] ** 2)),
    "cross_2d": lambda x: np.cross(x[:2], x[2:]) * x[0],
    "cross_rows": loss(lambda x: np.cross(np.stack([x[:3], x[1:]]), [1.0, -2.0, 0.5])),
    "sort": loss(lambda x: np.sort(x * x[::-1])),
    "sort_axis0": loss(lambda x: np.sort(x.reshape(2, 2) ** 3, axis=0)),
    "argsort": lambda x: np.sum(x[np.argsort(x)] * np.arange(4.0)),
    "argmax_argmin": lambda x: x[np.argmax(x)] ** 2 + x[np.argmin(x)] * x[0],
    "median_odd": lambda x: np.median(x[:3] ** 2) * x[3],
    "median_even": lambda x: np.median(x ** 3),
    "median_axis": loss(lambda x: np.median(x.reshape(2, 2) * x[0], axis=1)),
    "percentile": loss(lambda x: np.percentile(np.exp(x), [10, 50, 83])),
    "quantile": lambda x: np.quantile(x ** 2, 0.3) + np.quantile(x, 0.9),
    "cumprod": loss(lambda x: np.cumprod(x)),
    "cumprod_axis": loss(lambda x: np.cumprod(x.reshape(2, 2), axis=0)),
    "interp_x": loss(lambda x: np.interp(x, XP, FP)),
    "interp_fp": loss(lambda x: np.interp([0.25, 2.9, -2.0], XP[:4], x ** 2)),
    "interp_scalar": lambda x: np.interp(x[1], XP, FP, left=0.0, right=x[0]),
    "polyval_coeffs": lambda x: np.polyval(x, 0.7),
    "polyval_x": loss(lambda x: np.polyval([1.0, -2.0, 0.5], x)),
    "deg_rad": lambda x: np.sum(np.sin(np.deg2rad(x * 40)) + np.radians(x) * np.rad2deg(x)
                                + np.degrees(x)),
    "isnan_isinf_isfinite": lambda x: np.sum(np.where(np.isnan(x / x[1]), 0.0, x ** 2)
                                             + np.where(np.isinf(1.0 / x), 1.0, x)
                                             * np.isfinite(x)) + (x[0] if np.isnan(x[1])
                                                                  else x[1] ** 2),
    "select": loss(lambda x: np.select([x < 0, x > 2.0], [x ** 2, np.sin(x)], x * 3)),
    "piecewise": loss(lambda x: np.piecewise(x, [x < 0, x >= 1.0], [lambda u: u ** 3,
                                                                    np.exp, 0.5])),
    "piecewise_default": loss(lambda x: np.piecewise(x, [x < 0], [np.cos, lambda u: u * 2])),
    "trapezoid": lambda x: np.trapezoid(x ** 2, x=np.array([0.0, 0.5, 1.5, 2.0])) +
    np.trapezoid(x, dx=0.3) + np.trapezoid(np.exp(x), x=x * 2),
    "trapezoid_2d": loss(lambda x: np.trapezoid(np.outer(x, x), axis=0)),
    "convolve": loss(lambda x: np.concatenate([np.convolve(x, [1.0, -2.0, 0.5]),
                                               np.convolve(x[:2], x, "same"),
                                               np.convolve(x ** 2, x[1:], "valid")])),
    "gradient": loss(lambda x: np.concatenate([np.gradient(x ** 3), np.gradient(x, 0.5),
                                               np.gradient(np.exp(x), 0.3, edge_order=2)])),
    "gradient_2d": loss(lambda x: np.stack(np.gradient(np.outer(x, x[:3]) ** 2, 0.5, 2.0))),
    "gradient_axis": loss(lambda x: np.gradient(np.outer(x, x), axis=1, edge_order=2)),
    "real_imag_conj": lambda x: np.sum(np.real(x) * np.conj(x) + np.imag(x) + x.real
                                       * x.conj() + x.imag),
    "astype_float": lambda x: np.sum(x.astype(np.float64) ** 2),
    "size1_output": lambda x: (x[:1] * x[2]).reshape(1, 1),
    "einsum_sublist": lambda x: np.einsum(x.reshape(2, 2), [0, 1], x[:2], [1], [0]) @ x[2:],
    "einsum_ellipsis": loss(lambda x: np.einsum("...i,i...->...", x.reshape(2, 2),
                                                x.reshape(2, 2) ** 2)),
    "einsum_broadcast": loss(lambda x: np.einsum("bij,bjk->bik", x.reshape(1, 2, 2),
                                                 np.stack([W2, W2.T]) * x[0])),
    "einsum_three": lambda x: np.einsum("i,ij,j->", x[:2], x.reshape(2, 2), x[2:]),
    "einsum_trace_outer": loss(lambda x: np.einsum("ii,k->k", x.reshape(2, 2), x)),
    "tensordot_scalar": loss(lambda x: np.tensordot(x[0], x, 0) + np.tensordot(x, 2.0, 0)),
}


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_function_reverse_forward_nested(name):
    check(FUNCS[name])


def test_functions_values_match_numpy_exactly():
    """Values: bit for bit where fastad runs numpy's operations in numpy's order."""
    for name in ("remainder", "fmod", "floor_divide", "round", "sort", "median_even",
                 "percentile", "cumprod", "interp_x", "polyval_coeffs", "kron", "cross"):
        f = FUNCS[name]
        assert fd.value_and_grad(f)(X4)[0] == f(X4), name


def test_remainder_family_against_numpy_at_hard_points():
    a = np.array([1e17, -7.5, 7.5, -0.0, 5.0, 1.0, -1e-300])
    b = np.array([3.0, 2.0, -2.0, 3.0, 0.1, 0.1, 2.0])
    for uf in (np.remainder, np.fmod, np.floor_divide):
        got = fd.value_and_grad(lambda x, uf=uf: np.sum(uf(x, b) * W[:7]))(a)[0]
        np.testing.assert_equal(got, np.sum(uf(a, b) * W[:7]))
        for k in range(len(a)):                        # the scalar path (C helper)
            v = fd.value_and_grad(lambda s, uf=uf, k=k: uf(s, b[k]))(a[k])[0]
            np.testing.assert_equal(v, uf(a[k], b[k]))
    # d/db (a mod b) = -floor(a / b): closed form
    np.testing.assert_allclose(fd.grad(lambda b: np.remainder(7.5, b))(2.0), -3.0)
    np.testing.assert_allclose(fd.grad(lambda b: np.fmod(-7.5, b))(2.0), 3.0)


def test_sort_guard_retraces_when_the_order_changes():
    f = fd.grad(lambda x: np.sum(np.sort(x) * np.arange(1.0, 5.0)))
    np.testing.assert_allclose(f(X4), [2, 3, 1, 4])
    np.testing.assert_allclose(f(X4b), [2, 3, 1, 4])
    assert f.cache_info()["retraces"] == 0
    np.testing.assert_allclose(f(np.array([3.0, 1.0, 2.0, 0.0])), [4, 2, 3, 1])
    assert f.cache_info()["retraces"] == 1


def test_interp_guard_retraces_when_x_changes_segment():
    f = fd.grad(lambda x: np.interp(x, XP, FP))
    slope = np.diff(FP) / np.diff(XP)
    np.testing.assert_allclose(f(0.2), slope[1], rtol=1e-15)
    np.testing.assert_allclose(f(0.4), slope[1], rtol=1e-15)
    assert f.cache_info()["retraces"] == 0
    np.testing.assert_allclose(f(1.0), slope[2], rtol=1e-15)
    np.testing.assert_allclose(f(5.0), 0.0)
    assert f.cache_info()["retraces"] == 2


def test_einsum_forms_match_numpy_values():
    rng = np.random.default_rng(3)
    A, B, C = rng.normal(size=(1, 3, 4)), rng.normal(size=(2, 4, 5)), rng.normal(size=5)
    cases = [("...ij,...jk->...ik", (A, B)), ("bij,bjk,k->bi", (A, B, C)),
             ("ijk,ijk->", (A, A)), ("...i,...i", (A, A)), ("ij...->...", (A,)),
             ("ijk", (A,)), ("iik->k", (np.ones((2, 2, 3)),))]
    for spec, ops in cases:
        ref = np.einsum(spec, *ops)
        got = fd.value_and_grad(lambda a, rest=ops[1:], spec=spec:
                                np.sum(np.einsum(spec, a, *rest) * 1.5))(ops[0])[0]
        np.testing.assert_allclose(got, np.sum(ref * 1.5), rtol=1e-13, err_msg=spec)


# ---------------------------------------------------------------------------- nested jvp

def test_nested_jvp_of_an_array_output():
    # the example: d/dx sum(d/dy [y, 2y]) = 0; and one with curvature
    g = fd.grad(lambda x: np.sum(fd.jvp(lambda y: np.array([y, 2 * y]), (x,), (1.0,))[1]))
    assert g(1.0) == 0.0
    h = fd.grad(lambda x: np.sum(fd.jvp(lambda y: np.array([y ** 3, np.sin(y)]),
                                        (x,), (1.0,))[1]))
    np.testing.assert_allclose(h(0.7), 6 * 0.7 - np.sin(0.7), rtol=1e-14)


def test_nested_jvp_of_tuple_list_and_dict_outputs():
    def inner(y):
        return (y[0] * y[1], [np.exp(y), y[1]], {"a": y ** 2, "b": 3.0})

    def outer(x):
        out, t = fd.jvp(inner, (x,), (np.array([1.0, 0.5]),))
        assert isinstance(t, tuple) and isinstance(t[1], list) and set(t[2]) == {"a", "b"}
        return t[0] + np.sum(t[1][0]) * t[1][1] + np.sum(t[2]["a"]) + t[2]["b"] + out[0]

    x = np.array([0.4, 1.3])

    def plain(x):
        v = np.array([1.0, 0.5])
        t0 = v[0] * x[1] + x[0] * v[1]
        t1 = np.exp(x) * v
        return t0 + np.sum(t1) * v[1] + np.sum(2 * x * v) + x[0] * x[1]

    v, g = fd.value_and_grad(outer)(x)
    np.testing.assert_allclose(v, plain(x), rtol=1e-14)
    np.testing.assert_allclose(g, central_diff(plain, x), rtol=1e-6)


# ---------------------------------------------------------------------------- refusals

import scipy.integrate  # noqa: E402
import scipy.special  # noqa: E402

UNSUPPORTED = {
    "np.fft.fft": lambda x: np.sum(np.fft.fft(x).real),
    "np.unique": lambda x: np.sum(np.unique(x)),
    "np.nonzero": lambda x: np.sum(x[np.nonzero(x)]),
    "np.searchsorted": lambda x: np.searchsorted(x, 0.5) * x[0],
    "np.histogram": lambda x: np.sum(np.histogram(x)[0]),
    "np.signbit": lambda x: np.sum(np.where(np.signbit(x), 0.0, x)),
    "np.heaviside": lambda x: np.sum(np.heaviside(x, 0.5)),
    "np.nanmean": lambda x: np.nanmean(x),
    "np.partition": lambda x: np.sum(np.partition(x, 2)),
    "np.bincount": lambda x: np.sum(np.bincount(x)),
    "np.lexsort": lambda x: np.sum(np.lexsort((x, x))),
    "np.pad": lambda x: np.sum(np.pad(x, 1, mode="linear_ramp")),
    "argpartition": lambda x: np.sum(x.argpartition(2)),
    "scipy.special.struve": lambda x: np.sum(scipy.special.struve(1.0, x)),
    "scipy.integrate.quad": lambda x: scipy.integrate.quad(lambda u: u * x[0], 0.0, 1.0)[0],
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_functions_are_named_in_the_refusal(name):
    with pytest.raises(TypeError) as info:
        fd.grad(UNSUPPORTED[name])(X4)
    msg = str(info.value)
    assert name in msg, msg
    assert "not supported" in msg, msg
    assert "float() was called" not in msg and "fastad" in msg, msg
