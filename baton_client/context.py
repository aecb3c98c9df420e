"""The profile chosen on the command line (``baton --profile NAME ...``) and its client."""

from __future__ import annotations

from baton_client.config import ConfigError, load_profile
from baton_client.http import Api
from baton_client.output import fail

_selected: dict[str, str | None] = {"profile": None}


def select_profile(name: str | None) -> None:
    _selected["profile"] = name


def api() -> Api:
    """A client of the selected profile's server; exits with a clear message if none."""
    try:
        return Api(load_profile(_selected["profile"]))
    except ConfigError as error:
        raise fail(str(error)) from error
