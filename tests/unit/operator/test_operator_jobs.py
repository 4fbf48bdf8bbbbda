"""build_job and build_run: the bodies the operator creates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from operator_bodies import flow_body

from adf_core.spec import load_dataflow
from adf_operator import names
from adf_operator.jobs import build_job, default_image
from adf_operator.runs import build_run

SLOT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _run(flow: dict[str, Any], **spec: Any) -> dict[str, Any]:
    run = build_run(flow, names.scheduled_run_name("product-sync", SLOT), "schedule", SLOT)
    run["metadata"]["uid"] = "run-uid"
    run["spec"].update(spec)
    return run


def _job(flow: dict[str, Any], **spec: Any) -> dict[str, Any]:
    document = {k: flow[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    return build_job(_run(flow, **spec), flow, load_dataflow(document), "adf:test")


def _env(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_run_names_are_deterministic_and_fit_a_job_name() -> None:
    assert names.scheduled_run_name("product-sync", SLOT) == "product-sync-29929560"
    assert int(SLOT.timestamp()) // 60 == 29929560
    assert names.manual_run_name("f", "2026-11-27T10:00:00Z") == names.manual_run_name(
        "f", "2026-11-27T10:00:00Z"
    )
    assert names.manual_run_name("f", "a") != names.manual_run_name("f", "b")
    longest = "x" * 52
    assert len(names.manual_run_name(longest, "now")) <= 63
    assert len(names.scheduled_run_name(longest, datetime(2150, 1, 1, tzinfo=UTC))) <= 63


def test_build_run_is_owned_by_its_flow(flow: dict[str, Any]) -> None:
    run = build_run(flow, "product-sync-29929560", "schedule", SLOT)
    assert run["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "activedataflow.io/v1alpha1",
            "kind": "DataFlow",
            "name": "product-sync",
            "uid": "flow-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert run["metadata"]["labels"][names.LABEL_FLOW] == "product-sync"
    assert run["spec"] == {
        "dataFlowRef": {"name": "product-sync"},
        "trigger": "schedule",
        "scheduledTime": "2026-11-27T10:00:00Z",
    }
    assert "scheduledTime" not in build_run(flow, "x", "manual")["spec"]


def test_job_runs_the_engine_with_the_manifest_and_secret_refs(flow: dict[str, Any]) -> None:
    job = _job(flow)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "adf:test"
    assert container["command"] == ["adf", "run", "--spec-env", "ADF_DATAFLOW", "--output", "json"]
    env = _env(job)
    manifest = json.loads(env["ADF_DATAFLOW"])
    assert manifest == {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": "product-sync", "namespace": "shop"},
        "spec": flow["spec"],
    }
    assert env["ADF_SECRET_SHOP_DB_URL"] == {"secretKeyRef": {"name": "shop-db", "key": "url"}}
    assert env["ADF_SECRET_WAREHOUSE_DB_URL"] == {
        "secretKeyRef": {"name": "warehouse-db", "key": "url"}
    }
    assert env["ADF_TERMINATION_LOG"] == "/dev/termination-log"
    assert env["ADF_TRANSFORMS_PATH"] == "/etc/adf/transforms/shop-flows"
    assert "ADF_WINDOW_FROM" not in env
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/etc/adf/transforms/shop-flows": "transforms-0"}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["transforms-0"]["configMap"] == {"name": "shop-flows"}


def test_job_is_locked_down_bounded_and_owned_by_the_run(flow: dict[str, Any]) -> None:
    job = _job(flow)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert job["metadata"]["name"] == "product-sync-29929560"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "DataFlowRun"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "run-uid"
    labels = {names.LABEL_FLOW: "product-sync", names.LABEL_RUN: "product-sync-29929560"}
    assert labels.items() <= job["metadata"]["labels"].items()
    assert labels.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    fail_job = job["spec"]["podFailurePolicy"]["rules"][0]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"]["values"] == [3]


def test_run_template_and_backfill_window(flow: dict[str, Any]) -> None:
    flow = flow_body(
        runTemplate={
            "image": "mine:1",
            "imagePullPolicy": "Never",
            "backoffLimit": 0,
            "activeDeadlineSeconds": 60,
            "resources": {"limits": {"memory": "256Mi"}},
            "env": [{"name": "TZ", "value": "UTC"}, {"name": "ADF_DATAFLOW", "value": "spoof"}],
            "serviceAccountName": "runner",
            "nodeSelector": {"pool": "batch"},
        }
    )
    job = _job(flow, trigger="backfill", window={"from": "2026-01-01", "to": "2026-02-01"})
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("mine:1", "Never")
    assert container["resources"] == {"limits": {"memory": "256Mi"}}
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 60)
    assert (pod["serviceAccountName"], pod["nodeSelector"]) == ("runner", {"pool": "batch"})
    env = _env(job)
    assert env["TZ"] == "UTC"
    assert env["ADF_DATAFLOW"] != "spoof"  # the operator's own variables win
    assert (env["ADF_WINDOW_FROM"], env["ADF_WINDOW_TO"]) == ("2026-01-01", "2026-02-01")


def test_default_image_names_no_registry() -> None:
    image = default_image()
    assert image.startswith("active-data-flow:")
    assert "/" not in image
