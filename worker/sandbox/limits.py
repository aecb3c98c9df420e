"""Resource limits of a sandboxed task, applied with setrlimit inside the sandbox.

They are per process (``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``)
except the process count, which the kernel counts per user *in the task's own user
namespace* - so it bounds exactly the task's processes, however many tasks run at once.
No core dumps.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed task may use (``BATON_WORKER_SANDBOX_*`` settings)."""

    memory_mb: int = 1024  # address space of each process
    processes: int = 128  # processes and threads of the task, all together
    cpu_seconds: int = 3600  # CPU time of each process
    file_mb: int = 1024  # largest file a process may write
    open_files: int = 1024  # per process

    def rlimits(self) -> dict[str, int]:
        """The limits as ``resource`` names and values (soft = hard)."""
        return {
            "RLIMIT_AS": self.memory_mb * MIB,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_FSIZE": self.file_mb * MIB,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }
