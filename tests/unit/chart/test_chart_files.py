"""Generated files stay in step with their sources, and the chart's metadata is what users need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "active-data-flow"


def test_chart_crds_are_the_generated_ones() -> None:
    generated = {p.name: p.read_text() for p in (ROOT / "manifests" / "crds").glob("*.yaml")}
    in_chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "manifests/crds is empty: run `make crds`"
    assert in_chart == generated, "run `make manifests` to copy manifests/crds into the chart"


def test_install_manifests_are_rendered_from_the_chart() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_install_manifests_hold_no_token_and_no_helm_labels() -> None:
    text = (ROOT / "manifests" / "install" / "active-data-flow.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "active-data-flow"},
    }
    kinds = [d["kind"] for d in docs]
    assert kinds.count("CustomResourceDefinition") == 2
    assert "Secret" not in kinds
    assert "helm.sh/chart" not in text and "managed-by: Helm" not in text


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.30.0-0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in pyproject, (
        "appVersion must be the package version"
    )


def test_every_value_is_documented_and_in_the_schema() -> None:
    """Each setting of values.yaml has a schema entry and a comment right above it.

    Section keys (image:, operator:, …) count as documented through their settings; free-form
    Kubernetes objects (resources, security contexts) are documented as a whole.
    """
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    undocumented: list[str] = []

    def resolve(sub: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in sub:
            resolved: dict[str, Any] = schema["definitions"][sub["$ref"].rsplit("/", 1)[1]]
            return resolved
        return sub

    def walk(node: yaml.MappingNode, props: dict[str, Any], path: str) -> None:
        for key_node, value_node in node.value:
            key = key_node.value
            assert key in props, f"{path}{key} is missing from values.schema.json"
            free_form = props[key].get("$ref") == "#/definitions/resources"
            sub = resolve(props[key])
            if isinstance(value_node, yaml.MappingNode) and "properties" in sub and not free_form:
                walk(value_node, sub["properties"], f"{path}{key}.")
            elif not lines[key_node.start_mark.line - 1].strip().startswith("#"):
                undocumented.append(f"{path}{key}")

    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    walk(root, schema["properties"], "")
    assert not undocumented, f"values without a comment: {undocumented}"


def test_dockerfile_runs_as_the_charts_user_without_build_tools() -> None:
    """The image's numeric USER is the uid the chart's podSecurityContext asks for."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid, gid = values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[-1].startswith("FROM python:${PYTHON_VERSION}-slim")
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert f"\nUSER {uid}:{gid}\n" in final
    assert "--no-index" in final and "COPY" not in final, "the final stage installs wheels only"
    assert "ENTRYPOINT" not in dockerfile
    assert final.rstrip().endswith('CMD ["adf", "--help"]')
