"""Every error of the API contract's Errors section, plus recovery and NaN/inf propagation."""

import math

import numpy as np
import pytest
from mpmath import mp, mpf

import fastad as fd
from reference import EPS


# ------------------------------------------------------------------ non-scalar output

NON_SCALAR_OUTPUTS = {
    "array output": (lambda x: x, np.ones(3)),
    "2-D row output": (lambda x: x[0], np.ones((2, 3))),
    "slice output": (lambda x: x[1:], np.arange(4.0)),
    "tuple output": (lambda x: (x * 2.0, x + 1.0), 1.5),
    "list output": (lambda x: [x[0], x[1]], np.arange(2.0)),
}


@pytest.mark.parametrize("which", ["grad", "value_and_grad"])
@pytest.mark.parametrize("case", list(NON_SCALAR_OUTPUTS))
def test_non_scalar_output(case, which):
    fun, arg = NON_SCALAR_OUTPUTS[case]
    with pytest.raises(TypeError) as info:
        getattr(fd, which)(fun)(arg)
    msg = str(info.value)
    assert ".sum()" in msg, msg
    assert "jacobian" in msg, msg


# ------------------------------------------------------------------ argnums out of range


@pytest.mark.parametrize("argnums", [2, (0, 2), (5,)])
@pytest.mark.parametrize("which", ["grad", "value_and_grad"])
def test_argnums_out_of_range(argnums, which):
    def f(x, y):
        return x * y

    with pytest.raises(TypeError, match="argnums"):
        getattr(fd, which)(f, argnums=argnums)(1.0, 2.0)


# ------------------------------------------------------------------ bad argument types


@pytest.mark.parametrize("bad,word", [
    (1.0 + 2.0j, "complex"),
    (np.complex128(1.0 + 2.0j), "complex"),
    (np.array([1.0 + 0j, 2.0]), "complex"),
    (np.array([1.0, "a"], dtype=object), "object"),
    (np.array([1.0, 2.0], dtype=object), "object"),
    ("abc", "str"),
])
@pytest.mark.parametrize("which", ["grad", "value_and_grad"])
def test_bad_differentiated_argument(bad, word, which):
    with pytest.raises(TypeError) as info:
        getattr(fd, which)(lambda x: x * 2.0)(bad)
    assert word in str(info.value).lower(), str(info.value)


def test_bad_argument_in_second_position_of_argnums():
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x, y: x * 2.0, argnums=(0, 1))(1.0, 3.0 + 1j)
    assert "complex" in str(info.value).lower()


def test_complex_jvp_primal():
    with pytest.raises(TypeError) as info:
        fd.jvp(lambda x: x * 2.0, (1.0 + 1j,), (1.0,))
    assert "complex" in str(info.value).lower()


# ------------------------------------------------------------------ leaking tracers into Python


LEAKS = {
    "float(t)": (lambda x: float(x) * 2.0, "float"),
    "complex(t)": (lambda x: complex(x).real * 2.0, "complex"),
    "math.sin(t)": (lambda x: math.sin(x), None),
    "math.exp(t)": (lambda x: math.exp(x) + x, None),
}


@pytest.mark.parametrize("case", list(LEAKS))
def test_conversion_of_traced_value_raises(case):
    fun, word = LEAKS[case]
    with pytest.raises(TypeError) as info:
        fd.grad(fun)(1.5)
    msg = str(info.value)
    assert "trace" in msg.lower(), f"message should name the traced value: {msg}"
    if word is not None:
        assert word in msg, msg
    # the message suggests a fix (numpy / fastad functions, comparisons, or replay=False)
    assert any(k in msg for k in ("np.", "numpy", "fd.", "fastad", "comparison", "if ",
                                  "instead")), msg


def test_traced_value_as_list_index_raises():
    table = [1.0, 2.0, 3.0]
    with pytest.raises(TypeError):
        fd.grad(lambda x: table[x] * x)(1.0)


def test_bool_and_comparisons_are_fine():
    # bool(t) / comparisons record guards, they do not raise
    assert fd.grad(lambda x: x * 2.0 if bool(x) else x * 3.0)(1.0) == 2.0
    assert fd.grad(lambda x: x * 2.0 if x > 0 else x * 3.0)(-1.0) == 3.0


# ------------------------------------------------------------------ unsupported numpy functions


def test_unsupported_ufunc_names_the_function():
    with pytest.raises(TypeError) as info:
        fd.grad(lambda x: np.spacing(x) + x)(1.0)
    assert "spacing" in str(info.value)


@pytest.mark.parametrize("fun,name,arg", [
    (lambda x: np.fft.fft(x)[0].real, "fft", np.ones(4)),
    (lambda x: np.linalg.matrix_rank(x) * x[0, 0], "matrix_rank", np.eye(2)),
])
def test_unsupported_array_function_names_the_function(fun, name, arg):
    with pytest.raises(TypeError) as info:
        fd.grad(fun)(arg)
    assert name in str(info.value), str(info.value)


# ------------------------------------------------------------------ escaped tracers


def test_escaped_tracer_error():
    assert issubclass(fd.EscapedTracerError, RuntimeError)
    leaked = []

    def f(x):
        leaked.append(x)
        return x * x

    assert fd.grad(f)(3.0) == 6.0
    t = leaked[0]
    with pytest.raises(fd.EscapedTracerError):
        t + 1.0
    with pytest.raises(fd.EscapedTracerError):
        np.sin(t)
    with pytest.raises(fd.EscapedTracerError):
        2.0 * t


def test_escaped_tracer_used_inside_another_traced_function():
    leaked = []
    fd.grad(lambda x: leaked.append(x) or x * 2.0)(1.0)
    with pytest.raises(fd.EscapedTracerError):
        fd.grad(lambda y: y * leaked[0])(2.0)
    # fastad is still fine afterwards
    assert fd.grad(lambda y: y * y)(2.0) == 4.0


# ------------------------------------------------------------------ user exceptions


class Boom(Exception):
    pass


def test_exception_in_fun_propagates_unchanged_and_fastad_recovers():
    err = Boom("boom")

    def f(x):
        y = np.sin(x) * x              # some ops are recorded before the failure
        if y > 1.0:
            raise err
        return y + np.exp(x)

    g = fd.grad(f)
    x0 = 0.5
    expected = lambda x: mp.cos(mpf(x)) * mpf(x) + mp.sin(mpf(x)) + mp.exp(mpf(x))
    assert abs(mpf(g(x0)) - expected(x0)) <= 16 * EPS * 4
    with pytest.raises(Boom) as info:
        g(2.0)                         # replay's guard fails, the retrace raises midway
    assert info.value is err
    # the same wrapper still works, on replay and on a fresh trace
    for x in (0.5, 0.7, -1.0):
        assert abs(mpf(g(x)) - expected(x)) <= 16 * EPS * 4, x
    with pytest.raises(Boom):
        g(2.0)
    assert abs(mpf(g(0.3)) - expected(0.3)) <= 16 * EPS * 4
    # no half-recorded tape left behind: a new recording has exactly its own records
    tape = fd.record(lambda x: np.sin(x) * x, 0.5)
    assert [r[0] for r in tape.records()] == ["sin", "multiply"]


def test_exception_on_first_trace():
    calls = [0]

    def f(x):
        calls[0] += 1
        if calls[0] == 1:
            _ = x * 3.0
            raise ValueError("first call fails")
        return x * x

    g = fd.grad(f)
    with pytest.raises(ValueError, match="first call fails"):
        g(2.0)
    assert g(2.0) == 4.0
    assert g(-3.0) == -6.0


def test_exception_inside_numpy_call_propagates():
    def f(x):
        return np.sin(x) * {}["missing"]

    with pytest.raises(KeyError):
        fd.grad(f)(1.0)
    assert fd.grad(lambda x: np.sin(x))(0.0) == 1.0


# ------------------------------------------------------------------ NaN / inf propagation


def test_nan_input_propagates():
    v, g = fd.value_and_grad(np.sin)(math.nan)
    assert math.isnan(v) and math.isnan(g)
    v, g = fd.value_and_grad(lambda x: x * x)(math.nan)
    assert math.isnan(v) and math.isnan(g)
    # a constant partial does not depend on the value: d(x + 1)/dx = 1 even at NaN
    v, g = fd.value_and_grad(lambda x: x + 1.0)(math.nan)
    assert math.isnan(v) and g == 1.0
    v, g = fd.value_and_grad(lambda x: 2.0 * x)(math.nan)
    assert math.isnan(v) and g == 2.0


def test_inf_input_propagates():
    assert tuple(fd.value_and_grad(lambda x: x * x)(math.inf)) == (math.inf, math.inf)
    assert tuple(fd.value_and_grad(lambda x: x * x)(-math.inf)) == (math.inf, -math.inf)
    assert tuple(fd.value_and_grad(np.exp)(math.inf)) == (math.inf, math.inf)
    assert tuple(fd.value_and_grad(np.exp)(-math.inf)) == (0.0, 0.0)
    assert tuple(fd.value_and_grad(np.arctan)(math.inf)) == (math.pi / 2, 0.0)
    v, t = fd.jvp(lambda x: x * x, (math.inf,), (1.0,))
    assert v == math.inf and t == math.inf


def test_nan_in_array_only_affects_its_component():
    def f(x):
        s = 0.0
        for i in range(len(x)):
            s = s + x[i] * x[i] * (i + 1.0)
        return s

    x = np.array([1.0, math.nan, -2.0, 0.5])
    v, g = fd.value_and_grad(f)(x)
    assert math.isnan(v)
    assert math.isnan(g[1])
    np.testing.assert_array_equal(g[[0, 2, 3]], [2.0, -12.0, 4.0])


def test_division_by_zero_gives_ieee_inf():
    v, g = fd.value_and_grad(lambda x: 1.0 / x)(0.0)
    assert v == math.inf and g == -math.inf
    v, g = fd.value_and_grad(np.log)(0.0)
    assert v == -math.inf and g == math.inf


# ====================================================================== the catalogue

def test_every_error_class_is_its_builtin_too():
    """docs/errors.md: each catalogued error is also the builtin users catch."""
    from fastad import errors
    assert issubclass(errors.EscapedTracerError, RuntimeError)
    assert issubclass(errors.MixedTracesError, RuntimeError)
    for name in ("TracedConversionError", "UnsupportedNumpyError", "NonScalarOutputError",
                 "ComplexValueError"):
        assert issubclass(getattr(errors, name), TypeError), name
    assert issubclass(errors.NestedCallbackError, NotImplementedError)
    assert fd.EscapedTracerError is errors.EscapedTracerError
    assert fd.GuardFailure is errors.GuardFailure


def test_errors_page_is_generated_from_the_classes():
    """docs/errors.md is what tools/errors_doc.py prints, so doc and docstrings agree, and
    every anchor a message links to is a section there."""
    import importlib.util
    import pathlib
    from fastad import errors
    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("errors_doc", root / "tools" / "errors_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = (root / "docs" / "errors.md").read_text(encoding="utf-8")
    assert page == mod.page()
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and cls.anchor:
            assert f"## {name}" in page and cls.anchor == name.lower()


@pytest.mark.parametrize("call, cls", [
    (lambda: fd.grad(lambda x: x * np.ones(3))(1.0), "NonScalarOutputError"),
    (lambda: fd.grad(lambda x: x)(1j), "ComplexValueError"),
    (lambda: fd.jvp(lambda x: x, (np.ones(2),), (np.ones(2) * 1j,)), "ComplexValueError"),
])
def test_errors_are_raised_as_their_catalogue_class_with_a_link(call, cls):
    from fastad import errors
    with pytest.raises(getattr(errors, cls)) as info:
        call()
    assert f"docs/errors.md#{cls.lower()}" in str(info.value)
