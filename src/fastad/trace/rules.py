"""The rules of a trace as the notes write them: v̇3 = v̇1·v2 + v1·v̇2, v̄2 = v̄3·v1 + v̄4·cos(v2).

The partial derivatives are not written here: csrc/ops.h writes each op's partials in its
D_* language, `fastad._tape.op_partials()` exports that text, and this module reads it a
third way, as formulas (the sweeps read it as C arithmetic, csrc/emit.c as records).  A
D_ word is rendered as the op of the table it names (D_LOG1P -> log1p(x), D_POLYGAMMA ->
polygamma(n, x)), so a new D_ word needs no change here; the few words with a notation of
their own (infix operators, constants, the Iverson brackets of kinks) are listed below.
Kinks follow fastad's conventions (docs/conventions.md); the text shows the smooth rule.
"""
import ast
import functools

import numpy as np

from fastad.trace.fmt import DOT_ACCENT, BAR_ACCENT, MUL, num

INFIX = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**",
         "matmul": "@"}

_CONSTANTS = {"FA_LN2": "ln(2)", "FA_LN10": "ln(10)", "FA_2_SQRTPI": "2/sqrt(pi)"}
_INFIX = {"D_ADD": (" + ", 1), "D_SUB": (" - ", 1), "D_MUL": (MUL, 2), "D_DIV": ("/", 2)}
_ALIASES = {"D_SIGNPOS": "sign"}                # words whose op is internal ("_signpos")


def _function_name(word):
    """The function a D_ word calls in the text: its alias, or the op it is named after."""
    if word in _ALIASES:
        return _ALIASES[word]
    name = word[2:].lower()
    from fastad.ops import BY_NAME
    if name in BY_NAME or "_" + name in BY_NAME:
        return name
    raise ValueError(f"no rendering for {word}: name it after an op of csrc/ops.h")


def _render(node):
    """(text, precedence) of a D_* expression: 1 sums, 2 products, 3 atoms."""
    if isinstance(node, ast.Name):
        return {"D_0": ("0", 3), "D_1": ("1", 3)}.get(node.id, ("{" + node.id + "}", 3))
    if isinstance(node, ast.Constant):
        return num(node.value), 3
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
    if name == "D_NEG":
        x, px = args[0]
        return ("-" + x if px >= 2 else f"-({x})"), 2
    if name == "D_RECIP":
        x, px = args[0]
        return ("1/" + (x if px == 3 else f"({x})")), 2
    if name == "D_POW":
        (x, px), (y, py) = args
        return f"{x if px == 3 else f'({x})'}**({y})", 3
    if name == "D_SELNOT":                       # the rule off its kink
        return args[1]
    if name in ("D_GTSHARE", "D_FMAXDA"):
        return f"[{args[0][0]} > {args[1][0]}]", 3
    if name == "D_EQ":
        return f"[{args[0][0]} = {args[1][0]}]", 3
    if name == "D_NE":
        return f"[{args[0][0]} \u2260 {args[1][0]}]", 3
    return f"{_function_name(name)}({', '.join(a for a, _ in args)})", 3


@functools.lru_cache(maxsize=None)
def partials_table():
    """op name -> its partials as text templates in {a}, {b} and {r} (the result)."""
    from fastad.ops import PARTIALS
    table = {}
    for name, rules in PARTIALS.items():
        texts = tuple(_render(ast.parse(r, mode="eval").body)[0] for r in rules if r is not None)
        table[name] = texts
        table[name.lstrip("_")] = texts
    return table


def top_level_atomic(s):
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


def term(factor, partial):
    """factor·partial, simplified: None if the partial is 0."""
    p = partial.strip()
    if p == "0":
        return None
    if p == "1":
        return factor
    if p == "-1":
        return "-" + factor
    neg = p.startswith("-") and top_level_atomic(p[1:])
    if neg:
        p = p[1:]
    if p.startswith("1/") and top_level_atomic(p):
        t = f"{factor}/{p[2:]}"
    else:
        t = f"{factor}{MUL}{p if top_level_atomic(p) else '(' + p + ')'}"
    return "-" + t if neg else t


def join(terms):
    """A sum of signed terms as text ("0" if there is none)."""
    terms = [t for t in terms if t]
    if not terms:
        return "0"
    out = terms[0]
    for t in terms[1:]:
        out += " - " + t[1:] if t.startswith("-") else " + " + t
    return out


def partials(row):
    """The partials of `row`'s op with its operands filled in, or None."""
    op, refs = row.op, row.operands
    tmpl = partials_table().get(op)
    if tmpl is None or len(tmpl) != len(refs):
        return None
    fill = {"r": row.name}
    for key, ref in zip("ab", refs):
        fill[key] = ref.atom
    parts = [t.format(**fill) for t in tmpl]
    if op == "power" and refs[1].const is not None and not isinstance(
            refs[1].const, np.ndarray):
        b = float(refs[1].const)             # a constant exponent: b·a**(b-1) simplified
        a = refs[0].atom
        parts[0] = "0" if b == 0 else (num(b) if b == 1 else (
            f"{num(b)}{MUL}{a}" if b == 2 else
            f"{num(b)}{MUL}{a}**{'(' + num(b - 1) + ')' if b - 1 < 0 else num(b - 1)}"))
    return parts


def tangent_rule(row):
    """v̇ of a record's row from its operands' tangents (None: not spelled out)."""
    op, refs = row.op, row.operands
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
        return join(terms)
    parts = partials(row)
    if parts is None:
        return None
    terms = []
    for pos, (ref, p) in enumerate(zip(refs, parts)):
        t = ref.accent(DOT_ACCENT)
        if t is None:
            continue
        if op == "multiply" and pos == 1 and top_level_atomic(p) and not p.startswith("-"):
            terms.append(f"{p}{MUL}{t}")         # the product rule as in the notes
        else:
            terms.append(term(t, p))
    return join(terms)


def adjoint_rule(row, uses):
    """v̄ of a scalar variable from the records that read it, `uses` = [(row, position)]
    (None: array variables, or reads the text does not spell out)."""
    if row.shape is not None:
        return None                     # array variables: see the adjoint values
    terms = ["1"] if row.output else []
    for child, pos in uses:
        ref = child.operands[pos]
        if not ref.whole:
            return None
        if child.op in ("sum", "cumsum", "gather"):
            return None
        parts = partials(child)
        if parts is None:
            return None
        t = term(f"v{BAR_ACCENT}{child.v}", parts[pos])
        if t is not None and child.shape is not None:
            t = f"Σ({t})"              # a scalar broadcast over an array result
        terms.append(t)
    return join(terms)
