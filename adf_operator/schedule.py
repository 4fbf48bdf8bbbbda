"""Due-time arithmetic shared by the heartbeat (which slot is due) and the operator (nextRunTime).

Pure functions of a schedule and instants — no clock, no I/O — so every heartbeat replica and the
operator compute the same slots. All instants in and out are timezone-aware; results are UTC.

Slots
-----
``every: 10m``
    Whole multiples of the interval since the Unix epoch (UTC): 10m gives :00, :10, :20 …;
    1h30m gives 00:00, 01:30, 03:00 UTC … Anchoring on the epoch (not on the flow's creation)
    means replicas and restarts always agree on the slot, and time zones do not apply.
``cron`` + ``timeZone``
    A five-field cron expression (parsed by croniter) evaluated on the wall clock of the IANA
    time zone (default UTC).

Daylight-saving time (Vixie cron's rule, applied to the hour field)
-------------------------------------------------------------------
* A *fixed-hour* job — its hour field does not start with ``*`` (``30 2 * * *``, ``0 9-17 * * 1-5``)
  — names times of day, and each matching wall time runs exactly once:

  - a wall time that does not exist (spring-forward gap) runs once at the first instant after the
    gap: a daily 02:30 job in Europe/Berlin runs at 03:00 CEST on the last Sunday of March;
  - a wall time that occurs twice (fall-back) runs once, at its first occurrence: 02:30 CEST, not
    again at 02:30 CET.

* An *hour-wildcard* job — hour field ``*`` or ``*/n`` (``0 * * * *``, ``*/5 * * * *``) — names
  elapsed time: it fires at every instant whose wall time matches. The skipped hour has no slots and
  the repeated hour has its slots twice, so an hourly job stays hourly in real time on both days.

Missed slots
------------
After downtime only the latest due slot runs; :func:`due_slot` reports how many earlier slots were
skipped (counted exactly for ``every``, by walking the cron slots up to :data:`MISSED_SLOTS_CAP`,
where the cap means "at least this many").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from adf_core.spec import ScheduleSpec, parse_duration

MISSED_SLOTS_CAP = 10_000
NOT_DUE = "not due"
PAST_DEADLINE = "past startingDeadlineSeconds"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# UTC offsets are probed this far apart when looking for a DST change between two slots; tzdata has
# no zone whose offset changes and changes back within a day.
_PROBE_STEP = timedelta(days=1)
# Windows tried, smallest first, when looking back for the latest slot at or before now; the last
# one covers a 29 February cron across a skipped leap year (2100).
_LOOKBACKS = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=63),
    timedelta(days=800),
    timedelta(days=366 * 9),
)


class ScheduleError(ValueError):
    """A schedule that cannot be evaluated; the message names the field."""


@dataclass(frozen=True)
class DueSlot:
    """What is due at one instant.

    ``latest`` is the latest slot at or before now that is after the last scheduled slot (or after
    the flow's creation); ``None`` when nothing is due. ``slot`` is ``latest`` when it may still
    start, ``None`` with ``reason`` saying why otherwise (not due, or past startingDeadlineSeconds).
    ``missed`` counts the slots before ``latest`` that were skipped (downtime): they never run.
    """

    slot: datetime | None
    latest: datetime | None = None
    missed: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class _Cron:
    zone: ZoneInfo
    fixed_hour: bool
    prototype: croniter


def format_time(instant: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and whole seconds, as Kubernetes writes times."""
    return _utc(instant).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (``2026-11-27T10:05:00Z``) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return parsed.astimezone(UTC)


def next_slot(schedule: ScheduleSpec, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (the operator's nextRunTime)."""
    for slot in _slots(schedule, _utc(after)):
        return slot
    raise ScheduleError(
        f"schedule.cron: {schedule.cron!r} never matches after {format_time(after)}"
    )


def due_slot(
    schedule: ScheduleSpec,
    now: datetime,
    last_schedule_time: datetime | None,
    created: datetime,
    starting_deadline_seconds: int | None,
) -> DueSlot:
    """Which slot should run now, if any, and how many were missed since the last scheduled one."""
    now = _utc(now)
    base = _utc(last_schedule_time if last_schedule_time is not None else created)
    latest = _latest_slot(schedule, base, now)
    if latest is None:
        return DueSlot(None, None, 0, NOT_DUE)
    missed = _count_slots(schedule, base, latest)
    late = now - latest
    if starting_deadline_seconds is not None and late > timedelta(
        seconds=starting_deadline_seconds
    ):
        reason = (
            f"{PAST_DEADLINE}: slot {format_time(latest)} is {int(late.total_seconds())}s late, "
            f"deadline {starting_deadline_seconds}s"
        )
        return DueSlot(None, latest, missed, reason)
    return DueSlot(latest, latest, missed, None)


# --- slots ---------------------------------------------------------------------------------------


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: pass an aware (UTC) time")
    return instant.astimezone(UTC)


def _slots(schedule: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """All slots strictly after ``after``, ascending."""
    if schedule.every is not None:
        return _every_slots(_period(schedule.every), after)
    assert schedule.cron is not None  # ScheduleSpec guarantees exactly one of every / cron
    cron = _compile(schedule.cron, schedule.time_zone)
    return _fixed_hour_slots(cron, after) if cron.fixed_hour else _wildcard_slots(cron, after)


def _latest_slot(schedule: ScheduleSpec, floor: datetime, now: datetime) -> datetime | None:
    """The latest slot in (floor, now], looking back through growing windows."""
    if now <= floor:
        return None
    if schedule.every is not None:
        period = _period(schedule.every)
        slot = _EPOCH + period * ((now - _EPOCH) // period)
        return slot if slot > floor else None
    for lookback in _LOOKBACKS:
        start = max(now - lookback, floor)
        latest: datetime | None = None
        for slot in _slots(schedule, start):
            if slot > now:
                break
            latest = slot
        if latest is not None or start == floor:
            return latest
    return None


def _count_slots(schedule: ScheduleSpec, floor: datetime, latest: datetime) -> int:
    """Slots strictly between floor and latest (capped at MISSED_SLOTS_CAP for cron)."""
    if schedule.every is not None:
        period = _period(schedule.every)
        return max((latest - _EPOCH) // period - (floor - _EPOCH) // period - 1, 0)
    count = 0
    for slot in _slots(schedule, floor):
        if slot >= latest or count >= MISSED_SLOTS_CAP:
            break
        count += 1
    return count


@lru_cache(maxsize=256)
def _period(every: str) -> timedelta:
    return parse_duration(every)  # ScheduleSpec has checked it is at least 1m


def _every_slots(period: timedelta, after: datetime) -> Iterator[datetime]:
    slot = _EPOCH + period * ((after - _EPOCH) // period + 1)
    while True:
        yield slot
        slot += period


@lru_cache(maxsize=4096)
def _compile(expression: str, time_zone: str) -> _Cron:
    """Parse once; croniter objects are copied per use because iterating them mutates them."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(f"schedule.cron: {expression!r} must have five fields")
    try:
        prototype = croniter(expression, datetime(2000, 1, 1))
    except (CroniterBadCronError, ValueError) as exc:
        raise ScheduleError(f"schedule.cron: {expression!r} is not valid: {exc}") from None
    return _Cron(ZoneInfo(time_zone), not fields[1].startswith("*"), prototype)


def _walls(cron: _Cron, start: datetime, inclusive: bool) -> Iterator[datetime]:
    """Matching naive wall-clock times after ``start`` (or at it, when inclusive), ascending."""
    iterator = copy.copy(cron.prototype)
    iterator.set_current(start - _MICROSECOND if inclusive else start, force=True)
    try:
        while True:
            yield iterator.get_next(datetime)
    except CroniterBadDateError:
        return  # the expression never matches again (e.g. 30 February)


def _fixed_hour_slots(cron: _Cron, after: datetime) -> Iterator[datetime]:
    """Map each matching wall time to one instant; the mapping never goes backwards in time."""
    last = after
    for wall in _walls(cron, _wall(cron.zone, after), inclusive=False):
        instant = _first_instant(cron.zone, wall)
        if instant > last:  # several gap wall times map to the same instant: keep one
            yield instant
            last = instant


def _wildcard_slots(cron: _Cron, after: datetime) -> Iterator[datetime]:
    """Every instant whose wall time matches, walking one constant-offset stretch at a time."""
    start, inclusive = after, False
    while True:
        offset = _offset(cron.zone, start)
        restarted = False
        for wall in _walls(cron, _naive(start + offset), inclusive):
            candidate = (wall - offset).replace(tzinfo=UTC)
            change = _first_offset_change(cron.zone, start, candidate)
            if change is not None:  # the wall clock jumped before this slot: redo from the jump
                start, inclusive, restarted = change, True, True
                break
            yield candidate
            start = candidate
        if not restarted:
            return


# --- time-zone helpers ---------------------------------------------------------------------------


def _naive(instant: datetime) -> datetime:
    return instant.replace(tzinfo=None)


def _wall(zone: ZoneInfo, instant: datetime) -> datetime:
    return _naive(instant.astimezone(zone))


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _first_instant(zone: ZoneInfo, wall: datetime) -> datetime:
    """The fixed-hour rule: a gap time maps to the gap's end, a repeated time to its first pass."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    first_offset, second_offset = first.utcoffset(), second.utcoffset()
    assert first_offset is not None and second_offset is not None
    instant = (wall - first_offset).replace(tzinfo=UTC)
    if first_offset >= second_offset:  # unique, or repeated (fold=0 is the first occurrence)
        return instant
    # In a gap: fold=1 reads it with the later offset (an instant before the change), fold=0 with
    # the earlier one (after it); the change itself is the first valid instant after the gap.
    before = (wall - second_offset).replace(tzinfo=UTC)
    return _bisect_change(zone, before, instant)


def _first_offset_change(zone: ZoneInfo, start: datetime, end: datetime) -> datetime | None:
    """The first instant in (start, end] whose UTC offset differs from start's, if any."""
    base = _offset(zone, start)
    low = start
    while low < end:
        high = min(low + _PROBE_STEP, end)
        if _offset(zone, high) != base:
            return _bisect_change(zone, low, high)
        low = high
    return None


def _bisect_change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant of the one offset change in (low, high]; tzdata changes fall on whole seconds."""
    base = _offset(zone, low)
    lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == base:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)
