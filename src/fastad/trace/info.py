"""Statistics of a tape or of a compiled function: `fastad.trace_info(obj)`, `g.info()`."""
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Optional

from fastad.trace.fmt import plural, size_text


@dataclass
class TapeInfo:
    """Statistics of a tape or of a compiled (grad/value_and_grad/...) function; print it.

    records: entries of tape.records(); words: len(tape), 16-byte record words (a ranged
    record takes two); by_op: Counter op -> records; slots, inputs, constants, bytes,
    guards.  For a compiled function also what, traces, replays, retraces, signatures,
    tapes (how many are cached), per_tape (a TapeInfo each) and tape_objects (the Tapes).
    """
    records: int
    words: int
    by_op: Counter
    slots: int
    inputs: int
    constants: int
    bytes: int
    guards: int
    optimized: Optional[dict] = None      # Tape.optimized: what the optimizer did
    native: Optional[str] = None          # the tape's tier: interpreted / compiling / native
    what: Optional[str] = None
    traces: Optional[int] = None
    replays: Optional[int] = None
    retraces: Optional[int] = None
    signatures: Optional[int] = None
    tapes: Optional[int] = None
    per_tape: Optional[list] = None
    tape_objects: Optional[list] = field(default=None, repr=False)

    @property
    def compiled(self):
        return self.per_tape is not None

    def as_dict(self):
        """Plain data (per_tape as dicts; the Tape objects left out)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)
             if f.name not in ("per_tape", "tape_objects")}
        if not self.compiled:
            d = {k: v for k, v in d.items() if v is not None}
        if self.compiled:
            d["per_tape"] = [t.as_dict() for t in self.per_tape]
        d["by_op"] = dict(self.by_op)
        return d

    def _one_line(self):
        return (f"{plural(self.records, 'record')} ({plural(self.words, 'word')}), "
                f"{plural(self.slots, 'slot')} ({plural(self.inputs, 'input')}, "
                f"{plural(self.constants, 'constant')}), {plural(self.guards, 'guard')}, "
                f"{size_text(self.bytes)}" + (f"; {self.native}" if self.native else ""))

    def __str__(self):
        if not self.compiled:
            lines = ["tape: " + self._one_line(), "by op: " + _ops_text(self.by_op)]
            if self.optimized is not None:
                lines.append("optimizer: " + optimizer_text(self.optimized))
            return "\n".join(lines)
        lines = [f"{self.what}: {plural(self.signatures, 'signature')}, "
                 f"{plural(self.tapes, 'cached tape')}; {plural(self.traces, 'trace')}, "
                 f"{plural(self.replays, 'replay')}, {plural(self.retraces, 'retrace')} "
                 "(after a failed guard)"]
        if self.tapes:
            lines.append(f"all cached tapes: {plural(self.records, 'record')}, "
                         f"{plural(self.slots, 'slot')}, {size_text(self.bytes)}, "
                         f"{plural(self.guards, 'guard')}")
        for i, t in enumerate(self.per_tape):
            lines.append(f"tape {i}: " + t._one_line())
            lines.append("  by op: " + _ops_text(t.by_op))
            if t.optimized is not None:
                lines.append("  optimizer: " + optimizer_text(t.optimized))
        return "\n".join(lines)

    __repr__ = __str__


def optimizer_text(o):
    """One line on what the optimizer did to a tape (Tape.optimized): rolled loops, and
    fused elementwise chains (docs/design.md, "Fusion")."""
    text = _rolling_text(o)
    if o.get("fused_chains"):
        text += (f"; fused {plural(o['fused_chains'], 'elementwise chain')} "
                 f"({o['fused_records']} records, {o['fused_live']} results written, "
                 f"{plural(o['fused_sums'], 'final sum')}), tape words {o['records_after']} -> "
                 f"{o['words_after_fusion']}")
    return text


def _rolling_text(o):
    if o.get("abandoned"):
        return ("left as recorded (a rolled guard re-evaluated differently; "
                f"pass {o['seconds'] * 1e3:.2f} ms)")
    if not o["loops"]:
        return f"nothing to roll (pass {o['seconds'] * 1e3:.2f} ms)"
    loops = (f"{plural(o['recurrences'], 'recurrence')} as LOOP records, "
             if o.get("recurrences") else "")
    return (f"rolled {plural(o['loops'], 'loop')} ({plural(o['iterations'], 'iteration')}, "
            f"{o['rolled_records']} scalar records), "
            f"{plural(o['reductions'], 'accumulation')} as reductions, {loops}"
            f"{plural(o['guards'], 'guard')} kept per iteration; records "
            f"{o['records_before']} -> {o['records_after']}, {size_text(o['bytes_before'])} -> "
            f"{size_text(o['bytes_after'])} (pass {o['seconds'] * 1e3:.2f} ms)")


def _ops_text(by_op):
    if not by_op:
        return "(none)"
    return ", ".join(f"{op} {n}" for op, n in by_op.most_common())


def tape_info(tape):
    """The TapeInfo of one Tape."""
    recs = tape.records()
    return TapeInfo(records=len(recs), words=len(tape), by_op=Counter(op for op, _, _ in recs),
                    slots=tape.n_slots, inputs=tape.n_inputs, constants=tape.n_constants,
                    bytes=tape.nbytes, optimized=tape.optimized, native=_native_text(tape),
                    guards=sum(1 for _, r, _ in recs if isinstance(r, int) and r < 0))


def _native_text(tape):
    """The tape's tier (docs/native.md): interpreted / compiling / native, compile time."""
    from fastad.native import tier
    p = tape.native_policy
    t = tier(tape)
    if t == "native" and p is not None and p.compile_time is not None:
        return f"native (compiled in {p.compile_time:.2f} s)" if p.compile_time else \
            "native (from the cache)"
    return t


_SUMMED = ("records", "words", "slots", "inputs", "constants", "bytes", "guards")


def trace_info(obj):
    """Statistics of a Tape, or of a function returned by fastad.grad / value_and_grad:
    records by op, scalar slots, bytes, guards, and for a compiled function its cached
    tapes, traces, replays and retraces.  Returns a TapeInfo (print it, or .as_dict())."""
    from fastad._tape import Tape
    if isinstance(obj, Tape):
        return tape_info(obj)
    if not (hasattr(obj, "cache_info") and hasattr(obj, "tapes")):
        raise TypeError(f"fastad.trace_info: expected a Tape or a function made by "
                        f"fastad.grad / value_and_grad, got {type(obj).__name__}")
    ci = obj.cache_info()
    tapes = list(obj.tapes())
    per = [tape_info(t) for t in tapes]
    by_op = Counter()
    for p in per:
        by_op.update(p.by_op)
    name = getattr(getattr(obj, "fun", None), "__name__", None) or \
        getattr(obj, "__name__", "compiled function")
    totals = {k: sum(getattr(p, k) for p in per) for k in _SUMMED}
    return TapeInfo(**totals, by_op=by_op, what=f"compiled {name}",
                    traces=ci.get("traces", 0), replays=ci.get("replays", 0),
                    retraces=ci.get("retraces", 0), signatures=ci.get("signatures", 0),
                    tapes=len(tapes), per_tape=per, tape_objects=tapes)
