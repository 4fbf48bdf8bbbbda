"""Every value set of the chart, and the plain install YAML, pass the API server's own checks.

`kubectl apply --dry-run=server` runs admission, schema validation and RBAC escalation checks on
the real kube-apiserver without persisting anything, so a field the API does not know, a wrong type
or a Role granting more than its creator has fails here rather than at a user's `helm install`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devcluster.controlplane import binary_paths, versions
from devcluster.pytest_plugin import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "active-data-flow"
VALUE_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
INSTALL = ROOT / "manifests" / "install" / "active-data-flow.yaml"

# The Prometheus Operator's CRD is not part of this project; this stand-in makes the ServiceMonitor
# kind known so the object itself is admitted (its fields are not checked).
SERVICE_MONITOR_CRD = yaml.safe_load("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
""")


@pytest.fixture(scope="module")
def cluster_prerequisites(kubectl: Kubectl) -> Iterator[None]:
    """The namespaces the namespaced value set watches, and the ServiceMonitor kind."""
    namespaces = yaml.safe_load((CHART / "ci" / "namespaced-values.yaml").read_text())["watch"]
    created = []
    for ns in [*namespaces["namespaces"], "active-data-flow"]:
        if "NotFound" in kubectl.run("get", "namespace", ns, check=False):
            kubectl.run("create", "namespace", ns)
            created.append(ns)
    kubectl.apply(SERVICE_MONITOR_CRD)
    kubectl.run("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
    yield
    kubectl.run("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false")
    for ns in created:
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


def server_dry_run(kubectl: Kubectl, manifest: str) -> str:
    try:
        return kubectl.run("apply", "--dry-run=server", "-f", "-", stdin=manifest)
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"the API server refused the manifest:\n{e.stderr}") from None


@pytest.mark.integration
@pytest.mark.usefixtures("cluster_prerequisites")
@pytest.mark.parametrize("values", VALUE_FILES, ids=[p.stem for p in VALUE_FILES])
def test_rendered_chart_passes_server_side_dry_run(
    values: Path, kubectl: Kubectl, namespace: str
) -> None:
    rendered = subprocess.run(
        [str(binary_paths()["helm"]), "template", "adf", str(CHART), "-n", namespace,
         "--kube-version", versions()["K8S_VERSION"], "--include-crds", "-f", str(values)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    out = server_dry_run(kubectl, rendered)
    assert out.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d])
    assert {"Deployment", "ClusterRole", "CustomResourceDefinition"} <= kinds


@pytest.mark.integration
@pytest.mark.usefixtures("cluster_prerequisites")
def test_plain_install_yaml_passes_server_side_dry_run(kubectl: Kubectl) -> None:
    docs = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    out = server_dry_run(kubectl, yaml.safe_dump_all(docs))
    assert out.count("(server dry run)") == len(docs)
