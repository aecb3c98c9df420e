"""``celery -A bench.celery_beat beat -S bench.celery_beat:TimedScheduler``: the schedules10k
peer - Celery beat with ``BATON_BENCH_BEAT_ENTRIES`` entries, each ``crontab()`` (every
minute, like ``* * * * *``), sending ``bench.noop`` to the Redis broker of the benchmark
(``BATON_BENCH_CELERY_URL``). No worker consumes them: like Baton's scheduler scenario,
only the scheduler is measured.

:class:`TimedScheduler` is beat's default scheduler (``PersistentScheduler``, schedule in a
shelve file) plus a record of every send: the entry, the instant it was due (the crontab's
next instant after the entry's previous run, as beat itself computes it) and the epoch
second ``apply_async`` returned - the message is in Redis by then. The record is a text file
(``BATON_BENCH_BEAT_RECORD``): ``ready <epoch> <entries>`` once the schedule is set up, then
``<entry> <due> <sent>`` per send, written through a buffer flushed at most twice a second
and whenever beat is about to sleep.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import crontab

from bench.celery_app import app

ENTRIES = int(os.environ.get("BATON_BENCH_BEAT_ENTRIES", "0") or 0)
RECORD = os.environ.get("BATON_BENCH_BEAT_RECORD", "")
FLUSH_SECONDS = 0.5

app.conf.timezone = "UTC"
app.conf.beat_schedule = {
    f"s{i:05d}": {"task": "bench.noop", "schedule": crontab(), "args": (f"s{i:05d}",)}
    for i in range(ENTRIES)
}


class TimedScheduler(PersistentScheduler):
    """Beat's default scheduler, recording when each entry was due and when it was sent."""

    _record: IO[str] | None = None
    _flushed = 0.0

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self._record = Path(RECORD or os.devnull).open("a", buffering=1 << 16)  # noqa: SIM115
        self._record.write(f"ready {time.time():.6f} {len(self.schedule)}\n")
        self._record.flush()
        self._flushed = time.monotonic()

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        start, ends_in, _ = entry.schedule.remaining_delta(entry.last_run_at)
        due = (start + ends_in).timestamp()
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        record = self._record
        if record is not None:
            record.write(f"{entry.name} {due:.3f} {time.time():.6f}\n")
            if time.monotonic() - self._flushed > FLUSH_SECONDS:
                record.flush()
                self._flushed = time.monotonic()
        return result

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = float(super().tick(*args, **kwargs))
        if interval > 0 and self._record is not None:  # about to sleep: show what was sent
            self._record.flush()
            self._flushed = time.monotonic()
        return interval

    def close(self) -> None:
        if self._record is not None:
            self._record.flush()
            self._record.close()
            self._record = None
        super().close()
