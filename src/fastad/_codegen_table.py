"""Table loops: repeated blocks of scalar records compiled as one C loop (docs/native.md,
"Table loops").

A tape of a Python loop whose branches depend on the data (branchy) does not roll: its
iterations take different paths, so it is long straight-line code, slow to compile and,
larger than the instruction cache, slow to run.  But it is made of a few *shapes* of
iteration repeated many times.  This module cuts the scalar records into blocks (before
the guards of one kind, the iteration's head), gives each block its shape (ops, flags,
guard outcomes, and each slot either an offset from the block's first result slot, one
slot shared by every block of the shape, or a per-block slot read from a table), and
compiles a run of blocks whose shapes repeat as

    for (j = 0; j < NB; j++) switch (shape[j]) { case s: <the shape's statements> }

over static index tables (blocks taken two by two where the pairs have few shapes: the
switch's jump depends on the data, and half as many jumps mispredict half as often).
The statements are the straight-line ones of fastad._codegen
(same ops, same order, same guard checks against the recorded outcomes, a failed guard
returns the record's own index), so the results are the interpreter's bit for bit; the
C is a few statements per shape, so it compiles in constant time, and it stays in cache.
"""
import os

import fastad._codegen as G

# a shape is table-dispatched when it occurs at least this often
MIN_REPEAT = 4
# a run needs this many blocks (fewer: the straight-line code is as good)
MIN_BLOCKS = 8
# blocks are cut at most this long (a tape without guards has one block per MAX_BLOCK)
MAX_BLOCK = 64
# records of a run on which the candidate cuts are compared
SAMPLE = 2048
# a straight-line record costs about this many table dispatches (run time and code size)
STRAIGHT_COST = 0.3

# The table loops' functions (one per sweep, shared by every table loop of the tape): the
# reverse sweep's at -O2 (at -O1 GCC keeps the adjoints of a case in memory: 1.8x slower),
# the others at the file's -O1 (as fast, and half the compile time)
ATTRIBUTES = """
#if defined(__GNUC__) && !defined(__clang__)
#define FA_TABLEFN __attribute__((noinline, optimize("O2")))
#else
#define FA_TABLEFN FA_NOINLINE
#endif
"""


def enabled():
    """FASTAD_NATIVE_TABLES=0 turns table loops off (the records stay straight-line code;
    for comparisons: docs/native.md)."""
    return os.environ.get("FASTAD_NATIVE_TABLES", "1").strip() != "0"


def pairs_enabled():
    """FASTAD_NATIVE_TABLE_PAIRS=0: one block per dispatch (for comparisons)."""
    return os.environ.get("FASTAD_NATIVE_TABLE_PAIRS", "1").strip() != "0"


def locals_enabled():
    """FASTAD_NATIVE_TABLE_LOCALS=0: the cases' values and adjoints go through memory, one
    load and store per record, and no value is carried in a register (for comparisons)."""
    return os.environ.get("FASTAD_NATIVE_TABLE_LOCALS", "1").strip() != "0"


def variant():
    """The switches above, for the cache key (fastad._codegen.variant)."""
    return f"tables={enabled()},pairs={pairs_enabled()},locals={locals_enabled()}"


class Block:
    __slots__ = ("recs", "shape", "slots", "r0", "body")


def _candidate(p, taken):
    return (p.kind in ("unary", "binary", "guard") and not p.flags & G.RANGED
            and p.i not in taken)


def _runs(recs, taken):
    """Maximal lists of consecutive scalar records (tape rows i, i+1, ...)."""
    out, cur = [], []
    for p in recs:
        if _candidate(p, taken) and (not cur or p.i == cur[-1].i + 1):
            cur.append(p)
        else:
            if len(cur) > 1:
                out.append(cur)
            cur = [p] if _candidate(p, taken) else []
    if len(cur) > 1:
        out.append(cur)
    return out


def _guard_kind(p, written):
    return (p.op, bool(written[p.a]), bool(written[p.b]))


def _cut(run, heads, written):
    """Blocks of `run`: a new block before each guard whose kind is in `heads`, and after
    MAX_BLOCK records."""
    blocks, cur = [], []
    for p in run:
        if cur and (len(cur) >= MAX_BLOCK
                    or p.kind == "guard" and _guard_kind(p, written) in heads):
            blocks.append(cur)
            cur = []
        cur.append(p)
    if cur:
        blocks.append(cur)
    return blocks


def _shape(recs):
    """A block's shape and its per-block slots: each operand slot inside the block's own
    result range is an offset ('r', k) from its first result slot r0; any other is a
    table entry ('t', n), its slot kept in the block's list."""
    res = [p.r for p in recs if p.kind != "guard"]
    lo, hi = (min(res), max(res)) if res else (0, -1)
    slots, shape = [], []
    i0 = recs[0].i
    for p in recs:
        ops = []
        for k, s in enumerate((p.r, p.a, p.b)):
            if k == 0 and p.kind == "guard" or k == 2 and p.kind == "unary":
                ops.append(None)
            elif lo <= s <= hi:
                ops.append(("r", s - lo))
            elif s in slots:        # one table word per distinct slot of the block
                ops.append(("t", slots.index(s)))
            else:
                ops.append(("t", len(slots)))
                slots.append(s)
        shape.append((p.op, p.flags, p.i - i0, tuple(ops)))
    b = Block()
    b.recs, b.shape, b.slots, b.r0 = recs, tuple(shape), slots, lo
    b.body = b.shape
    return b


def _blocks(run, heads, written):
    return [_shape(c) for c in _cut(run, heads, written)]


def _cost(blocks, counts):
    return sum(1.0 if counts[b.shape] >= MIN_REPEAT else STRAIGHT_COST * len(b.recs)
               for b in blocks)


def _count(blocks):
    counts = {}
    for b in blocks:
        counts[b.shape] = counts.get(b.shape, 0) + 1
    return counts


def _best_blocks(run, written):
    """The cut (before which kind of guard: each kind alone, or every guard) whose blocks
    cost least: fewest table dispatches plus straight-line records left over."""
    kinds = list(dict.fromkeys(_guard_kind(p, written) for p in run if p.kind == "guard"))
    sample = run[:SAMPLE]       # the cuts are compared on the run's start (generation time)
    best = None
    for heads in [{k} for k in kinds] + [set(kinds)]:
        blocks = _blocks(sample, heads, written)
        cost = _cost(blocks, _count(blocks))
        if best is None or cost < best[0]:
            best = (cost, heads)
    return _blocks(run, best[1] if best else set(), written)


class Table:
    """One table loop: consecutive blocks, their shape ids in the tape's Shapes."""

    def __init__(self, blocks):
        self.blocks = blocks
        self.first, self.last = blocks[0].recs[0], blocks[-1].recs[-1]


class Shapes:
    """The shapes of all of a tape's table loops: one C function per sweep runs them all
    (its code grows with the number of shapes, not of blocks).  A table slot that every
    block of a shape shares becomes a literal in the code."""

    def __init__(self, tabs):
        self.shapes = list(dict.fromkeys(b.shape for t in tabs for b in t.blocks))
        self.id = {s: k for k, s in enumerate(self.shapes)}
        seen = {}
        for t in tabs:
            for b in t.blocks:
                seen.setdefault(b.shape, []).append(b.slots)
        self.fixed = []
        for s in self.shapes:
            mine = seen[s]
            self.fixed.append({t: mine[0][t] for t in range(len(mine[0]))
                               if all(m[t] == mine[0][t] for m in mine)})
        self.ctype = "uint8_t" if len(self.shapes) <= 256 else "uint16_t"

    def entries(self, b):
        """The table words of block b: its r0, then its slots not fixed by its shape."""
        fixed = self.fixed[self.id[b.shape]]
        return [b.r0] + [s for t, s in enumerate(b.slots) if t not in fixed]

    def nslots(self, s):
        return 1 + max((o[1] for rec in self.shapes[s][0] for o in rec[3]
                        if o and o[0] == "t"), default=-1)

    def width(self, s):
        return 1 + sum(1 for t in range(self.nslots(s)) if t not in self.fixed[s])


def tables(recs, taken=()):
    """The tape's table loops: for each run of scalar records, the blocks of the best cut,
    grouped into maximal stretches of repeated shapes."""
    nslot = 1 + max((max(p.r, p.a, p.b) for p in recs), default=0)
    written = G.written_slots(recs, nslot)
    out = []
    for run in _runs(recs, set(taken)):
        blocks = _best_blocks(run, written)
        counts = _count(blocks)
        keep = _absorb([counts[b.shape] >= MIN_REPEAT for b in blocks])
        cur = []
        for b, k in zip(blocks + [None], keep + [False]):
            if k:
                cur.append(b)
                continue
            if len(cur) >= MIN_BLOCKS:
                out.append(Table(_carried(_paired(cur))))
            cur = []
    return out


# consecutive blocks are run in pairs (one dispatch, whose target the CPU mostly
# mispredicts, per two blocks) while the pairs have at most this many shapes
PAIR_SHAPES = 48


def _paired(blocks):
    """`blocks` two by two as blocks of their own, if that leaves few enough shapes."""
    if not pairs_enabled():
        return blocks
    pairs = [_shape(blocks[k].recs + blocks[k + 1].recs)
             for k in range(0, len(blocks) - 1, 2)] + blocks[len(blocks) // 2 * 2:]
    return pairs if len({b.shape for b in pairs}) <= PAIR_SHAPES else blocks


def _last_result(b):
    return next((p.r for p in reversed(b.recs) if p.kind != "guard"), None)


def _carried(blocks):
    """The carried value of consecutive blocks (a loop's running sum): when a block reads
    the last result of the block before it, the reverse sweep hands that value's adjoint
    to the block before in a register, `cg`, instead of a store and a reload through
    memory on the loop's critical path.  A block's shape then becomes (records, cin,
    cout, fresh): cin, the table word of the carried operand (its adjoint is handed over
    as `cg`), cout, the offset of the result the next block reads that way (its adjoint
    starts from `cg`), each None if unused; fresh (_fresh), () until set."""
    cins = [None]
    for prev, b in zip(blocks, blocks[1:]):
        last = _last_result(prev)
        cins.append(b.slots.index(last) if last in b.slots and locals_enabled() else None)
    for k, b in enumerate(blocks):
        nxt = cins[k + 1] if k + 1 < len(blocks) else None
        cout = _last_result(b) - b.r0 if nxt is not None else None
        b.shape = (b.body, cins[k], cout, ())
    return blocks


def _fresh(recs, tabs):
    """Mark the adjoints each block's reverse case may start from 0.0 instead of loading:
    those of slots that no record outside the block reads (results of its own records,
    the carried value, inputs read by this block alone), provided some record reads them
    (an unread result may be an output, which the runtime seeds).  Nothing processed
    before the block in the reverse sweep adds to such a slot, so in the record-by-record
    sweep it would still hold its zero there; the case stores it at its end, before
    anything else reads it, so the runtime need not zero it (fastad_assigned).  Returns
    those slots; each block's shape gets its fresh operands.  Only on tapes of scalar
    records, elementwise ranged records, sums and LOOP records, whose reads the records
    name (a gather's come from the index pool at run time)."""
    block_of = {}
    for t in tabs:
        for b in t.blocks:
            for p in b.recs:
                block_of[p.i] = id(b)
    owner = {}
    for p in recs:
        if p.name == "LOOP":        # every slot a body operand reads, in every iteration
            for q in p.body:
                for x, d in q.body[1:3 if q.kind != "unary" else 2]:
                    for j in range(p.n if d else 1):
                        owner[x + j * d] = -1
            continue
        if p.flags & G.RANGED:
            if p.name != "SUM" and p.kind not in ("unary", "binary"):
                return set()
            n = p.n * p.sa if p.name == "SUM" else p.n
            reads = [(p.a, n, p.sa if p.name != "SUM" else 1)]
            if p.kind == "binary":
                reads.append((p.b, p.n, p.sb))
            for x, m, st in reads:
                for k in range(m if st else 1):
                    owner[x + k] = -1
            continue
        if p.kind not in ("unary", "binary", "guard"):
            return set()
        me = block_of.get(p.i, -1)
        for x in (p.a,) if p.kind == "unary" else (p.a, p.b):
            owner[x] = me if owner.get(x, me) == me else -1
    fresh = set()
    for t in tabs:
        for b in t.blocks:
            body, cin, cout, _ = b.shape
            mine = []
            for _op, _fl, _di, ops in body:
                for o in ops:
                    if o is None or o in mine:
                        continue
                    slot = b.r0 + o[1] if o[0] == "r" else b.slots[o[1]]
                    if owner.get(slot) == id(b) and o != ("r", cout):
                        mine.append(o)
                        fresh.add(slot)
            b.shape = (body, cin, cout, tuple(sorted(mine)))
    return fresh


def straight_left(recs):
    """How many scalar records of `recs` stay straight-line code (not in a table loop)."""
    if not enabled():
        return sum(1 for p in recs if _candidate(p, ()))
    covered = sum(len(b.recs) for t in tables(recs) for b in t.blocks)
    return sum(1 for p in recs if _candidate(p, ())) - covered


# rare blocks between repeated ones join the table loop, up to this many in a row: a rare
# shape's case is as much code as its straight-line statements, and the loop goes on
MAX_GAP = 2


def _absorb(keep):
    """`keep` with gaps of at most MAX_GAP False between two True filled in."""
    out, last = list(keep), None
    for k, x in enumerate(keep):
        if x:
            if last is not None and 0 < k - last - 1 <= MAX_GAP:
                out[last + 1:k] = [True] * (k - last - 1)
            last = k
    return out


# ------------------------------------------------------------------------ C

def _rec(sh, s, q):
    """A Rec for record q of shape s with C expressions for its slots: r0 + k, a literal,
    or the block's table word (q_[n])."""
    op, flags, di, ops = sh.shapes[s][0][q]
    fixed, nfree = sh.fixed[s], {}
    for t in range(sh.nslots(s)):
        if t not in fixed:
            nfree[t] = 1 + len(nfree)
    p = G.Rec()
    p.op, p.flags = op, flags
    p.name, p.kind = G.c_names()[op]
    p.i = f"i_[j] + {di}"
    p.n = p.sa = p.sb = 0
    p.body = None
    out = []
    for o in ops:
        if o is None:
            out.append("0")
        elif o[0] == "r":
            out.append(f"r0 + {o[1]}")
        elif o[1] in fixed:
            out.append(str(fixed[o[1]]))
        else:
            out.append(f"q_[{nfree[o[1]]}]")
    p.r, p.a, p.b = out
    return p


def _ints(name, vals, ctype="int32_t"):
    """A static table, 24 numbers a line (GCC tracks columns only in short lines)."""
    vals = [str(int(x)) for x in vals]
    lines = [",".join(vals[k:k + 24]) for k in range(0, len(vals), 24)]
    return f"static const {ctype} {name}[] = {{\n" + ",\n".join(lines) + "};\n"


def _addrs(sh, s):
    """C expression of each operand kind of shape s: ('r', k) -> r0 + k, ('t', n) -> a
    literal slot or the block's table word q_[m]."""
    fixed, nfree = sh.fixed[s], {}
    for t in range(sh.nslots(s)):
        if t not in fixed:
            nfree[t] = 1 + len(nfree)

    def addr(o):
        if o[0] == "r":
            return f"r0 + {o[1]}"
        return str(fixed[o[1]]) if o[1] in fixed else f"q_[{nfree[o[1]]}]"
    return addr


def _rev_body(sh, s, passive):
    """Reverse statements of shape s with its adjoints in locals: every slot the block
    touches gets one, initialized from g (the carried result's from `cg`, the adjoint
    the next block handed over), updated by the very terms, in the very order, of
    fastad._codegen.rev_stmt, and stored back when changed, so g ends bit for bit as the
    record-by-record sweep leaves it.  The compiler cannot keep g[q_[n]] in a register
    across stores to g[r0 + k] (they might alias), and the carried adjoint would go
    through memory between blocks, a store and a reload on the critical path."""
    body, cin, cout, fresh = sh.shapes[s]
    addr, names, changed, out = _addrs(sh, s), {}, [], []

    def adj(o):
        if o not in names:
            names[o] = f"{'h' if o[0] == 't' else 'a'}{o[1]}"
        return names[o]

    for op, flags, _di, (r, a, b) in reversed(body):
        name, kind = G.c_names()[op]
        if kind == "guard":
            continue
        pa = passive and bool(flags & G.A_PASSIVE)
        pb = passive and bool(flags & G.B_PASSIVE)
        vals = [f"v[{addr(o)}]" for o in ((a,) if kind == "unary" else (a, b))] + \
            [f"v[{addr(r)}]"]
        args = ", ".join(vals)
        parts = []
        for d, o, skip in (("da", a, pa), ("db", b, pb)):
            if skip or (d == "db" and kind == "unary"):
                continue
            parts.append(f"{adj(o)} += fa_nazw(w, fa_{d}_{name}({args}));")
            if o not in changed:
                changed.append(o)
        if parts:
            out.append(f"{{ const double w = {adj(r)}; if (FA_LIKELY(w != 0.0)) "
                       f"{{ {' '.join(parts)} }} }}")
    init = [f"double {n} = "
            f"{'cg' if o == ('r', cout) else '0.0' if o in fresh else f'g[{addr(o)}]'};"
            for o, n in names.items()]
    # a fresh slot is not zeroed by the runtime: stored even if nothing here changed it
    changed += [o for o in fresh if o in names and o not in changed]
    store = [f"g[{addr(o)}] = {names[o]};" for o in changed]
    store += [f"g[{addr(o)}] = 0.0;" for o in fresh if o not in names]
    if cin is not None:
        o = ("t", cin)
        store.append(f"cg = {names[o]};" if o in names else f"cg = g[{addr(o)}];")
    return init + out + store


def _cases(sh, stmt, w, passive):
    cases = []
    backwards = w == "rev"
    for s, shape in enumerate(sh.shapes):
        width = sh.width(s)
        if w == "rev" and locals_enabled():
            body = _rev_body(sh, s, passive)
        else:
            order = range(len(shape[0]))[::-1] if backwards else range(len(shape[0]))
            body = [x for x in (stmt[w](_rec(sh, s, q)) for q in order) if x is not None]
        step = f"q_ -= {width};" if backwards else ""
        adv = "" if backwards else f"q_ += {width};"
        cases.append(f"    case {s}: {{ {step} const int64_t r0 = q_[0]; (void)r0;\n        "
                     + "\n        ".join(body) + f"\n        {adv} break; }}\n")
    return "".join(cases)


def _stmts(passive):
    """Record-by-record statements (fastad._codegen's), per sweep: the forward and tangent
    sweeps', and the reverse sweep's with FASTAD_NATIVE_TABLE_LOCALS=0.  (Values in locals
    and a carried register did not speed up the forward sweep: its libm calls clobber
    every floating-point register, so GCC spills them to the stack anyway, measured
    5.0-5.2 us against 4.9 us on branchy in C alone.)"""
    return {"fwd": lambda p: G.fwd_stmt(p, False, "ix"),
            "tan": lambda p: G.tan_stmt(p, "ix"),
            "rev": lambda p: G.rev_stmt(p, "ix", passive)}


# the shared functions: (sweep, return type, array parameters, carried local)
_SWEEPS = {
    "fwd": ("int64_t", "double *restrict v", ""),
    "tan": ("void", "const double *restrict v, double *restrict t", ""),
    "rev": ("void", "const double *restrict v, double *restrict g", "double cg = 0.0;"),
}


def functions(sh, prefix="", passive=True):
    """C of fa_table_fwd / _tan / _rev (names after `prefix`): run nb blocks of shapes s_
    with table words w_ (backwards from w_ for the reverse sweep); i_: each block's first
    record index, which the forward sweep returns (plus the record's offset) when a guard
    fails.  passive: honour the operands' passive flags in the reverse sweep."""
    out = {}
    for w, (ret, arrays, carry) in _SWEEPS.items():
        back = w == "rev"
        loop = ("for (int64_t j = nb - 1; j >= 0; j--)" if back else
                "for (int64_t j = 0; j < nb; j++)")
        attr = "FA_TABLEFN" if back else "FA_NOINLINE"
        var = carry.split()[1] if carry else ""
        out[w] = (f"{attr} static {ret} {prefix}fa_table_{w}({arrays}, "
                  f"const {sh.ctype} *restrict s_, "
                  "const int32_t *restrict w_, const int64_t *restrict i_, int64_t nb)\n{\n"
                  f"    const int32_t *q_ = w_; (void)i_; {carry}\n"
                  f"    {loop} switch (s_[j]) {{\n"
                  f"{_cases(sh, _stmts(passive), w, passive)}"
                  "    default: break;\n    }\n"
                  + (f"    (void){var};\n" if var else "")
                  + ("    return -1;\n" if w == "fwd" else "") + "}\n")
    return out


def _call(sh, tab, w, prefix):
    """The statement that runs table loop `tab` in sweep w: its tables and the call."""
    words = [x for b in tab.blocks for x in sh.entries(b)]
    nb = len(tab.blocks)
    decl = (_ints("s_", [sh.id[b.shape] for b in tab.blocks], sh.ctype) + _ints("w_", words))
    if w == "fwd":
        decl += _ints("i_", [b.recs[0].i for b in tab.blocks], "int64_t")
        return (f"{{ {decl}const int64_t r_ = {prefix}fa_table_fwd(v, s_, w_, i_, {nb}); "
                "if (r_ >= 0) return r_; }")
    if w == "tan":
        return f"{{ {decl}{prefix}fa_table_tan(v, t, s_, w_, NULL, {nb}); }}"
    return f"{{ {decl}{prefix}fa_table_rev(v, g, s_, w_ + {len(words)}, NULL, {nb}); }}"


def add(recs, over, prefix="", passive=True, fresh=False):
    """Put the tape's table loops into fastad._codegen's per-sweep replacements `over`
    (record index -> statement, None at the other members), and return the C of the
    functions they call, per sweep ({} without table loops), and under "fresh" the slots
    whose adjoints the reverse sweep writes before it reads them (_fresh; only with
    fresh=True: the runtime then does not zero them and seeds none of them).  prefix: of
    the functions' names (a standalone file holds several tapes); passive: as
    fastad._codegen.rev_stmt."""
    if not enabled():
        return {}
    taken = set(over["fwd"]) | set(over["tan"]) | set(over["rev"])
    tabs = tables(recs, taken)
    if not tabs:
        return {}
    new = _fresh(recs, tabs) if fresh and locals_enabled() else set()
    sh = Shapes(tabs)
    if len(sh.shapes) > 65535:
        return {}
    for tab in tabs:
        for b in tab.blocks:
            for p in b.recs:
                for w in over:
                    over[w][p.i] = None
        over["fwd"][tab.first.i] = (_call(sh, tab, "fwd", prefix), False)
        over["tan"][tab.first.i] = (_call(sh, tab, "tan", prefix), False)
        over["rev"][tab.last.i] = (_call(sh, tab, "rev", prefix), False)
    out = functions(sh, prefix, passive)
    out["fresh"] = new
    return out
