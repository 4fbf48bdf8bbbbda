"""The generated CRDs: pinned to the committed YAML, and structural as Kubernetes requires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from adf_operator import crds

CRD_DIR = Path(__file__).resolve().parents[3] / "manifests" / "crds"


def test_committed_crds_match_the_models() -> None:
    assert crds.drift(CRD_DIR) == "", "run `make crds` and commit manifests/crds"
    for name, text in crds.generated().items():
        assert (CRD_DIR / name).read_text() == text


def _nodes(schema: Any, path: str = "") -> Any:
    """Every schema node with its path."""
    yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], f"{path}[{key}]")


@pytest.mark.parametrize("crd", [crds.dataflow_crd(), crds.dataflowrun_crd()], ids=["df", "dfr"])
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(root):
        for forbidden in ("$ref", "$defs", "title", "anyOf", "oneOf", "allOf", "const"):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("default", 0) is not None, path
        if path.startswith(".spec.") and "[" not in path:
            assert node.get("description"), f"{path} has no description for kubectl explain"


def _node(crd: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_dataflow_schema_details() -> None:
    crd = crds.dataflow_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "DataFlow",
        ["df"],
        ["adf"],
    )
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Schedule", "Suspend", "Last Run", "Last Status", "Next Run", "Age"]
    next_run = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Next Run")
    assert next_run["type"] == "string"  # a future `date` prints <invalid>
    assert _node(crd, "spec.sink.sql.url.value")["nullable"] is True
    set_step = _node(crd, "spec.transform.[].set")
    assert set_step["x-kubernetes-preserve-unknown-fields"] is True
    assert "additionalProperties" not in set_step
    assert _node(crd, "spec.runTemplate.env.[]")["x-kubernetes-preserve-unknown-fields"] is True
    assert _node(crd, "spec.concurrencyPolicy")["enum"] == ["Forbid", "Replace", "Allow"]
    sink_rules = _node(crd, "spec.sink.sql")["x-kubernetes-validations"]
    assert {r.get("fieldPath") for r in sink_rules} == {".keys", ".skipUnchanged"}
    conditions = _node(crd, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["items"]["required"] == ["type", "status", "reason", "lastTransitionTime"]


def test_dataflowrun_columns_and_rules() -> None:
    crd = crds.dataflowrun_crd()
    version = crd["spec"]["versions"][0]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Flow", "Phase", "Rows", "Started", "Duration", "Age"]
    rules = [r["rule"] for r in _node(crd, "spec")["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules
    assert _node(crd, "status.phase")["enum"] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Cancelled",
    ]


def test_cli_check_reports_drift(tmp_path: Path, operator_app: typer.Typer) -> None:
    runner = CliRunner()
    written = runner.invoke(operator_app, ["crds", "--output-dir", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crds.generated())
    assert runner.invoke(operator_app, ["crds", "--check", "-o", str(tmp_path)]).exit_code == 0

    target = tmp_path / "dataflows.activedataflow.io.yaml"
    target.write_text(target.read_text().replace("shortNames:\n    - df", "shortNames:\n    - x"))
    checked = runner.invoke(operator_app, ["crds", "--check", "-o", str(tmp_path)])
    assert checked.exit_code == 1
    assert "-    - x" in checked.output and "+    - df" in checked.output


def test_yaml_has_no_aliases() -> None:
    for text in crds.generated().values():
        assert "&id" not in text and "*id" not in text
        yaml.safe_load(text)
