"""Helpers of the dashboard tests: the heartbeat app with the dashboard mounted, served for real on
127.0.0.1 in a background thread (so synchronous clients — requests, schemathesis, a browser — can
use it), and always stopped."""

from __future__ import annotations

import asyncio
import json
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
from devcluster.pytest_plugin import Kubectl

TOKEN = "dashboard-test-token-0123456789"


def build_app(
    api_client: client.ApiClient,
    *,
    read_only_open: bool = False,
    namespaces: tuple[str, ...] = (),
    limiter: FailureLimiter | None = None,
    token_value: str = TOKEN,
) -> web.Application:
    """The heartbeat service as the CLI builds it, with the dashboard mounted on it."""
    token = TokenSource(value=token_value)
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


def set_status(kubectl: Kubectl, namespace: str, run: str, status: dict[str, Any]) -> None:
    kubectl.run(
        "patch",
        "dataflowrun",
        run,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def seed_shop(kubectl: Kubectl, namespace: str) -> str:
    """A flow with three runs (succeeded, failed, running) and the flow's status pointing at the
    newest; returns the namespace."""
    kubectl.apply(flow_manifest("product-sync", namespace))
    kubectl.apply(flow_manifest("idle-flow", namespace, schedule={"every": "10m"}, suspend=True))
    runs = {
        "product-sync-1": {
            "phase": "Succeeded",
            "rowsRead": 120,
            "rowsWritten": 118,
            "rowsSkipped": 2,
            "rowsFailed": 0,
            "startTime": "2026-01-01T10:00:00Z",
            "completionTime": "2026-01-01T10:01:30Z",
            "duration": "1m30s",
            "cursorStart": "2025-12-31T00:00:00Z",
            "cursorEnd": "2026-01-01T09:59:00Z",
            "message": "copied 118 rows",
        },
        "product-sync-2": {
            "phase": "Failed",
            "rowsRead": 10,
            "rowsWritten": 0,
            "rowsFailed": 10,
            "startTime": "2026-01-01T10:05:00Z",
            "completionTime": "2026-01-01T10:05:20Z",
            "exitCode": 4,
            "message": f"cannot connect to postgresql://etl:{SINK_PASSWORD}@db/w",
        },
        "product-sync-3": {"phase": "Running", "startTime": "2026-01-01T10:10:00Z"},
    }
    for name, status in runs.items():
        kubectl.apply(run_manifest(name, namespace, "product-sync"))
        set_status(kubectl, namespace, name, status)
    kubectl.run(
        "patch",
        "dataflow",
        "product-sync",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "lastRunName": "product-sync-3",
                    "lastRunPhase": "Running",
                    "lastRunTime": "2026-01-01T10:10:00Z",
                    "lastSuccessfulTime": "2026-01-01T10:01:30Z",
                    "nextRunTime": "2099-01-01T00:00:00Z",
                    "lastError": f"cannot connect to postgresql://etl:{SINK_PASSWORD}@db/w",
                }
            }
        ),
    )
    return namespace
