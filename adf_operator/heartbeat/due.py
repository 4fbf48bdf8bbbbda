"""What one ping does: find the due DataFlows and mark each with its slot.

The contract with the operator: a due flow gets the annotations ``activedataflow.io/scheduled-time``
(the slot, RFC 3339 UTC) and ``activedataflow.io/missed-slots`` (slots skipped before it) through
a JSON merge patch of ``metadata.annotations`` only; the operator creates the DataFlowRun
``<flow>-<slot in unix minutes>`` (AlreadyExists means done) and records
``status.lastScheduleTime``.

Counting, per ping:

* ``flowsDue`` — scheduled flows with a slot after their last scheduled one, at or before now;
* ``flowsTriggered`` — due flows this ping marked with a slot that may still start;
* ``flowsSkipped`` — due flows this ping did not start: suspended, already marked with this slot (an
  earlier or concurrent ping did it), or past ``startingDeadlineSeconds``. A slot past its deadline
  is still marked, so the operator records it (lastScheduleTime, a Warning event) instead of the gap
  going unnoticed until the next slot; the operator applies the deadline and creates no run;
* ``flowsFailed`` — flows that could not be judged (invalid schedule) or patched (API error); each
  is logged, and the others carry on;
* ``flowsPending`` — due flows whose patch was still in flight when the reply was sent (see
  :class:`Marker`).

Every patch carries the ``resourceVersion`` it was decided on: a concurrent ping, a second replica
or the operator writing in between answers 409 Conflict, and the flow is read again and decided
again. So counts stay exact across concurrent pings, and deterministic run names make the run
itself exactly-once whatever happens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from adf_core.spec import ScheduleSpec, format_validation_error
from adf_operator import names
from adf_operator.schedule import ScheduleError, due_slot, format_time, parse_time

log = logging.getLogger("adf.heartbeat")

Action = Literal["idle", "trigger", "late", "skip"]
Outcome = Literal["idle", "triggered", "skipped", "failed"]
CONFLICT_RETRIES = 3


class ConflictError(Exception):
    """The flow changed since it was read (409): read it again and decide again."""


class FlowError(Exception):
    """A flow that cannot be judged; the message names the field and never holds a secret."""


class FlowStore(Protocol):
    """The DataFlows of the watched namespaces (the Kubernetes API, or a fake in unit tests)."""

    async def list_flows(self) -> list[dict[str, Any]]:
        """Every DataFlow (all pages)."""
        ...

    async def get_flow(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One DataFlow, or None when it is gone."""
        ...

    async def patch_annotations(
        self, namespace: str, name: str, resource_version: str, annotations: dict[str, str]
    ) -> bool:
        """Merge the annotations; False when the flow is gone; ConflictError when it changed."""
        ...

    async def check(self) -> None:
        """Raise when the API server cannot be reached (readiness)."""
        ...


@dataclass(frozen=True)
class Decision:
    """What a ping does with one flow: nothing (idle), patch (trigger, late) or skip."""

    action: Action
    slot: datetime | None = None
    missed: int = 0
    reason: str = ""

    @property
    def annotations(self) -> dict[str, str]:
        assert self.slot is not None
        return {
            names.SCHEDULED_TIME: format_time(self.slot),
            names.MISSED_SLOTS: str(self.missed),
        }


@dataclass(frozen=True)
class PingResult:
    """The reply of one ping."""

    due: int
    triggered: int
    skipped: int
    failed: int
    timestamp: datetime
    pending: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "flowsDue": self.due,
            "flowsTriggered": self.triggered,
            "flowsSkipped": self.skipped,
            "flowsFailed": self.failed,
            "flowsPending": self.pending,
            "timestamp": format_time(self.timestamp),
        }
        if self.dry_run:
            reply["dryRun"] = True
        return reply


def decide(flow: Mapping[str, Any], now: datetime) -> Decision:
    """Judge one DataFlow body at ``now``; raises FlowError for an unusable schedule."""
    spec = flow.get("spec") or {}
    metadata = flow["metadata"]
    if not spec.get("schedule"):
        return Decision("idle", reason="no schedule")
    try:
        schedule = ScheduleSpec.model_validate(spec["schedule"])
        created = parse_time(metadata["creationTimestamp"])
        last_text = (flow.get("status") or {}).get("lastScheduleTime")
        last = parse_time(last_text) if last_text else None
        due = due_slot(schedule, now, last, created, spec.get("startingDeadlineSeconds"))
    except ValidationError as exc:
        raise FlowError(f"spec.schedule: {format_validation_error(exc)}") from None
    except (ScheduleError, ValueError, KeyError) as exc:
        raise FlowError(str(exc)) from None
    if due.latest is None:
        return Decision("idle", reason=due.reason or "")
    if spec.get("suspend"):
        return Decision("skip", due.latest, due.missed, "suspended")
    if _marked_slot(metadata) == due.latest:
        return Decision("skip", due.latest, due.missed, "already triggered")
    if due.slot is None:
        return Decision("late", due.latest, due.missed, due.reason or "")
    return Decision("trigger", due.slot, due.missed)


def _marked_slot(metadata: Mapping[str, Any]) -> datetime | None:
    text = (metadata.get("annotations") or {}).get(names.SCHEDULED_TIME)
    try:
        return parse_time(text) if text else None
    except ValueError:
        return None  # garbled by hand: this ping overwrites it


class Marker:
    """Marks due flows for one heartbeat process.

    A ping lists and judges every flow at once, then patches the due ones (at most
    ``concurrency`` at a time). The API server takes each write in some milliseconds, so with
    thousands of due flows the reply would wait for seconds: :meth:`ping` answers once every
    patch landed or ``answer_within`` seconds passed, whichever comes first, and the rest go on in
    the background (``flowsPending`` in the reply; ``on_done`` hears each one's outcome). A flow
    whose patch is still in flight is skipped by later pings instead of being patched twice.
    """

    def __init__(
        self,
        store: FlowStore,
        concurrency: int = 16,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.store = store
        self._gate = asyncio.Semaphore(concurrency)
        self._on_done = on_done
        self._in_flight: dict[tuple[str, str], asyncio.Task[tuple[bool, Outcome]]] = {}

    async def ping(
        self, now: datetime, *, dry_run: bool = False, answer_within: float | None = None
    ) -> PingResult:
        """One ping; ``answer_within`` counts from the start, the flow list included."""
        loop = asyncio.get_running_loop()
        deadline = None if answer_within is None else loop.time() + answer_within
        flows = await self.store.list_flows()
        tasks: list[asyncio.Task[tuple[bool, Outcome]]] = []
        busy = 0
        for flow in flows:
            metadata = flow.get("metadata") or {}
            key = (metadata.get("namespace", ""), metadata.get("name", ""))
            if key in self._in_flight:
                busy += 1
                continue
            task = asyncio.create_task(self._handle(flow, now, dry_run))
            tasks.append(task)
            if not dry_run:
                self._in_flight[key] = task
                task.add_done_callback(functools.partial(self._finished, key))
        timeout = None if deadline is None else max(deadline - loop.time(), 0.05)
        done, pending = await asyncio.wait(tasks, timeout=timeout) if tasks else (set(), set())
        outcomes = [task.result() for task in done]
        for task in pending:  # its outcome goes to on_done, not into this reply
            task.add_done_callback(self._report)
        counts = Counter(outcome for _, outcome in outcomes)
        return PingResult(
            due=sum(due for due, _ in outcomes) + busy + len(pending),
            triggered=counts["triggered"],
            skipped=counts["skipped"] + busy,
            failed=counts["failed"],
            pending=len(pending),
            timestamp=now,
            dry_run=dry_run,
        )

    async def drain(self) -> None:
        """Wait for the patches still in flight (at shutdown, and in tests)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))

    async def _handle(
        self, flow: dict[str, Any], now: datetime, dry_run: bool
    ) -> tuple[bool, Outcome]:
        async with self._gate:
            return await handle_flow(self.store, flow, now, dry_run=dry_run)

    def _finished(self, key: tuple[str, str], task: asyncio.Task[tuple[bool, Outcome]]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]

    def _report(self, task: asyncio.Task[tuple[bool, Outcome]]) -> None:
        if self._on_done is not None and not task.cancelled():
            self._on_done(task.result()[1])


async def handle_flow(
    store: FlowStore, flow: dict[str, Any], now: datetime, *, dry_run: bool = False
) -> tuple[bool, Outcome]:
    """Decide and patch one flow; returns (due, outcome). Never raises: one flow's failure is
    logged and counted, and the other flows carry on."""
    metadata = flow.get("metadata") or {}
    namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
    due = False
    try:
        for _ in range(CONFLICT_RETRIES):
            decision = decide(flow, now)
            due = decision.action != "idle"
            if decision.action in ("idle", "skip"):
                return due, "skipped" if due else "idle"
            outcome: Outcome = "triggered" if decision.action == "trigger" else "skipped"
            if dry_run:
                return due, outcome
            try:
                version = flow["metadata"]["resourceVersion"]
                if not await store.patch_annotations(
                    namespace, name, version, decision.annotations
                ):
                    return False, "idle"  # deleted since the list
            except ConflictError:
                fresh = await store.get_flow(namespace, name)
                if fresh is None:
                    return False, "idle"
                flow = fresh
                continue
            _log_patch(namespace, name, decision)
            return due, outcome
        raise FlowError(f"still changing after {CONFLICT_RETRIES} attempts")
    except FlowError as exc:
        log.warning("DataFlow %s/%s: %s", namespace, name, exc)
    except Exception:
        log.exception("DataFlow %s/%s: could not be patched", namespace, name)
    return due, "failed"


def _log_patch(namespace: str, name: str, decision: Decision) -> None:
    assert decision.slot is not None
    missed = f", {decision.missed} missed before it" if decision.missed else ""
    late = f" ({decision.reason})" if decision.action == "late" else ""
    log.info(
        "DataFlow %s/%s: marked slot %s%s%s",
        namespace,
        name,
        format_time(decision.slot),
        missed,
        late,
    )
