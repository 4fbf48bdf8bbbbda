"""The periodic sweep: retries DataFlow triggers whose handler failed and checks active runs.

Event handlers are not retried by kopf, and a run whose Job or pod events were missed must still
finish. Two Overdue sets say what to look at, at no API cost: memo.pending_triggers holds the
DataFlows whose trigger handler failed (until an event shows the trigger handled), and
memo.active_runs every active DataFlowRun (from an async tracking handler, which also keeps the
flow cache). One task handles what is overdue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import kopf

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import actions, names, runs
from adf_operator.cache import FLOWS
from adf_operator.handlers.startup import BACKOFF, api_errors
from adf_operator.overdue import Key, Overdue

log = logging.getLogger(__name__)
SWEEP_CONCURRENCY = 4


@kopf.on.event(API_GROUP, API_VERSION, names.FLOW_PLURAL)
async def track_flow(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """The flow cache; a trigger that is no longer pending leaves the retry set (its handler
    notes a failed one, handlers/dataflow.py)."""
    FLOWS.seen(body, deleted=type == "DELETED")
    if type == "DELETED" or not actions.trigger_pending(body):
        memo.pending_triggers.note((str(namespace), name), False, asyncio.get_running_loop().time())


@kopf.on.event(API_GROUP, API_VERSION, names.RUN_PLURAL)
async def track_run(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    active = type != "DELETED" and runs.is_active(body)
    memo.active_runs.note((str(namespace), name), active, asyncio.get_running_loop().time())


@kopf.on.startup()
async def start_sweep(memo: kopf.Memo, **_: Any) -> None:
    memo.pending_triggers = Overdue(BACKOFF)
    memo.active_runs = Overdue(memo.config.follow_interval)
    memo.sweep = asyncio.create_task(_sweep_forever(memo), name="adf-sweep")


@kopf.on.cleanup()
async def stop_sweep(memo: kopf.Memo, **_: Any) -> None:
    memo.sweep.cancel()


async def _sweep_forever(memo: kopf.Memo) -> None:
    loop, config = asyncio.get_running_loop(), memo.config
    gate = asyncio.Semaphore(SWEEP_CONCURRENCY)

    async def retry(resource: str, key: Key, call: Callable[[], None]) -> None:
        async with gate:
            try:
                with api_errors(resource):
                    await asyncio.to_thread(call)
            except Exception as exc:  # e.g. the API server unreachable: retried next sweep,
                # and the sweep itself must outlive any one object's failure
                log.warning("%s %s/%s: %s", resource, *key, exc)

    tick = min(memo.pending_triggers.interval, memo.active_runs.interval) / 2
    while True:
        await asyncio.sleep(tick)
        now, at = loop.time(), actions.now()
        triggers = [
            retry(names.FLOW_PLURAL, (ns, name), partial(actions.retry_trigger, ns, name, at))
            for ns, name in memo.pending_triggers.take_due(now)
        ]
        follows = [
            retry(names.RUN_PLURAL, (ns, name), partial(actions.follow_run, ns, name, at, config))
            for ns, name in memo.active_runs.take_due(now)
        ]
        await asyncio.gather(*triggers, *follows)
