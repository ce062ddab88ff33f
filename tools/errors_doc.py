"""Write docs/errors.md from the docstrings of fastad.errors (tests/contract/test_errors.py checks
that the committed page is what this prints):

    python tools/errors_doc.py > docs/errors.md
"""
import inspect

from fastad import errors

HEAD = """# Errors

Every error fastad raises on purpose is a class of `fastad.errors`, and also the builtin
error you would expect (a `TypeError`, a `RuntimeError`, ...), so `except TypeError` keeps
working. Each message ends with a link to its section here. This page is generated from
the classes' docstrings (`python tools/errors_doc.py > docs/errors.md`), so the two cannot
drift apart.
"""


def page():
    out = [HEAD]
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not isinstance(cls, type) or not cls.anchor:
            continue
        builtins = [b.__name__ for b in cls.__bases__ if b is not errors.FastadError]
        also = f"*Also a `{'`, `'.join(builtins)}`.*\n\n" if builtins else ""
        out.append(f"## {name}\n\n{also}{inspect.cleandoc(cls.__doc__)}\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(page(), end="")
