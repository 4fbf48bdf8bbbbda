"""Render the plain install YAML from the Helm chart and keep the chart's CRDs in step.

`python scripts/render_manifests.py` writes manifests/install/active-data-flow.yaml (for users
without helm) and copies manifests/crds/*.yaml into charts/active-data-flow/crds/ (helm installs
CRDs only from there). `--check` writes nothing and exits 1 with a diff when either is stale, which
is how CI catches a chart or CRD change that was not rendered.

The plain YAML is the chart with its defaults (cluster-wide, release and namespace
"active-data-flow"), except that the heartbeat token Secret is left to the user: a token rendered
into a committed file would be the same for everyone.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devcluster.controlplane import binary_paths, versions

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "active-data-flow"
CRDS = ROOT / "manifests" / "crds"
INSTALL = ROOT / "manifests" / "install" / "active-data-flow.yaml"
RELEASE = "active-data-flow"
NAMESPACE = "active-data-flow"
TOKEN_SECRET = "active-data-flow-heartbeat-token"
# Labels that say "helm manages this", untrue for objects applied with kubectl.
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")

HEADER = f"""\
# ActiveDataFlow: plain install manifests, rendered from charts/active-data-flow by
# `make manifests` (do not edit by hand). Install without helm:
#
#   kubectl apply --server-side -f active-data-flow.yaml
#   kubectl -n {NAMESPACE} create secret generic {TOKEN_SECRET} \\
#     --from-literal=token="$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
#
# The operator and the heartbeat handle DataFlows in every namespace. For other settings render
# the chart with your values:
#   helm template {RELEASE} charts/active-data-flow -n {NAMESPACE} --include-crds -f values.yaml
"""


def helm(*args: str) -> str:
    """Run the pinned helm binary (installed by devcluster/install-tools.sh)."""
    binary = binary_paths()["helm"]
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `make cluster-build` (or devcluster/install-tools.sh)")
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def kube_version() -> str:
    """The Kubernetes version the manifests are rendered for: the dev control plane's."""
    return versions()["K8S_VERSION"]


def _strip_helm_labels(node: Any) -> None:
    if isinstance(node, dict):
        labels = node.get("labels")
        if isinstance(labels, dict):
            for key in HELM_LABELS:
                labels.pop(key, None)
        for value in node.values():
            _strip_helm_labels(value)
    elif isinstance(node, list):
        for value in node:
            _strip_helm_labels(value)


def render_install() -> str:
    """The install YAML: the namespace, the CRDs (from manifests/crds), then the chart's objects."""
    rendered = helm(
        "template", RELEASE, str(CHART),
        "--namespace", NAMESPACE,
        "--kube-version", kube_version(),
        "--skip-crds",
        "--set", f"heartbeat.token.existingSecret={TOKEN_SECRET}",
    )  # fmt: skip
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    crds = [yaml.safe_load(crd.read_text()) for crd in sorted(CRDS.glob("*.yaml"))]
    docs = [namespace, *crds] + [d for d in yaml.safe_load_all(rendered) if d]
    _strip_helm_labels(docs)
    body = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, width=100)
    return HEADER + body


def wanted_files() -> dict[Path, str]:
    """Every generated file and the text it must have."""
    files = {CHART / "crds" / crd.name: crd.read_text() for crd in sorted(CRDS.glob("*.yaml"))}
    files[INSTALL] = render_install()
    return files


def stale_crds() -> list[Path]:
    """CRD files in the chart that no longer exist in manifests/crds."""
    wanted = {crd.name for crd in CRDS.glob("*.yaml")}
    return [p for p in sorted((CHART / "crds").glob("*.yaml")) if p.name not in wanted]


def check() -> list[str]:
    """Diffs of every stale file; empty when everything is rendered."""
    problems = []
    for path, text in wanted_files().items():
        current = path.read_text() if path.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{path.relative_to(ROOT)} (committed)",
                f"{path.relative_to(ROOT)} (rendered)",
                n=1,
            )
            problems.append("".join(diff))
    problems += [f"{p.relative_to(ROOT)} has no source in manifests/crds\n" for p in stale_crds()]
    return problems


def write() -> None:
    for path, text in wanted_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    for path in stale_crds():
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on drift, write nothing")
    args = parser.parse_args()
    if not args.check:
        write()
        return
    problems = check()
    if problems:
        sys.stderr.write("".join(problems))
        sys.exit("stale generated files: run `make manifests` and commit the result")
    print("manifests and chart CRDs are up to date")


if __name__ == "__main__":
    main()
