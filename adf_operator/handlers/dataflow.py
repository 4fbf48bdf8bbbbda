"""DataFlow handlers: validate the spec and set conditions; act on the heartbeat's slot and on
run-now requests.

The trigger annotations are left out of kopf's diff base (see startup.configure), so a marked slot
is not a spec change: no kopf bookkeeping patch, only the trigger's own status patch. A failed
trigger (an API error) is retried by the periodic sweep (handlers/sweep.py) while it is pending.
"""

from __future__ import annotations

from typing import Any

import kopf

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import actions, metrics, names
from adf_operator.handlers.startup import BACKOFF, RETRIES, api_errors


@kopf.on.resume(API_GROUP, API_VERSION, names.FLOW_PLURAL, retries=RETRIES, backoff=BACKOFF)
@kopf.on.create(API_GROUP, API_VERSION, names.FLOW_PLURAL, retries=RETRIES, backoff=BACKOFF)
@kopf.on.update(API_GROUP, API_VERSION, names.FLOW_PLURAL, retries=RETRIES, backoff=BACKOFF)
def dataflow_reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Level-based: the same function for create, update (spec or labels) and restart."""
    patch.status.update(actions.reconcile_flow(dict(body), actions.now()))


def _trigger_pending(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return type != "DELETED" and actions.trigger_pending(body)


@kopf.on.event(API_GROUP, API_VERSION, names.FLOW_PLURAL, when=_trigger_pending)
def dataflow_triggered(body: kopf.Body, **_: Any) -> None:
    with api_errors(names.FLOW_PLURAL):
        actions.trigger_flow(dict(body), actions.now())


def _deleted(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event(API_GROUP, API_VERSION, names.FLOW_PLURAL, when=_deleted)
def dataflow_deleted(namespace: str | None, name: str, **_: Any) -> None:
    """Runs and Jobs go by garbage collection; only the flow's metric series are ours to drop."""
    metrics.METRICS.forget_flow(str(namespace), name)
