"""Which flows a ping marks, what it writes, and how it counts (pure logic over a memory store)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from heartbeat_support import NOW, MemoryFlowStore, flow_body

from adf_operator import names
from adf_operator.heartbeat.due import FlowError, Marker, PingResult, decide

EVERY_5M = {"every": "5m"}


def marks(slot: str, missed: int = 0) -> dict[str, str]:
    return {names.SCHEDULED_TIME: slot, names.MISSED_SLOTS: str(missed)}


# --- decide --------------------------------------------------------------------------------------


def test_unscheduled_flow_is_idle() -> None:
    assert decide(flow_body("manual"), NOW).action == "idle"


def test_not_yet_due_flow_is_idle() -> None:
    flow = flow_body("hourly", {"every": "1h"}, last="2026-05-01T10:00:00Z")
    decision = decide(flow, NOW)
    assert (decision.action, decision.reason) == ("idle", "not due")


def test_due_flow_is_marked_with_its_slot_and_missed_count() -> None:
    flow = flow_body("sync", EVERY_5M, last="2026-05-01T09:50:00Z")
    decision = decide(flow, NOW)
    assert decision.action == "trigger"
    assert decision.annotations == marks("2026-05-01T10:05:00Z", missed=2)


def test_cron_in_a_time_zone_is_judged_on_its_wall_clock() -> None:
    flow = flow_body(
        "berlin", {"cron": "0 12 * * *", "timeZone": "Europe/Berlin"}, last="2026-04-30T10:00:00Z"
    )
    assert decide(flow, NOW + timedelta(hours=2)).annotations == marks("2026-05-01T10:00:00Z")


def test_suspended_flow_is_skipped() -> None:
    decision = decide(flow_body("paused", EVERY_5M, suspend=True), NOW)
    assert (decision.action, decision.reason) == ("skip", "suspended")


def test_flow_already_marked_with_the_slot_is_skipped() -> None:
    flow = flow_body("sync", EVERY_5M, annotations=marks("2026-05-01T10:05:00Z"))
    assert decide(flow, NOW).reason == "already triggered"


def test_garbled_mark_is_overwritten() -> None:
    flow = flow_body("sync", EVERY_5M, annotations={names.SCHEDULED_TIME: "yesterday"})
    assert decide(flow, NOW).action == "trigger"


def test_slot_past_its_deadline_is_marked_late_so_the_operator_records_it() -> None:
    flow = flow_body("strict", EVERY_5M, deadline=10, last="2026-05-01T09:55:00Z")
    decision = decide(flow, NOW)
    assert decision.action == "late"
    assert decision.reason.startswith("past startingDeadlineSeconds")
    assert decision.annotations == marks("2026-05-01T10:05:00Z", missed=1)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron: '61 * * * *' is not valid"),
        ({"every": "soon"}, "spec.schedule: every:"),
        ({"cron": "* * * * *", "timeZone": "Mars/Olympus"}, "spec.schedule: timeZone:"),
    ],
)
def test_unusable_schedule_names_the_field(schedule: dict[str, str], message: str) -> None:
    with pytest.raises(FlowError) as caught:
        decide(flow_body("bad", schedule), NOW)
    assert message in str(caught.value)


# --- ping ----------------------------------------------------------------------------------------


def test_ping_marks_exactly_the_due_flows_and_counts() -> None:
    store = MemoryFlowStore(
        flow_body("due-a", EVERY_5M),
        flow_body("due-b", {"cron": "*/5 * * * *"}, namespace="other"),
        flow_body("paused", EVERY_5M, suspend=True),
        flow_body("later", {"every": "1h"}, last="2026-05-01T10:00:00Z"),
        flow_body("manual"),
        flow_body("done", EVERY_5M, annotations=marks("2026-05-01T10:05:00Z")),
    )
    result = asyncio.run(Marker(store).ping(NOW))
    assert result == PingResult(due=4, triggered=2, skipped=2, failed=0, timestamp=NOW)
    assert sorted((ns, name) for ns, name, _ in store.patches) == [
        ("other", "due-b"),
        ("shop", "due-a"),
    ]
    assert all(a == marks("2026-05-01T10:05:00Z", missed=12) for _, _, a in store.patches)
    again = asyncio.run(Marker(store).ping(NOW + timedelta(seconds=20)))
    assert (again.due, again.triggered, again.skipped) == (4, 0, 4)
    assert len(store.patches) == 2


def test_reply_json() -> None:
    result = PingResult(due=3, triggered=2, skipped=1, failed=0, timestamp=NOW)
    assert result.to_json() == {
        "flowsDue": 3,
        "flowsTriggered": 2,
        "flowsSkipped": 1,
        "flowsFailed": 0,
        "flowsPending": 0,
        "timestamp": "2026-05-01T10:05:30Z",
    }


def test_dry_run_counts_without_patching() -> None:
    store = MemoryFlowStore(flow_body("due", EVERY_5M), flow_body("paused", EVERY_5M, suspend=True))
    result = asyncio.run(Marker(store).ping(NOW, dry_run=True))
    assert (result.due, result.triggered, result.skipped, result.dry_run) == (2, 1, 1, True)
    assert store.patches == []
    assert result.to_json()["dryRun"] is True


def test_one_failing_flow_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryFlowStore(
        flow_body("broken", EVERY_5M),
        flow_body("bad-cron", {"cron": "99 * * * *"}),
        *(flow_body(f"ok-{i}", EVERY_5M) for i in range(5)),
    )
    store.broken.add("broken")
    with caplog.at_level(logging.INFO, logger="adf.heartbeat"):
        result = asyncio.run(Marker(store).ping(NOW))
    assert (result.due, result.triggered, result.failed) == (6, 5, 2)
    assert {name for _, name, _ in store.patches} == {f"ok-{i}" for i in range(5)}
    assert "DataFlow shop/broken: could not be patched" in caplog.text
    assert "DataFlow shop/bad-cron: schedule.cron" in caplog.text


def test_conflict_reads_again_and_skips_a_slot_someone_else_marked() -> None:
    store = MemoryFlowStore(flow_body("sync", EVERY_5M))
    store.interfere["sync"] = marks("2026-05-01T10:05:00Z")  # a concurrent ping got there first
    result = asyncio.run(Marker(store).ping(NOW))
    assert (result.due, result.triggered, result.skipped) == (1, 0, 1)
    assert store.patches == []


def test_conflict_with_an_unrelated_write_still_triggers() -> None:
    store = MemoryFlowStore(flow_body("sync", EVERY_5M))
    store.interfere["sync"] = {"example.com/touched": "yes"}  # e.g. the operator wrote status
    result = asyncio.run(Marker(store).ping(NOW))
    assert (result.triggered, result.failed) == (1, 0)
    assert store.patches == [("shop", "sync", marks("2026-05-01T10:05:00Z", missed=12))]


def test_flow_deleted_during_the_ping_is_not_counted() -> None:
    store = MemoryFlowStore(flow_body("gone", EVERY_5M), flow_body("sync", EVERY_5M))
    store.delete_before_patch.add("gone")
    result = asyncio.run(Marker(store).ping(NOW))
    assert (result.due, result.triggered, result.failed) == (1, 1, 0)


def test_twenty_concurrent_pings_trigger_each_slot_once() -> None:
    flows = [flow_body(f"flow-{i}", EVERY_5M) for i in range(30)]
    store = MemoryFlowStore(*flows, flow_body("paused", EVERY_5M, suspend=True))

    async def twenty() -> list[PingResult]:
        # 20 markers: like 20 heartbeat replicas, they only share the API's preconditions
        return await asyncio.gather(*(Marker(store, 4).ping(NOW) for _ in range(20)))

    results = asyncio.run(twenty())
    assert sum(r.triggered for r in results) == 30
    assert all(r.due == 31 and r.failed == 0 for r in results)
    assert len(store.patches) == 30
    assert len({name for _, name, _ in store.patches}) == 30


class SlowStore(MemoryFlowStore):
    """Each patch takes a while, like a busy API server."""

    async def patch_annotations(
        self, namespace: str, name: str, resource_version: str, annotations: dict[str, str]
    ) -> bool:
        await asyncio.sleep(0.05)
        return await super().patch_annotations(namespace, name, resource_version, annotations)


def test_reply_comes_within_the_budget_and_the_rest_is_marked_in_the_background() -> None:
    store = SlowStore(*(flow_body(f"flow-{i}", EVERY_5M) for i in range(20)))
    finished: list[str] = []

    async def scenario() -> tuple[PingResult, PingResult]:
        marker = Marker(store, concurrency=2, on_done=finished.append)
        first = await marker.ping(NOW, answer_within=0.12)
        second = await marker.ping(NOW)  # the in-flight flows are not patched twice
        await marker.drain()
        return first, second

    first, second = asyncio.run(scenario())
    assert first.due == 20 and first.pending > 0
    assert first.triggered + first.pending == 20
    assert first.to_json()["flowsPending"] == first.pending
    assert (second.due, second.triggered) == (20, 0)
    assert finished == ["triggered"] * first.pending
    assert sorted(name for _, name, _ in store.patches) == sorted(f"flow-{i}" for i in range(20))
