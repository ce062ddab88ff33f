"""`python -m fastad trace`: the notes' worked example from an expression string, the
whitelist parser's refusals, bad input (exit status 2, one line on stderr), and the help.

The notes' example is checked against closed forms (50-digit mpmath): the printed tables
have 12 significant digits (checked to 1e-11 relative), the JSON output exact float64
values (8 eps relative: a few correctly rounded operations and one libm call each).
"""
import json
import re
import subprocess
import sys

import pytest
from mpmath import mp, mpf

from fastad import cli
from reference import NOTES_V, NOTES_VBAR, NOTES_VDOT

EPS = 2.0 ** -52
mp.dps = 50
m1, m2 = mpf(1.5), mpf(0.5)
NOTES = "x1*x2 + exp(x1*x2) - sin(x2)"
AT = ["--at", "x1=1.5", "x2=0.5"]

V, VDOT, VBAR = NOTES_V, NOTES_VDOT, NOTES_VBAR     # the notes' closed forms (reference.py)
DEFINITIONS = {1: "x1", 2: "x2", 3: "v1 * v2", 4: "sin(v2)", 5: "exp(v3)", 6: "v3 - v4",
               7: "v5 + v6"}


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def close(got, ref, rtol):
    ref = float(ref)
    return abs(got - ref) <= rtol * max(abs(ref), 1e-300)


def section(text, title):
    """{k: (rule, value)} of one of the three printed tables."""
    block = text.split(title, 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in block.splitlines()[1:]:
        m = re.match(r"\s+v\S?(\d+)\s+= (.*?)\s+= (\S+)$", line)
        if m:
            rows[int(m.group(1))] = (m.group(2).strip(), float(m.group(3)))
    return rows


def test_notes_example_three_tables(capsys):
    status, out, err = run(capsys, "trace", NOTES, *AT)
    assert status == 0 and err == ""
    primal = section(out, "Primal trace")
    tangent = section(out, "Tangent trace")
    adjoint = section(out, "Adjoint trace")
    assert sorted(primal) == sorted(tangent) == sorted(adjoint) == list(range(1, 8))
    for k in range(1, 8):
        definition = primal[k][0].removesuffix(" = f")
        assert definition == DEFINITIONS[k], (k, primal[k])
        assert close(primal[k][1], V[k], 1e-11), (k, primal[k], V[k])
        assert close(tangent[k][1], VDOT[k], 1e-11) or VDOT[k] == tangent[k][1] == 0
        assert close(adjoint[k][1], VBAR[k], 1e-11), (k, adjoint[k], VBAR[k])
    assert primal[7][0].endswith("= f")
    assert adjoint[2][0] == "v̄3·v1 + v̄4·cos(v2)"      # the corrected rule
    assert adjoint[3][0] == "v̄5·v5 + v̄6" and adjoint[4][0] == "-v̄6"
    assert tangent[3][0] == "v̇1·v2 + v1·v̇2"
    assert "ẋ = (1, 0)" in out


def test_notes_example_json_exact(capsys):
    status, out, err = run(capsys, "trace", NOTES, *AT, "--format", "json")
    assert status == 0
    doc = json.loads(out)
    assert doc["schema"] == "fastad.trace/1" and doc["n_variables"] == 7
    for row in doc["rows"]:
        k = row["v"]
        assert row["expr"] == DEFINITIONS[k]
        assert close(row["value"], V[k], 8 * EPS)
        assert close(row["tangent"], VDOT[k], 8 * EPS) or row["tangent"] == VDOT[k] == 0
        assert close(row["adjoint"], VBAR[k], 8 * EPS)


def test_wrt_second_variable(capsys):
    status, out, _ = run(capsys, "trace", NOTES, *AT, "--wrt", "x2", "--format", "json")
    assert status == 0
    doc = json.loads(out)
    assert doc["direction"] == [0.0, 1.0]
    df_dx2 = m1 + m1 * mp.exp(m1 * m2) - mp.cos(m2)
    assert close(doc["rows"][-1]["tangent"], df_dx2, 8 * EPS)


def test_common_subexpression_is_one_variable(capsys):
    status, out, _ = run(capsys, "trace", "x1*x2 + exp(x1*x2)", *AT, "--format", "json")
    ops = [r["op"] for r in json.loads(out)["rows"]]
    assert ops.count("multiply") == 1 and len(ops) == 5


def test_as_written_keeps_left_to_right(capsys):
    status, out, _ = run(capsys, "trace", NOTES, *AT, "--as-written", "--format", "json")
    rows = json.loads(out)["rows"]
    assert [r["expr"] for r in rows[2:]] == ["v1 * v2", "sin(v2)", "exp(v3)", "v3 + v5",
                                             "v6 - v4"]
    assert close(rows[-1]["value"], V[7], 8 * EPS)


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "mermaid-state", "markdown"])
def test_graph_and_markdown_formats(capsys, fmt):
    status, out, _ = run(capsys, "trace", NOTES, *AT, "--format", fmt, "--show", "value")
    assert status == 0
    if fmt == "dot":
        assert len(re.findall(r"^\s*v\d+ \[label=", out, flags=re.M)) == 7
        assert len(re.findall(r"->", out)) == 8
    elif fmt.startswith("mermaid"):
        assert len(re.findall(r"-->", out)) == 8
    else:
        assert out.count("| variable | rule | value |") == 3


def test_leading_minus_expression(capsys):
    status, out, _ = run(capsys, "trace", "-x1 + 2*x2", *AT, "--format", "json")
    assert status == 0
    assert close(json.loads(out)["output"]["value"], -1.5 + 1.0, 8 * EPS)


REFUSED = {
    "__import__('os')": "__import__",
    "__import__('os').system('true')": "attribute access",
    "x1.real": "attribute access `x1.real`",
    "(lambda: x1)()": "lambda",
    "lambda: 1": "lambda",
    "[x1 for x1 in x2]": "list comprehension",
    "sum(x1 for x1 in x2)": "generator expression",
    "{x1 for x1 in x2}": "set comprehension",
    "{x1: x2 for x1 in x2}": "dict comprehension",
    "x1[0]": "subscript",
    "x1 if x2 else 0": "conditional expression",
    "x1 < x2": "comparison",
    "'x1'": "string",
    "x1 // x2": "`//`",
    "log(x1, base=2)": "keyword argument `base=2`",
    "open('f')": "`open`",
}


@pytest.mark.parametrize("expr", list(REFUSED))
def test_refused_constructs(capsys, expr):
    status, out, err = run(capsys, "trace", expr, *AT)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("python -m fastad trace: error:")
    assert REFUSED[expr] in err, err


BAD_INPUT = {
    "unknown name": (["x3 * x1", *AT], "unknown name `x3`"),
    "missing value": (["x1 * x2", "--at", "x1=1.5"], "unknown name `x2`"),
    "empty value": (["x1", "--at", "x1="], "missing value"),
    "no equals sign": (["x1", "--at", "x1"], "expected NAME=VALUE"),
    "malformed number": (["x1", "--at", "x1=1.5.3"], "malformed number `1.5.3`"),
    "non-finite value": (["x1", "--at", "x1=inf"], "finite"),
    "malformed number in the expression": (["x1 * 1.2.3", *AT], "invalid syntax"),
    "huge exponent": (["2**10**10", *AT], "`2**10**10` overflows"),
    "huge exponent of a variable": (["x1**10**10", *AT], "`x1**10**10` overflows"),
    "huge literal": (["9" * 400 + " * x1", *AT], "too large"),
    "deep nesting": (["sin(" * 150 + "x1" + ")" * 150, *AT], "nested too deeply"),
    "deep parentheses": (["(" * 500 + "x1" + ")" * 500, *AT], "nested too deeply"),
    "deep unary minus": (["-" * 3000 + "x1", *AT], "nested too deeply"),
    "too long": (["+".join(["x1"] * 5000), *AT], "too long"),
    "wrong arity": (["sin(x1, x2)", *AT], "takes 1 argument"),
    "function as a value": (["sin + x1", *AT], "`sin` is a function"),
    "bad --wrt": (["x1", *AT, "--wrt", "y"], "--wrt y"),
    "duplicate variable": (["x1", "--at", "x1=1", "x1=2"], "given twice"),
    "function as a variable name": (["x1", "--at", "exp=1"], "`exp` is a function name"),
    "missing --at": (["x1"], "--at"),
    "unknown format": (["x1", *AT, "--format", "xml"], "invalid choice"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_one_line_exit_2(capsys, case):
    argv, needle = BAD_INPUT[case]
    try:
        status = cli.main(["trace", *argv])
    except SystemExit as e:                  # argparse's own errors
        status = e.code
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1, err
    assert needle in err, err


def test_no_eval_or_exec_in_the_parser():
    import inspect
    src = inspect.getsource(cli)
    assert not re.search(r"\b(eval|exec|compile)\(", src)


def _python_m(*argv):
    return subprocess.run([sys.executable, "-m", "fastad", *argv], capture_output=True,
                          text=True, timeout=120)


def test_python_m_help_documents_trace():
    p = _python_m("--help")
    assert p.returncode == 0
    assert "trace" in p.stdout and "-n N" in p.stdout
    p = _python_m("trace", "--help")
    assert p.returncode == 0
    for word in ("--at", "--wrt", "--format", "mermaid", "exit status", "sin", "arctan2",
                 "never evaluated"):
        assert word in p.stdout, word


def test_python_m_trace_and_exit_status():
    p = _python_m("trace", NOTES, *AT)
    assert p.returncode == 0 and "v7 = v5 + v6 = f" in p.stdout
    p = _python_m("trace", "__import__('os').system('echo hacked')", *AT)
    assert p.returncode == 2 and "hacked" not in p.stdout + p.stderr.replace("echo hacked", "")
    assert p.stderr.count("\n") == 1


def test_python_m_without_command_runs_the_demo():
    p = _python_m("-n", "10")
    assert p.returncode == 0, p.stderr
    assert "v7" in p.stdout and "Rosenbrock" in p.stdout
