"""DataFlowRun handlers: launch the Job, then follow the Job and its pods to the end.

Runs have no change handlers on purpose: launching is idempotent (the Job's name is the run's, the
status write is conditional), so kopf needs no diff base or progress on them, which saves one
patch per run. Event handlers are not retried by kopf; the periodic sweep (handlers/sweep.py)
is their safety net: it checks every active run once per ADF_FOLLOW_INTERVAL.
"""

from __future__ import annotations

from typing import Any

import kopf

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import actions, names, runs
from adf_operator.cache import RUNS, FlowKey, RunRef
from adf_operator.handlers.startup import api_errors, in_handler_pool


def _to_launch_or_resume(type: str | None, body: kopf.Body, **_: Any) -> bool:
    """A run without a Job yet, or any run listed when the operator (re)starts (type None)."""
    if type == "DELETED":
        return False
    return type is None or (runs.is_active(body) and not (body.get("status") or {}).get("jobName"))


@kopf.on.event(API_GROUP, API_VERSION, names.RUN_PLURAL, when=_to_launch_or_resume)
async def dataflowrun_launch(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Through the follow-up gate (handlers/startup.py): triggers go first in a burst."""
    async with memo.follow_up_gate:
        with api_errors(names.RUN_PLURAL):
            await in_handler_pool(memo, actions.resume_run, dict(body), memo.config, actions.now())


def _job_matters(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return runs.job_event_matters(type, body)


def _pod_matters(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return runs.pod_event_matters(type, body)


@kopf.on.event("batch", "v1", "jobs", labels={names.LABEL_RUN: kopf.PRESENT}, when=_job_matters)
def job_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    """Events are not retried: a failure here is counted, and the sweep catches up."""
    with api_errors("jobs"):
        actions.follow_run(str(namespace), labels[names.LABEL_RUN], actions.now())


@kopf.on.event("v1", "pods", labels={names.LABEL_RUN: kopf.PRESENT}, when=_pod_matters)
def pod_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    with api_errors("pods"):
        actions.follow_run(str(namespace), labels[names.LABEL_RUN], actions.now())


@kopf.index(API_GROUP, API_VERSION, names.RUN_PLURAL)
async def runs_by_flow(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[FlowKey, RunRef]:
    """Each flow's runs (name, active) for the trigger: kopf fills the index from its watch
    before it runs any handler, so a trigger after a restart sees every run."""
    flow = labels.get(names.LABEL_FLOW)
    if flow is None:
        return {}
    return {(str(namespace), flow): (body["metadata"]["name"], runs.is_active(body))}


@kopf.on.startup()
async def attach_runs_index(**kwargs: Any) -> None:
    """kopf hands every handler its indexes by name; the trigger reads this one via RUNS."""
    RUNS.index = kwargs["runs_by_flow"]
