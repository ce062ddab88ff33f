"""fastad: exact derivatives of numerical Python programs, recorded once and replayed in C.

    import numpy as np, fastad as fd
    fd.grad(lambda x, y: x * y + np.exp(x * y) - np.sin(y), argnums=(0, 1))(1.5, 0.5)

Modules:
    api        grad, value_and_grad, jvp, record  (argument checking, the public entry points)
    functions  fastad.sin & co., generated from the op table
    arrays     numpy functions and ufuncs on traced arrays (ranged records)
    trace      the evaluation trace of a tape: tables, DOT/Mermaid graphs, statistics
    check      check_grad: derivatives against central finite differences
    nested     derivatives taken inside a traced function (recorded reverse sweeps)
    custom     custom_vjp: user derivative rules, called back from the sweeps
    optimize   minimize: scipy.optimize wired to value_and_grad, hvp and jacobian
    pytree     nested tuples, lists and dicts as arguments
    linalg     np.linalg / scipy.linalg on traced matrices (LAPACK-backed records)
    special    scipy.special on traced values;  stats: scipy.stats densities
    cli        python -m fastad trace "<expression>" (parsed against a whitelist)
    _tape      the Tape type (owner of a C tape) and the nogil sweeps
    _tracer    Traced / TracedArray: operator overloading and numpy dispatch while tracing
    _replay    trace once per signature, replay afterwards, retrace on a failed guard
"""
from fastad.api import (grad, value_and_grad, jvp, record, vjp, jacfwd, jacrev, jacobian,
                        hessian, hvp, hessian_vector_product, stop_gradient)
from fastad._tape import Tape, GuardFailure, RECORD_BYTES
from fastad._tracer import Traced, TracedArray, EscapedTracerError
from fastad.functions import *          # noqa: F401,F403  sin, exp, ... (see SUPPORTED)
from fastad.functions import SUPPORTED
from fastad.custom import custom_vjp
from fastad.optimize import minimize
from fastad.trace import trace, EvaluationTrace, trace_info, TapeInfo, GraphvizNotFoundError
from fastad.check import check_grad, GradCheckError, GradCheckResult
from fastad import linalg, special, stats   # np.linalg on traced arrays; scipy.special/stats

__version__ = "0.1.0"

__all__ = ["grad", "value_and_grad", "jvp", "record", "vjp", "jacfwd", "jacrev", "jacobian",
           "hessian", "hvp", "hessian_vector_product", "stop_gradient", "custom_vjp", "minimize", "Tape", "Traced", "TracedArray",
           "GuardFailure", "EscapedTracerError", "SUPPORTED", "RECORD_BYTES",
           "trace", "EvaluationTrace", "trace_info", "TapeInfo", "GraphvizNotFoundError",
           "check_grad", "GradCheckError", "GradCheckResult"] + list(SUPPORTED)
