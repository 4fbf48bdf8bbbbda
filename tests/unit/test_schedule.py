"""Due-time arithmetic: intervals, cron, time zones, DST transitions, deadlines, missed slots."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from adf_core.spec import ScheduleSpec
from adf_operator.schedule import (
    MISSED_SLOTS_CAP,
    NOT_DUE,
    PAST_DEADLINE,
    DueSlot,
    ScheduleError,
    due_slot,
    format_time,
    next_slot,
    parse_time,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def slots_between(schedule: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in (start, end], by repeated next_slot."""
    found, current = [], start
    while (current := next_slot(schedule, current)) <= end:
        found.append(current)
    return found


def local(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).isoformat()


# --- every ---------------------------------------------------------------------------------------


def test_every_is_anchored_on_the_epoch() -> None:
    schedule = ScheduleSpec(every="10m")
    assert next_slot(schedule, utc(2026, 5, 1, 10, 3, 7)) == utc(2026, 5, 1, 10, 10)
    assert slots_between(schedule, utc(2026, 5, 1, 10, 0), utc(2026, 5, 1, 10, 30)) == [
        utc(2026, 5, 1, 10, 10),
        utc(2026, 5, 1, 10, 20),
        utc(2026, 5, 1, 10, 30),
    ]


def test_every_next_slot_is_strictly_after() -> None:
    assert next_slot(ScheduleSpec(every="10m"), utc(2026, 5, 1, 10, 10)) == utc(2026, 5, 1, 10, 20)


def test_every_odd_interval_counts_from_the_epoch() -> None:
    schedule = ScheduleSpec(every="1h30m")
    assert slots_between(schedule, utc(2026, 1, 1), utc(2026, 1, 1, 4)) == [
        utc(2026, 1, 1, 1, 30),
        utc(2026, 1, 1, 3),
    ]
    seven = next_slot(ScheduleSpec(every="7m"), utc(2026, 1, 1))
    assert int(seven.timestamp()) % 420 == 0


def test_every_ignores_the_time_zone_and_dst() -> None:
    schedule = ScheduleSpec(every="1h", time_zone=BERLIN)
    found = slots_between(schedule, utc(2026, 10, 24, 22), utc(2026, 10, 25, 4))
    assert [b - a for a, b in itertools.pairwise(found)] == [timedelta(hours=1)] * 5


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_slot(ScheduleSpec(every="1h"), datetime(2026, 1, 1))


# --- cron ----------------------------------------------------------------------------------------


def test_cron_in_utc() -> None:
    schedule = ScheduleSpec(cron="*/15 9 * * 1-5")
    # Friday 2026-05-01 09:50 -> the next is Monday 09:00
    assert next_slot(schedule, utc(2026, 5, 1, 9, 50)) == utc(2026, 5, 4, 9, 0)
    assert next_slot(schedule, utc(2026, 5, 4, 9, 0)) == utc(2026, 5, 4, 9, 15)


def test_cron_in_a_time_zone() -> None:
    schedule = ScheduleSpec(cron="0 9 * * *", time_zone="Asia/Kolkata")  # +05:30, no DST
    assert next_slot(schedule, utc(2026, 5, 1)) == utc(2026, 5, 1, 3, 30)


def test_invalid_cron_names_the_field() -> None:
    with pytest.raises(ScheduleError, match=r"schedule\.cron: '61 \* \* \* \*' is not valid"):
        next_slot(ScheduleSpec(cron="61 * * * *"), utc(2026, 1, 1))


def test_cron_that_never_matches() -> None:
    schedule = ScheduleSpec(cron="0 0 30 2 *")
    with pytest.raises(ScheduleError, match="never matches"):
        next_slot(schedule, utc(2026, 1, 1))
    assert due_slot(schedule, utc(2026, 1, 1), None, utc(2020, 1, 1), None).reason == NOT_DUE


def test_rare_cron_found_across_a_skipped_leap_year() -> None:
    schedule = ScheduleSpec(cron="0 0 29 2 *")
    assert next_slot(schedule, utc(2097, 1, 1)) == utc(2104, 2, 29)
    due = due_slot(schedule, utc(2103, 1, 1), None, utc(2090, 1, 1), None)
    assert (due.slot, due.missed) == (utc(2096, 2, 29), 1)


# --- daylight-saving time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 runs at 03:00 CEST.
        (
            BERLIN,
            utc(2026, 3, 27, 12),
            ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        # Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 runs once, the first time.
        (
            BERLIN,
            utc(2026, 10, 23, 12),
            ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        # New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT.
        (
            NEW_YORK,
            utc(2026, 3, 6, 12),
            ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        # New York falls back 2026-11-01 02:00 EDT -> 01:00 EST: 02:30 exists once, runs once.
        (
            NEW_YORK,
            utc(2026, 10, 30, 12),
            ["2026-10-31T02:30:00-04:00", "2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"],
        ),
    ],
)
def test_daily_0230_runs_once_on_both_change_days(
    zone: str, start: datetime, expected: list[str]
) -> None:
    schedule = ScheduleSpec(cron="30 2 * * *", time_zone=zone)
    found = slots_between(schedule, start, start + timedelta(days=3))
    assert [local(slot, zone) for slot in found] == expected


def test_repeated_wall_time_runs_at_its_first_occurrence_only() -> None:
    """01:30 happens twice in New York on 2026-11-01; the job runs at 01:30 EDT only."""
    schedule = ScheduleSpec(cron="30 1 * * *", time_zone=NEW_YORK)
    found = slots_between(schedule, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert [local(slot, NEW_YORK) for slot in found] == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_daily_job_is_not_due_again_in_the_repeated_hour() -> None:
    schedule = ScheduleSpec(cron="30 2 * * *", time_zone=BERLIN)
    first = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    # 02:45 CET, the second pass through 02:30: nothing new is due
    due = due_slot(schedule, utc(2026, 10, 25, 1, 45), first, utc(2026, 1, 1), None)
    assert (due.slot, due.reason) == (None, NOT_DUE)
    assert due_slot(schedule, utc(2026, 10, 25, 0, 31), None, utc(2026, 10, 24), None).slot == first


def test_fixed_hour_slots_in_the_gap_collapse_into_one_run() -> None:
    schedule = ScheduleSpec(cron="*/15 2 * * *", time_zone=BERLIN)
    spring = slots_between(schedule, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert [local(slot, BERLIN) for slot in spring] == ["2026-03-29T03:00:00+02:00"]
    autumn = slots_between(schedule, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert [local(slot, BERLIN) for slot in autumn] == [
        f"2026-10-25T02:{minute:02d}:00+02:00" for minute in (0, 15, 30, 45)
    ]


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
@pytest.mark.parametrize(
    "start",
    [utc(2026, 3, 7, 12), utc(2026, 3, 28, 12), utc(2026, 10, 24, 12), utc(2026, 10, 31, 12)],
)
def test_hourly_job_stays_hourly_in_real_time_across_the_change(zone: str, start: datetime) -> None:
    found = slots_between(
        ScheduleSpec(cron="0 * * * *", time_zone=zone), start, start + timedelta(days=1)
    )
    assert len(found) == 24
    assert {b - a for a, b in itertools.pairwise(found)} == {timedelta(hours=1)}


CHANGE_DAYS = [
    (BERLIN, utc(2026, 3, 29)),
    (BERLIN, utc(2026, 10, 25)),
    (NEW_YORK, utc(2026, 3, 8)),
    (NEW_YORK, utc(2026, 11, 1)),
    ("Australia/Lord_Howe", utc(2026, 4, 5)),  # a 30-minute DST shift
    ("Australia/Lord_Howe", utc(2026, 10, 4)),
]


@pytest.mark.parametrize(
    "expression", ["*/5 * * * *", "7,37 * * * *", "0 */2 * * *", "*/20 * * * 0"]
)
@pytest.mark.parametrize(("zone", "day"), CHANGE_DAYS)
def test_hour_wildcard_slots_are_exactly_the_matching_instants(
    expression: str, zone: str, day: datetime
) -> None:
    """Brute force: each minute around a change day is a slot iff its wall time matches."""
    tz = ZoneInfo(zone)
    start, end = day - timedelta(days=1), day + timedelta(days=1)
    walls = croniter(expression, start.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3))
    matching: set[datetime] = set()
    while (wall := walls.get_next(datetime)) < end.astimezone(tz).replace(tzinfo=None) + timedelta(
        hours=3
    ):
        matching.add(wall)
    minutes = (start + timedelta(minutes=m) for m in range(1, 2 * 24 * 60 + 1))
    expected = [t for t in minutes if t.astimezone(tz).replace(tzinfo=None) in matching]
    schedule = ScheduleSpec(cron=expression, time_zone=zone)
    assert slots_between(schedule, start, end) == expected


# --- due_slot ------------------------------------------------------------------------------------


def test_not_due_before_the_first_slot_after_creation() -> None:
    schedule = ScheduleSpec(every="10m")
    due = due_slot(schedule, utc(2026, 5, 1, 10, 9), None, utc(2026, 5, 1, 10, 3), None)
    assert due == DueSlot(None, None, 0, NOT_DUE)


def test_a_slot_at_creation_time_does_not_count() -> None:
    schedule = ScheduleSpec(every="10m")
    due = due_slot(schedule, utc(2026, 5, 1, 10, 5), None, utc(2026, 5, 1, 10, 0), None)
    assert due.slot is None


def test_due_at_the_slot_itself_and_after_it() -> None:
    schedule = ScheduleSpec(cron="*/5 * * * *")
    created = utc(2026, 5, 1, 10, 3)
    assert due_slot(schedule, utc(2026, 5, 1, 10, 5), None, created, None).slot == utc(
        2026, 5, 1, 10, 5
    )
    due = due_slot(schedule, utc(2026, 5, 1, 10, 7, 30), None, created, None)
    assert (due.slot, due.missed, due.reason) == (utc(2026, 5, 1, 10, 5), 0, None)


def test_already_scheduled_slot_is_not_due_again() -> None:
    schedule = ScheduleSpec(every="10m")
    last = utc(2026, 5, 1, 10, 10)
    due = due_slot(schedule, utc(2026, 5, 1, 10, 19, 59), last, utc(2026, 1, 1), None)
    assert due.slot is None and due.reason == NOT_DUE
    assert due_slot(schedule, utc(2026, 5, 1, 10, 20), last, utc(2026, 1, 1), None).slot == utc(
        2026, 5, 1, 10, 20
    )


def test_last_schedule_time_in_the_future_is_not_due() -> None:
    due = due_slot(
        ScheduleSpec(every="1m"), utc(2026, 5, 1), utc(2026, 5, 2), utc(2026, 1, 1), None
    )
    assert due.reason == NOT_DUE


@pytest.mark.parametrize("schedule", [ScheduleSpec(every="10m"), ScheduleSpec(cron="*/10 * * * *")])
def test_after_downtime_only_the_latest_slot_runs_and_the_missed_ones_are_counted(
    schedule: ScheduleSpec,
) -> None:
    last = utc(2026, 5, 1, 10, 0)
    due = due_slot(schedule, utc(2026, 5, 1, 11, 5), last, utc(2026, 1, 1), None)
    # 10:10 … 10:50 were missed, 11:00 runs
    assert (due.slot, due.missed, due.reason) == (utc(2026, 5, 1, 11, 0), 5, None)


def test_missed_count_after_73_days() -> None:
    last, now = utc(2026, 1, 1), utc(2026, 3, 15, 0, 2)
    exact = due_slot(ScheduleSpec(every="5m"), now, last, utc(2025, 1, 1), None)
    assert (exact.slot, exact.missed) == (utc(2026, 3, 15, 0, 0), 73 * 24 * 12 - 1)
    capped = due_slot(ScheduleSpec(cron="*/5 * * * *"), now, last, utc(2025, 1, 1), None)
    assert (capped.slot, capped.missed) == (utc(2026, 3, 15, 0, 0), MISSED_SLOTS_CAP)


def test_missed_slots_across_dst_count_real_runs() -> None:
    schedule = ScheduleSpec(cron="0 * * * *", time_zone=BERLIN)
    due = due_slot(schedule, utc(2026, 10, 25, 3, 30), utc(2026, 10, 24, 21), utc(2026, 1, 1), None)
    # 22:00Z … 02:00Z are hourly slots in real time (the repeated 02:00 included); 03:00Z runs
    assert (due.slot, due.missed) == (utc(2026, 10, 25, 3), 5)


def test_starting_deadline() -> None:
    schedule = ScheduleSpec(every="10m")
    last, created = utc(2026, 5, 1, 9, 50), utc(2026, 1, 1)
    on_time = due_slot(schedule, utc(2026, 5, 1, 10, 5), last, created, 300)
    assert on_time.slot == utc(2026, 5, 1, 10, 0)
    late = due_slot(schedule, utc(2026, 5, 1, 10, 5, 1), last, created, 300)
    assert (late.slot, late.latest, late.missed) == (None, utc(2026, 5, 1, 10, 0), 0)
    assert late.reason == (
        f"{PAST_DEADLINE}: slot 2026-05-01T10:00:00Z is 301s late, deadline 300s"
    )
    after_downtime = due_slot(schedule, utc(2026, 5, 1, 12, 9), last, created, 60)
    assert (after_downtime.slot, after_downtime.latest, after_downtime.missed) == (
        None,
        utc(2026, 5, 1, 12, 0),
        12,
    )


def test_deadline_zero_allows_only_the_exact_instant() -> None:
    schedule = ScheduleSpec(every="1m")
    assert due_slot(schedule, utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10), utc(2026, 1, 1), 0).slot
    late = due_slot(schedule, utc(2026, 5, 1, 10, 1, 1), utc(2026, 5, 1, 10), utc(2026, 1, 1), 0)
    assert late.slot is None


def test_yearly_cron_after_long_downtime() -> None:
    schedule = ScheduleSpec(cron="0 0 1 1 *", time_zone=BERLIN)
    due = due_slot(schedule, utc(2029, 6, 1), utc(2026, 6, 1), utc(2026, 1, 1), None)
    assert (local(due.slot, BERLIN) if due.slot else None, due.missed) == (
        "2029-01-01T00:00:00+01:00",
        2,
    )


# --- time text -----------------------------------------------------------------------------------


def test_time_text_round_trip() -> None:
    slot = utc(2026, 11, 27, 10, 5)
    assert format_time(slot) == "2026-11-27T10:05:00Z"
    assert parse_time("2026-11-27T10:05:00Z") == slot
    assert parse_time("2026-11-27T11:05:00+01:00") == slot
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2026-11-27T10:05:00")
