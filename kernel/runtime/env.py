"""``BATON_*`` settings read from the environment without pydantic (a worker installed alone).

The API's processes read their settings with pydantic-settings (``backend.core.settings``);
a worker reads the same variables, under the same names and with the same meaning, through
:class:`EnvReader`. As with pydantic-settings, a ``.env`` file in the working directory is
read first and the process environment wins over it, and names are not case-sensitive. A
value that cannot be used raises :class:`SettingError`, whose message names the variable
(and never repeats a key's value).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

PREFIX = "BATON_"
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class SettingError(ValueError):
    """A setting's value is missing or unusable (the message says which and why)."""


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> dict[str, str]:
    """The ``BATON_*`` variables (names upper-cased): ``env_file``'s, then ``environ``'s
    (default: the process environment), which win."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update(_dotenv(env_file.read_text()))
    source = os.environ if environ is None else environ
    values.update({name.upper(): value for name, value in source.items()})
    return {name: value for name, value in values.items() if name.startswith(PREFIX)}


def _dotenv(text: str) -> dict[str, str]:
    """``NAME=value`` lines (``export`` allowed, ``#`` comments, quoted values)."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        found[name.strip().upper()] = value
    return found


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


class EnvReader:
    """Typed access to ``BATON_*`` values; ``name`` is given without the prefix."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def raw(self, name: str) -> str | None:
        return self.values.get(PREFIX + name.upper())

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: str) -> str | None:
        """The value, or None when unset or empty."""
        value = self.raw(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.strip().lower() not in choices:
            raise SettingError(
                f"{PREFIX}{name.upper()} must be one of {', '.join(choices)} (got {_shown(value)})"
            )
        return value.strip().lower()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise SettingError(f"{PREFIX}{name.upper()} must be true or false (got {_shown(value)})")

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise SettingError(
                f"{PREFIX}{name.upper()} must be a whole number (got {_shown(value)})"
            ) from None
        _check_range(name, number, minimum, maximum, above=None)
        return number

    def number(
        self, name: str, default: float, *, above: float | None = None, minimum: float | None = None
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise SettingError(
                f"{PREFIX}{name.upper()} must be a number (got {_shown(value)})"
            ) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise SettingError(f"{PREFIX}{name.upper()} must be a finite number")
        _check_range(name, number, minimum, None, above=above)
        return number

    def text_list(
        self, name: str, default: tuple[str, ...], *, commas: bool = False
    ) -> tuple[str, ...]:
        """A JSON list of strings (``commas``: ``a,b`` is accepted too)."""
        value = self.raw(name)
        if value is None:
            return default
        text = value.strip()
        if commas and not text.startswith("["):
            return tuple(part.strip() for part in text.split(",") if part.strip())
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise SettingError(
                f'{PREFIX}{name.upper()} must be a JSON list of strings, e.g. ["a", "b"] '
                f"(got {_shown(value)})"
            )
        return tuple(items)


def _check_range(
    name: str,
    number: float,
    minimum: float | None,
    maximum: float | None,
    *,
    above: float | None,
) -> None:
    variable = PREFIX + name.upper()
    if above is not None and not number > above:
        raise SettingError(f"{variable} must be greater than {above:g} (got {number:g})")
    if minimum is not None and number < minimum:
        raise SettingError(f"{variable} must be at least {minimum:g} (got {number:g})")
    if maximum is not None and number > maximum:
        raise SettingError(f"{variable} must be at most {maximum:g} (got {number:g})")


def key_bytes(encoded: str) -> bytes | None:
    """A 32-byte key from its base64 form, or None when it is not one."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def keyring(setting: str, previous_json: str, current_id: str, current: str) -> dict[str, bytes]:
    """The current key and the previous ones (a JSON object id -> key), by id: every key
    base64, 32 bytes, under a plain id. Raises :class:`SettingError` naming ``setting``."""
    try:
        previous = json.loads(previous_json or "{}")
    except ValueError:
        raise SettingError(f"the previous keys of {setting} are not a JSON object") from None
    if not isinstance(previous, dict):
        raise SettingError(f"the previous keys of {setting} are not a JSON object")
    ring: dict[str, bytes] = {}
    for kid, encoded in {**previous, current_id: current}.items():
        key = key_bytes(encoded) if isinstance(encoded, str) else None
        if not _KEY_ID.match(str(kid)) or key is None:
            raise SettingError(
                f"{setting} key {str(kid)[:64]!r} must have a plain id and be "
                f"{KEY_BYTES} bytes, base64-encoded"
            )
        ring[str(kid)] = key
    return ring
