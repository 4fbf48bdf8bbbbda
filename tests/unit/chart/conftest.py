"""Render the Helm chart with the real helm binary and hand the tests plain objects.

No cluster is involved: `helm template` with the dev control plane's Kubernetes version, and
`helm lint --strict`. The binary is the one devcluster/install-tools.sh pins and installs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, NAMESPACE, RELEASE, Objects

from devcluster.controlplane import binary_paths, versions


def helm_binary() -> Path:
    helm = binary_paths()["helm"]
    if not helm.exists():
        pytest.skip(f"{helm} is missing: run `make cluster-build` to install helm")
    return helm


def run_helm(
    *args: str, values: dict[str, Any] | None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run helm against the chart with a values file; the result, whatever the exit code."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values or {}))
    return subprocess.run(
        [str(helm_binary()), *args, "-f", str(values_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def template_args() -> list[str]:
    return ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", versions()["K8S_VERSION"]]  # fmt: skip


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., Objects]:
    """render(values) -> the chart's objects (CRDs excluded); fails the test if helm refuses."""

    def _render(values: dict[str, Any] | None = None) -> Objects:
        proc = run_helm(*template_args(), values=values, tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return _render


@pytest.fixture
def helm_fails(tmp_path: Path) -> Callable[[dict[str, Any]], str]:
    """helm_fails(values) -> helm's error text; fails the test if helm accepts the values."""

    def _fails(values: dict[str, Any]) -> str:
        proc = run_helm(*template_args(), values=values, tmp_path=tmp_path)
        assert proc.returncode != 0, f"helm accepted {values}"
        return proc.stderr

    return _fails


@pytest.fixture
def lint(tmp_path: Path) -> Callable[[dict[str, Any]], subprocess.CompletedProcess[str]]:
    def _lint(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return run_helm("lint", "--strict", str(CHART), values=values, tmp_path=tmp_path)

    return _lint


@pytest.fixture
def notes(tmp_path: Path) -> Callable[..., str]:
    """notes(values) -> the rendered NOTES.txt.

    `helm template` leaves NOTES.txt out and `helm install --dry-run` needs a cluster, so a copy
    of the chart renders it through `tpl` into an object of its own.
    """
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )

    def _notes(values: dict[str, Any] | None = None) -> str:
        proc = run_helm(
            "template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--show-only", "templates/zz-notes.yaml", values=values, tmp_path=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        text: str = yaml.safe_load(proc.stdout)["notes"]
        return text

    return _notes
