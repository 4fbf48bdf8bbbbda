"""The heartbeat service (aiohttp): ``POST /heartbeat``, ``/healthz``, ``/readyz``, ``/metrics``.

``POST /heartbeat`` checks, in this order: the client address against the allow-list (403), the
auth-failure brake for that address (429), the bearer token (401), the body — empty, or a JSON
object with an optional ``"dryRun": true`` — (413 over the size limit, 400 malformed); then it
marks the due flows (:mod:`adf_operator.heartbeat.due`) and answers
``{"flowsDue", "flowsTriggered", "flowsSkipped", "flowsFailed", "flowsPending", "timestamp"}``
within ``answer_within`` seconds (patches still in flight then go on in the background). Every
error is ``{"error": {"code", "message"}}``; a 500 says nothing of the cause, which goes to the
log. The token never reaches a log line. Pings are served one at a time per process: a second one
waits, then skips the flows already marked or still being marked (idempotent either way;
serialising keeps the API load flat).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adf_operator.heartbeat.due import FlowStore, Marker
from adf_operator.heartbeat.metrics import Metrics
from adf_operator.heartbeat.security import AddressPolicy, FailureLimiter, TokenSource

log = logging.getLogger("adf.heartbeat")

MAX_BODY = 16 * 1024
ANSWER_WITHIN = 1.0  # seconds from the request; patches still in flight go on in the background
READY_TIMEOUT = 5.0
Clock = Callable[[], datetime]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "too_many_requests",
    500: "internal",
    503: "not_ready",
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


@dataclass
class Settings:
    """Everything a heartbeat app needs besides the flow store."""

    token: TokenSource
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    max_body: int = MAX_BODY
    patch_concurrency: int = 16
    answer_within: float | None = ANSWER_WITHIN
    clock: Clock = field(default=lambda: datetime.now(UTC))


class Refused(Exception):
    """A ping turned away with a status, a stable code for clients and metrics, and a message."""

    def __init__(
        self, status: int, result: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.result, self.message = status, result, message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: Any = None) -> web.Response:
    body = {"error": {"code": _CODES.get(status, "error"), "message": message}}
    return web.json_response(body, status=status, headers=headers)


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", FlowStore)
METRICS = web.AppKey("metrics", Metrics)
PING_LOCK = web.AppKey("ping_lock", asyncio.Lock)
MARKER = web.AppKey("marker", Marker)


def create_app(store: FlowStore, settings: Settings) -> web.Application:
    """The heartbeat application; serve it with aiohttp's runner or test client."""
    app = web.Application(middlewares=[_json_errors], client_max_size=settings.max_body)
    app[SETTINGS], app[STORE], app[METRICS] = settings, store, Metrics()
    app[PING_LOCK] = asyncio.Lock()
    outcomes = app[METRICS].flows
    app[MARKER] = Marker(store, settings.patch_concurrency, lambda o: outcomes.labels(o).inc())
    app.on_cleanup.append(_drain)
    app.router.add_post("/heartbeat", heartbeat)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def _drain(app: web.Application) -> None:
    """Let the patches still in flight land before the process exits."""
    await app[MARKER].drain()


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413) as JSON; anything unexpected as a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k in _KEPT_HEADERS}
        return error_response(exc.status, exc.reason, kept)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; the cause is in the heartbeat's log")


async def heartbeat(request: web.Request) -> web.Response:
    """Authenticate, then mark the due flows and report the counts."""
    settings, metrics = request.app[SETTINGS], request.app[METRICS]
    started = time.perf_counter()
    address = request.remote or "unknown"
    try:
        address = _admit(request, settings, metrics)
        dry_run = await _read_body(request, settings.max_body)
        async with request.app[PING_LOCK]:
            result = await request.app[MARKER].ping(
                settings.clock(), dry_run=dry_run, answer_within=settings.answer_within
            )
    except Refused as refused:
        metrics.pings.labels(refused.result).inc()
        log.warning("ping from %s refused: %s %s", address, refused.status, refused.message)
        return error_response(refused.status, refused.message, refused.headers)
    except Exception:
        metrics.pings.labels("error").inc()
        log.exception("ping from %s failed", address)
        return error_response(500, "internal error; the cause is in the heartbeat's log")
    elapsed = time.perf_counter() - started
    metrics.pings.labels("ok").inc()
    metrics.latency.observe(elapsed)
    metrics.record_flows(result)
    log.info(
        "ping from %s: %d due, %d triggered, %d skipped, %d failed, %d pending in %.3fs%s",
        address,
        result.due,
        result.triggered,
        result.skipped,
        result.failed,
        result.pending,
        elapsed,
        " (dry run)" if dry_run else "",
    )
    return web.json_response(result.to_json())


def _admit(request: web.Request, settings: Settings, metrics: Metrics) -> str:
    """Address, allow-list, brake, token; returns the client address."""
    try:
        address = settings.policy.client_address(
            request.remote, request.headers.get("X-Forwarded-For")
        )
    except ValueError as exc:
        raise Refused(400, "bad_request", f"X-Forwarded-For: {exc}") from None
    if not settings.policy.allowed(address):
        raise Refused(403, "forbidden", f"address {address} is not allowed")
    wait = settings.limiter.retry_after(address)
    if wait is not None:
        message = "too many failed authentications from this address; retry later"
        raise Refused(429, "rate_limited", message, {"Retry-After": str(max(1, round(wait)))})
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    reason = None
    if scheme.lower() != "bearer" or not token.strip():
        reason, message = "missing", "an Authorization: Bearer <token> header is required"
    elif not settings.token.matches(token.strip()):
        reason, message = "invalid", "the token is not valid"
    if reason is not None:
        settings.limiter.record_failure(address)
        metrics.auth_failures.labels(reason).inc()
        raise Refused(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="adf"'})
    return address


async def _read_body(request: web.Request, limit: int) -> bool:
    """The optional JSON object body; returns dryRun."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, "payload_too_large", f"the body is larger than {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, "payload_too_large", f"the body is larger than {limit} bytes") from None
    if not raw.strip():
        return False
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(400, "bad_request", f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # json.loads recurses per nesting level; under the size limit too
        raise Refused(400, "bad_request", "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - {"dryRun"})
    if unknown:
        raise Refused(400, "bad_request", f"unknown field(s) {', '.join(unknown)}; known: dryRun")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise Refused(400, "bad_request", "dryRun: must be true or false")
    return dry_run


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the API server answers a DataFlow list (reachable, CRD installed, RBAC ok)."""
    try:
        await asyncio.wait_for(request.app[STORE].check(), READY_TIMEOUT)
    except Exception as exc:
        log.warning("not ready: the Kubernetes API cannot list DataFlows (%s)", type(exc).__name__)
        log.debug("readiness check failed", exc_info=True)
        return error_response(503, "the Kubernetes API server cannot be reached")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": Metrics.content_type})
