"""fastad.sin, fastad.exp, ...: every elementwise function of the op table, by its numpy name.

They are generated from the C op table (csrc/ops.h), so this module lists no function by
hand.  On traced values they record into the tape; on plain numbers and arrays they are
the numpy (or scipy.special) functions of the same name.
"""
import math

import numpy as np

from fastad._tracer import apply_op, is_traced
from fastad.ops import ARITY, KIND, NAME, Kind


def _plain(name):
    """The function to call on untraced values."""
    f = getattr(np, name, None)
    if f is not None:
        return f
    try:
        import scipy.special
        return getattr(scipy.special, name)
    except ImportError:
        pass
    fallbacks = {
        "erf": np.vectorize(math.erf, otypes=[float]),
        "erfc": np.vectorize(math.erfc, otypes=[float]),
        "expit": lambda x: 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float))),
        "logit": lambda x: np.log(np.asarray(x, dtype=float) / (1.0 - np.asarray(x, dtype=float))),
    }
    return fallbacks[name]


def _make(name, code):
    plain = _plain(name)
    arity = ARITY[code]

    def f(*args):
        if len(args) != arity:
            raise TypeError(f"fastad.{name} takes {arity} argument(s), got {len(args)}")
        if any(is_traced(a) for a in args):
            return apply_op(code, arity, args, name)
        return plain(*args)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = (f"{name} of {'x' if arity == 1 else 'x, y'}, differentiable by fastad "
                 f"(the same as numpy's/scipy's {name} on plain values).")
    return f


def _public(op):
    return KIND[op] in (Kind.UNARY, Kind.BINARY) and not NAME[op].startswith("_")


SUPPORTED = tuple(NAME[op] for op in NAME if _public(op))

for _op in NAME:
    if _public(_op):
        globals()[NAME[_op]] = _make(NAME[_op], _op)

abs = globals()["absolute"]
round = globals()["rint"]

__all__ = list(SUPPORTED) + ["abs", "round", "SUPPORTED"]
