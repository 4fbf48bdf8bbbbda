"""Helpers of the dashboard tests: the heartbeat app with the dashboard mounted, served for real on
127.0.0.1 in a background thread (so synchronous clients — requests, schemathesis, a browser — can
use it), and always stopped."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from aiohttp import web
from kubernetes import client, config

from adf_operator import dashboard
from adf_operator.heartbeat.app import Settings, create_app
from adf_operator.heartbeat.kube import KubeFlowStore
from adf_operator.heartbeat.security import FailureLimiter, TokenSource
from adf_operator.names import LABEL_FLOW

TOKEN = "dashboard-test-token-0123456789"


def build_app(
    api_client: client.ApiClient,
    *,
    read_only_open: bool = False,
    namespaces: tuple[str, ...] = (),
    limiter: FailureLimiter | None = None,
) -> web.Application:
    """The heartbeat service as the CLI builds it, with the dashboard mounted on it."""
    token = TokenSource(value=TOKEN)
    settings = Settings(token=token, limiter=limiter or FailureLimiter())
    app = create_app(KubeFlowStore(client.CustomObjectsApi(api_client), namespaces), settings)
    dashboard.setup(
        app,
        cluster=dashboard.Cluster(api_client, namespaces),
        token=token,
        read_only_open=read_only_open,
        limiter=settings.limiter,
    )
    return app


@contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port); yields the base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dashboard-server", daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(base: str, session: requests.Session, token: str = TOKEN) -> requests.Response:
    """Sign in through the form, as a person does."""
    page = session.get(f"{base}/dashboard/login", timeout=30)
    return session.post(
        f"{base}/dashboard/login",
        data={"csrf_token": csrf_of(page.text), "token": token, "next": "/dashboard/"},
        allow_redirects=False,
        timeout=30,
    )


def kube_api_client(kubeconfig: Path) -> client.ApiClient:
    """An API client for the cluster of a kubeconfig file (the devcluster's in tests)."""
    configuration = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def flow_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A valid DataFlow: source URL from a Secret, sink URL a literal with a password in it."""
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {
                "sql": {
                    "url": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
                    "table": "products",
                    "cursor": {"column": "updated_at", "tieBreaker": "id"},
                }
            },
            "transform": [{"rename": {"id": "product_id"}}],
            "sink": {
                "sql": {
                    "url": {"value": f"postgresql+psycopg://etl:{SINK_PASSWORD}@db/warehouse"},
                    "table": "product_exports",
                    "mode": "upsert",
                    "keys": ["product_id"],
                }
            },
            "schedule": {"cron": "*/5 * * * *", "timeZone": "Europe/Berlin"},
            **spec,
        },
    }


SINK_PASSWORD = "pw-never-shown-42"


def run_manifest(name: str, namespace: str, flow: str) -> dict[str, Any]:
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlowRun",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_FLOW: flow}},
        "spec": {"dataFlowRef": {"name": flow}, "trigger": "manual"},
    }
