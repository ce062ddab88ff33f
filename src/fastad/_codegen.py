"""C source for a recorded tape: its forward, tangent and reverse sweeps as straight-line
code and loops (docs/native.md).

Every op's C comes from the op table (csrc/ops.h) through csrc/native_kernels.h, which
turns each row into inline functions (value rule, partials); both headers are embedded
as text in the generated file, so the file is self-contained.  This module decides
only the *shape* of the code: one statement per scalar record, one loop per ranged
record, the same operation order as the interpreter's kernels (csrc/sweeps.h), so the
results are the interpreter's bit for bit.

A record the generator does not know -- an op outside the table's unary, binary and guard
lists and its GATHER/SUM/CUMSUM structural ops, or a flag bit it has not been taught --
makes `generate` raise `Unsupported`, and the tape stays interpreted: new record kinds
(a tape optimizer's, say) never run as wrong code.
"""
import hashlib
import os
import re

import numpy as np

from fastad._tape import op_table
from fastad import _codegen_table

# bumped whenever the generated code changes for the same tape (part of the cache key)
GENERATOR_VERSION = 14

# straight-line statements per C function, each function kept out of line (FA_NOINLINE):
# keeps the compiler's time linear in the tape
CHUNK = 50

# record flags (csrc/tape.h)
RANGED, TRUE, A_PASSIVE, B_PASSIVE = 0x01, 0x02, 0x04, 0x08
KNOWN_FLAGS = RANGED | TRUE | A_PASSIVE | B_PASSIVE


class Unsupported(Exception):
    """The tape holds a record the generator cannot compile (it stays interpreted)."""


def _csrc():
    """The csrc/ directory: next to the package in a source tree, or installed with it."""
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.join(here, "_csrc"), os.path.join(here, "..", "..", "csrc")):
        if os.path.exists(os.path.join(d, "ops.h")):
            return os.path.normpath(d)
    raise Unsupported("the C headers (csrc/ops.h) are not installed with fastad")


_HEADERS = None


def _inline(d, name, seen):
    """`name` with its local #includes replaced by their text, each header once."""
    if name in seen:
        return f"/* {name}: above */"
    seen.add(name)
    with open(os.path.join(d, name)) as f:
        text = f.read()
    return re.sub(r'#include "([^"]+)"', lambda m: _inline(d, m.group(1), seen), text)


def headers():
    """native_kernels.h (with ops.h and what it includes) as one text, local #includes
    resolved, so the generated file stands alone."""
    global _HEADERS          # read once per process: the files do not change under us
    if _HEADERS is None:
        _HEADERS = _inline(_csrc(), "native_kernels.h", set())
    return _HEADERS


_NAMES = None


def c_names():
    """The C enum name (EXP, SELECT, ...) of each op code, read from the op table's X-macro
    lists in ops.h and checked against the compiled library's own table."""
    global _NAMES
    if _NAMES is None:
        text = headers()
        found = []
        for lst in ("FA_UNARY_OPS", "FA_BINARY_OPS", "FA_GUARD_OPS", "FA_STRUCT_OPS"):
            m = re.search(r"#define %s\(X\)(.*?)(?:\n\s*\n|\n#|\ntypedef)" % lst, text, re.S)
            if not m:
                raise Unsupported(f"cannot read {lst} from ops.h")
            found += re.findall(r'X\(\s*(\w+)\s*,\s*"(\w+)"', m.group(1))
        table = op_table()
        if [s for _, s in found] != [name for name, _ in table]:
            raise Unsupported("ops.h and the compiled library disagree (rebuild fastad)")
        _NAMES = [(c, kind) for (c, _), (_, kind) in zip(found, table)]
    return _NAMES


def source_hash():
    """Hash of everything the generated code depends on besides the tape."""
    h = hashlib.blake2b(digest_size=16)
    h.update(headers().encode())
    h.update(str(GENERATOR_VERSION).encode())
    return h.hexdigest()


def variant():
    """The generator's environment switches (part of the cache key, read at each compile:
    fastad.native.key_of)."""
    return _codegen_table.variant() + f",assign={assigning()}"


def assigning():
    """FASTAD_NATIVE_ASSIGN=0: every reverse loop adds to zeroed adjoints (assigned_loops
    off; for comparisons, docs/native.md)."""
    return os.environ.get("FASTAD_NATIVE_ASSIGN", "1").strip() != "0"


# ------------------------------------------------------------------------ records

class Rec:
    """One record (header and EXT word read together)."""
    __slots__ = ("i", "op", "name", "kind", "flags", "r", "a", "b", "n", "sa", "sb", "body")


# ------------------------------------------------------------------------ structural records
# Which structural records the generator compiles, and how.  The reductions are written
# out (their kernels, csrc/reduce.h, are embedded in the generated file like the op
# table); MATMUL and the linear-algebra records call back into the library's own kernels
# through the table fa_native_rt (csrc/native_kernels.h), set once when the shared object
# is loaded: BLAS and LAPACK stay the library's (scipy's), the shared object links neither,
# and the results are the interpreter's bit for bit.  A standalone export (to_c) cannot
# call back, so it refuses these records.  CALLBACK (custom_vjp: Python code) stays
# interpreted.

REDUCE_OPS = ("SUM", "PROD", "MAX", "MIN")
RUNTIME_OPS = ("MATMUL", "SOLVE", "SLOGDET", "CHOLESKY", "TRSOLVE", "EIGH")
EXTRA_STRUCT = ("PROD", "MAX", "MIN") + RUNTIME_OPS
STRUCT_OPS = ("GATHER", "SUM", "CUMSUM", "LOOP") + EXTRA_STRUCT


def _refusal(c, op):
    if c == "CALLBACK":
        return ("the tape calls a custom_vjp function (Python code), which native code "
                "does not run")
    return (f"the tape has a {op_table()[op][0]} record, which the code generator does "
            "not compile")


# generated code's reference to the runtime table, set by fastad._native.install before
# any sweep can run (a process-wide constant: relaxed atomics keep the repeated stores of
# the same pointer, one per tape sharing this object, free of data races)
RUNTIME_TABLE = """
static const fa_native_rt *fa_rt;
void fastad_set_rt(const fa_native_rt *rt) { __atomic_store_n(&fa_rt, rt, __ATOMIC_RELAXED); }
#define FA_RT (__atomic_load_n(&fa_rt, __ATOMIC_RELAXED))
"""


def _words(p):
    return (f"static const int32_t w_[8] = {{{p.op}, {p.flags}, {p.r}, {p.a}, {p.b}, "
            f"{p.n}, {p.sa}, {p.sb}}};")


def extra_fwd(p):
    if p.name in RUNTIME_OPS:
        return f"{{ {_words(p)} if (FA_RT->fwd(w_, v, ix)) return {p.i}; }}"
    return f"fa_reduce_fwd(FA_{p.name}, v + {p.a}, v + {p.r}, {p.n}, {p.sa});"


def extra_tan(p):
    if p.name in RUNTIME_OPS:
        return f"{{ {_words(p)} FA_RT->tan(w_, v, t, ix); }}"
    return (f"fa_reduce_tan(FA_{p.name}, v + {p.a}, v + {p.r}, t + {p.a}, t + {p.r}, "
            f"{p.n}, {p.sa});")


def extra_rev(p, passive):
    if p.name in RUNTIME_OPS:       # the kernel reads the passive flags itself
        return f"{{ {_words(p)} FA_RT->rev(w_, v, g, ix); }}"
    if passive and p.flags & A_PASSIVE:
        return None
    return (f"fa_reduce_rev(FA_{p.name}, v + {p.a}, v + {p.r}, g + {p.a}, g + {p.r}, "
            f"{p.n}, {p.sa});")


def refuse_runtime(recs):
    """Standalone C cannot call back into fastad: refuse records that would."""
    for p in recs:
        if p.name in RUNTIME_OPS:
            raise Unsupported(
                f"record {p.i} is a {op_table()[p.op][0]} record, which native code runs "
                "through fastad's BLAS/LAPACK kernels; standalone C cannot include them "
                "(export a function without matrix products and linear algebra, or call "
                "it from Python)")


def parse(rows):
    """Records from raw rows (op, flags, r, a, b); raises Unsupported for anything unknown."""
    names = c_names()
    ext = next(i for i, (c, _) in enumerate(names) if c == "EXT")
    out, i, nrec = [], 0, len(rows)
    while i < nrec:
        op, flags, r, a, b = (int(x) for x in rows[i])
        if op >= len(names):
            raise Unsupported(f"record {i} has op code {op}, unknown to the code generator")
        if flags & ~KNOWN_FLAGS:
            raise Unsupported(f"record {i} has flags {flags:#x} unknown to the code generator")
        c, kind = names[op]
        if op == ext:       # a lone EXT word: a no-op
            i += 1
            continue
        p = Rec()
        p.i, p.op, p.name, p.kind, p.flags, p.r, p.a, p.b = i, op, c, kind, flags, r, a, b
        p.n = p.sa = p.sb = 0
        p.body = None
        if c == "LOOP":
            i = _parse_loop(p, rows, i, names)
            out.append(p)
            continue
        if flags & RANGED:
            if i + 1 >= nrec or int(rows[i + 1][0]) != ext:
                raise Unsupported(f"ranged record {i} lacks its EXT word")
            p.n, p.sa, p.sb = (int(x) for x in rows[i + 1][2:5])
            i += 2
        else:
            i += 1
        if kind == "struct" and (c not in STRUCT_OPS or not flags & RANGED):
            raise Unsupported(_refusal(c, op))
        if kind == "guard" and flags & RANGED:
            raise Unsupported(f"record {p.i} is a ranged guard")
        if kind in ("unary", "binary") and flags & RANGED and (
                p.sa not in (0, 1) or (kind == "binary" and p.sb not in (0, 1))):
            raise Unsupported(f"record {p.i} has operand strides {p.sa}, {p.sb}")
        out.append(p)
    return out


def _parse_loop(p, rows, i, names):
    """A LOOP record (csrc/loop.h): its trip count in p.n and its body in p.body, scalar
    records whose slots are C expressions in the iteration counter j.  Returns the index
    of the record after it."""
    nrec = len(rows)
    if not p.flags & RANGED or i + 1 >= nrec or names[int(rows[i + 1][0])][0] != "EXT":
        raise Unsupported(f"loop record {i} lacks its EXT word")
    p.n, P, p.sb = int(rows[i + 1][2]), int(rows[i + 1][3]), int(rows[i + 1][4])
    if P < 1 or i + 2 + 2 * P > nrec:
        raise Unsupported(f"loop record {i} has a body of {P} records")
    p.body = []
    for q in range(P):
        _, flags, r, a, b = (int(x) for x in rows[i + 2 + q])
        _, op, dr, da, db = (int(x) for x in rows[i + 2 + P + q])
        if op >= len(names) or names[op][1] not in ("unary", "binary", "guard") \
                or flags & ~KNOWN_FLAGS or flags & RANGED:
            raise Unsupported(f"loop record {i} has a body record it cannot compile")
        s = Rec()
        s.i, s.op, (s.name, s.kind), s.flags = i, op, names[op], flags
        s.r, s.a, s.b = (f"{x} + j * {d}" if d else str(x) for x, d in ((r, dr), (a, da), (b, db)))
        s.n = s.sa = s.sb = 0
        s.body = ((r, dr), (a, da), (b, db))       # raw slots and strides (_loop_rev)
        p.body.append(s)
    return i + 2 + 2 * P


def _loop_stmt(p, stmts, backwards=False):
    """A LOOP record's sweep: the body's statements inside a C loop over the iterations."""
    body = " ".join(x for x in stmts if x is not None)
    if not body:
        return None
    if backwards:
        return f"for (int64_t j = {p.n} - 1; j >= 0; j--) {{ {body} }}"
    return f"for (int64_t j = 0; j < {p.n}; j++) {{ {body} }}"


def _loop_operands(p):
    """How each body operand of a LOOP record reads, for _loop_rev: ("int", q) a result of
    the same iteration, ("carry", q) one of the previous iteration, ("inv", slot) one slot
    in every iteration, ("mem", None) anything else (a range outside the loop's slots).
    None when the layout is not the optimizer's (then the plain loop is emitted)."""
    first, pr, T = p.r, p.sb, p.n
    lo, hi = first - pr, first + T * pr           # the peeled iteration's results, the loop's
    pos = {}
    for q in p.body:
        (r, dr) = q.body[0]
        if q.kind == "guard":
            continue
        if dr != pr or not first <= r < first + pr or r - first in pos:
            return None
        pos[r - first] = q
    out = []
    for q in p.body:
        ops = []
        for k, (x, d) in enumerate(q.body[1:3]):
            if k == 1 and q.kind == "unary":
                break
            if d == pr and first <= x < first + pr and x - first in pos:
                ops.append(("int", x - first))
            elif d == pr and lo <= x < first and x - lo in pos:
                ops.append(("carry", x - lo))
            elif x + (T - 1) * d < lo or x >= hi:
                ops.append(("inv", x) if d == 0 else ("mem", (x, d)))
            else:
                return None
        out.append(ops)
    # an invariant slot some other operand's range also reads stays in memory: its
    # contributions interleave
    mem = [xd for ops in out for c, xd in ops if c == "mem"]
    for ops in out:
        for k, (c, x) in enumerate(ops):
            if c == "inv" and any(x0 <= x <= x0 + (T - 1) * d and (x - x0) % d == 0
                                  for x0, d in mem):
                ops[k] = ("mem", (x, 0))
    return out


def _loop_rev(p, passive):
    """The reverse sweep of a LOOP record with its adjoints in registers: a body result's
    adjoint is a local, the adjoint of a value carried to the next iteration is a local
    handed back one iteration, a loop-invariant operand's a local summed over the loop --
    each holding the very sum, in the very order, that the interpreter accumulates in
    memory (initialized from memory, where earlier-swept records' contributions already
    are), and every adjoint stored back, so the adjoint array ends the same bit for bit.
    Without this the carried adjoints go through memory, a store and a reload per step of
    the recurrence's critical path."""
    kinds = _loop_operands(p)
    if kinds is None or not p.n:
        return None
    first, pr = p.r, p.sb
    res = {int(q.body[0][0]) - first: q for q in p.body if q.kind != "guard"}
    carried = sorted({x for ops in kinds for c, x in ops if c == "carry"})
    invs = sorted({x for ops, q in zip(kinds, p.body) for c, x in ops if c == "inv"})
    inv_name = {x: f"e{i}" for i, x in enumerate(invs)}
    pre = [f"double c{o} = g[{first + o} + ({p.n} - 1) * {pr}];" for o in carried]
    pre += [f"double {inv_name[x]} = g[{x}];" for x in invs]
    head = [f"double a{o} = {f'c{o}' if o in carried else f'g[{first + o} + j * {pr}]'};"
            for o in sorted(res)]
    head += [f"c{o} = g[{first - pr + o} + j * {pr}];" for o in carried]
    body = []
    for q, ops in list(zip(p.body, kinds))[::-1]:
        if q.kind == "guard":
            continue
        N, o = q.name, int(q.body[0][0]) - first
        pa = passive and bool(q.flags & A_PASSIVE)
        pb = passive and bool(q.flags & B_PASSIVE)
        args = _args(q, q.a, q.b, q.r)
        parts = []
        for (cls, x), d, skip in zip(ops, ("da", "db"), (pa, pb)):
            if skip:
                continue
            target = {"int": f"a{x}", "carry": f"c{x}", "inv": inv_name.get(x)}.get(cls)
            if target is None:
                target = f"g[{q.a if d == 'da' else q.b}]"
            parts.append(f"{target} += fa_nazw(w, fa_{d}_{N}({args}));")
        if parts:
            body.append(f"{{ const double w = a{o}; if (FA_LIKELY(w != 0.0)) "
                        f"{{ {' '.join(parts)} }} }}")
    tail = [f"g[{first + o} + j * {pr}] = a{o};" for o in sorted(res)]
    post = [f"g[{first - pr + o}] = c{o};" for o in carried]
    post += [f"g[{x}] = {inv_name[x]};" for x in invs]
    loop = (f"for (int64_t j = {p.n} - 1; j >= 0; j--) {{ " + " ".join(head + body + tail)
            + " }")
    return "{ " + " ".join(pre + [loop] + post) + " }"


def written_slots(recs, nslot):
    """Which slots some record writes (the others are inputs and constants)."""
    w = np.zeros(nslot, dtype=bool)
    for p in recs:
        if p.kind == "guard":
            continue
        if p.name == "LOOP":
            if p.n:
                w[p.r:p.a + 1] = True
            continue
        if p.flags & RANGED:
            cnt = p.n * p.sa if p.name == "CUMSUM" else (p.sa if p.name in REDUCE_OPS else p.n)
            w[p.r:p.r + cnt] = True
        else:
            w[p.r] = True
    return w


# ------------------------------------------------------------------------ statements

def _idx(base, stride):
    return f"{base} + k" if stride else f"{base}"


def fwd_stmt(p, vec, ix):
    """C for one record's forward sweep.  `vec`: call the library's numpy loops first."""
    N = p.name
    if N == "LOOP":
        return _loop_stmt(p, [fwd_stmt(q, False, ix) for q in p.body])
    if N in EXTRA_STRUCT:
        return extra_fwd(p)
    if p.kind == "guard":
        want = 1 if p.flags & TRUE else 0
        return f"if (fa_g_{N}(v[{p.a}], v[{p.b}]) != {want}) return {p.i};"
    if not p.flags & RANGED:
        if p.kind == "unary":
            return f"v[{p.r}] = fa_v_{N}(v[{p.a}]);"
        return f"v[{p.r}] = fa_v_{N}(v[{p.a}], v[{p.b}]);"
    if N == "GATHER":
        return f"for (int64_t k = 0; k < {p.n}; k++) v[{p.r} + k] = v[{ix}[{p.a} + k]];"
    if N == "SUM":
        n, m = p.n, p.sa
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc = 0.0; "
                f"for (int64_t k = 0; k < {n}; k++) acc += v[{p.a} + j * {n} + k]; "
                f"v[{p.r} + j] = acc; }}")
    if N == "CUMSUM":
        n, m = p.n, p.sa
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc = 0.0; "
                f"for (int64_t k = 0; k < {n}; k++) {{ acc += v[{p.a} + j * {n} + k]; "
                f"v[{p.r} + j * {n} + k] = acc; }} }}")
    ia = _idx(p.a, p.sa)
    if p.kind == "unary":
        body = f"v[{p.r} + k] = fa_v_{N}(v[{ia}]);"
    else:
        body = f"v[{p.r} + k] = fa_v_{N}(v[{ia}], v[{_idx(p.b, p.sb)}]);"
    loop = f"for (int64_t k = 0; k < {p.n}; k++) {body}"
    # FA_VEC_MIN of sweeps.h: shorter ranges never use numpy's loop; nor do correctly
    # rounded ops here, whose values numpy's loops and this loop give alike (the fused
    # chains' EXACT): numpy's square is a scalar loop, and each call costs a dispatch
    # (the Rosenbrock loop's forward sweep at 10^4 spent a fifth of its time there)
    if vec and p.n >= 16 and N not in _exact():
        return (f"if (!vec({p.op}, v, {p.r}, {p.a}, {p.sa}, {p.b}, {p.sb}, {p.n})) "
                f"{{ {loop} }}")
    return loop


def _exact():
    from fastad._codegen_fuse import EXACT      # that module imports this one
    return EXACT


def _args(p, k_a, k_b, k_r):
    return (f"v[{k_a}], v[{k_r}]" if p.kind == "unary" else f"v[{k_a}], v[{k_b}], v[{k_r}]")


def tan_stmt(p, ix):
    N = p.name
    if N == "LOOP":
        return _loop_stmt(p, [tan_stmt(q, ix) for q in p.body])
    if N in EXTRA_STRUCT:
        return extra_tan(p)
    if p.kind == "guard":
        return None
    if not p.flags & RANGED:
        args = _args(p, p.a, p.b, p.r)
        s = f"t[{p.r}] = FA_NAZ(t[{p.a}], fa_da_{N}({args}))"
        if p.kind == "binary":
            s += f" + FA_NAZ(t[{p.b}], fa_db_{N}({args}))"
        return s + ";"
    if N == "GATHER":
        return f"for (int64_t k = 0; k < {p.n}; k++) t[{p.r} + k] = t[{ix}[{p.a} + k]];"
    if N == "SUM":
        n, m = p.n, p.sa
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc = 0.0; "
                f"for (int64_t k = 0; k < {n}; k++) acc += FA_NAZ(t[{p.a} + j * {n} + k], 1.0); "
                f"t[{p.r} + j] = acc; }}")
    if N == "CUMSUM":
        n, m = p.n, p.sa
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc = 0.0; "
                f"for (int64_t k = 0; k < {n}; k++) {{ acc += t[{p.a} + j * {n} + k]; "
                f"t[{p.r} + j * {n} + k] = acc; }} }}")
    ia, ib = _idx(p.a, p.sa), _idx(p.b, p.sb)
    args = _args(p, ia, ib, f"{p.r} + k")
    s = f"t[{p.r} + k] = FA_NAZ(t[{ia}], fa_da_{N}({args}))"
    if p.kind == "binary":
        s += f" + FA_NAZ(t[{ib}], fa_db_{N}({args}))"
    return f"for (int64_t k = 0; k < {p.n}; k++) {s};"


def rev_stmt(p, ix, passive, assign=None):
    """C for one record's reverse sweep; `passive`: honour the operands' passive flags;
    `assign`: {record index: its operand loops that assign (assigned_loops)}."""
    N = p.name
    mine = assign.get(p.i, ()) if assign else ()
    if N == "LOOP":
        return _loop_rev(p, passive) or \
            _loop_stmt(p, [rev_stmt(q, ix, passive) for q in p.body[::-1]], backwards=True)
    if N in EXTRA_STRUCT:
        return extra_rev(p, passive)
    if p.kind == "guard":
        return None
    pa = passive and bool(p.flags & A_PASSIVE)
    pb = passive and bool(p.flags & B_PASSIVE)
    if not p.flags & RANGED:
        args = _args(p, p.a, p.b, p.r)
        parts = []
        if not pa:
            parts.append(f"g[{p.a}] += fa_nazw(w, fa_da_{N}({args}));")
        if p.kind == "binary" and not pb:
            parts.append(f"g[{p.b}] += fa_nazw(w, fa_db_{N}({args}));")
        if not parts:
            return None
        # the zero test is laid out as the rare case: otherwise GCC jumps out of line and
        # back for every record, thousands of distinct branches the CPU mispredicts
        return f"{{ const double w = g[{p.r}]; if (FA_LIKELY(w != 0.0)) {{ {' '.join(parts)} }} }}"
    if pa and (p.kind != "binary" or pb):
        return None
    if N == "GATHER":
        return f"for (int64_t k = 0; k < {p.n}; k++) g[{ix}[{p.a} + k]] += g[{p.r} + k];"
    if N == "SUM":
        n, m = p.n, p.sa
        if "sum" in mine:       # 0.0 + w: what the zeroed slot plus w gives, w = 0 included
            return (f"for (int64_t j = 0; j < {m}; j++) {{ const double w = g[{p.r} + j]; "
                    f"for (int64_t k = 0; k < {n}; k++) g[{p.a} + j * {n} + k] = 0.0 + w; }}")
        return (f"for (int64_t j = 0; j < {m}; j++) {{ const double w = g[{p.r} + j]; "
                f"if (w == 0.0) continue; "
                f"for (int64_t k = 0; k < {n}; k++) g[{p.a} + j * {n} + k] += w; }}")
    if N == "CUMSUM":
        n, m = p.n, p.sa
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc = 0.0; "
                f"for (int64_t k = {n} - 1; k >= 0; k--) {{ acc += g[{p.r} + j * {n} + k]; "
                f"g[{p.a} + j * {n} + k] += acc; }} }}")
    # the interpreter's order (fa_rev_ranged): a's loop, b's loop, then broadcast sums
    ia, ib = _idx(p.a, p.sa), _idx(p.b, p.sb)
    args = _args(p, ia, ib, f"{p.r} + k")
    loop = f"for (int64_t k = 0; k < {p.n}; k++) "
    out, tail = [], []
    for d, x, s, skip in (("da", p.a, p.sa, pa), ("db", p.b, p.sb, pb)):
        if skip or (d == "db" and p.kind == "unary"):
            continue
        term = f"FA_NAZ(g[{p.r} + k], fa_{d}_{N}({args}))"
        if s and d in mine:     # the slots' first contribution: 0.0 + term, as if zeroed
            out.append(f"{loop}g[{x} + k] = 0.0 + {term};")
        elif s:
            out.append(f"{loop}g[{x} + k] += {term};")
        else:
            out.append(f"double acc_{d} = 0.0; {loop}acc_{d} += {term};")
            tail.append(f"g[{x}] += acc_{d};")
    return "{ " + " ".join(out + tail) + " }"


def assigned_loops(recs, passive=True):
    """The reverse sweep's operand loops that can *assign* their range's adjoints instead of
    adding to them, and the slot ranges they cover.  Before a reverse sweep every adjoint
    is zeroed (a pass over all slots, 8 % of the Rosenbrock loop's gradient at n = 10^4),
    yet most ranges of a rolled loop receive their first contribution from one elementwise
    loop that writes every element: written as g = 0.0 + term (the very sum the zeroed
    slot gives, signed zeros and NaNs included), the loop needs no zeroing of its range
    and reads no adjoint there.  The records are walked in the reverse sweep's order,
    marking the slots whose adjoints each one reads or adds to; an operand range of a
    ranged elementwise record (stride 1) or a SUM's terms, none of whose slots was marked
    before, assigns.  Records whose targets are not modelled here (gathers, LOOP records,
    the runtime's kernels, ...) end the walk: what comes before them in that order assigns
    nothing.  Returns ({record index: {"da", "db" or "sum"}}, sorted disjoint [lo, hi)
    ranges); the caller zeroes the other slots (fa_native_zero) and seeds none of these."""
    hi = 0
    for p in recs:
        if p.flags & RANGED and p.name in ("SUM",):
            hi = max(hi, p.r + p.sa, p.a + p.n * p.sa)
        elif p.flags & RANGED and p.kind in ("unary", "binary"):
            hi = max(hi, p.r + p.n, p.a + p.n * p.sa + 1, p.b + p.n * p.sb + 1)
        elif not p.flags & RANGED and p.name != "LOOP":
            hi = max(hi, p.r, p.a, p.b) + 1
    touched = np.zeros(hi + 1, dtype=bool)
    out, ranges = {}, []

    def take(i, what, lo, end):
        if not touched[lo:end].any():
            out.setdefault(i, set()).add(what)
            ranges.append((lo, end))
        touched[lo:end] = True

    for p in reversed(recs):
        if p.kind == "guard":
            continue
        pa = passive and bool(p.flags & A_PASSIVE)
        pb = passive and bool(p.flags & B_PASSIVE)
        if not p.flags & RANGED and p.kind in ("unary", "binary"):
            touched[p.r] = True
            touched[p.a] |= not pa
            touched[p.b] |= p.kind == "binary" and not pb
        elif p.flags & RANGED and p.name == "SUM":
            touched[p.r:p.r + p.sa] = True
            if not pa:
                take(p.i, "sum", p.a, p.a + p.n * p.sa)
        elif p.flags & RANGED and p.kind in ("unary", "binary"):
            touched[p.r:p.r + p.n] = True
            if pa and (p.kind != "binary" or pb):
                continue
            for d, x, st, skip in (("da", p.a, p.sa, pa), ("db", p.b, p.sb, pb)):
                if skip or (d == "db" and p.kind == "unary"):
                    continue
                if st:
                    take(p.i, d, x, x + p.n)
                else:
                    touched[x] = True
        else:
            break
    return out, merge_ranges(ranges)


def merge_ranges(ranges):
    """Sorted disjoint [lo, hi) ranges covering `ranges`."""
    merged = []
    for lo, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([lo, end])
    return [tuple(r) for r in merged]


def assigned_table(ranges):
    """C of the assigned ranges for the runtime (native_abi.h, fa_native_zero)."""
    words = ", ".join(f"{lo}, {end}" for lo, end in ranges) or "0, 0"
    return (f"const int64_t fastad_assigned[] = {{{words}}};\n"
            f"const int64_t fastad_nassigned = {len(ranges)};\n")


# ------------------------------------------------------------------------ functions

def _chunks(items):
    """Functions' bodies from (statement, is_loop) pairs: runs of straight-line statements
    of at most CHUNK, and each loop alone (compiled for vectorization, see preamble)."""
    out, run = [], []
    for text, loop in items:
        if text is None:
            continue
        if loop:
            if run:
                out.append((run, False))
                run = []
            out.append(([text], loop))
        else:
            run.append(text)
            if len(run) == CHUNK:
                out.append((run, False))
                run = []
    if run or not out:
        out.append((run, False))
    return out


# Loops over fewer elements than this stay in the straight-line chunks (-O1): vectorizing
# them gains little, and each vectorized function costs compile time (three clones, about
# 20 ms).  At 256, the rolled Rosenbrock loop at n = 100 (records of 99 elements) ran its
# reverse sweep in 1.16 us at -O1 against 0.09 us vectorized, and native code was 2.4x
# slower than the interpreter's vectorized loops (benchmarks/native_sweeps_c.py).
LOOP_MIN = 64


def _own_function(p):
    if p.name == "LOOP":     # a recurrence: its own function (see _restrict), unless
        # short (a few iterations of a regular stretch of an irregular loop, as in
        # branchy): then -O3 and its clones would cost more compile time than they gain
        return RECUR if p.n * len(p.body) >= LOOP_MIN else False
    if not p.flags & RANGED or p.name in RUNTIME_OPS:
        return False
    return p.n * (p.sa if p.name in REDUCE_OPS + ("CUMSUM",) else 1) >= LOOP_MIN


def _items(recs, stmt, *extra, over=None):
    """(statement, is_loop) per record; `over` replaces some records' statements (a fused
    chain's loop at one member, None at the others: _codegen_fuse)."""
    if over:
        return [_over_item(over[p.i]) if p.i in over else (stmt(p, "ix", *extra),
                                                            _own_function(p))
                for p in recs]
    return [(stmt(p, "ix", *extra), _own_function(p)) for p in recs]


def _over_item(x):
    """A replacement statement of `over`: a fused chain's loop (a string: its own function,
    vectorized like a ranged record's) or (statement, loop kind), e.g. a table loop's call
    (_codegen_table), which stays among the straight-line statements."""
    return x if isinstance(x, tuple) else (x, True)


def _attr(loop):
    return "FA_LOOPFN" if loop else "FA_NOINLINE"


def _fwd_functions(recs, prefix, vec, ix_expr, over=None, inplace=False):
    """Chunked functions of the forward sweep; `inplace`: each takes the inputs' array x
    too (in-place code, inplace_ok)."""
    items = [_over_item(over[p.i]) if over and p.i in over else (fwd_stmt(p, vec, ix_expr),
                                                                  _own_function(p))
             for p in recs]
    vec_param = ", fa_native_vec_fn vec" if vec else ""
    vec_arg = ", vec" if vec else ""
    out, calls = [], []
    for c, (body, loop) in enumerate(_chunks(items)):
        q = _restrict(loop)
        x_param = f", const double *{q} x" if inplace else ""
        out.append(f"{_attr(loop)} static int64_t {prefix}fwd_{c}(double *{q} v, "
                   f"const int32_t *{q} ix"
                   f"{vec_param}{x_param})\n"
                   "{\n    (void)v; (void)ix;" + (" (void)vec;" if vec else "")
                   + (" (void)x;" if inplace else "") + "\n    "
                   + "\n    ".join(body) + "\n    return -1;\n}\n")
        calls.append(f"    if ((r = {prefix}fwd_{c}(v, ix{vec_arg}{', x' if inplace else ''}))"
                     " >= 0) return r;")
    return out, calls


# A LOOP record's function (a recurrence: csrc/loop.h) declares its arrays restrict: the
# values, the tangents or adjoints and the index pool are distinct buffers, so the compiler
# (-O3 there, FA_LOOPFN) keeps the carried values in registers across the stores of an
# iteration instead of reloading them (the library is built with -fno-strict-aliasing).
RECUR = "recur"


def _restrict(loop):
    # every function of its own (a recurrence, a ranged record's loop, a fused chain): the
    # arrays are distinct buffers, and without restrict a store to g may change v[c], so
    # a broadcast operand is reloaded every element and the loop is not vectorized
    return " restrict" if loop else ""


def _sweep_functions(items, prefix, what, arg, inplace=False):
    """Chunked functions for the tangent (in order) or reverse (reversed) sweep;
    `inplace` (reverse only): each takes the inputs' array x and their adjoints' gx too."""
    out, calls = [], []
    for c, (body, loop) in enumerate(_chunks(items)):
        q = _restrict(loop)
        xs = f", const double *{q} x, double *{q} gx" if inplace else ""
        out.append(f"{_attr(loop)} static void {prefix}{what}_{c}(const double *{q} v, "
                   f"double *{q} {arg}, const int32_t *{q} ix{xs})\n{{\n    (void)v; "
                   f"(void){arg}; (void)ix;{' (void)x; (void)gx;' if inplace else ''}\n    "
                   + "\n    ".join(body) + "\n}\n")
        calls.append(f"    {prefix}{what}_{c}(v, {arg}, ix{', x, gx' if inplace else ''});")
    return out, calls


def preamble():
    return ("/* Generated by fastad (docs/native.md) from a recorded tape.  Do not edit. */\n"
            "#include <math.h>\n#include <stdint.h>\n#include <stddef.h>\n"
            + headers() + "\n"
            + LOOP_ATTRIBUTES + _codegen_table.ATTRIBUTES)


# Straight-line code is compiled at the command line's level (-O1: fast to compile); each
# ranged record's loop is its own function, compiled to vectorize, for several x86-64
# levels chosen at load time -- what the interpreter's loops get (sweeps.h, FA_CLONES).
LOOP_ATTRIBUTES = """
#if defined(__GNUC__)
#define FA_NOINLINE __attribute__((noinline))
#define FA_LIKELY(c) __builtin_expect(!!(c), 1)
#else
#define FA_NOINLINE
#define FA_LIKELY(c) (c)
#endif
/* FA_NAZ(w, d) for a w known to be nonzero, its zero case laid out as the rare one */
static inline double fa_nazw(double w, double d) { return FA_LIKELY(d != 0.0) ? w * d : 0.0; }
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FA_NO_CLONES)
#define FA_LOOPFN __attribute__((noinline, optimize("O3"), \\
    target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && !defined(__clang__)
#define FA_LOOPFN __attribute__((noinline, optimize("O3")))
#else
#define FA_LOOPFN FA_NOINLINE
#endif

"""


def _fused(recs, chains, nin=0):
    """Statements of the fused chains (Tape.fused_chains(), docs/design.md "Fusion"): per
    sweep, {record index: the chain's loop at one member, None at the others}.  nin > 0:
    in-place code (inplace_ok), reading input slots from x and adding their adjoints to gx."""
    from fastad import _codegen_fuse as F
    over = {"fwd": {}, "tan": {}, "rev": {}}
    for c in chains:
        ms = F.members(recs, c)
        for w in over:
            for m in ms:
                over[w][m.p.i] = None
        over["fwd"][ms[0].p.i] = F.fwd(ms, "ix", nin)
        over["tan"][ms[0].p.i] = F.tan(ms, "ix")
        over["rev"][ms[-1].p.i] = F.rev(ms, "ix", True, nin)
    return over


def _reads(p):
    """(first, end) slot ranges record p reads, or None when the generator cannot say
    which slots it reads without the tape's data (gathers, LOOP bodies, call-backs)."""
    if p.name in ("GATHER", "LOOP") or p.name in RUNTIME_OPS:
        return None
    if p.name in REDUCE_OPS + ("CUMSUM",):
        return [(p.a, p.a + p.n * p.sa)]
    if p.kind not in ("unary", "binary", "guard"):
        return None
    out = []
    for s, st in ((p.a, p.sa), (p.b, p.sb))[:1 if p.kind == "unary" else 2]:
        out.append((s, s + p.n) if p.flags & RANGED and st else (s, s + 1))
    return out


def inplace_ok(recs, chains, nin):
    """Can this tape's code read its inputs from the caller's array and add their adjoints
    to the gradient array, instead of slots 0..nin-1 of the workspace (docs/native.md,
    "Inputs read in place")?  Yes when the only records that read an input slot are
    members of fused chains (whose C is written knowing which operand is an input), each
    operand range lying wholly among the inputs or wholly outside them, and no chain
    member is a gather (its indices are data, read at run time)."""
    if nin <= 0 or not chains:
        return False
    inside = [(first, end) for first, end, _ in chains]
    for p in recs:
        member = any(first <= p.i < end for first, end in inside)
        if member and p.name == "GATHER":
            return False
        reads = _reads(p)
        if reads is None:
            return False
        for lo, hi in reads:
            if member and lo < nin < hi:
                return False        # a range straddling the inputs' end
            if not member and lo < nin:
                return False
    return True


def _value_and_grad(recs, chains, nin):
    """fastad_vg_x, for in-place code whose tape is one fused chain ending in its SUM: the
    forward and reverse sweeps in one pass over the inputs (_codegen_fuse.rev, both=True),
    for the gradient of that SUM or of any other slot seeded in g.  A tape of one chain
    has no guard, so no forward sweep needs to finish first.  '' for any other tape."""
    from fastad import _codegen_fuse as F
    if len(chains) != 1:
        return ""
    first, end, _ = chains[0]
    ms = F.members(recs, chains[0])
    if not all(first <= p.i < end for p in recs) or F._sum(ms) is None:
        return ""
    body = F.rev(ms, "ix", True, nin, both=True)
    return ("FA_LOOPFN static void fa_vg_0(double *restrict v, double *restrict g, "
            "const int32_t *restrict ix, const double *restrict x, double *restrict gx)\n"
            "{\n    (void)v; (void)g; (void)ix; (void)x; (void)gx;\n    " + body + "\n}\n"
            "void fastad_vg_x(double *v, double *g, const int32_t *ix, const double *x, "
            "double *gx)\n{\n    fa_vg_0(v, g, ix, x, gx);\n}\n")


def generate(rows, key, sweeps=("fwd", "tan", "rev"), chains=(), nin=0):
    """The C of an in-process shared object for the records `rows` (raw_records): the
    functions fastad_fwd / fastad_tan / fastad_rev of csrc/native_abi.h for the sweeps
    asked for, and the string fastad_key.  `chains`: the tape's fused chains, each
    compiled as one loop per sweep (fastad._codegen_fuse).  `nin`: the tape's inputs;
    when inplace_ok, the forward and reverse sweeps are written as fastad_fwd_x and
    fastad_rev_x, which read the inputs from an array of their own and add their adjoints
    to another, and fastad_fwd / fastad_rev call them with the workspace's slots."""
    recs = parse(rows)
    inplace = inplace_ok(recs, chains, nin) and "fwd" in sweeps and "rev" in sweeps
    over = _fused(recs, chains, nin if inplace else 0)
    # table loops' functions, per sweep, and the adjoints their reverse sweep writes first
    tables = _codegen_table.add(recs, over, fresh=not chains and assigning())
    parts = [preamble(), f'const char fastad_key[] = "{key}";\n', RUNTIME_TABLE]
    if chains:      # the reverse sweep reads only the adjoints fa_fused_zero zeroes
        parts.append("const int fastad_fused = 1;\n")
    if "fwd" in sweeps:
        fns, calls = _fwd_functions(recs, "", True, "ix", over["fwd"], inplace)
        parts += [tables.get("fwd", "")] + fns
        if inplace:
            parts.append("int64_t fastad_fwd_x(double *v, const int32_t *ix, "
                         "fa_native_vec_fn vec, const double *x)\n"
                         "{\n    int64_t r;\n" + "\n".join(calls) + "\n    return -1;\n}\n"
                         "int64_t fastad_fwd(double *v, const int32_t *ix, fa_native_vec_fn vec)"
                         "\n{\n    return fastad_fwd_x(v, ix, vec, v);\n}\n")
        else:
            parts.append("int64_t fastad_fwd(double *v, const int32_t *ix, "
                         "fa_native_vec_fn vec)\n"
                         "{\n    int64_t r;\n" + "\n".join(calls) + "\n    return -1;\n}\n")
    if "tan" in sweeps:
        fns, calls = _sweep_functions(_items(recs, tan_stmt, over=over["tan"]), "", "tan", "t")
        parts += [tables.get("tan", "")] + fns
        parts.append("void fastad_tan(const double *v, double *t, const int32_t *ix)\n{\n"
                     + "\n".join(calls) + "\n}\n")
    if inplace:
        parts.append(_value_and_grad(recs, chains, nin))
    if "rev" in sweeps:
        assign = None
        if not chains and assigning():
            assign, ranges = assigned_loops(recs)
            ranges = merge_ranges(ranges + [(x, x + 1) for x in tables.get("fresh", ())])
            if ranges:
                parts.append(assigned_table(ranges))
        fns, calls = _sweep_functions(_items(recs[::-1], rev_stmt, True, assign,
                                             over=over["rev"]), "", "rev", "g", inplace)
        parts += [tables.get("rev", "")] + fns
        if inplace:
            parts.append("void fastad_rev_x(const double *v, double *g, const int32_t *ix, "
                         "const double *x, double *gx)\n{\n" + "\n".join(calls) + "\n}\n"
                         "void fastad_rev(const double *v, double *g, const int32_t *ix)\n"
                         "{\n    fastad_rev_x(v, g, ix, v, g);\n}\n")
        else:
            parts.append("void fastad_rev(const double *v, double *g, const int32_t *ix)\n{\n"
                         + "\n".join(calls) + "\n}\n")
    return "".join(parts)


def structure_hash(record_bytes, sweeps):
    h = hashlib.blake2b(digest_size=20)
    h.update(record_bytes)
    h.update(",".join(sorted(sweeps)).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------ standalone C

def _c_double(x):
    if np.isnan(x):
        return "NAN"
    if np.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    return float(x).hex()


def _int_table(name, vals):
    body = ",".join(str(int(x)) for x in vals) or "0"
    return f"static const int32_t {name}[] = {{{body}}};\n"


def standalone(rows, values, ix, nin, out, name, jvp=True, part=False):
    """A self-contained C file (and its header's text) for the tape: see Tape.to_c.
    part=True: only the tape's static functions, to be appended to another such file
    (`name`_value_grad_work then has internal linkage; no header)."""
    recs = parse(rows)
    refuse_runtime(recs)
    nslot = len(values)
    consts = np.flatnonzero(~written_slots(recs, nslot))
    consts = consts[consts >= nin]
    P = f"{name}_"
    parts = [] if part else \
        [preamble(), f'#include <stdlib.h>\n#include <string.h>\n#include "{name}.h"\n\n']
    parts.append(_int_table(f"{P}ix", ix))
    parts.append(_int_table(f"{P}const_slots", consts))
    vals = ",".join(_c_double(values[s]) for s in consts) or "0"
    parts.append(f"static const double {P}const_vals[] = {{{vals}}};\n\n")
    over = {"fwd": {}, "tan": {}, "rev": {}}
    tables = _codegen_table.add(recs, over, prefix=P, passive=False)
    fns, fcalls = _fwd_functions(recs, P, False, "ix", over["fwd"])
    parts += [tables.get("fwd", "")] + fns
    rfns, rcalls = _sweep_functions(_items(recs[::-1], rev_stmt, False, over=over["rev"]),
                                    P, "rev", "g")
    parts += [tables.get("rev", "")] + rfns
    parts.append(f"""
static int64_t {P}forward(const double *x, double *v)
{{
    const int32_t *ix = {P}ix;
    int64_t r;
    for (int64_t i = 0; i < {len(consts)}; i++) v[{P}const_slots[i]] = {P}const_vals[i];
    {f"memcpy(v, x, {nin} * sizeof(double));" if nin else "(void)x;"}
{chr(10).join(fcalls)}
    return -1;
}}

{"static " if part else ""}int {P}value_grad_work(const double *x, double *f, double *grad,
    double *work)
{{
    double *v = work, *g = work + {nslot};
    const int32_t *ix = {P}ix;
    int64_t r = {P}forward(x, v);
    if (r >= 0) return (int)(1 + r % 2147483646);
    *f = v[{out}];
    memset(g, 0, {nslot} * sizeof(double));
    g[{out}] = 1.0;
{chr(10).join(rcalls)}
    {f"memcpy(grad, g, {nin} * sizeof(double));" if nin else "(void)grad;"}
    return 0;
}}

""")
    if part:
        return "".join(parts), None
    parts.append(f"""
int {P}value_grad(const double *x, double *f, double *g)
{{
    double *work = (double *)malloc({P}WORK_DOUBLES * sizeof(double));
    if (!work) return -1;
    int rc = {P}value_grad_work(x, f, g, work);
    free(work);
    return rc;
}}
""")
    if jvp:
        tfns, tcalls = _sweep_functions(_items(recs, tan_stmt, over=over["tan"]), P, "tan", "t")
        parts += [tables.get("tan", "")] + tfns
        parts.append(f"""
int {P}jvp_work(const double *x, const double *dx, double *f, double *df, double *work)
{{
    double *v = work, *t = work + {nslot};
    const int32_t *ix = {P}ix;
    int64_t r = {P}forward(x, v);
    if (r >= 0) return (int)(1 + r % 2147483646);
    *f = v[{out}];
    memset(t, 0, {nslot} * sizeof(double));
    {f"memcpy(t, dx, {nin} * sizeof(double));" if nin else "(void)dx;"}
{chr(10).join(tcalls)}
    *df = t[{out}];
    return 0;
}}

int {P}jvp(const double *x, const double *dx, double *f, double *df)
{{
    double *work = (double *)malloc({P}WORK_DOUBLES * sizeof(double));
    if (!work) return -1;
    int rc = {P}jvp_work(x, dx, f, df, work);
    free(work);
    return rc;
}}
""")
    guard = name.upper() + "_H"
    header = f"""/* Generated by fastad (docs/native.md): {name},
 * a recorded function of {nin} inputs.
 *
 * Every function returns 0 on success; a positive value means the inputs took another
 * branch than the recorded one (a comparison changed outcome), and the outputs must not
 * be trusted; -1 means out of memory (only the variants that allocate). */
#ifndef {guard}
#define {guard}

#define {P}N_INPUTS {nin}
/* doubles of workspace the *_work variants take */
#define {P}WORK_DOUBLES {2 * max(nslot, 1)}

/* f = the function at x, g[0..{nin}) its gradient */
int {P}value_grad(const double *x, double *f, double *g);
int {P}value_grad_work(const double *x, double *f, double *g, double *work);
"""
    if jvp:
        header += f"""/* f = the function at x, df = its directional derivative along dx */
int {P}jvp(const double *x, const double *dx, double *f, double *df);
int {P}jvp_work(const double *x, const double *dx, double *f, double *df, double *work);
"""
    header += f"\n#endif /* {guard} */\n"
    return "".join(parts), header
