"""The dashboard and its JSON API against the real control plane: DataFlows, DataFlowRuns, a Job
and Events created through the API server, pages and API answers checked, actions checked with
kubectl (they are plain API changes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from adf_operator import names
from devcluster.controlplane import ControlPlane
from devcluster.pytest_plugin import Kubectl
from tests.unit.dashboard.dashboard_support import (
    SINK_PASSWORD,
    TOKEN,
    build_app,
    csrf_of,
    kube_api_client,
    seed_shop,
    serve,
    sign_in,
)

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def base(control_plane: ControlPlane) -> Iterator[str]:
    with serve(build_app(kube_api_client(control_plane.kubeconfig_path))) as url:
        yield url


@pytest.fixture
def shop(kubectl: Kubectl, namespace: str) -> str:
    return seed_shop(kubectl, namespace)


def api(base: str, path: str, method: str = "GET") -> requests.Response:
    return requests.request(method, f"{base}/api/v1{path}", headers=AUTH, timeout=60)


def test_api_lists_flows_with_last_run_schedule_and_masked_error(base: str, shop: str) -> None:
    answer = api(base, f"/dataflows?namespace={shop}")
    assert answer.status_code == 200
    flows = {f["name"]: f for f in answer.json()["items"]}
    assert set(flows) == {"idle-flow", "product-sync"}
    sync = flows["product-sync"]
    assert sync["schedule"] == "Every 5 minutes (Europe/Berlin)"
    assert sync["lastRun"] == {
        "name": "product-sync-3",
        "phase": "Running",
        "time": "2026-01-01T10:10:00Z",
        "rowsRead": None,
        "rowsWritten": None,
    }
    assert sync["lastError"] == "cannot connect to postgresql://etl:***@db/w"
    assert (flows["idle-flow"]["suspended"], flows["idle-flow"]["schedule"]) == (
        True,
        "Every 10 minutes",
    )
    running = api(base, f"/dataflows?namespace={shop}&phase=Running").json()["items"]
    assert [f["name"] for f in running] == ["product-sync"]
    never = api(base, f"/dataflows?namespace={shop}&phase=None").json()["items"]
    assert [f["name"] for f in never] == ["idle-flow"]
    assert SINK_PASSWORD not in answer.text


def test_api_flow_detail_and_runs(base: str, shop: str) -> None:
    detail = api(base, f"/dataflows/{shop}/product-sync")
    assert detail.status_code == 200
    spec = detail.json()["spec"]
    assert spec["source"]["sql"]["url"] == {"secretKeyRef": {"name": "shop-db", "key": "url"}}
    assert spec["sink"]["sql"]["url"] == {"value": "postgresql+psycopg://etl:***@db/warehouse"}
    assert SINK_PASSWORD not in detail.text
    runs = api(base, f"/dataflows/{shop}/product-sync/runs").json()["items"]
    assert [r["name"] for r in runs] == ["product-sync-3", "product-sync-2", "product-sync-1"]
    first = runs[2]
    assert (first["rowsRead"], first["rowsWritten"], first["rowsSkipped"]) == (120, 118, 2)
    assert (first["durationSeconds"], first["cursorEnd"]) == (90.0, "2026-01-01T09:59:00Z")
    assert runs[1]["exitCode"] == 4 and SINK_PASSWORD not in runs[1]["message"]
    missing = api(base, f"/dataflows/{shop}/no-such-flow")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not_found",
        "message": f"DataFlow no-such-flow not found in namespace {shop}",
    }


def test_api_actions_are_plain_kubernetes_changes(
    base: str, shop: str, kubectl: Kubectl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adf.dashboard")
    accepted = api(base, f"/dataflows/{shop}/product-sync/run", "POST")
    assert accepted.status_code == 202
    body = accepted.json()
    flow = kubectl.get("dataflow", "product-sync", "-n", shop)
    request = flow["metadata"]["annotations"][names.RUN_NOW]
    assert body == {
        "namespace": shop,
        "flow": "product-sync",
        "request": request,
        "run": names.manual_run_name("product-sync", request),
    }
    suspended = api(base, f"/dataflows/{shop}/product-sync/suspend", "POST")
    assert suspended.status_code == 200 and suspended.json()["suspended"] is True
    assert kubectl.get("dataflow", "product-sync", "-n", shop)["spec"]["suspend"] is True
    api(base, f"/dataflows/{shop}/product-sync/resume", "POST")
    assert kubectl.get("dataflow", "product-sync", "-n", shop)["spec"]["suspend"] is False
    purged = api(base, f"/dataflows/{shop}/product-sync/purge", "POST")
    assert purged.json()["deleted"] == ["product-sync-2", "product-sync-1"]
    left = kubectl.get("dataflowruns", "-n", shop)["items"]
    assert [r["metadata"]["name"] for r in left] == ["product-sync-3"]
    assert api(base, f"/dataflows/{shop}/ghost/run", "POST").status_code == 404
    logged = [r for r in caplog.records if r.name == "adf.dashboard"]
    assert [(r.namespace, r.flow) for r in logged] == [(shop, "product-sync")] * 4
    assert logged[0].run == body["run"]
    assert TOKEN not in caplog.text


def test_pages_show_flows_flow_and_run(
    base: str, shop: str, kubectl: Kubectl, wait_for: Callable[..., Any]
) -> None:
    kubectl.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "product-sync-1",
                "namespace": shop,
                "labels": {names.LABEL_RUN: "product-sync-1"},
            },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {names.LABEL_RUN: "product-sync-1"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "adf",
                                "image": "active-data-flow:test",
                                "command": ["adf", "--version"],
                            }
                        ],
                    },
                },
            },
        }
    )
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "product-sync-1.succeeded", "namespace": shop},
            "involvedObject": {
                "apiVersion": names.API,
                "kind": "DataFlowRun",
                "name": "product-sync-1",
                "namespace": shop,
            },
            "type": "Normal",
            "reason": "Succeeded",
            "message": "run product-sync-1 succeeded",
            "source": {"component": "adf-operator"},
        }
    )
    wait_for(
        lambda: kubectl.get("job", "product-sync-1", "-n", shop).get("status", {}).get("succeeded"),
        timeout=60,
        what="the Job to complete",
    )
    session = requests.Session()
    sign_in(base, session)
    listing = session.get(f"{base}/dashboard/?namespace={shop}", timeout=60)
    assert listing.status_code == 200
    assert "Every 5 minutes (Europe/Berlin)" in listing.text
    assert f'href="/dashboard/flows/{shop}/product-sync"' in listing.text
    assert SINK_PASSWORD not in listing.text
    flow = session.get(f"{base}/dashboard/flows/{shop}/product-sync", timeout=60)
    assert flow.status_code == 200
    assert "from Secret shop-db, key url" in flow.text
    assert "postgresql+psycopg://etl:***@db/warehouse" in flow.text
    assert SINK_PASSWORD not in flow.text
    assert flow.text.count('<rect class="bar') == 3
    assert "Run now" in flow.text and "Delete finished runs" in flow.text
    run = session.get(f"{base}/dashboard/runs/{shop}/product-sync-1", timeout=60)
    assert run.status_code == 200
    for text in (
        "1m30s",
        "118",
        "2026-01-01T09:59:00Z",
        "copied 118 rows",
        "run product-sync-1 succeeded",
        "1 succeeded",
        "terminated Completed",
    ):
        assert text in run.text, text
    missing = session.get(f"{base}/dashboard/runs/{shop}/nope", timeout=60)
    assert missing.status_code == 404 and "not found" in missing.text


def test_page_actions_redirect_with_a_notice(base: str, shop: str, kubectl: Kubectl) -> None:
    session = requests.Session()
    sign_in(base, session)
    page = session.get(f"{base}/dashboard/flows/{shop}/product-sync", timeout=60)
    done = session.post(
        f"{base}/dashboard/flows/{shop}/product-sync/suspend",
        data={"csrf_token": csrf_of(page.text)},
        timeout=60,
    )
    assert done.status_code == 200 and "Suspended: no new runs are scheduled." in done.text
    assert kubectl.get("dataflow", "product-sync", "-n", shop)["spec"]["suspend"] is True
    assert "Resume" in done.text


def test_a_dashboard_for_some_namespaces_sees_nothing_else(
    control_plane: ControlPlane, kubectl: Kubectl, shop: str
) -> None:
    app = build_app(kube_api_client(control_plane.kubeconfig_path), namespaces=("elsewhere",))
    with serve(app) as url:
        assert api(url, "/dataflows").json() == {"items": []}
        assert api(url, f"/dataflows?namespace={shop}").json() == {"items": []}
        assert api(url, f"/dataflows/{shop}/product-sync").status_code == 404
        assert api(url, f"/dataflows/{shop}/product-sync/suspend", "POST").status_code == 404
    assert kubectl.get("dataflow", "product-sync", "-n", shop)["spec"].get("suspend") is not True
