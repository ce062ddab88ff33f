"""The evaluation trace of a recorded tape: the lecture notes' tables and graph for any function.

    >>> import numpy as np, fastad as fd
    >>> def f(x1, x2):
    ...     return x1 * x2 + np.exp(x1 * x2) - np.sin(x2)
    >>> tr = fd.trace(f, 1.5, 0.5, tangents=(1.0, 0.0))
    >>> print(tr)                      # doctest: +SKIP
    >>> tr.to_markdown(); tr.to_json(); tr.rows; tr.to_dot(); tr.to_mermaid()
    >>> tr.render("graph.svg")         # needs Graphviz's `dot`

One row per primal variable: the inputs v1..vn (named after the function's parameters),
then one row per record of the tape in execution order.  A row holds the op, its operands
(variables as v-indices, elements and slices of array variables as v3[2], v3[0:10],
constants as numbers), the value, and optionally the tangent (forward mode, for a given
input direction) and the adjoint (reverse mode, seeded with 1 at the output).  Comparisons
the function made appear as guard rows without a v-index.  Array (ranged) records are one
row each, with their length; long traces are elided in the middle when printed.

The package, one job per module:
    model   EvaluationTrace: frozen rows built from a tape and its swept values
    rules   the tangent and adjoint rules as text, read from the op table's D_* partials
    text    tables, the notes' three tables, Markdown, HTML and JSON (one column layout)
    graph   DOT, Mermaid and images through Graphviz
    info    TapeInfo / trace_info: statistics of a tape or a compiled function
    fmt     numbers, widths and the ASCII spelling shared by all of them

The JSON schema of `EvaluationTrace.to_json` is documented in docs/trace.md.
"""
from __future__ import annotations

from typing import Any, Callable

import inspect

import numpy as np

from fastad.trace.fmt import to_ascii
from fastad.trace.graph import GraphvizNotFoundError, check_show
from fastad.trace.info import TapeInfo, optimizer_text, trace_info
from fastad.trace.model import EvaluationTrace
from fastad.trace.text import SCHEMA

__all__ = ["trace", "EvaluationTrace", "trace_info", "TapeInfo", "GraphvizNotFoundError",
           "SCHEMA", "check_show", "to_ascii"]


def _arg_layout(fun, args):
    """Input names and shapes for fastad.record's classification of `args` (floats are
    scalar inputs, float arrays array inputs, anything else is static)."""
    from fastad.api import is_record_input
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    names, shapes = [], []
    for i, a in enumerate(args):
        if not is_record_input(a):
            continue
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY,
                                                  params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        else:
            names.append(f"x{i + 1}")
        shape = getattr(a, "shape", ())
        shapes.append(tuple(shape) if shape != () else None)
    return names, shapes


def _flat_direction(tangents, args):
    """A tangent direction given per argument (like jvp) or flat, as a flat array over the
    tape's inputs."""
    from fastad.api import is_record_input
    if isinstance(tangents, np.ndarray) and tangents.ndim == 1 and len(args) != 1:
        return tangents
    if not isinstance(tangents, (tuple, list)):
        tangents = (tangents,)
    inputs = [a for a in args if is_record_input(a)]
    if len(tangents) == len(args) and len(args) != len(inputs):
        tangents = [t for t, a in zip(tangents, args) if any(a is b for b in inputs)]
    if len(tangents) != len(inputs):
        return np.ravel(np.asarray(tangents, dtype=float))
    parts = []
    for t, a in zip(tangents, inputs):
        ta = np.asarray(t, dtype=float)
        if isinstance(a, np.ndarray) and ta.shape != a.shape:
            raise ValueError(f"fastad.trace: a tangent has shape {ta.shape} but its argument "
                             f"has shape {a.shape}")
        parts.append(ta.ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def trace(fun: Callable[..., Any] | Any, *args: Any, tangents: Any = None, adjoint: bool = True,
          title: str | None = None) -> EvaluationTrace:
    """The evaluation trace of `fun(*args)`: its primal variables with values, tangents
    (if `tangents` gives an input direction) and adjoints (reverse mode, seed 1).

    fun: a scalar-valued function, traced once with fastad.record (or a Tape: its trace
         at its current values).
    tangents: None (no tangent column), or the direction ẋ like jvp's tangents: one
         entry per float/array argument (e.g. (1.0, 0.0) for d/dx1), or a flat array over
         all inputs.
    adjoint: add the adjoint column (reverse mode, seeded with 1 at the output).

    Returns an EvaluationTrace: print it, or use .rows, .to_markdown(), .to_json(),
    .to_dot(), .to_mermaid(), .render("graph.svg").
    """
    from fastad._tape import Tape
    if isinstance(fun, Tape):
        if args:
            raise TypeError("fastad.trace(tape) takes no arguments: it traces the tape at "
                            "its current values")
        direction = None if tangents is None else np.ravel(np.asarray(tangents, dtype=float))
        return EvaluationTrace.of_tape(fun, tangents=direction, adjoint=adjoint, title=title)
    if not callable(fun):
        raise TypeError(f"fastad.trace: expected a function (or a Tape), got "
                        f"{type(fun).__name__}")
    from fastad.api import record
    tape = record(fun, *args)
    names, shapes = _arg_layout(fun, args)
    direction = None if tangents is None else _flat_direction(tangents, args)
    if title is None:
        fname = getattr(fun, "__name__", None)
        if fname and fname != "<lambda>":
            title = f"{fname}({', '.join(names)})"
    tr = EvaluationTrace.of_tape(tape, tangents=direction, adjoint=adjoint, title=title,
                                 input_names=names, input_shapes=shapes)
    # what grad & co. replay instead: the same recording, optimized (docs/design.md)
    opt = record(fun, *args)
    opt.optimize()
    if opt.optimized["loops"] or opt.optimized.get("fused_chains"):
        tr.optimizer = optimizer_text(opt.optimized)
    return tr
