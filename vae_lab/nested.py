"""Nested dicts (configs as plain data, results): one walker for every reader of them. Torch-free."""


def leaves(node, prefix="", into=None):
    """(dotted key, value) of every value of `node` that is not a dict, in order; `into(key, dict)` may return
    False to keep a dict as a leaf instead of walking into it."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and (into is None or into(path, value)):
            yield from leaves(value, path + ".", into)
        else:
            yield path, value


def flatten(node):
    """{dotted key: value} of every leaf."""
    return dict(leaves(node))


def get(node, dotted):
    """The value at a dotted key, or None where there is none."""
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def differences(a, b, prefix=""):
    """Dotted keys at which the nested values a and b differ ([] when they are equal)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix or "<root>"]
    out = []
    for key in sorted(set(a) | set(b), key=str):
        out += differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    return out


def map_leaves(fn, value):
    """`value` with fn applied to everything in it that is neither a dict nor a list, at any depth."""
    if isinstance(value, dict):
        return {k: map_leaves(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_leaves(fn, v) for v in value]
    return fn(value)
