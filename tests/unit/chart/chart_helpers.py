"""The chart under test and look-ups over its rendered objects, shared by the chart tests.

(Imported as `chart_helpers`, never from `conftest`: several test folders have a conftest.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[3] / "charts" / "active-data-flow"
RELEASE = "adf"
NAMESPACE = "adf-system"
Objects = list[dict[str, Any]]


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of one kind (and name, when given)."""
    return [
        o for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]  # fmt: skip


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a Deployment, Job or CronJob."""
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: list[dict[str, Any]] = spec["template"]["spec"]["containers"]
    return result


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def workloads(objects: Objects) -> Objects:
    return [o for o in objects if o["kind"] in ("Deployment", "CronJob")]


def rules(objects: Objects) -> list[dict[str, Any]]:
    """Every RBAC rule of every Role and ClusterRole."""
    return [r for o in objects if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]]


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every right a Role or ClusterRole gives."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
