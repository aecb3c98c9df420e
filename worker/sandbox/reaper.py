"""The supervisor between the shell executor and a task's ``/bin/sh``.

A standalone script (standard library only, run with ``python -I -S``): inside the sandbox
it runs under the system's Python with no view of Baton's code. It reads its instructions as
JSON from the file descriptor given as its one argument::

    {"argv": [...], "env": {...}, "cwd": "...", "status_fd": 5,
     "rlimits": {"RLIMIT_AS": 1073741824, ...}, "parent": 1234}

and then

* applies the resource limits to itself, so the command and everything it starts inherit
  them;
* becomes a child subreaper: a descendant that double-forks or calls ``setsid`` is
  re-parented to this process instead of init, so it can still be found and killed;
* asks the kernel for SIGHUP when its parent (the worker) dies, and answers it by killing
  every descendant, so no task work outlives a worker that was SIGKILLed (when ``parent``
  is given and is already gone, it does so at once);
* when the command exits, SIGKILLs whatever it left running outside its process group (the
  executor deals with the group itself, with a grace period and a note in the log);
* writes how the command ended (``{"exit": n}`` or ``{"signal": n}``) to ``status_fd``:
  inside a sandbox the exit code bubblewrap reports cannot tell ``exit 137`` from SIGKILL.

It ignores SIGTERM and SIGINT itself: the executor signals the whole process group, the
command decides what a SIGTERM means, and the executor's SIGKILL ends this process too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children of all its threads, recursively)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                queue.append(int(child))
    return found


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..." - comm may contain spaces and parentheses.
    return int(stat[stat.rfind(")") + 2 :].split()[2])


def _kill_descendants(*, outside_group: bool = False) -> None:
    """SIGKILL every descendant (or only those outside this process's group) until none
    is left (new ones may fork meanwhile)."""
    me = os.getpid()
    group = os.getpgrp()

    def targets() -> list[int]:
        pids = _descendants(me)
        if outside_group:
            pids = [pid for pid in pids if _process_group(pid) not in (group, None)]
        return pids

    while pids := targets():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Reap what died (this process is their subreaper) so /proc forgets them.
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass


def _parent_died(signum: int, frame: object) -> None:
    _kill_descendants()
    os._exit(128 + signal.SIGHUP)


def main() -> int:
    config_fd = int(sys.argv[1])
    with os.fdopen(config_fd, "rb") as handle:
        config = json.loads(handle.read())
    status_fd = int(config["status_fd"])
    os.set_inheritable(status_fd, False)

    for name, value in config.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, _parent_died)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    parent = config.get("parent")
    if parent is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
        if os.getppid() != parent:  # the worker died before the request was made
            return 128 + signal.SIGHUP

    def restore_signals() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    child = subprocess.Popen(  # noqa: S603 - running the task's command is the point
        config["argv"],
        env=config["env"],
        cwd=config["cwd"],
        close_fds=True,
        preexec_fn=restore_signals,  # this process has no other threads
    )
    # Wait for the command itself; orphans re-parented here are reaped on the way.
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child.pid:
            break
    _kill_descendants(outside_group=True)
    if os.WIFSIGNALED(status):
        report = {"signal": os.WTERMSIG(status)}
    else:
        report = {"exit": os.WEXITSTATUS(status)}
    os.write(status_fd, json.dumps(report).encode())
    os.close(status_fd)
    return report.get("exit", 128 + report.get("signal", 0))


if __name__ == "__main__":
    sys.exit(main())
