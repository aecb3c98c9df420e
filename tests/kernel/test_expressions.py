"""The job-spec expression language: semantics, limits, and abuse that must be refused."""

from __future__ import annotations

import pickle
import random
import string
import tracemalloc
from typing import Any

import pytest

from kernel.dag import expressions
from kernel.dag.expressions import (
    MAX_LENGTH,
    Expression,
    ExpressionError,
    parse_expression,
)

CONTEXT: dict[str, Any] = {
    "params": {
        "env": "prod",
        "regions": ["eu", "us"],
        "n": 3,
        "ratio": 0.5,
        "dry_run": False,
        "force": True,
        "name": "nightly",
        "zero": 0,
        "nested": {"a": {"b": [10, 20, 30]}},
        "clé": "ok",
        "__class__": "just a key",
    },
    "tasks": {
        "check": {
            "status": "succeeded",
            "output": {
                "rows": 5,
                "row-count": 12,
                "files": ["a.csv", "b.csv"],
                "items": [{"name": "first"}, {"name": ""}],
                "empty": [],
                "none": None,
            },
        },
        "extract": {"status": "failed", "output": {}},
    },
    "item": "b.csv",
    "run": {"id": "r-1", "attempt": 2},
}


def value(text: str, context: dict[str, Any] | None = None) -> Any:
    return parse_expression(text).evaluate(CONTEXT if context is None else context)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The spec examples.
        ("tasks.check.output.rows > 0 and params.env == 'prod'", True),
        ("tasks.extract.status == 'succeeded' or params.force", True),
        ("tasks.check.output.files", ["a.csv", "b.csv"]),
        ("'eu' in params.regions and not params.dry_run", True),
        ("tasks.check.output['row-count'] >= 10 and tasks.check.output.items[0].name != ''", True),
        ("params.n * 2 + 1 < 100", True),
        # Literals.
        ("'single'", "single"),
        ('"double"', "double"),
        ("'''tri'ple'''", "tri'ple"),
        ("'caf\u00e9'", "caf\u00e9"),
        ("42", 42),
        ("-1.5", -1.5),
        ("1_000", 1000),
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
        ("null", None),
        ("None", None),
        ("[1, 'a', null, [true]]", [1, "a", None, [True]]),
        ("(1, 2)", [1, 2]),
        ("()", []),
        ("[]", []),
        ("1000000000000000000", 10**18),
        ("-1000000000000000000", -(10**18)),
        # Roots, keys and indexes.
        ("item", "b.csv"),
        ("run.attempt", 2),
        ("params.nested.a.b[1]", 20),
        ("params.nested['a']['b'][-1]", 30),
        ("params['clé']", "ok"),
        ("tasks['check'].status", "succeeded"),
        ("tasks.check.output.items[-2].name", "first"),
        ("params.regions[params.zero]", "eu"),
        # Comparisons.
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("3 > 2 >= 2 > 1", True),
        ("1 <= 1", True),
        ("'a' < 'b'", True),
        ("1 == 1.0", True),
        ("1 != 2", True),
        ("true == 1", False),
        ("'1' == 1", False),
        ("null == null", True),
        ("params.missing == null", True),
        ("[1, [2, 'x']] == [1, (2, 'x')]", True),
        ("[1] == [true]", False),
        ("params.nested.a == params.nested.a", True),
        ("tasks.check.output.items[0] == tasks.check.output.items[1]", False),
        ("'eu' in params.regions", True),
        ("'asia' not in params.regions", True),
        ("'env' in params", True),
        ("'ght' in params.name", True),
        ("[1] in [[1], [2]]", True),
        ("1 in [true]", False),
        # Boolean logic returns the deciding value.
        ("0 or 'fallback'", "fallback"),
        ("'first' or 'second'", "first"),
        ("'' and 1", ""),
        ("1 and 2", 2),
        ("null or [] or 0", 0),
        ("not []", True),
        ("not 'x'", False),
        ("not not params.missing", False),
        ("params.missing and params.missing.deeper", None),
        # Arithmetic.
        ("1 + 2 * 3 - 4", 3),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7.5 // 2", 3.0),
        ("params.ratio * 4", 2.0),
        ("-params.n", -3),
        ("+params.n", 3),
        ("--1", 1),
        ("'a' + 'b'", "ab"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("tasks.check.output.files + ['c.csv']", ["a.csv", "b.csv", "c.csv"]),
        ("999999999 * 999999999", 999999998000000001),
        # Conditional expressions are allowed and lazy.
        ("params.x if True else 0", None),
        ("'yes' if params.force else 'no'", "yes"),
        ("'yes' if params.dry_run else 'no'", "no"),
        ("1 if true else tasks.check.output.files[99]", 1),
        # Comments and line breaks inside brackets.
        ("params.n  # the count", 3),
        ("(params.n\n + 1)", 4),
    ],
)
def test_evaluates(text: str, expected: Any) -> None:
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        "params.missing",
        "params.force_not_given",
        "tasks.check.output.absent",
        "tasks.unknown",
        "tasks.unknown.output.rows",
        "tasks.check.output.none.deeper[0]",
        "params.missing[0]",
        "params.missing['k'].x",
        "params['__class__'] if false else params['__dict__']",
        "params['__globals__']",
    ],
)
def test_missing_data_is_null(text: str) -> None:
    assert value(text) is None


def test_dict_keys_are_data_never_python_attributes() -> None:
    assert value("params['__class__']") == "just a key"
    assert value("params['__init__']") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("false and tasks.x.output[5]", False),
        ("0 and 1 / 0", 0),
        ("true or 1 / 0", True),
        ("params.force or '1' < 2", True),
        ("params.dry_run and params.n.boom", False),
        ("1 > 2 > 'never compared'", False),
        ("2 if true else 1 / 0", 2),
        ("1 / 0 if false else 2", 2),
    ],
)
def test_short_circuit_skips_the_rest(text: str, expected: Any) -> None:
    result = value(text)  # the skipped part would raise
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("'1' < 2", "cannot compare"),
        ("1 < null", "cannot compare"),
        ("true < 2", "cannot compare"),
        ("[1] < [2]", "cannot compare"),
        ("params.missing > 0", "cannot compare"),
        ("1 in 2", "'in'"),
        ("1 in 'abc'", "needs a string"),
        ("1 in params", "needs a string"),
        ("'a' in params.missing", "'in'"),
        ("True.real", "cannot look up .real"),
        ("params.n.real", "cannot look up .real"),
        ("params.regions.count", "cannot look up .count"),
        ("params.name.upper", "cannot look up .upper"),
        ("params.name[0]", "cannot index"),
        ("params.n[0]", "cannot index"),
        ("params.regions[5]", "out of range"),
        ("params.regions[-3]", "out of range"),
        ("params.regions['0']", "list positions are integers"),
        ("params.regions[true]", "list positions are integers"),
        ("params.regions[0.0]", "list positions are integers"),
        ("params[0]", "dict keys are strings"),
        ("1 / 0", "division by zero"),
        ("1 // 0.0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("'a' + 1", "cannot add"),
        ("[1] + 'a'", "cannot add"),
        ("null + 1", "cannot add"),
        ("true + 1", "cannot add"),
        ("'a' - 'b'", "needs a number"),
        ("-'a'", "needs a number"),
        ("-true", "needs a number"),
        ("'a' * 3", "repeating"),
        ("3 * [1]", "repeating"),
        ("1000000000000000000 + 1", "out of range"),
        ("999999999999 * 999999999999 * 999999999999", "out of range"),
        ("1e17 * 100", "out of range"),
        ("1e18 // 1e-18", "out of range"),
    ],
)
def test_evaluation_errors(text: str, message: str) -> None:
    expression = parse_expression(text)  # parses fine: these fail only on the data
    with pytest.raises(ExpressionError, match=message):
        expression.evaluate(CONTEXT)


def test_evaluation_errors_name_the_failing_part() -> None:
    with pytest.raises(ExpressionError) as caught:
        value("params.env == 'prod' and tasks.check.output.rows < 'ten'")
    assert "`tasks.check.output.rows < 'ten'`" in str(caught.value)


def test_root_absent_from_context_is_an_error() -> None:
    expression = parse_expression("item.name")
    with pytest.raises(ExpressionError, match="'item' is not available"):
        expression.evaluate({"params": {}})


def test_context_must_be_a_mapping() -> None:
    with pytest.raises(ExpressionError):
        parse_expression("1").evaluate(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_values_outside_json_are_refused_when_used() -> None:
    context = {"params": {"when": object(), "huge": 10**30, "inf": float("inf")}}
    with pytest.raises(ExpressionError, match="unsupported value"):
        value("params.when == 1", context)
    with pytest.raises(ExpressionError, match="out of range"):
        value("params.huge + 1", context)
    with pytest.raises(ExpressionError, match="out of range"):
        value("-params.inf", context)


def test_growing_strings_and_lists_are_capped() -> None:
    context = {"params": {"s": "x" * 60_000, "l": list(range(60_000))}}
    assert len(value("params.s + 'y'", context)) == 60_001
    with pytest.raises(ExpressionError, match="too long"):
        value("params.s + params.s", context)
    with pytest.raises(ExpressionError, match="too long"):
        value("params.l + params.l", context)


def test_equality_is_bounded_even_on_cyclic_data() -> None:
    limit = expressions._MAX_EQUALITY_STEPS  # the production budget, not a lowered one
    cyclic_a: list[Any] = []
    cyclic_a.append(cyclic_a)
    cyclic_b: list[Any] = []
    cyclic_b.append(cyclic_b)
    fits = list(range(limit - 1))  # the list itself plus its items: exactly the budget
    context = {
        "params": {"a": cyclic_a, "b": cyclic_b, "big": [*fits, 0], "fits": fits},
    }
    with pytest.raises(ExpressionError, match="too large"):
        value("params.a == params.b", context)
    with pytest.raises(ExpressionError, match="too large"):
        value("params.big == params.big", context)  # one step over the budget
    assert value("params.fits == params.fits", context) is True
    assert value("params.big != []", context) is True


def test_expressions_pickle_by_text() -> None:
    expression = parse_expression("item + 1", allowed_roots=frozenset({"item"}))
    copy = pickle.loads(pickle.dumps(expression))
    assert copy == expression and copy.evaluate({"item": 1}) == 2


@pytest.mark.parametrize(
    ("text", "truthy"),
    [
        ("params.force", True),
        ("params.missing", False),
        ("params.zero", False),
        ("0.0", False),
        ("''", False),
        ("'0'", True),
        ("[]", False),
        ("[0]", True),
        ("params.nested", True),
        ("tasks.extract.output", False),
        ("null", False),
    ],
)
def test_truthy(text: str, truthy: bool) -> None:
    assert parse_expression(text).truthy(CONTEXT) is truthy


def test_task_references_and_roots() -> None:
    expression = parse_expression(
        "tasks.check.output.rows > 0 and tasks['load-x'].status == 'ok' or params.force"
    )
    assert expression.task_references == frozenset({"check", "load-x"})
    assert expression.roots == frozenset({"tasks", "params"})
    assert parse_expression("1 + 1").roots == frozenset()
    assert parse_expression("item").task_references == frozenset()


def test_parse_once_evaluate_many_times() -> None:
    expression = parse_expression("item * 2 + params.n")
    assert [expression.evaluate({"item": i, "params": {"n": 1}}) for i in range(3)] == [1, 3, 5]
    assert expression == Expression("item * 2 + params.n")
    assert hash(expression) == hash(Expression("item * 2 + params.n"))


def test_custom_roots() -> None:
    expression = parse_expression("row.size > 1", allowed_roots=frozenset({"row"}))
    assert expression.evaluate({"row": {"size": 2}}) is True
    with pytest.raises(ExpressionError, match="unknown name 'params'"):
        parse_expression("params.x", allowed_roots=frozenset({"row"}))


@pytest.mark.parametrize(
    "root", ["__builtins__", "_x", "true", "null", "if", "a.b", "p\u0430rams", ""]
)
def test_invalid_roots_are_a_programming_error(root: str) -> None:
    with pytest.raises(ValueError, match="invalid root name"):
        parse_expression("1", allowed_roots=frozenset({root}))


# --- abuse --------------------------------------------------------------------------------

ABUSE = [
    ("().__class__.__bases__[0].__subclasses__()", "function calls"),
    ("().__class__", "'_'"),
    ("params.__class__", "'_'"),
    ("params._secret", "'_'"),
    ("item.__dict__", "'_'"),
    ("params.n.__class__.__mro__", "'_'"),
    ("__import__('os').system('id')", "function calls"),
    ("__builtins__", "unknown name"),
    ("open('/etc/passwd')", "function calls"),
    ("params.get('x')", "function calls"),
    ("lambda: 1", "lambda"),
    ("[x for x in params]", "comprehensions"),
    ("{x for x in params}", "comprehensions"),
    ("{k: 1 for k in params}", "comprehensions"),
    ("(x for x in params)", "comprehensions"),
    ("2 ** 99999999", r"power operator \*\*"),
    ("9 ** 9 ** 9", r"power operator \*\*"),
    ("'a' * 10**9", r"power operator \*\*"),
    ("[1] * 100000000", "repeating"),
    (" * ".join(["10"] * 19), "out of range"),
    ("999999999999 * 999999999999 * 999999999999", "out of range"),
    ("1e308 * 10", "out of range"),
    ("1e999", "out of range"),
    ("-1e999", "out of range"),
    ("1" + "0" * 19, "out of range"),
    ("9" * 1500, "out of range"),
    ("(" * 100_000 + ")" * 100_000, "too long"),
    ("(" * 500 + ")" * 500, "nested too deeply"),
    ("[" * 50 + "]" * 50, "nested too deeply"),
    ("{" * 40 + "}" * 40, "nested too deeply"),
    ("')' + " + "(" * 40 + "1" + ")" * 40, "nested too deeply"),
    ("not " * 10_000 + "true", "too long"),
    ("not " * 400 + "true", "nested too deeply"),
    ("-" * 1_999 + "1", "nested too deeply"),
    ("params" + ".a" * 100, "nested too deeply"),
    (" + ".join(["1"] * 300), "too complex|nested too deeply"),
    ("[" + ", ".join(["1"] * 600) + "]", "too complex"),
    ("params.x or " * 200 + "1", "too complex|too long"),
    ("'x' * 1_000_000", "repeating"),
    ("1 + " * 300_000 + "1", "too long"),
    ("f'{params}'", "f-strings"),
    ("F'{1}'", "f-strings"),
    ("rf'{1}'", "f-strings"),
    ("f'{" + "(" * 100 + "1" + ")" * 100 + "}'", "f-strings"),
    ("(x := 1)", "assignment expressions"),
    ("[*params.regions]", "starred"),
    ("params.regions[0:1]", "slices"),
    ("params.regions[::-1]", "slices"),
    ("params.regions[1:]", "slices"),
    ("{1, 2}", "set displays"),
    ("{'a': 1}", "dict displays"),
    ("{}", "dict displays"),
    ("1 | 2", "bitwise operator |"),
    ("1 & 2", "bitwise operator &"),
    ("1 ^ 2", r"bitwise operator \^"),
    ("~1", "bitwise operator ~"),
    ("1 << 62", "shift operator <<"),
    ("1 >> 1", "shift operator >>"),
    ("params @ params", "operator @"),
    ("params is None", "'is' is not allowed"),
    ("params is not None", "'is not' is not allowed"),
    ("await params", "await"),
    ("(yield)", "await and yield"),
    ("(yield from params)", "await and yield"),
    ("os", "unknown name 'os'"),
    ("builtins", "unknown name 'builtins'"),
    ("self", "unknown name 'self'"),
    ("globals", "unknown name"),
    ("getattr", "unknown name"),
    ("p\u0430rams", "ASCII"),  # Cyrillic a
    ("params.f\u043erce", "ASCII"),  # Cyrillic o in a key: would silently be null
    ("\uff50\uff41\uff52\uff41\uff4d\uff53", "ASCII"),  # full-width, NFKC-normalises to params
    ("params.\uff3f\uff3fclass\uff3f\uff3f", "ASCII"),  # full-width underscores
    ("tasks", "must be followed by a task name"),
    ("'check' in tasks", "must be followed by a task name"),
    ("tasks[params.name]", "quoted task name"),
    ("tasks[0]", "quoted task name"),
    ("b'bytes'", "bytes literals"),
    ("1j", "complex literals"),
    ("...", "ellipsis literals|Ellipsis"),
    ("", "empty"),
    ("   ", "empty"),
    ("params.x = 1", "invalid expression"),
    ("import os", "invalid expression"),
    ("1; 2", "invalid expression"),
    ("params.", "invalid expression"),
    ("'unterminated", "invalid expression"),
    ("(1", "invalid expression"),
    ("1)", "invalid expression"),
    ("\x00", "NUL"),
    ("'a\x00b'", "NUL"),
    ("def f(): pass", "invalid expression"),
    ("x if", "invalid expression"),
]


@pytest.mark.parametrize(("text", "message"), ABUSE)
def test_abuse_is_refused(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message) as caught:
        parse_expression(text).evaluate(CONTEXT)
    assert len(str(caught.value)) <= 300


def test_abuse_is_refused_in_little_memory() -> None:
    # How long it takes is for `make bench`; the work is bounded by MAX_LENGTH, MAX_NODES and
    # MAX_DEPTH (each tested above), not by a clock.
    texts = [text for text, _ in ABUSE] + ["x" * 1_000_000, "(" * 1_000_000]
    tracemalloc.start()
    try:
        for text in texts:
            with pytest.raises(ExpressionError):
                parse_expression(text).evaluate(CONTEXT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_long_input_is_not_echoed() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression("secret" * 200_000)
    assert "secret" not in str(caught.value)
    assert str(MAX_LENGTH) in str(caught.value)


def test_error_messages_are_short_even_for_long_snippets() -> None:
    text = "params.name + " + " + ".join(["'" + "y" * 20 + "'"] * 40) + " + 1"
    with pytest.raises(ExpressionError) as caught:
        value(text)
    assert len(str(caught.value)) <= 300


def test_non_string_text_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        parse_expression(None)  # type: ignore[arg-type]


def test_non_ascii_is_fine_inside_quotes_and_comments() -> None:
    assert value("params['clé'] == 'ok'  # café") is True


def test_limits_accept_reasonable_expressions() -> None:
    assert value("(" * 32 + "1" + ")" * 32) == 1
    assert value(" + ".join(["1"] * 60)) == 60
    assert value("[" + ", ".join(["1"] * 400) + "]") == [1] * 400
    long_string = "'" + "z" * (MAX_LENGTH - 2) + "'"
    assert value(long_string) == "z" * (MAX_LENGTH - 2)
    assert value("')))' + '(((((((((((((((((((((((((((((((((((((((((('").startswith(")))")


# --- garbage -------------------------------------------------------------------------------

_TOKENS = [
    "params", "tasks", "item", "run", "os", "__class__", "_x", ".", "[", "]", "(", ")", "{",
    "}", ",", ":", "'a'", '"b"', "'", '"', "0", "1", "-1", "1e308", "1e999", "999999999999",
    "2", "0.5", "true", "false", "null", "None", "and", "or", "not", "in", "is", "if", "else",
    "for", "lambda", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "//", "%", "**",
    "~", "&", "|", "^", "<<", ">>", "@", ":=", "*", "f'", "b'", "\\", "\n", "#", ";", "=",
    "yield", "await", "check", "output", "rows", "files", "regions", "n", "\u0430", "\x00",
    "...", "`", "$", "!",
]  # fmt: skip


def _garbage(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40)))
    return " ".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 25)))


def _well_formed(rng: random.Random, depth: int = 0) -> str:
    """Random expressions that usually parse, so evaluation paths get exercised too."""
    leaves = [
        "params.n", "params.regions", "params.missing", "params.name", "item", "run",
        "tasks.check.output.rows", "tasks.check.output.files", "tasks.check.output",
        "0", "1", "-3", "2.5", "'eu'", "''", "true", "null", "[1, 'a']", "[]",
        "999999999999", "1e18",
    ]  # fmt: skip
    if depth > 4 or rng.random() < 0.3:
        return rng.choice(leaves)
    left, right = _well_formed(rng, depth + 1), _well_formed(rng, depth + 1)
    shape = rng.randrange(6)
    if shape == 0:
        op = rng.choice(["+", "-", "*", "/", "//", "%"])
        return f"({left} {op} {right})"
    if shape == 1:
        op = rng.choice(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
        return f"({left} {op} {right})"
    if shape == 2:
        return f"({left} {rng.choice(['and', 'or'])} {right})"
    if shape == 3:
        return f"{left}[{right}]"
    if shape == 4:
        return f"({left} if {right} else {_well_formed(rng, depth + 1)})"
    return f"(not {left})" if rng.random() < 0.5 else f"(-{left})"


def test_random_input_only_ever_raises_expression_error() -> None:
    rng = random.Random(20240607)
    outcomes = {"parse_error": 0, "eval_error": 0, "value": 0}
    for _ in range(3_000):
        text = _garbage(rng) if rng.random() < 0.6 else _well_formed(rng)
        try:
            expression = parse_expression(text)
        except ExpressionError:
            outcomes["parse_error"] += 1
            continue
        try:
            expression.evaluate(CONTEXT)
            expression.truthy(CONTEXT)
        except ExpressionError:
            outcomes["eval_error"] += 1
        else:
            outcomes["value"] += 1
    assert all(count > 100 for count in outcomes.values()), outcomes
