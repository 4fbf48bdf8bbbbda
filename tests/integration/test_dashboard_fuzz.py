"""Fuzz the JSON API with schemathesis against a real server on 127.0.0.1 backed by the dev
control plane: no 5xx, every response conforms to the OpenAPI document the server publishes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adf_operator.heartbeat.security import FailureLimiter
from devcluster.controlplane import ControlPlane
from devcluster.pytest_plugin import Kubectl
from tests.unit.dashboard.dashboard_support import (
    TOKEN,
    build_app,
    flow_manifest,
    kube_api_client,
    run_manifest,
    serve,
)

pytestmark = pytest.mark.integration
ST = Path(sys.executable).with_name("st")


@pytest.fixture
def base(control_plane: ControlPlane) -> Iterator[str]:
    # The fuzzer sends wrong tokens on purpose (ignored_auth): no brake, or it would see only 429s.
    limiter = FailureLimiter(limit=1_000_000)
    app = build_app(kube_api_client(control_plane.kubeconfig_path), limiter=limiter)
    with serve(app) as url:
        yield url


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    base: str, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubectl.apply(flow_manifest("product-sync", namespace))
    kubectl.apply(run_manifest("product-sync-1", namespace, "product-sync"))
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [
            str(ST),
            "run",
            f"{base}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            "all",
            "--max-examples",
            "60",
            "--seed",
            "7",
            "--generation-database",
            "none",
            "--workers",
            "2",
            "--request-timeout",
            "60",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        cwd=tmp_path,  # schemathesis keeps state in ./.schemathesis
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(result.stdout[result.stdout.rfind("Test cases:") :])  # counts, shown with -rP
    assert report.exists() and "testcase" in report.read_text()
