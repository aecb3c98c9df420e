"""Wall-clock cron with a per-schedule policy for daylight-saving gaps and overlaps.

Why: "30 2 * * *" in Europe/Berlin means "at half past two on the office clock". Twice a
year that clock misbehaves: in spring 02:30 does not exist (02:00 jumps to 03:00), in
autumn it happens twice (03:00 falls back to 02:00). Schedulers usually pick one answer
silently (fire an hour late, fire twice, or not at all); Baton lets each schedule choose,
and records what happened and why in the tick's ``note``.

The cron expression is iterated over *naive local wall-clock times* in the schedule's
zone (croniter on naive datetimes), and each matched wall time is then mapped to
instants:

* an ordinary wall time has exactly one instant;
* a wall time in a spring-forward **gap** does not exist. ``dst_gap``:

  - ``shift`` (default): fire once at the first valid instant after it, the instant the
    clocks jumped to. Several wall times in one gap (``*/15`` matching 02:00, 02:15, 02:30,
    02:45) - and the wall time at the end of the gap (03:00), which is the same instant -
    fire once, as one tick that keeps the first wall time and whose note counts them;
  - ``skip``: do not fire; the tick is still reported (``instant`` None, ``skipped``)
    so the scheduler's tick ledger shows why nothing ran;

* a wall time in a fall-back **overlap** is ambiguous. ``dst_overlap``:

  - ``first`` (default): the first occurrence (``fold=0``, the offset before the change);
  - ``last``: the second occurrence (``fold=1``, the offset after it);
  - ``both``: two ticks, one per occurrence (same wall time, distinct instants).

Gaps and overlaps are found with zoneinfo's fold arithmetic, never by assuming a one-hour
shift: a wall time is in a gap when it does not survive a round trip through UTC, and
ambiguous when ``fold=0`` and ``fold=1`` give different offsets. Australia/Lord_Howe
(30 minutes) and offset changes that are not DST at all (Pacific/Apia skipped a whole
day in 2011) follow the same rules.

Worked examples, Europe/Berlin, ``30 2 * * *``:

    2026-03-29 (02:00 CET -> 03:00 CEST; 02:30 does not exist)
        shift  one run at 03:00 CEST (01:00 UTC)
        skip   no run that day; a skipped tick, wall 02:30, note "dst_gap: ... (skip)"
    2026-10-25 (03:00 CEST -> 02:00 CET; 02:30 happens twice)
        first  02:30 CEST (00:30 UTC)
        last   02:30 CET  (01:30 UTC)
        both   02:30 CEST and 02:30 CET - two runs an hour apart

A sixth field is seconds, last (croniter's meaning, as in the job spec's ``Schedule``):
``30 2 * * * 15`` is 02:30:15 daily. ``start_at`` and ``end_at`` bound the instants
(inclusive). Searches are bounded: :func:`next_ticks` scans at most ``MAX_SCAN`` of
wall-clock time or ``MAX_SCAN_MATCHES`` cron matches, so an expression that never (or hardly
ever) matches returns quickly. Nothing here touches the database.
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, cast, get_args

from croniter import CroniterError, croniter

DstGap = Literal["shift", "skip"]
DstOverlap = Literal["first", "last", "both"]

CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
MAX_CRON_LENGTH = 200
MAX_SCAN = timedelta(days=10 * 366)  # covers Feb 29 across 2100, which is not a leap year
MAX_SCAN_MATCHES = 1_000_000
DEFAULT_TICK_LIMIT = 10_000

_TIMEZONE_PATTERN = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
_MAX_TIMEZONE_LENGTH = 64
# Wall times and instants differ by at most a day (UTC-12 .. UTC+14); the offsets in force
# this long after an instant bound the wall times that can map to later instants.
_OFFSET_WINDOW_HOURS = 48
_UNTIL_MARGIN = timedelta(days=2)
_ONE_SECOND = timedelta(seconds=1)


class CronError(ValueError):
    """A cron expression, time zone or schedule option that cannot be used."""


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron schedule and its DST policy (construction raises :class:`CronError`)."""

    cron: str
    timezone: str = "UTC"  # IANA name
    dst_gap: DstGap = "shift"
    dst_overlap: DstOverlap = "first"
    start_at: datetime | None = None  # aware; no fire before
    end_at: datetime | None = None  # aware; no fire after

    def __post_init__(self) -> None:
        _check_cron(self.cron)
        _zone(self.timezone)
        _check_choice("dst_gap", self.dst_gap, get_args(DstGap))
        _check_choice("dst_overlap", self.dst_overlap, get_args(DstOverlap))
        for name in ("start_at", "end_at"):
            value = getattr(self, name)
            if value is not None and not _is_aware(value):
                raise CronError(f"{name} must be a time-zone-aware datetime")
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise CronError("end_at is before start_at")

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The schedule's time zone."""
        return _zone(self.timezone)


@dataclass(frozen=True)
class Tick:
    """One instant the schedule was due."""

    wall: datetime  # the naive local wall-clock time the cron expression matched
    instant: datetime | None  # aware UTC instant it fires at; None when the DST policy skips it
    local: datetime | None  # the same instant as an aware local time (correct fold)
    note: str | None = None  # None for an ordinary tick; else why it was moved/skipped/doubled

    @property
    def skipped(self) -> bool:
        """Whether the DST policy skipped this tick (it does not fire)."""
        return self.instant is None


@dataclass(frozen=True)
class _Candidate:
    """A tick before filtering; ``key`` orders it (for a skipped tick, where it would shift)."""

    wall: datetime
    key: datetime  # aware UTC
    fires: bool
    note: str | None


# ------------------------------------------------------------------------------ public API


def parse_schedule(
    cron: str,
    timezone: str = "UTC",
    *,
    dst_gap: str = "shift",
    dst_overlap: str = "first",
    start_at: datetime | None = None,
    end_at: datetime | None = None,
) -> CronSchedule:
    """Validate user input into a :class:`CronSchedule` (raises :class:`CronError`)."""
    return CronSchedule(
        cron=cron,
        timezone=timezone,
        dst_gap=cast(DstGap, _check_choice("dst_gap", dst_gap, get_args(DstGap))),
        dst_overlap=cast(
            DstOverlap, _check_choice("dst_overlap", dst_overlap, get_args(DstOverlap))
        ),
        start_at=start_at,
        end_at=end_at,
    )


def ticks_between(
    schedule: CronSchedule, after: datetime, until: datetime, *, limit: int = DEFAULT_TICK_LIMIT
) -> list[Tick]:
    """Every tick in ``(after, until]``, in instant order, skipped ticks included.

    A skipped tick is placed at the instant it would have shifted to. At most ``limit``
    ticks (the earliest) are returned; a caller that gets exactly ``limit`` should continue
    from the last one.
    """
    _require_aware("after", after)
    _require_aware("until", until)
    if limit < 0:
        raise ValueError("limit must not be negative")
    if limit == 0 or until <= after:
        return []
    horizon = _plus(until.astimezone(UTC).replace(tzinfo=None), _UNTIL_MARGIN)
    ticks: list[Tick] = []
    for tick_key, tick in _ticks(schedule, after, horizon=horizon):
        if tick_key > until:
            break
        ticks.append(tick)
        if len(ticks) >= limit:
            break
    return ticks


def next_ticks(schedule: CronSchedule, after: datetime, count: int) -> list[Tick]:
    """The next ``count`` firing ticks strictly after ``after`` (skipped ones left out).

    The search is bounded (``MAX_SCAN`` of wall-clock time, ``MAX_SCAN_MATCHES`` matches),
    so fewer may be returned for a schedule that rarely or never fires.
    """
    _require_aware("after", after)
    if count <= 0:
        return []
    firing = (tick for _, tick in _ticks(schedule, after, horizon=None) if not tick.skipped)
    return list(itertools.islice(firing, count))


def next_fire(schedule: CronSchedule, after: datetime) -> datetime | None:
    """The UTC instant of the next firing tick strictly after ``after``, or None."""
    found = next_ticks(schedule, after, 1)
    return found[0].instant if found else None


# ----------------------------------------------------------------------------- validation


def _check_cron(cron: str) -> None:
    if not isinstance(cron, str) or not cron.strip():
        raise CronError("the cron expression is empty")
    if len(cron) > MAX_CRON_LENGTH:
        raise CronError(f"the cron expression is longer than {MAX_CRON_LENGTH} characters")
    expression = cron.strip()
    if expression.startswith("@"):
        if expression not in CRON_ALIASES:
            aliases = ", ".join(sorted(CRON_ALIASES))
            raise CronError(f"unknown cron alias {expression!r}; use one of {aliases}")
    elif len(expression.split()) not in (5, 6):
        raise CronError(
            f"not a valid cron expression: {cron!r} has {len(expression.split())} fields; "
            "use 5 (minute hour day month weekday), or 6 with seconds last"
        )
    if not croniter.is_valid(expression):
        raise CronError(f"not a valid cron expression: {cron!r} (a field is out of range?)")


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone called ``name`` (raises :class:`CronError`; failures are not cached)."""
    unknown = CronError(f"unknown time zone {name!r}; use an IANA name like Europe/Berlin")
    if not isinstance(name, str) or len(name) > _MAX_TIMEZONE_LENGTH:
        raise unknown
    if not _TIMEZONE_PATTERN.fullmatch(name):
        raise unknown
    known = _known_timezones()
    if known and name not in known:
        raise unknown
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise unknown from error


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise CronError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _is_aware(value: datetime) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _require_aware(name: str, value: datetime) -> None:
    if not _is_aware(value):
        raise ValueError(f"{name} must be a time-zone-aware datetime")


# ----------------------------------------------------------------------------- iteration


def _ticks(
    schedule: CronSchedule, after: datetime, *, horizon: datetime | None
) -> Iterator[tuple[datetime, Tick]]:
    """``(key, tick)`` for every tick after ``after`` within the schedule's bounds, in order.

    Stops at the wall time ``horizon`` (naive), or after ``MAX_SCAN`` when it is None.
    """
    zone = schedule.zone
    floor = after
    if schedule.start_at is not None and schedule.start_at > after:
        floor = schedule.start_at - timedelta(microseconds=1)
    for candidate in _candidates(schedule, zone, floor, horizon):
        if candidate.key <= after:
            continue
        if schedule.start_at is not None and candidate.key < schedule.start_at:
            continue
        if schedule.end_at is not None and candidate.key > schedule.end_at:
            return
        yield candidate.key, _tick(candidate, zone)


def _candidates(
    schedule: CronSchedule, zone: zoneinfo.ZoneInfo, after: datetime, horizon: datetime | None
) -> Iterator[_Candidate]:
    """Candidates in key order, from a wall time early enough to catch every tick after
    ``after``. Some come before ``after``; the caller drops them."""
    first = _first_wall(after, zone)
    stop = horizon if horizon is not None else _plus(first, MAX_SCAN)
    walls = _walker(schedule.cron.strip(), first - _ONE_SECOND)
    pending: list[_Candidate] = []
    for _ in range(MAX_SCAN_MATCHES):
        try:
            wall = walls.get_next(datetime)
            if wall > stop:
                break
            resolved, ordinary = _resolve(wall, schedule, zone)
        except (CroniterError, OverflowError):  # no further match, or past year 9999
            break
        pending.extend(resolved)
        # Only ambiguous wall times under "both" come out of instant order, and no earlier
        # wall time maps past an ordinary one's instant (a gap's shifted ones may equal it).
        if ordinary:
            yield from _settle(pending)
            pending = []
    yield from _settle(pending)


@functools.lru_cache(maxsize=4096)
def _template(expression: str) -> croniter:
    """The expression parsed once (croniter expands it on construction)."""
    return croniter(expression, datetime(2000, 1, 1))


def _walker(expression: str, start: datetime) -> croniter:
    """A croniter over ``expression`` from ``start``: a copy of the parsed template (the
    expanded fields are shared, read only), not a parse per walk."""
    walker = copy.copy(_template(expression))
    walker.set_current(start, force=True)
    return walker


def _plus(moment: datetime, span: timedelta) -> datetime:
    """``moment + span``, clamped to the representable years 1 to 9999."""
    try:
        return moment + span
    except OverflowError:
        limit = datetime.max if span > timedelta(0) else datetime.min
        return limit.replace(tzinfo=moment.tzinfo)


def _first_wall(after: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """A wall time no later than any wall time whose instant is after ``after``."""
    start = after.astimezone(UTC)
    offsets: list[timedelta] = []
    for hour in range(_OFFSET_WINDOW_HOURS + 1):
        try:
            offsets.append(_offset(start + timedelta(hours=hour), zone))
        except OverflowError:
            break
    wall = _plus(start.replace(tzinfo=None), min(offsets, default=timedelta(0)))
    return max(wall.replace(microsecond=0), datetime.min + _ONE_SECOND)


def _settle(pending: list[_Candidate]) -> Iterator[_Candidate]:
    """``pending`` in key order, the firing candidates that share an instant merged."""
    ordered = sorted(pending, key=lambda candidate: candidate.key)  # stable: wall order
    for _, group in itertools.groupby(ordered, key=lambda candidate: candidate.key):
        members = list(group)
        firing = [candidate for candidate in members if candidate.fires]
        merged = [_merge(firing)] if firing else []
        skipped = [candidate for candidate in members if not candidate.fires]
        yield from sorted(skipped + merged, key=lambda candidate: candidate.wall)


def _merge(firing: list[_Candidate]) -> _Candidate:
    """One candidate for wall times that fire at the same instant: the first wall's."""
    first = firing[0]
    if len(firing) == 1:
        return first
    last = firing[-1].wall
    summary = (
        f"{len(firing)} wall times from {_clock(first.wall)} to {_clock(last)} "
        "fire at this instant, once"
    )
    note = f"{first.note}; {summary}" if first.note else summary
    return _Candidate(first.wall, first.key, True, note)


def _tick(candidate: _Candidate, zone: zoneinfo.ZoneInfo) -> Tick:
    if not candidate.fires:
        return Tick(wall=candidate.wall, instant=None, local=None, note=candidate.note)
    return Tick(
        wall=candidate.wall,
        instant=candidate.key,
        local=candidate.key.astimezone(zone),
        note=candidate.note,
    )


# ------------------------------------------------------------------------------ DST rules


def _resolve(
    wall: datetime, schedule: CronSchedule, zone: zoneinfo.ZoneInfo
) -> tuple[list[_Candidate], bool]:
    """The candidates for one matched wall time, and whether it was an ordinary one."""
    earlier = wall.replace(tzinfo=zone, fold=0)
    if _in_gap(wall, zone):
        return [_gap_candidate(wall, schedule, zone)], False
    if earlier.utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset():
        return _overlap_candidates(wall, schedule, zone), False
    return [_Candidate(wall, earlier.astimezone(UTC), True, None)], True


def _in_gap(wall: datetime, zone: zoneinfo.ZoneInfo) -> bool:
    """Whether ``wall`` does not exist in ``zone`` (it does not survive a round trip)."""
    round_trip = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return round_trip.replace(tzinfo=None) != wall


def _offset(instant: datetime, zone: zoneinfo.ZoneInfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _jump_instant(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """For a wall time in a gap, the instant the clocks jumped (the first valid one after it).

    Read with the offset before the jump the wall time is at or after it, with the offset
    after the jump it is before it; bisect between the two to the second.
    """
    low, high = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    new_offset = _offset(high, zone)
    below, above = 0, int((high - low).total_seconds())
    while above - below > 1:
        middle = (below + above) // 2
        if _offset(low + timedelta(seconds=middle), zone) == new_offset:
            above = middle
        else:
            below = middle
    return low + timedelta(seconds=above)


def _gap_candidate(wall: datetime, schedule: CronSchedule, zone: zoneinfo.ZoneInfo) -> _Candidate:
    jump = _jump_instant(wall, zone)
    landed = jump.astimezone(zone)
    left = (jump - _ONE_SECOND).astimezone(zone) + _ONE_SECOND  # the wall time jumped from
    where = (
        f"dst_gap: {_clock(wall)} does not exist on {wall:%Y-%m-%d} in {schedule.timezone} "
        f"(clocks jump from {_clock(left)} to {_clock(landed)})"
    )
    if schedule.dst_gap == "skip":
        return _Candidate(wall, jump, False, f"{where}; skipped (skip)")
    return _Candidate(wall, jump, True, f"{where}; fired at {_clock(landed)} (shift)")


def _overlap_candidates(
    wall: datetime, schedule: CronSchedule, zone: zoneinfo.ZoneInfo
) -> list[_Candidate]:
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    where = (
        f"dst_overlap: {_clock(wall)} happens twice on {wall:%Y-%m-%d} in {schedule.timezone} "
        f"({first.tzname()}, then {second.tzname()})"
    )
    first_note = f"{where}; first occurrence, {_clock(wall)} {first.tzname()}"
    second_note = f"{where}; second occurrence, {_clock(wall)} {second.tzname()}"
    policy = schedule.dst_overlap
    candidates: list[_Candidate] = []
    if policy in ("first", "both"):
        candidates.append(_Candidate(wall, first.astimezone(UTC), True, f"{first_note} ({policy})"))
    if policy in ("last", "both"):
        candidates.append(
            _Candidate(wall, second.astimezone(UTC), True, f"{second_note} ({policy})")
        )
    return candidates


def _clock(moment: datetime) -> str:
    """``HH:MM``, or ``HH:MM:SS`` when there are seconds."""
    return f"{moment:%H:%M:%S}" if moment.second else f"{moment:%H:%M}"
