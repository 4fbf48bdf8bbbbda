"""DataFlows on the Kubernetes API, for the heartbeat.

Uses the official ``kubernetes`` client (kubeconfig, in-cluster ServiceAccount, exec plugins and
token refresh all handled there) with its blocking calls run in worker threads. A hand-made aiohttp
client against the API would save the threads but re-implement that authentication; a ping makes
one list call per page plus one small patch per due flow, which threads serve well: the store has
its own thread pool and urllib3 pool, both sized to the patch concurrency (asyncio's default pool
has only CPUs + 4 threads, which capped a 1,000-flow ping at ~55 patches/s).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import names
from adf_operator.heartbeat.due import ConflictError

PAGE_SIZE = 500
REQUEST_TIMEOUT = 30.0
CHECK_TIMEOUT = 5.0
T = TypeVar("T")


def api_client(kubeconfig: Path | None = None, pool_size: int = 16) -> client.ApiClient:
    """In a pod its ServiceAccount, else the kubeconfig (``kubeconfig``, $KUBECONFIG or
    ~/.kube/config) — $KUBECONFIG read now: the client's own default is fixed at import. The
    connection pool holds ``pool_size`` connections (the patch concurrency)."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeFlowStore:
    """The heartbeat's view of the DataFlows in some namespaces (all when none are given)."""

    def __init__(
        self, api: client.CustomObjectsApi, namespaces: Sequence[str] = (), threads: int = 16
    ) -> None:
        self._api = api
        self._namespaces: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="kube")

    @classmethod
    def connect(
        cls, namespaces: Sequence[str] = (), kubeconfig: Path | None = None, pool_size: int = 16
    ) -> KubeFlowStore:
        return cls(
            client.CustomObjectsApi(api_client(kubeconfig, pool_size)), namespaces, pool_size
        )

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking client call in the store's own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, functools.partial(function, *args, **kwargs)
        )

    async def list_flows(self) -> list[dict[str, Any]]:
        flows: list[dict[str, Any]] = []
        for namespace in self._namespaces:
            token: str | None = None
            while True:
                page = await self._call(self._list, namespace, token, PAGE_SIZE)
                flows.extend(page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
        return flows

    async def get_flow(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            flow = await self._call(
                self._api.get_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                names.FLOW_PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], flow)

    async def patch_annotations(
        self, namespace: str, name: str, resource_version: str, annotations: dict[str, str]
    ) -> bool:
        body = {"metadata": {"resourceVersion": resource_version, "annotations": annotations}}
        try:
            await self._call(
                self._api.patch_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                names.FLOW_PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 409:
                raise ConflictError(f"{namespace}/{name} changed") from None
            raise
        return True

    async def check(self) -> None:
        """One tiny list: proves the API server answers, the CRD exists and RBAC allows it."""
        await self._call(self._list, self._namespaces[0], None, 1, CHECK_TIMEOUT)

    def _list(
        self, namespace: str | None, token: str | None, limit: int, timeout: float = REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"limit": limit, "_request_timeout": timeout}
        if token:
            options["_continue"] = token
        if namespace is None:
            page = self._api.list_cluster_custom_object(
                API_GROUP, API_VERSION, names.FLOW_PLURAL, **options
            )
        else:
            page = self._api.list_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, names.FLOW_PLURAL, **options
            )
        return cast(dict[str, Any], page)
