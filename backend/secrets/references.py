"""Secret references in job specs, checked when a job version is saved.

- ``${{ secrets.NAME }}`` may appear only in the fields a worker substitutes
  (:data:`kernel.secrets.SECRET_FIELDS`: shell ``command``/``env``, http ``url``/``headers``/
  ``body``, docker ``command``/``env``, python ``env``), and NAME must be a valid secret
  name. Whether the secret exists is checked at dispatch, not here: a job may be saved
  before its secrets are created, and a secret deleted later must fail clearly anyway.
- A literal value for an environment variable or header whose name looks like a
  credential (``DB_PASSWORD``, ``API_TOKEN``, ``Authorization`` ...) is refused: job specs
  are readable by every member, viewers included, so such a value belongs in a secret.
  A value made only of references (and the fixed words of an ``Authorization`` scheme,
  e.g. ``Bearer ${{ secrets.API_TOKEN }}``) is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kernel.secrets import MASK, REFERENCE, REFERENCE_LIKE, SECRET_FIELDS

SENSITIVE_WORDS = frozenset(
    {
        "PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "TOKENS",
        "APIKEY", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTHORIZATION", "COOKIE",
    }
)  # fmt: skip
# KEY counts after a qualifier (API_KEY, SSH_KEY, PRIVATE_KEY ...), except these, which
# name keys that are not credentials (SORT_KEY, CACHE_KEY ...). A bare KEY does not count.
NOT_CREDENTIAL_KEYS = frozenset(
    {
        "SORT", "PRIMARY", "PARTITION", "CACHE", "ROUTING", "IDEMPOTENCY", "PUBLIC",
        "FOREIGN", "HASH", "GROUP", "LOOKUP", "MAP", "OBJECT", "BUCKET", "QUEUE", "DEDUP",
        "SHARD", "INDEX", "SEARCH", "STREAM", "REDIS", "CONFIG", "PREFIX",
    }
)  # fmt: skip
# Glued forms: DBPASSWORD, GITHUBTOKEN, XAPIKEY.
SENSITIVE_SUFFIXES = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY")
_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[0-9]+")
# What may stand beside references in a sensitive value: an auth scheme and spaces.
_SCHEME = re.compile(r"^\s*(?:(?:Bearer|Basic|Token|Bot)\s+)?$", re.IGNORECASE)


def looks_sensitive(name: str) -> bool:
    """Whether an environment variable or header name looks like it holds a credential."""
    words = [w.upper() for w in _WORD.findall(name)]
    if any(w in SENSITIVE_WORDS or w.endswith(SENSITIVE_SUFFIXES) for w in words):
        return True
    return any(
        w in ("KEY", "KEYS") and i > 0 and words[i - 1] not in NOT_CREDENTIAL_KEYS
        for i, w in enumerate(words)
    )


def _problem(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def _strings(value: Any, loc: list[str | int]) -> Iterator[tuple[list[str | int], str, bool]]:
    """Every string in ``value``: (location, text, whether it is an object key)."""
    if isinstance(value, str):
        yield loc, value, False
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, [*loc, index])
    elif isinstance(value, dict):
        for key, item in value.items():
            yield [*loc, str(key)], str(key), True
            yield from _strings(item, [*loc, str(key)])


def _allowed(task_type: str, loc: list[str | int], is_key: bool) -> bool:
    """References are substituted in a secret field's strings and object *values* only."""
    return loc[0] in SECRET_FIELDS.get(task_type, ()) and not is_key


def reference_problems(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Misplaced or malformed references, and literal credentials, in every task."""
    tasks = document.get("tasks")
    if not isinstance(tasks, list):
        return []
    problems: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            continue
        task_type = str(task.get("type", ""))
        fields = ", ".join(SECRET_FIELDS.get(task_type, ())) or "no field"
        for key, value in task.items():
            for loc, text, is_key in _strings(value, [str(key)]):
                for match in REFERENCE_LIKE.finditer(text):
                    where: list[str | int] = ["tasks", index, *loc]
                    if not REFERENCE.fullmatch(match.group(0)):
                        problems.append(_problem(
                            where,
                            "malformed secret reference: write ${{ secrets.NAME }} with NAME "
                            "of capital letters, digits and _ (not starting with a digit)",
                            "invalid_secret_reference",
                        ))  # fmt: skip
                    elif not _allowed(task_type, loc, is_key):
                        problems.append(_problem(
                            where,
                            f"secret references are allowed only in {fields} of a "
                            f"{task_type or 'task'} task",
                            "secret_reference_not_allowed",
                        ))  # fmt: skip
        problems.extend(_literal_credentials(task, index))
    return problems


CREDENTIAL_FIELDS = ("env", "headers")


def is_literal_credential(name: Any, value: Any) -> bool:
    """A credential-looking variable or header whose value is more than references."""
    if not isinstance(name, str) or not isinstance(value, str) or not looks_sensitive(name):
        return False
    rest = REFERENCE.sub(" ", value)
    return bool(value) and (rest == value or not _SCHEME.match(rest))


def _literal_credentials(task: dict[str, Any], index: int) -> Iterator[dict[str, Any]]:
    for field in CREDENTIAL_FIELDS:
        mapping = task.get(field)
        if not isinstance(mapping, dict):
            continue
        for name, value in mapping.items():
            if is_literal_credential(name, value):
                yield _problem(
                    ["tasks", index, field, name],
                    f"{name} looks like a credential: job specs are shown to every member, "
                    f"so store the value as a secret (Settings > Secrets, or POST "
                    f"/api/v1/secrets) and write ${{{{ secrets.{_suggest(name)} }}}} here",
                    "literal_credential",
                )


def _suggest(name: str) -> str:
    suggestion = re.sub(r"[^A-Z0-9_]", "_", name.upper())
    return suggestion if not suggestion[:1].isdigit() else f"_{suggestion}"


def mask_literal_credentials(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` for display: literal credentials (kept by versions saved before they were
    refused) replaced by ``***``. A copy when anything changes; the stored spec, which
    tasks run with, is untouched."""
    tasks = spec.get("tasks")
    if not isinstance(tasks, list):
        return spec
    masked_tasks = [_masked_task(task) if isinstance(task, dict) else task for task in tasks]
    if all(new is old for new, old in zip(masked_tasks, tasks, strict=True)):
        return spec
    return {**spec, "tasks": masked_tasks}


def _masked_task(task: dict[str, Any]) -> dict[str, Any]:
    changed = {}
    for field in CREDENTIAL_FIELDS:
        mapping = task.get(field)
        if isinstance(mapping, dict) and any(
            is_literal_credential(k, v) for k, v in mapping.items()
        ):
            changed[field] = {
                k: MASK if is_literal_credential(k, v) else v for k, v in mapping.items()
            }
    return {**task, **changed} if changed else task
