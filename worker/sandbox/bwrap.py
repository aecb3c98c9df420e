"""The bubblewrap command line of a sandboxed shell task: what the task can see.

Namespaces: user (the task is uid/gid 65534 inside, mapped to one unprivileged uid outside;
no nested user namespaces), pid (it sees only its own processes), network (see
:mod:`worker.sandbox.net`), mount, ipc, uts, cgroup. No capabilities, ``no_new_privs``.
``--die-with-parent``: the sandbox is SIGKILLed when the worker dies.

Filesystem: a fresh root with only ``/usr`` (and the ``/bin``, ``/lib``... links or
directories beside it) and a handful of ``/etc`` files read-only; generated ``passwd``,
``group``, ``hosts`` and ``resolv.conf`` (copied from memory, like the supervisor script);
a private ``/proc``, a minimal ``/dev``, an empty ``/tmp``; and the task's own work
directory, read-write, at the same path as on the host (so ``HOME`` and ``BATON_OUTPUT``
mean the same inside and out). Nothing else of the host: no
``/root``, ``/home``, ``/run``, ``/var``, the worker's checkout or data directory.
"""

from __future__ import annotations

from pathlib import Path

SANDBOX_UID = 65534  # "nobody" inside the sandbox
HOSTNAME = "baton-task"
# Where the supervisor script is mounted inside the sandbox.
REAPER_PATH = "/.baton/reaper.py"

# Top-level entries that are either symlinks into /usr (merged /usr) or directories.
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Read-only /etc entries a shell task's tools need (TLS roots, the dynamic linker's cache,
# alternatives behind /usr/bin links, time zone, name service configuration).
_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "host.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "services",
    "ssl",
)

GENERATED_ETC = {
    "passwd": f"root:x:0:0:root:/root:/bin/sh\nnobody:x:{SANDBOX_UID}:{SANDBOX_UID}:"
    "nobody:/nonexistent:/bin/sh\n",
    "group": f"root:x:0:\nnogroup:x:{SANDBOX_UID}:\n",
    "hosts": f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n",
    "resolv.conf": "nameserver 10.0.2.3\n",
}


def bwrap_argv(
    bwrap: str,
    *,
    workdir: Path,
    data_fds: dict[str, int],
    info_fd: int,
    block_fd: int,
    command: list[str],
) -> list[str]:
    """bwrap's argv: ``command`` runs in the sandbox once ``block_fd`` becomes readable.

    ``data_fds`` maps a path in the sandbox to a file descriptor whose content becomes that
    read-only file: the :data:`GENERATED_ETC` files and :data:`REAPER_PATH` (no host files).
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        HOSTNAME,
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for path in map(Path, _SYSTEM_DIRS):
        if path.is_symlink():
            argv += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    for name in _ETC:
        source = Path("/etc", name)
        if source.exists():
            argv += ["--ro-bind", str(source), str(source)]
    for destination, fd in data_fds.items():
        argv += ["--ro-bind-data", str(fd), destination]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",  # noqa: S108 - the sandbox's own empty tmpfs, not the host's /tmp
        "--bind",
        str(workdir),
        str(workdir),
        "--chdir",
        str(workdir),
        "--info-fd",
        str(info_fd),
        "--block-fd",
        str(block_fd),
        "--",
        *command,
    ]
    return argv
