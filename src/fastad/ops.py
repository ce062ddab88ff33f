"""fastad's op vocabulary in Python, generated once, at import, from the C op table
(csrc/ops.h, exported by `fastad._tape.op_table`); nothing here lists an op by hand.

    Op.ADD, Op.COPY, Op.SELECT, ...   op codes (an IntEnum), named as in ops.h (FA_ADD ...)
    Kind.UNARY/BINARY/GUARD/STRUCT    what kind of op a code is
    KIND[op], ARITY[op], NAME[op]     per op: its Kind, its operand count (elementwise and
                                      guards; 0 for structural ops), its numpy name
    BY_NAME["sin"]                    numpy name -> Op
    MASK_OF[Op.LESS]                  a guard's elementwise 0/1 mask op (np.where conditions)
    PARTIALS["sin"]                   the partials as ops.h writes them, ("D_COS(a)", None)

Ops whose name starts with "_" are internal building blocks (copies, selects, masks); the
others are numpy's (or scipy.special's) functions of the same name.
"""
import enum

from fastad._tape import op_partials, op_table

__all__ = ["Op", "Kind", "KIND", "ARITY", "NAME", "BY_NAME", "MASK_OF", "PARTIALS"]


class Kind(enum.IntEnum):
    """The kinds of ops (FA_KIND_* in csrc/ops.h)."""
    UNARY = 1
    BINARY = 2
    GUARD = 3
    STRUCT = 4


_TABLE = op_table()

# "_select_not" -> SELECT_NOT: the C enum's own name (ops.h spells FA_SELECT_NOT, "_select_not")
Op = enum.IntEnum("Op", [(name.lstrip("_").upper(), code) for code, (name, _) in
                         enumerate(_TABLE)])
Op.__doc__ = "The op codes of the C op table, named as in csrc/ops.h (without FA_)."

NAME = {Op(code): name for code, (name, _) in enumerate(_TABLE)}
BY_NAME = {name: op for op, name in NAME.items()}
KIND = {Op(code): Kind[kind.upper()] for code, (_, kind) in enumerate(_TABLE)}
ARITY = {op: {Kind.UNARY: 1, Kind.BINARY: 2, Kind.GUARD: 2}.get(kind, 0)
         for op, kind in KIND.items()}
MASK_OF = {op: BY_NAME[f"_{NAME[op]}_mask"] for op, kind in KIND.items() if kind == Kind.GUARD}
PARTIALS = op_partials()
