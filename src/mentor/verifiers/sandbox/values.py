"""Plain-value codec shared by the trusted assert harness and the in-sandbox runner (stdlib only).

Arguments go into the sandbox and return values come out of it as Python literal text (`repr` of plain
values) and are rebuilt by `decode_value`, an AST walker that accepts only literals: no names except
`inf`/`nan`, no calls except `set()`/`frozenset(...)`, bounded nesting and size. Whatever text the sandbox
sends, the trusted side gets back a plain value (or a `ValueError`), never an object with custom
behaviour: a returned "AlwaysEqual" object cannot exist on the trusted side.

It also holds the two wire helpers of both processes: `read_frame` (the parent's requests: a 4-byte
length, then ``marshal`` data; the parent is trusted and marshal needs no import) and `dumps_flat` (their
replies: one JSON object per line, which the parent parses as untrusted, written over the C helper
``_json`` because importing ``json`` pulls in ``re``: ~13 ms of CPU per process started).

This file is also concatenated into the `-c` source of the runner and the harness, so it must stay
self-contained (standard library only, no relative imports).
"""

import _json
import marshal
import math

MAX_VALUE_CHARS = 1 << 20  # encoded text longer than this is refused on both sides
MAX_DEPTH = 64  # nesting of containers
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_NAMES = {"inf": math.inf, "nan": math.nan}


def encode_value(value) -> str:
    """Literal text of a plain value (None, bool, int, float, complex, str, bytes, and tuples, lists,
    sets, frozensets and dicts of them). Raises `TypeError` naming the first non-plain type."""
    _check_plain(value, 0, set())
    text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"value is {len(text)} characters of text; the limit is {MAX_VALUE_CHARS}")
    return text


def _check_plain(value, depth: int, seen: set) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH}")
    kind = type(value)  # exact types: a subclass could carry a lying __repr__ or __eq__
    if kind in _SCALARS:
        return
    if kind in (list, tuple, set, frozenset, dict):
        if id(value) in seen:
            raise ValueError("value contains a reference cycle")
        seen.add(id(value))
        items = [x for kv in value.items() for x in kv] if kind is dict else value
        for item in items:
            _check_plain(item, depth + 1, seen)
        seen.discard(id(value))
        return
    raise TypeError(f"{kind.__name__} is not a plain value (allowed: None, bool, int, float, complex, str, "
                    "bytes, and tuple/list/set/frozenset/dict of them)")


def decode_value(text: str):
    """Rebuild a plain value from literal text; raise `ValueError` for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"expected literal text, got {type(text).__name__}")
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"literal is {len(text)} characters; the limit is {MAX_VALUE_CHARS}")
    import ast  # here, not at the top: the runner of stdin/stdout tests never pays for importing it
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as e:
        raise ValueError(f"not a literal: {type(e).__name__}") from None
    return _build(tree.body, 0)


def _build(node, depth: int):
    import ast
    if depth > MAX_DEPTH:
        raise ValueError(f"literal nested deeper than {MAX_DEPTH}")
    d = depth + 1
    if isinstance(node, ast.Constant) and type(node.value) in _SCALARS:
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, d) for e in node.elts)
    if isinstance(node, ast.List):
        return [_build(e, d) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_hashable(_build(e, d)) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("'**' is not allowed in a literal")
        return {_hashable(_build(k, d)): _build(v, d) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _build(node.operand, d)
        if type(operand) not in (int, float, complex):
            raise ValueError("unary sign on a non-number")
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        left, right = _build(node.left, d), _build(node.right, d)  # complex literals: (1+2j), (-0-1j)
        if type(left) not in (int, float) or type(right) is not complex:
            raise ValueError("only real +/- imaginary is allowed as arithmetic in a literal")
        return left + right if isinstance(node.op, ast.Add) else left - right
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("set", "frozenset")
            and not node.keywords and len(node.args) <= 1):
        items = _build(node.args[0], d) if node.args else ()
        if type(items) not in (list, tuple, set):
            raise ValueError(f"{node.func.id}() takes a literal container")
        built = {_hashable(x) for x in items}
        return built if node.func.id == "set" else frozenset(built)
    raise ValueError(f"{type(node).__name__} is not allowed in a literal")


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        raise ValueError(f"unhashable {type(value).__name__} used as a set member or dict key") from None
    return value


_quote = _json.encode_basestring_ascii


def dumps_flat(obj):
    """JSON text of a flat dict of str -> str / int / finite float / bool / None (all the runner sends)."""
    parts = []
    for key, value in obj.items():
        if value is None or value is True or value is False:
            text = {None: "null", True: "true", False: "false"}[value]
        elif type(value) is str:
            text = _quote(value)
        elif type(value) is int:
            text = str(value)
        elif type(value) is float and value - value == 0.0:
            text = repr(value)
        else:
            raise TypeError(f"cannot send {type(value).__name__} for {key!r}")
        parts.append(_quote(key) + ":" + text)
    return "{" + ",".join(parts) + "}"


def read_frame(reader):
    """One marshal frame from the parent, or None at the end of the stream."""
    head = reader.read(4)
    if len(head) < 4:
        return None
    return marshal.loads(reader.read(int.from_bytes(head, "big")))
