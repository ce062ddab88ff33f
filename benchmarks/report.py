"""Turn a pytest-benchmark JSON into docs/benchmarks.md and docs/bench/ratios.png.

Usage:
  python benchmarks/report.py [--json docs/bench/results.json] [--junit docs/bench/junit.xml]
                              [--memory docs/bench/memory.json] [--md docs/benchmarks.md]
                              [--png docs/bench/ratios.png]

Times are medians of one run (per gradient: the C-loop contender's time is
divided by the number of gradients computed per call).  A ratio is
``contender median / fastad replay median``: above 1 fastad is faster.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

REF = "fastad"

CONTENDERS = [
    ("fastad", "fastad `value_and_grad`, replayed (after one warm-up call)"),
    ("fastad-noopt", "fastad `value_and_grad(optimize=False)`, replayed: the tape as recorded"),
    ("fastad-first", "fastad first call: new wrapper, trace + first sweep"),
    ("fastad-native", "fastad `value_and_grad(native=\"always\")`: the tape as machine code"),
    ("plain", "the plain numpy function evaluated once (no gradient)"),
    ("numpy-hand", "hand-written numpy (or plain Python) value and gradient"),
    ("c", "hand-written C, `cc -O2`, one ctypes call per gradient"),
    ("c-loop", "hand-written C, repeat loop inside C (per gradient)"),
    ("casadi", "CasADi SX `Function`, low-overhead buffer API"),
    ("casadi-dm", "CasADi SX `Function`, ordinary `F(x)` call returning DM"),
    ("casadi-first", "CasADi SX graph build + gradient + `Function` + first call"),
    ("casadi-ifelse", "CasADi, branchy rewritten with `if_else`, buffer API"),
    ("casadi-dm-ifelse", "CasADi, branchy rewritten with `if_else`, `F(x)` call"),
    ("casadi-first-ifelse", "CasADi, branchy rewritten with `if_else`, build + first call"),
    ("torch", "PyTorch eager, `torch.autograd.grad`"),
    ("jax-grad", "JAX eager `value_and_grad`"),
    ("jax-jit", "JAX `jit(value_and_grad)`, compiled beforehand"),
    ("jax-jit-first", "JAX `jit(value_and_grad)` first call: trace + compile + run"),
    ("autograd", "HIPS autograd `value_and_grad`"),
]
ORDER = {c: i for i, (c, _) in enumerate(CONTENDERS)}
TEST_TO_CONTENDER = {
    "test_fastad_replay": "fastad", "test_fastad_noopt_replay": "fastad-noopt",
    "test_fastad_first": "fastad-first", "test_plain": "plain",
    "test_fastad_native": "fastad-native",
    "test_numpy_hand": "numpy-hand", "test_c_hand": "c", "test_c_loop": "c-loop",
    "test_casadi": "casadi", "test_casadi_dm": "casadi-dm", "test_casadi_first": "casadi-first",
    "test_torch": "torch", "test_jax_grad": "jax-grad", "test_jax_jit": "jax-jit",
    "test_jax_jit_first": "jax-jit-first", "test_autograd": "autograd",
}


MODULE_CONTENDERS = {
    "test_bench_fastad": ["fastad", "fastad-noopt", "fastad-first"], "test_bench_torch": ["torch"],
    "test_bench_native": ["fastad-native"],
    "test_bench_jax": ["jax-grad", "jax-jit", "jax-jit-first"], "test_bench_autograd": ["autograd"],
    "test_bench_casadi": ["casadi", "casadi-dm", "casadi-first"],
}


def fmt_t(s):
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "—"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= f:
            v = s / f
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_r(r):
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def load(json_path):
    with open(json_path) as fh:
        data = json.load(fh)
    rows = []
    for b in data.get("benchmarks", []):
        ei = b.get("extra_info", {})
        if "contender" not in ei:
            continue
        rep = ei.get("inner_repeat", 1) or 1
        st = b["stats"]
        rows.append({
            "problem_id": ei["problem_id"], "problem": ei["problem"], "size": ei["size"],
            "title": ei.get("title", b.get("group")), "contender": ei["contender"],
            "median": st["median"] / rep, "min": st["min"] / rep, "iqr": st["iqr"] / rep,
            "rounds": st["rounds"], "iterations": st.get("iterations", 1), "extra": ei,
        })
    return data, rows


def load_skips(junit_path):
    """{(problem_id, contender): reason} from a pytest junit XML."""
    skips = {}
    if not junit_path or not os.path.exists(junit_path):
        return skips
    for tc in ET.parse(junit_path).getroot().iter("testcase"):
        sk = tc.find("skipped")
        if sk is None:
            continue
        name = tc.get("name", "")
        reason = sk.get("message", "") or ""
        if reason in ("", "collection skipped") and sk.text:
            reason = sk.text
        m = re.search(r"Skipped: (.*?)['\"]\)\s*$", reason.strip(), re.S)
        if m:
            reason = m.group(1)
        reason = reason.replace("\n", " ").strip()
        if reason.startswith("Skipped: "):
            reason = reason[len("Skipped: "):]
        if "[" not in name:  # a whole module skipped (peer not importable)
            for c in MODULE_CONTENDERS.get(name.rsplit(".", 1)[-1], [name]):
                skips[("*", c)] = reason
            continue
        func, _, param = name.partition("[")
        skips[(param.rstrip("]"), TEST_TO_CONTENDER.get(func, func))] = reason
    return skips


def is_skipped(skips, pid, c):
    return any(k in skips for k in ((pid, c), (pid, c + "-ifelse"), ("*", c)))


def problem_order():
    try:
        from problems import PROBLEMS

        return [p.id for p in PROBLEMS], {p.id: p.title for p in PROBLEMS}
    except Exception:
        return [], {}


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def by_problem(rows, merge_ifelse=False):
    """{problem_id: {contender: row}}; merge_ifelse folds `casadi*-ifelse` into `casadi*`."""
    out = defaultdict(dict)
    for r in rows:
        c = r["contender"]
        if merge_ifelse and c.endswith("-ifelse"):
            c = c[: -len("-ifelse")]
        out[r["problem_id"]][c] = r
    return out


def ratio(table, pid, contender, ref=REF):
    t = table.get(pid, {})
    if contender in t and ref in t and t[ref]["median"] > 0:
        return t[contender]["median"] / t[ref]["median"]
    return None


def med(table, pid, contender):
    r = table.get(pid, {}).get(contender)
    return r["median"] if r else None


def targets(table, memory, skips=None):
    """{section: [(target, measured, status)]}: the speed targets, measured in this run.

    Each target is one comparison of two medians of this run (a ratio, never an absolute
    time from another run), or a tape size from memory.json."""
    skips = skips or {}
    out = defaultdict(list)

    def why(pid, c):
        for k in ((pid, c), ("*", c)):
            if k in skips:
                return f"{c} skipped: {skips[k]}"
        return ""

    def versus(section, pid, mine, other, label, at_most=None):
        """mine faster than other (at_most=None), or mine <= at_most × other."""
        a, b = med(table, pid, mine), med(table, pid, other)
        if a is None or b is None:
            reason = why(pid, mine) if a is None else why(pid, other)
            out[section].append((label, f"{mine} {fmt_t(a)}, {other} {fmt_t(b)}"
                                 + (f" ({reason})" if reason else ""), "not measured"))
        elif at_most is None:
            out[section].append((label, f"{mine} {fmt_t(a)} vs {other} {fmt_t(b)} "
                                        f"({other}/{mine} = {fmt_r(b / a)})",
                                 "met" if a < b else "NOT met"))
        else:
            r = a / b
            out[section].append((label, f"{mine} {fmt_t(a)} = {r:.{2 if r >= 0.1 else 3}f}× "
                                        f"{other} ({fmt_t(b)})",
                                 "met" if a <= at_most * b else "NOT met"))

    def absolute(section, pid, mine, limit, label):
        a = med(table, pid, mine)
        out[section].append((label, f"{mine} {fmt_t(a)}" if a is not None else why(pid, mine)
                             or "—", "not measured" if a is None else
                             ("met" if a <= limit else "NOT met")))

    S = "Interpreter on transformed tapes (rolled loops, reductions, BLAS)"
    versus(S, "rosen_loop-n10000", REF, "casadi", "Rosenbrock loop n=10^4: ≥ 5× faster than "
           "CasADi SX", at_most=0.2)
    versus(S, "rosen_loop-n10000", REF, "c-loop", "Rosenbrock loop n=10^4: ≤ 4× hand C", 4)
    versus(S, "rosen_vec-n10000", REF, "numpy-hand", "Rosenbrock vectorized n=10^4: faster than "
           "hand numpy")
    versus(S, "rosen_vec-n10000", REF, "c-loop", "Rosenbrock vectorized n=10^4: ≤ 2× hand C", 2)
    versus(S, "rosen_vec-n1000000", REF, "jax-jit", "Rosenbrock vectorized n=10^6: faster than "
           "jax.jit(value_and_grad)")
    versus(S, "rosen_vec-n1000000", REF, "c-loop", "Rosenbrock vectorized n=10^6: ≤ 2× hand C", 2)
    versus(S, "mlp-n256", REF, "numpy-hand", "MLP loss: faster than the hand numpy backprop")
    tape = (memory or {}).get("tape", {}).get("rosen_loop-n10000", {})
    label = "bytes per scalar op of the replayed tape, rolled Rosenbrock loop: ≤ 20"
    if "replayed_bytes_per_scalar_op" in tape:
        b = tape["replayed_bytes_per_scalar_op"]
        out[S].append((label, f"{b:.1f} B/op ({tape['replayed_records']} records, "
                              f"{tape['replayed_nbytes']} B; as recorded "
                              f"{tape['bytes_per_scalar_op']:.1f} B/op)",
                       "met" if b <= 20 else "NOT met"))
    else:
        out[S].append((label, tape.get("replayed_error", "—"), "not measured"))

    N = "Native code (tapes compiled to machine code)"
    nat = "fastad-native"
    versus(N, "rosen_loop-n10000", nat, "c-loop", "Rosenbrock loop n=10^4: ≤ 3× hand C", 3)
    versus(N, "spring-n1000", nat, "c-loop", "spring simulation: ≤ 2× hand C", 2)
    versus(N, "branchy-n1000", nat, "c-loop", "branchy: ≤ 2× hand C", 2)
    versus(N, "rosen_vec-n1000000", nat, "c-loop", "Rosenbrock vectorized n=10^6: ≤ 1.5× hand C",
           1.5)
    versus(N, "rosen_vec-n1000000", nat, "jax-jit", "Rosenbrock vectorized n=10^6: faster than "
           "jax.jit")
    # the interpreter's vectorized targets above, out of its reach, carried by native code
    # (docs/design.md, "Where the vectorized Rosenbrock stands")
    versus(N, "rosen_vec-n10000", nat, "numpy-hand", "Rosenbrock vectorized n=10^4 (the "
           "interpreter's target above): faster than hand numpy")
    versus(N, "rosen_vec-n10000", nat, "c-loop", "Rosenbrock vectorized n=10^4 (the "
           "interpreter's target above): ≤ 2× hand C", 2)
    # the call path is the same in both tiers; "auto" (the default, REF) is what users get
    absolute(N, "notes_f", REF, 300e-9, "notes' f(x1,x2), value_and_grad from Python: ≤ 300 ns")
    versus(N, "notes_f", REF, "casadi", "notes' f(x1,x2): faster than a CasADi `Function`")
    for pid, limit in (("rosen_loop-n10000", 1.0), ("spring-n1000", 1.0)):
        r = table.get(pid, {}).get(nat)
        comp = (r or {}).get("extra", {}).get("compile_s") or []
        label = f"compile time, {pid}: ≤ {limit:g} s"
        if not comp:
            out[N].append((label, "—", "not measured"))
        elif sum(comp) == 0:        # the auto tier compiled it earlier in the run
            out[N].append((label, "loaded from the disk cache (compiled earlier in this run "
                                  "by the `fastad` column's auto tier)", "not measured"))
        else:
            c = sum(comp)
            out[N].append((label, f"{c:.2f} s ({len(comp)} tape(s), from an empty cache)",
                           "met" if c <= limit else "NOT met"))

    F = "Earlier targets, kept"
    versus(F, "notes_f", REF, "casadi", "notes' f(x1,x2) replayed: faster than CasADi `Function`")
    versus(F, "spring-n1000", REF, "casadi", "spring simulation replayed: faster than CasADi SX")
    versus(F, "rosen_loop-n10000", "fastad-first", "casadi-first", "first call of Rosenbrock "
           "loop n=10^4: at most 1/10 of CasADi build + first call", at_most=0.1)
    for pid in ("rosen_loop-n10000", "spring-n1000", "branchy-n1000", "rosen_vec-n1000000"):
        tape = (memory or {}).get("tape", {}).get(pid)
        label = f"memory: at most 32 bytes per scalar op incl. value and adjoint ({pid})"
        if not tape or "bytes_per_scalar_op" not in tape:
            out[F].append((label, (tape or {}).get("error", "—"), "not measured"))
        else:
            b = tape.get("replayed_bytes_per_scalar_op", tape["bytes_per_scalar_op"])
            out[F].append((label, f"{b:.1f} B/op as replayed ({tape['bytes_per_scalar_op']:.1f} "
                                  "as recorded)", "met" if b <= 32 else "NOT met"))
    return out


def peer_reference_checks(table):
    """The issue's statements about the peers, as measured here."""
    lines = []

    def r(pid, a, b):
        x, y = med(table, pid, a), med(table, pid, b)
        return None if x is None or y is None else x / y

    v = med(table, "notes_f", "casadi")
    if v is not None:
        lines.append(f"CasADi `Function` call on the notes' f: {fmt_t(v)} (issue: about 0.5 µs)")
    def vs_c(pid, c):
        a, b = r(pid, c, "c"), r(pid, c, "c-loop")
        if a is None or b is None:
            return None
        return f"{a:.3g}× C via ctypes, {b:.3g}× C loop"

    for pid in ("rosen_loop-n10", "rosen_loop-n100", "rosen_loop-n1000", "rosen_loop-n10000",
                "spring-n1000"):
        x = vs_c(pid, "casadi")
        if x is not None:
            lines.append(f"CasADi on {pid}: {x} (issue: 3 to 17× C)")
    x = vs_c("rosen_vec-n1000000", "jax-jit")
    if x is not None:
        lines.append(f"jax.jit on Rosenbrock vectorized n=10^6: {x} (issue: about 3.6× C)")
    x = r("rosen_vec-n1000000", "numpy-hand", "jax-jit")
    if x is not None:
        lines.append(f"hand numpy / jax.jit on Rosenbrock vectorized n=10^6: {x:.1f}× "
                     "(issue: about 2×)")
    x = vs_c("branchy-n1000", "torch")
    if x is not None:
        lines.append(f"PyTorch on branchy: {x} (issue: about 370× C)")
    x = med(table, "rosen_loop-n10000", "casadi-first")
    if x is not None:
        lines.append(f"CasADi build + first call, Rosenbrock loop n=10^4: {fmt_t(x)} "
                     "(issue: about 1.2 s)")
    return lines


def machine_section(data, mem):
    mi = data.get("machine_info", {})
    v = mi.get("versions", {})
    lines = [
        f"- CPU: {mi.get('cpu_model') or mi.get('cpu', {}).get('brand_raw', '?')}, "
        f"{mi.get('cores', '?')} cores; one thread per contender "
        f"(OMP/OPENBLAS/MKL_NUM_THREADS=1, XLA single-threaded, `torch.set_num_threads(1)`)",
        f"- OS: {mi.get('system', '?')} {mi.get('release', '')}; {v.get('cc', '')}",
        f"- Python {v.get('python', mi.get('python_version', '?'))} "
        f"({mi.get('python_implementation', '')})",
        f"- numpy {v.get('numpy')} (BLAS: {mi.get('numpy_blas', '?')}), scipy {v.get('scipy')}",
        "- peers: " + ", ".join(f"{k} {v.get(k)}"
                                for k in ("torch", "jax", "jaxlib", "autograd", "casadi")
                                if v.get(k)),
        f"- fastad {v.get('fastad') or 'not importable'}; "
        f"pytest-benchmark {v.get('pytest_benchmark')}",
        f"- run: {data.get('datetime', '?')}"
        + (f", commit {data['commit_info'].get('id', '')[:10]}"
           + (" (dirty)" if data['commit_info'].get('dirty') else "")
           if data.get("commit_info", {}).get("id") else ""),
    ]
    return lines


def write_md(path, data, rows, skips, memory, png_rel, note=""):
    table = by_problem(rows)
    mtable = by_problem(rows, merge_ifelse=True)
    order, titles = problem_order()
    pids = [p for p in order if p in table] + sorted(p for p in table if p not in order)
    for (pid, _c) in skips:
        if pid not in pids and pid in order:
            pids.append(pid)
    pids = [p for p in order if p in pids] + [p for p in pids if p not in order]
    L = ["# fastad benchmarks", ""]
    L += ["Generated by `benchmarks/report.py` from `docs/bench/results.json` "
          "(pytest-benchmark). Run the suite with `python benchmarks/run.py` "
          "(see `benchmarks/README.md`).", ""]
    L += ["Times are medians of one run, per value-and-gradient, one thread each. "
          "**Ratio = contender median / fastad replay median**: above 1× fastad is faster. "
          "Every contender's gradient was checked against the hand-written numpy gradient "
          "(`numpy.testing.assert_allclose`, rtol 1e-8) before it was timed. "
          "The machine has 2 cores and is shared: "
          "compare the `min` column when a median looks out of line.", ""]
    L += (["## Machine", ""] + machine_section(data, memory)
          + ([f"- conditions: {note}"] if note else []) + [""])

    # targets
    L += ["## Targets", "", "Each target compares two medians of this run (or a tape size).", ""]
    for section, items in targets(table, memory, skips).items():
        L += [f"### {section}", "", "| target | measured | status |", "|---|---|---|"]
        for t, m, s in items:
            L.append(f"| {t} | {m} | **{s}** |" if s != "met" else f"| {t} | {m} | {s} |")
        L.append("")

    # matrix
    L += ["## Ratio table (contender / fastad replay)", ""]
    L += ["The `fastad` column is fastad's replayed median time; every other cell is that "
          "contender's median divided by it (above 1×: fastad is faster). Where fastad was "
          "skipped, the row shows median times instead. `skip`: skipped (reasons under "
          "*Per problem*). †: CasADi runs the `if_else` rewrite of the branchy program.", ""]
    cols = [c for c in sorted({c for t in mtable.values() for c in t}
                              | {c for p, c in skips if p == "*"},
                              key=lambda c: (ORDER.get(c, 99), c)) if c != REF]
    L.append("| problem | fastad | " + " | ".join(cols) + " |")
    L.append("|---|---|" + "---|" * len(cols))
    for pid in pids:
        t = mtable.get(pid, {})
        cells = [fmt_t(med(mtable, pid, REF)) if REF in t else
                 ("skip" if is_skipped(skips, pid, REF) else "—")]
        for c in cols:
            mark = "†" if c in t and t[c]["contender"].endswith("-ifelse") else ""
            if c not in t:
                cells.append("skip" if is_skipped(skips, pid, c) else "—")
            elif REF in t:
                cells.append(fmt_r(ratio(mtable, pid, c)) + mark)
            else:
                cells.append(fmt_t(t[c]["median"]) + mark)
        L.append(f"| {titles.get(pid, pid)} | " + " | ".join(cells) + " |")
    L += ["", f"![ratios]({png_rel})" if png_rel else "(no plot: matplotlib missing)", ""]
    whole = sorted({(c, why) for (p, c), why in skips.items() if p == "*"},
                   key=lambda x: ORDER.get(x[0], 99))
    if whole:
        L += ["Skipped entirely in this run:", ""] + [f"- `{c}`: {why}" for c, why in whole] + [""]

    # per problem
    L += ["## Per problem", ""]
    for pid in pids:
        t = table.get(pid, {})
        L += [f"### {titles.get(pid, pid)}", "",
              "| contender | median | min | IQR | rounds | vs fastad | note |",
              "|---|---|---|---|---|---|---|"]
        for c in sorted(t, key=lambda c: (ORDER.get(c, 99), c)):
            r = t[c]
            ei = r["extra"]
            note = ei.get("note", "")
            if "compile_s" in ei:       # a list for contenders that compile one tape each
                comp = ei["compile_s"]
                comp = sum(comp) if isinstance(comp, (list, tuple)) else comp
                note = ((note + "; " if note else "")
                        + f"compile + first call {fmt_t(comp)}")
            if ei.get("inner_repeat", 1) > 1:
                note = f"{ei['inner_repeat']} gradients per call, time per gradient"
            if "cache_info" in ei:
                note = (note + "; " if note else "") + f"cache_info {ei['cache_info']}"
            if "tape_len" in ei:
                note += f"; tape {ei['tape_len']} records, {ei['tape_nbytes']} B"
            if ei.get("optimizer"):
                note += f"; optimizer: {ei['optimizer']}"
            note = note.lstrip("; ")
            L.append(f"| {c} | {fmt_t(r['median'])} | {fmt_t(r['min'])} | {fmt_t(r['iqr'])} | "
                     f"{r['rounds']}×{r['iterations']} | "
                     f"{fmt_r(ratio(table, pid, c)) if c != REF else '1'} | {note} |")
        sk = [(c, why) for (p, c), why in skips.items() if p == pid]
        for c, why in sorted(sk, key=lambda x: (ORDER.get(x[0], 99), x[0])):
            L.append(f"| {c} | skipped | | | | | {why} |")
        L.append("")

    # peers vs the issue
    ref_lines = peer_reference_checks(table)
    if ref_lines:
        L += (["## The peers, against the issue's statements", ""]
              + [f"- {x}" for x in ref_lines] + [""])

    # jax compile times
    comp = [(pid, r["extra"]["compile_s"]) for pid in pids
            for c, r in table.get(pid, {}).items() if c == "jax-jit" and "compile_s" in r["extra"]]
    if comp:
        L += ["## JAX compile times (trace + XLA compile + first run, excluded from `jax-jit`)", "",
              "| problem | compile |", "|---|---|"]
        L += [f"| {titles.get(p, p)} | {fmt_t(s)} |" for p, s in comp] + [""]

    # memory
    if memory:
        L += ["## Memory", "", "### fastad tape size (`fd.record`)", ""]
        tape = memory.get("tape", {})
        if "error" in tape:
            L += [f"Not measured: {tape['error']}", ""]
        else:
            L += ["| problem | `len(tape)` | `tape.nbytes` | inputs | scalar ops | "
                  "bytes per scalar op | bytes per record | bytes per input element |",
                  "|---|---|---|---|---|---|---|---|"]

            def f1(x):
                return "" if x is None else f"{x:.1f}"

            for pid, e in tape.items():
                if "error" in e:
                    L.append(f"| {titles.get(pid, pid)} | {e['error']} | | | | | | |")
                    continue
                L.append(f"| {titles.get(pid, pid)} | {e['records']} | {e['nbytes']} | "
                         f"{e['n_inputs']} | "
                         f"{e.get('scalar_ops', '')} | {f1(e.get('bytes_per_scalar_op'))} | "
                         f"{f1(e['bytes_per_record'])} | {f1(e.get('bytes_per_input_element'))} |")
            L += ["", "`tape.nbytes` counts records, values, adjoints and constants. "
                  "Scalar ops are counted from `tape.records()`: one per scalar record, "
                  "the width of the widest slot range for a ranged record "
                  "(a guard, i.e. a recorded comparison, counts as one op; a matmul counts "
                  "the width of its widest operand, not its multiply-adds).", ""]
        peak = memory.get("peak", {})
        if peak:
            pp = memory.get('peak_problem')
            L += [f"### Peak memory of one value-and-gradient, {titles.get(pp, pp)}", "",
                  "Each contender in its own process. "
                  "Peak resident set above the resident set just before "
                  "the call (VmHWM reset through /proc/self/clear_refs); "
                  "tracemalloc counts Python objects "
                  "and numpy buffers only. "
                  "Freed heap memory is given back (`malloc_trim`) before each "
                  "measurement. The input is 7.6 MiB, the gradient another 7.6 MiB.", "",
                  "| contender | first call: peak above baseline | "
                  "later call: peak above baseline | tracemalloc peak (later call) |",
                  "|---|---|---|---|"]
            for c, e in peak.items():
                if "error" in e:
                    L.append(f"| {c} | {e['error']} | | |")
                    continue
                fn = e["first"].get("note", "")
                fn = f" ({fn})" if fn else ""
                L.append(f"| {c} | {e['first']['delta_mb']:.1f} MiB{fn} | "
                         f"{e['later']['delta_mb']:.1f} MiB | {e['tracemalloc_peak_mb']:.1f} MiB |")
            L.append("")

    L += ["## Contenders", ""] + [f"- `{c}`: {d}" for c, d in CONTENDERS] + [""]
    L += ["Notes: JAX inputs are device arrays made once outside the timed call, "
          "and each call blocks until ready. "
          "PyTorch wraps the numpy inputs with `torch.from_numpy` (no copy) each call. "
          "CasADi copies inputs into its buffers and returns a fresh gradient array. "
          "The C contender writes into a preallocated array (the floor).", ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(L))


def write_png(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = by_problem(rows, merge_ifelse=True)
    order, titles = problem_order()
    pids = [p for p in order if p in table] + sorted(p for p in table if p not in order)
    has_ref = any(REF in t for t in table.values())
    present = sorted({c for t in table.values() for c in t}, key=lambda c: (ORDER.get(c, 99), c))
    cols = [c for c in present if c != REF] if has_ref else present
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(pids) + 2.2))
    cmap = plt.get_cmap("tab20")
    markers = "oDs^v<>pPXh*d8H"
    for k, c in enumerate(cols):
        xs, ys = [], []
        for i, pid in enumerate(pids):
            t = table[pid]
            if c not in t:
                continue
            if has_ref:
                r = ratio(table, pid, c)
                if r is None:
                    continue
                xs.append(r)
            else:
                xs.append(t[c]["median"])
            ys.append(i)
        ax.scatter(xs, ys, label=c, color=cmap(k % 20), marker=markers[k % len(markers)], s=42,
                   zorder=3, edgecolors="black", linewidths=0.3)
    ax.set_xscale("log")
    ax.set_yticks(range(len(pids)))
    ax.set_yticklabels([titles.get(p, p)
                        + ("" if not has_ref or REF in table[p] else "\n(fastad skipped)")
                        for p in pids])
    ax.invert_yaxis()
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.grid(True, axis="y", alpha=0.15)
    if has_ref:
        ax.axvline(1.0, color="black", lw=1.2)
        ax.set_xlabel("contender median / fastad replay median  "
                      "(right of the line: fastad is faster)")
        ax.set_title("fastad replayed value_and_grad vs each contender (one thread, medians)")
    else:
        ax.set_xlabel("median time per value and gradient [s]")
        ax.set_title("median time per value and gradient (fastad not measured in this run)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description="benchmark JSON -> markdown report + plot")
    ap.add_argument("--json", default=os.path.join(ROOT, "docs", "bench", "results.json"))
    ap.add_argument("--junit", default=os.path.join(ROOT, "docs", "bench", "junit.xml"))
    ap.add_argument("--memory", default=os.path.join(ROOT, "docs", "bench", "memory.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "bench", "ratios.png"))
    ap.add_argument("--note", default="",
                    help="a line about the run's conditions, shown under Machine")
    a = ap.parse_args(argv)
    data, rows = load(a.json)
    skips = load_skips(a.junit)
    memory = None
    if a.memory and os.path.exists(a.memory):
        with open(a.memory) as fh:
            memory = json.load(fh)
    png_rel = os.path.relpath(os.path.abspath(a.png), os.path.dirname(os.path.abspath(a.md)))
    try:
        write_png(a.png, rows)
        wrote = [a.md, a.png]
    except ImportError as exc:  # matplotlib is part of the bench extra
        print(f"no plot: {exc} (pip install matplotlib)", file=sys.stderr)
        png_rel, wrote = None, [a.md]
    write_md(a.md, data, rows, skips, memory, png_rel, note=a.note)
    print(f"wrote {' and '.join(wrote)} ({len(rows)} benchmarks, {len(skips)} skipped)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
