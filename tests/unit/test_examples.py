"""The examples run as a user runs them (a subprocess, small settings) and print the right
numbers."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples")


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


def load_example(name):
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(EXAMPLES, name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_optimal_control_example(tmp_path):
    """Direct transcription (docs/sparse.md): the run prints its iterations and time, saves
    a plot, and the optimum agrees with SciPy's own solve by finite differences."""
    pytest.importorskip("scipy")
    plot = tmp_path / "oc.png"
    out = run_example("optimal_control.py", "--n", "60", "--plot", str(plot))
    fields = dict(re.findall(r"(\w+)=\s*(\S+)", out))
    assert fields["success"] == "True" and int(fields["iterations"]) < 200, out
    assert float(fields["max_violation"]) < 1e-8 and fields["time"].endswith("s"), out
    assert int(fields["colours"]) <= 6, out
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.exists() and plot.stat().st_size > 1000
    import numpy as np
    from scipy.optimize import minimize, NonlinearConstraint
    oc = load_example("optimal_control.py")
    n = 20
    res, _ = oc.solve(n, verbose=False)
    lb = np.full(3 * n + 2, -np.inf)
    ub = np.full(3 * n + 2, np.inf)
    lb[:n + 1] = -0.25
    lb[2 * n + 2:], ub[2 * n + 2:] = -0.75, 1.0
    z0 = np.zeros(3 * n + 2)
    z0[n + 1:2 * n + 2] = np.linspace(1.0, 0.0, n + 1)
    ref = minimize(lambda z: oc.cost(z, n), z0, method="SLSQP", bounds=list(zip(lb, ub)),
                   constraints=[NonlinearConstraint(lambda z: oc.dynamics(z, n), 0.0, 0.0)],
                   options={"maxiter": 500, "ftol": 1e-12})
    assert ref.success
    assert abs(res.fun - ref.fun) < 1e-5 * abs(ref.fun), (res.fun, ref.fun)


def test_least_squares_example():
    pytest.importorskip("scipy")
    out = run_example("least_squares.py", "--n", "1000")
    fields = dict(re.findall(r"(\w+)=\s*(\S+)", out))
    assert int(fields["residuals"]) == 1998 and int(fields["colours"]) == 3, out
    assert int(fields["status"]) > 0 and float(fields["max_grad"]) < 1e-5, out
    assert float(fields["rms_error"]) < 0.1, out
    # against SciPy with finite differences on a small instance
    import numpy as np
    from scipy.optimize import least_squares
    import fastad as fd
    ls = load_example("least_squares.py")
    t, truth, y = ls.make_data(300)
    tol = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    a = fd.least_squares(ls.residuals, np.zeros(300), args=(y, 1.0), **tol)
    b = least_squares(ls.residuals, np.zeros(300), args=(y, 1.0), jac="3-point", **tol)
    # the same minimum; u is only weakly determined where exp(u) is small, so x agrees to
    # the flatness of the cost there, and the costs agree closely
    assert abs(a.cost - b.cost) < 1e-9 * b.cost
    np.testing.assert_allclose(a.x, b.x, atol=5e-5)


def test_dask_sweep_example():
    # a 2-process LocalCluster on the loopback interface; Monte Carlo with 2e4 points and a
    # fixed seed: the DGSM estimates' standard errors are below 2 % (see the example), so
    # 10 % is more than 5 of them
    pytest.importorskip("distributed")
    out = run_example("dask_sweep.py", "--points", "20000", "--chunk", "5000")
    assert "unpickled per worker: [1, 1]" in out, out
    assert "with actors the same bits: True" in out, out
    errs = [float(e) for e in re.findall(r"relative error (\S+)", out)]
    assert len(errs) == 3 and max(errs) < 0.1, out
