"""What the kopf handlers do: read from the API, call the pure functions, write back, post events.

Every step is idempotent, so a handler that is retried, or an operator that restarts halfway, never
creates a second run or Job: names are deterministic (AlreadyExists means done), status writes are
conditional on the resourceVersion they were computed from, and phases only move forward.

Status ownership avoids lost updates between concurrent handlers: the spec handler writes what
follows from the spec (SPEC_FIELDS, through kopf's patch); the trigger handler what follows from a
slot (TRIGGER_FIELDS and the new last run) and the run handlers the fields about runs
(RUN_FIELDS), both with conditional patches.

API calls are the operator's cost at scale (a 1,000-flow ping on one API server is bound by the
server's CPU, most of it spent on updates): a trigger costs one create and one status patch (the
flow's runs come from kopf's index, cache.RUNS), its launch one create and one status patch (the
flow comes from the watch cache), and kopf keeps no bookkeeping of its own on our objects.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from adf_core.errors import SpecError
from adf_core.spec import DataFlow, load_dataflow
from adf_operator import flows, kube, names, runs
from adf_operator.cache import FLOWS, RUNS
from adf_operator.config import OperatorConfig
from adf_operator.flows import Event
from adf_operator.jobs import build_job, owner_reference
from adf_operator.metrics import METRICS
from adf_operator.models import FINAL_PHASES, DataFlowRunStatus, DataFlowStatus

log = logging.getLogger(__name__)
Body = dict[str, Any]

SPEC_FIELDS = frozenset({"observed_generation", "conditions", "schedule", "next_run_time"})
TRIGGER_FIELDS = frozenset({"last_schedule_time", "missed_slots", "next_run_time"})
RUN_FIELDS = frozenset(DataFlowStatus.model_fields) - SPEC_FIELDS - TRIGGER_FIELDS
LAST_RUN_FIELDS = frozenset({"last_run_name", "last_run_time", "last_run_phase"})
CONFLICT_RETRIES = 8
BAD_REQUEST, INVALID = 400, 422


def now() -> datetime:
    """The current time at whole seconds, as Kubernetes stores times."""
    return datetime.now(UTC).replace(microsecond=0)


def dump(model: BaseModel, fields: frozenset[str] | None = None) -> Body:
    """A status as a merge patch: camelCase keys, and None as null so that stale fields vanish."""
    return model.model_dump(mode="json", by_alias=True, include=fields)  # type: ignore[arg-type]


class _KeyedLocks:
    """One lock per object, so this process handles an object in one thread at a time."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[tuple[str, ...], Any] = (
            weakref.WeakValueDictionary()
        )

    @contextmanager
    def hold(self, *key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = _Lock()
        with lock:
            yield


class _Lock:
    """A weak-referenceable lock (threading.Lock objects are not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()


_locks = _KeyedLocks()


def post(body: Mapping[str, Any], event: Event) -> None:
    """Post a Kubernetes Event on an object (and log it)."""
    meta = body["metadata"]
    level = logging.WARNING if event.type == "Warning" else logging.INFO
    log.log(level, "%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
    kopf.event(
        kopf.Body(cast(kopf.RawBody, body)),
        type=event.type,
        reason=event.reason,
        message=event.message,
    )


def _get_flow(namespace: str, name: str) -> Body | None:
    return kube.get_object(names.FLOW_PLURAL, namespace, name)


def _manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}


# --- DataFlow -------------------------------------------------------------------------------------


def reconcile_flow(body: Body, at: datetime) -> Body:
    """Validate the flow; returns its SPEC_FIELDS status when it differs from the stored one
    (else an empty dict: nothing to write, as after a restart)."""
    meta = body["metadata"]
    current = DataFlowStatus.model_validate(body.get("status") or {})
    result = flows.reconcile(body, current, at)
    for event in result.events:
        post(body, event)
    own = dump(result.status, SPEC_FIELDS)
    METRICS.flow_conditions(meta["namespace"], meta["name"], own["conditions"])
    return own if own != dump(current, SPEC_FIELDS) else {}


def trigger_pending(body: Mapping[str, Any]) -> bool:
    """Whether the flow has a slot marked by the heartbeat, or a run-now request, to handle."""
    annotations: Mapping[str, str] = body["metadata"].get("annotations") or {}
    if names.RUN_NOW in annotations:
        return True
    if names.SCHEDULED_TIME not in annotations:
        return False
    status = DataFlowStatus.model_validate(body.get("status") or {})
    return flows.pending_slot(annotations, status) is not None


@dataclass(frozen=True)
class Trigger:
    """A trigger handled and not yet recorded: the flow's status and the annotations to remove,
    decided from `body`."""

    body: Body
    status: DataFlowStatus
    remove: list[str]


def start_trigger(body: Body, at: datetime) -> Trigger | None:
    """Create the runs of the flow's pending slot and run-now request, the part of a trigger that
    a burst of them waits for; None when nothing is pending."""
    meta = body["metadata"]
    with _locks.hold("trigger", meta["namespace"], meta["name"]):
        return _decide(body, at)


def record_trigger(trigger: Trigger) -> None:
    """Write what `start_trigger` decided, with the new run as the flow's last run.

    The status write is conditional on the resourceVersion the trigger was decided from: after a
    conflict the flow is read again and the trigger redone (at the current time: the record may
    have waited behind a burst), which finds its runs created and creates no second one.
    """
    namespace, name = trigger.body["metadata"]["namespace"], trigger.body["metadata"]["name"]
    with _locks.hold("trigger", namespace, name):
        for _ in range(CONFLICT_RETRIES):
            patch = {
                "metadata": {"resourceVersion": trigger.body["metadata"]["resourceVersion"]},
                "status": dump(trigger.status, TRIGGER_FIELDS | LAST_RUN_FIELDS),
            }
            try:
                kube.patch_object(names.FLOW_PLURAL, namespace, name, patch, status=True)
            except ApiException as exc:
                if exc.status != kube.CONFLICT:
                    raise
                current = _get_flow(namespace, name)
                redone = _decide(current, now()) if current is not None else None
                if redone is None:
                    return
                trigger = redone
                continue
            if trigger.remove:
                removal = {"metadata": {"annotations": dict.fromkeys(trigger.remove)}}
                kube.patch_object(names.FLOW_PLURAL, namespace, name, removal)
            return
        raise kopf.TemporaryError(f"flow {namespace}/{name} kept changing; retrying", delay=5)


def trigger_flow(body: Body, at: datetime) -> None:
    """Run the flow's pending slot and its run-now request, and record them in its status."""
    trigger = start_trigger(body, at)
    if trigger is not None:
        record_trigger(trigger)


def retry_trigger(namespace: str, name: str, at: datetime) -> None:
    """The sweep's retry of a trigger whose event handler failed: read the flow fresh."""
    body = _get_flow(namespace, name)
    if body is not None:
        trigger_flow(body, at)


def _decide(body: Body, at: datetime) -> Trigger | None:
    """Handle the flow's pending trigger (its runs are created); None when nothing is pending."""
    if not trigger_pending(body):
        return None
    return Trigger(body, *_handle_trigger(body, at))


def _handle_trigger(body: Body, at: datetime) -> tuple[DataFlowStatus, list[str]]:
    """The flow's status after its slot and run-now request, and the annotations to remove. A slot
    of an invalid flow is skipped (recorded, with a Warning), so it is not retried forever."""
    status = DataFlowStatus.model_validate(body.get("status") or {})
    annotations: Mapping[str, str] = body["metadata"].get("annotations") or {}
    try:
        flow: DataFlow | None = load_dataflow(_manifest(body))
    except SpecError:
        flow = None
    remove = []
    slot = flows.pending_slot(annotations, status)
    missed = flows.missed_slots(annotations)
    if slot is not None and flow is not None:
        status = _run_slot(body, flow, status, slot, missed, at)
    elif slot is not None:
        message = f"slot {slot:%Y-%m-%dT%H:%M:%SZ} skipped: the spec is invalid (see Ready)"
        post(body, Event("Warning", "SlotSkipped", message))
        status = status.model_copy(update={"last_schedule_time": slot, "missed_slots": missed})
    if names.RUN_NOW in annotations:
        if flow is not None:
            status = _run_now(body, flow, status, annotations[names.RUN_NOW], at)
        else:
            post(body, Event("Warning", "RunNowRefused", "the spec is invalid: see Ready"))
        remove.append(names.RUN_NOW)
    return status, remove


def _run_slot(
    body: Body, flow: DataFlow, status: DataFlowStatus, slot: datetime, missed: int, at: datetime
) -> DataFlowStatus:
    name = names.scheduled_run_name(flow.metadata.name, slot)
    status = _start(body, flow, status, name, slot, at)
    status, events = flows.after_slot(status, flow, slot, missed, at)
    for event in events:
        post(body, event)
    return status


def _run_now(
    body: Body, flow: DataFlow, status: DataFlowStatus, request: str, at: datetime
) -> DataFlowStatus:
    name = names.manual_run_name(flow.metadata.name, request)
    return _start(body, flow, status, name, None, at)


def _start(
    body: Body, flow: DataFlow, status: DataFlowStatus, name: str, slot: datetime | None,
    at: datetime,
) -> DataFlowStatus:  # fmt: skip
    """Create the run `name` unless it exists, honouring the concurrency policy; a created run
    becomes the flow's last run."""
    namespace = flow.metadata.namespace
    existing = RUNS.of_flow(namespace, flow.metadata.name)
    if any(run == name for run, _ in existing):
        return status  # handled before a restart
    active = [run for run, is_active in existing if is_active]
    plan = flows.plan_trigger(flow, active, slot=slot, now=at)
    for event in plan.events:
        post(body, event)
    if plan.action == "skip":
        return status
    for victim in plan.cancel:
        cancel_run(namespace, victim, f"replaced by run {name} (concurrencyPolicy: Replace)", at)
    trigger: runs.Trigger = "schedule" if slot else "manual"
    created = kube.create_object(names.RUN_PLURAL, runs.build_run(body, name, trigger, slot))
    if created is None:
        return status
    RUNS.created(namespace, flow.metadata.name, name)
    METRICS.run_created(namespace, flow.metadata.name, trigger, slot, now())
    # Logged, not an Event: the run itself and the flow's lastRunName say it, and an Event per
    # run was a sixth of the API requests of a 1,000-flow ping.
    what = f"slot {slot:%Y-%m-%dT%H:%M:%SZ}" if slot else "run-now request"
    log.info("%s/%s created run %s for %s", namespace, flow.metadata.name, name, what)
    return flows.after_run(status, created, DataFlowRunStatus(phase="Pending"))


# --- DataFlowRun ----------------------------------------------------------------------------------


def launch_run(body: Body, config: OperatorConfig, at: datetime) -> None:
    """Create the run's Job (or fail the run when its flow is missing or invalid)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = DataFlowRunStatus.model_validate(body.get("status") or {})
    if status.phase in FINAL_PHASES or status.job_name:
        follow_run(namespace, name, at)
        return
    flow_name = body["spec"]["dataFlowRef"]["name"]
    flow_body = FLOWS.get(namespace, flow_name) or _get_flow(namespace, flow_name)
    if flow_body is None:
        message = f"DataFlow {flow_name} not found in namespace {namespace}"
        _write_run(namespace, name, lambda s: runs.fail(s, "FlowNotFound", message, at))
        return
    try:
        flow = load_dataflow(_manifest(flow_body))
    except SpecError as exc:
        message = f"DataFlow {flow_name} is invalid: {exc}"
        _write_run(namespace, name, lambda s: runs.fail(s, "InvalidSpec", message, at))
        return
    _adopt(body, flow_body)
    job = build_job(body, flow_body, flow, config.default_image)
    try:
        created = kube.create_job(job)
    except ApiException as exc:
        if exc.status not in (BAD_REQUEST, INVALID):
            raise
        # A Job the API server refuses (say, runTemplate.resources of "lots") never gets better.
        message = f"the Job built from spec.runTemplate was refused: {kube.api_message(exc)}"
        _write_run(namespace, name, lambda s: runs.fail(s, "InvalidJob", message, at))
        post(body, Event("Warning", "InvalidJob", message))
        return
    job_name = job["metadata"]["name"]
    if created:  # logged, not an Event: the Job has the run's name and the status names it
        log.info("%s/%s created Job %s", namespace, name, job_name)
    _write_run(
        namespace,
        name,
        lambda s: (
            s
            if s.job_name or s.phase in FINAL_PHASES
            else s.model_copy(update={"phase": "Pending", "job_name": job_name})
        ),
        body,
    )


def _adopt(run: Body, flow_body: Body) -> None:
    """A run created by hand gets its flow's label and owner, so listing and deletion work."""
    meta = run["metadata"]
    flow_name = flow_body["metadata"]["name"]
    patch: Body = {}
    if (meta.get("labels") or {}).get(names.LABEL_FLOW) != flow_name:
        patch["labels"] = {names.LABEL_FLOW: flow_name}
    if not meta.get("ownerReferences"):
        patch["ownerReferences"] = [owner_reference(flow_body)]
    if patch:
        kube.patch_object(names.RUN_PLURAL, meta["namespace"], meta["name"], {"metadata": patch})


def follow_run(
    namespace: str, name: str, at: datetime, config: OperatorConfig | None = None
) -> None:
    """Bring the run's status up to date with its Job and pods. With `config` (the periodic
    check), a run whose launch was lost is launched: it is read fresh here, so a stale copy can
    never launch a finished run."""
    run = kube.get_object(names.RUN_PLURAL, namespace, name)
    if run is None or not runs.is_active(run):
        return
    job_name = (run.get("status") or {}).get("jobName")
    if job_name is None and config is not None:
        launch_run(run, config, at)
        return
    job = kube.get_job(namespace, job_name or names.job_name(name))
    pods = kube.list_run_pods(namespace, name) if job is not None else []
    _write_run(namespace, name, lambda s: runs.observe(s, job, pods, at), run)


def cancel_run(namespace: str, name: str, message: str, at: datetime) -> None:
    """Mark a run Cancelled, then delete its Job (which stops its pod)."""
    _write_run(namespace, name, lambda s: runs.cancel(s, message, at))
    kube.delete_job(namespace, names.job_name(name))


def _write_run(
    namespace: str,
    name: str,
    compute: Callable[[DataFlowRunStatus], DataFlowRunStatus],
    run: Body | None = None,
) -> None:
    """Apply `compute` to the run's stored status, conditionally on its resourceVersion, and act
    on a phase change (events, the flow's status, history pruning) exactly once. `run` is a
    recent copy to try first; after a conflict the run is read again."""
    with _locks.hold("run", namespace, name):
        for _ in range(CONFLICT_RETRIES):
            run = run or kube.get_object(names.RUN_PLURAL, namespace, name)
            if run is None:
                return
            old = DataFlowRunStatus.model_validate(run.get("status") or {})
            new = compute(old)
            if new == old:
                return
            patch = {"metadata": {"resourceVersion": run["metadata"]["resourceVersion"]}}
            try:
                kube.patch_object(
                    names.RUN_PLURAL, namespace, name, {**patch, "status": dump(new)}, status=True
                )
            except ApiException as exc:
                if exc.status == kube.CONFLICT:
                    run = None
                    continue
                raise
            if new.phase != old.phase:
                _phase_changed(run, new)
            return
        raise kopf.TemporaryError(f"run {namespace}/{name} kept changing; retrying", delay=5)


def _phase_changed(run: Body, status: DataFlowRunStatus) -> None:
    name = run["metadata"]["name"]
    phase = status.phase or "Pending"
    final = phase in FINAL_PHASES
    message = f"run {name} {phase.lower()}" + (f": {status.message}" if status.message else "")
    event = Event("Warning" if phase == "Failed" else "Normal", phase, message)
    if final or phase == "Running":
        post(run, event)
    if final:
        METRICS.run_finished(
            run["metadata"]["namespace"], run["spec"]["dataFlowRef"]["name"], status
        )
    flow_body = settle_flow(run, status)
    if flow_body is not None and final:
        post(flow_body, event)
        prune(flow_body)


def settle_flow(run: Body, status: DataFlowRunStatus) -> Body | None:
    """Record a run's phase in its flow's status; returns the flow (None if it is gone)."""
    namespace = run["metadata"]["namespace"]
    flow_name = run["spec"]["dataFlowRef"]["name"]
    with _locks.hold("flow", namespace, flow_name):
        stale_cache = False
        for _ in range(CONFLICT_RETRIES):
            cached = None if stale_cache else FLOWS.get(namespace, flow_name)
            flow_body = cached or _get_flow(namespace, flow_name)
            if flow_body is None:
                return None
            old = DataFlowStatus.model_validate(flow_body.get("status") or {})
            new = flows.after_run(old, run, status)
            if new == old:
                return flow_body
            patch = {
                "metadata": {"resourceVersion": flow_body["metadata"]["resourceVersion"]},
                "status": dump(new, RUN_FIELDS),
            }
            try:
                kube.patch_object(names.FLOW_PLURAL, namespace, flow_name, patch, status=True)
            except ApiException as exc:
                if exc.status == kube.CONFLICT:
                    stale_cache = True
                    continue
                raise
            return flow_body
        raise kopf.TemporaryError(f"flow {namespace}/{flow_name} kept changing; retrying", delay=5)


def prune(flow_body: Body) -> None:
    """Delete finished runs beyond the flow's history limits (their Jobs and pods follow)."""
    meta, spec = flow_body["metadata"], flow_body["spec"]
    doomed = runs.runs_to_prune(
        kube.list_runs(meta["namespace"], meta["name"]),
        spec.get("successfulRunsHistoryLimit", 3),
        spec.get("failedRunsHistoryLimit", 3),
    )
    for name in doomed:
        kube.delete_object(names.RUN_PLURAL, meta["namespace"], name)
    if doomed:
        log.info("%s/%s pruned runs %s", meta["namespace"], meta["name"], ", ".join(doomed))


def resume_run(body: Body, config: OperatorConfig, at: datetime) -> None:
    """A new run is launched; at an operator (re)start an active run is launched or followed, and
    for a finished one the idempotent follow-ups (flow status, pruning) are redone in case the
    restart cut them off."""
    if runs.is_active(body):
        launch_run(body, config, at)
        return
    status = DataFlowRunStatus.model_validate(body.get("status") or {})
    flow_body = settle_flow(body, status)
    if flow_body is not None:
        prune(flow_body)
