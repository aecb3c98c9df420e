"""Wall-clock cron with per-schedule DST policy: gaps, overlaps, bounds and validation.

Transition instants are found with zoneinfo here (not hardcoded), and expected instants
are computed from them, so the tests check the engine against the tz database itself.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest

from kernel import cron as cron_module
from kernel.cron import (
    CronError,
    CronSchedule,
    DstGap,
    DstOverlap,
    Tick,
    next_fire,
    next_ticks,
    parse_schedule,
    ticks_between,
)

GAPS: tuple[str, ...] = get_args(DstGap)
OVERLAPS: tuple[str, ...] = get_args(DstOverlap)
POLICIES = list(itertools.product(GAPS, OVERLAPS))
DST_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


@dataclasses.dataclass(frozen=True)
class Transition:
    at: datetime  # UTC instant the offset changes
    before: timedelta
    after: timedelta

    @property
    def size(self) -> timedelta:
        return abs(self.after - self.before)

    @property
    def gap_start(self) -> datetime:
        """Naive wall time where the gap (or overlap) begins."""
        return self.at.replace(tzinfo=None) + min(self.before, self.after)

    @property
    def middle(self) -> datetime:
        """Naive wall time in the middle of the gap (or overlap)."""
        return self.gap_start + self.size / 2


@functools.cache
def transitions(zone: str, year: int = 2026) -> tuple[Transition, ...]:
    """Every offset change of ``zone`` in ``year``, scanning UTC in 15-minute steps."""
    tz = ZoneInfo(zone)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    previous = moment.astimezone(tz).utcoffset()
    while moment.year == year:
        moment += timedelta(minutes=15)
        offset = moment.astimezone(tz).utcoffset()
        if offset != previous:
            assert offset is not None and previous is not None
            found.append(Transition(moment, previous, offset))
            previous = offset
    return tuple(found)


def gap(zone: str) -> Transition:
    (found,) = [t for t in transitions(zone) if t.after > t.before]
    return found


def overlap(zone: str) -> Transition:
    (found,) = [t for t in transitions(zone) if t.after < t.before]
    return found


def daily_at(wall: datetime) -> str:
    return f"{wall.minute} {wall.hour} * * *"


def instant(wall: datetime, offset: timedelta) -> datetime:
    """The UTC instant of naive ``wall`` read with ``offset``."""
    return (wall - offset).replace(tzinfo=UTC)


@pytest.fixture
def cron_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many cron matches the scans asked croniter for: a bound on their work that holds
    on any machine (``[n]``, counted in place)."""
    steps = [0]
    # Parsed expressions are cached: one parsed before this test (another test's) would be
    # copied as the plain croniter and its steps never counted, so the test gets a cache of
    # its own (and leaves none of its counting parsers in the shared one).
    fresh = functools.lru_cache(maxsize=4096)(cron_module._template.__wrapped__)
    monkeypatch.setattr(cron_module, "_template", fresh)

    class Counting(cron_module.croniter):  # type: ignore[misc]
        def get_next(self, *args: Any, **kwargs: Any) -> Any:
            steps[0] += 1
            return super().get_next(*args, **kwargs)

    monkeypatch.setattr(cron_module, "croniter", Counting)
    return steps


def schedule(cron: str, zone: str = "UTC", **policy: Any) -> CronSchedule:
    return parse_schedule(cron, zone, **policy)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


def instants(ticks: list[Tick]) -> list[datetime]:
    """The instants of firing ticks (a skipped one fails the test)."""
    found = [tick.instant for tick in ticks]
    assert None not in found
    return [i for i in found if i is not None]


# ------------------------------------------------------------------ the transitions used


def test_transitions_of_2026_are_as_expected() -> None:
    """The zones give the shapes the brief names (this guards the test's own helper)."""
    assert gap("Europe/Berlin").gap_start == datetime(2026, 3, 29, 2, 0)
    assert overlap("Europe/Berlin").gap_start == datetime(2026, 10, 25, 2, 0)
    assert gap("America/New_York").gap_start == datetime(2026, 3, 8, 2, 0)
    assert overlap("America/New_York").gap_start == datetime(2026, 11, 1, 1, 0)
    assert gap("Australia/Lord_Howe").gap_start == datetime(2026, 10, 4, 2, 0)
    assert gap("Australia/Lord_Howe").size == timedelta(minutes=30)
    assert overlap("Australia/Lord_Howe").gap_start == datetime(2026, 4, 5, 1, 30)
    assert transitions("UTC") == ()


# ----------------------------------------------------------------- daily, across the gap


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize(("dst_gap", "dst_overlap"), POLICIES)
def test_daily_across_spring_gap(zone: str, dst_gap: str, dst_overlap: str) -> None:
    """Berlin/NY "30 2 * * *", Lord_Howe "15 2 * * *": the wall time does not exist."""
    t = gap(zone)
    wall = t.middle
    assert daily_at(wall) == {"Australia/Lord_Howe": "15 2 * * *"}.get(zone, "30 2 * * *")
    s = schedule(daily_at(wall), zone, dst_gap=dst_gap, dst_overlap=dst_overlap)
    day_before = instant(wall - timedelta(days=1), t.before)
    day_after = instant(wall + timedelta(days=1), t.after)
    start = day_before - timedelta(hours=1)

    found = next_ticks(s, start, 3)

    if dst_gap == "shift":
        assert instants(found) == [day_before, t.at, day_after]
        shifted = found[1]
        assert shifted.wall == wall
        assert shifted.local == t.at.astimezone(ZoneInfo(zone))
        assert shifted.local is not None and shifted.local.replace(tzinfo=None) == (
            t.gap_start + t.size
        )
        assert shifted.note is not None
        assert shifted.note.startswith(f"dst_gap: {wall:%H:%M} does not exist on {wall:%Y-%m-%d}")
        assert shifted.note.endswith(f"fired at {t.gap_start + t.size:%H:%M} (shift)")
        assert next_fire(s, day_before) == t.at
    else:
        assert instants(found) == [
            day_before,
            day_after,
            instant(wall + timedelta(days=2), t.after),
        ]
        assert next_fire(s, day_before) == day_after
    assert found[0].note is None and found[-1].note is None


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize("dst_overlap", OVERLAPS)
def test_skip_reports_the_skipped_tick(zone: str, dst_overlap: str) -> None:
    t = gap(zone)
    s = schedule(daily_at(t.middle), zone, dst_gap="skip", dst_overlap=dst_overlap)
    ticks = ticks_between(s, t.at - timedelta(hours=1), t.at + timedelta(days=1))
    assert len(ticks) == 2
    skipped, normal = ticks
    assert skipped.skipped and skipped.instant is None and skipped.local is None
    assert skipped.wall == t.middle
    assert skipped.note == (
        f"dst_gap: {t.middle:%H:%M} does not exist on {t.middle:%Y-%m-%d} in {zone} "
        f"(clocks jump from {t.gap_start:%H:%M} to {t.gap_start + t.size:%H:%M}); skipped (skip)"
    )
    assert not normal.skipped and normal.note is None
    assert normal.wall == t.middle + timedelta(days=1)


# -------------------------------------------------------------- daily, across the overlap


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize(("dst_gap", "dst_overlap"), POLICIES)
def test_daily_across_autumn_overlap(zone: str, dst_gap: str, dst_overlap: str) -> None:
    """Berlin "30 2", New York "30 1", Lord_Howe "45 1": the wall time happens twice."""
    t = overlap(zone)
    wall = t.middle
    s = schedule(daily_at(wall), zone, dst_gap=dst_gap, dst_overlap=dst_overlap)
    day_before = instant(wall - timedelta(days=1), t.before)
    day_after = instant(wall + timedelta(days=1), t.after)
    first, second = instant(wall, t.before), instant(wall, t.after)
    assert second - first == t.size

    found = ticks_between(s, day_before - timedelta(hours=1), day_after)

    expected = {"first": [first], "last": [second], "both": [first, second]}[dst_overlap]
    assert instants(found) == [day_before, *expected, day_after]
    tz = ZoneInfo(zone)
    for tick in found[1:-1]:
        assert tick.wall == wall
        assert tick.local is not None and tick.local.replace(tzinfo=None) == wall
        assert tick.local.fold == (tick.instant == second)
        assert tick.local.tzname() == tick.local.astimezone(tz).tzname()
        assert tick.note is not None and tick.note.startswith(
            f"dst_overlap: {wall:%H:%M} happens twice on {wall:%Y-%m-%d} in {zone}"
        )
        occurrence = "first" if tick.instant == first else "second"
        assert f"; {occurrence} occurrence, {wall:%H:%M} {tick.local.tzname()}" in tick.note
        assert tick.note.endswith(f"({dst_overlap})")
    assert found[0].note is None and found[-1].note is None


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize("dst_overlap", OVERLAPS)
def test_next_fire_chain_across_overlap(zone: str, dst_overlap: str) -> None:
    """Feeding each fire back as ``after`` walks the same ticks as ticks_between."""
    t = overlap(zone)
    s = schedule(daily_at(t.middle), zone, dst_overlap=dst_overlap)
    start, end = t.at - timedelta(days=3), t.at + timedelta(days=3)
    chain: list[datetime] = []
    fire = next_fire(s, start)
    while fire is not None and fire <= end:
        chain.append(fire)
        fire = next_fire(s, fire)
    assert chain == instants(ticks_between(s, start, end))
    assert len(chain) == 5 + (dst_overlap == "both")


@pytest.mark.parametrize(("dst_gap", "dst_overlap"), POLICIES)
def test_utc_has_no_transitions(dst_gap: str, dst_overlap: str) -> None:
    s = schedule("30 2 * * *", "UTC", dst_gap=dst_gap, dst_overlap=dst_overlap)
    for month in (3, 10):
        found = next_ticks(s, utc(2026, month, 20), 10)
        assert instants(found) == [utc(2026, month, day, 2, 30) for day in range(20, 30)]
        assert all(tick.note is None for tick in found)
        assert all(tick.local == tick.instant for tick in found)


# ------------------------------------------------------------- every 15 minutes, the gap


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize("dst_overlap", OVERLAPS)
def test_quarter_hours_across_gap_shift_fire_once(zone: str, dst_overlap: str) -> None:
    t = gap(zone)
    s = schedule("*/15 * * * *", zone, dst_gap="shift", dst_overlap=dst_overlap)
    ticks = ticks_between(s, t.at - timedelta(hours=2), t.at + timedelta(hours=2))

    fired = instants(ticks)
    assert fired == sorted(fired) and len(set(fired)) == len(fired)  # once per instant
    # Every real quarter hour, the jump included, exactly once.
    expected = [t.at + timedelta(minutes=15 * k) for k in range(-7, 9)]
    assert fired == expected
    at_jump = ticks[fired.index(t.at)]
    in_gap = int(t.size / timedelta(minutes=15))  # Berlin/NY 4, Lord_Howe 2
    assert at_jump.wall == t.gap_start
    assert at_jump.note is not None
    assert at_jump.note.startswith(f"dst_gap: {t.gap_start:%H:%M} does not exist")
    end = t.gap_start + t.size
    assert at_jump.note.endswith(
        f"; {in_gap + 1} wall times from {t.gap_start:%H:%M} to {end:%H:%M} fire at this "
        "instant, once"
    )
    assert next_ticks(s, t.at - timedelta(minutes=1), 2) == ticks[7:9]


@pytest.mark.parametrize("zone", DST_ZONES)
def test_quarter_hours_across_gap_skip(zone: str) -> None:
    t = gap(zone)
    s = schedule("*/15 * * * *", zone, dst_gap="skip")
    ticks = ticks_between(s, t.at - timedelta(hours=1), t.at + timedelta(hours=1))
    skipped = [tick for tick in ticks if tick.skipped]
    in_gap = int(t.size / timedelta(minutes=15))
    assert [tick.wall for tick in skipped] == [
        t.gap_start + timedelta(minutes=15 * k) for k in range(in_gap)
    ]
    assert all(tick.note and tick.note.endswith("skipped (skip)") for tick in skipped)
    # Skipped ticks sit where they would have shifted to: just before the jump's own tick.
    position = ticks.index(skipped[0])
    assert ticks[position + in_gap].instant == t.at
    assert ticks[position + in_gap].note is None
    firing = [tick.instant for tick in ticks if not tick.skipped]
    assert firing == [t.at + timedelta(minutes=15 * k) for k in range(-3, 5)]
    assert [tick.instant for tick in next_ticks(s, t.at - timedelta(minutes=1), 1)] == [t.at]


# --------------------------------------------------------- every 15 minutes, the overlap


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize("dst_gap", GAPS)
@pytest.mark.parametrize("dst_overlap", OVERLAPS)
def test_quarter_hours_across_overlap(zone: str, dst_gap: str, dst_overlap: str) -> None:
    t = overlap(zone)
    s = schedule("*/15 * * * *", zone, dst_gap=dst_gap, dst_overlap=dst_overlap)
    start, end = t.at - timedelta(hours=2), t.at + timedelta(hours=2)
    ticks = ticks_between(s, start, end)

    fired = instants(ticks)
    assert fired == sorted(fired) and len(set(fired)) == len(fired)
    walls = [tick.wall for tick in ticks]
    in_overlap = int(t.size / timedelta(minutes=15))  # Berlin/NY 4, Lord_Howe 2
    repeated = [t.gap_start + timedelta(minutes=15 * k) for k in range(in_overlap)]
    every_quarter = [t.at + timedelta(minutes=15 * k) for k in range(-7, 9)]
    if dst_overlap == "both":
        assert fired == every_quarter  # every real quarter hour
        assert all(walls.count(wall) == 2 for wall in repeated)
        assert len(walls) == len(set(walls)) + len(repeated)
    else:
        assert len(walls) == len(set(walls))  # each wall time once
        missing = set(every_quarter) - set(fired)
        assert len(missing) == len(repeated)
        half = (lambda i: i >= t.at) if dst_overlap == "first" else (lambda i: i < t.at)
        assert all(half(i) for i in missing)


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize(("dst_gap", "dst_overlap"), POLICIES)
def test_next_fire_agrees_with_ticks_between_everywhere(
    zone: str, dst_gap: str, dst_overlap: str
) -> None:
    """From any ``after`` (every 5 minutes around both transitions), the next fire is the
    first firing tick of ticks_between - including ``after`` inside a gap or overlap."""
    s = schedule("*/15 * * * *", zone, dst_gap=dst_gap, dst_overlap=dst_overlap)
    for t in transitions(zone):
        start, end = t.at - timedelta(hours=3), t.at + timedelta(hours=3)
        firing = [tick.instant for tick in ticks_between(s, start, end) if not tick.skipped]
        for step in range(0, 4 * 60, 5):
            after = t.at - timedelta(hours=2) + timedelta(minutes=step)
            expected = next(i for i in firing if i is not None and i > after)
            assert next_fire(s, after) == expected, (t, after)


# ---------------------------------------------------------------------------- macros


def test_hourly_fires_every_real_hour_with_shift_and_both() -> None:
    s = schedule("@hourly", "Europe/Berlin", dst_gap="shift", dst_overlap="both")
    for t in transitions("Europe/Berlin"):
        found = next_ticks(s, t.at - timedelta(hours=3, minutes=1), 7)
        assert instants(found) == [t.at + timedelta(hours=h) for h in range(-3, 4)]


def test_hourly_first_and_skip() -> None:
    berlin = "Europe/Berlin"
    t = overlap(berlin)
    first = next_ticks(schedule("@hourly", berlin), t.at - timedelta(hours=2, minutes=1), 3)
    assert [tick.local.strftime("%H:%M %Z") for tick in first if tick.local] == [
        "01:00 CEST",
        "02:00 CEST",
        "03:00 CET",
    ]
    t = gap(berlin)
    skip = ticks_between(
        schedule("@hourly", berlin, dst_gap="skip"), t.at - timedelta(hours=1), t.at
    )
    assert [(tick.wall.hour, tick.skipped) for tick in skip] == [(2, True), (3, False)]


@pytest.mark.parametrize("macro", ["@daily", "@midnight"])
def test_daily_at_midnight_where_dst_changes_at_midnight(macro: str) -> None:
    """Havana changes its clocks at midnight, so 00:00 is missing once and doubled once."""
    zone = "America/Havana"
    spring = gap(zone)
    assert spring.gap_start.hour == 0
    found = next_ticks(schedule(macro, zone), spring.at - timedelta(days=1, hours=1), 3)
    assert instants(found)[1] == spring.at
    assert found[1].local is not None and found[1].local.hour == 1
    autumn = overlap(zone)
    assert autumn.gap_start.hour == 0
    both = schedule(macro, zone, dst_overlap="both")
    found = ticks_between(both, autumn.at - timedelta(hours=2), autumn.at + timedelta(hours=2))
    assert instants(found) == [autumn.at - autumn.size, autumn.at]
    assert [tick.wall for tick in found] == [autumn.gap_start] * 2


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        ("@daily", [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("@weekly", [utc(2026, 1, 4), utc(2026, 1, 11)]),  # Sundays
        ("@monthly", [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@annually", [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ],
)
def test_macros(macro: str, expected: list[datetime]) -> None:
    assert instants(next_ticks(schedule(macro), utc(2026, 1, 1), 2)) == expected


# ----------------------------------------------------------------------- seconds field


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("30 2 * * * 15", [utc(2026, 1, 1, 2, 30, 15), utc(2026, 1, 2, 2, 30, 15)]),
        ("*/20 * * * * 30", [utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 20, 30)]),
        ("* * * * * */10", [utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 20)]),
        ("* * * * * *", [utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 2)]),
    ],
)
def test_sixth_field_is_seconds(cron: str, expected: list[datetime]) -> None:
    assert instants(next_ticks(schedule(cron), utc(2026, 1, 1), 2)) == expected


def test_seconds_in_the_gap_shift_to_the_jump() -> None:
    t = gap("Europe/Berlin")
    s = schedule("30 2 * * * 15", "Europe/Berlin")
    (tick,) = ticks_between(s, t.at - timedelta(hours=1), t.at + timedelta(hours=1))
    assert tick.instant == t.at
    assert tick.wall == datetime(2026, 3, 29, 2, 30, 15)
    assert tick.note is not None and tick.note.startswith("dst_gap: 02:30:15 does not exist")


def test_every_second_through_the_gap_fires_once_at_the_jump() -> None:
    t = gap("Australia/Lord_Howe")
    s = schedule("* * * * * *", "Australia/Lord_Howe")
    ticks = ticks_between(s, t.at - timedelta(seconds=2), t.at + timedelta(seconds=2))
    assert instants(ticks) == [t.at + timedelta(seconds=k) for k in range(-1, 3)]
    assert ticks[1].note is not None and "1801 wall times from 02:00 to 02:30" in ticks[1].note


# ------------------------------------------------------------------- a whole day missing


@pytest.mark.parametrize(("dst_gap", "fired"), [("shift", True), ("skip", False)])
def test_samoa_skipped_a_day(dst_gap: str, fired: bool) -> None:
    """Pacific/Apia jumped from 2011-12-29 24:00 to 2011-12-31 00:00: a 24-hour gap."""
    jump = utc(2011, 12, 30, 10)
    s = schedule("0 12 * * *", "Pacific/Apia", dst_gap=dst_gap)
    ticks = ticks_between(s, jump - timedelta(days=1), jump + timedelta(days=2))
    assert [tick.wall.day for tick in ticks] == [29, 30, 31, 1]
    missing = ticks[1]
    assert missing.skipped is not fired
    assert missing.instant == (jump if fired else None)
    assert missing.note is not None and "clocks jump from 00:00 to 00:00" in missing.note
    assert next_fire(s, jump - timedelta(hours=1)) == (jump if fired else utc(2011, 12, 30, 22))


# ----------------------------------------------------------------- start_at and end_at


def test_start_at_is_inclusive_and_skips_ahead(cron_steps: list[int]) -> None:
    s = schedule("0 * * * *", start_at=utc(2100, 1, 1, 5))
    assert next_fire(s, utc(2026, 1, 1)) == utc(2100, 1, 1, 5)
    assert cron_steps == [1]  # one cron step from start_at, not 74 years of hours
    assert instants(ticks_between(s, utc(2100, 1, 1), utc(2100, 1, 1, 7))) == [
        utc(2100, 1, 1, 5),
        utc(2100, 1, 1, 6),
        utc(2100, 1, 1, 7),
    ]


def test_end_at_is_inclusive_and_ends() -> None:
    s = schedule("0 * * * *", start_at=utc(2026, 1, 1, 1), end_at=utc(2026, 1, 1, 3))
    expected = [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    assert instants(next_ticks(s, utc(2025, 1, 1), 10)) == expected
    assert instants(ticks_between(s, utc(2020, 1, 1), utc(2030, 1, 1))) == expected
    assert next_fire(s, utc(2026, 1, 1, 3)) is None


def test_bounds_apply_to_shifted_instants() -> None:
    t = gap("Europe/Berlin")
    s = schedule("30 2 * * *", "Europe/Berlin", start_at=t.at, end_at=t.at)
    assert instants(next_ticks(s, t.at - timedelta(days=5), 5)) == [t.at]


@pytest.mark.parametrize(
    "bounds",
    [
        {"start_at": datetime(2026, 1, 1)},
        {"end_at": datetime(2026, 1, 1)},
        {"start_at": utc(2026, 1, 2), "end_at": utc(2026, 1, 1)},
    ],
)
def test_bad_bounds(bounds: dict[str, datetime]) -> None:
    with pytest.raises(CronError):
        schedule("0 * * * *", "UTC", **bounds)


# ------------------------------------------------------------------------ ticks_between


def test_ticks_between_is_half_open() -> None:
    s = schedule("0 * * * *")
    assert instants(ticks_between(s, utc(2026, 1, 1, 1), utc(2026, 1, 1, 3))) == [
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]
    assert ticks_between(s, utc(2026, 1, 1, 3), utc(2026, 1, 1, 3)) == []
    assert ticks_between(s, utc(2026, 1, 1, 3), utc(2026, 1, 1, 1)) == []


def test_ticks_between_limit() -> None:
    s = schedule("* * * * *")
    found = ticks_between(s, utc(2026, 1, 1), utc(2027, 1, 1), limit=5)
    assert instants(found) == [utc(2026, 1, 1, 0, m) for m in range(1, 6)]
    assert ticks_between(s, utc(2026, 1, 1), utc(2027, 1, 1), limit=0) == []
    assert len(ticks_between(s, utc(2026, 1, 1), utc(2027, 1, 1))) == 10_000
    with pytest.raises(ValueError, match="limit"):
        ticks_between(s, utc(2026, 1, 1), utc(2027, 1, 1), limit=-1)


def test_after_in_another_zone_is_the_same_instant() -> None:
    s = schedule("30 2 * * *", "Europe/Berlin")
    new_york = ZoneInfo("America/New_York")
    after = utc(2026, 6, 1, 12)
    assert next_ticks(s, after.astimezone(new_york), 3) == next_ticks(s, after, 3)


# ---------------------------------------------------------------------------- next_ticks


@pytest.mark.parametrize("count", [0, 1, 2, 7, 50])
def test_next_ticks_count(count: int) -> None:
    found = next_ticks(schedule("*/5 * * * *", "Europe/Berlin"), utc(2026, 1, 1), count)
    assert len(found) == count
    assert instants(found) == [
        utc(2026, 1, 1, 0, 5) + timedelta(minutes=5 * k) for k in range(count)
    ]


def test_next_ticks_leaves_out_skipped() -> None:
    t = gap("America/New_York")
    s = schedule("30 2 * * *", "America/New_York", dst_gap="skip")
    found = next_ticks(s, t.at - timedelta(hours=1), 2)
    assert len(found) == 2 and not any(tick.skipped for tick in found)
    assert found[0].wall == t.middle + timedelta(days=1)


def test_tick_is_frozen() -> None:
    (tick,) = next_ticks(schedule("@daily"), utc(2026, 1, 1), 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tick.note = "x"  # type: ignore[misc]
    assert tick == Tick(datetime(2026, 1, 2), utc(2026, 1, 2), utc(2026, 1, 2), None)


# --------------------------------------------------------------------------- termination


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 11 * 5"])
def test_never_matching_terminates(cron: str, cron_steps: list[int]) -> None:
    s = schedule(cron, "Europe/Berlin")
    assert next_fire(s, utc(2026, 1, 1)) is None
    assert next_ticks(s, utc(2026, 1, 1), 3) == []
    assert ticks_between(s, utc(2026, 1, 1), utc(2126, 1, 1)) == []
    assert cron_steps == [3]  # one step per search: croniter finds no match, the scan ends


def test_rare_expression_is_found_within_the_scan() -> None:
    """Feb 29: 2100 is not a leap year, so from 2097 the next one is 2104."""
    s = schedule("0 0 29 2 *")
    assert next_fire(s, utc(2097, 3, 1)) == utc(2104, 2, 29)
    assert instants(next_ticks(s, utc(2026, 1, 1), 2)) == [utc(2028, 2, 29), utc(2032, 2, 29)]


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/New_York"])
def test_ends_of_calendar_terminate(zone: str) -> None:
    s = schedule("0 0 * * *", zone)
    first, last = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    assert next_ticks(s, datetime(9999, 12, 29, tzinfo=UTC), 10) != []
    assert next_fire(s, datetime(9999, 12, 31, 12, tzinfo=UTC)) is None
    assert next_fire(s, last) is None
    assert ticks_between(s, datetime(9999, 12, 31, 12, tzinfo=UTC), last) == []
    assert len(ticks_between(s, first, last, limit=3)) == 3
    assert next_fire(s, first) is not None


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "cron",
    [
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "* * *",
        "* * * *",
        "* * * * * * *",
        "@fortnightly",
        "@reboot",
        "@HOURLY",
        "",
        "   ",
        "x * * * *",
        "*/0 * * * *",
        "0 0 * * * 61",
        "0 " * 101,
    ],
)
def test_invalid_cron(cron: str) -> None:
    with pytest.raises(CronError):
        parse_schedule(cron)
    with pytest.raises(ValueError):  # CronError is a ValueError
        CronSchedule(cron)


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus",
        "",
        "../etc/passwd",
        "/etc/localtime",
        "Europe",
        "Europe/Berlin ",
        "europe/berlin",
        "Europe/Berlin\x00",
        "A" * 65,
    ],
)
def test_invalid_zone(zone: str) -> None:
    with pytest.raises(CronError, match="unknown time zone"):
        parse_schedule("* * * * *", zone)


@pytest.mark.parametrize(
    "policy",
    [{"dst_gap": "later"}, {"dst_gap": "first"}, {"dst_overlap": "none"}, {"dst_overlap": "skip"}],
)
def test_invalid_policy(policy: dict[str, Any]) -> None:
    with pytest.raises(CronError, match="must be one of"):
        parse_schedule("* * * * *", "UTC", **policy)


@pytest.mark.parametrize("cron", ["30 2 * * *", " 30 2 * * * ", "*/15 * * * * 30", "@daily"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Australia/Lord_Howe", "Etc/GMT+5"])
def test_valid(cron: str, zone: str) -> None:
    s = parse_schedule(cron, zone, dst_gap="skip", dst_overlap="both")
    assert s == CronSchedule(cron, zone, "skip", "both")
    assert s.zone == ZoneInfo(zone)


def test_naive_after_is_refused() -> None:
    s = schedule("* * * * *")
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="time-zone-aware"):
        next_fire(s, naive)
    with pytest.raises(ValueError, match="time-zone-aware"):
        next_ticks(s, naive, 1)
    with pytest.raises(ValueError, match="time-zone-aware"):
        ticks_between(s, naive, utc(2026, 1, 2))
    with pytest.raises(ValueError, match="time-zone-aware"):
        ticks_between(s, utc(2026, 1, 1), naive)
