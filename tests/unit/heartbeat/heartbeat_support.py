"""Helpers of the heartbeat unit tests: an in-memory flow store with the API server's optimistic
concurrency, flow bodies, and a real server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adf_operator.heartbeat.due import ConflictError

NOW = datetime(2026, 5, 1, 10, 5, 30, tzinfo=UTC)
CREATED = "2026-05-01T09:00:00Z"


def flow_body(
    name: str,
    schedule: dict[str, Any] | None = None,
    *,
    namespace: str = "shop",
    suspend: bool = False,
    deadline: int | None = None,
    last: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A DataFlow as the API returns it (only what the heartbeat reads is filled in)."""
    spec: dict[str, Any] = {"suspend": suspend}
    if schedule is not None:
        spec["schedule"] = schedule
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": CREATED,
            "resourceVersion": "1",
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
        "status": {"lastScheduleTime": last} if last else {},
    }


class MemoryFlowStore:
    """DataFlows in a dict, with resourceVersion preconditions like the API server's.

    ``interfere`` names flows that another writer changes right before this store's next patch of
    them (a concurrent ping or the operator): the patch then answers a conflict.
    """

    def __init__(self, *flows: dict[str, Any]) -> None:
        self.flows = {(f["metadata"]["namespace"], f["metadata"]["name"]): f for f in flows}
        self.patches: list[tuple[str, str, dict[str, str]]] = []
        self.broken: set[str] = set()
        self.interfere: dict[str, dict[str, str]] = {}
        self.delete_before_patch: set[str] = set()
        self.list_error: Exception | None = None
        self.list_calls = 0
        self.ready = True

    async def list_flows(self) -> list[dict[str, Any]]:
        self.list_calls += 1
        await asyncio.sleep(0)
        if self.list_error is not None:
            raise self.list_error
        return [copy.deepcopy(f) for f in self.flows.values()]

    async def get_flow(self, namespace: str, name: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        flow = self.flows.get((namespace, name))
        return copy.deepcopy(flow) if flow else None

    async def patch_annotations(
        self, namespace: str, name: str, resource_version: str, annotations: dict[str, str]
    ) -> bool:
        await asyncio.sleep(0)
        if name in self.broken:
            raise RuntimeError("the API server said no (internal detail 0xdeadbeef)")
        if name in self.delete_before_patch:
            self.flows.pop((namespace, name), None)
        flow = self.flows.get((namespace, name))
        if flow is None:
            return False
        if name in self.interfere:
            self._write(flow, self.interfere.pop(name))
        if flow["metadata"]["resourceVersion"] != resource_version:
            raise ConflictError(name)
        self._write(flow, annotations)
        self.patches.append((namespace, name, annotations))
        return True

    async def check(self) -> None:
        if not self.ready:
            raise ConnectionError("connection refused")

    @staticmethod
    def _write(flow: dict[str, Any], annotations: dict[str, str]) -> None:
        flow["metadata"]["annotations"].update(annotations)
        flow["metadata"]["resourceVersion"] = str(int(flow["metadata"]["resourceVersion"]) + 1)


@contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Serve the app on 127.0.0.1 (a free port) in a thread; yields the base URL; always stops."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()
    sites: list[web.TCPSite] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        sites.append(site)
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if not started.wait(10):
            raise RuntimeError("the test server did not start")
        server = sites[0]._server
        assert server is not None and server.sockets
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
