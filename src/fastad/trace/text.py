"""A trace as text: the aligned table, the notes' three tables, Markdown, HTML and JSON.

Every layout starts from the same pieces -- `header`, `columns` (the one-table layout) and
`sections` (the notes' primal, tangent and adjoint tables) -- so the text, Markdown and
HTML outputs cannot drift apart.
"""
import html
import json

import numpy as np

from fastad.trace.fmt import (BAR_ACCENT, DOT_ACCENT, cell, elide, jfloat, num, pad, plural,
                              to_ascii, width)

SCHEMA = "fastad.trace/1"


def header(tr):
    """The title line and the summary line."""
    lines = [tr.title] if tr.title else []
    parts = [plural(tr.n_variables, "variable")]
    if tr.n_guards:
        parts.append(plural(tr.n_guards, "guard"))
    if tr.output is None:
        out = "no output"
    elif tr.output.const is not None:
        out = f"output f = {num(tr.value)} (a constant)"
    else:
        out = f"output f = {tr.output_text()} = {num(tr.value)}"
    lines.append(f"evaluation trace: {', '.join(parts)}; {out}")
    if tr.optimizer:
        lines.append(f"shown as recorded; for replays the optimizer {tr.optimizer}")
    return lines


def _label(row):
    if row.kind == "guard":
        return "guard"
    return row.name + (" (f)" if row.output else "")


def columns(tr, precision, max_rows=None):
    """(column names, head lines, tail lines, rows skipped between) of the one-table layout."""
    cols = ["", "op", "definition", "value"]
    if tr.has_tangents:
        cols.append("tangent")
    if tr.has_adjoints:
        cols.append("adjoint")

    def line(r):
        out = [_label(r), r.op, r.expr, cell(r.value, r.shape, precision)]
        if tr.has_tangents:
            out.append(cell(r.tangent, r.shape, precision))
        if tr.has_adjoints:
            out.append(cell(r.adjoint, r.shape, precision))
        return out
    head, tail, skipped = elide(tr._rows, max_rows)
    return cols, [line(r) for r in head], [line(r) for r in tail or []], skipped


def _seed_text(tr):
    if tr.output is not None and tr.output.whole:
        return f"v{BAR_ACCENT}{tr.output.v} = 1"
    return f"adjoint of {tr.output_text()} = 1"


def sections(tr, precision, max_rows=None):
    """[(title, head, tail, skipped)] for the primal, tangent and adjoint tables; head
    and tail are [(lhs, rule, value)], skipped the number of rows elided between."""
    def section(title, rows, item):
        head, tail, skipped = elide(rows, max_rows)
        return (title, [item(r) for r in head], [item(r) for r in tail or []], skipped)

    def prim(r):
        if r.kind == "guard":
            return ("guard", r.expr, cell(r.value, None, precision))
        return (r.name, r.expr + (" = f" if r.output else ""), cell(r.value, r.shape, precision))

    def tan(r):
        rule = tr.rule(r, "tangent_rule")
        return (f"v{DOT_ACCENT}{r.v}", rule if rule is not None else "…",
                cell(r.tangent, r.shape, precision))

    def adj(r):
        rule = tr.rule(r, "adjoint_rule")
        return (f"v{BAR_ACCENT}{r.v}", rule if rule is not None else "…",
                cell(r.adjoint, r.shape, precision))

    out = [section("Primal trace (forward evaluation)", tr._rows, prim)]
    if tr.has_tangents:
        out.append(section(f"Tangent trace (forward mode, {tr.direction_text()})",
                           tr._var_rows, tan))
    if tr.has_adjoints:
        out.append(section(f"Adjoint trace (reverse mode, {_seed_text(tr)})",
                           tr._var_rows[::-1], adj))
    return out


def gradient_text(tr):
    if not tr.has_adjoints or not tr.input_names:
        return None
    parts = [f"df/d{r.input} = {cell(r.adjoint, r.shape, 12)}"
             for r in tr._var_rows if r.kind == "input"]
    if len(parts) > 8:
        parts = parts[:8] + ["…"]
    return "gradient: " + ", ".join(parts)


def to_table(tr, *, split=False, max_rows=60, precision=12, ascii=False):
    conv = to_ascii if ascii else (lambda s: s)
    if split:
        return _split_text(tr, max_rows, precision, conv)
    cols, head, tail, skipped = columns(tr, precision, max_rows)
    head = [[conv(c) for c in line] for line in head]
    tail = [[conv(c) for c in line] for line in tail]
    shown = head + tail
    widths = [max([width(c)] + [width(line[i]) for line in shown]) for i, c in enumerate(cols)]
    out = header(tr)
    if tr.direction is not None:
        out.append(f"tangent: {tr.direction_text()}")
    if tr.has_adjoints and tr.output is not None and tr.output.const is None:
        out.append(f"adjoint: reverse mode, {_seed_text(tr)}")
    out = [conv(x) for x in out]

    def fmt(line):
        return "  ".join(pad(c, w) for c, w in zip(line, widths)).rstrip()
    out.append(fmt(cols))
    out.append("  ".join("-" * w for w in widths))
    out.extend(fmt(line) for line in head)
    if skipped:
        out.append(conv(f"⋮  … {skipped} rows elided …"))
        out.extend(fmt(line) for line in tail)
    return "\n".join(out)


def _split_text(tr, max_rows, precision, conv):
    out = [conv(x) for x in header(tr)]
    for title, head, tail, skipped in sections(tr, precision, max_rows):
        out.append("")
        out.append(conv(title))
        head = [tuple(conv(x) for x in it) for it in head]
        tail = [tuple(conv(x) for x in it) for it in tail]
        shown = head + tail
        w0 = max(width(a) for a, _, _ in shown)
        w1 = max(width(b) for _, b, _ in shown)

        def fmt(item, w0=w0, w1=w1):
            a, b, c = item
            return f"  {pad(a, w0)} = {pad(b, w1)}  = {c}".rstrip()
        out.extend(fmt(it) for it in head)
        if skipped:
            out.append(conv(f"  ⋮  … {skipped} rows elided …"))
            out.extend(fmt(it) for it in tail)
    grad = gradient_text(tr)
    if grad:
        out.append("")
        out.append(conv(grad))
    return "\n".join(out)


def to_markdown(tr, *, split=False, max_rows=60, precision=12):
    def esc(s):
        return s.replace("|", "\\|")
    out = []
    if tr.title:
        out += [f"**{esc(tr.title)}**", ""]
    if split:
        for k, (title, head, tail, skipped) in enumerate(sections(tr, precision, max_rows)):
            if k:
                out.append("")
            out += [f"*{esc(title)}*", "", "| variable | rule | value |", "|---|---|---:|"]
            out += [f"| {esc(a)} | {esc(b)} | {esc(c)} |" for a, b, c in head]
            if skipped:
                out.append(f"| ⋮ | … {skipped} rows elided … | |")
                out += [f"| {esc(a)} | {esc(b)} | {esc(c)} |" for a, b, c in tail]
        return "\n".join(out)
    cols, head, tail, skipped = columns(tr, precision, max_rows)
    cols = ["variable"] + cols[1:]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(cols) - 3)) + "|")
    out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in head]
    if skipped:
        out.append("| ⋮ | | … " + f"{skipped} rows elided …" + " |" * (len(cols) - 2))
        out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in tail]
    return "\n".join(out)


def to_html(tr):
    """The one-table layout as HTML, with the graph as SVG when Graphviz is there."""
    from fastad.trace import graph
    cols, head, tail, skipped = columns(tr, 8, 60)

    def tr_(line):
        return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
    out = ['<div class="fastad-trace">']
    out += [f"<p><b>{html.escape(line)}</b></p>" for line in header(tr)]
    out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
               + "</tr></thead><tbody>")
    out += [tr_(line) for line in head]
    if skipped:
        out.append(f'<tr><td colspan="{len(cols)}">… {skipped} rows elided …</td></tr>')
        out += [tr_(line) for line in tail]
    out.append("</tbody></table>")
    svg = graph.to_svg_or_none(tr)
    if svg:
        out.append(svg[svg.find("<svg"):] if "<svg" in svg else svg)
    out.append("</div>")
    return "\n".join(out)


def to_dict(tr, max_rows=None):
    def arr(x):
        if x is None:
            return None
        if isinstance(x, np.ndarray):
            return [jfloat(v) for v in x]
        if isinstance(x, bool):
            return x
        return jfloat(x)
    head, tail, skipped = elide(tr._rows, max_rows)
    rows = [{"v": r.v, "name": r.name, "kind": r.kind, "op": r.op, "input": r.input,
             "expr": r.expr, "operands": [o.as_json() for o in r.operands],
             "shape": list(r.shape) if r.shape is not None else None,
             "slots": r.slots, "value": arr(r.value), "tangent": arr(r.tangent),
             "adjoint": arr(r.adjoint), "tangent_rule": tr.rule(r, "tangent_rule"),
             "adjoint_rule": tr.rule(r, "adjoint_rule"), "output": r.output}
            for r in head + (tail or [])]
    return {
        "schema": SCHEMA,
        "title": tr.title,
        "inputs": [{"name": r.input, "v": r.v,
                    "shape": list(r.shape) if r.shape is not None else None}
                   for r in tr._var_rows if r.kind == "input"],
        "output": ({"text": tr.output.text, "v": tr.output.v, "value": jfloat(tr.value)}
                   if tr.output is not None else None),
        "direction": ([jfloat(v) for v in tr.direction] if tr.direction is not None else None),
        "gradient": [jfloat(v) for v in tr.gradient] if tr.has_adjoints else None,
        "n_variables": tr.n_variables,
        "n_guards": tr.n_guards,
        "n_rows": len(tr._rows),
        "elided": skipped,
        "rows": rows,
    }


def to_json(tr, *, indent=2, max_rows=None, ensure_ascii=False):
    return json.dumps(to_dict(tr, max_rows), indent=indent, ensure_ascii=ensure_ascii)
