"""C source for a tape's batch-major sweeps: fastad.vmap's block of lanes compiled
(docs/native.md, "Batched sweeps"; docs/scale.md).

fastad._batch sweeps a block of B points batch-major: slot s of lane l lives at
v[s*B + l], and every record runs over the block's lanes.  The interpreter does this by
dispatching each record once per block (csrc/batch.h); the code written here is the same
sweep with B = lanes_for(nslot) fixed at compile time and no dispatch: one statement per record, its
element loop wrapped around a loop over the block's lanes that GCC vectorizes (each lane is
one point, so lane l of every statement is exactly the single call's statement).

Every lane computes what the single call computes, bit for bit, in the tiers' common
order (fastad._codegen: native code equals the interpreter): the same op table rules
(csrc/ops.h through csrc/native_kernels.h, embedded as text), libm where the single call
has libm and numpy's loop where the single call has numpy's loop (a ranged record of at
least 16 elements of an op that is not correctly rounded), the reverse sweep's zero tests
and its sums in the same order.  Guards are checked lane by lane into bad[l], as
csrc/batch.h does, so fastad.batching's regrouping of lanes is unchanged.

Covered: scalar and ranged elementwise records (operand strides 0 or 1), guards, SUM,
CUMSUM, GATHER and LOOP records (recurrences) -- the records of a Python loop's program,
rolled or not, and of a vectorized program.  Anything else (products, maxima, matrix
products, linear algebra, callbacks) raises Unsupported and the batch keeps the interpreter's
batch-major sweep.
"""
from fastad import _codegen
from fastad._codegen import A_PASSIVE, B_PASSIVE, RANGED, TRUE, Unsupported

# bumped whenever the generated code changes for the same tape (the key hashes the source)
GENERATOR_VERSION = 3

# lanes per block: at least one AVX-512 register of doubles, at most 32, and within the
# interpreter's cache bound (fastad._batch: 2^15 doubles per array) where that allows 8:
# the Rosenbrock loop (798 slots) ran 0.25 us a point with 8 lanes, 0.25 with 16, 0.23
# with 32 (docs/native.md, "Batched sweeps")
MIN_LANES, MAX_LANES, BLOCK_DOUBLES = 8, 32, 1 << 15


def lanes_for(nslot):
    """Lanes per compiled block for a tape of `nslot` slots: a power of two."""
    L = MIN_LANES
    while 2 * L <= MAX_LANES and 2 * L * max(nslot, 1) <= BLOCK_DOUBLES:
        L *= 2
    return L


# records per C function (each kept out of line): the compiler's time stays linear
CHUNK = 40

# the numpy-loop threshold of the single call (csrc/sweeps.h FA_VEC_MIN, _codegen.fwd_stmt)
VEC_MIN = 16

# longer tapes stay in the interpreter's batch-major sweep: their C takes long to compile
MAX_RECORDS = 20_000

_ELEMENTWISE = ("unary", "binary")
_STRUCT = ("SUM", "CUMSUM", "GATHER", "LOOP")


def _lanes(body):
    # a lane reads and writes its own lane of every slot only (slots are FA_L apart), so
    # the lanes carry no dependence: vectorized without GCC's run-time overlap checks
    return f"FA_EACH_LANE {{ {body} }}"


LANES_MACRO = """#define FA_EACH_LANE _Pragma("GCC ivdep") for (int l = 0; l < FA_L; l++)
"""


def _arg(p, which, k):
    """The operand `which` ('a', 'b' or 'r') of element k (a C expression or None for a
    scalar record) of lane l, in the batch-major layout."""
    slot, stride = {"a": (p.a, p.sa), "b": (p.b, p.sb), "r": (p.r, 1)}[which]
    if k is None or not stride:
        return f"v[{slot} * FA_L + l]"
    return f"v[({slot} + {k}) * FA_L + l]"


def _args(p, k):
    if p.kind == "unary":
        return f"{_arg(p, 'a', k)}, {_arg(p, 'r', k)}"
    return f"{_arg(p, 'a', k)}, {_arg(p, 'b', k)}, {_arg(p, 'r', k)}"


def _value(p, k):
    if p.kind == "unary":
        return f"fa_v_{p.name}({_arg(p, 'a', k)})"
    return f"fa_v_{p.name}({_arg(p, 'a', k)}, {_arg(p, 'b', k)})"


def _numpy_loop(p, variable):
    """Whether the single call takes this record's values from numpy's loop (then the
    batch does too, over the block in one call, when every operand is a range or a
    constant: lane 0 of a constant is every lane's value)."""
    if not (p.flags & RANGED and p.n >= VEC_MIN and p.name not in _codegen._exact()):
        return False
    for slot, stride in ((p.a, p.sa), (p.b, p.sb))[:1 if p.kind == "unary" else 2]:
        if not stride and variable[slot]:
            raise Unsupported(f"record {p.i} ({p.name}) broadcasts a computed value over "
                              f"{p.n} elements through numpy's loop")
    return True


def _body(p):
    """A LOOP record's body (fastad._codegen's parse: scalar records whose slots are C
    expressions in the iteration j), each slot parenthesized for the lane layout."""
    out = []
    for q in p.body:
        c = _codegen.Rec()
        for f in _codegen.Rec.__slots__:
            setattr(c, f, getattr(q, f))
        c.r, c.a, c.b = f"({q.r})", f"({q.a})", f"({q.b})"
        out.append(c)
    return out


def _gather(p, a):
    """A GATHER over the array `a` (v: values, t: tangents): each lane copies its own lane
    of the gathered slot."""
    return (f"for (int64_t k = 0; k < {p.n}; k++) {{ const double *s = {a} + "
            f"(int64_t)ix[{p.a} + k] * FA_L; "
            + _lanes(f"{a}[({p.r} + k) * FA_L + l] = s[l];") + " }")


def fwd_stmt(p, variable):
    N = p.name
    if N == "LOOP":         # a recurrence (csrc/loop.h): its body per iteration, per lane
        body = " ".join(fwd_stmt(q, variable) for q in _body(p))
        return f"for (int64_t j = 0; j < {p.n}; j++) {{ {body} }}"
    if p.kind == "guard":
        want = 1 if p.flags & TRUE else 0
        return _lanes(f"bad[l] |= (uint8_t)(fa_g_{N}({_arg(p, 'a', None)}, "
                      f"{_arg(p, 'b', None)}) != {want});")
    if not p.flags & RANGED:
        return _lanes(f"{_arg(p, 'r', None)} = {_value(p, None)};")
    if N == "GATHER":
        return _gather(p, "v")
    if N in ("SUM", "CUMSUM"):
        n, m = p.n, p.sa
        keep = "v[(%d + j * %d + k) * FA_L + l] = acc[l];" % (p.r, n) if N == "CUMSUM" else ""
        tail = "" if N == "CUMSUM" else _lanes(f"v[({p.r} + j) * FA_L + l] = acc[l];")
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc[FA_L]; "
                + _lanes("acc[l] = 0.0;")
                + f" for (int64_t k = 0; k < {n}; k++) "
                + _lanes(f"acc[l] += v[({p.a} + j * {n} + k) * FA_L + l]; {keep}")
                + f" {tail} }}")
    loop = (f"for (int64_t k = 0; k < {p.n}; k++) "
            + _lanes(f"{_arg(p, 'r', 'k')} = {_value(p, 'k')};"))
    if _numpy_loop(p, variable):
        return (f"if (!vec({p.op}, v, {p.r} * FA_L, {p.a} * FA_L, {p.sa}, {p.b} * FA_L, "
                f"{p.sb}, {p.n} * FA_L)) {{ {loop} }}")
    return loop


def _targ(p, which, k):
    """_arg over the tangents t instead of the values v."""
    return "t" + _arg(p, which, k)[1:]


def tan_stmt(p):
    """A record's tangent sweep, lane by lane the single call's (_codegen.tan_stmt)."""
    N = p.name
    if N == "LOOP":
        body = " ".join(x for x in (tan_stmt(q) for q in _body(p)) if x)
        return f"for (int64_t j = 0; j < {p.n}; j++) {{ {body} }}" if body else None
    if p.kind == "guard":
        return None
    if N == "GATHER":
        return _gather(p, "t")
    if N in ("SUM", "CUMSUM"):
        n, m = p.n, p.sa
        term = f"t[({p.a} + j * {n} + k) * FA_L + l]"
        if N == "SUM":
            return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc[FA_L]; "
                    + _lanes("acc[l] = 0.0;") + f" for (int64_t k = 0; k < {n}; k++) "
                    + _lanes(f"acc[l] += fa_naz({term}, 1.0);")
                    + " " + _lanes(f"t[({p.r} + j) * FA_L + l] = acc[l];") + " }")
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc[FA_L]; "
                + _lanes("acc[l] = 0.0;") + f" for (int64_t k = 0; k < {n}; k++) "
                + _lanes(f"acc[l] += {term}; t[({p.r} + j * {n} + k) * FA_L + l] = acc[l];")
                + " }")
    k = "k" if p.flags & RANGED else None
    s = f"{_targ(p, 'r', k)} = fa_naz({_targ(p, 'a', k)}, fa_da_{N}({_args(p, k)}))"
    if p.kind == "binary":
        s += f" + fa_naz({_targ(p, 'b', k)}, fa_db_{N}({_args(p, k)}))"
    if k is None:
        return _lanes(s + ";")
    return f"for (int64_t k = 0; k < {p.n}; k++) " + _lanes(s + ";")


def _add_if(target, w, term):
    """target += term where w != 0 (the single call's skip of a zero adjoint), as a
    select GCC vectorizes: the same bits, and the target untouched where w is 0."""
    return (f"{{ const double t_ = {target} + {term}; "
            f"{target} = {w} != 0.0 ? t_ : {target}; }}")


def rev_stmt(p, mine=()):
    """A record's reverse sweep, lane by lane the single call's (_codegen.rev_stmt with
    the passive flags honoured; csrc/sweeps.h).  `mine`: its operand loops that assign
    their adjoints (0.0 + term, _codegen.assigned_loops), whose slots are not zeroed."""
    N = p.name
    if N == "LOOP":         # iterations backwards, the body's records backwards
        body = " ".join(x for x in (rev_stmt(q) for q in _body(p)[::-1]) if x)
        return f"for (int64_t j = {p.n} - 1; j >= 0; j--) {{ {body} }}" if body else None
    if p.kind == "guard":
        return None
    pa, pb = bool(p.flags & A_PASSIVE), bool(p.flags & B_PASSIVE)
    if not p.flags & RANGED:
        parts = []
        w = f"g[{p.r} * FA_L + l]"
        for d, slot, skip in (("da", p.a, pa), ("db", p.b, pb)):
            if skip or (d == "db" and p.kind == "unary"):
                continue
            parts.append(_add_if(f"g[{slot} * FA_L + l]", "w",
                                 f"fa_naz(w, fa_{d}_{N}({_args(p, None)}))"))
        if not parts:
            return None
        return _lanes(f"const double w = {w}; " + " ".join(parts))
    if pa and (p.kind != "binary" or pb):
        return None
    if N == "GATHER":
        return (f"for (int64_t k = 0; k < {p.n}; k++) {{ double *d = g + "
                f"(int64_t)ix[{p.a} + k] * FA_L; "
                + _lanes(f"d[l] += g[({p.r} + k) * FA_L + l];") + " }")
    if N == "SUM":
        n, m = p.n, p.sa
        if "sum" in mine:       # 0.0 + w: what the zeroed slot plus w gives, w = 0 included
            return (f"for (int64_t j = 0; j < {m}; j++) for (int64_t k = 0; k < {n}; k++) "
                    + _lanes(f"g[({p.a} + j * {n} + k) * FA_L + l] = "
                             f"0.0 + g[({p.r} + j) * FA_L + l];"))
        return (f"for (int64_t j = 0; j < {m}; j++) for (int64_t k = 0; k < {n}; k++) "
                + _lanes("const double w = g[(%d + j) * FA_L + l]; " % p.r
                         + _add_if(f"g[({p.a} + j * {n} + k) * FA_L + l]", "w", "w")))
    if N == "CUMSUM":
        n, m = p.n, p.sa
        return (f"for (int64_t j = 0; j < {m}; j++) {{ double acc[FA_L]; "
                + _lanes("acc[l] = 0.0;")
                + f" for (int64_t k = {n} - 1; k >= 0; k--) "
                + _lanes(f"acc[l] += g[({p.r} + j * {n} + k) * FA_L + l]; "
                         f"g[({p.a} + j * {n} + k) * FA_L + l] += acc[l];") + " }")
    # the single call's order (fa_rev_ranged): a's loop, b's loop, then broadcast sums
    out, tail = [], []
    for d, slot, stride, skip in (("da", p.a, p.sa, pa), ("db", p.b, p.sb, pb)):
        if skip or (d == "db" and p.kind == "unary"):
            continue
        term = f"fa_naz(g[({p.r} + k) * FA_L + l], fa_{d}_{N}({_args(p, 'k')}))"
        if stride:
            op = "= 0.0 +" if d in mine else "+="
            out.append(f"for (int64_t k = 0; k < {p.n}; k++) "
                       + _lanes(f"g[({slot} + k) * FA_L + l] {op} {term};"))
        else:
            out.append(f"double acc_{d}[FA_L]; " + _lanes(f"acc_{d}[l] = 0.0;")
                       + f" for (int64_t k = 0; k < {p.n}; k++) "
                       + _lanes(f"acc_{d}[l] += {term};"))
            tail.append(_lanes(f"g[{slot} * FA_L + l] += acc_{d}[l];"))
    return "{ " + " ".join(out + tail) + " }"


# ------------------------------------------------------------------------ fused chains
# Consecutive ranged elementwise records over the same n elements run as one loop over
# (element, lane), their intermediate values in registers: a record's values are the
# same whatever loop computes them.  The reverse sweep's loops fuse only where that keeps
# every adjoint's sum in the unfused order (_rev_groups).

def _operands(p):
    out = [("a", p.a, p.sa, bool(p.flags & A_PASSIVE))]
    if p.kind == "binary":
        out.append(("b", p.b, p.sb, bool(p.flags & B_PASSIVE)))
    return out


def _span(p, slot, stride):
    return (slot, slot + (p.n if stride else 1))


def _overlap(x, y):
    return x[0] < y[1] and y[0] < x[1]


def _fusable(p, variable):
    return (p.flags & RANGED and p.kind in _ELEMENTWISE and p.n > 0
            and not _numpy_loop(p, variable))


def _reads_members(chain, p):
    """Whether p reads the chain's results only element by element (slot for slot the
    range of a member's result): then its element k needs element k of them only."""
    for _, slot, stride, _ in _operands(p):
        for q in chain:
            if _overlap(_span(p, slot, stride), (q.r, q.r + q.n)):
                if not (stride and slot == q.r):
                    return False
    return True


def _hoistable(chain, p):
    """Whether p (not a member) may run before the chain's loop, which then goes on past
    it: p reads none of the chain's results, and has no reverse statement (a guard, a
    record of passive operands), so the reverse sweep's order does not change."""
    if p.flags & RANGED or p.kind not in _ELEMENTWISE + ("guard",) or \
            rev_stmt(p) is not None:
        return False
    reads = [(p.a, p.a + 1)] + ([(p.b, p.b + 1)] if p.kind != "unary" else [])
    return not any(_overlap(x, (q.r, q.r + q.n)) for x in reads for q in chain)


def chains(recs, variable):
    """Records grouped for the forward sweep: lists of fused members or single records."""
    out, cur = [], []
    for p in recs:
        if _fusable(p, variable) and cur and cur[0].n == p.n and _reads_members(cur, p):
            cur.append(p)
            continue
        if cur and _hoistable(cur, p):
            out.append([p])         # before the chain, which goes on after it
            continue
        if cur:
            out.append(cur)
        cur = [p] if _fusable(p, variable) else []
        if not cur:
            out.append([p])
    if cur:
        out.append(cur)
    return out


def _rev_groups(chain):
    """A forward chain split, in its order, into groups whose reverse loops fuse: the
    adjoint ranges the members add to are, pairwise, disjoint or the same range (then
    element k of each receives its terms at iteration k, in the unfused order).  A record
    whose own two ranges straddle (a and b of x[k] * x[k+1]) stays alone."""
    def fits(x, y):
        return not _overlap(x[0], y[0]) or x == y

    groups, cur, spans = [], [], []
    for p in chain:
        mine = [(_span(p, slot, stride), stride) for _, slot, stride, passive in _operands(p)
                if not passive]
        if not all(fits(x, y) for i, x in enumerate(mine) for y in mine[i + 1:]):
            groups += [g for g in (cur, [p]) if g]
            cur, spans = [], []
            continue
        if cur and not all(fits(x, y) for x in mine for y in spans):
            groups.append(cur)
            cur, spans = [], []
        cur.append(p)
        spans += mine
    if cur:
        groups.append(cur)
    return groups


def _fused_fwd(chain):
    local = {q.r: f"f{j}" for j, q in enumerate(chain)}
    body = []
    for j, p in enumerate(chain):
        args = []
        for _, slot, stride, _ in _operands(p):
            args.append(local[slot] if stride and slot in local else
                        f"v[({slot} + k) * FA_L + l]" if stride else f"v[{slot} * FA_L + l]")
        body.append(f"const double f{j} = fa_v_{p.name}({', '.join(args)}); "
                    f"v[({p.r} + k) * FA_L + l] = f{j};")
    return (f"for (int64_t k = 0; k < {chain[0].n}; k++) " + _lanes(" ".join(body)))


def _fused_rev(group, assign):
    """One loop over (element, lane) of the group's reverse statements, members in
    reverse order; broadcast operands' sums added after it, in the same order."""
    pre, body, tail = [], [], []
    for j, p in reversed(list(enumerate(group))):
        mine = assign.get(p.i, ())
        for d, slot, stride, passive in _operands(p):
            if passive:
                continue
            term = f"fa_naz(g[({p.r} + k) * FA_L + l], fa_d{d}_{p.name}({_args(p, 'k')}))"
            if stride:
                op = "= 0.0 +" if ("d" + d) in mine else "+="
                body.append(f"g[({slot} + k) * FA_L + l] {op} {term};")
            else:
                acc = f"acc{j}{d}"
                pre.append(f"double {acc}[FA_L]; " + _lanes(f"{acc}[l] = 0.0;"))
                body.append(f"{acc}[l] += {term};")
                tail.append(_lanes(f"g[{slot} * FA_L + l] += {acc}[l];"))
    if not body:
        return None
    return ("{ " + " ".join(pre) + f" for (int64_t k = 0; k < {group[0].n}; k++) "
            + _lanes(" ".join(body)) + " " + " ".join(tail) + " }")


def check(recs):
    """Raise Unsupported for a record the batched code does not cover."""
    if len(recs) > MAX_RECORDS:
        raise Unsupported(f"the tape has {len(recs)} records, more than the {MAX_RECORDS} "
                          "the batched code generator compiles")
    for p in recs:
        if p.kind in _ELEMENTWISE or p.kind == "guard":
            continue
        if p.name in _STRUCT and p.flags & RANGED:
            continue
        raise Unsupported(f"the tape has a {p.name} record, which the batched code "
                          "generator does not compile")


def has_trig(recs):
    """Whether a record is a sin or cos (whose batched values the interpreter takes from
    libmvec under fastad.batching.set_vector_math(True))."""
    return any(p.name in ("SIN", "COS") for p in recs)


def _functions(stmts, name, sig, call):
    fns, calls = [], []
    body = [s for s in stmts if s is not None]
    for c in range(0, max(len(body), 1), CHUNK):
        part = body[c:c + CHUNK]
        fns.append(f"FA_NOINLINE static void {name}_{c // CHUNK}({sig})\n{{\n    "
                   + "(void)v; (void)ix;\n    " + "\n    ".join(part) + "\n}\n")
        calls.append(f"    {name}_{c // CHUNK}({call});")
    return fns, calls


def generate(rows, nslot, nin, lanes=None):
    """The C of a shared object with the batch-major sweeps of the records `rows`
    (fastad._native.raw_records) for blocks of `lanes` lanes:

        void fastad_bfwd(double *v, uint8_t *bad, const int32_t *ix, fa_native_vec_fn vec)
        void fastad_brev(const double *v, double *g, const int32_t *ix)
        void fastad_bzero(double *g)
        void fastad_btan(const double *v, double *t, const int32_t *ix)

    v, g, t: nslot * lanes doubles, slot s of lane l at s * lanes + l (inputs and constants
    in v already; g zeroed by fastad_bzero, then seeded; t seeded at the inputs, zero at
    the constants, every other slot written); bad[l] |= 1 where lane l fails a guard.
    `lanes`: default lanes_for(nslot).  Returns (the source, the [lo, hi) slot ranges
    where no seed may lie)."""
    lanes = lanes or lanes_for(nslot)
    recs = _codegen.parse(rows)
    check(recs)
    variable = _codegen.written_slots(recs, nslot)
    variable[:nin] = True
    groups = chains(recs, variable)
    fwd = [fwd_stmt(c[0], variable) if len(c) == 1 else _fused_fwd(c) for c in groups]
    assign, ranges = _codegen.assigned_loops(recs)
    rev = []
    for c in groups[::-1]:
        for g in _rev_groups(c)[::-1]:
            rev.append(rev_stmt(g[0], assign.get(g[0].i, ())) if len(g) == 1
                       else _fused_rev(g, assign))
    ffns, fcalls = _functions(fwd, "bf", "double *restrict v, uint8_t *restrict bad, "
                              "const int32_t *restrict ix, fa_native_vec_fn vec",
                              "v, bad, ix, vec")
    ffns = [f.replace("(void)v; (void)ix;", "(void)v; (void)ix; (void)bad; (void)vec;")
            for f in ffns]
    rfns, rcalls = _functions(rev, "br", "const double *restrict v, double *restrict g, "
                              "const int32_t *restrict ix", "v, g, ix")
    rfns = [f.replace("(void)v; (void)ix;", "(void)v; (void)ix; (void)g;") for f in rfns]
    tfns, tcalls = _functions([tan_stmt(p) for p in recs], "bt",
                              "const double *restrict v, double *restrict t, "
                              "const int32_t *restrict ix", "v, t, ix")
    tfns = [f.replace("(void)v; (void)ix;", "(void)v; (void)ix; (void)t;") for f in tfns]
    return "".join(
        [_codegen.preamble(), f"/* batched sweeps, generator {GENERATOR_VERSION} */\n",
         f"#define FA_L {lanes}\nconst int fastad_lanes = FA_L;\n", LANES_MACRO]
        + ffns
        + ["void fastad_bfwd(double *v, uint8_t *bad, const int32_t *ix, "
           "fa_native_vec_fn vec)\n{\n" + "\n".join(fcalls) + "\n}\n"]
        + rfns
        + ["void fastad_brev(const double *v, double *g, const int32_t *ix)\n{\n"
           + "\n".join(rcalls) + "\n}\n"]
        + tfns
        + ["void fastad_btan(const double *v, double *t, const int32_t *ix)\n{\n"
           + "\n".join(tcalls) + "\n}\n"]
        + [_zero(ranges, nslot)]), ranges


def _zero(ranges, nslot):
    """fastad_bzero(g): zeroes the adjoints the reverse sweep adds to, every slot outside
    the ranges whose adjoints it assigns (a seed must not lie in those: the caller checks
    against the ranges generate returns)."""
    body, s = [], 0
    for lo, hi in list(ranges) + [(nslot, nslot)]:
        lo, hi = min(max(lo, s), nslot), min(hi, nslot)
        if lo > s:
            body.append(f"    memset(g + {s} * FA_L, 0, {lo - s} * FA_L * sizeof(double));")
        s = max(s, hi)
    return ("#include <string.h>\nvoid fastad_bzero(double *g)\n{\n    (void)g;\n"
            + "\n".join(body) + "\n}\n")
