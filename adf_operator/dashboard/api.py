"""The JSON API under ``/api/v1`` (an aiohttp sub-application), described by ``openapi.json``.

Every error is ``{"error": {"code", "message"}}``; the Kubernetes API's refusals and outages
become 502 with the API's status and reason (never its body, which can echo request data); anything
unexpected is a 500 that names nothing but the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from adf_operator.dashboard import actions, openapi, views
from adf_operator.dashboard.auth import Guard, Rejected
from adf_operator.dashboard.kube import Cluster, ClusterError

log = logging.getLogger("adf.dashboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLUSTER = web.AppKey("cluster", Cluster)
GUARD = web.AppKey("guard", Guard)
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    500: "internal",
    502: "bad_gateway",
}
_NAMESPACE = re.compile(openapi.NAMESPACE_PATTERN)
_NAME = re.compile(openapi.NAME_PATTERN)


class Problem(Exception):
    """A request answered with an error status, a stable code and a message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": _CODES.get(status, "error"), "message": message}}
    return web.json_response(body, status=status, headers=headers)


def create_api(cluster: Cluster, guard: Guard) -> web.Application:
    """The API sub-application; mount it at /api/v1."""
    api = web.Application(middlewares=[_errors_and_auth])
    api[CLUSTER], api[GUARD] = cluster, guard
    flow = "/dataflows/{namespace}/{name}"
    api.router.add_get("/openapi.json", openapi_document)
    api.router.add_get("/dataflows", list_flows)
    api.router.add_get(flow, get_flow)
    api.router.add_get(flow + "/runs", list_runs)
    api.router.add_post(flow + "/run", run_now)
    api.router.add_post(flow + "/suspend", suspend)
    api.router.add_post(flow + "/resume", resume)
    api.router.add_post(flow + "/purge", purge)
    return api


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[GUARD]
    try:
        if request.method not in ("GET", "HEAD") or not (
            guard.read_only_open or request.path.endswith("/openapi.json")
        ):
            guard.check_bearer(request)
        return await handler(request)
    except Rejected as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="adf"'} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(round(exc.retry_after))
        return error(exc.status, exc.message, headers)
    except Problem as exc:
        return error(exc.status, exc.message, exc.headers)
    except ClusterError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return error(502, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        return error(exc.status, exc.reason, kept)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error; the cause is in the service's log")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json", by_alias=True), status=status)


def flow_key(namespace: str, name: str) -> tuple[str, str]:
    """Validated (namespace, name); Problem 400 naming the malformed one."""
    if len(namespace) > 63 or not _NAMESPACE.match(namespace):
        raise Problem(400, f"namespace {namespace[:80]!r} is not a valid namespace name")
    if len(name) > 253 or not _NAME.match(name):
        raise Problem(400, f"name {name[:80]!r} is not a valid DataFlow name")
    return namespace, name


def _key(request: web.Request) -> tuple[str, str]:
    return flow_key(request.match_info["namespace"], request.match_info["name"])


def names(namespace: str, flow: str) -> dict[str, str]:
    """Log-record fields, so JSON log lines carry the flow (see adf_operator.logsetup)."""
    return {"namespace": namespace, "flow": flow}


def not_found(namespace: str, name: str) -> Problem:
    return Problem(404, f"DataFlow {name} not found in namespace {namespace}")


def list_filters(query: Any) -> tuple[str | None, str | None]:
    """The ``namespace`` and ``phase`` filters of the flows list; Problem 400 when malformed
    (an empty value included: leave the parameter out to mean "any")."""
    namespace, phase = query.get("namespace"), query.get("phase")
    if namespace is not None:
        flow_key(namespace, "x")
    if phase is not None and phase not in (*views.PHASES, "None"):
        choices = ", ".join((*views.PHASES, "None"))
        raise Problem(400, f"phase {phase[:40]!r} is not one of {choices}")
    return namespace, phase


async def flow_summaries(
    cluster: Cluster, namespace: str | None, phase: str | None
) -> list[views.FlowSummary]:
    """The flows list, filtered; one list call for flows and one for runs per namespace."""
    flows = await cluster.list_flows(namespace)
    runs: dict[str, dict[str, Any]] = {}
    for run in await cluster.list_runs(namespace):
        runs.setdefault(run["metadata"]["namespace"], {})[run["metadata"]["name"]] = run
    summaries = [
        views.flow_summary(flow, runs.get(flow["metadata"]["namespace"], {})) for flow in flows
    ]
    return views.sort_flows([s for s in summaries if views.matches_phase(s, phase)])


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(request.app[GUARD].read_only_open))


async def list_flows(request: web.Request) -> web.Response:
    namespace, phase = list_filters(request.query)
    items = await flow_summaries(request.app[CLUSTER], namespace, phase)
    return _json(views.FlowList(items=items))


async def get_flow(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    cluster = request.app[CLUSTER]
    flow = await cluster.get_flow(namespace, name)
    if flow is None:
        raise not_found(namespace, name)
    runs = {r["metadata"]["name"]: r for r in await cluster.list_runs(namespace)}
    return _json(views.flow_detail(flow, runs))


async def list_runs(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    cluster = request.app[CLUSTER]
    if await cluster.get_flow(namespace, name) is None:
        raise not_found(namespace, name)
    runs = views.runs_of(name, await cluster.list_runs(namespace))
    return _json(views.RunList(items=[views.run_view(r) for r in runs]))


async def run_now(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    accepted = await actions.run_now(request.app[CLUSTER], namespace, name, datetime.now(UTC))
    if accepted is None:
        raise not_found(namespace, name)
    log.info(
        "%s/%s run now requested through the API: run %s",
        namespace,
        name,
        accepted.run,
        extra={"namespace": namespace, "flow": name, "run": accepted.run},
    )
    return _json(accepted, status=202)


async def _suspend(request: web.Request, suspend: bool) -> web.Response:
    namespace, name = _key(request)
    flow = await actions.set_suspended(request.app[CLUSTER], namespace, name, suspend)
    if flow is None:
        raise not_found(namespace, name)
    done = "suspended" if suspend else "resumed"
    log.info("%s/%s %s through the API", namespace, name, done, extra=names(namespace, name))
    return _json(flow)


async def suspend(request: web.Request) -> web.Response:
    return await _suspend(request, True)


async def resume(request: web.Request) -> web.Response:
    return await _suspend(request, False)


async def purge(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    purged = await actions.purge(request.app[CLUSTER], namespace, name)
    if purged is None:
        raise not_found(namespace, name)
    log.info(
        "%s/%s purged %d finished runs through the API",
        namespace,
        name,
        len(purged.deleted),
        extra=names(namespace, name),
    )
    return _json(purged)
