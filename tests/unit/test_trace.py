"""fastad.trace: the evaluation trace of the notes' worked example, its text/Markdown/JSON
forms, the computation graph (DOT, Mermaid), rendering, elision, and tape statistics.

Every number is checked against its closed form (50-digit mpmath), never against another
fastad output:

    f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2)   at (1.5, 0.5)
    v1 = x1, v2 = x2, v3 = v1*v2, v4 = sin(v2), v5 = exp(v3), v6 = v3 - v4, v7 = v5 + v6

The adjoint of v2 follows the correct rule v2-bar = v3-bar*v1 + v4-bar*cos(v2) (the notes
print v2-bar*v1 for the first term, a typo).  Values read from JSON are exact float64
results of a few correctly rounded operations and one libm exp/sin/cos: within 8 eps
relative.  Values read from the 12-digit text tables: within 1e-11 relative.
"""
import importlib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from mpmath import mp, mpf

import fastad as fd
from fastad.trace import EvaluationTrace, GraphvizNotFoundError, trace, trace_info
from reference import NOTES_V, NOTES_VBAR, NOTES_VDOT

# the module itself (fastad.trace may be re-exported as the function of that name)
trace_module = importlib.import_module("fastad.trace")
EPS = np.finfo(float).eps
mp.dps = 50
X1, X2 = 1.5, 0.5
m1, m2 = mpf(X1), mpf(X2)

V, VDOT, VBAR = NOTES_V, NOTES_VDOT, NOTES_VBAR     # the notes' closed forms (reference.py)
# the notes' structure: v_k = op(operands)
STRUCTURE = {1: ("input", []), 2: ("input", []), 3: ("multiply", ["v1", "v2"]),
             4: ("sin", ["v2"]), 5: ("exp", ["v3"]), 6: ("subtract", ["v3", "v4"]),
             7: ("add", ["v5", "v6"])}


def notes_example(x1, x2):
    v3 = x1 * x2
    v4 = np.sin(x2)
    v5 = np.exp(v3)
    v6 = v3 - v4
    v7 = v5 + v6
    return v7


def close(got, ref, rtol=8 * EPS):
    ref = float(ref)
    return abs(got - ref) <= rtol * max(abs(ref), 1e-300) or got == ref


@pytest.fixture(scope="module")
def tr():
    return trace(notes_example, X1, X2, tangents=(1.0, 0.0))


def test_rows_match_the_notes_closed_forms(tr):
    rows = tr.rows
    assert [r["name"] for r in rows] == [f"v{k}" for k in range(1, 8)]
    for k in range(1, 8):
        r = rows[k - 1]
        op, operands = STRUCTURE[k]
        assert r["op"] == op and [o.text for o in r["operands"]] == operands, r
        assert close(r["value"], V[k]), (k, r["value"], V[k])
        assert close(r["tangent"], VDOT[k]), (k, r["tangent"], VDOT[k])
        assert close(r["adjoint"], VBAR[k]), (k, r["adjoint"], VBAR[k])
    assert rows[0]["input"] == "x1" and rows[1]["input"] == "x2"
    assert [r["output"] for r in rows] == [False] * 6 + [True]
    assert close(tr.value, V[7])
    assert close(tr.directional_derivative, VDOT[7])


def test_rules_are_the_notes_rules_with_the_correct_v2bar(tr):
    rule = {r["v"]: (r["tangent_rule"], r["adjoint_rule"]) for r in tr.rows}
    assert rule[3][0] == "v̇1·v2 + v1·v̇2"
    assert rule[4][0] == "v̇2·cos(v2)"
    assert rule[5][0] == "v̇3·v5"
    assert rule[6][0] == "v̇3 - v̇4"
    assert rule[7][0] == "v̇5 + v̇6"
    assert rule[7][1] == "1"
    assert rule[6][1] == "v̄7" and rule[5][1] == "v̄7"
    assert rule[4][1] == "-v̄6"
    assert rule[3][1] == "v̄5·v5 + v̄6"
    assert rule[2][1] == "v̄3·v1 + v̄4·cos(v2)"       # not the notes' typo v̄2·v1
    assert rule[1][1] == "v̄3·v2"
    # and the rule, evaluated, is the adjoint (the typo'd rule would not be)
    assert close(float(VBAR[3] * V[1] + VBAR[4] * mp.cos(V[2])), VBAR[2])


def test_printed_table_is_aligned_and_complete(tr):
    text = str(tr)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("-"))
    body = lines[header + 1:]
    assert len(body) == 7
    # columns aligned: every body line starts its 'op' column at the same place
    starts = {line.index(op) for line, op in zip(body, ["input", "input", "multiply", "sin",
                                                         "exp", "subtract", "add"])}
    assert len(starts) == 1
    for k, line in enumerate(body, 1):
        nums = [float(t) for t in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?|(?<![\w.])-?\d+(?![\w.])",
                                              line.split("  ", 1)[1])]
        value, tangent, adjoint = nums[-3:]
        assert close(value, V[k], 1e-11) and close(tangent, VDOT[k], 1e-11)
        assert close(adjoint, VBAR[k], 1e-11)


def test_split_tables_ascii_and_markdown(tr):
    text = tr.to_table(split=True)
    assert "Primal trace" in text and "Tangent trace" in text and "Adjoint trace" in text
    assert "v̄2 = v̄3·v1 + v̄4·cos(v2)" in text
    ascii_text = tr.to_table(split=True, ascii=True)
    assert all(ord(c) < 128 for c in ascii_text)
    assert "v2bar = v3bar*v1 + v4bar*cos(v2)" in ascii_text
    md = tr.to_markdown()
    lines = md.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 7
    assert all(line.count("|") == table[0].count("|") for line in table)
    md3 = tr.to_markdown(split=True)
    assert md3.count("| variable | rule | value |") == 3


def test_json_schema_and_exact_values(tr):
    doc = json.loads(tr.to_json())
    assert doc["schema"] == "fastad.trace/1"
    assert doc["n_variables"] == 7 and doc["n_guards"] == 0 and doc["elided"] == 0
    assert [i["name"] for i in doc["inputs"]] == ["x1", "x2"]
    assert doc["output"]["v"] == 7 and close(doc["output"]["value"], V[7])
    assert doc["direction"] == [1.0, 0.0]
    assert close(doc["gradient"][0], VBAR[1]) and close(doc["gradient"][1], VBAR[2])
    keys = {"v", "name", "kind", "op", "input", "expr", "operands", "shape", "slots",
            "value", "tangent", "adjoint", "tangent_rule", "adjoint_rule", "output"}
    for row in doc["rows"]:
        assert set(row) == keys
        k = row["v"]
        assert close(row["value"], V[k]) and close(row["tangent"], VDOT[k])
        assert close(row["adjoint"], VBAR[k])
        assert [o["v"] for o in row["operands"]] == [int(t[1:]) for t in STRUCTURE[k][1]]


def test_rows_are_plain_python(tr):
    for r in tr.rows:
        assert isinstance(r, dict)
        for key in ("value", "tangent", "adjoint"):
            assert type(r[key]) is float


def _operand_edges(tr):
    """(from, to) for every variable an operand reads."""
    return [(v, r["v"]) for r in tr.rows if r["kind"] != "guard"
            for o in r["operands"] for v in o.vars]


def test_dot_structure_and_graphviz(tr, tmp_path):
    dot = tr.to_dot(show="all")
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    nodes = re.findall(r"^\s*(v\d+) \[label=", dot, flags=re.M)
    assert nodes == [f"v{k}" for k in range(1, 8)]
    edges = re.findall(r"^\s*(v\d+) -> (v\d+)", dot, flags=re.M)
    expected = [(f"v{a}", f"v{b}") for a, b in _operand_edges(tr)]
    assert sorted(edges) == sorted(expected) and len(edges) == 8
    assert sorted(expected) == sorted([("v1", "v3"), ("v2", "v3"), ("v2", "v4"), ("v3", "v5"),
                                       ("v3", "v6"), ("v4", "v6"), ("v5", "v7"), ("v6", "v7")])
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert b"<svg" in proc.stdout


@pytest.mark.parametrize("kind", ["flowchart", "state"])
def test_mermaid_one_node_per_variable_one_edge_per_operand(tr, kind):
    text = tr.to_mermaid(kind=kind, show=("value", "adjoint"))
    lines = text.splitlines()
    assert lines[0] == ("flowchart LR" if kind == "flowchart" else "stateDiagram-v2")
    if kind == "flowchart":
        nodes = [m.group(1) for line in lines
                 if (m := re.match(r"\s+(v\d+)[\[(]", line))]
    else:
        nodes = [m.group(1) for line in lines if (m := re.match(r"\s+(v\d+): ", line))]
    assert nodes == [f"v{k}" for k in range(1, 8)]
    edges = [tuple(m.groups()) for line in lines
             if (m := re.match(r"\s+(v\d+) .*--> ?(v\d+)", line))]
    assert len(edges) == 8
    assert sorted(edges) == sorted((f"v{a}", f"v{b}") for a, b in _operand_edges(tr))


def test_render_needs_graphviz_and_says_how_to_install(tr, tmp_path, monkeypatch):
    monkeypatch.setattr(trace_module.graph.shutil, "which", lambda name: None)
    with pytest.raises(GraphvizNotFoundError) as info:
        tr.render(tmp_path / "g.svg")
    msg = str(info.value)
    assert "apt-get install graphviz" in msg and "conda install graphviz" in msg
    assert tr._repr_svg_() is None
    html = tr._repr_html_()
    assert "<table>" in html and "v5" in html
    # text formats need no Graphviz
    assert tr.render(tmp_path / "g.dot").endswith("g.dot")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    tr.render(tmp_path / "g.mmd")
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_render_svg_and_png(tr, tmp_path):
    tr.render(tmp_path / "g.svg", show="value")
    assert "<svg" in (tmp_path / "g.svg").read_text()
    tr.render(tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in tr._repr_svg_()


def loop(x, n):
    s = 0.0
    for i in range(n):
        s = s + np.sin(x * i)
    return s


def test_long_trace_is_elided_in_the_middle():
    n = 400
    tr = trace(loop, 0.3, n)
    assert tr.n_variables == 1 + 3 * n     # x, then multiply, sin, add per step
    text = tr.to_table(max_rows=20)
    lines = text.splitlines()
    elided = [line for line in lines if "rows elided" in line]
    assert len(elided) == 1
    count = int(re.search(r"(\d+) rows elided", elided[0]).group(1))
    shown = len([line for line in lines if re.match(r"v\d+", line)])
    assert shown == 20 and count + shown == len(tr.rows)
    assert len(tr.to_table(max_rows=None).splitlines()) > len(tr.rows)
    doc = json.loads(tr.to_json(max_rows=10))
    assert len(doc["rows"]) == 10 and doc["elided"] == len(tr.rows) - 10
    assert "variables elided" in tr.to_dot(max_nodes=30)
    # the output is still right: sum of sin(0.3 i)
    ref = sum(mp.sin(mpf(0.3) * i) for i in range(n))
    assert abs(tr.value - float(ref)) < 1e-12 * n


def vectorized(x):
    return np.sum(np.sin(x) * x) + x[0]


def test_ranged_records_are_one_row_each():
    x = np.linspace(0.0, 1.0, 100_000)
    tr = trace(vectorized, x)
    assert tr.n_variables < 10                  # not 100 000 rows
    r_in = tr.rows[0]
    assert r_in["shape"] == (100_000,) and r_in["input"] == "x"
    text = str(tr)
    assert "[100000]" in text
    sin_row = next(r for r in tr.rows if r["op"] == "sin")
    assert sin_row["shape"] == (100_000,)
    assert np.allclose(sin_row["value"], np.sin(x), rtol=0, atol=2 * EPS)
    # gradient of sum(sin(x) x) + x0: sin(x) + x cos(x), plus 1 at 0
    g = tr.gradient
    ref = np.sin(x) + x * np.cos(x)
    ref[0] += 1.0
    assert np.max(np.abs(g - ref)) < 1e-14
    assert "v1[0]" in text
    doc = json.loads(tr.to_json(max_rows=3))
    assert doc["rows"][0]["shape"] == [100_000]


def branchy(x):
    if x > 1.0:
        return x * x
    return -x


def test_guards_are_rows_without_a_variable_and_not_graph_nodes():
    tr = trace(branchy, 2.0)
    guards = [r for r in tr.rows if r["kind"] == "guard"]
    assert len(guards) == 1 and guards[0]["value"] is True and guards[0]["v"] is None
    assert guards[0]["expr"] == "1 < v1"
    assert tr.n_variables == 2
    assert len(re.findall(r"^\s*v\d+ \[", tr.to_dot(), flags=re.M)) == 2
    assert "guard" in str(tr)


def test_trace_of_a_tape_and_flat_direction():
    tape = fd.record(notes_example, X1, X2)
    tr = trace(tape, tangents=[0.0, 1.0])
    assert isinstance(tr, EvaluationTrace)
    df_dx2 = m1 + m1 * mp.exp(m1 * m2) - mp.cos(m2)
    assert close(tr.directional_derivative, df_dx2)
    assert tr.rows[0]["input"] == "x1"        # default names


def test_trace_without_columns():
    tr = trace(notes_example, X1, X2, adjoint=False)
    assert tr.rows[2]["adjoint"] is None and tr.rows[2]["tangent"] is None
    assert "adjoint" not in str(tr).splitlines()[2]


def test_trace_info_of_a_tape_and_of_a_compiled_function():
    tape = fd.record(notes_example, X1, X2)
    info = trace_info(tape)
    assert dict(info.by_op) == {"multiply": 1, "sin": 1, "exp": 1, "subtract": 1, "add": 1}
    assert info.records == 5 and info.slots == 7 and info.inputs == 2
    assert info.constants == 0 and info.guards == 0 and info.bytes == tape.nbytes
    assert "5 records" in str(info) and "multiply 1" in str(info)

    g = fd.grad(branchy)
    g(2.0)
    g(3.0)             # replay
    g(0.5)             # the guard fails: retrace
    info = trace_info(g)
    assert (info.traces, info.replays, info.retraces, info.tapes) == (2, 1, 1, 2)
    assert info.guards == 2 and len(info.per_tape) == 2
    text = str(info)
    assert "1 retrace " in text and "2 cached tapes" in text
    assert info.as_dict()["by_op"]
    with pytest.raises(TypeError):
        trace_info(42)
