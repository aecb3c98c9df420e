"""The small, safe expression language of job specs: conditional tasks and dynamic fan-out.

    when: "tasks.check.output.rows > 0 and params.env == 'prod'"
    for_each: "tasks.check.output.files"

Expressions are written by tenants, so they are untrusted. Python's ``eval`` is never used:
even with empty builtins it reaches any object through ``().__class__.__bases__``, and
``'a' * 10**9`` or ``9 ** 9 ** 9`` exhaust memory or CPU. Instead:

1. The raw text is checked before Python's parser sees it (length, bracket nesting, no
   f-strings, ASCII outside string literals), so the parser only ever gets small, shallow
   input.
2. ``ast.parse(mode="eval")`` is used as a parser only. An iterative walk refuses every node
   type outside a short whitelist and bounds the node count and depth.
3. The checked tree is compiled once into a tree of closures that evaluate over plain JSON
   data. There are no loops, calls or Python attribute access in the language, and every
   number, string and list it builds is bounded, so evaluation is bounded in time and
   memory by construction.

Semantics, chosen to be predictable for spec authors:

- Missing data is ``null``: ``a.b`` and ``a['b']`` look a key up in a dict and an absent
  key gives ``null`` (so ``params.force`` works when ``force`` is not given), and looking
  anything up in ``null`` gives ``null`` again (so ``tasks.x.output.rows`` is ``null``
  when ``x`` has no output), like optional chaining in JavaScript or GitHub Actions.
  Everything else is strict: ``a.b`` on anything but a dict or null, ``a[i]`` on anything
  but a dict, list or null (strings included), a non-string dict key, a non-integer list
  position and a list position out of range are errors. Negative positions count from
  the end.
- ``tasks`` must be followed by a literal task name (``tasks.x`` or ``tasks['x']``), so
  ``task_references`` lists every task an expression can read.
- Truthiness is Python's: ``null``, ``false``, ``0``, ``0.0``, ``''``, ``[]`` and ``{}``
  are false. ``and``/``or`` short-circuit and return the deciding value.
- ``==`` is JSON equality: values of different kinds are never equal (``true != 1``,
  ``'1' != 1``), ``1 == 1.0``, lists and dicts compare element by element. ``<`` and
  friends compare numbers with numbers and strings with strings; anything else is an error.
- ``x if c else y`` is allowed and only evaluates the branch taken.
- Numbers stay within ``|x| <= 1e18`` and are finite; strings and lists built by ``+`` stay
  within 100,000 characters or items. ``**`` and ``str * n`` do not exist.

Every problem, at parse or evaluation time, is an ``ExpressionError`` with a short message
meant for the spec author.
"""

from __future__ import annotations

import ast
import keyword
import math
import operator
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LENGTH = 2_000
MAX_BRACKET_DEPTH = 32
MAX_NODES = 500
MAX_DEPTH = 64
MAX_NUMBER = 10**18
MAX_SIZE = 100_000
DEFAULT_ROOTS = frozenset({"params", "tasks", "item", "run"})

_TASKS = "tasks"
_LITERAL_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}
_MAX_EQUALITY_STEPS = 1_000_000
_MAX_MESSAGE = 300

_Eval = Callable[[Mapping[str, Any]], Any]


class ExpressionError(ValueError):
    """A spec expression that cannot be parsed or evaluated; the message is for its author."""

    def __init__(self, message: str) -> None:
        super().__init__(_shorten(message, _MAX_MESSAGE))


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression; cheap to evaluate many times."""

    text: str
    allowed_roots: frozenset[str] = DEFAULT_ROOTS
    _program: _Program = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_program", _compile(self.text, self.allowed_roots))

    def __reduce__(self) -> tuple[type[Expression], tuple[str, frozenset[str]]]:
        """Pickle by text: the compiled closures are rebuilt on load."""
        return (Expression, (self.text, self.allowed_roots))

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value over ``context`` (root name -> JSON data)."""
        if not isinstance(context, Mapping):
            raise ExpressionError("the evaluation context must be a mapping of root names")
        try:
            return self._program.run(context)
        except RecursionError as exc:
            raise ExpressionError("expression is too complex to evaluate") from exc

    def truthy(self, context: Mapping[str, Any]) -> bool:
        """Whether the value is true in the language's (Python's) sense; for ``when:``."""
        return _truthy(self.evaluate(context))

    @property
    def task_references(self) -> frozenset[str]:
        """Task names read as ``tasks.X`` or ``tasks['X']``."""
        return self._program.task_references

    @property
    def roots(self) -> frozenset[str]:
        """Root names the expression reads (``params``, ``tasks``, ...)."""
        return self._program.roots


def parse_expression(text: str, *, allowed_roots: frozenset[str] = DEFAULT_ROOTS) -> Expression:
    """Parse and check ``text``; raises ExpressionError with a message for the spec author."""
    return Expression(text, frozenset(allowed_roots))


@dataclass(frozen=True)
class _Program:
    run: _Eval
    roots: frozenset[str]
    task_references: frozenset[str]


def _compile(text: object, allowed_roots: frozenset[str]) -> _Program:
    for root in allowed_roots:
        if not _valid_root(root):
            raise ValueError(f"invalid root name {root!r}")
    source = _precheck(text)
    tree = _parse(source)
    _check_shape(tree)
    compiler = _Compiler(source, allowed_roots)
    run = compiler.compile(tree)
    return _Program(run, frozenset(compiler.roots), frozenset(compiler.task_refs))


def _valid_root(root: object) -> bool:
    return (
        isinstance(root, str)
        and root.isascii()
        and root.isidentifier()
        and not keyword.iskeyword(root)
        and not root.startswith("_")
        and root not in _LITERAL_NAMES
    )


# --- before parsing ------------------------------------------------------------------------


def _precheck(text: object) -> str:
    """Refuse text Python's parser should never see: too long, too deep, f-strings, ..."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(text)} characters; the limit is {MAX_LENGTH})"
        )
    if not text.strip():
        raise ExpressionError("expression is empty")
    if "\x00" in text:
        raise ExpressionError("expression contains a NUL character")
    _scan(text)
    return text


def _scan(text: str) -> None:
    """Check bracket depth and characters outside string literals and comments."""
    depth = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char in "'\"":
            if _string_prefix(text, i).lower() in {"f", "fr", "rf"}:
                raise ExpressionError("f-strings are not allowed")
            i = _string_end(text, i)
            continue
        if char == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if char in "([{":
            depth += 1
            if depth > MAX_BRACKET_DEPTH:
                raise ExpressionError(
                    f"expression is nested too deeply (more than {MAX_BRACKET_DEPTH} brackets)"
                )
        elif char in ")]}":
            depth = max(depth - 1, 0)
        elif not char.isascii():
            raise ExpressionError(
                f"unexpected character {char!r} (U+{ord(char):04X}); names must be ASCII, "
                "other characters are only allowed inside quotes"
            )
        i += 1


def _string_prefix(text: str, quote: int) -> str:
    start = quote
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return text[start:quote]


def _string_end(text: str, start: int) -> int:
    """Index just past the string literal opening at ``start`` (or the end if unterminated)."""
    delimiter = text[start] * 3 if text.startswith(text[start] * 3, start) else text[start]
    i = start + len(delimiter)
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text.startswith(delimiter, i):
            return i + len(delimiter)
        else:
            i += 1
    return len(text)


def _parse(text: str) -> ast.expr:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences in literals
            return ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        where = f" (line {exc.lineno}, column {exc.offset})" if exc.offset else ""
        raise ExpressionError(f"invalid expression: {exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"invalid expression: {type(exc).__name__}") from None


# --- after parsing: the whitelist ----------------------------------------------------------

_ALLOWED = (
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.List,
    ast.Tuple,
    ast.IfExp,
)

_REFUSED: tuple[tuple[type[ast.AST] | tuple[type[ast.AST], ...], str], ...] = (
    (ast.Call, "function calls are not allowed"),
    (ast.Lambda, "lambda expressions are not allowed"),
    ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions are not allowed"),
    ((ast.JoinedStr, ast.FormattedValue), "f-strings are not allowed"),
    (ast.NamedExpr, "assignment expressions (:=) are not allowed"),
    (ast.Starred, "starred expressions (*x) are not allowed"),
    (ast.Slice, "slices are not allowed; index with a single key or position"),
    (ast.Set, "set displays are not allowed"),
    (ast.Dict, "dict displays are not allowed"),
    ((ast.Await, ast.Yield, ast.YieldFrom), "await and yield are not allowed"),
)

_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.Pow: "the power operator ** is not allowed",
    ast.MatMult: "the operator @ is not allowed",
    ast.BitAnd: "the bitwise operator & is not allowed",
    ast.BitOr: "the bitwise operator | is not allowed",
    ast.BitXor: "the bitwise operator ^ is not allowed",
    ast.LShift: "the shift operator << is not allowed",
    ast.RShift: "the shift operator >> is not allowed",
    ast.Invert: "the bitwise operator ~ is not allowed",
    ast.Is: "'is' is not allowed; use ==",
    ast.IsNot: "'is not' is not allowed; use !=",
}


def _check_shape(tree: ast.expr) -> None:
    """Refuse anything off the whitelist, too many nodes or too deep; iterative, left first."""
    count = 0
    stack: list[tuple[ast.expr, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(f"expression is too complex (more than {MAX_NODES} parts)")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        refusal = _refusal(node)
        if refusal:
            raise ExpressionError(refusal)
        children = [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]
        stack.extend((child, depth + 1) for child in reversed(children))


def _refusal(node: ast.expr) -> str | None:
    if isinstance(node, _ALLOWED):
        operators: list[ast.AST] = []
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            operators = [node.op]
        elif isinstance(node, ast.Compare):
            operators = list(node.ops)
        for op in operators:
            if type(op) in _REFUSED_OPERATORS:
                return _REFUSED_OPERATORS[type(op)]
        return None
    for types, message in _REFUSED:
        if isinstance(node, types):
            return message
    return f"{type(node).__name__} expressions are not allowed"


# --- compiling into closures ---------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """Where an evaluation error happened; the source snippet is only built on error."""

    text: str
    node: ast.expr

    def __str__(self) -> str:
        segment = ast.get_source_segment(self.text, self.node) or ast.unparse(self.node)
        return _shorten(" ".join(segment.split()), 60)


class _Compiler:
    """Turns a checked tree into closures; also collects roots and task references."""

    def __init__(self, text: str, allowed_roots: frozenset[str]) -> None:
        self.text = text
        self.allowed_roots = allowed_roots
        self.roots: set[str] = set()
        self.task_refs: set[str] = set()

    def compile(self, node: ast.expr) -> _Eval:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.BoolOp):
            return self._boolean(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.compile(item) for item in node.elts]
            return lambda context: [item(context) for item in items]
        if isinstance(node, ast.IfExp):
            return self._conditional(node)
        raise ExpressionError(f"{type(node).__name__} expressions are not allowed")

    def _site(self, node: ast.expr) -> _Site:
        return _Site(self.text, node)

    def _constant(self, node: ast.Constant) -> _Eval:
        value = node.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not _in_range(value):
                raise ExpressionError("number literal is out of range (|x| <= 1e18)")
        elif not (value is None or isinstance(value, bool | str)):
            raise ExpressionError(f"{type(value).__name__} literals are not allowed")
        return lambda _context: value

    def _name(self, node: ast.Name) -> _Eval:
        if node.id in _LITERAL_NAMES:
            value = _LITERAL_NAMES[node.id]
            return lambda _context: value
        if self._is_tasks(node):
            raise ExpressionError(
                "'tasks' must be followed by a task name, e.g. tasks.extract.status"
            )
        return self._root(node)

    def _root(self, node: ast.Name) -> _Eval:
        name = node.id
        if name not in self.allowed_roots:
            known = ", ".join(sorted(self.allowed_roots | _LITERAL_NAMES.keys()))
            raise ExpressionError(f"unknown name {name!r}; expressions can use {known}")
        self.roots.add(name)

        def fetch(context: Mapping[str, Any]) -> Any:
            if name not in context:
                raise ExpressionError(f"{name!r} is not available here")
            return context[name]

        return fetch

    def _is_tasks(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id == _TASKS and _TASKS in self.allowed_roots

    def _container(self, node: ast.expr) -> _Eval:
        """The value being looked into; ``tasks`` is only allowed here."""
        if isinstance(node, ast.Name) and self._is_tasks(node):
            return self._root(node)
        return self.compile(node)

    def _attribute(self, node: ast.Attribute) -> _Eval:
        key = node.attr
        if key.startswith("_"):
            raise ExpressionError(f"names starting with '_' are not allowed: {key!r}")
        if self._is_tasks(node.value):
            self.task_refs.add(key)
        container = self._container(node.value)
        site = self._site(node)

        def lookup(context: Mapping[str, Any]) -> Any:
            value = container(context)
            if value is None:
                return None
            if isinstance(value, Mapping):
                return value.get(key)
            raise ExpressionError(f"cannot look up .{key} on {_describe(value)} in `{site}`")

        return lookup

    def _subscript(self, node: ast.Subscript) -> _Eval:
        if self._is_tasks(node.value):
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                raise ExpressionError("tasks[...] needs a quoted task name, e.g. tasks['extract']")
            self.task_refs.add(node.slice.value)
        container = self._container(node.value)
        key = self.compile(node.slice)
        site = self._site(node)
        return lambda context: _index(container(context), key(context), site)

    def _boolean(self, node: ast.BoolOp) -> _Eval:
        operands = [self.compile(value) for value in node.values]
        stop_when = isinstance(node.op, ast.Or)  # `or` stops at a true value, `and` at a false

        def decide(context: Mapping[str, Any]) -> Any:
            value = None
            for operand in operands:
                value = operand(context)
                if _truthy(value) is stop_when:
                    return value
            return value

        return decide

    def _compare(self, node: ast.Compare) -> _Eval:
        first = self.compile(node.left)
        steps = [
            (_COMPARISONS[type(op)], self.compile(right))
            for op, right in zip(node.ops, node.comparators, strict=True)
        ]
        site = self._site(node)

        def compare(context: Mapping[str, Any]) -> bool:
            left = first(context)
            for test, operand in steps:
                right = operand(context)
                if not test(left, right, site):
                    return False
                left = right
            return True

        return compare

    def _binary(self, node: ast.BinOp) -> _Eval:
        apply = _ARITHMETIC[type(node.op)]
        left, right = self.compile(node.left), self.compile(node.right)
        site = self._site(node)
        return lambda context: apply(left(context), right(context), site)

    def _unary(self, node: ast.UnaryOp) -> _Eval:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda context: not _truthy(operand(context))
        sign = -1 if isinstance(node.op, ast.USub) else 1
        symbol = "-" if sign < 0 else "+"
        site = self._site(node)
        return lambda context: sign * _number(operand(context), symbol, site)

    def _conditional(self, node: ast.IfExp) -> _Eval:
        test, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
        return lambda context: body(context) if _truthy(test(context)) else orelse(context)


# --- values --------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "dict"
    raise ExpressionError(f"unsupported value of type {type(value).__name__}")


def _describe(value: Any) -> str:
    """A short, safe description of a value for error messages."""
    kind = _kind(value)
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "number":
        return repr(value) if _in_range(value) else "a huge number"
    if kind == "string":
        return _shorten(repr(value[:40]), 40)
    if kind == "list":
        return f"a list of {len(value)} items"
    return "a dict"


def _truthy(value: Any) -> bool:
    _kind(value)
    return bool(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_range(value: int | float) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return abs(value) <= MAX_NUMBER


def _number(value: Any, symbol: str, site: _Site) -> int | float:
    if not _is_number(value):
        raise ExpressionError(f"{symbol} needs a number, not {_describe(value)}, in `{site}`")
    if not _in_range(value):
        raise ExpressionError(f"number out of range (|x| <= 1e18) in `{site}`")
    return value


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _index(container: Any, key: Any, site: _Site) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        if not isinstance(key, str):
            raise ExpressionError(f"dict keys are strings, not {_describe(key)}, in `{site}`")
        return container.get(key)
    if isinstance(container, list | tuple):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError(f"list positions are integers, not {_describe(key)}, in `{site}`")
        if not -len(container) <= key < len(container):
            raise ExpressionError(
                f"position {key} is out of range for a list of length {len(container)} in `{site}`"
            )
        return container[key]
    raise ExpressionError(f"cannot index {_describe(container)} in `{site}`")


# --- comparisons ---------------------------------------------------------------------------


def _equal(left: Any, right: Any) -> bool:
    """JSON equality, iterative and with a step budget (context data may be large)."""
    pending = [(left, right)]
    steps = 0
    while pending:
        steps += 1
        if steps > _MAX_EQUALITY_STEPS:
            raise ExpressionError("values are too large to compare")
        a, b = pending.pop()
        kind = _kind(a)
        if kind != _kind(b):
            return False
        if kind == "list":
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif kind == "dict":
            if a.keys() != b.keys():
                return False
            pending.extend((a[k], b[k]) for k in a)
        elif a != b:
            return False
    return True


def _ordered(symbol: str, test: Callable[[Any, Any], bool]) -> _Test:
    def compare(left: Any, right: Any, site: _Site) -> bool:
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return test(left, right)
        raise ExpressionError(
            f"cannot compare {_describe(left)} {symbol} {_describe(right)} in `{site}`; "
            "only numbers with numbers and strings with strings"
        )

    return compare


def _contains(needle: Any, haystack: Any, site: _Site) -> bool:
    if isinstance(haystack, list | tuple):
        return any(_equal(needle, item) for item in haystack)
    if isinstance(haystack, Mapping | str):
        if not isinstance(needle, str):
            raise ExpressionError(
                f"'in' {_describe(haystack)} needs a string, not {_describe(needle)}, in `{site}`"
            )
        return needle in haystack
    raise ExpressionError(f"cannot use 'in' on {_describe(haystack)} in `{site}`")


_Test = Callable[[Any, Any, _Site], bool]

_COMPARISONS: dict[type[ast.cmpop], _Test] = {
    ast.Eq: lambda a, b, _site: _equal(a, b),
    ast.NotEq: lambda a, b, _site: not _equal(a, b),
    ast.Lt: _ordered("<", operator.lt),
    ast.LtE: _ordered("<=", operator.le),
    ast.Gt: _ordered(">", operator.gt),
    ast.GtE: _ordered(">=", operator.ge),
    ast.In: _contains,
    ast.NotIn: lambda a, b, site: not _contains(a, b, site),
}


# --- arithmetic ----------------------------------------------------------------------------


def _bounded(result: int | float, site: _Site) -> int | float:
    if not _in_range(result):
        raise ExpressionError(f"result is out of range (|x| <= 1e18) in `{site}`")
    return result


def _add(left: Any, right: Any, site: _Site) -> Any:
    if _is_number(left) and _is_number(right):
        return _bounded(_number(left, "+", site) + _number(right, "+", site), site)
    same_sequences = isinstance(left, str) and isinstance(right, str)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        left, right, same_sequences = list(left), list(right), True
    if same_sequences:
        if len(left) + len(right) > MAX_SIZE:
            raise ExpressionError(f"result is too long (more than {MAX_SIZE:,}) in `{site}`")
        return left + right
    raise ExpressionError(f"cannot add {_describe(left)} and {_describe(right)} in `{site}`")


def _numeric(symbol: str, apply: Callable[[Any, Any], Any]) -> _Arithmetic:
    def calculate(left: Any, right: Any, site: _Site) -> int | float:
        sequences = str | list | tuple
        if symbol == "*" and (isinstance(left, sequences) or isinstance(right, sequences)):
            raise ExpressionError(f"repeating strings or lists with * is not allowed in `{site}`")
        a, b = _number(left, symbol, site), _number(right, symbol, site)
        if symbol in {"/", "//", "%"} and b == 0:
            raise ExpressionError(f"division by zero in `{site}`")
        try:
            result = apply(a, b)
        except (OverflowError, ZeroDivisionError) as exc:
            raise ExpressionError(f"arithmetic error ({exc}) in `{site}`") from None
        return _bounded(result, site)

    return calculate


_Arithmetic = Callable[[Any, Any, _Site], Any]

_ARITHMETIC: dict[type[ast.operator], _Arithmetic] = {
    ast.Add: _add,
    ast.Sub: _numeric("-", operator.sub),
    ast.Mult: _numeric("*", operator.mul),
    ast.Div: _numeric("/", operator.truediv),
    ast.FloorDiv: _numeric("//", operator.floordiv),
    ast.Mod: _numeric("%", operator.mod),
}
