"""Chart tests against the real dev control plane (devcluster/) and a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# A bare `pytest` does not put the repository root on sys.path (tests/ is not a package).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from devcluster.controlplane import ControlPlane, cache_dir, tools_bin_dir  # noqa: E402
from devcluster.pytest_plugin import (  # noqa: E402
    Kubectl,
    kubectl,
    namespace,
    pod_output,
    wait_for_fixture,
)

# Re-exported rather than listed in pytest_plugins, which pytest only honours in the rootdir's
# conftest.
__all__ = ["kubectl", "namespace", "pod_output", "wait_for_fixture"]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The dev control plane, with its state (and the tests' SQLite files) outside /tmp.

    The chart's pods mount an emptyDir at /tmp, and the pod runner maps every path under a mount
    path into the pod's own folder: a kubeconfig or a database file under /tmp would be looked
    for inside the pod's /tmp volume instead.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="e2e-", dir=cache_dir()))
    try:
        with ControlPlane(state_dir=state_dir) as cp, pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", str(cp.kubeconfig_path))
            mp.setenv("PATH", f"{tools_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
            kubectl = Kubectl(cp.kubeconfig_path)
            kubectl.run("apply", "--server-side", "-f", os.path.join(ROOT, "manifests", "crds"))
            kubectl.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
            yield cp
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def data_dir(control_plane: ControlPlane) -> Path:
    """A folder for database files that run pods open by absolute path (outside /tmp)."""
    path = control_plane.state_dir / "data" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path
