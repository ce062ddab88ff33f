"""fastad's command line: `python -m fastad [-n N]` (the demo) and `python -m fastad trace`.

    python -m fastad trace "x1*x2 + exp(x1*x2) - sin(x2)" --at x1=1.5 x2=0.5

prints the lecture notes' three tables (primal, tangent, adjoint) for any expression of
fastad's functions.  The expression is parsed with `ast` and checked against a whitelist
(variables given with --at, numbers, + - * / **, unary -, calls of supported functions);
it is never passed to eval or exec.  It becomes a small program in which a repeated
subexpression is computed once (x1*x2 above is one variable, v3), sums of several terms
are added level by level like the notes' trace (v6 = v3 - v4, v7 = v5 + v6; --as-written
keeps Python's left-to-right order instead), and variables are numbered level by level.
That program is traced by fastad into a tape, and the tape's evaluation trace is printed.

Bad input (a refused construct, an unknown name, a missing or malformed value, an
overflowing constant such as 2**10**10, too deep nesting) prints one line on stderr and
exits with status 2.
"""
import argparse
import sys
import textwrap

from fastad.trace import GraphvizNotFoundError, check_show, to_ascii
from fastad.expression import (FUNCTION_ALIASES, MAX_DEPTH, ExpressionError, function_table,
                               compile_expression, parse_values, trace_expression)

__all__ = ["main", "trace_expression", "compile_expression", "ExpressionError"]


# --------------------------------------------------------------------------- arguments

class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


TRACE_HELP = """\
Print the evaluation trace of an expression: the lecture notes' primal, tangent (forward
mode) and adjoint (reverse mode) tables, or the computation graph.

The expression may use: the variables given with --at; numbers; the constants pi, e, tau;
+ - * / ** and unary - and +; and these functions (numpy names, differentiable by fastad):
{functions}
and the aliases
{aliases}.
Nothing else is accepted (no attribute access, subscripts, lambdas, comprehensions,
comparisons, keyword arguments): the expression is parsed with Python's ast module and
checked node by node, never evaluated by eval/exec.

A repeated subexpression is computed once; a chain of + and - is added level by level,
like the notes (--as-written: left to right); variables are numbered level by level.

exit status: 0 on success, 2 on bad input (refused construct, unknown name, missing or
malformed value, overflow such as 2**10**10, nesting deeper than {depth})."""

EXAMPLES = """\
examples:
  python -m fastad                                  the demo (notes' example + Rosenbrock)
  python -m fastad -n 1000                          the demo with a 1000-dimensional Rosenbrock
  python -m fastad trace "x1*x2 + exp(x1*x2) - sin(x2)" --at x1=1.5 x2=0.5
  python -m fastad trace "x*sin(x)" --at x=2 --format json
  python -m fastad trace "x1*x2 + exp(x1*x2) - sin(x2)" --at x1=1.5 x2=0.5 \\
      --format dot --show value,adjoint | dot -Tsvg > graph.svg
"""


def build_parser():
    funcs = function_table()
    names = sorted(n for n in funcs if n not in FUNCTION_ALIASES)
    lines, line = [], "  "
    for n in names:
        if len(line) + len(n) + 2 > 88:
            lines.append(line.rstrip())
            line = "  "
        line += n + ", "
    lines.append(line.rstrip(", "))
    aliases = textwrap.fill(", ".join(f"{a} ({n})" for a, n in FUNCTION_ALIASES.items()
                                      if n in funcs), 86, initial_indent="  ",
                            subsequent_indent="  ")

    parser = _Parser(
        prog="python -m fastad",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="fastad: exact derivatives of numerical Python programs.\n\n"
                    "Without a command: run the demo, the lecture notes' worked example "
                    "(primal values,\ntangents, adjoints, gradient), then a traced-and-"
                    "replayed Rosenbrock gradient timed\nagainst plain Python.\n\n"
                    "trace: print the evaluation trace (primal, tangent, adjoint tables or "
                    "graph) of an\nexpression; see python -m fastad trace --help.",
        epilog=EXAMPLES)
    parser.add_argument("-n", type=int, default=10_000,
                        help="Rosenbrock dimension of the demo (default 10000)")
    sub = parser.add_subparsers(dest="command", metavar="{trace}", title="commands")
    tp = sub.add_parser(
        "trace", help="evaluation trace of an expression (primal, tangent, adjoint, graph)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=TRACE_HELP.format(functions="\n".join(lines), aliases=aliases,
                                      depth=MAX_DEPTH),
        epilog=EXAMPLES)
    tp.add_argument("expression", help='e.g. "x1*x2 + exp(x1*x2) - sin(x2)" (quote it)')
    tp.add_argument("--at", nargs="+", metavar="NAME=VALUE", required=True,
                    help="the variables and their values, in input order: --at x1=1.5 x2=0.5")
    tp.add_argument("--wrt", metavar="NAME",
                    help="tangent direction: the unit vector of this variable "
                         "(default: the first variable)")
    tp.add_argument("--format", default="table",
                    choices=["table", "markdown", "json", "dot", "mermaid", "mermaid-state"],
                    help="table (default): the notes' three tables; markdown: the same as "
                         "Markdown; json: the data (schema fastad.trace/1, docs/trace.md); "
                         "dot / mermaid / mermaid-state: the computation graph")
    tp.add_argument("--show", default="", metavar="WHAT",
                    help="for graphs: numbers to print on the nodes, comma-separated from "
                         "value, tangent, adjoint, or all")
    tp.add_argument("--render", metavar="PATH",
                    help="also write the graph to PATH (.svg, .png, .pdf need Graphviz's "
                         "dot; .dot and .mmd are text)")
    tp.add_argument("--as-written", action="store_true",
                    help="add chains of + and - left to right as written instead of level "
                         "by level")
    tp.add_argument("--columns", action="store_true",
                    help="table/markdown: one table with value, tangent and adjoint columns "
                         "instead of three tables")
    tp.add_argument("--precision", type=int, default=12, metavar="DIGITS",
                    help="significant digits in tables (default 12)")
    tp.add_argument("--max-rows", type=int, default=60, metavar="N",
                    help="elide the middle of longer tables (default 60; 0: never)")
    tp.add_argument("--ascii", action="store_true",
                    help="write v3dot / v3bar instead of v̇3 / v̄3")
    return parser


def _stdout_takes_unicode():
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "v\u0307\u0304·…⋮ẋ".encode(enc)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def run_trace(args):
    at = parse_values(args.at)
    if args.precision < 1 or args.precision > 17:
        raise ExpressionError("--precision must be between 1 and 17")
    if args.max_rows < 0:
        raise ExpressionError("--max-rows must be >= 0")
    try:
        tr = trace_expression(args.expression, at, wrt=args.wrt, balance=not args.as_written)
    except (TypeError, ValueError) as e:
        if isinstance(e, ExpressionError):
            raise
        raise ExpressionError(str(e)) from None
    max_rows = args.max_rows or None
    ascii_ = args.ascii or not _stdout_takes_unicode()
    fmt = args.format
    try:
        show = check_show(args.show)
    except ValueError as e:
        raise ExpressionError(f"--show: {e}".replace("fastad: show= takes", "takes")) from None
    if fmt == "table":
        out = tr.to_table(split=not args.columns, max_rows=max_rows,
                          precision=args.precision, ascii=ascii_)
    elif fmt == "markdown":
        out = tr.to_markdown(split=not args.columns, max_rows=max_rows,
                             precision=args.precision)
    elif fmt == "json":
        out = tr.to_json(ensure_ascii=ascii_)
    elif fmt == "dot":
        out = tr.to_dot(show=show).rstrip("\n")
    else:
        out = tr.to_mermaid(show=show, kind="state" if fmt == "mermaid-state"
                            else "flowchart").rstrip("\n")
    if args.render:
        try:
            tr.render(args.render, show=show)
        except GraphvizNotFoundError as e:
            raise ExpressionError(str(e).replace("fastad: ", "")) from None
        except (OSError, RuntimeError, ValueError) as e:
            raise ExpressionError(f"--render {args.render}: {e}") from None
    if ascii_:
        out = to_ascii(out).encode("ascii", "backslashreplace").decode("ascii")
    try:
        print(out)
        sys.stdout.flush()
    except BrokenPipeError:          # e.g. piped into head: not an error of ours
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


_TRACE_OPTIONS = ("-h", "--help", "--at", "--wrt", "--format", "--show", "--render",
                  "--as-written", "--columns", "--precision", "--max-rows", "--ascii")


def _protect_expressions(argv):
    """After `trace`, an argument starting with '-' that is no option (an expression such
    as "-x1 + 2") gets a leading space, so argparse takes it as the expression."""
    argv = list(argv)
    if "trace" not in argv:
        return argv
    for i in range(argv.index("trace") + 1, len(argv)):
        tok = argv[i]
        if tok == "--":
            break
        if tok.startswith("-") and len(tok) > 1:
            head = tok.split("=", 1)[0]
            is_option = head in _TRACE_OPTIONS or (
                head.startswith("--") and len(head) > 2
                and any(o.startswith(head) for o in _TRACE_OPTIONS))
            if not is_option:
                argv[i] = " " + tok
    return argv


def main(argv=None):
    """The command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_protect_expressions(sys.argv[1:] if argv is None else argv))
    if args.command == "trace":
        prog = "python -m fastad trace"
        try:
            return run_trace(args)
        except ExpressionError as e:
            print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
    if args.n < 2:
        parser.error("-n must be at least 2")
    from fastad import demo
    demo.main(args.n)
    return 0
