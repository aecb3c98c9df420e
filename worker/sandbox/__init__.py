"""Shell tasks on shared workers: a sandbox per task (bubblewrap + slirp4netns).

* :mod:`worker.sandbox.bwrap` - namespaces and what the task's filesystem holds;
* :mod:`worker.sandbox.net` - user-mode egress to public IPv4 addresses only;
* :mod:`worker.sandbox.limits` - memory, processes, CPU time, file size;
* :mod:`worker.sandbox.launch` - starting a task's process (sandboxed or not);
* :mod:`worker.sandbox.reaper` - the supervisor between the executor and ``/bin/sh``;
* :mod:`worker.sandbox.probe` - whether the sandbox works on this machine.

:func:`worker.sandbox.probe.unavailable_reason` tries the whole sandbox once per process
(a trial task), so a worker whose sandbox is on but cannot work refuses shell tasks with the
reason instead of running them unsandboxed.
"""
