"""A trace as a graph: Graphviz DOT, Mermaid (flowchart or the notes' state diagram), and
images through Graphviz's `dot` program.  One node per primal variable, one edge per
operand, from the variable read to the variable computed."""
import os
import shutil
import subprocess

import numpy as np

from fastad.trace.fmt import BAR_ACCENT, DOT_ACCENT, cell, elide

INSTALL_GRAPHVIZ = (
    "fastad: rendering a graph needs Graphviz's `dot` program, which is not installed (not "
    "on PATH). Install it with `apt-get install graphviz` (Debian/Ubuntu), `conda install "
    "graphviz`, `brew install graphviz` (macOS) or from https://graphviz.org/download/ ; "
    "or write the text with .to_dot() / .to_mermaid() and render it elsewhere.")

SHOWABLE = ("value", "tangent", "adjoint")


class GraphvizNotFoundError(RuntimeError):
    """`render` was asked for an image but Graphviz's `dot` program is not installed."""


def check_show(show):
    """The numbers to print on the nodes, as a tuple from ("value", "tangent", "adjoint"):
    accepts a tuple, a comma-separated string, "all"/True or nothing."""
    if show in (None, False, (), []):
        return ()
    if show == "all" or show is True:
        return SHOWABLE
    if isinstance(show, str):
        show = tuple(s.strip() for s in show.split(",") if s.strip())
    bad = [s for s in show if s not in SHOWABLE]
    if bad:
        raise ValueError(f"fastad: show= takes 'value', 'tangent', 'adjoint' or 'all', "
                         f"got {bad[0]!r}")
    return tuple(show)


def _model(tr, show, max_nodes):
    """(nodes, edges, elided): nodes [(v, label_lines, kind, output)], edges
    [(from_v, to_v, label)] with one edge per operand per variable it reads."""
    show = check_show(show)
    head, tail, skipped = elide(tr._var_rows, max_nodes)
    keep = head + (tail or [])
    kept = {r.v for r in keep}
    nodes = []
    for r in keep:
        label = f"{r.name} = {r.expr}" + (" = f" if r.output else "")
        if r.shape is not None and r.kind != "input":
            label += f"  [{int(np.prod(r.shape))}]"
        lines = [label]
        for key in show:
            val = getattr(r, key)
            if val is not None:
                sym = {"value": "= ", "tangent": f"v{DOT_ACCENT}{r.v} = ",
                       "adjoint": f"v{BAR_ACCENT}{r.v} = "}[key]
                lines.append(f"{sym}{cell(val, r.shape, 6)}")
        nodes.append((r.v, lines, r.kind, r.output))
    edges = []
    for r in keep:
        for ref in r.operands:
            for v in ref.vars:
                lab = ref.sub if ref.v == v else ""
                edges.append((v if v in kept else None, r.v, lab))
    return nodes, edges, skipped


def to_dot(tr, *, show=(), max_nodes=400, rankdir="LR"):
    nodes, edges, skipped = _model(tr, show, max_nodes)

    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = ["digraph fastad_trace {", f"  rankdir={rankdir};",
           '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", '
           'fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    if tr.title:
        out.append(f"  label={q(tr.title)}; labelloc=t; fontname=\"Helvetica\";")
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


def _mermaid_escape(s):
    return (s.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;"))


def to_mermaid(tr, *, show=(), max_nodes=400, kind="flowchart", direction="LR"):
    if kind not in ("flowchart", "state"):
        raise ValueError(f"fastad: to_mermaid kind must be 'flowchart' or 'state', "
                         f"got {kind!r}")
    nodes, edges, skipped = _model(tr, show, max_nodes)
    outs = [f"v{v}" for v, _, _, o in nodes if o]
    if kind == "state":
        return _mermaid_state(nodes, edges, skipped, outs, direction)
    esc = _mermaid_escape
    out = [f"flowchart {direction}"]
    for v, lines, k, is_out in nodes:
        lab = esc("<br/>".join(lines)) if len(lines) == 1 else \
            "<br/>".join(esc(x) for x in lines)
        shape = ('(["', '"])') if k == "input" else (('[["', '"]]') if is_out else ('["', '"]'))
        out.append(f"    v{v}{shape[0]}{lab}{shape[1]}")
    if skipped:
        out.append(f'    elided{{{{"… {skipped} variables elided …"}}}}')
    for a, b, lab in edges:
        src = f"v{a}" if a is not None else "elided"
        mid = f' -- "{esc(lab)}" -->' if lab else " -->"
        out.append(f"    {src}{mid} v{b}")
    ins = [f"v{v}" for v, _, k, _ in nodes if k == "input"]
    out.append("    classDef input fill:#dbe9f6,stroke:#4a78a8")
    out.append("    classDef output fill:#fde2c8,stroke:#c0762c")
    if ins:
        out.append(f"    class {','.join(ins)} input")
    if outs:
        out.append(f"    class {','.join(outs)} output")
    return "\n".join(out) + "\n"


def _mermaid_state(nodes, edges, skipped, outs, direction):
    out = ["stateDiagram-v2", f"    direction {direction}"]
    for v, lines, _k, _is_out in nodes:
        text = " ".join(lines).replace(":", "∶")
        out.append(f"    v{v}: {text}")
    if skipped:
        out.append(f"    elided: … {skipped} variables elided …")
    for a, b, lab in edges:
        src = f"v{a}" if a is not None else "elided"
        out.append(f"    {src} --> v{b}" + (f": {lab}" if lab else ""))
    if outs:
        out.append("    classDef output fill:#fde2c8")
        out.append(f"    class {','.join(outs)} output")
    return "\n".join(out) + "\n"


def render(tr, path, *, show=(), max_nodes=400, format=None, rankdir="LR"):
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".")).lower()
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_dot(tr, show=show, max_nodes=max_nodes, rankdir=rankdir))
        return path
    if fmt in ("mmd", "mermaid"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_mermaid(tr, show=show, max_nodes=max_nodes))
        return path
    if not fmt:
        raise ValueError(f"fastad: cannot tell the image format of {path!r}; give a "
                         "suffix (.svg, .png, .pdf, .dot, .mmd) or format=")
    data = run_dot(to_dot(tr, show=show, max_nodes=max_nodes, rankdir=rankdir), fmt)
    with open(path, "wb") as f:
        f.write(data)
    return path


def to_svg_or_none(tr):
    """The graph as SVG for Jupyter, or None without Graphviz (or if dot fails)."""
    if shutil.which("dot") is None:
        return None
    try:
        return run_dot(to_dot(tr, show=("value", "adjoint")), "svg").decode("utf-8")
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return None


def run_dot(source, fmt):
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError(INSTALL_GRAPHVIZ)
    proc = subprocess.run([exe, f"-T{fmt}"], input=source.encode("utf-8"),
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"fastad: Graphviz `dot -T{fmt}` failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
