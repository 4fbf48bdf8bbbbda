"""DataFlow handlers: validate a new spec and set conditions; act on the heartbeat's slot and on
run-now requests.

All are event handlers, so kopf keeps no diff base or progress on DataFlows: a new spec is known
the Kubernetes way, by `metadata.generation` running ahead of `status.observedGeneration`, and a
marked slot or run-now request by its annotation (actions.trigger_pending). The heartbeat's patch
therefore costs the operator one status patch and no bookkeeping patch. A failed trigger (an API
error) is retried by the periodic sweep (handlers/sweep.py) while it is pending.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import actions, metrics, names
from adf_operator.handlers.startup import api_errors, in_handler_pool


def _to_reconcile(type: str | None, body: kopf.Body, **_: Any) -> bool:
    """A spec not yet reconciled, or any flow listed when the operator (re)starts (type None)."""
    if type == "DELETED":
        return False
    observed = (body.get("status") or {}).get("observedGeneration")
    return type is None or observed != body["metadata"].get("generation")


@kopf.on.event(API_GROUP, API_VERSION, names.FLOW_PLURAL, when=_to_reconcile)
def dataflow_reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Level-based: the same function for a new flow, a changed spec and a restart."""
    changed = actions.reconcile_flow(dict(body), actions.now())
    if changed:
        patch.status.update(changed)


def _trigger_pending(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return type != "DELETED" and actions.trigger_pending(body)


@kopf.on.event(API_GROUP, API_VERSION, names.FLOW_PLURAL, when=_trigger_pending)
async def dataflow_triggered(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Create the runs at once; record them in the flow's status through the follow-up gate
    (handlers/startup.py), so a burst of triggers creates every run first.

    A failed trigger is noted for the sweep's retry (kopf does not retry event handlers); one
    that merely waits in the queue is not, so a backlog is never worked twice.
    """
    at = actions.now()
    try:
        with api_errors(names.FLOW_PLURAL):
            trigger = await in_handler_pool(memo, actions.start_trigger, dict(body), at)
            if trigger is not None:
                async with memo.follow_up_gate:
                    await in_handler_pool(memo, actions.record_trigger, trigger)
    except Exception:
        loop = asyncio.get_running_loop()
        memo.pending_triggers.note((str(namespace), name), True, loop.time())
        raise


def _deleted(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event(API_GROUP, API_VERSION, names.FLOW_PLURAL, when=_deleted)
def dataflow_deleted(namespace: str | None, name: str, **_: Any) -> None:
    """Runs and Jobs go by garbage collection; only the flow's metric series are ours to drop."""
    metrics.METRICS.forget_flow(str(namespace), name)
