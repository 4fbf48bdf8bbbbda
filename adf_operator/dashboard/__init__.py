"""The management dashboard and its JSON API, served by the heartbeat service.

``setup(app, cluster=…, token=…)`` mounts the pages at ``/dashboard/`` and the API at ``/api/v1/``
(with ``/api/v1/openapi.json``) on an aiohttp application, and sends ``/`` to the dashboard.
"""

from __future__ import annotations

from aiohttp import web

from adf_operator.dashboard.api import create_api
from adf_operator.dashboard.auth import Guard
from adf_operator.dashboard.kube import Cluster
from adf_operator.dashboard.pages import PREFIX, create_pages
from adf_operator.heartbeat.security import FailureLimiter, TokenSource

__all__ = ["Cluster", "setup"]


def setup(
    app: web.Application,
    *,
    cluster: Cluster,
    token: TokenSource,
    read_only_open: bool = False,
    session_secret: bytes | None = None,
    limiter: FailureLimiter | None = None,
) -> None:
    """Mount the dashboard on `app`.

    `token` is the heartbeat's; `read_only_open` lets anyone read the pages and the API's GETs
    (actions still need the token); `session_secret` signs session cookies (derived from the
    token when None); `limiter` brakes wrong tokens per address (pass the heartbeat's to share it).
    """
    guard = Guard(token, read_only_open=read_only_open, secret=session_secret, limiter=limiter)
    app.add_subapp("/api/v1", create_api(cluster, guard))
    app.add_subapp(PREFIX, create_pages(cluster, guard))
    app.router.add_get("/", _to_dashboard)
    app.router.add_get(PREFIX, _to_dashboard)


async def _to_dashboard(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": f"{PREFIX}/"})
