"""C for the fused elementwise chains of a tape (docs/design.md, "Fusion"; docs/native.md).

The interpreter runs a fused chain tile by tile (csrc/fuse.c); generated code runs it as
one C loop per sweep: forward computes every member of element k in registers and writes
only the live results (and the final sum), tangent and reverse recompute element k's
members from the chain's inputs and propagate through them at once.  Like the interpreter's
fused sweeps, the generated ones never read a non-live member's value from memory, so a
replay may switch tier between its forward and reverse sweep.

Only chains of ops whose values are correctly rounded the same way by numpy's loops and by
the op table's C (arithmetic, sqrt, selects) are compiled this way, so values
are the interpreter's bit for bit; a tape with any other chain stays interpreted
(`compilable`).  Element by element, an adjoint reached through shifted views collects its
terms in another order than the interpreter's tiles: ≤ 1e-14 relative
(docs/conventions.md, "Fused chains").
"""

# ops whose value numpy's loop and the op table's C compute identically (IEEE arithmetic,
# sqrt, selects; the internal ops have no numpy loop at all).  Not maximum & co.: numpy
# and fa_max may pick different zeros of a tie of -0.0 and 0.0
EXACT = {"ADD", "SUBTRACT", "MULTIPLY", "DIVIDE", "NEGATIVE", "SQUARE", "SQRT", "RECIPROCAL",
         "ABSOLUTE", "COPY", "STOP", "SIGNPOS",
         "SELECT", "SELECT_NOT", "LESS_MASK", "LESS_EQUAL_MASK", "EQUAL_MASK",
         "NOT_EQUAL_MASK", "GTSHARE", "FMAXDA", "AZMUL", "GATHER", "SUM"}

A_PASSIVE, B_PASSIVE = 0x04, 0x08

# Products with the absolute-zero rule are fa_naz (csrc/native_kernels.h): the value of
# FA_AZ without a branch.  In a chain of them (w1 = FA_AZ(w2, ..), w0 = FA_AZ(w1, ..)) GCC
# threads FA_AZ's zero tests into jumps, and a loop with jumps does not vectorize: the
# vectorized Rosenbrock's reverse loop ran 4x slower.


class Member:
    __slots__ = ("p", "j", "live", "ca", "cb", "ia", "ib")


def members(recs, chain):
    """The members of one chain (first, end, live) of Tape.fused_chains(), with their
    operand classes as csrc/fuse.c made them: 'int' (an earlier member's whole result),
    'ext' (a range from outside), 'bc' (a broadcast slot)."""
    first, end, live = chain
    ms = [p for p in recs if first <= p.i < end]
    if len(ms) != len(live):
        raise ValueError("fastad internal error: a fused chain does not match the records")
    out, by_r = [], {}
    for j, (p, lv) in enumerate(zip(ms, live)):
        m = Member()
        m.p, m.j, m.live = p, j, lv
        m.ca, m.ia = _cls(p.a, p.sa if p.name != "SUM" else 1, by_r)
        m.cb, m.ib = _cls(p.b, p.sb, by_r) if p.kind == "binary" else ("bc", -1)
        out.append(m)
        if p.name != "SUM":
            by_r[p.r] = j
    return out


def _cls(s, stride, by_r):
    if not stride:
        return "bc", -1
    if s in by_r:
        return "int", by_r[s]
    return "ext", -1


def compilable(rows, chains, names):
    """Can every chain be compiled as one loop with the interpreter's values?  `rows`: the
    raw records, `names`: _codegen.c_names()."""
    for first, end, _ in chains:
        for i in range(first, end):
            c = names[int(rows[i][0])][0]
            if c != "EXT" and c not in EXACT:
                return False
    return True


def _arr(name, s, nin):
    """The array slot s is read from: `name` ("v" values, "g" adjoints), or, for an input
    slot of in-place code (nin > 0: _codegen.inplace_ok), the caller's input array "x" or
    the gradient being written "gx" (docs/native.md, "Inputs read in place")."""
    return {"v": "x", "g": "gx"}[name] if s < nin else name


def _val(m, which, ms, nin=0):
    """C for operand `which` of member m's value at element k."""
    cls, idx, s = (m.ca, m.ia, m.p.a) if which == "a" else (m.cb, m.ib, m.p.b)
    if cls == "int":
        return f"m{idx}"
    v = _arr("v", s, nin)
    return f"{v}[{s} + k]" if cls == "ext" else f"{v}[{s}]"


def _args(m, ms, nin=0):
    a = _val(m, "a", ms, nin)
    if m.p.kind == "unary":
        return f"{a}, m{m.j}"
    return f"{a}, {_val(m, 'b', ms, nin)}, m{m.j}"


def _values(ms, ix, write, nin=0):
    """Statements computing every member's value at element k (writing live ones)."""
    out = []
    for m in ms:
        p = m.p
        if p.name == "SUM":
            continue
        if p.name == "GATHER":
            expr = f"v[{ix}[{p.a} + k]]"
        elif p.kind == "unary":
            expr = f"fa_v_{p.name}({_val(m, 'a', ms, nin)})"
        else:
            expr = f"fa_v_{p.name}({_val(m, 'a', ms, nin)}, {_val(m, 'b', ms, nin)})"
        if m.live and not write:
            expr = f"v[{p.r} + k]"          # written by the forward sweep (either tier)
        # (void): a member nothing reads (a dead intermediate of a recorded adjoint) would
        # be an unused variable, an error under -Werror
        out.append(f"const double m{m.j} = {expr}; (void)m{m.j};")
        if m.live and write:
            out.append(f"v[{p.r} + k] = m{m.j};")
    return out


def _sum(ms):
    return ms[-1] if ms and ms[-1].p.name == "SUM" else None


def _lanes(body, n, acc_term, out):
    """A loop over k < n whose statements `body` end in the final SUM's term `acc_term`,
    added in FA_LANES running sums as the interpreter adds them (csrc/reduce.h): lane j
    takes the elements k = j mod FA_LANES, so the lanes vectorize and both tiers agree."""
    inner = " ".join(body) + f" acc[j] += {acc_term};"
    return ("{ double acc[FA_LANES] = {0.0}; int64_t k0 = 0; "
            f"for (; k0 + FA_LANES <= {n}; k0 += FA_LANES) for (int j = 0; j < FA_LANES; j++) "
            f"{{ const int64_t k = k0 + j; (void)k; {inner} }} "
            f"for (int j = 0; k0 + j < {n}; j++) {{ const int64_t k = k0 + j; (void)k; {inner} }} "
            f"{out} = fa_lanes_total(acc); }}")


def fwd(ms, ix, nin=0):
    """The forward loop; nin > 0: input slots below nin are read from x (in-place code)."""
    n = ms[0].p.n
    S = _sum(ms)
    body = _values(ms, ix, True, nin)
    if S:
        return _lanes(body, n, f"m{S.ia}", f"v[{S.p.r}]")
    return "{ " + f"for (int64_t k = 0; k < {n}; k++) {{ " + " ".join(body) + " } }"


def _tan_of(m, which):
    cls, idx, s = (m.ca, m.ia, m.p.a) if which == "a" else (m.cb, m.ib, m.p.b)
    if cls == "int":
        return f"d{idx}"
    return f"t[{s} + k]" if cls == "ext" else f"t[{s}]"


def tan(ms, ix):
    n = ms[0].p.n
    S = _sum(ms)
    body = _values(ms, ix, False)
    for m in ms:
        p = m.p
        if p.name == "SUM":
            continue
        if p.name == "GATHER":
            expr = f"t[{ix}[{p.a} + k]]"
        else:
            args = _args(m, ms)
            expr = f"fa_naz({_tan_of(m, 'a')}, fa_da_{p.name}({args}))"
            if p.kind == "binary":
                expr += f" + fa_naz({_tan_of(m, 'b')}, fa_db_{p.name}({args}))"
        body.append(f"const double d{m.j} = {expr}; (void)d{m.j};")
        if m.live:
            body.append(f"t[{p.r} + k] = d{m.j};")
    if S:
        return _lanes(body, n, f"fa_naz(d{S.ia}, 1.0)", f"t[{S.p.r}]")
    return "{ " + f"for (int64_t k = 0; k < {n}; k++) {{ " + " ".join(body) + " } }"


# The interpreter's tile (csrc/fuse.h, FA_FUSE_TILE): the reverse loop adds adjoints to
# memory tile by tile in its order, so both tiers agree bit for bit; with more outside
# operands than TERMS_MAX, a shorter tile keeps the buffers on the stack small.
TILE = 512
TERMS_MAX = 16
SHORT_TILE = 64


def rev(ms, ix, passive=True, nin=0, both=False):
    """Reverse, tile by tile: per element, the members' adjoints in registers, last member
    first; the terms for outside ranges (and gathers) go to a tile buffer per operand and
    are added to memory after the tile's element loop, operand by operand in the order the
    interpreter's fused sweep adds them (so the element loop has no store that a later
    element reads, and vectorizes: x[1:] and x[:-1] reach the same slots); the adjoints of
    broadcast operands are summed over the loop and added after it, like the
    interpreter's.  nin > 0: in-place code, whose input slots' values are read from x and
    whose input slots' adjoints are added to gx.  both: the forward sweep too, for a chain
    ending in its SUM (the element values it computes anyway are written where live, and
    the SUM added in the forward sweep's lanes and order: tiles are multiples of FA_LANES,
    so element k goes to lane k mod FA_LANES in element order)."""
    n = ms[0].p.n
    S = _sum(ms)
    pre, post, flush = [], [], []
    body = _values(ms, ix, both, nin)
    for m in ms:
        if m.p.name == "SUM":
            continue
        init = f"g[{m.p.r} + k]" if m.live else "0.0"
        body.append(f"double w{m.j} = {init};")
    if S and not (passive and S.p.flags & A_PASSIVE):
        pre.append(f"const double ws = g[{S.p.r}];")
        if ms[S.ia].live:
            body.append(f"if (ws != 0.0) w{S.ia} += ws;")
        else:   # 0.0 + ws, or nothing added: decided once, so the loop has no branch
            pre.append("const double ws0 = ws != 0.0 ? 0.0 + ws : 0.0;")
            body[body.index(f"double w{S.ia} = 0.0;")] = f"double w{S.ia} = ws0;"
    for m in reversed(ms):
        p = m.p
        if p.name == "SUM":
            continue
        if p.name == "GATHER":
            if not (passive and p.flags & A_PASSIVE):
                e = f"e{len(flush)}"
                body.append(f"{e}[kk] = w{m.j};")
                flush.append("for (int64_t kk = 0; kk < L; kk++) "
                             f"g[{ix}[{p.a} + k0 + kk]] += {e}[kk];")
            continue
        args = _args(m, ms, nin)
        for which, cls, idx, s, flag, d in (("a", m.ca, m.ia, p.a, A_PASSIVE, "da"),
                                             ("b", m.cb, m.ib, p.b, B_PASSIVE, "db")):
            if which == "b" and p.kind == "unary":
                continue
            if passive and p.flags & flag:
                continue
            term = f"fa_naz(w{m.j}, fa_{d}_{p.name}({args}))"
            if cls == "int":
                body.append(f"w{idx} += {term};")
            elif cls == "ext":
                e = f"e{len(flush)}"
                body.append(f"{e}[kk] = {term};")
                flush.append(f"for (int64_t kk = 0; kk < L; kk++) "
                             f"{_arr('g', s, nin)}[{s} + k0 + kk] += {e}[kk];")
            else:
                name = f"acc_{m.j}_{which}"
                pre.append(f"double {name} = 0.0;")
                body.append(f"{name} += {term};")
                post.append((m.j, which, f"{_arr('g', s, nin)}[{s}] += {name};"))
    for m in ms:
        if m.live and m.p.name != "SUM":
            body.append(f"g[{m.p.r} + k] = w{m.j};")
    # broadcast sums in the interpreter's order: last member first, a before b
    post.sort(key=lambda x: (-x[0], x[1]))
    tile = TILE if len(flush) <= TERMS_MAX else SHORT_TILE
    bufs = " ".join(f"double e{i}[{tile}];" for i in range(len(flush)))
    if both:
        pre.append("double acc[FA_LANES] = {0.0};")
        inner = ("{ const int64_t kk = kb + j; const int64_t k = k0 + kk; (void)k; "
                 + " ".join(body) + f" acc[j] += m{S.ia}; }}")
        loop = ("int64_t kb = 0; "
                f"for (; kb + FA_LANES <= L; kb += FA_LANES) for (int j = 0; j < FA_LANES; j++) "
                f"{inner} for (int j = 0; kb + j < L; j++) {inner}")
        post.append((-1, "", f"v[{S.p.r}] = fa_lanes_total(acc);"))
    else:
        loop = ("for (int64_t kk = 0; kk < L; kk++) { const int64_t k = k0 + kk; (void)k; "
                + " ".join(body) + " }")
    return ("{ " + " ".join(pre) + f" for (int64_t k0 = 0; k0 < {n}; k0 += {tile}) {{ "
            f"const int64_t L = {n} - k0 < {tile} ? {n} - k0 : {tile}; {bufs} {loop} "
            + " ".join(flush) + " } " + " ".join(x[2] for x in post) + " }")
