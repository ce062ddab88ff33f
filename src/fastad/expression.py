"""Expressions as small programs: the compiler behind `python -m fastad trace`.

    compile_expression("x1*x2 + exp(x1*x2) - sin(x2)", ["x1", "x2"])

parses an expression of fastad's functions with `ast` and checks it against a whitelist
(variables, numbers, + - * / **, unary - and +, calls of supported functions); it is never
passed to eval or exec.  The result is a `Program` in which a repeated subexpression is
computed once (x1*x2 above is one variable, v3), sums of several terms are added level by
level like the notes' trace (v6 = v3 - v4, v7 = v5 + v6; balance=False keeps Python's
left-to-right order instead), and variables are numbered level by level.
`trace_expression` traces that program into a tape and returns its evaluation trace.

Every refusal (a construct outside the whitelist, an unknown name, a malformed or
overflowing number, too deep nesting) raises `ExpressionError` naming the offending piece.
"""
import ast
import heapq
import keyword
import math

import numpy as np

__all__ = ["trace_expression", "compile_expression", "parse_values", "Program",
           "ExpressionError", "FUNCTION_ALIASES", "CONSTANTS", "MAX_DEPTH"]

MAX_LENGTH = 10_000      # characters of an expression
MAX_DEPTH = 100          # nesting of the syntax tree
MAX_NODES = 10_000       # nodes of the syntax tree

# spellings accepted besides the numpy names of fastad.SUPPORTED
FUNCTION_ALIASES = {
    "abs": "absolute", "fabs": "absolute", "round": "rint", "pow": "power", "ln": "log",
    "asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2",
    "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "max": "maximum",
    "min": "minimum", "sigmoid": "expit",
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINOPS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide",
           ast.Pow: "power"}
_OP_SYMBOL = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
              ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&",
              ast.Not: "not", ast.Invert: "~"}
_REFUSED = {
    ast.Attribute: "attribute access", ast.Lambda: "lambda",
    ast.ListComp: "list comprehension", ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension", ast.GeneratorExp: "generator expression",
    ast.Subscript: "subscript", ast.Compare: "comparison", ast.BoolOp: "boolean operator",
    ast.IfExp: "conditional expression", ast.NamedExpr: "assignment expression",
    ast.List: "list", ast.Tuple: "tuple", ast.Dict: "dict", ast.Set: "set",
    ast.JoinedStr: "f-string", ast.FormattedValue: "f-string", ast.Starred: "starred argument",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slice",
}
ALLOWED = "variables, numbers, + - * / **, calls of supported functions"


class ExpressionError(ValueError):
    """An expression or a value the command line refuses (exit status 2)."""


def function_table():
    """name -> (numpy name, arity) for every callable name."""
    from fastad.functions import SUPPORTED
    from fastad.ops import ARITY, BY_NAME
    table = {name: (name, ARITY[BY_NAME[name]]) for name in SUPPORTED}
    for alias, name in FUNCTION_ALIASES.items():
        if name in table:
            table[alias] = table[name]
    return table


def _short(text, limit=60):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"



def _segment(text, a):
    return _short(ast.get_source_segment(text, a) or type(a).__name__)


def _refuse(text, what, a, extra=""):
    raise ExpressionError(f"refused {what} `{_segment(text, a)}`{extra} (allowed: {ALLOWED})")


class _Refusals(ast.NodeVisitor):
    """The whitelist, checked before anything is looked up: refuses the first construct
    (outermost, then leftmost) that is not a constant, a name, + - * / **, unary - +, or a
    call without keywords, naming it (a lambda, a comprehension, an attribute access, ...).
    Names, called functions and constants are checked when the tree is translated."""

    def __init__(self, text):
        self.text = text

    def _operator(self, a, allowed):
        if not isinstance(a.op, allowed):
            _refuse(self.text, f"operator `{_OP_SYMBOL.get(type(a.op), '?')}` in", a)

    def visit_BinOp(self, a):
        self._operator(a, tuple(_BINOPS))
        self.visit(a.left)
        self.visit(a.right)

    def visit_UnaryOp(self, a):
        self._operator(a, (ast.USub, ast.UAdd))
        self.visit(a.operand)

    def visit_Call(self, a):
        if a.keywords:
            kw = a.keywords[0]
            _refuse(self.text, "keyword argument", kw if kw.arg else a,
                    f" in `{_segment(self.text, a)}`")
        for child in [a.func] + list(a.args):
            self.visit(child)

    def visit_Constant(self, a):
        pass                    # checked when translated

    visit_Name = visit_Constant

    def generic_visit(self, a):
        _refuse(self.text, _REFUSED.get(type(a), type(a).__name__.lower()), a)


# --------------------------------------------------------------------------- the program

class _Node:
    __slots__ = ("kind", "op", "args", "value", "name", "level", "order", "src")

    def __init__(self, kind, order, op=None, args=(), value=None, name=None, src=""):
        self.kind, self.op, self.args, self.value, self.name = kind, op, args, value, name
        self.order, self.src = order, src
        self.level = 0 if kind != "op" else 1 + max(a.level for a in args)


class Program:
    """An expression compiled to a straight-line program over named variables, with
    repeated subexpressions shared and constant subexpressions folded."""

    def __init__(self, text, variables, *, balance=True):
        self.text = text
        self.variables = list(variables)
        self.balance = balance
        self._funcs = function_table()
        self._interned = {}
        self._count = 0
        for name in self.variables:
            if name in self._funcs:
                raise ExpressionError(f"`{name}` is a function name; give the variable "
                                      "another name")
        self.inputs = [self._intern(("var", name), "var", name=name, src=name)
                       for name in self.variables]
        tree = _parse(text)
        _Refusals(text).visit(tree.body)
        self.output = self._node(tree.body)
        self.order = self._schedule()

    # -- building
    def _intern(self, key, kind, src="", **kw):
        node = self._interned.get(key)
        if node is None:
            node = self._interned[key] = _Node(kind, self._count, src=src, **kw)
            self._count += 1
        return node

    def _const(self, value, src):
        value = float(value)
        return self._intern(("const", value.hex()), "const", value=value, src=src)

    def _op(self, op, args, src):
        if all(a.kind == "const" for a in args):         # fold constants
            return self._const(_evaluate(op, [np.float64(a.value) for a in args], src), src)
        return self._intern(("op", op) + tuple(id(a) for a in args), "op", op=op,
                            args=tuple(args), src=src)

    def _seg(self, a):
        return _segment(self.text, a)

    def _refuse(self, what, a, extra=""):
        _refuse(self.text, what, a, extra)

    def _node(self, a):
        if isinstance(a, ast.Constant):
            v = a.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                kind = {str: "string", bytes: "bytes", complex: "complex number"}.get(
                    type(v), "constant")
                self._refuse(kind, a)
            try:
                return self._const(float(v), self._seg(a))
            except OverflowError:
                raise ExpressionError(f"number too large for float64: `{self._seg(a)}`") \
                    from None
        if isinstance(a, ast.Name):
            if a.id in self.variables:
                return self.inputs[self.variables.index(a.id)]
            if a.id in CONSTANTS:
                return self._const(CONSTANTS[a.id], a.id)
            if a.id in self._funcs:
                raise ExpressionError(f"`{a.id}` is a function: call it, e.g. {a.id}(x)")
            given = ", ".join(self.variables) or "none"
            raise ExpressionError(f"unknown name `{a.id}`: not a variable given with --at "
                                  f"({given}), a supported function or a constant "
                                  f"(pi, e, tau); give its value with --at {a.id}=VALUE")
        if isinstance(a, ast.UnaryOp):
            if isinstance(a.op, ast.UAdd):
                return self._node(a.operand)
            if isinstance(a.op, ast.USub):
                if self.balance:
                    _, inner = _strip_signs(a)
                    if _is_sum(inner):
                        return self._sum(a)
                return self._negate(self._node(a.operand), self._seg(a))
        if isinstance(a, ast.BinOp):
            op = _BINOPS[type(a.op)]
            if self.balance and op in ("add", "subtract"):
                return self._sum(a)
            left, right = self._node(a.left), self._node(a.right)
            if op == "power" and isinstance(a.right, ast.Constant) and \
                    type(a.right.value) is int and a.right.value == 2:
                return self._op("square", [left], self._seg(a))   # as x**2 traces
            return self._op(op, [left, right], self._seg(a))
        return self._call(a)          # the only other node _Refusals lets through

    def _negate(self, node, src):
        if node.kind == "const":
            return self._const(-node.value, src)
        return self._op("negative", [node], src)

    def _call(self, a):
        f = a.func
        if not isinstance(f, ast.Name):
            self._refuse("call", a)
        if f.id not in self._funcs:
            raise ExpressionError(f"refused call of `{f.id}` in `{self._seg(a)}`: `{f.id}` is "
                                  "not a supported function (the list: python -m fastad "
                                  "trace --help)")
        name, arity = self._funcs[f.id]
        if len(a.args) != arity:
            raise ExpressionError(f"`{f.id}` takes {arity} argument{'s' if arity > 1 else ''}, "
                                  f"got {len(a.args)} in `{self._seg(a)}`")
        return self._op(name, [self._node(x) for x in a.args], self._seg(a))

    def _sum(self, a):
        """A chain of + and - as signed terms, added level by level: the two terms ready
        first (lowest level, then earliest) are combined first, which gives the notes'
        v6 = v3 - v4, v7 = v5 + v6 for x1*x2 + exp(x1*x2) - sin(x2)."""
        terms = []
        _flatten(a, 1, terms)
        src = self._seg(a)
        heap = []
        for i, (sign, t) in enumerate(terms):
            node = self._node(t)
            heapq.heappush(heap, (node.level, node.order, i, sign, node))
        seq = len(terms)
        while len(heap) > 1:
            _, _, _, s1, n1 = heapq.heappop(heap)
            _, _, _, s2, n2 = heapq.heappop(heap)
            if s1 > 0 and s2 > 0:
                sign, node = 1, self._op("add", [n1, n2], src)
            elif s1 > 0:
                sign, node = 1, self._op("subtract", [n1, n2], src)
            elif s2 > 0:
                sign, node = 1, self._op("subtract", [n2, n1], src)
            else:
                sign, node = -1, self._op("add", [n1, n2], src)
            heapq.heappush(heap, (node.level, node.order, seq, sign, node))
            seq += 1
        _, _, _, sign, node = heap[0]
        return node if sign > 0 else self._negate(node, src)

    def _schedule(self):
        """The op nodes the output needs, level by level (then in order of appearance):
        a topological order that numbers the variables like the notes."""
        seen, stack, ops = set(), [self.output], []
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.kind == "op":
                ops.append(n)
                stack.extend(n.args)
        ops.sort(key=lambda n: (n.level, n.order))
        return ops

    # -- running
    def function(self):
        """The program as a Python function of the variables (traceable by fastad)."""
        from fastad import functions as F
        impl = {n.op: getattr(F, n.op) for n in self.order}
        order, output, inputs = self.order, self.output, self.inputs

        def program(*xs):
            env = {id(node): x for node, x in zip(inputs, xs)}
            for n in order:
                env[id(n)] = impl[n.op](*[a.value if a.kind == "const" else env[id(a)]
                                          for a in n.args])
            return output.value if output.kind == "const" else env[id(output)]
        return program

    def check_overflow(self, values, at_text):
        """Evaluate in float64 and refuse a subexpression that overflows at this point
        (e.g. x1**10**10), naming it."""
        env = {id(node): np.float64(v) for node, v in zip(self.inputs, values)}
        for n in self.order:
            args = [np.float64(a.value) if a.kind == "const" else env[id(a)] for a in n.args]
            env[id(n)] = _evaluate(n.op, args, n.src, at_text)


def _is_sum(a):
    return isinstance(a, ast.BinOp) and isinstance(a.op, (ast.Add, ast.Sub))


def _strip_signs(a):
    sign = 1
    while isinstance(a, ast.UnaryOp) and isinstance(a.op, (ast.USub, ast.UAdd)):
        if isinstance(a.op, ast.USub):
            sign = -sign
        a = a.operand
    return sign, a


def _flatten(a, sign, out):
    """Signed terms of a chain of + and - (unary signs folded into the terms' signs)."""
    stack = [(a, sign)]
    while stack:
        a, sign = stack.pop()
        if _is_sum(a):
            stack.append((a.right, sign if isinstance(a.op, ast.Add) else -sign))
            stack.append((a.left, sign))
        elif isinstance(a, ast.UnaryOp) and isinstance(a.op, (ast.USub, ast.UAdd)):
            s, inner = _strip_signs(a)
            if _is_sum(inner):
                stack.append((inner, sign * s))
            else:
                out.append((sign * s, inner))
        else:
            out.append((sign, a))


def _evaluate(op, args, src, at_text=""):
    """op on float64 values, refusing an overflow (division by zero and invalid
    operations give inf/nan as numpy does)."""
    from fastad import functions as F
    f = getattr(F, op)
    try:
        with np.errstate(over="raise", divide="ignore", invalid="ignore", under="ignore"):
            return np.float64(f(*args))
    except FloatingPointError:
        where = f" at {at_text}" if at_text else ""
        raise ExpressionError(f"`{src}` overflows float64{where} (exponent or argument too "
                              "large)") from None
    except OverflowError:
        where = f" at {at_text}" if at_text else ""
        raise ExpressionError(f"`{src}` overflows float64{where}") from None


def _parse(text):
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression too long ({len(text)} characters; the limit is "
                              f"{MAX_LENGTH})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        msg = e.msg
        if "nested" in msg or "too complex" in msg:
            raise ExpressionError(f"expression nested too deeply ({msg})") from None
        col = f" at column {e.offset}" if e.offset else ""
        raise ExpressionError(f"invalid syntax{col}: {msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression nested too deeply to parse") from None
    except ValueError as e:              # e.g. a literal beyond int's digit limit
        raise ExpressionError(f"invalid expression: {e}") from None
    # depth and size, without recursion
    stack, count = [(tree.body, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested too deeply (more than {MAX_DEPTH} "
                                  "levels)")
        if count > MAX_NODES:
            raise ExpressionError(f"expression too large (more than {MAX_NODES} nodes)")
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))
    return tree


def compile_expression(text, variables, *, balance=True):
    """Parse `text` (see the module docstring) over the named variables into a Program;
    raises ExpressionError naming the offending piece."""
    return Program(text, variables, balance=balance)


def _check_name(name):
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ExpressionError(f"`{name}` is not a valid variable name")
    if name.startswith("_"):
        raise ExpressionError(f"`{name}`: variable names may not start with _")


def parse_values(items):
    """["x1=1.5", "x2=0.5"] -> {"x1": 1.5, "x2": 0.5}, refusing malformed items."""
    at = {}
    for item in items:
        if "=" not in item:
            raise ExpressionError(f"--at `{item}`: expected NAME=VALUE, e.g. x1=1.5")
        name, _, text = item.partition("=")
        name = name.strip()
        _check_name(name)
        text = text.strip()
        if not text:
            raise ExpressionError(f"--at {name}=: missing value (write {name}=1.5)")
        if len(text) > 100:
            raise ExpressionError(f"--at {name}: malformed number `{_short(text, 30)}`")
        try:
            value = float(text)
        except ValueError:
            raise ExpressionError(f"--at {name}={text}: malformed number `{text}`") from None
        if not math.isfinite(value):
            raise ExpressionError(f"--at {name}={text}: the value must be a finite number")
        if name in at:
            raise ExpressionError(f"--at: `{name}` is given twice")
        at[name] = value
    return at


def trace_expression(text, at=None, *, wrt=None, adjoint=True, balance=True, **values):
    """The EvaluationTrace of an expression string at a point:

        trace_expression("x1*x2 + exp(x1*x2) - sin(x2)", x1=1.5, x2=0.5)

    at/values: the variables and their values, in input order.  wrt: the variable whose
    unit vector is the tangent direction (default the first; wrt=False: no tangents).
    balance: add sums level by level like the notes (False: left to right as written)."""
    from fastad.trace import EvaluationTrace
    from fastad.api import record
    at = dict(at or {})
    at.update(values)
    for name in at:
        _check_name(name)
    names = list(at)
    vals = [float(at[n]) for n in names]
    for n, v in zip(names, vals):
        if not math.isfinite(v):
            raise ExpressionError(f"{n}: the value must be a finite number")
    prog = compile_expression(text, names, balance=balance)
    at_text = ", ".join(f"{n}={_fmt(v)}" for n, v in zip(names, vals))
    prog.check_overflow(vals, at_text)
    direction = None
    if wrt is not False and names:
        w = names[0] if wrt is None else wrt
        if w not in names:
            raise ExpressionError(f"--wrt {w}: not one of the variables given with --at "
                                  f"({', '.join(names)})")
        direction = np.zeros(len(names))
        direction[names.index(w)] = 1.0
    tape = record(prog.function(), *vals)
    title = (f"f({', '.join(names)}) = {' '.join(text.split())}"
             + (f"   at {', '.join(f'{n} = {_fmt(v)}' for n, v in zip(names, vals))}"
                if names else ""))
    return EvaluationTrace.of_tape(tape, input_names=names, input_shapes=[None] * len(names),
                                   tangents=direction, adjoint=adjoint, title=title)


def _fmt(v):
    return repr(float(v)) if v != int(v) or abs(v) >= 1e15 else str(int(v))
