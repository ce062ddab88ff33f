"""The model of an evaluation trace: one frozen row per primal variable or guard.

An `EvaluationTrace` is built from a tape and the value, tangent and adjoint arrays of a
sweep over it (computed beforehand by `sweep`, never in the constructor).  It resolves each
record's operands to the variables they read (`Ref`), and its outputs -- text tables,
Markdown, HTML, JSON, graphs -- are functions of the rows in the sibling modules, reached
through one-line methods here so that `fd.trace(f, x).to_dot()` reads naturally.
"""
import bisect
import gc
from dataclasses import dataclass
from typing import Optional

import numpy as np

from fastad.trace import graph, rules, text
from fastad.trace.fmt import num, plural

GUARD_SYMBOLS = {"less": "<", "less_equal": "<=", "equal": "==", "not_equal": "!="}
_GUARD_TESTS = {"less": lambda a, b: a < b, "less_equal": lambda a, b: a <= b,
                "equal": lambda a, b: a == b, "not_equal": lambda a, b: a != b}


class Ref:
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


@dataclass(frozen=True)
class Row:
    """A primal variable (an input or a record's result) or a guard; the fields are the
    keys of the JSON schema in docs/trace.md, less the rules (see EvaluationTrace.rows)."""
    v: Optional[int]
    name: Optional[str]
    kind: str                  # "input", "op" or "guard"
    op: str
    input: Optional[str]
    operands: list
    shape: Optional[tuple]
    slots: Optional[list]
    expr: str
    value: object
    tangent: object
    adjoint: object
    output: bool

    def as_dict(self):
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def _slice_text(start, stop, step):
    return f"[{start}:{stop}]" if step == 1 else f"[{start}:{stop}:{step}]"


def sweep(tape, direction=None, adjoint=True):
    """(values, tangents, adjoints) of `tape` at its current inputs: a tangent sweep along
    `direction` (None: no tangents) and a reverse sweep seeded with 1 (adjoint=False: none)."""
    tangents = adjoints = None
    if direction is not None:
        xdot = np.ascontiguousarray(direction, dtype=float).ravel()
        if xdot.size != tape.n_inputs:
            raise ValueError(f"fastad.trace: the tangent direction has {xdot.size} "
                             f"components but the tape has {tape.n_inputs} inputs")
        tape.tangent(xdot)
        tangents = np.asarray(tape.tangents, dtype=float)
    if adjoint:
        tape.reverse()
        adjoints = np.asarray(tape.adjoints, dtype=float)
    return np.asarray(tape.values, dtype=float), tangents, adjoints


def input_layout(nin, names, shapes):
    """Names and shapes of the input variables, checked against the tape's input count;
    without a consistent layout every input slot is its own scalar x1, x2, ..."""
    if names is not None and shapes is not None and len(names) == len(shapes):
        total = sum(int(np.prod(s)) if s else 1 for s in shapes)
        if total == nin:
            return list(names), [tuple(s) if s else None for s in shapes]
    return [f"x{i + 1}" for i in range(nin)], [None] * nin


class EvaluationTrace:
    """The evaluation trace of one recorded tape (see the docstring of fastad.trace).

    Build it with `fastad.trace(fun, *args)` (or `fastad.trace(tape)` for a tape you
    have).  `.rows` is the data: a list of dicts, one per primal variable or guard, with
    the keys of the JSON schema in docs/trace.md (`value`, `tangent` and `adjoint` are
    floats for scalar variables and 1-D numpy arrays for array variables).
    """

    def __init__(self, tape, values, tangents=None, adjoints=None, *, direction=None,
                 input_names=None, input_shapes=None, title=None):
        self.tape = tape
        self.title = title
        self.optimizer = None       # what the optimizer does to this function's tape (text)
        self.direction = None if direction is None else np.ravel(direction)
        self._values, self._tangents, self._adjoints = values, tangents, adjoints
        self.output_slot = tape.output_slot
        names, shapes = input_layout(tape.n_inputs, input_names, input_shapes)
        self._rule_cache = {}
        gc_was_on = gc.isenabled()
        gc.disable()            # many small objects, no cycles: the collector only slows this
        try:
            self._build(tape.records(), names, shapes)
        finally:
            if gc_was_on:
                gc.enable()

    @classmethod
    def of_tape(cls, tape, *, tangents=None, adjoint=True, **kw):
        """The trace of `tape` at its current inputs, sweeping it along the direction
        `tangents` (flat over the inputs, or None) and in reverse (adjoint=True)."""
        values, tans, adjs = sweep(tape, tangents, adjoint)
        return cls(tape, values, tans, adjs, direction=tangents, **kw)

    # -------------------------------------------------------------------- building
    def _build(self, records, names, shapes):
        self._starts, self._vars = [], []        # per variable: (start, size, shape)
        self.input_names = list(names)
        self._const_cache = {}
        out = self.output_slot
        self._output_start = out if out is not None and out >= 0 else None
        pending = []                             # (start, size, shape, fields) per row
        slot = 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape)) if shape else 1
            pending.append(self._new_var(slot, size, shape, "input", "input", name, [],
                                         expr=name))
            slot += size
        for op, res, operands in records:
            refs = [self._ref(o) for o in operands]
            if isinstance(res, int) and res < 0:
                pending.append(self._guard_row(op, refs, operands))
                continue
            if isinstance(res, range):
                start, size, always_array = res.start, len(res), True
            else:
                start, size, always_array = res, 1, False
            fields = self._new_var(start, size, None, "op", op, None, refs,
                                   always_array=always_array)
            fields["expr"] = self._expr(op, refs, size, operands)
            pending.append(fields)
        self.output = self._ref(out) if self._output_start is not None else None
        rows = []
        for fields in pending:
            if fields["kind"] != "guard":
                fields["output"] = bool(self.output is not None and self.output.whole
                                        and self.output.v == fields["v"])
            rows.append(Row(**fields))
        self._rows = rows
        self._var_rows = [r for r in rows if r.kind != "guard"]
        self._children = self._index_children()

    def _new_var(self, start, size, shape, kind, op, name, refs, always_array=False, expr=""):
        k = len(self._vars) + 1
        self._starts.append(start)
        array = always_array or shape not in (None, ())
        self._vars.append((start, size, tuple(shape) if array and shape else
                           ((size,) if array else None)))
        sl = slice(start, start + size)
        fields = {"v": k, "name": f"v{k}", "kind": kind, "op": op, "input": name,
                  "operands": refs, "shape": self._vars[-1][2],
                  "slots": [start, start + size], "expr": expr, "output": False}
        for key, arr in (("value", self._values), ("tangent", self._tangents),
                         ("adjoint", self._adjoints)):
            if arr is None:
                fields[key] = None
            elif array:
                fields[key] = arr[sl].copy()
            else:
                fields[key] = float(arr[start])
        return fields

    def _guard_row(self, op, refs, operands):
        vals = [self._values[o] if isinstance(o, int) and o >= 0 else None for o in operands]
        outcome = None
        if len(vals) == 2 and None not in vals and op in _GUARD_TESTS:
            outcome = bool(_GUARD_TESTS[op](*vals))
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
                return Ref(const=c, text=num(c))
            i = self._find(o)
            if i is None:
                return Ref(text=f"s{o}", vars=())
            start, size, shape = self._vars[i]
            if shape is None:
                return Ref(v=i + 1, text=f"v{i + 1}", vars=(i + 1,), whole=True)
            sub = self._index_text(i, o - start)
            return Ref(v=i + 1, sub=sub, text=f"v{i + 1}{sub}", vars=(i + 1,))
        if isinstance(o, tuple):            # gather: explicit slot list
            return self._gather_ref(o)
        if isinstance(o, range):
            return self._range_ref(o)
        return Ref(text=str(o))

    def _range_ref(self, r):
        n = len(r)
        if n == 0:
            return Ref(text="[]", const=np.zeros(0))
        first = r[0]
        if self._const(first) is not None:          # a constant array
            vals = np.array([self._const(s) for s in (r if n <= 64 else r[:5])] or [0.0])
            txt = "[" + ", ".join(num(v, 6) for v in vals) + "]" if n <= 5 else f"const[{n}]"
            return Ref(const=vals if n <= 64 else vals[:1], text=txt)
        i = self._find(first)
        last = r[-1]
        j = self._find(last) if r.step > 0 else None
        if i is not None and i == j:
            start, size, shape = self._vars[i]
            if r.start == start and r.step == 1 and n == size:
                return Ref(v=i + 1, text=f"v{i + 1}", vars=(i + 1,), whole=True)
            sub = _slice_text(r.start - start, r.stop - start if r.step == 1 else
                              last - start + 1, r.step)
            return Ref(v=i + 1, sub=sub, text=f"v{i + 1}{sub}", vars=(i + 1,))
        touched = self._vars_of_slots(r)
        return Ref(text=f"slots{_slice_text(r.start, r.stop, r.step)}", vars=touched)

    def _gather_ref(self, idx):
        n = len(idx)
        if n >= 2:
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
            return Ref(v=i + 1, sub=sub, text=f"v{i + 1}{sub}", vars=touched)
        return Ref(text=f"gather[{n} slots]", vars=touched)

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

    @staticmethod
    def _expr(op, refs, size, operands):
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
        if op in rules.INFIX and len(refs) == 2:
            return f"{refs[0].atom} {rules.INFIX[op]} {refs[1].atom}"
        if op == "negative" and len(refs) == 1:
            return f"-{refs[0].atom}"
        if op == "square" and len(refs) == 1:
            return f"{refs[0].atom} ** 2"
        if op == "reciprocal" and len(refs) == 1:
            return f"1 / {refs[0].atom}"
        return f"{op}({', '.join(r.text for r in refs)})"

    def _index_children(self):
        """Which records read each variable (for the adjoint rules)."""
        children = {}
        for row in self._var_rows:
            if row.kind == "input":
                continue
            for pos, ref in enumerate(row.operands):
                for v in ref.vars:
                    children.setdefault(v, []).append((row, pos))
        return children

    # -------------------------------------------------------------------- rules
    def rule(self, row, which):
        """The tangent ("tangent_rule") or adjoint ("adjoint_rule") rule of a row, written
        like the notes (v̇3 = v̇1·v2 + v1·v̇2, v̄2 = v̄3·v1 + v̄4·cos(v2)); None if the trace
        has no such column, or for rules fastad does not spell out (array adjoints).
        Rules are derived on first use: most traces are printed in part, if at all."""
        key = (id(row), which)
        if key in self._rule_cache:
            return self._rule_cache[key]
        rule = None
        if row.kind == "guard":
            pass
        elif which == "tangent_rule":
            if self.direction is not None:
                if row.kind == "input":
                    rule = num(row.tangent) if row.shape is None else "ẋ (given)"
                else:
                    rule = rules.tangent_rule(row)
        elif self._adjoints is not None:
            rule = rules.adjoint_rule(row, self._children.get(row.v, ()))
        self._rule_cache[key] = rule
        return rule

    @property
    def rows(self):
        """One dict per primal variable or guard, in execution order (keys: see
        docs/trace.md); pandas-free: pandas.DataFrame(trace.rows) works."""
        out = []
        for row in self._rows:
            d = row.as_dict()
            d["tangent_rule"] = self.rule(row, "tangent_rule")
            d["adjoint_rule"] = self.rule(row, "adjoint_rule")
            out.append(d)
        return out

    # -------------------------------------------------------------------- accessors
    def __len__(self):
        return len(self._rows)

    @property
    def n_variables(self):
        return len(self._var_rows)

    @property
    def n_guards(self):
        return len(self._rows) - len(self._var_rows)

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
        """The row of primal variable v_k (1-based, as printed), as a dict like `rows`."""
        row = self._var_rows[k - 1]
        return dict(row.as_dict(), tangent_rule=self.rule(row, "tangent_rule"),
                    adjoint_rule=self.rule(row, "adjoint_rule"))

    @property
    def has_tangents(self):
        return self._tangents is not None

    @property
    def has_adjoints(self):
        return self._adjoints is not None

    def output_text(self):
        return self.output.text if self.output is not None else "?"

    def direction_text(self):
        d = self.direction
        if d is None:
            return None
        nz = np.flatnonzero(d)
        xd = "ẋ"
        vec = "(" + ", ".join(num(v, 6) for v in d) + ")" if d.size <= 8 else \
            f"({d.size} components)"
        if nz.size == 1 and d[nz[0]] == 1.0 and self.tape.n_inputs == len(self.input_names):
            return f"{xd} = {vec}, i.e. d/d{self.input_names[nz[0]]}"
        return f"{xd} = {vec}"

    # -------------------------------------------------------------------- outputs
    def to_table(self, *, split=False, max_rows=60, precision=12, ascii=False):
        """The trace as aligned text.

        split=False: one table, one row per variable, with value/tangent/adjoint columns.
        split=True: the notes' three tables (primal, tangent, adjoint) with the rule of
        each variable (v̇3 = v̇1·v2 + v1·v̇2, v̄2 = v̄3·v1 + v̄4·cos(v2)).
        max_rows: rows beyond it are elided in the middle (None: print all).
        ascii: spell v̇3 as v3dot and v̄3 as v3bar (for terminals without Unicode)."""
        return text.to_table(self, split=split, max_rows=max_rows, precision=precision,
                             ascii=ascii)

    def to_markdown(self, *, split=False, max_rows=60, precision=12):
        """The trace as GitHub Markdown table(s) (split=True: the notes' three tables)."""
        return text.to_markdown(self, split=split, max_rows=max_rows, precision=precision)

    def to_dict(self, max_rows=None):
        """The JSON document of to_json as Python objects (schema in docs/trace.md)."""
        return text.to_dict(self, max_rows)

    def to_json(self, *, indent=2, max_rows=None, ensure_ascii=False):
        """The trace as JSON (schema "fastad.trace/1", documented in docs/trace.md).
        Non-finite numbers are written as the strings "inf", "-inf", "nan"."""
        return text.to_json(self, indent=indent, max_rows=max_rows, ensure_ascii=ensure_ascii)

    def to_dot(self, *, show=(), max_nodes=400, rankdir="LR"):
        """The computation graph in Graphviz DOT: one node per primal variable, one edge
        per operand (from the variable read to the variable computed).

        show: which numbers to print on the nodes, a subset of ("value", "tangent",
        "adjoint") or "all".  Graphs with more than max_nodes variables keep the first
        and last ones and show an elision node."""
        return graph.to_dot(self, show=show, max_nodes=max_nodes, rankdir=rankdir)

    def to_mermaid(self, *, show=(), max_nodes=400, kind="flowchart", direction="LR"):
        """The computation graph as Mermaid text: kind="flowchart" (renders on GitHub) or
        "state" (a stateDiagram-v2 like the lecture notes' diagrams).  One node per primal
        variable, one edge per operand; `show` as in to_dot."""
        return graph.to_mermaid(self, show=show, max_nodes=max_nodes, kind=kind,
                                direction=direction)

    def render(self, path, *, show=(), max_nodes=400, format=None, rankdir="LR"):
        """Write the graph to `path`: .svg, .png, .pdf (through Graphviz's `dot`), .dot/.gv
        (DOT text) or .mmd (Mermaid text).  Returns the path.  Raises
        GraphvizNotFoundError, saying how to install Graphviz, if `dot` is needed and
        missing."""
        return graph.render(self, path, show=show, max_nodes=max_nodes, format=format,
                            rankdir=rankdir)

    def print(self, **kw):
        """print(self.to_table(**kw))."""
        print(self.to_table(**kw))

    def __str__(self):
        return self.to_table()

    def __repr__(self):
        if self.output is None:
            out = "no output"
        elif self.output.const is not None:
            out = f"output the constant {num(self.value)}"
        else:
            out = f"output {self.output_text()} = {num(self.value)}"
        return (f"<fastad.EvaluationTrace: {plural(self.n_variables, 'variable')}, "
                f"{plural(self.n_guards, 'guard')}, {out}>")

    def _repr_svg_(self):
        return graph.to_svg_or_none(self)

    def _repr_html_(self):
        return text.to_html(self)


__all__ = ["EvaluationTrace", "Row", "Ref", "sweep", "input_layout"]
