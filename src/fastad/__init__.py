"""fastad: exact derivatives of numerical Python programs, recorded once and replayed in C.

    import numpy as np, fastad as fd
    fd.grad(lambda x, y: x * y + np.exp(x * y) - np.sin(y), argnums=(0, 1))(1.5, 0.5)

Modules:
    api        grad, value_and_grad, jvp, record  (argument checking, the public entry points)
    functions  fastad.sin & co., generated from the op table
    arrays     numpy functions and ufuncs on traced arrays (ranged records)
    numpy_extra  assignment, integers from traced values, sort/interp/einsum & co.
    trace      the evaluation trace of a tape: tables, DOT/Mermaid graphs, statistics
    check      check_grad: derivatives against central finite differences
    nested     derivatives taken inside a traced function (recorded reverse sweeps)
    custom     custom_vjp: user derivative rules, called back from the sweeps
    optimize   minimize: scipy.optimize wired to value_and_grad, hvp and jacobian
    sparse     sparsity patterns, colourings and sparse Jacobians/Hessians (_sparsity)
    constraints  NonlinearConstraint for minimize, least_squares: exact sparse derivatives
    pytree     nested tuples, lists and dicts as arguments
    expression an expression string compiled to a traceable program (an ast whitelist)
    batching   vmap: a function of one point over a batch, replayed in C (docs/scale.md)
    serialize  pickling of compiled functions and tapes (their recorded tapes travel)
    dask       dask_map: a compiled function over the chunks of dask arrays on a cluster
    linalg     np.linalg / scipy.linalg on traced matrices (LAPACK-backed records)
    special    scipy.special on traced values;  stats: scipy.stats densities
    cli        python -m fastad [trace "<expression>"]: argparse and output only
    _tape      the Tape type (owner of a C tape) and the nogil sweeps
    _tracer    Traced / TracedArray: operator overloading and numpy dispatch while tracing
    _replay    trace once per signature, replay afterwards, retrace on a failed guard
    _batch     one tape replayed for a batch of points (batch-major or lane by lane)
"""
from fastad.api import (grad, value_and_grad, jvp, record, vjp, jacfwd, jacrev, jacobian,
                        hessian, hvp, hessian_vector_product, stop_gradient)
from fastad._tape import Tape, GuardFailure, Record, RECORD_BYTES
from fastad._tracer import Traced, TracedArray, EscapedTracerError
from fastad.functions import *          # noqa: F401,F403  sin, exp, ... (see SUPPORTED)
from fastad.functions import SUPPORTED
from fastad.custom import custom_vjp
from fastad.numpy_extra import zeros, ones, empty, full
from fastad.optimize import minimize
from fastad.sparse import jacobian_sparsity, hessian_sparsity
from fastad.constraints import NonlinearConstraint, least_squares
from fastad.trace import trace, EvaluationTrace, trace_info, TapeInfo, GraphvizNotFoundError
from fastad.check import check_grad, GradCheckError, GradCheckResult
from fastad import linalg as linalg, special as special, stats as stats  # np.linalg, scipy.*
from fastad.batching import vmap
from fastad.dask import dask_map        # imports dask only when called
from fastad._replay import register_info as _register_info

_register_info(trace_info)          # g.info(): the tools layer's report, without an upward import

__version__ = "0.1.0"

__all__ = ["grad", "value_and_grad", "jvp", "record", "vjp", "jacfwd", "jacrev", "jacobian",
           "hessian", "hvp", "hessian_vector_product", "stop_gradient", "custom_vjp", "minimize",
           "Tape", "Traced", "TracedArray",
           "GuardFailure", "EscapedTracerError", "SUPPORTED", "RECORD_BYTES", "Record",
           "trace", "EvaluationTrace", "trace_info", "TapeInfo", "GraphvizNotFoundError",
           "check_grad", "GradCheckError", "GradCheckResult", "zeros", "ones", "empty", "full",
           "jacobian_sparsity", "hessian_sparsity", "NonlinearConstraint", "least_squares",
           "vmap", "dask_map"] + list(SUPPORTED)
