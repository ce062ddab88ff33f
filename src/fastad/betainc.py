"""The regularized incomplete beta function on traced values (docs/linalg.md).

`betainc(a, b, x)` = I_x(a, b) and `betaincc(a, b, x)` = 1 - I_x(a, b), scipy.special's
functions, as one BETAINC record (csrc/linalg_betainc.h) over the broadcast of the three
arguments: its three operands do not fit the op table's unary and binary lines, so it is
recorded like the linear-algebra records.  Derivatives in x are closed-form, in a and b
they come from the same continued fraction run in Taylor arithmetic; every order nests
up to the fourth (higher ones are NaN).  `scipy.special.betainc(traced, ...)` lands here
through numpy's ufunc protocol.
"""
import numpy as np

from fastad._tape import op_table, linalg_record
from fastad._tracer import Traced, TracedArray
from fastad.arrays import COMPOSED_UFUNCS, as_traced, contiguous, tape_of, wrap
from fastad._record import slots_of

__all__ = ["betainc", "betaincc"]

BETAINC = [name for name, kind in op_table()].index("betainc")
COMPLEMENT = 512        # csrc/linalg.h: FA_BETAINC_COMPL


def _traced(*xs):
    return tape_of(*xs) is not None


def _shape(x):
    return tuple(x.shape) if type(x) in (Traced, TracedArray) else np.shape(x)


def _record(a, b, x, variant, name):
    tape = tape_of(a, b, x)
    shapes = [_shape(v) for v in (a, b, x)]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"fastad: {name}: operands could not be broadcast together with "
                         f"shapes {' '.join(map(str, shapes))}") from None
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return np.zeros(shape)
    if _traced(a, b):       # a then b in one range of 2n slots
        idx = [np.broadcast_to(slots_of(tape, as_traced(tape, v)), shape).ravel()
               for v in (a, b)]
        sab = tape.gather(np.concatenate(idx))
    else:
        sab = contiguous(tape, np.concatenate([np.broadcast_to(np.asarray(v, float), shape)
                                               .ravel() for v in (a, b)]), (2 * n,))
    sx = contiguous(tape, as_traced(tape, x) if _traced(x) else x, shape)
    return wrap(tape, linalg_record(tape, BETAINC, sab, sx, n, 1, variant), shape)


def betainc(a, b, x):
    """scipy.special.betainc: the regularized incomplete beta function I_x(a, b),
    differentiable in a, b and x (docs/linalg.md: method and accuracy)."""
    if not _traced(a, b, x):
        import scipy.special
        return scipy.special.betainc(a, b, x)
    return _record(a, b, x, 0, "betainc")


def betaincc(a, b, x):
    """scipy.special.betaincc: 1 - I_x(a, b), formed without cancellation where it is
    small (the upper tail of beta and t distributions)."""
    if not _traced(a, b, x):
        import scipy.special
        return scipy.special.betaincc(a, b, x)
    return _record(a, b, x, COMPLEMENT, "betaincc")


def _register():
    try:
        import scipy.special as sp
    except ImportError:
        return
    COMPOSED_UFUNCS[sp.betainc] = betainc
    if hasattr(sp, "betaincc"):
        COMPOSED_UFUNCS[sp.betaincc] = betaincc


_register()
