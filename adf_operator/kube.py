"""The few Kubernetes API calls the operator and the CLI make, as plain dicts.

A thin layer over the official client: objects come back as the API's JSON (camelCase dicts, the
same shape kopf hands to handlers), a missing object is `None`, and creating an object that exists
answers `False` instead of raising, because deterministic names make that the normal "already
done" case.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from kubernetes import client, config

# The two API classes of the hot path are imported now: the client imports them on first use,
# which holds the interpreter for about a second in the middle of a burst. CoreV1Api (pods) stays
# lazy: it is the largest, and the operator needs it only to follow running pods.
from kubernetes.client import BatchV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import names

Body = dict[str, Any]
CONFLICT = 409
NOT_FOUND = 404
POOL_SIZE = 64  # above the operator's handler threads (ADF_WORKERS, default 20)


def api() -> client.ApiClient:
    """One client per process and cluster: in a pod its ServiceAccount, else the kubeconfig.

    KUBECONFIG is read now, not when the kubernetes package was imported (its default is fixed
    at import time), and a changed KUBECONFIG gets its own client: a test session that talks to
    several clusters never reaches the wrong one."""
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    return _client(None if in_cluster else os.environ.get("KUBECONFIG", ""))


@cache
def _client(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig is None:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(config_file=kubeconfig or None)  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    # One connection per handler thread: a full pool discards connections, and every request
    # beyond it pays a new TLS handshake.
    configuration.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(configuration)


def api_message(exc: ApiException) -> str:
    """The API server's own explanation of a refusal (a Status object's message)."""
    try:
        return str(json.loads(exc.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return str(exc.reason)


def _json(response: Any) -> Body:
    return dict(json.loads(response.data))


def _missing_is_none(call: Any, *args: Any, **kwargs: Any) -> Body | None:
    try:
        return _json(call(*args, _preload_content=False, **kwargs))
    except ApiException as exc:
        if exc.status == NOT_FOUND:
            return None
        raise


def _custom() -> client.CustomObjectsApi:
    return CustomObjectsApi(api())


def get_object(plural: str, namespace: str, name: str) -> Body | None:
    """A DataFlow or DataFlowRun, or None."""
    return _missing_is_none(
        _custom().get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, plural, name
    )


def list_runs(namespace: str, flow: str) -> list[Body]:
    """The runs of one flow (by label), oldest first."""
    listing = _json(
        _custom().list_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            namespace,
            names.RUN_PLURAL,
            label_selector=f"{names.LABEL_FLOW}={flow}",
            _preload_content=False,
        )
    )
    items: list[Body] = listing.get("items", [])
    return sorted(items, key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))


def create_object(plural: str, body: Body) -> Body | None:
    """Create a custom object and return it as stored; None when one of that name exists."""
    try:
        return _json(
            _custom().create_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                body["metadata"]["namespace"],
                plural,
                body,
                _preload_content=False,
            )
        )
    except ApiException as exc:
        if exc.status == CONFLICT:
            return None
        raise


def patch_object(
    plural: str, namespace: str, name: str, patch: Body, *, status: bool = False
) -> Body:
    """JSON merge patch; a `metadata.resourceVersion` in it makes it conditional (409 if stale)."""
    custom = _custom()
    call = (
        custom.patch_namespaced_custom_object_status
        if status
        else custom.patch_namespaced_custom_object
    )
    return _json(
        call(API_GROUP, API_VERSION, namespace, plural, name, patch, _preload_content=False)
    )


def delete_object(plural: str, namespace: str, name: str) -> None:
    """Delete a custom object and, in the background, everything it owns; gone is fine."""
    try:
        _custom().delete_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, name, propagation_policy="Background"
        )
    except ApiException as exc:
        if exc.status != NOT_FOUND:
            raise


def get_job(namespace: str, name: str) -> Body | None:
    return _missing_is_none(BatchV1Api(api()).read_namespaced_job, name, namespace)


def create_job(body: Body) -> bool:
    """Create a Job; False when it exists already."""
    batch: Any = BatchV1Api(api())
    try:  # read as JSON: a V1Job model would cost milliseconds of CPU per run
        _json(
            batch.create_namespaced_job(body["metadata"]["namespace"], body, _preload_content=False)
        )
    except ApiException as exc:
        if exc.status == CONFLICT:
            return False
        raise
    return True


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and its pods (running ones are terminated); gone is fine."""
    try:
        BatchV1Api(api()).delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != NOT_FOUND:
            raise


def list_run_pods(namespace: str, run: str) -> list[Body]:
    """The pods of a run's Job."""
    listing = _json(
        client.CoreV1Api(api()).list_namespaced_pod(
            namespace, label_selector=f"{names.LABEL_RUN}={run}", _preload_content=False
        )
    )
    items: list[Body] = listing.get("items", [])
    return items


def current_namespace() -> str:
    """The namespace of the kubeconfig's current context (in a pod: the pod's), else default."""
    try:
        _, context = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG")
        )
    except config.ConfigException:
        return "default"
    namespace: str = (context or {}).get("context", {}).get("namespace") or "default"
    return namespace
