"""Errors of numpy code on traced arrays (docs/numpy.md): what is not supported says so,
with the right exception type and a message that names the culprit and the way out.
After each error fastad must stay usable (checked at the end of every test)."""
import numpy as np
import pytest

import fastad as fd

X = np.array([1.0, 2.0, 3.0])


def still_usable():
    g = fd.grad(lambda x: np.sum(np.sin(x) * x))(X)
    np.testing.assert_allclose(g, np.sin(X) + X * np.cos(X), rtol=1e-14)


@pytest.fixture(autouse=True)
def _fastad_usable_afterwards():
    yield
    still_usable()


def raises(exc, fun, x=X):
    """fun's error through both fd.grad and fd.value_and_grad (first call = trace)."""
    with pytest.raises(exc) as info:
        fd.grad(fun)(x)
    with pytest.raises(exc):
        fd.value_and_grad(fun)(x)
    return str(info.value)


# ------------------------------------------------------------------ unsupported functions

UNSUPPORTED = {
    # name the user wrote -> (function, how it must appear in the message)
    "np.linalg.matrix_rank": (lambda x: np.linalg.matrix_rank(np.outer(x, x)) * x[0],
                              "matrix_rank"),
    "np.unique": (lambda x: np.sum(np.unique(x)), "unique"),
    "np.fft.fft": (lambda x: np.sum(np.fft.fft(x).real), "fft"),
    "np.argpartition": (lambda x: x[np.argpartition(x, 1)[0]], "argpartition"),
    "np.nancumprod": (lambda x: np.sum(np.nancumprod(x)), "nancumprod"),
    "np.nanmedian": (lambda x: np.nanmedian(x), "nanmedian"),
    "np.signbit (ufunc)": (lambda x: np.sum(np.where(np.signbit(x), 0.0, x)), "signbit"),
    "np.heaviside (ufunc)": (lambda x: np.sum(np.heaviside(x, 0.5)), "heaviside"),
    "np.partition on 2-d": (lambda x: np.sum(np.partition(x.reshape(3, 1), 0, axis=0)),
                            "partition"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_numpy_function_raises_type_error_naming_it(case):
    fun, name = UNSUPPORTED[case]
    msg = raises(TypeError, fun)
    assert name in msg, msg
    assert "not supported" in msg, msg


@pytest.mark.parametrize("case,qualified", [("np.linalg.matrix_rank", "np.linalg.matrix_rank"),
                                            ("np.fft.fft", "np.fft.fft")])
def test_unsupported_submodule_function_is_named_with_its_submodule(case, qualified):
    """np.linalg.matrix_rank should not be reported as `np.matrix_rank`, nor np.fft.fft as `np.fft`
    (the user looks for the function they called)."""
    msg = raises(TypeError, UNSUPPORTED[case][0])
    assert qualified in msg, msg


def test_einsum_with_an_integer_dtype_is_refused():
    msg = raises(TypeError, lambda x: np.einsum("i,i,i->", x, x, x, dtype=int))
    assert "einsum" in msg


# ------------------------------------------------------------------ writing into float ndarrays

def _assign_scalar(x):
    a = np.zeros(3)
    a[0] = x[0]
    return a.sum()


def _assign_scalar_2d(x):
    a = np.zeros((2, 2))
    a[1, 0] = x[1] * 2.0
    return a.sum()


def _assign_in_loop(x):
    a = np.empty(len(x))
    for i in range(len(x)):
        a[i] = x[i] ** 2
    return np.sum(a)


def _fill(x):
    a = np.zeros(2)
    a.fill(x[0])
    return a.sum()


@pytest.mark.parametrize("fun", [_assign_scalar, _assign_scalar_2d, _assign_in_loop, _fill],
                         ids=lambda f: f.__name__)
def test_writing_traced_scalar_into_float_ndarray(fun):
    msg = raises(TypeError, fun)
    assert "list" in msg, msg
    assert "np.array" in msg and "np.stack" in msg, msg


def _assign_slice(x):
    a = np.zeros(5)
    a[1:4] = x
    return a.sum()


def _assign_row(x):
    a = np.zeros((2, 3))
    a[0] = np.sin(x)
    return a.sum()


@pytest.mark.parametrize("fun", [_assign_slice, _assign_row], ids=lambda f: f.__name__)
def test_writing_traced_array_into_float_ndarray_says_what_to_do(fun):
    msg = raises(TypeError, fun)
    assert any(s in msg for s in ("np.stack", "np.concatenate", "np.array")), msg


def test_writing_into_a_traced_argument_rebinds_its_slot():
    """numpy allows assigning into an argument; in fastad it rebinds the element's slot
    (the caller's array is not written)."""
    def fun(x):
        x[0] = 1.0
        return x.sum() * x[1]

    x = X.copy()
    np.testing.assert_allclose(fd.grad(fun)(x), [0.0, 1.0 + x[1] + x[2] + x[1], x[1]])
    np.testing.assert_array_equal(x, X)


def test_writing_into_a_comparison_mask_is_refused():
    def fun(x):
        m = x > 1.5
        m[0] = 0.25
        return np.sum(np.where(m, x, 0.0))

    msg = raises(TypeError, fun)
    assert "mask" in msg


def test_the_suggested_fix_works():
    """The message's advice -- build a list and call np.stack -- differentiates."""
    def fun(x):
        parts = [x[i] ** 2 for i in range(len(x))]
        return np.sum(np.stack(parts))

    np.testing.assert_allclose(fd.grad(fun)(X), 2 * X, rtol=1e-15)


# ------------------------------------------------------------------ shape errors

BROADCAST_MISMATCH = {
    "traced+traced": lambda x: np.sum(x + x[:2]),
    "traced+const": lambda x: np.sum(x + np.ones(4)),
    "const*traced": lambda x: np.sum(np.ones(2) * x),
    "2d": lambda x: np.sum(x.reshape(3, 1) * np.ones((2, 3))),
    "traced_2d": lambda x: np.sum(np.outer(x, x)[:2] - x[:2]),
    "ufunc_call": lambda x: np.sum(np.arctan2(x, np.ones(2))),
    "where": lambda x: np.sum(np.where(x > 0, x, np.ones(4))),
}


@pytest.mark.parametrize("case", sorted(BROADCAST_MISMATCH))
def test_broadcast_mismatch_raises_value_error(case):
    msg = raises(ValueError, BROADCAST_MISMATCH[case])
    assert "broadcast" in msg, msg


MATMUL_MISALIGNED = {
    "2d@2d": lambda x: np.sum(x.reshape(1, 3) @ x.reshape(1, 3)),
    "const@traced": lambda x: np.sum(np.ones((2, 2)) @ x.reshape(3, 1)),
    "traced@const": lambda x: np.sum(x.reshape(3, 1) @ np.ones((2, 2))),
    "1d@1d": lambda x: x @ x[:2],
    "2d@1d": lambda x: np.sum(np.ones((2, 2)) @ x),
    "np.matmul": lambda x: np.sum(np.matmul(x, np.ones((2, 3)))),
    "np.dot": lambda x: np.sum(np.dot(x, np.ones((2, 2)))),
    "batched": lambda x: np.sum(np.ones((2, 2, 2)) @ (x.reshape(3, 1, 1) * np.ones((3, 3)))),
}


@pytest.mark.parametrize("case", sorted(MATMUL_MISALIGNED))
def test_matmul_misaligned_raises_value_error(case):
    raises(ValueError, MATMUL_MISALIGNED[case])


def test_bad_reshape_and_concatenate_raise_value_error():
    raises(ValueError, lambda x: np.sum(x.reshape(2, 2)))
    raises(ValueError, lambda x: np.sum(np.concatenate([x.reshape(3, 1), np.ones((2, 2))])))


def test_matmul_with_scalar_operand_raises_value_error():
    raises(ValueError, lambda x: np.matmul(x[0], x))


# ------------------------------------------------------------------ traced masks and indices

TRACED_MASKS = {
    "x[x > 1.5]": lambda x: np.sum(x[x > 1.5]),
    "x[~(x > 1.5)]": lambda x: np.sum(x[~(x > 1.5)]),
    "x[(x > 1) & (x < 3)]": lambda x: np.sum(x[(x > 1) & (x < 3)]),
    "x[sin(x) > 0]": lambda x: np.sum(x[np.sin(x) > 0]),
    "2-d": lambda x: np.sum(x.reshape(3, 1)[x.reshape(3, 1) > 1]),
}


@pytest.mark.parametrize("case", sorted(TRACED_MASKS))
def test_boolean_indexing_with_traced_mask_raises_type_error_mentioning_where(case):
    msg = raises(TypeError, TRACED_MASKS[case])
    assert "np.where" in msg, msg


def test_traced_value_as_index_raises_type_error():
    msg = raises(TypeError, lambda x: np.sum(x[x]))
    assert "index" in msg


# ------------------------------------------------------------------ out=

OUTS = {
    "np.add": lambda x: np.sum(np.add(x, 1.0, out=np.empty(3))),
    "np.sin": lambda x: np.sum(np.sin(x, out=np.empty(3))),
    "np.multiply into x": lambda x: np.sum(np.multiply(x, x, out=x)),
    "np.sum": lambda x: np.sum(x, out=np.empty(())),
    "np.mean": lambda x: np.mean(x, out=np.empty(())),
    "np.max": lambda x: np.max(x, out=np.empty(())),
    "np.dot": lambda x: np.dot(x, x, out=np.empty(())),
    "np.matmul": lambda x: np.sum(np.matmul(x.reshape(3, 1), x.reshape(1, 3),
                                            out=np.empty((3, 3)))),
    "np.cumsum": lambda x: np.sum(np.cumsum(x, out=np.empty(3))),
    "np.clip": lambda x: np.sum(np.clip(x, 0.0, 1.0, out=np.empty(3))),
    "np.concatenate": lambda x: np.sum(np.concatenate([x, x], out=np.empty(6))),
    "scalar ufunc": lambda x: np.exp(x[0], out=np.empty(())),
}


@pytest.mark.parametrize("case", sorted(OUTS))
def test_out_argument_raises_type_error(case):
    msg = raises(TypeError, OUTS[case])
    assert "out=" in msg, msg


# ------------------------------------------------------------------ errors do not poison caches

def test_error_then_success_on_same_wrapper():
    """A function that fails for one signature still works for another, and the failing
    one keeps failing (no half-recorded tape is cached)."""
    def fun(x):
        if x.shape == (2,):
            return np.sum(np.unique(x))
        return np.sum(x ** 2)

    g = fd.grad(fun)
    with pytest.raises(TypeError):
        g(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g(X), 2 * X)
    with pytest.raises(TypeError):
        g(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g(X * 2), 4 * X)
