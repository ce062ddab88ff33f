"""The examples run as a user runs them (a subprocess, small settings) and print the right
numbers."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def run_example(name, *args, cwd=None):
    # the installed fastad, as a user has it (the source tree holds no compiled extension)
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_optimize_example():
    pytest.importorskip("scipy")
    out = run_example("optimize.py", "--repeat", "1")
    rows = [line for line in out.splitlines() if "nit=" in line]
    assert len(rows) == 8, out
    parsed = []
    for line in rows:
        fields = dict(re.findall(r"(\w+)=\s*(\S+)", line))
        how = "fastad" if " fastad " in line else "findiff"
        problem = "rosen" if line.startswith("rosen") else "fit"
        parsed.append((problem, how, fields))
        assert fields["success"] == "True", line
    for problem, how, f in parsed:
        nit, calls, err = int(f["nit"]), int(f["fcalls"]), float(f["err"])
        if how == "fastad":
            # traced once for the gradient (and once for Hessian products), then replayed
            assert calls <= 2, f
        else:
            assert calls > nit, f          # finite differences: several calls per iteration
        if problem == "rosen":
            assert err < 1e-4 and float(f["f"]) < 1e-8, f
        else:
            assert err < 1e-4, f           # against the least-squares optimum
    # the fit recovers the parameters the data were made with (noise 0.02)
    fits = re.findall(r"fit \((\S+)\s*\) a=(\S+) b=(\S+) c=(\S+)", out)
    assert len(fits) == 2, out
    for _, a, b, c in fits:
        assert float(a) == pytest.approx(2.5, abs=0.05)
        assert float(b) == pytest.approx(1.3, abs=0.05)
        assert float(c) == pytest.approx(0.5, abs=0.05)


def test_mlp_backprop_example(tmp_path):
    png = tmp_path / "moons.png"
    out = run_example("mlp_backprop.py", "--steps", "300", "--out", str(png), cwd=tmp_path)
    losses = [float(v) for v in re.findall(r"^step\s+\d+\s+loss (\S+)", out, re.M)]
    assert len(losses) >= 3, out
    assert losses[-1] < 0.1 < losses[0], out          # the loss goes down as it trains
    m = re.search(r"final loss (\S+)\s+accuracy (\S+)", out)
    assert m and float(m.group(1)) < 0.1 and float(m.group(2)) >= 0.95, out
    assert "Python code ran 1 time" in out, out
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"saved the decision boundary to {png}" in out
    else:
        assert "matplotlib is not installed: skipping the plot" in out
        assert not png.exists()


def test_dask_sweep_example():
    # a 2-process LocalCluster on the loopback interface; Monte Carlo with 2e4 points and a
    # fixed seed: the DGSM estimates' standard errors are below 2 % (see the example), so
    # 10 % is more than 5 of them
    pytest.importorskip("distributed")
    out = run_example("dask_sweep.py", "--points", "20000", "--chunk", "5000")
    assert "unpickled per worker: [1, 1]" in out, out
    errs = [float(e) for e in re.findall(r"relative error (\S+)", out)]
    assert len(errs) == 3 and max(errs) < 0.1, out
