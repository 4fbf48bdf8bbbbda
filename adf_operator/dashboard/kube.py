"""The dashboard's reads and writes on the Kubernetes API.

The official client's blocking calls run in worker threads (as in the heartbeat's store), and every
answer comes back as the API's own JSON (camelCase dicts). The dashboard sees only its watched
namespaces: a request for any other namespace is answered as "not found" without asking the API.
It reads DataFlows, DataFlowRuns, Jobs, pods and Events; it writes only a flow's run-now annotation
and ``spec.suspend``, and deletes finished runs. It never reads Secrets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import names

Body = dict[str, Any]
REQUEST_TIMEOUT = 30.0
NOT_FOUND = 404


class ClusterError(Exception):
    """The Kubernetes API refused a call (`status` set) or could not be reached (None). The
    message holds the status and reason only, never the API's body (it can echo request data)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class Cluster:
    """DataFlows and what belongs to them, in some namespaces (all when none are given)."""

    def __init__(self, api_client: client.ApiClient, namespaces: Sequence[str] = ()) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self.namespaces: tuple[str, ...] = tuple(dict.fromkeys(namespaces))

    def watched(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def _scopes(self, namespace: str | None) -> list[str | None]:
        if namespace is not None:
            return [namespace] if self.watched(namespace) else []
        return list(self.namespaces) or [None]

    async def list_flows(self, namespace: str | None = None) -> list[Body]:
        return await self._list_custom(names.FLOW_PLURAL, namespace)

    async def list_runs(self, namespace: str | None = None) -> list[Body]:
        return await self._list_custom(names.RUN_PLURAL, namespace)

    async def _list_custom(self, plural: str, namespace: str | None) -> list[Body]:
        items: list[Body] = []
        for scope in self._scopes(namespace):
            call: Callable[..., Any]
            if scope is None:
                call = self._custom.list_cluster_custom_object
                args: tuple[Any, ...] = (API_GROUP, API_VERSION, plural)
            else:
                call = self._custom.list_namespaced_custom_object
                args = (API_GROUP, API_VERSION, scope, plural)
            items.extend((await _call(call, *args)).get("items") or [])
        return items

    async def get_flow(self, namespace: str, name: str) -> Body | None:
        return await self._get_custom(names.FLOW_PLURAL, namespace, name)

    async def get_run(self, namespace: str, name: str) -> Body | None:
        return await self._get_custom(names.RUN_PLURAL, namespace, name)

    async def _get_custom(self, plural: str, namespace: str, name: str) -> Body | None:
        if not self.watched(namespace):
            return None
        return await _missing_is_none(
            self._custom.get_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            plural,
            name,
        )

    async def patch_flow(self, namespace: str, name: str, patch: Body) -> Body | None:
        """A JSON merge patch on a DataFlow; None when it does not exist (or is not watched)."""
        if not self.watched(namespace):
            return None
        return await _missing_is_none(
            self._custom.patch_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            names.FLOW_PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def delete_run(self, namespace: str, name: str) -> None:
        """Delete a run; its Job and pods follow through their owner references."""
        try:
            await _call(
                self._custom.delete_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                names.RUN_PLURAL,
                name,
                propagation_policy="Background",
            )
        except ClusterError as exc:
            if exc.status != NOT_FOUND:
                raise

    async def get_job(self, namespace: str, name: str) -> Body | None:
        return await _missing_is_none(self._batch.read_namespaced_job, name, namespace)

    async def run_pods(self, namespace: str, run: str) -> list[Body]:
        listing = await _call(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=f"{names.LABEL_RUN}={run}",
        )
        return list(listing.get("items") or [])

    async def events(self, namespace: str, kind: str, name: str) -> list[Body]:
        """Events about one object, oldest first."""
        listing = await _call(
            self._core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        items: list[Body] = listing.get("items") or []
        return sorted(items, key=_event_time)


def _event_time(event: Body) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event["metadata"].get("creationTimestamp")
        or ""
    )


async def _call(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Body:
    try:
        response = await asyncio.to_thread(
            call, *args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs
        )
    except ApiException as exc:
        message = f"the Kubernetes API answered {exc.status} {exc.reason}"
        raise ClusterError(exc.status, message) from exc
    except HTTPError as exc:
        raise ClusterError(
            None, f"the Kubernetes API server cannot be reached ({type(exc).__name__})"
        ) from exc
    return dict(json.loads(response.data))


async def _missing_is_none(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Body | None:
    try:
        return await _call(call, *args, **kwargs)
    except ClusterError as exc:
        if exc.status == NOT_FOUND:
            return None
        raise
