"""DataFlowRun handlers: launch the Job, then follow the Job and its pods to the end."""

from __future__ import annotations

from typing import Any

import kopf

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import actions, names, runs
from adf_operator.config import OperatorConfig
from adf_operator.handlers.startup import BACKOFF, RETRIES, api_errors

FOLLOW_INTERVAL = OperatorConfig.from_env().follow_interval


@kopf.on.create(API_GROUP, API_VERSION, names.RUN_PLURAL, retries=RETRIES, backoff=BACKOFF)
def dataflowrun_create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with api_errors(names.RUN_PLURAL):
        actions.launch_run(dict(body), memo.config, actions.now())


@kopf.on.resume(API_GROUP, API_VERSION, names.RUN_PLURAL, retries=RETRIES, backoff=BACKOFF)
def dataflowrun_resume(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with api_errors(names.RUN_PLURAL):
        actions.resume_run(dict(body), memo.config, actions.now())


def _active(body: kopf.Body, **_: Any) -> bool:
    return runs.is_active(body)


@kopf.timer(
    API_GROUP,
    API_VERSION,
    names.RUN_PLURAL,
    interval=FOLLOW_INTERVAL,
    initial_delay=FOLLOW_INTERVAL,
    when=_active,
)
def dataflowrun_follow(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """The safety net: a run whose Job vanished, or whose launch never happened, is resolved
    within one interval even if no Job or pod event arrives."""
    with api_errors(names.RUN_PLURAL):
        actions.follow_run(str(namespace), name, actions.now(), memo.config)


def _job_matters(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return runs.job_event_matters(type, body)


def _pod_matters(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return runs.pod_event_matters(type, body)


@kopf.on.event("batch", "v1", "jobs", labels={names.LABEL_RUN: kopf.PRESENT}, when=_job_matters)
def job_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    """Events are not retried: a failure here is counted, and the run's timer catches up."""
    with api_errors("jobs"):
        actions.follow_run(str(namespace), labels[names.LABEL_RUN], actions.now())


@kopf.on.event("v1", "pods", labels={names.LABEL_RUN: kopf.PRESENT}, when=_pod_matters)
def pod_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    with api_errors("pods"):
        actions.follow_run(str(namespace), labels[names.LABEL_RUN], actions.now())
