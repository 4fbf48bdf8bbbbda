"""The dashboard's few writes, shared by the pages and the JSON API.

Each is a plain Kubernetes API change that `kubectl` shows: run now sets the flow's
``activedataflow.io/run-now`` annotation (what `adf trigger` does; the operator creates the run
named by :func:`adf_operator.names.manual_run_name` and removes the annotation), suspend and resume
patch ``spec.suspend``, purge deletes the flow's finished DataFlowRuns. A missing flow answers None.
"""

from __future__ import annotations

from datetime import UTC, datetime

from adf_operator import names
from adf_operator.dashboard import views
from adf_operator.dashboard.kube import Cluster


def run_now_request(at: datetime) -> str:
    """The annotation value: the request time to the microsecond, so each click is a new run."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def run_now(
    cluster: Cluster, namespace: str, name: str, at: datetime
) -> views.RunNowAccepted | None:
    request = run_now_request(at)
    patch = {"metadata": {"annotations": {names.RUN_NOW: request}}}
    if await cluster.patch_flow(namespace, name, patch) is None:
        return None
    return views.RunNowAccepted(
        namespace=namespace, flow=name, request=request, run=names.manual_run_name(name, request)
    )


async def set_suspended(
    cluster: Cluster, namespace: str, name: str, suspend: bool
) -> views.FlowSummary | None:
    flow = await cluster.patch_flow(namespace, name, {"spec": {"suspend": suspend}})
    return None if flow is None else views.flow_summary(flow, {})


async def purge(cluster: Cluster, namespace: str, name: str) -> views.Purged | None:
    """Delete the flow's runs in phase Succeeded, Failed or Cancelled."""
    if await cluster.get_flow(namespace, name) is None:
        return None
    doomed = views.finished(views.runs_of(name, await cluster.list_runs(namespace)))
    for run in doomed:
        await cluster.delete_run(namespace, run)
    return views.Purged(namespace=namespace, flow=name, deleted=doomed)
