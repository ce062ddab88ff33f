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

`trace_info` summarises a tape or a compiled function (records by op, slots, bytes,
guards, cached tapes, retraces).  The JSON schema of `EvaluationTrace.to_json` is
documented in docs/trace.md.
"""
import bisect
import gc
import html
import inspect
import json
import math
import re
import functools
import shutil
import subprocess
import unicodedata
from collections import Counter

import numpy as np

__all__ = ["trace", "EvaluationTrace", "trace_info", "TapeInfo", "GraphvizNotFoundError",
           "SCHEMA"]

SCHEMA = "fastad.trace/1"

DOT_ACCENT = "\u0307"      # combining dot above: v̇3 (tangent)
BAR_ACCENT = "\u0304"      # combining macron: v̄3 (adjoint)
MUL = "\u00b7"             # middle dot in the rules

GUARD_SYMBOLS = {"less": "<", "less_equal": "<=", "equal": "==", "not_equal": "!="}
INFIX = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**",
         "matmul": "@"}

# Partial derivatives of each elementwise op, as text in the operand names {a}, {b} and the
# result's own name {r} (the notes' rules: exp' = v5, ...).  They are rendered from the op
# table itself (csrc/ops.h writes each partial in its D_* language), so no second list of
# rules exists.  Kinks follow fastad's conventions (docs/conventions.md); the text shows
# the smooth rule.
_CONSTANTS = {"FA_LN2": "ln(2)", "FA_LN10": "ln(10)", "FA_2_SQRTPI": "2/sqrt(pi)"}
_FUNCS = {"D_SQRT": "sqrt", "D_EXP": "exp", "D_LOG": "log", "D_SIN": "sin", "D_COS": "cos",
          "D_SINH": "sinh", "D_COSH": "cosh", "D_SIGNPOS": "sign", "D_LOG1P": "log1p"}
_INFIX = {"D_ADD": (" + ", 1), "D_SUB": (" - ", 1), "D_MUL": (MUL, 2), "D_DIV": ("/", 2)}


def _render(node):
    """(text, precedence) of a D_* expression: 1 sums, 2 products, 3 atoms."""
    import ast
    if isinstance(node, ast.Name):
        return {"D_0": ("0", 3), "D_1": ("1", 3)}.get(node.id, ("{" + node.id + "}", 3))
    if isinstance(node, ast.Constant):
        return _num(node.value), 3
    if isinstance(node, ast.UnaryOp):              # -FA_2_SQRTPI, -1.0
        text, _ = _render(node.operand)
        return "-" + text, 2
    name = node.func.id
    args = [_render(a) for a in node.args]
    if name == "D_K":
        arg = node.args[0]
        if isinstance(arg, ast.Name):
            return _CONSTANTS.get(arg.id, arg.id), 3
        if isinstance(arg, ast.UnaryOp) and isinstance(arg.operand, ast.Name):
            return "-" + _CONSTANTS.get(arg.operand.id, arg.operand.id), 2
        return _render(arg)
    if name in _INFIX:
        sym, prec = _INFIX[name]
        (x, px), (y, py) = args
        x = x if px >= prec else f"({x})"
        y = y if py > prec or (py == prec and name in ("D_ADD", "D_MUL")) else f"({y})"
        return f"{x}{sym}{y}", prec
    if name in _FUNCS:
        return f"{_FUNCS[name]}({args[0][0]})", 3
    if name == "D_NEG":
        x, px = args[0]
        return ("-" + x if px >= 2 else f"-({x})"), 2
    if name == "D_RECIP":
        x, px = args[0]
        return ("1/" + (x if px == 3 else f"({x})")), 2
    if name == "D_POW":
        (x, px), (y, py) = args
        return f"{x if px == 3 else f'({x})'}**({y})", 3
    if name == "D_POLYGAMMA":
        return f"polygamma({args[0][0]}, {args[1][0]})", 3
    if name == "D_HYPOT":
        return f"hypot({args[0][0]}, {args[1][0]})", 3
    if name == "D_SELNOT":                       # the rule off its kink
        return args[1]
    if name in ("D_GTSHARE", "D_FMAXDA"):
        return f"[{args[0][0]} > {args[1][0]}]", 3
    if name == "D_EQ":
        return f"[{args[0][0]} = {args[1][0]}]", 3
    if name == "D_NE":
        return f"[{args[0][0]} \u2260 {args[1][0]}]", 3
    raise ValueError(f"no rendering for {name}")


@functools.lru_cache(maxsize=None)
def _partials_table():
    import ast
    from fastad._tape import op_partials
    table = {}
    for name, rules in op_partials().items():
        texts = tuple(_render(ast.parse(r, mode="eval").body)[0] for r in rules if r is not None)
        table[name] = texts
        table[name.lstrip("_")] = texts
    return table


INSTALL_GRAPHVIZ = (
    "fastad: rendering a graph needs Graphviz's `dot` program, which is not installed (not "
    "on PATH). Install it with `apt-get install graphviz` (Debian/Ubuntu), `conda install "
    "graphviz`, `brew install graphviz` (macOS) or from https://graphviz.org/download/ ; "
    "or write the text with .to_dot() / .to_mermaid() and render it elsewhere.")


class GraphvizNotFoundError(RuntimeError):
    """`render` was asked for an image but Graphviz's `dot` program is not installed."""


# ----------------------------------------------------------------------------- formatting

def _num(x, precision=12):
    """A number as short text: integers without a dot, others to `precision` digits."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    x = float(x)
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x)) if x != 0 or math.copysign(1, x) > 0 else "-0"
    return format(x, f".{precision}g")


def _array_text(a, shape=None, precision=6, edge=2):
    """A compact array: its shape and a few values, [a, b, …, z]."""
    a = np.asarray(a).ravel()
    shp = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")" \
        if shape is not None else f"[{a.size}]"
    if a.size <= 2 * edge + 1:
        body = ", ".join(_num(v, precision) for v in a)
    else:
        body = ", ".join([_num(v, precision) for v in a[:edge]] + ["…"]
                         + [_num(v, precision) for v in a[-edge:]])
    return f"{shp} [{body}]"


def _width(s):
    """Display width: combining accents take no column."""
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


def _pad(s, w):
    return s + " " * (w - _width(s))


def _ascii(s):
    """The ASCII spelling of a Unicode rule: v̇3 -> v3dot, v̄3 -> v3bar, · -> *."""
    s = re.sub(r"v" + DOT_ACCENT + r"(\d+)", r"v\1dot", s)
    s = re.sub(r"v" + BAR_ACCENT + r"(\d+)", r"v\1bar", s)
    s = re.sub(r"x" + DOT_ACCENT, "xdot", s).replace("\u1e8b", "xdot")     # ẋ
    return (s.replace(MUL, "*").replace("Σ", "sum").replace("…", "...")
            .replace("⋮", ":").replace("→", "->").replace("≠", "!="))


def _top_level_atomic(s):
    """True if `s` has no space outside parentheses/brackets (so it needs no parentheses
    as a factor)."""
    depth = 0
    for c in s:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == " " and depth == 0:
            return False
    return True


def _term(factor, partial):
    """factor·partial, simplified: None if the partial is 0."""
    p = partial.strip()
    if p == "0":
        return None
    if p == "1":
        return factor
    if p == "-1":
        return "-" + factor
    neg = p.startswith("-") and _top_level_atomic(p[1:])
    if neg:
        p = p[1:]
    if p.startswith("1/") and _top_level_atomic(p):
        t = f"{factor}/{p[2:]}"
    else:
        t = f"{factor}{MUL}{p if _top_level_atomic(p) else '(' + p + ')'}"
    return "-" + t if neg else t


def _join(terms):
    terms = [t for t in terms if t]
    if not terms:
        return "0"
    out = terms[0]
    for t in terms[1:]:
        out += " - " + t[1:] if t.startswith("-") else " + " + t
    return out


# ----------------------------------------------------------------------------- operands

class _Ref:
    """One operand of a record: a constant, (part of) a variable, or raw slots."""
    __slots__ = ("const", "v", "sub", "text", "vars", "whole")

    def __init__(self, const=None, v=None, sub="", text="", vars=(), whole=False):
        self.const, self.v, self.sub, self.text = const, v, sub, text
        self.vars = vars            # indices of the variables it reads (graph edges)
        self.whole = whole          # the whole variable (a scalar v3, or all of v3)

    @property
    def atom(self):
        """The text as a factor (a negative constant in parentheses)."""
        return f"({self.text})" if self.text.startswith("-") else self.text

    def accent(self, mark):
        """The tangent (mark = DOT_ACCENT) or adjoint name of this operand; None for a
        constant (whose tangent is 0)."""
        if self.v is None:
            return None if self.const is not None else f"d({self.text})"
        return f"v{mark}{self.v}{self.sub}"

    def as_json(self):
        if self.const is not None:
            c = self.const
            return {"const": [float(x) for x in c] if isinstance(c, np.ndarray) else float(c),
                    "text": self.text}
        d = {"text": self.text}
        if self.v is not None:
            d["v"] = self.v
        if self.sub:
            d["index"] = self.sub
        if self.vars and (self.v is None or list(self.vars) != [self.v]):
            d["reads"] = list(self.vars)
        return d


def _slice_text(start, stop, step):
    return f"[{start}:{stop}]" if step == 1 else f"[{start}:{stop}:{step}]"


# ----------------------------------------------------------------------------- the trace

class EvaluationTrace:
    """The evaluation trace of one recorded tape (see the module docstring).

    Build it with `fastad.trace(fun, *args)` (or `fastad.trace(tape)` for a tape you
    have).  `.rows` is the data: a list of dicts, one per primal variable or guard, with
    the keys of the JSON schema in docs/trace.md (`value`, `tangent` and `adjoint` are
    floats for scalar variables and 1-D numpy arrays for array variables).
    """

    def __init__(self, tape, *, input_names=None, input_shapes=None, tangents=None,
                 adjoint=True, title=None, function=None):
        self.tape = tape
        self.title = title
        self.function = function
        nin = tape.n_inputs
        names, shapes = _input_layout(nin, input_names, input_shapes)
        self._records = tape.records()
        self._values = np.asarray(tape.values, dtype=float)
        self.direction = None
        self._tangents = None
        if tangents is not None:
            xdot = np.ascontiguousarray(tangents, dtype=float).ravel()
            if xdot.size != nin:
                raise ValueError(f"fastad.trace: the tangent direction has {xdot.size} "
                                 f"components but the tape has {nin} inputs")
            tape.tangent(xdot)
            self.direction = xdot
            self._tangents = np.asarray(tape.tangents, dtype=float)
        self._adjoints = None
        if adjoint:
            tape.reverse()
            self._adjoints = np.asarray(tape.adjoints, dtype=float)
        self.output_slot = tape.output_slot
        gc_was_on = gc.isenabled()
        gc.disable()            # many small dicts, no cycles: the collector only slows this
        try:
            self._build(names, shapes)
        finally:
            if gc_was_on:
                gc.enable()

    # -------------------------------------------------------------------- building
    def _build(self, names, shapes):
        self._starts, self._vars = [], []        # per variable: (start, size, shape)
        self.input_names = list(names)
        rows = []
        slot = 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape)) if shape else 1
            row = self._new_var(slot, size, shape, "input", "input", name, [])
            row["expr"] = name
            rows.append(row)
            slot += size
        self._const_cache = {}
        for op, res, operands in self._records:
            refs = [self._ref(o) for o in operands]
            if isinstance(res, int) and res < 0:
                rows.append(self._guard_row(op, refs, operands))
                continue
            if isinstance(res, range):
                row = self._new_var(res.start, len(res), None, "op", op, None, refs,
                                    always_array=True)
            else:
                row = self._new_var(res, 1, None, "op", op, None, refs)
            row["expr"] = self._expr(op, refs, row, operands)
            rows.append(row)
        self._rows = rows
        self._var_rows = [r for r in rows if r["kind"] != "guard"]
        out = self.output_slot
        self.output = self._ref(out) if out is not None and out >= 0 else None
        for r in self._var_rows:
            r["output"] = bool(self.output is not None and self.output.whole
                               and self.output.v == r["v"])
        self._index_children()

    def _new_var(self, start, size, shape, kind, op, name, refs, always_array=False):
        k = len(self._vars) + 1
        self._starts.append(start)
        array = always_array or shape not in (None, ())
        self._vars.append((start, size, tuple(shape) if array and shape else
                           ((size,) if array else None)))
        sl = slice(start, start + size)
        row = {"v": k, "name": f"v{k}", "kind": kind, "op": op, "input": name,
               "operands": refs, "shape": self._vars[-1][2], "slots": [start, start + size]}
        for key, arr in (("value", self._values), ("tangent", self._tangents),
                         ("adjoint", self._adjoints)):
            if arr is None:
                row[key] = None
            elif array:
                row[key] = arr[sl].copy()
            else:
                row[key] = float(arr[start])
        return row

    def _guard_row(self, op, refs, operands):
        vals = []
        for o in operands:
            vals.append(self._values[o] if isinstance(o, int) and o >= 0 else None)
        outcome = None
        if len(vals) == 2 and None not in vals:
            a, b = vals
            outcome = bool({"less": a < b, "less_equal": a <= b, "equal": a == b,
                            "not_equal": a != b}.get(op, False))
        sym = GUARD_SYMBOLS.get(op)
        expr = f"{refs[0].atom} {sym} {refs[1].atom}" if sym and len(refs) == 2 else \
            f"{op}({', '.join(r.text for r in refs)})"
        return {"v": None, "name": None, "kind": "guard", "op": op, "input": None,
                "operands": refs, "shape": None, "slots": None, "expr": expr,
                "value": outcome, "tangent": None, "adjoint": None, "output": False}

    def _find(self, slot):
        """Index (0-based) of the variable holding `slot`, or None."""
        i = bisect.bisect_right(self._starts, slot) - 1
        if i >= 0:
            start, size, _ = self._vars[i]
            if slot < start + size:
                return i
        return None

    def _index_text(self, i, off):
        shape = self._vars[i][2]
        if shape is not None and len(shape) > 1:
            return "[" + ", ".join(str(int(j)) for j in np.unravel_index(off, shape)) + "]"
        return f"[{off}]"

    def _const(self, slot):
        c = self._const_cache.get(slot, 0)
        if c == 0:
            c = self._const_cache[slot] = self.tape.constant_value(slot)
        return c

    def _ref(self, o):
        if isinstance(o, (int, np.integer)):
            o = int(o)
            c = self._const(o)
            if c is not None:
                return _Ref(const=c, text=_num(c))
            i = self._find(o)
            if i is None:
                return _Ref(text=f"s{o}", vars=())
            start, size, shape = self._vars[i]
            if shape is None:
                return _Ref(v=i + 1, text=f"v{i + 1}", vars=(i + 1,), whole=True)
            sub = self._index_text(i, o - start)
            return _Ref(v=i + 1, sub=sub, text=f"v{i + 1}{sub}", vars=(i + 1,))
        if isinstance(o, tuple):            # gather: explicit slot list
            return self._gather_ref(o)
        if isinstance(o, range):
            return self._range_ref(o)
        return _Ref(text=str(o))

    def _range_ref(self, r):
        n = len(r)
        if n == 0:
            return _Ref(text="[]", const=np.zeros(0))
        first = r[0]
        if self._const(first) is not None:          # a constant array
            vals = np.array([self._const(s) for s in (r if n <= 64 else r[:5])] or [0.0])
            text = "[" + ", ".join(_num(v, 6) for v in vals) + "]" if n <= 5 else \
                f"const[{n}]"
            return _Ref(const=vals if n <= 64 else vals[:1], text=text)
        i = self._find(first)
        last = r[-1]
        j = self._find(last) if r.step > 0 else None
        if i is not None and i == j:
            start, size, shape = self._vars[i]
            if r.start == start and r.step == 1 and n == size:
                return _Ref(v=i + 1, text=f"v{i + 1}", vars=(i + 1,), whole=True)
            sub = _slice_text(r.start - start, r.stop - start if r.step == 1 else
                              last - start + 1, r.step)
            return _Ref(v=i + 1, sub=sub, text=f"v{i + 1}{sub}", vars=(i + 1,))
        touched = self._vars_of_slots(r)
        return _Ref(text=f"slots{_slice_text(r.start, r.stop, r.step)}", vars=touched)

    def _gather_ref(self, idx):
        n = len(idx)
        if n and n >= 2:
            step = idx[1] - idx[0]
            if step > 0 and all(idx[k + 1] - idx[k] == step for k in range(n - 1)):
                return self._range_ref(range(idx[0], idx[-1] + 1, step))
        if n == 1:
            return self._ref(int(idx[0]))
        touched = self._vars_of_slots(idx)
        if len(touched) == 1:
            i = touched[0] - 1
            start = self._vars[i][0]
            offs = [int(s) - start for s in idx]
            sub = "[[" + ", ".join(map(str, offs)) + "]]" if n <= 6 else f"[<{n} indices>]"
            return _Ref(v=i + 1, sub=sub, text=f"v{i + 1}{sub}", vars=touched)
        return _Ref(text=f"gather[{n} slots]", vars=touched)

    def _vars_of_slots(self, slots):
        seen = []
        last = None
        for s in (slots if len(slots) <= 100_000 else list(slots)[:100_000]):
            if self._const(int(s)) is not None:
                continue
            i = self._find(int(s))
            if i is not None and i != last and (i + 1) not in seen:
                seen.append(i + 1)
                last = i
        return tuple(seen)

    def _expr(self, op, refs, row, operands):
        size = row["slots"][1] - row["slots"][0]
        if op == "gather" and refs:
            return refs[0].text
        if op in ("sum", "prod", "max", "min", "cumsum") and refs and isinstance(
                operands[0], range):
            n_in = len(operands[0])
            nres = size if op != "cumsum" else max(1, size // max(1, n_in))
            arg = refs[0].text
            if op == "cumsum":
                return f"cumsum({arg})" if size == n_in else f"cumsum({arg}, per segment)"
            if nres > 1:
                return f"{op}({arg}, {nres} segments of {n_in // nres})"
            return f"{op}({arg})"
        if op in INFIX and len(refs) == 2:
            return f"{refs[0].atom} {INFIX[op]} {refs[1].atom}"
        if op == "negative" and len(refs) == 1:
            return f"-{refs[0].atom}"
        if op == "square" and len(refs) == 1:
            return f"{refs[0].atom} ** 2"
        if op == "reciprocal" and len(refs) == 1:
            return f"1 / {refs[0].atom}"
        return f"{op}({', '.join(r.text for r in refs)})"

    # -------------------------------------------------------------------- rules
    def _index_children(self):
        """Which records read each variable (for the adjoint rules)."""
        children = self._children = {}
        for row in self._var_rows:
            if row["kind"] == "input":
                continue
            for pos, ref in enumerate(row["operands"]):
                for v in ref.vars:
                    children.setdefault(v, []).append((row, pos))

    def _rule(self, row, which):
        """The tangent ("tangent_rule") or adjoint ("adjoint_rule") rule of a row, written
        like the notes (v̇3 = v̇1·v2 + v1·v̇2, v̄2 = v̄3·v1 + v̄4·cos(v2)); None if the trace
        has no such column, or for rules fastad does not spell out (array adjoints)."""
        if which in row:
            return row[which]
        rule = None
        if row["kind"] == "guard":
            pass
        elif which == "tangent_rule":
            if self.direction is not None:
                if row["kind"] == "input":
                    rule = _num(row["tangent"]) if row["shape"] is None else "ẋ (given)"
                else:
                    rule = self._tangent_rule(row)
        elif self._adjoints is not None:
            rule = self._adjoint_rule(row, self._children.get(row["v"], ()))
        row[which] = rule
        return rule

    @property
    def rows(self):
        """One dict per primal variable or guard, in execution order (keys: see
        docs/trace.md); pandas-free: pandas.DataFrame(trace.rows) works."""
        for row in self._rows:
            self._rule(row, "tangent_rule")
            self._rule(row, "adjoint_rule")
        return self._rows

    def _partials(self, row):
        op, refs = row["op"], row["operands"]
        tmpl = _partials_table().get(op)
        if tmpl is None or len(tmpl) != len(refs):
            return None
        fill = {"r": row["name"]}
        for key, ref in zip("ab", refs):
            fill[key] = ref.atom
        parts = [t.format(**fill) for t in tmpl]
        if op == "power" and refs[1].const is not None and not isinstance(
                refs[1].const, np.ndarray):
            b = float(refs[1].const)             # a constant exponent: b·a**(b-1) simplified
            a = refs[0].atom
            parts[0] = "0" if b == 0 else (_num(b) if b == 1 else (
                f"{_num(b)}{MUL}{a}" if b == 2 else
                f"{_num(b)}{MUL}{a}**{'(' + _num(b - 1) + ')' if b - 1 < 0 else _num(b - 1)}"))
        return parts

    def _tangent_rule(self, row):
        op, refs = row["op"], row["operands"]
        if op == "gather":
            return refs[0].accent(DOT_ACCENT) if refs and refs[0].v is not None else None
        if op in ("sum", "cumsum"):
            t = refs[0].accent(DOT_ACCENT) if refs else None
            return f"{op}({t})" if t else ("0" if refs and refs[0].const is not None else None)
        if op == "matmul" and len(refs) == 2:
            a, b = refs
            terms = []
            if a.accent(DOT_ACCENT):
                terms.append(f"{a.accent(DOT_ACCENT)} @ {b.atom}")
            if b.accent(DOT_ACCENT):
                terms.append(f"{a.atom} @ {b.accent(DOT_ACCENT)}")
            return _join(terms)
        parts = self._partials(row)
        if parts is None:
            return None
        terms = []
        for pos, (ref, p) in enumerate(zip(refs, parts)):
            t = ref.accent(DOT_ACCENT)
            if t is None:
                continue
            if op == "multiply" and pos == 1 and _top_level_atomic(p) and \
                    not p.startswith("-"):
                terms.append(f"{p}{MUL}{t}")         # the product rule as in the notes
            else:
                terms.append(_term(t, p))
        return _join(terms)

    def _adjoint_rule(self, row, uses):
        if row["shape"] is not None:
            return None                     # array variables: see the adjoint values
        terms = ["1"] if row["output"] else []
        for child, pos in uses:
            ref = child["operands"][pos]
            if not ref.whole:
                return None
            bar = f"v{BAR_ACCENT}{child['v']}"
            if child["op"] in ("sum", "cumsum", "gather"):
                return None
            parts = self._partials(child)
            if parts is None:
                return None
            t = _term(bar, parts[pos])
            if t is not None and child["shape"] is not None:
                t = f"Σ({t})"              # a scalar broadcast over an array result
            terms.append(t)
        return _join(terms)

    # -------------------------------------------------------------------- accessors
    def __len__(self):
        return len(self._rows)

    @property
    def n_variables(self):
        return len(self._var_rows)

    @property
    def value(self):
        """The output value f."""
        return float(self._values[self.output_slot]) if self.output is not None else None

    @property
    def gradient(self):
        """The input adjoints (df/dx, flat in input order), or None without adjoints."""
        if self._adjoints is None:
            return None
        return self._adjoints[:self.tape.n_inputs].copy()

    @property
    def directional_derivative(self):
        """The output tangent (df along the direction), or None without tangents."""
        if self._tangents is None or self.output is None:
            return None
        return float(self._tangents[self.output_slot])

    def variable(self, k):
        """The row of primal variable v_k (1-based, as printed)."""
        return self._var_rows[k - 1]

    def _output_text(self):
        return self.output.text if self.output is not None else "?"

    def _direction_text(self):
        d = self.direction
        if d is None:
            return None
        nz = np.flatnonzero(d)
        xd = "ẋ"
        vec = "(" + ", ".join(_num(v, 6) for v in d) + ")" if d.size <= 8 else \
            f"({d.size} components)"
        if nz.size == 1 and d[nz[0]] == 1.0 and self.tape.n_inputs == len(self.input_names):
            return f"{xd} = {vec}, i.e. d/d{self.input_names[nz[0]]}"
        return f"{xd} = {vec}"

    # -------------------------------------------------------------------- text tables
    def _cell(self, x, shape, precision):
        if x is None:
            return ""
        if isinstance(x, np.ndarray):
            return _array_text(x, shape if shape and len(shape) > 1 else None,
                               min(precision, 6))
        return _num(x, precision)

    def _label(self, row):
        if row["kind"] == "guard":
            return "guard"
        lab = row["name"]
        if row["output"]:
            lab += " (f)"
        return lab

    def _elide(self, items, max_rows):
        if max_rows is None or len(items) <= max_rows:
            return items, None, 0
        head = max(1, max_rows // 2)
        tail = max(1, max_rows - head)
        return items[:head], items[-tail:], len(items) - head - tail

    def _header(self):
        lines = []
        if self.title:
            lines.append(self.title)
        nvar, ng = self.n_variables, len(self._rows) - self.n_variables
        parts = [_n(nvar, "variable")]
        if ng:
            parts.append(_n(ng, "guard"))
        if self.output is None:
            out = "no output"
        elif self.output.const is not None:
            out = f"output f = {_num(self.value)} (a constant)"
        else:
            out = f"output f = {self._output_text()} = {_num(self.value)}"
        lines.append(f"evaluation trace: {', '.join(parts)}; {out}")
        return lines

    def _table_rows(self, precision, max_rows=None):
        """(columns, head lines, tail lines, rows skipped between)."""
        cols = ["", "op", "definition", "value"]
        if self._tangents is not None:
            cols.append("tangent")
        if self._adjoints is not None:
            cols.append("adjoint")
        def line(r):
            out = [self._label(r), r["op"], r["expr"],
                   self._cell(r["value"], r["shape"], precision)]
            if self._tangents is not None:
                out.append(self._cell(r["tangent"], r["shape"], precision))
            if self._adjoints is not None:
                out.append(self._cell(r["adjoint"], r["shape"], precision))
            return out
        head, tail, skipped = self._elide(self._rows, max_rows)
        return cols, [line(r) for r in head], [line(r) for r in tail or []], skipped

    def to_table(self, *, split=False, max_rows=60, precision=12, ascii=False):
        """The trace as aligned text.

        split=False: one table, one row per variable, with value/tangent/adjoint columns.
        split=True: the notes' three tables (primal, tangent, adjoint) with the rule of
        each variable (v̇3 = v̇1·v2 + v1·v̇2, v̄2 = v̄3·v1 + v̄4·cos(v2)).
        max_rows: rows beyond it are elided in the middle (None: print all).
        ascii: spell v̇3 as v3dot and v̄3 as v3bar (for terminals without Unicode)."""
        conv = _ascii if ascii else (lambda s: s)
        if split:
            return self._split_text(max_rows, precision, conv)
        cols, body_head, body_tail, skipped = self._table_rows(precision, max_rows)
        body_head = [[conv(c) for c in line] for line in body_head]
        body_tail = [[conv(c) for c in line] for line in body_tail]
        shown = body_head + body_tail
        widths = [max([_width(c)] + [_width(line[i]) for line in shown])
                  for i, c in enumerate(cols)]
        out = self._header()
        if self.direction is not None:
            out.append(f"tangent: {self._direction_text()}")
        if self._adjoints is not None and self.output is not None and \
                self.output.const is None:
            seed = f"v{BAR_ACCENT}{self.output.v} = 1" if self.output.whole else \
                f"adjoint of {self.output.text} = 1"
            out.append(f"adjoint: reverse mode, {seed}")
        out = [conv(x) for x in out]
        out.append("  ".join(_pad(c, w) for c, w in zip(cols, widths)).rstrip())
        out.append("  ".join("-" * w for w in widths))
        for line in body_head:
            out.append("  ".join(_pad(c, w) for c, w in zip(line, widths)).rstrip())
        if skipped:
            out.append(conv(f"⋮  … {skipped} rows elided …"))
            for line in body_tail:
                out.append("  ".join(_pad(c, w) for c, w in zip(line, widths)).rstrip())
        return "\n".join(out)

    def _split_sections(self, precision, max_rows=None):
        """[(title, head, tail, skipped)] for the primal, tangent and adjoint tables; head
        and tail are [(lhs, rule, value)], skipped the number of rows elided between."""
        def section(title, rows, item):
            head, tail, skipped = self._elide(rows, max_rows)
            return (title, [item(r) for r in head], [item(r) for r in tail or []], skipped)

        def prim(r):
            if r["kind"] == "guard":
                return ("guard", r["expr"], self._cell(r["value"], None, precision))
            rhs = r["expr"] + (" = f" if r["output"] else "")
            return (r["name"], rhs, self._cell(r["value"], r["shape"], precision))

        def tan(r):
            rule = self._rule(r, "tangent_rule")
            return (f"v{DOT_ACCENT}{r['v']}", rule if rule is not None else "…",
                    self._cell(r["tangent"], r["shape"], precision))

        def adj(r):
            rule = self._rule(r, "adjoint_rule")
            return (f"v{BAR_ACCENT}{r['v']}", rule if rule is not None else "…",
                    self._cell(r["adjoint"], r["shape"], precision))

        sections = [section("Primal trace (forward evaluation)", self._rows, prim)]
        if self._tangents is not None:
            sections.append(section(f"Tangent trace (forward mode, {self._direction_text()})",
                                    self._var_rows, tan))
        if self._adjoints is not None:
            seed = f"adjoint of {self._output_text()} = 1"
            if self.output is not None and self.output.whole:
                seed = f"v{BAR_ACCENT}{self.output.v} = 1"
            sections.append(section(f"Adjoint trace (reverse mode, {seed})",
                                    self._var_rows[::-1], adj))
        return sections

    def _split_text(self, max_rows, precision, conv=lambda s: s):
        out = [conv(x) for x in self._header()]
        for title, head, tail, skipped in self._split_sections(precision, max_rows):
            out.append("")
            out.append(conv(title))
            head = [tuple(conv(x) for x in it) for it in head]
            tail = [tuple(conv(x) for x in it) for it in tail]
            shown = head + tail
            w0 = max(_width(a) for a, _, _ in shown)
            w1 = max(_width(b) for _, b, _ in shown)

            def fmt(item):
                a, b, c = item
                return f"  {_pad(a, w0)} = {_pad(b, w1)}  = {c}".rstrip()
            out.extend(fmt(it) for it in head)
            if skipped:
                out.append(conv(f"  ⋮  … {skipped} rows elided …"))
                out.extend(fmt(it) for it in tail)
        grad = self._gradient_text()
        if grad:
            out.append("")
            out.append(conv(grad))
        return "\n".join(out)

    def _gradient_text(self):
        if self._adjoints is None or not self.input_names:
            return None
        parts = []
        for r in self._var_rows:
            if r["kind"] != "input":
                break
            parts.append(f"df/d{r['input']} = {self._cell(r['adjoint'], r['shape'], 12)}")
        if len(parts) > 8:
            parts = parts[:8] + ["…"]
        return "gradient: " + ", ".join(parts)

    def __str__(self):
        return self.to_table()

    def __repr__(self):
        if self.output is None:
            out = "no output"
        elif self.output.const is not None:
            out = f"output the constant {_num(self.value)}"
        else:
            out = f"output {self._output_text()} = {_num(self.value)}"
        return (f"<fastad.EvaluationTrace: {_n(self.n_variables, 'variable')}, "
                f"{_n(len(self._rows) - self.n_variables, 'guard')}, {out}>")

    def print(self, **kw):
        """print(self.to_table(**kw))."""
        print(self.to_table(**kw))

    # -------------------------------------------------------------------- markdown
    def to_markdown(self, *, split=False, max_rows=60, precision=12):
        """The trace as GitHub Markdown table(s) (split=True: the notes' three tables)."""
        def esc(s):
            return s.replace("|", "\\|")
        out = []
        if self.title:
            out.append(f"**{esc(self.title)}**")
            out.append("")
        if split:
            first = True
            for title, head, tail, skipped in self._split_sections(precision, max_rows):
                if not first:
                    out.append("")
                first = False
                out.append(f"*{esc(title)}*")
                out.append("")
                out.append("| variable | rule | value |")
                out.append("|---|---|---:|")
                for a, b, c in head:
                    out.append(f"| {esc(a)} | {esc(b)} | {esc(c)} |")
                if skipped:
                    out.append(f"| ⋮ | … {skipped} rows elided … | |")
                    for a, b, c in tail:
                        out.append(f"| {esc(a)} | {esc(b)} | {esc(c)} |")
            return "\n".join(out)
        cols, head, tail, skipped = self._table_rows(precision, max_rows)
        cols = ["variable"] + cols[1:]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(cols) - 3)) + "|")
        for line in head:
            out.append("| " + " | ".join(esc(c) for c in line) + " |")
        if skipped:
            out.append("| ⋮ | | … " + f"{skipped} rows elided …" + " |" * (len(cols) - 2))
            for line in tail:
                out.append("| " + " | ".join(esc(c) for c in line) + " |")
        return "\n".join(out)

    # -------------------------------------------------------------------- json
    def to_dict(self, max_rows=None):
        """The JSON document of to_json as Python objects (schema in docs/trace.md)."""
        def arr(x):
            if x is None:
                return None
            if isinstance(x, np.ndarray):
                return [_jfloat(v) for v in x]
            if isinstance(x, bool):
                return x
            return _jfloat(x)
        rows = []
        head, tail, skipped = self._elide(self._rows, max_rows)
        for r in head + (tail or []):
            rows.append({
                "v": r["v"], "name": r["name"], "kind": r["kind"], "op": r["op"],
                "input": r["input"], "expr": r["expr"],
                "operands": [o.as_json() for o in r["operands"]],
                "shape": list(r["shape"]) if r["shape"] is not None else None,
                "slots": r["slots"], "value": arr(r["value"]),
                "tangent": arr(r["tangent"]), "adjoint": arr(r["adjoint"]),
                "tangent_rule": self._rule(r, "tangent_rule"),
                "adjoint_rule": self._rule(r, "adjoint_rule"),
                "output": r["output"]})
        return {
            "schema": SCHEMA,
            "title": self.title,
            "inputs": [{"name": r["input"], "v": r["v"],
                        "shape": list(r["shape"]) if r["shape"] is not None else None}
                       for r in self._var_rows if r["kind"] == "input"],
            "output": ({"text": self.output.text, "v": self.output.v,
                        "value": _jfloat(self.value)} if self.output is not None else None),
            "direction": ([_jfloat(v) for v in self.direction]
                          if self.direction is not None else None),
            "gradient": ([_jfloat(v) for v in self.gradient]
                         if self._adjoints is not None else None),
            "n_variables": self.n_variables,
            "n_guards": len(self._rows) - self.n_variables,
            "n_rows": len(self._rows),
            "elided": skipped,
            "rows": rows,
        }

    def to_json(self, *, indent=2, max_rows=None, ensure_ascii=False):
        """The trace as JSON (schema "fastad.trace/1", documented in docs/trace.md).
        Non-finite numbers are written as the strings "inf", "-inf", "nan"."""
        return json.dumps(self.to_dict(max_rows), indent=indent, ensure_ascii=ensure_ascii)

    # -------------------------------------------------------------------- graphs
    def _graph(self, show, max_nodes):
        """(nodes, edges, elided): nodes [(v, label_lines, kind, output)], edges
        [(from_v, to_v, label)] with one edge per operand per variable it reads."""
        show = _check_show(show)
        vrows = self._var_rows
        head, tail, skipped = self._elide(vrows, max_nodes)
        keep = head + (tail or [])
        kept = {r["v"] for r in keep}
        nodes = []
        for r in keep:
            label = f"{r['name']} = {r['expr']}"
            if r["output"]:
                label += " = f"
            if r["shape"] is not None and r["kind"] != "input":
                label += f"  [{int(np.prod(r['shape']))}]"
            lines = [label]
            for key in show:
                if r[key] is not None:
                    sym = {"value": "", "tangent": f"v{DOT_ACCENT}{r['v']} = ",
                           "adjoint": f"v{BAR_ACCENT}{r['v']} = "}[key]
                    lines.append(f"{sym or '= '}{self._cell(r[key], r['shape'], 6)}")
            nodes.append((r["v"], lines, r["kind"], r["output"]))
        edges = []
        for r in keep:
            for ref in r["operands"]:
                for v in ref.vars:
                    lab = ref.sub if ref.v == v else ""
                    if v in kept:
                        edges.append((v, r["v"], lab))
                    else:
                        edges.append((None, r["v"], lab))
        return nodes, edges, skipped

    def to_dot(self, *, show=(), max_nodes=400, rankdir="LR"):
        """The computation graph in Graphviz DOT: one node per primal variable, one edge
        per operand (from the variable read to the variable computed).

        show: which numbers to print on the nodes, a subset of ("value", "tangent",
        "adjoint") or "all".  Graphs with more than max_nodes variables keep the first
        and last ones and show an elision node."""
        nodes, edges, skipped = self._graph(show, max_nodes)

        def q(s):
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out = ["digraph fastad_trace {", f"  rankdir={rankdir};",
               '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", '
               'fontname="Helvetica", fontsize=11];',
               '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
        if self.title:
            out.append(f"  label={q(self.title)}; labelloc=t; fontname=\"Helvetica\";")
        for v, lines, kind, is_out in nodes:
            attrs = ["label=" + "\\n".join(q(x)[1:-1] for x in lines).join('""')]
            if kind == "input":
                attrs.append('shape=ellipse, fillcolor="#dbe9f6"')
            if is_out:
                attrs.append('peripheries=2, fillcolor="#fde2c8"')
            out.append(f"  v{v} [{', '.join(attrs)}];")
        if skipped:
            out.append(f'  elided [label="… {skipped} variables elided …", shape=plaintext, '
                       'style=""];')
        for a, b, lab in edges:
            src = f"v{a}" if a is not None else "elided"
            attr = f" [label={q(lab)}]" if lab else ""
            out.append(f"  {src} -> v{b}{attr};")
        out.append("}")
        return "\n".join(out) + "\n"

    def to_mermaid(self, *, show=(), max_nodes=400, kind="flowchart", direction="LR"):
        """The computation graph as Mermaid text: kind="flowchart" (renders on GitHub) or
        "state" (a stateDiagram-v2 like the lecture notes' diagrams).  One node per primal
        variable, one edge per operand; `show` as in to_dot."""
        if kind not in ("flowchart", "state"):
            raise ValueError(f"fastad: to_mermaid kind must be 'flowchart' or 'state', "
                             f"got {kind!r}")
        nodes, edges, skipped = self._graph(show, max_nodes)

        def esc(s):
            return (s.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
                    .replace(">", "#gt;"))
        if kind == "flowchart":
            out = [f"flowchart {direction}"]
            for v, lines, k, is_out in nodes:
                lab = esc("<br/>".join(lines)) if len(lines) == 1 else \
                    "<br/>".join(esc(x) for x in lines)
                shape = ('(["', '"])') if k == "input" else \
                    (('[["', '"]]') if is_out else ('["', '"]'))
                out.append(f"    v{v}{shape[0]}{lab}{shape[1]}")
            if skipped:
                out.append(f'    elided{{{{"… {skipped} variables elided …"}}}}')
            for a, b, lab in edges:
                src = f"v{a}" if a is not None else "elided"
                mid = f' -- "{esc(lab)}" -->' if lab else " -->"
                out.append(f"    {src}{mid} v{b}")
            outs = [f"v{v}" for v, _, _, o in nodes if o]
            ins = [f"v{v}" for v, _, k, _ in nodes if k == "input"]
            out.append("    classDef input fill:#dbe9f6,stroke:#4a78a8")
            out.append("    classDef output fill:#fde2c8,stroke:#c0762c")
            if ins:
                out.append(f"    class {','.join(ins)} input")
            if outs:
                out.append(f"    class {','.join(outs)} output")
            return "\n".join(out) + "\n"
        out = ["stateDiagram-v2", f"    direction {direction}"]
        for v, lines, k, is_out in nodes:
            text = " ".join(lines).replace(":", "∶")
            out.append(f"    v{v}: {text}")
        if skipped:
            out.append(f"    elided: … {skipped} variables elided …")
        for a, b, lab in edges:
            src = f"v{a}" if a is not None else "elided"
            out.append(f"    {src} --> v{b}" + (f": {lab}" if lab else ""))
        outs = [f"v{v}" for v, _, _, o in nodes if o]
        if outs:
            out.append("    classDef output fill:#fde2c8")
            out.append(f"    class {','.join(outs)} output")
        return "\n".join(out) + "\n"

    def render(self, path, *, show=(), max_nodes=400, format=None, rankdir="LR"):
        """Write the graph to `path`: .svg, .png, .pdf (through Graphviz's `dot`), .dot/.gv
        (DOT text) or .mmd (Mermaid text).  Returns the path.  Raises
        GraphvizNotFoundError, saying how to install Graphviz, if `dot` is needed and
        missing."""
        import os
        path = os.fspath(path)
        fmt = (format or os.path.splitext(path)[1].lstrip(".")).lower()
        if fmt in ("dot", "gv"):
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.to_dot(show=show, max_nodes=max_nodes, rankdir=rankdir))
            return path
        if fmt in ("mmd", "mermaid"):
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.to_mermaid(show=show, max_nodes=max_nodes))
            return path
        if not fmt:
            raise ValueError(f"fastad: cannot tell the image format of {path!r}; give a "
                             "suffix (.svg, .png, .pdf, .dot, .mmd) or format=")
        data = _run_dot(self.to_dot(show=show, max_nodes=max_nodes, rankdir=rankdir), fmt)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _repr_svg_(self):
        if shutil.which("dot") is None:
            return None
        try:
            return _run_dot(self.to_dot(show=("value", "adjoint")), "svg").decode("utf-8")
        except (RuntimeError, OSError, subprocess.SubprocessError):
            return None

    def _repr_html_(self):
        cols, head, tail, skipped = self._table_rows(8, 60)
        out = ['<div class="fastad-trace">']
        for line in self._header():
            out.append(f"<p><b>{html.escape(line)}</b></p>")
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
                   + "</tr></thead><tbody>")
        for line in head:
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>")
        if skipped:
            out.append(f'<tr><td colspan="{len(cols)}">… {skipped} rows elided …</td></tr>')
            for line in tail:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line)
                           + "</tr>")
        out.append("</tbody></table>")
        svg = self._repr_svg_()
        if svg:
            out.append(svg[svg.find("<svg"):] if "<svg" in svg else svg)
        out.append("</div>")
        return "\n".join(out)


def _jfloat(x):
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if x != x else ("inf" if x > 0 else "-inf")


def _check_show(show):
    if show in (None, False, (), []):
        return ()
    if show == "all" or show is True:
        return ("value", "tangent", "adjoint")
    if isinstance(show, str):
        show = tuple(s.strip() for s in show.split(",") if s.strip())
    bad = [s for s in show if s not in ("value", "tangent", "adjoint")]
    if bad:
        raise ValueError(f"fastad: show= takes 'value', 'tangent', 'adjoint' or 'all', "
                         f"got {bad[0]!r}")
    return tuple(show)


def _run_dot(source, fmt):
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError(INSTALL_GRAPHVIZ)
    proc = subprocess.run([exe, f"-T{fmt}"], input=source.encode("utf-8"),
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"fastad: Graphviz `dot -T{fmt}` failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _input_layout(nin, names, shapes):
    """Names and shapes of the input variables, checked against the tape's input count;
    without a consistent layout every input slot is its own scalar x1, x2, ..."""
    if names is not None and shapes is not None and len(names) == len(shapes):
        total = sum(int(np.prod(s)) if s else 1 for s in shapes)
        if total == nin:
            return list(names), [tuple(s) if s else None for s in shapes]
    return [f"x{i + 1}" for i in range(nin)], [None] * nin


def _is_scalar_input(a):
    """fastad.record's rule: float scalars are inputs (ints are static)."""
    return isinstance(a, (float, np.floating))


def _is_array_input(a):
    """fastad.record's rule: float arrays are inputs."""
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _arg_layout(fun, args):
    """Input names and shapes for fastad.record's classification of `args` (floats are
    scalar inputs, float arrays array inputs, anything else is static)."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    names, shapes = [], []
    for i, a in enumerate(args):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY,
                                                  params[i].POSITIONAL_OR_KEYWORD):
            name = params[i].name
        else:
            name = f"x{i + 1}"
        if _is_scalar_input(a):
            names.append(name)
            shapes.append(None)
        elif _is_array_input(a):
            names.append(name)
            shapes.append(tuple(a.shape) if a.shape != () else None)
    return names, shapes


def _flat_direction(tangents, args):
    """A tangent direction given per argument (like jvp) or flat, as a flat array over the
    tape's inputs."""
    if isinstance(tangents, np.ndarray) and tangents.ndim == 1 and len(args) != 1:
        return tangents
    if not isinstance(tangents, (tuple, list)):
        tangents = (tangents,)
    inputs = [a for a in args if _is_scalar_input(a) or _is_array_input(a)]
    if len(tangents) == len(args) and len(args) != len(inputs):
        tangents = [t for t, a in zip(tangents, args)
                    if any(a is b for b in inputs)]
    if len(tangents) != len(inputs):
        flat = np.ravel(np.asarray(tangents, dtype=float))
        return flat
    parts = []
    for t, a in zip(tangents, inputs):
        ta = np.asarray(t, dtype=float)
        if isinstance(a, np.ndarray) and ta.shape != a.shape:
            raise ValueError(f"fastad.trace: a tangent has shape {ta.shape} but its argument "
                             f"has shape {a.shape}")
        parts.append(ta.ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def trace(fun, *args, tangents=None, adjoint=True, title=None):
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
        return EvaluationTrace(fun, tangents=direction, adjoint=adjoint, title=title)
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
    return EvaluationTrace(tape, input_names=names, input_shapes=shapes,
                           tangents=direction, adjoint=adjoint, title=title, function=fun)


# ----------------------------------------------------------------------------- statistics

class TapeInfo:
    """Statistics of a tape or of a compiled (grad/value_and_grad) function; print it.

    Attributes: records (entries of tape.records()), words (len(tape): 16-byte record
    words, a ranged record takes two), by_op (Counter op -> records), slots, inputs,
    constants, bytes, guards; for a compiled function also traces, replays, retraces,
    signatures, tapes (the cached Tape objects), and per_tape (a TapeInfo each)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def as_dict(self):
        d = {k: v for k, v in self.__dict__.items() if k not in ("per_tape", "tape_objects")}
        d["by_op"] = dict(self.by_op)
        if getattr(self, "per_tape", None) is not None:
            d["per_tape"] = [t.as_dict() for t in self.per_tape]
        return d

    def __str__(self):
        lines = []
        if getattr(self, "per_tape", None) is not None:
            lines.append(f"{self.what}: {_n(self.signatures, 'signature')}, "
                         f"{_n(self.tapes, 'cached tape')}; {_n(self.traces, 'trace')}, "
                         f"{_n(self.replays, 'replay')}, {_n(self.retraces, 'retrace')} "
                         "(after a failed guard)")
            if self.tapes:
                lines.append(f"all cached tapes: {_n(self.records, 'record')}, "
                             f"{_n(self.slots, 'slot')}, {_bytes(self.bytes)}, "
                             f"{_n(self.guards, 'guard')}")
            for i, t in enumerate(self.per_tape):
                lines.append(f"tape {i}: " + t._one_line())
                lines.append("  by op: " + _ops_text(t.by_op))
            return "\n".join(lines)
        lines.append("tape: " + self._one_line())
        lines.append("by op: " + _ops_text(self.by_op))
        return "\n".join(lines)

    def _one_line(self):
        return (f"{_n(self.records, 'record')} ({_n(self.words, 'word')}), "
                f"{_n(self.slots, 'slot')} ({_n(self.inputs, 'input')}, "
                f"{_n(self.constants, 'constant')}), {_n(self.guards, 'guard')}, "
                f"{_bytes(self.bytes)}")

    __repr__ = __str__


def _n(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def _bytes(n):
    if n < 10 * 1024:
        return f"{n} bytes"
    if n < 10 * 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 ** 2:.1f} MiB"


def _ops_text(by_op):
    if not by_op:
        return "(none)"
    return ", ".join(f"{op} {n}" for op, n in by_op.most_common())


def _tape_info(tape):
    recs = tape.records()
    by_op = Counter(op for op, _, _ in recs)
    guards = sum(1 for _, r, _ in recs if isinstance(r, int) and r < 0)
    return TapeInfo(records=len(recs), words=len(tape), by_op=by_op, slots=tape.n_slots,
                    inputs=tape.n_inputs, constants=tape.n_constants, bytes=tape.nbytes,
                    guards=guards, per_tape=None)


def trace_info(obj):
    """Statistics of a Tape, or of a function returned by fastad.grad / value_and_grad:
    records by op, scalar slots, bytes, guards, and for a compiled function its cached
    tapes, traces, replays and retraces.  Returns a TapeInfo (print it, or .as_dict())."""
    from fastad._tape import Tape
    if isinstance(obj, Tape):
        return _tape_info(obj)
    if hasattr(obj, "cache_info") and hasattr(obj, "tapes"):
        ci = obj.cache_info()
        tapes = list(obj.tapes())
        per = [_tape_info(t) for t in tapes]
        by_op = Counter()
        for p in per:
            by_op.update(p.by_op)
        name = getattr(getattr(obj, "fun", None), "__name__", None) or \
            getattr(obj, "__name__", "compiled function")
        return TapeInfo(what=f"compiled {name}", traces=ci.get("traces", 0),
                        replays=ci.get("replays", 0), retraces=ci.get("retraces", 0),
                        signatures=ci.get("signatures", 0), tapes=len(tapes),
                        records=sum(p.records for p in per), words=sum(p.words for p in per),
                        by_op=by_op, slots=sum(p.slots for p in per),
                        inputs=sum(p.inputs for p in per),
                        constants=sum(p.constants for p in per),
                        bytes=sum(p.bytes for p in per), guards=sum(p.guards for p in per),
                        per_tape=per, tape_objects=tapes)
    raise TypeError(f"fastad.trace_info: expected a Tape or a function made by fastad.grad "
                    f"/ value_and_grad, got {type(obj).__name__}")
