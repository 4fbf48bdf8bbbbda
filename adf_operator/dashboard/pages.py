"""The server-rendered pages under ``/dashboard`` (an aiohttp sub-application, Jinja2 templates).

No JavaScript: lists refresh themselves with a meta refresh, actions are plain forms that POST and
redirect back (303) with a notice. Reading is open when the setting says so, else it needs a
signed-in session; acting always does, plus the session's CSRF token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from adf_operator.dashboard import actions, api, chart, views
from adf_operator.dashboard.auth import CSRF_FIELD, Guard, Rejected, Session
from adf_operator.dashboard.kube import Cluster, ClusterError

log = logging.getLogger("adf.dashboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = "/dashboard"
REFRESH_SECONDS = 15
STATIC = Path(__file__).parent / "static"
SESSION = web.RequestKey("session", Session)
ACTIONS = ("run", "suspend", "resume", "purge")
_SAFE_NEXT = re.compile(r"^/dashboard/[A-Za-z0-9/_.?=&%-]*$")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_NOTICES = {
    "run": "Run requested: the operator creates run {run}.",
    "suspend": "Suspended: no new runs are scheduled.",
    "resume": "Resumed: runs are scheduled again.",
    "purge": "Deleted {count} finished run(s).",
    "signed-in": "Signed in.",
}

ENV = Environment(
    loader=PackageLoader("adf_operator.dashboard", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["rel"] = views.relative
ENV.filters["num"] = lambda n: "" if n is None else f"{n:,}"
ENV.globals.update(prefix=PREFIX, csrf_field=CSRF_FIELD, phases=views.PHASES)


class PageError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def create_pages(cluster: Cluster, guard: Guard) -> web.Application:
    """The pages sub-application; mount it at /dashboard."""
    pages = web.Application(middlewares=[_session_and_errors])
    pages[api.CLUSTER], pages[api.GUARD] = cluster, guard
    pages.router.add_get("/", flows_page)
    pages.router.add_get("/flows/{namespace}/{name}", flow_page)
    pages.router.add_get("/runs/{namespace}/{name}", run_page)
    pages.router.add_get("/login", login_page)
    pages.router.add_post("/login", login)
    pages.router.add_post("/logout", logout)
    pages.router.add_post("/flows/{namespace}/{name}/{action}", flow_action)
    pages.router.add_static("/static", STATIC)
    return pages


def _session(request: web.Request) -> Session:
    return request[SESSION]


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    guard = request.app[api.GUARD]
    session = _session(request)
    text = ENV.get_template(template).render(
        session=session,
        read_only_open=guard.read_only_open,
        now=datetime.now(UTC),
        path=request.path_qs,
        **context,
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=_HEADERS)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_HEADERS})


@web.middleware
async def _session_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load or start the session; enforce sign-in and CSRF; render errors as pages."""
    guard = request.app[api.GUARD]
    stored = guard.load(request)
    request[SESSION] = stored or Session.fresh()
    open_route = request.path.startswith(f"{PREFIX}/static/") or request.path == f"{PREFIX}/login"
    try:
        if request.method == "POST":
            form = await request.post()
            if not guard.csrf_matches(stored, form.get(CSRF_FIELD)):
                raise PageError(
                    403,
                    "Form expired",
                    "The form's security token did not match your session (it may have "
                    "expired). Go back, reload the page and try again.",
                )
        if not open_route and not _session(request).signed_in:
            if request.method == "POST" and request.path != f"{PREFIX}/logout":
                raise PageError(401, "Sign-in required", "Sign in with the token to act.")
            if request.method != "POST" and not guard.read_only_open:
                return _redirect(f"{PREFIX}/login?" + urlencode({"next": request.path_qs}))
        response = await handler(request)
    except PageError as exc:
        response = render(
            request, "error.html", status=exc.status, title=exc.title, message=exc.message
        )
    except ClusterError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        response = render(
            request, "error.html", status=502, title="Kubernetes API error", message=str(exc)
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = render(request, "error.html", status=exc.status, title=exc.reason, message="")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = render(
            request,
            "error.html",
            status=500,
            title="Internal error",
            message="The cause is in the service's log.",
        )
    if stored != _session(request):
        guard.store(request, response, _session(request))
    return response


def _key(request: web.Request) -> tuple[str, str]:
    try:
        return api.flow_key(request.match_info["namespace"], request.match_info["name"])
    except api.Problem as exc:
        raise PageError(400, "Bad address", exc.message) from None


def _notice(request: web.Request) -> str | None:
    done = request.query.get("done", "")
    template = _NOTICES.get(done)
    if template is None:
        return None
    run = request.query.get("run", "")
    count = request.query.get("count", "0")
    return template.format(run=run[:253], count=count if count.isdigit() else "0")


async def flows_page(request: web.Request) -> web.Response:
    try:
        # the filter form sends empty values for "any"
        namespace, phase = api.list_filters({k: v for k, v in request.query.items() if v})
    except api.Problem as exc:
        raise PageError(400, "Bad filter", exc.message) from None
    everything = await api.flow_summaries(request.app[api.CLUSTER], None, None)
    namespaces = sorted({f.namespace for f in everything})  # the filter's choices
    flows = [
        f for f in everything if namespace in (None, f.namespace) and views.matches_phase(f, phase)
    ]
    return render(
        request,
        "flows.html",
        flows=flows,
        namespaces=namespaces,
        namespace=namespace,
        phase=phase,
        refresh=REFRESH_SECONDS,
        notice=_notice(request),
    )


async def flow_page(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    cluster = request.app[api.CLUSTER]
    flow = await cluster.get_flow(namespace, name)
    if flow is None:
        raise PageError(404, "Not found", f"DataFlow {name} not found in namespace {namespace}.")
    all_runs = await cluster.list_runs(namespace)
    detail = views.flow_detail(flow, {r["metadata"]["name"]: r for r in all_runs})
    runs = [views.run_view(r) for r in views.runs_of(name, all_runs)]
    events = [views.event_view(e) for e in await cluster.events(namespace, "DataFlow", name)]
    return render(
        request,
        "flow.html",
        flow=detail,
        runs=runs,
        chart=chart.runs_chart(runs[:30]),
        outline=views.spec_outline(detail.spec),
        spec_yaml=yaml.safe_dump(detail.spec, sort_keys=False, allow_unicode=True),
        events=events[-20:],
        refresh=REFRESH_SECONDS,
        notice=_notice(request),
    )


async def run_page(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    cluster = request.app[api.CLUSTER]
    run_body = await cluster.get_run(namespace, name)
    if run_body is None:
        raise PageError(404, "Not found", f"DataFlowRun {name} not found in namespace {namespace}.")
    run = views.run_view(run_body)
    job = await cluster.get_job(namespace, run.job_name or name)
    pods = await cluster.run_pods(namespace, name)
    events = await cluster.events(namespace, "DataFlowRun", name)
    return render(
        request,
        "run.html",
        run=run,
        job=views.job_view(job) if job else None,
        pods=[views.pod_view(p) for p in pods],
        events=[views.event_view(e) for e in events],
        refresh=REFRESH_SECONDS if run.phase not in ("Succeeded", "Failed", "Cancelled") else None,
    )


def _next(target: object) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if isinstance(target, str) and _SAFE_NEXT.match(target) and "//" not in target:
        return target
    return f"{PREFIX}/"


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", next=_next(request.query.get("next")), error=None)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    target = _next(form.get("next"))
    token = form.get("token")
    try:
        request.app[api.GUARD].check_token(request, token if isinstance(token, str) else "")
    except Rejected as exc:
        log.warning("dashboard sign-in from %s refused: %s", request.remote, exc.message)
        return render(request, "login.html", status=exc.status, next=target, error=exc.message)
    request[SESSION] = Session.fresh(signed_in=True)  # a new CSRF token: no session fixation
    log.info("dashboard sign-in from %s", request.remote)
    return _redirect(target)


async def logout(request: web.Request) -> web.Response:
    request[SESSION] = Session.fresh()
    return _redirect(f"{PREFIX}/login")


async def flow_action(request: web.Request) -> web.Response:
    namespace, name = _key(request)
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise PageError(404, "Not found", f"There is no action {action[:40]!r}.")
    cluster = request.app[api.CLUSTER]
    query: dict[str, str] = {"done": action}
    result: Any
    if action == "run":
        result = await actions.run_now(cluster, namespace, name, datetime.now(UTC))
        query["run"] = result.run if result else ""
    elif action == "purge":
        result = await actions.purge(cluster, namespace, name)
        query["count"] = str(len(result.deleted)) if result else "0"
    else:
        result = await actions.set_suspended(cluster, namespace, name, action == "suspend")
    if result is None:
        raise PageError(404, "Not found", f"DataFlow {name} not found in namespace {namespace}.")
    log.info(
        "%s/%s %s from the dashboard (%s)",
        namespace,
        name,
        action,
        request.remote,
        extra=api.names(namespace, name),
    )
    return _redirect(f"{PREFIX}/flows/{quote(namespace)}/{quote(name)}?{urlencode(query)}")
