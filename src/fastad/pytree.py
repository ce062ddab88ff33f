"""Pytrees: nested tuples, lists and dicts of floats and arrays, as JAX has them.

`tree_flatten` turns a structure into its leaves (everything that is not a tuple, list or
dict) and a hashable `treedef`; `tree_unflatten` rebuilds the structure from new leaves.
fastad flattens arguments with it, so parameters can be any such structure and their
gradients come back in the same structure.  Dicts are flattened in sorted key order, as
in JAX, so the order of insertion does not change a signature.
"""

__all__ = ["tree_flatten", "tree_unflatten", "tree_map", "is_leaf"]

_CONTAINERS = (tuple, list, dict)


def is_leaf(x):
    return type(x) not in _CONTAINERS and not _is_namedtuple(x)


def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def tree_flatten(tree):
    """(leaves, treedef) of `tree`; treedef is hashable and compares by structure."""
    leaves = []
    treedef = _flatten(tree, leaves)
    return leaves, treedef


def _flatten(x, leaves):
    t = type(x)
    if t is tuple or t is list:
        return (t, tuple(_flatten(e, leaves) for e in x))
    if t is dict:
        keys = sorted(x)
        return (dict, tuple(keys), tuple(_flatten(x[k], leaves) for k in keys))
    if _is_namedtuple(x):
        return (t, tuple(_flatten(e, leaves) for e in x))
    leaves.append(x)
    return None


def tree_unflatten(treedef, leaves):
    """The structure `treedef` with `leaves` (an iterable, consumed in order)."""
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(d, it):
    if d is None:
        return next(it)
    t = d[0]
    if t is dict:
        return {k: _unflatten(c, it) for k, c in zip(d[1], d[2])}
    items = [_unflatten(c, it) for c in d[1]]
    if t is tuple or t is list:
        return t(items)
    return t(*items)        # a namedtuple


def tree_map(f, tree, *rest):
    """f applied leaf by leaf to `tree` (and the trees in `rest`, of the same structure)."""
    leaves, treedef = tree_flatten(tree)
    others = [tree_flatten(r)[0] for r in rest]
    return tree_unflatten(treedef, [f(*xs) for xs in zip(leaves, *others)])
