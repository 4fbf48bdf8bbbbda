"""pytest fixtures for tests against the real dev control plane.

Register with `pytest_plugins = ["devcluster.pytest_plugin"]`. The control plane is started once per
session (CRDs from manifests/crds/ applied), KUBECONFIG and PATH (kubectl, helm) point at it for the
whole session, and every test gets a fresh namespace that is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devcluster.controlplane import ControlPlane, pod_log_path, tools_bin_dir

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll predicate until it returns something truthy (returned); fail after timeout.

    Exceptions raised by the predicate count as "not yet" and the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}") from last
        time.sleep(0.1)


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; its message carries kubectl's stderr (the API server's words)."""

    def __str__(self) -> str:
        return f"kubectl {' '.join(self.cmd)} failed ({self.returncode}): {self.stderr}"


@dataclass
class Kubectl:
    """The real kubectl against the dev control plane; JSON in and out."""

    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [str(tools_bin_dir() / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, args, proc.stdout, proc.stderr)
        return proc.stdout + (proc.stderr if not check else "")

    def get(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("get", "-o", "json", *args))
        return result

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> str:
        ns = ["-n", namespace] if namespace else []
        return self.run("apply", *ns, "-f", "-", stdin=json.dumps(obj))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane for the whole session; stopped (all pids) at the end."""
    state_dir = Path(os.environ.get("ADF_DEVCLUSTER_TEST_DIR") or tmp_path_factory.mktemp("dc"))
    with ControlPlane(state_dir=state_dir) as cp, pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(cp.kubeconfig_path))
        mp.setenv("PATH", f"{tools_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
        crds = sorted((ROOT / "manifests" / "crds").glob("*.yaml"))
        if crds:
            kubectl = Kubectl(cp.kubeconfig_path)
            for crd in crds:
                kubectl.run("apply", "-f", str(crd))
            # `kubectl wait` errors out on a CRD whose conditions are not written yet: retry.
            wait_for(
                lambda: kubectl.run(
                    "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"
                ),
                timeout=90,
                what="the CRDs to be Established",
            )
        yield cp


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubeconfig_path)


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount ready), deleted after the test.

    KUBECONFIG points at this namespace's cluster for the test: a session may hold several
    control planes (a folder can override `control_plane`), and the last one started must not
    capture code that reads KUBECONFIG, such as an operator started in the test.
    """
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig_path))
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", name)
    # kube-controller-manager creates it too, but after an API server restart its watches back
    # off for up to a minute; creating it here (AlreadyExists is fine) keeps this fixture fast.
    kubectl.run("create", "serviceaccount", "default", "-n", name, check=False)
    wait_for(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", name, "-o", "name"),
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture
def pod_output(control_plane: ControlPlane) -> Callable[[str, str], str]:
    """pod_output(namespace, pod) -> what the pod's process wrote (stdout and stderr)."""

    def read(namespace: str, pod: str) -> str:
        path = pod_log_path(control_plane.state_dir, namespace, pod)
        return path.read_text(errors="replace") if path.exists() else ""

    return read
