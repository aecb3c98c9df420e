"""Profiles: a server URL and an API token per name, in the user's config directory.

The file is ``config.json`` in ``typer.get_app_dir("baton")``: ``~/.config/baton`` on
Linux (``$XDG_CONFIG_HOME/baton`` when set), ``~/Library/Application Support/baton`` on
macOS, ``%APPDATA%\\baton`` on Windows; ``BATON_CONFIG_DIR`` overrides the directory.
It is written with mode 0600 because it holds tokens. ``BATON_URL`` and ``BATON_TOKEN``
override the profile's values and ``BATON_PROFILE`` picks the profile, so CI needs no
file at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    """No usable server URL or token."""


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    token: str


def config_dir() -> Path:
    override = os.environ.get("BATON_CONFIG_DIR")
    return Path(override) if override else Path(typer.get_app_dir("baton"))


def config_path() -> Path:
    return config_dir() / "config.json"


def _read() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {"profiles": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {"profiles": {}}


def save_profile(name: str, url: str, token: str, *, make_default: bool = True) -> Path:
    """Store (or replace) a profile; the file is created private to the user."""
    data = _read()
    data.setdefault("profiles", {})[name] = {"url": url.rstrip("/"), "token": token}
    if make_default or "default_profile" not in data:
        data["default_profile"] = name
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    path.chmod(0o600)
    return path


def list_profiles() -> list[dict[str, Any]]:
    """The saved profiles without their tokens: name, URL, whether it is the default."""
    data = _read()
    stored: dict[str, Any] = data.get("profiles", {})
    default = data.get("default_profile")
    return [
        {"name": name, "url": stored[name].get("url"), "default": name == default}
        for name in sorted(stored)
    ]


def load_profile(name: str | None = None) -> Profile:
    """The profile to use: ``name``, else ``BATON_PROFILE``, else the default one; with
    ``BATON_URL`` / ``BATON_TOKEN`` taking precedence over what the file says."""
    data = _read()
    chosen = name or os.environ.get("BATON_PROFILE") or data.get("default_profile")
    stored = data.get("profiles", {}).get(chosen or DEFAULT_PROFILE, {})
    if name and not stored:
        raise ConfigError(f"No profile {name!r}; run `baton login --profile {name}`")
    url = os.environ.get("BATON_URL") or stored.get("url")
    token = os.environ.get("BATON_TOKEN") or stored.get("token")
    if not url or not token:
        raise ConfigError("Not logged in: run `baton login` (or set BATON_URL and BATON_TOKEN)")
    return Profile(name=chosen or DEFAULT_PROFILE, url=str(url).rstrip("/"), token=str(token))
