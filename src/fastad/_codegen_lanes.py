"""Compiled colour lanes: the compressed sweeps of a sparse Jacobian or Hessian written as
one C loop over the elements of an elementwise tape, all K colours carried together in
registers (docs/sparse.md, "Compiled colour lanes").

The tapes this covers are numpy array programs: every record is an elementwise record over
the same length L (operands broadcast scalars, ranges of inputs or constants, or the
whole result of an earlier record), or a gather of L inputs or constants (shifted views of
a padded vector); a Hessian's f may end in a `sum` of one such record.  Element i of every
record then depends on element i of the others only, so one loop iteration computes
element i of the whole tape, and neither values nor tangents (nor, for a Hessian, the
adjoints) of intermediate records ever reach memory:

* Jacobian (forward, columns coloured): values and K tangent lanes; the lanes of the
  output record are the rows of B = J S.
* Hessian (forward over reverse on f's own records): values and K tangent lanes, then, in
  the same iteration, the adjoint (seeded 1 by the final sum) and K second-order adjoint
  lanes backwards through the records; the terms reaching the inputs are added to the
  gradient and to B = H S.  The rule is hvp_lanes.h's, gd[a] += AZ(gd[r], f_a) +
  AZ(g[r], d/de f_a), with f_a's directional derivative from its own D_* rule read over
  dual numbers (csrc/hv_dual.h): no second derivative is written here either.

Every op's C comes from the op table (csrc/ops.h) through csrc/native_kernels.h and
csrc/hv_dual.h, embedded as text as the native tier does (fastad._codegen).  Values use
libm where the interpreter may use numpy's SIMD loops, and the inputs' terms are added in
another order, so results agree with the interpreted sweeps to rounding, not bit for bit.
Anything else (guards, scalar records, reductions other than the final sum, gathers of
computed slots, more than MAX_LANES colours) raises Unsupported and the caller keeps the
interpreted sweeps.
"""
import ctypes
import hashlib
import os
import threading

import numpy as np

from fastad import _codegen, _native
from fastad._codegen import RANGED, Unsupported

GENERATOR_VERSION = 9
MAX_LANES = 16          # K tangent (and adjoint) lanes live in registers: a bound on K
MAX_RECORDS = 2000      # longer tapes: C that compiles for tens of seconds
MAX_FRAME = 1 << 20     # bytes of tile buffers on a call's stack (_function)
OPT_FLAGS = ["-O3"]     # after the native tier's -O1: the element loop is all the code
INDEX32 = 2 ** 31 - 1   # B with more entries: recovery by numpy's take on int64 indices


# ------------------------------------------------------------------------ analysis

class Program:
    """An elementwise tape as the generator sees it."""

    def __init__(self):
        self.L = 0              # elements per record
        self.recs = []          # region records (elementwise and gathers), in order
        self.nin = 0
        self.consts = []        # the constants the records read (cv; xe = [x, cv])
        self.gix = []           # per gather: int32 sources, indices into xe = [x, cv]
        self.out = None         # Jacobian: the record whose result is the output
        self.sum_of = None      # Hessian: the record the final sum adds up
        self.seed = 1.0         # ... and the slope of f in that sum (_linear_tail)
        self.sources = {}       # (record index, operand) -> load description


def _c_double(x):
    return _codegen._c_double(float(x))


def analyse(tape, hi=None, outs=None, fslot=None):
    """A Program for `tape`'s records (the first `hi` rows for a Hessian, whose final sum
    is `fslot`; else the Jacobian of the slots `outs`); raises Unsupported."""
    rows = _native.raw_records(tape)
    if hi is not None:
        rows = rows[:hi]
    if len(rows) > 2 * MAX_RECORDS:
        raise Unsupported(f"the tape has more than {MAX_RECORDS} records")
    recs = _codegen.parse(rows)
    if not recs:
        raise Unsupported("the tape has no records")
    vals = None
    nin = tape.n_inputs
    prog = Program()
    prog.nin = nin
    produced = {}           # result start -> index into prog.recs
    bounds = []             # (start, end) of every result range, for the external test
    for p in recs:
        if p.flags & RANGED:
            bounds.append((p.r, p.r + (p.n if p.name != "SUM" else p.sa)))
        else:
            bounds.append((p.r, p.r + 1))
    bounds.sort()
    starts = np.array([b[0] for b in bounds], dtype=np.int64)
    ends = np.array([b[1] for b in bounds], dtype=np.int64)

    def external(lo, hi_):
        """No record writes any slot of [lo, hi_)."""
        k = np.searchsorted(starts, hi_, side="left")
        return not (k and ends[:k].max(initial=0) > lo)

    const_index = {}

    def const_range(lo, n):
        nonlocal vals
        if vals is None:
            vals = tape.values
        key = (lo, n)
        if key not in const_index:
            const_index[key] = len(prog.consts)
            prog.consts.extend(vals[lo:lo + n].tolist())
        return const_index[key]

    def operand(p, slot, stride):
        L = prog.L
        if stride == 0:
            if not external(slot, slot + 1):
                raise Unsupported(f"record {p.i} broadcasts a computed slot")
            if slot < nin:
                return ("xs", slot)
            nonlocal vals
            if vals is None:
                vals = tape.values
            return ("k", float(vals[slot]))
        if slot in produced and prog.recs[produced[slot]].n == L:
            return ("rec", produced[slot])
        if not external(slot, slot + L):
            raise Unsupported(f"record {p.i} reads part of a computed range")
        if slot + L <= nin:
            return ("x", slot)
        if slot >= nin:
            return ("cv", const_range(slot, L))
        raise Unsupported(f"record {p.i} reads a range across inputs and constants")

    pool = None
    if hi is not None:
        recs = _linear_tail(prog, recs, fslot, external, nin, lambda: tape.values)
    last = len(recs) - 1
    for j, p in enumerate(recs):
        if not p.flags & RANGED:
            raise Unsupported(f"record {p.i} is a scalar {p.name.lower()} record")
        if p.name == "SUM" and hi is not None and j == last:
            if p.sa != 1 or p.a not in produced or \
                    prog.recs[produced[p.a]].n != p.n or p.n != prog.L:
                raise Unsupported(f"record {p.i}: the final sum is not over one whole record")
            prog.sum_of = produced[p.a]
            continue
        if prog.L == 0:
            prog.L = p.n
        if p.n != prog.L:
            raise Unsupported(f"record {p.i} has {p.n} elements, not {prog.L}")
        if p.name == "GATHER":
            if pool is None:
                pool = _native.index_pool(tape)
            idx = pool[p.a:p.a + p.n].astype(np.int64)
            if len(idx) != p.n:
                raise Unsupported(f"gather record {p.i} has indices outside the pool")
            for lo, end in bounds:
                if ((idx >= lo) & (idx < end)).any():
                    raise Unsupported(f"gather record {p.i} reads a computed slot")
            src = idx.astype(np.int32)
            cons = np.nonzero(idx >= nin)[0]
            if len(cons):       # constants: nin + their index in cv (xe = [x, cv])
                uniq, inv = np.unique(idx[cons], return_inverse=True)
                base = [nin + const_range(int(s), 1) for s in uniq.tolist()]
                src[cons] = np.asarray(base, dtype=np.int64)[inv]
            p.b = len(prog.gix)
            prog.gix.append(src)
            p.sa = p.sb = 0
        elif p.kind == "unary":
            prog.sources[(len(prog.recs), 0)] = operand(p, p.a, p.sa)
        elif p.kind == "binary":
            prog.sources[(len(prog.recs), 0)] = operand(p, p.a, p.sa)
            prog.sources[(len(prog.recs), 1)] = operand(p, p.b, p.sb)
        else:
            raise Unsupported(f"record {p.i} is a {p.name.lower()} record")
        produced[p.r] = len(prog.recs)
        prog.recs.append(p)
    if hi is not None:
        if prog.sum_of is None:
            raise Unsupported("f does not end in a sum of an elementwise record")
    else:
        outs = np.asarray(outs)
        if len(outs) != prog.L or outs[0] not in produced or \
                not np.array_equal(outs, np.arange(outs[0], outs[0] + prog.L)):
            raise Unsupported("the outputs are not one record's whole result")
        prog.out = produced[int(outs[0])]
    return prog


# a linear function of the final sum s with a constant c: its slope d(result)/ds, by the
# op's partial for the operand s is (0: s is operand a, 1: operand b)
_TAIL = {("MULTIPLY", 0): lambda c: c, ("MULTIPLY", 1): lambda c: c,
         ("DIVIDE", 0): lambda c: 1.0 / c,
         ("ADD", 0): lambda c: 1.0, ("ADD", 1): lambda c: 1.0,
         ("SUBTRACT", 0): lambda c: 1.0, ("SUBTRACT", 1): lambda c: -1.0}


def _linear_tail(prog, recs, fslot, external, nin, values):
    """f = a * sum(...) + b and the like: scalar records after the final sum that are
    linear in it with constant coefficients (0.5 * np.sum(r ** 2), np.sum(.) / n) have a
    constant slope, the seed of the elements' adjoints (prog.seed); their second
    derivative is 0, so the Hessian is the slope times the sum's.  Returns the records up
    to the sum."""
    prog.seed = 1.0
    k = len(recs)
    while k and not recs[k - 1].flags & RANGED:
        k -= 1
    if k == 0 or recs[k - 1].name != "SUM":
        return recs            # analyse refuses it, with the record that is in the way
    cur = recs[k - 1].r
    vals = None
    for p in recs[k:]:
        if p.name == "NEGATIVE" and p.a == cur:
            prog.seed = -prog.seed
        elif p.kind == "binary" and (p.a == cur) != (p.b == cur):
            o = 0 if p.a == cur else 1
            c = p.b if o == 0 else p.a
            if (p.name, o) not in _TAIL or c < nin or not external(c, c + 1):
                raise Unsupported(f"record {p.i}: f is not linear in its final sum")
            if vals is None:
                vals = values()
            prog.seed = prog.seed * _TAIL[(p.name, o)](float(vals[c]))
        else:
            raise Unsupported(f"record {p.i}: f is not linear in its final sum")
        cur = p.r
    if cur != fslot:
        raise Unsupported("f's output is not its final sum")
    return recs[:k]


# ------------------------------------------------------------------------ generation

def _headers():
    """native_kernels.h and hv_dual.h (with ops.h once) as one text."""
    seen = set()
    d = _codegen._csrc()
    return (_codegen._inline(d, "native_kernels.h", seen) + "\n" +
            _codegen._inline(d, "hv_dual.h", seen))


# the partials as duals: each op's D_ rule over dual numbers (hv_dual.h's reading)
DUAL_PARTIALS = r"""
#define FA_LD1(N, S, V, DA) \
    static inline __attribute__((always_inline)) fa_dual fa_dda_##N(fa_dual a, fa_dual r) \
    { (void)a; (void)r; return (DA); }
#define FA_LD2(N, S, V, DA, DB) \
    static inline __attribute__((always_inline)) \
    fa_dual fa_dda_##N(fa_dual a, fa_dual b, fa_dual r) \
    { (void)a; (void)b; (void)r; return (DA); } \
    static inline __attribute__((always_inline)) \
    fa_dual fa_ddb_##N(fa_dual a, fa_dual b, fa_dual r) \
    { (void)a; (void)b; (void)r; return (DB); }
FA_UNARY_OPS(FA_LD1)
FA_BINARY_OPS(FA_LD2)
#undef FA_LD1
#undef FA_LD2
"""


TILE = 256             # elements per tile: the tile buffers stay in L1/L2


def _vectorizable(p):
    """Ops whose C GCC vectorizes (no libm call): the correctly rounded ones."""
    from fastad._codegen_fuse import EXACT
    return p.name in EXACT


class _Gen:
    """Generation state: which records' values and lanes cross a loop (tile buffers)."""

    def __init__(self, prog, K, kind, grad=True):
        self.prog, self.K, self.kind = prog, K, kind
        self.grad = grad        # a Hessian's kernel also adds the gradient G
        self.nxe = prog.nin + len(prog.consts)
        recs = prog.recs
        # forward segments: maximal runs of records that vectorize, or that do not; a
        # Hessian keeps one loop (its reverse reads every record's values and lanes)
        self.seg = []
        for j, p in enumerate(recs):
            v = kind == "hess" or _vectorizable(p)
            if self.seg and self.seg[-1][0] == v:
                self.seg[-1][1].append(j)
            else:
                self.seg.append((v, [j]))
        self.where = {j: n for n, (_, js) in enumerate(self.seg) for j in js}
        self.buffered = set()
        for (j, _o), src in prog.sources.items():
            if src[0] == "rec" and self.where[src[1]] != self.where[j]:
                self.buffered.add(src[1])

    def value(self, q, here):
        """Expressions of record q's value and lanes, read in segment `here`."""
        K = self.K
        if q in self.buffered and self.where[q] != here:
            return f"bv{q}[ii]", [f"bt{q}_{k}[ii]" for k in range(K)]
        return f"v{q}", [f"t{q}_{k}" for k in range(K)]

    def load(self, j, o, out):
        """Declare operand o of record j as a{j}_{o} and its lanes a{j}_{o}_{k}."""
        K, src, v = self.K, self.prog.sources[(j, o)], f"a{j}_{o}"
        if src[0] == "rec":
            val, lanes = self.value(src[1], self.where[j])
            out.append(f"const double {v} = {val};")
            out += [f"const double {v}_{k} = {lanes[k]};" for k in range(K)]
            return
        if src[0] == "k":
            out.append(f"const double {v} = {_c_double(src[1])};")
            out += [f"const double {v}_{k} = 0.0;" for k in range(K)]
            return
        if src[0] == "cv":
            out.append(f"const double {v} = xe[{self.prog.nin + src[1]} + i];")
            out += [f"const double {v}_{k} = 0.0;" for k in range(K)]
            return
        s = f"{src[1]} + i" if src[0] == "x" else f"{src[1]}"
        out.append(f"const double {v} = xe[{s}];")
        out += [f"const double {v}_{k} = (double)S[{k * self.nxe} + {s}];" for k in range(K)]

    def record(self, j, out):
        """One element's values and lanes of record j: v{j}, t{j}_{k}."""
        K, p = self.K, self.prog.recs[j]
        if p.name == "GATHER":
            out.append(f"const int32_t s{j} = g{p.b}[i]; const double v{j} = xe[s{j}];")
            out += [f"const double t{j}_{k} = (double)S[{k * self.nxe} + s{j}];"
                    for k in range(K)]
        else:
            N = p.name
            self.load(j, 0, out)
            if p.kind == "unary":
                out.append(f"const double v{j} = fa_v_{N}(a{j}_0);")
                out.append(f"const double da{j} = fa_da_{N}(a{j}_0, v{j});")
                out += [f"const double t{j}_{k} = fa_hv_az(a{j}_0_{k}, da{j});"
                        for k in range(K)]
            else:
                self.load(j, 1, out)
                out.append(f"const double v{j} = fa_v_{N}(a{j}_0, a{j}_1);")
                out.append(f"const double da{j} = fa_da_{N}(a{j}_0, a{j}_1, v{j}), "
                           f"db{j} = fa_db_{N}(a{j}_0, a{j}_1, v{j});")
                out += [f"const double t{j}_{k} = fa_hv_add(fa_hv_az(a{j}_0_{k}, da{j}), "
                        f"fa_hv_az(a{j}_1_{k}, db{j}));" for k in range(K)]
        if j in self.buffered:
            out.append(f"bv{j}[ii] = v{j};")
            out += [f"bt{j}_{k}[ii] = t{j}_{k};" for k in range(K)]

    # ---- Hessian: the reverse sweep of one element, its input terms into tile buffers
    def contribution(self, j, o, w, terms, out, flush):
        """Record j's operand o receives adjoint `w` and lane terms `terms`."""
        K, p = self.K, self.prog.recs[j]
        if p.name == "GATHER":
            name = f"cg{j}"
            if self.grad:
                out.append(f"{name}[ii] = {w};")
            out += [f"{name}_{k}[ii] = {terms[k]};" for k in range(K)]
            flush.append((name, "gather", p.b))
            return
        src = self.prog.sources[(j, o)]
        if src[0] == "rec":
            q = src[1]
            out.append(f"w{q} = fa_hv_add(w{q}, {w});")      # w{q} starts a known 0.0
            out += [f"wd{q}_{k} = fa_hv_add(wd{q}_{k}, {terms[k]});" for k in range(K)]
        elif src[0] in ("x", "xs"):
            name = f"c{j}_{o}"
            if self.grad:
                out.append(f"{name}[ii] = {w};")
            out += [f"{name}_{k}[ii] = {terms[k]};" for k in range(K)]
            flush.append((name, src[0], src[1]))
        # constants: no adjoint

    def reverse(self, out, flush):
        K, prog = self.K, self.prog
        for j in range(len(prog.recs)):
            seed = _c_double(prog.seed) if j == prog.sum_of else "0.0"
            out.append(f"double w{j} = {seed};")
            out += [f"double wd{j}_{k} = 0.0;" for k in range(K)]
        for j in reversed(range(len(prog.recs))):
            p = prog.recs[j]
            if p.name == "GATHER":
                # a gather's partial is 1: gd[s] += AZ(wd, 1) + AZ(w, 0) (hvp_lanes.h)
                self.contribution(j, 0, f"w{j}", [f"wd{j}_{k}" for k in range(K)], out, flush)
                continue
            N = p.name
            names = ["a"] if p.kind == "unary" else ["a", "b"]
            for o, nm in enumerate(names):
                if p.flags & (_codegen.A_PASSIVE if o == 0 else _codegen.B_PASSIVE) or \
                        prog.sources[(j, o)][0] in ("k", "cv"):     # constants: no adjoint
                    continue
                a0 = ", ".join([f"(fa_dual){{a{j}_{q}, 0.0}}" for q in range(len(names))] +
                               [f"(fa_dual){{v{j}, 0.0}}"])
                terms = []
                for k in range(K):
                    args = ", ".join([f"(fa_dual){{a{j}_{q}, a{j}_{q}_{k}}}"
                                      for q in range(len(names))] +
                                     [f"(fa_dual){{v{j}, t{j}_{k}}}"])
                    out.append(f"const fa_dual d{j}{nm}_{k} = fa_dd{nm}_{N}({args});")
                    terms.append(f"fa_hv_add(fa_hv_az(wd{j}_{k}, d{j}{nm}_{k}.v), "
                                 f"fa_hv_az(w{j}, d{j}{nm}_{k}.d))")
                self.contribution(j, o, f"fa_hv_az(w{j}, fa_dd{nm}_{N}({a0}).v)", terms, out,
                                  flush)

    def flush(self, items):
        """C adding the tile's input terms to G (unless not self.grad) and HS (lane-major:
        HS[k * nin + s]), item after item; a run of consecutive items of input ranges
        goes through `_flush_run` (one pass over B's rows, the same sums in the same
        order)."""
        out, j = [], 0
        while j < len(items):
            e = j
            while e < len(items) and items[e][1] == "x":
                e += 1
            if e - j > 1:
                out += self._flush_run(items[j:e])
                j = e
            else:
                out += self._flush_items(items[j:j + 1])
                j += 1
        return out

    def _flush_run(self, run):
        """Items of input ranges [base + i0, base + i0 + m) in one pass: the rows every
        item reaches (the interior) add the items' terms in item order in one loop;
        the few rows at either edge keep one loop per item, in item order.  Each row
        gets the same terms in the same order as item after item, so the same bits
        (with one pass, the Rosenbrock Hessian's flush reads and writes each row of B
        once rather than three times)."""
        K, nin = self.K, self.prog.nin
        bases = [b for _, _, b in run]
        lo, hi = max(bases), min(bases)
        out = [f"{{ const int64_t lo = i0 + {lo}, hi = i0 + {hi} + m > lo ? "
               f"i0 + {hi} + m : lo;"]
        targets = ([("G", 0, "")] if self.grad else []) + \
            [("HS", k * nin, f"_{k}") for k in range(K)]
        for arr, off, sfx in targets:
            terms = " ".join(f"a += {name}{sfx}[s - {base} - i0];" for name, _, base in run)
            out.append(f"  for (int64_t s = lo; s < hi; s++) {{ double a = {arr}[{off} + s]; "
                       f"{terms} {arr}[{off} + s] = a; }}")
            for name, _, base in run:
                out.append(f"  for (int64_t s = i0 + {base}; s < lo && s < i0 + {base} + m; "
                           f"s++) {arr}[{off} + s] += {name}{sfx}[s - {base} - i0];")
                out.append(f"  for (int64_t s = hi > i0 + {base} ? hi : i0 + {base}; "
                           f"s < i0 + {base} + m; s++) {arr}[{off} + s] += "
                           f"{name}{sfx}[s - {base} - i0];")
        return out + ["}"]

    def _flush_items(self, items):
        """C adding the terms of `items` to G and HS, item after item."""
        K, nin, out = self.K, self.prog.nin, []
        for name, how, base in items:
            if how == "x":
                if self.grad:
                    out.append(f"for (int64_t ii = 0; ii < m; ii++) G[{base} + i0 + ii] += "
                               f"{name}[ii];")
                out += [f"for (int64_t ii = 0; ii < m; ii++) HS[{k * nin + base} + i0 + ii] "
                        f"+= {name}_{k}[ii];" for k in range(K)]
            elif how == "xs":
                gs = f"G[{base}] += {name}[ii]; " if self.grad else ""
                out.append(f"for (int64_t ii = 0; ii < m; ii++) {{ {gs}" +
                           " ".join(f"HS[{k * nin + base}] += {name}_{k}[ii];"
                                    for k in range(K)) + " }")
            else:
                gs = f"G[s] += {name}[ii]; " if self.grad else ""
                out.append(f"for (int64_t ii = 0; ii < m; ii++) {{ const int32_t s = "
                           f"g{base}[i0 + ii]; if (s < {nin}) {{ {gs}" +
                           " ".join(f"HS[(int64_t){k * nin} + s] += {name}_{k}[ii];"
                                    for k in range(K)) + " } }")
        return out


def generate(prog, K, kind):
    """C source of the kernel `fa_lanes` for `prog` with K lanes; kind 'jac' or 'hess'.
    Tiles of TILE elements; per tile one loop per forward segment (a Hessian: one loop
    with the reverse sweep inside), then, for a Hessian, the input terms added to G, HS.
    A Hessian's source also holds `fa_lanes_h`, the same kernel without the gradient
    (G is not touched: `hessian` does not return it), whose HS terms are the same
    expressions, so the same bits (-ffp-contract=off)."""
    if not 1 <= K <= MAX_LANES:
        raise Unsupported(f"{K} colours: compiled lanes carry at most {MAX_LANES}")
    src = [f"/* fastad compiled colour lanes, generator {GENERATOR_VERSION} (docs/sparse.md) */",
           "#include <math.h>\n#include <stdint.h>\n#include <stddef.h>",
           "#define FA_HV_FOLD 1   /* hv_dual.h: known factors and zero terms folded */",
           _headers(), DUAL_PARTIALS, _codegen.LOOP_ATTRIBUTES]
    src += _function(prog, K, kind, "fa_lanes", True)
    if kind == "hess":
        src += _function(prog, K, kind, "fa_lanes_h", False)
    return "\n".join(src + [""])


def _function(prog, K, kind, fname, grad):
    """The lines of one kernel function (see generate); `grad`: a Hessian's adds G."""
    g = _Gen(prog, K, kind, grad)
    gathers = "".join(f", const int32_t *restrict g{b}" for b in range(len(prog.gix)))
    decl = [f"    double bv{j}[{TILE}]; " + " ".join(f"double bt{j}_{k}[{TILE}];"
                                                    for k in range(K))
            for j in sorted(g.buffered)]
    loops, flush = [], []
    for _, js in g.seg:
        body = []
        for j in js:
            g.record(j, body)
        if kind == "jac" and prog.out in js:
            o = prog.out
            body.append(f"outv[i] = v{o};")
            body += [f"B[{k * prog.L} + i] = t{o}_{k};" for k in range(K)]
        if kind == "hess":
            g.reverse(body, flush)
        loops.append("    for (int64_t ii = 0; ii < m; ii++) {\n"
                     "      const int64_t i = i0 + ii; (void)i;\n" +
                     "".join(f"      {x}\n" for x in body) + "    }")
    for name, _how, _ in flush:         # the terms of G (if grad), then of HS's lanes
        decl.append("    " + (f"double {name}[{TILE}]; " if grad else "") +
                    " ".join(f"double {name}_{k}[{TILE}];" for k in range(K)))
    # the tile buffers live on the calling thread's stack, all at once: bounded, so that
    # a tape with many reads and colours is refused here rather than overflowing a
    # thread's stack (8 MB for the main thread, often less for others) in the call
    frame = sum(x.count("[") for x in decl) * TILE * 8
    if frame > MAX_FRAME:
        raise Unsupported(f"the kernel's tile buffers would take {frame >> 10} kB of stack "
                          f"(at most {MAX_FRAME >> 10} kB)")
    if kind == "jac":
        sig = "double *restrict outv, double *restrict B"
    else:
        sig = "double *restrict G, double *restrict HS"
    # per tile t: B's rows [z[t], z[t + 1]) (and the gradient's) are zeroed just before
    # the tile adds to them (no tile before t touched them), the rows after the last
    # tile's at its end: no separate pass over B (Kernel._tile_plan).  After the loop the
    # first nrec nonzeros are recovered from B through rsrc (recovering per tile inside
    # the loop, while the rows are in cache, made GCC 12 generate slower element loops:
    # 0.47 against 0.43 ms for the Rosenbrock Hessian, 3.2 against 2.35 ms for the banded
    # Jacobian's kernel)
    sig += (", const int64_t *restrict z, const int32_t *restrict rsrc, int64_t nrec, "
            "double *restrict data")
    Bn, rows = ("B", prog.L) if kind == "jac" else ("HS", prog.nin)
    gz = "G[s] = 0.0; " if grad else ""
    zero = [] if kind == "jac" else [
        f"    for (int64_t s = z[t]; s < z[t + 1]; s++) {{ {gz}" +
        " ".join(f"HS[{k * rows} + s] = 0.0;" for k in range(K)) + " }"]
    tail = [] if kind == "jac" else [
        f"    if (i0 + m == {prog.L}) for (int64_t s = z[t + 1]; s < {rows}; s++) {{ " +
        gz + " ".join(f"HS[{k * rows} + s] = 0.0;" for k in range(K)) + " }"]
    after = [f"  for (int64_t p = 0; p < nrec; p++) data[p] = {Bn}[rsrc[p]];"]
    head = (f"  for (int64_t i0 = 0, t = 0; i0 < {prog.L}; i0 += {TILE}, t++) {{"
            if kind == "hess" else f"  for (int64_t i0 = 0; i0 < {prog.L}; i0 += {TILE}) {{")
    proto = (f"FA_LOOPFN void {fname}(const double *restrict xe, const float *restrict S"
             f"{gathers}, {sig})")
    return [proto + ";", proto, "{", *([] if grad or kind == "jac" else ["  (void)G;"]),
            head, f"    const int64_t m = {prog.L} - i0 < {TILE} ? {prog.L} - i0 : {TILE};",
            *decl,
            *zero, *loops, *("    " + x for x in g.flush(flush)), *tail,
            "  }", *after, "}"]


# ------------------------------------------------------------------------ compiling

# Compiles of one kernel (one key) are serialized, so two threads never compile the same
# C; different kernels compile at the same time, and no lock is held by a call (calls
# keep the interpreted sweeps while a kernel compiles).  _lock guards the dict only.
_lock = threading.Lock()
_key_locks = {}


def _key_lock(key):
    with _lock:
        return _key_locks.setdefault(key, threading.Lock())


def _key(source):
    from fastad import native
    argv, ident = native.compiler()
    h = hashlib.blake2b(digest_size=20)
    h.update(source.encode())
    h.update(repr((argv, ident, native.flags() + OPT_FLAGS)).encode())
    return h.hexdigest()


def _compile(source, path, workdir):
    from fastad import native
    native.compile_c(source, path, workdir, OPT_FLAGS, prefix="fastad-lanes-")


class Kernel:
    """The compiled colour-lane kernel of one tape and colouring.  Construction generates
    the C and loads it if the disk cache has it; `build()` compiles it (raises
    fastad.native.NativeError); calling it takes the flat inputs."""

    def __init__(self, prog, kind, K, colours, col, ncols):
        from fastad import native
        self.prog, self.kind, self.K = prog, kind, K
        self.source = generate(prog, K, kind)
        self.key = _key(self.source)
        self.fn = self.fn_h = None
        self.uses = 0                   # calls made before the kernel was built
        self.error = None               # why compiling failed (first line), or None
        self.thread = None              # the background compile (start), or None
        self.seconds = None             # compile time, or None when loaded from the cache
        col = np.asarray(col, dtype=np.int64)
        colours = np.asarray(colours, dtype=np.int64)
        has = col >= 0
        # the seeds, lane-major: S[k, s] = 1 where input slot s's column has colour k (0
        # for data inputs and constants).  Read from memory, not computed from the
        # colours: GCC does not vectorize the element loop when a compare feeds fa_naz.
        # float32 (0 and 1 are exact): half the memory traffic of doubles
        S = np.zeros((K, prog.nin + len(prog.consts)), dtype=np.float32)
        idx = np.nonzero(has)[0]
        S[colours[col[idx]], idx] = 1.0
        self.S = S
        self.xe = np.asarray(prog.consts, dtype=np.float64)
        self.gix = [np.ascontiguousarray(g) for g in prog.gix]
        self.src = np.nonzero(has)[0]                     # input slots with a column
        self.dst = col[has]                               # ... and their columns
        self.identity = (len(self.src) == ncols == prog.nin and
                         np.array_equal(self.dst, np.arange(ncols)))
        self.ncols = ncols
        # column j of B = H S is input slot src_cols[j] (the Hessian's columns)
        self.src_cols = np.empty(ncols, dtype=np.int64)
        self.src_cols[self.dst] = self.src
        self.identity_b = kind == "jac" or self.identity
        self._B, self._busy = None, threading.Lock()
        self._start_lock = threading.Lock()     # start(): one background compile
        self._map = None                # (sources, their indices into B, int32?)
        self.args = [self.S.ctypes.data] + [g.ctypes.data for g in self.gix]
        argv, _ = native.compiler()
        if argv is not None:
            for d in dict.fromkeys([native.cache_dir(), native._writable_dir()]):
                if self._load(os.path.join(d, f"fastad-lanes-{self.key}.so")):
                    break

    def _load(self, path):
        if not os.path.exists(path):
            return False
        try:
            lib = ctypes.CDLL(path)
            fns = [lib.fa_lanes] + ([lib.fa_lanes_h] if self.kind == "hess" else [])
        except (OSError, AttributeError):
            return False
        for fn in fns:
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * (2 + len(self.gix) + 4) + \
                [ctypes.c_int64, ctypes.c_void_p]
        # fn_h: a Hessian's kernel without the gradient (generate)
        self.lib, self.fn_h, self.fn = lib, fns[-1], fns[0]
        try:
            os.utime(path)          # recently used: kept by the cache's trim
        except OSError:
            pass
        return True

    def build(self):
        """Compile (unless another thread or process has) and load the kernel; a failure
        is kept in self.error (its first line), never raised."""
        from fastad import native
        import time
        if self.fn is not None:
            return
        try:
            d = native._writable_dir()
            path = os.path.join(d, f"fastad-lanes-{self.key}.so")
            with _key_lock(self.key):
                if self.fn is None and not self._load(path):
                    t0 = time.perf_counter()
                    _compile(self.source, path, d)
                    seconds = time.perf_counter() - t0
                    if not self._load(path):
                        raise native.NativeError(f"the compiled code at {path} could not "
                                                 "be loaded")
                    self.seconds = seconds
            native._trim(d, path)
        except native.NativeError as err:
            self.error = str(err).splitlines()[0]

    def start(self):
        """build() in a daemon thread, once (calls keep the interpreted sweeps meanwhile)."""
        with self._start_lock:
            if self.thread is not None:
                return
            self.thread = threading.Thread(target=self.build, name="fastad-lanes",
                                           daemon=True)
            self.thread.start()

    def wait(self, timeout=None):
        """Wait for a background compile (tests, benchmarks)."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _recovery_map(self, sources):
        """(sources, int32 indices into the B the kernel writes or None, int64 ones, z)
        for `sources` (flat indices into the lane-major K x rows B; for a Hessian whose
        columns are not its input slots in order, composed with that order), checked
        against B's size once and cached for that `sources` object.  When B has more than
        INDEX32 entries the int32 ones are None: the kernel recovers nothing and the call
        uses numpy's take on the int64 ones."""
        m = self._map                       # one read: another thread may replace it
        if m is None or m[0] is not sources:
            src = np.asarray(sources, dtype=np.int64)
            rows = self.prog.L if self.kind == "jac" else self.prog.nin
            size = self.K * rows
            if not self.identity_b:         # column r of B[:, src_cols] is src_cols[r]
                src = (src // self.ncols) * rows + self.src_cols[src % self.ncols]
            if len(src) and (src.min() < 0 or src.max() >= size):
                raise ValueError("fastad internal error: a recovery index outside B")
            src = np.ascontiguousarray(src)
            m = (sources, src.astype(np.int32) if size <= INDEX32 else None, src,
                 self._tile_plan())
            self._map = m
        return m

    def _tile_plan(self):
        """z: per tile t of TILE elements, B's rows z[t]..z[t+1] that a Hessian's kernel
        zeroes before tile t adds to its rows: every row the tile touches first lies
        below z[t + 1], and no earlier tile touched a row at or above z[t] (so no term is
        lost and no separate pass zeroes B); rows no tile touches are zeroed after the
        last.  All zeros for a Jacobian (its kernel writes every entry of B)."""
        L = self.prog.L
        T = -(-L // TILE)
        z = np.zeros(T + 1, dtype=np.int64)
        if self.kind == "jac":
            return z
        nin = self.prog.nin
        first = np.full(nin, T, dtype=np.int64)     # T: no tile touches the row
        tiles = np.arange(L, dtype=np.int64) // TILE
        for src in self.prog.sources.values():
            if src[0] == "x":               # element i touches row base + i
                np.minimum(first[src[1]:src[1] + L], tiles, out=first[src[1]:src[1] + L])
            elif src[0] == "xs":            # every element touches the row
                first[src[1]] = 0
        for g in self.gix:                  # element i touches row g[i] (inputs only)
            ok = g < nin
            np.minimum.at(first, g[ok], tiles[ok])
        top = np.full(T, -1, dtype=np.int64)    # per tile: the last row it touches first
        hit = np.nonzero(first < T)[0]
        np.maximum.at(top, first[hit], hit)
        z[1:] = np.maximum.accumulate(top) + 1
        return z

    def __call__(self, x, sources, grad=True):
        """(output values, nonzeros) for a Jacobian, (gradient, nonzeros) for a Hessian:
        the kernel's B = J S or H S (lane-major: B[k] holds colour k's column) gathered
        through `sources`, flat indices into B.  A Hessian's with grad=False: (None,
        nonzeros), by the kernel that does not compute the gradient (same nonzeros)."""
        x = np.asarray(x, dtype=np.float64)
        nin = self.prog.nin
        if x.shape != (nin,):
            raise ValueError(f"fastad: expected {nin} inputs, got {x.shape}")
        xe = np.concatenate((x, self.xe)) if len(self.xe) else np.ascontiguousarray(x)
        # B is kept between calls (fresh pages fault on every call: 0.1 ms at n = 10^5);
        # a call finding it in use by another thread takes a fresh one
        mine = self._busy.acquire(blocking=False)
        try:
            B = self._B if mine and self._B is not None else None
            _, src32, src, z = self._recovery_map(sources)
            data = np.empty(len(src))       # fresh per call: never aliases a result
            tail = (z.ctypes.data, (src32 if src32 is not None else z).ctypes.data,
                    len(src) if src32 is not None else 0, data.ctypes.data)
            if B is None:                   # zeroed by the kernel, tile by tile
                B = np.empty((self.K, self.prog.L if self.kind == "jac" else nin))
            if self.kind == "jac":
                first = np.empty(self.prog.L)
                self.fn(xe.ctypes.data, *self.args, first.ctypes.data, B.ctypes.data, *tail)
            elif not grad:
                self.fn_h(xe.ctypes.data, *self.args, None, B.ctypes.data, *tail)
                first = None
            else:
                G = np.empty(nin)           # zeroed by the kernel with B's rows
                self.fn(xe.ctypes.data, *self.args, G.ctypes.data, B.ctypes.data, *tail)
                if self.identity:
                    first = G
                else:
                    first = np.zeros(self.ncols)
                    first[self.dst] = G[self.src]
            if mine and self._B is None:
                self._B = B
            if src32 is None:               # more than INDEX32 entries in B
                data = B.reshape(-1).take(src)
            return first, data
        finally:
            if mine:
                self._busy.release()
