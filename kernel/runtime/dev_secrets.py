"""Development secrets: random per installation, never a constant in the code.

When ``BATON_JWT_SECRET`` (or ``BATON_APP_DB_PASSWORD``) is not set in ``dev``, Baton uses a
random value created on first use in the data directory (``<data_dir>/jwt-secret``,
``<data_dir>/app-db-password``, mode 0600), so every installation has its own and a token
signed by one is worthless on another. In ``test`` the value is random per process and
never written. A worker started alone (``worker.settings``) uses the same files for the
one it needs, the transit key, so it opens what a ``baton dev`` or ``baton scheduler``
beside it seals. Production refuses to start without the real settings, and
``baton api`` / ``baton dev`` refuse to listen on a non-loopback address with a generated
JWT secret (:func:`is_generated`).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

# Every value this process generated or loaded from a data directory.
_generated: set[str] = set()
_per_process: dict[str, str] = {}


def stored_secret(data_dir: Path, name: str) -> str:
    """The secret kept in ``data_dir/name``, created (0600, 32 random bytes) on first use."""
    path = data_dir / name
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create(path)
        value = path.read_text().strip()
    except OSError as error:
        raise ValueError(
            f"cannot keep the development secret in {path} ({error.strerror}); "
            f"set BATON_{name.upper().replace('-', '_')} or a writable BATON_DATA_DIR"
        ) from error
    if len(value) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it to have a new one made")
    _generated.add(value)
    return value


def _create(path: Path) -> None:
    """Write a new secret to a private file and link it into place: the link fails if
    another process got there first (its secret wins), and nobody reads a half-written one."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process's secret won
            os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def process_secret(name: str) -> str:
    """A random secret for this process only (the ``test`` environment)."""
    value = _per_process.setdefault(name, secrets.token_hex(32))
    _generated.add(value)
    return value


def as_key(generated: str) -> str:
    """A generated secret (64 hex digits) as a key setting's value (32 bytes, base64): the
    form of ``BATON_SECRETS_KEK`` and ``BATON_WORKER_TRANSIT_KEY``."""
    return base64.b64encode(bytes.fromhex(generated)[:32]).decode()


def is_generated(value: str) -> bool:
    """True for a development secret made by this module rather than configured."""
    return value in _generated
