"""Text helpers shared by every output of a trace: numbers, compact arrays, display widths,
the ASCII spelling of the notes' accents, elision of long lists."""
import math
import re
import unicodedata

import numpy as np

DOT_ACCENT = "\u0307"      # combining dot above: v̇3 (tangent)
BAR_ACCENT = "\u0304"      # combining macron: v̄3 (adjoint)
MUL = "\u00b7"             # middle dot in the rules


def num(x, precision=12):
    """A number as short text: integers without a dot, others to `precision` digits."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    x = float(x)
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x)) if x != 0 or math.copysign(1, x) > 0 else "-0"
    return format(x, f".{precision}g")


def array_text(a, shape=None, precision=6, edge=2):
    """A compact array: its shape and a few values, [a, b, …, z]."""
    a = np.asarray(a).ravel()
    shp = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")" \
        if shape is not None else f"[{a.size}]"
    if a.size <= 2 * edge + 1:
        body = ", ".join(num(v, precision) for v in a)
    else:
        body = ", ".join([num(v, precision) for v in a[:edge]] + ["…"]
                         + [num(v, precision) for v in a[-edge:]])
    return f"{shp} [{body}]"


def cell(x, shape, precision):
    """A value, tangent or adjoint as a table cell (arrays compactly)."""
    if x is None:
        return ""
    if isinstance(x, np.ndarray):
        return array_text(x, shape if shape and len(shape) > 1 else None, min(precision, 6))
    return num(x, precision)


def width(s):
    """Display width: combining accents take no column."""
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


def pad(s, w):
    return s + " " * (w - width(s))


def to_ascii(s):
    """The ASCII spelling of a Unicode rule: v̇3 -> v3dot, v̄3 -> v3bar, · -> *."""
    s = re.sub(r"v" + DOT_ACCENT + r"(\d+)", r"v\1dot", s)
    s = re.sub(r"v" + BAR_ACCENT + r"(\d+)", r"v\1bar", s)
    s = re.sub(r"x" + DOT_ACCENT, "xdot", s).replace("\u1e8b", "xdot")     # ẋ
    return (s.replace(MUL, "*").replace("Σ", "sum").replace("…", "...")
            .replace("⋮", ":").replace("→", "->").replace("≠", "!="))


def jfloat(x):
    """A float for JSON: non-finite numbers as the strings "inf", "-inf", "nan"."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if x != x else ("inf" if x > 0 else "-inf")


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def size_text(n):
    """A byte count for people: bytes, KiB or MiB."""
    if n < 10 * 1024:
        return f"{n} bytes"
    if n < 10 * 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 ** 2:.1f} MiB"


def elide(items, max_rows):
    """(head, tail, skipped): the first and last of `items` when there are more than
    max_rows (None: keep all; tail is then None)."""
    if max_rows is None or len(items) <= max_rows:
        return items, None, 0
    head = max(1, max_rows // 2)
    tail = max(1, max_rows - head)
    return items[:head], items[-tail:], len(items) - head - tail
