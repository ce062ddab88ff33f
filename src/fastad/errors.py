"""Every error fastad raises on purpose, in one catalogue.

Each class says, in its docstring, what causes it, how to fix it and an example; each has
one message builder (`...message()`), so a message exists in one wording however many
places can raise it.  docs/errors.md has a section per class (the anchors the messages
link to).  This module imports nothing of fastad: every layer, down to the tape, may
raise from here.
"""

__all__ = ["FastadError", "EscapedTracerError", "GuardFailure", "MixedTracesError",
           "TracedConversionError", "UnsupportedNumpyError", "UnsupportedMethodError",
           "NonScalarOutputError",
           "ComplexValueError", "NestedCallbackError", "docs_link"]

DOCS = "docs/errors.md"


def docs_link(anchor):
    """Where the message's error is explained: docs/errors.md#<anchor>."""
    return f"(see {DOCS}#{anchor})"


class FastadError(Exception):
    """Base of fastad's own errors (each is also the builtin error users expect: a
    TypeError, a RuntimeError, ...)."""
    anchor = ""


class EscapedTracerError(FastadError, RuntimeError):
    """A traced value was used after the function that produced it returned.

    Cause: while fastad traces a function its values are traced values, alive only during
    that trace; one was stored (in a global, a closure, an attribute, a list outside the
    function) and used later.  Fix: return what you need from the function.

    >>> saved = []
    >>> fd.grad(lambda x: saved.append(x) or x * x)(1.0)
    >>> saved[0] + 1            # EscapedTracerError
    """
    anchor = "escapedtracererror"

    @staticmethod
    def message(what="value"):
        return (f"fastad: a traced {what} was used after the function being differentiated "
                "returned (was it stored in a global, a closure or an attribute?). Traced "
                "values only live during their trace; return what you need from the function "
                f"instead {docs_link(EscapedTracerError.anchor)}")


class GuardFailure(FastadError):
    """A comparison recorded while tracing came out differently at replay.

    Raised by the low-level `Tape.forward` only: fastad's transforms (grad, jvp, ...)
    catch the outcome themselves and trace again.  Fix: retrace (call fastad.record again
    at the new point), or use the transforms, which do it for you."""
    anchor = "guardfailure"

    @staticmethod
    def message(index, name):
        return (f"guard record {index} ({name}) changed outcome: the inputs took another branch "
                f"than the recorded one; record the function again at this point "
                f"{docs_link(GuardFailure.anchor)}")


class MixedTracesError(FastadError, RuntimeError):
    """One operation met traced values of two different traces.

    Cause: a value traced by an enclosing function reached a function that fastad traces
    on a tape of its own -- `fastad.record` called inside a traced function on a closure
    over its values, or a traced value handed to another thread's trace.  (A grad, jvp or
    jacobian called inside a traced function records into the enclosing trace and mixes
    nothing.)  Fix: pass the value as an argument of the inner function."""
    anchor = "mixedtraceserror"

    @staticmethod
    def message():
        return ("fastad: this operation mixes traced values of two different traces: a value "
                "traced by an enclosing function reached a function that fastad traces on a "
                "tape of its own (fastad.record inside a traced function, or another thread's "
                "trace). Pass the value to that function as an argument instead "
                f"{docs_link(MixedTracesError.anchor)}")


class TracedConversionError(FastadError, TypeError):
    """A traced value was turned into a Python number (float(), complex(), math.sin, or
    assigned into a plain numpy array).

    Cause: the number would be a constant -- its derivative lost, and replays would reuse
    the traced value.  Fix: keep it traced: numpy or fastad functions (np.sin, fd.sin)
    instead of math's, comparisons (x > 0) instead of float(), np.where for selections."""
    anchor = "tracedconversionerror"

    @staticmethod
    def message(text):
        """The message: `text` says what happened and how to fix it."""
        return f"fastad: {text} {docs_link(TracedConversionError.anchor)}"


class UnsupportedNumpyError(FastadError, TypeError):
    """A numpy or scipy function (or one of its arguments, such as out=) that fastad cannot
    differentiate was called on traced values.

    Fix: the message names the function and, where one exists, the supported way to write
    it; docs/numpy.md lists what is supported."""
    anchor = "unsupportednumpyerror"

    @staticmethod
    def message(name, instead=""):
        tail = f"; {instead}" if instead else "; docs/numpy.md lists the supported functions"
        return (f"fastad: {name} is not supported on traced values{tail} "
                f"{docs_link(UnsupportedNumpyError.anchor)}")

    @staticmethod
    def out_message(name):
        return UnsupportedNumpyError.message(
            f"{name}(..., out=...)", "it would write traced values into an array fastad "
            "cannot see; use the returned value instead")


class UnsupportedMethodError(UnsupportedNumpyError, AttributeError):
    """An ndarray method fastad does not implement on traced values (x.argpartition()).

    Also an AttributeError, so hasattr(x, name) still reads it as a missing attribute.
    Fix: the message lists the methods fastad supports; call np.<function>(x) where numpy
    has one."""
    anchor = "unsupportedmethoderror"


class NonScalarOutputError(FastadError, TypeError):
    """grad / value_and_grad / hessian need a function with a scalar output.

    Fix: return a float or a 0-d (size-1) array -- e.g. out.sum() -- or use
    fastad.jacobian for the derivative of every output."""
    anchor = "nonscalaroutputerror"

    @staticmethod
    def message(name, what):
        return (f"fastad: {name} must return a real scalar (a float or a 0-d array) to be "
                f"differentiated this way, but it returned {what}. To differentiate the sum "
                "of its outputs, return out.sum(); for the derivative of every output, use "
                f"fastad.jacobian {docs_link(NonScalarOutputError.anchor)}")


class ComplexValueError(FastadError, TypeError):
    """A complex number or array reached fastad (an argument, a tangent, a cotangent, or
    an operand while tracing).

    fastad differentiates real programs.  Fix: pass the real and imaginary parts as two
    float arguments."""
    anchor = "complexvalueerror"

    @staticmethod
    def message(what, dtype=None):
        """`what` is complex (dtype: the array's, for an array)."""
        kind = f"is a complex array ({dtype})" if dtype is not None else "is complex"
        return (f"fastad: {what} {kind}; fastad differentiates real programs. Pass the real "
                "and imaginary parts as two float arrays "
                f"{docs_link(ComplexValueError.anchor)}")


class NestedCallbackError(FastadError, NotImplementedError):
    """A custom_vjp rule was met by forward mode (jvp, hessian, hvp) or by a derivative of
    a derivative.

    Cause: a custom rule is Python code called back at replay; only its reverse rule
    exists, and it is not itself recorded.  Fix: use grad/vjp through it, or write the
    function with fastad's operations so that every mode can see through it."""
    anchor = "nestedcallbackerror"

    @staticmethod
    def forward_message(name):
        return (f"fastad: {name} has a custom reverse-mode rule (custom_vjp) only; forward "
                "mode (jvp, jacfwd, hessian, hvp) cannot go through it. Use grad, vjp or "
                f"jacrev {docs_link(NestedCallbackError.anchor)}")

    @staticmethod
    def nested_message():
        return ("fastad: a derivative of a derivative would go through a custom_vjp function, "
                "whose rule is Python and cannot be recorded; higher-order derivatives of "
                "such functions are not supported. Write the function with fastad's "
                f"operations to nest through it {docs_link(NestedCallbackError.anchor)}")
