"""DataFlowRun + DataFlow -> the Job that executes the run (a pure function).

The pod runs the engine (`adf run`) with the flow's manifest in an environment variable. It never
gets Kubernetes credentials, and the operator never reads a Secret: every secretKeyRef of the spec
becomes an env var with `valueFrom.secretKeyRef`, named as the engine expects
(`adf_core.spec.secret_env_name`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel

from adf_core.errors import ExitCode
from adf_core.spec import DataFlow, DataFlowRunSpec, SecretKeyRef, secret_env_name
from adf_operator import names

TERMINATION_LOG = "/dev/termination-log"
TRANSFORMS_ROOT = "/etc/adf/transforms"
RUN_USER = 10001
Body = dict[str, Any]


def default_image() -> str:
    """The project image matching the installed version (no registry host: set one in values)."""
    try:
        return f"active-data-flow:{version('active-data-flow')}"
    except PackageNotFoundError:  # running from a source tree without metadata
        return "active-data-flow:latest"


def owner_reference(body: Mapping[str, Any]) -> Body:
    """An owner reference to `body`, so deleting it deletes what it owns."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def secret_refs(model: Any) -> Iterator[SecretKeyRef]:
    """Every secretKeyRef anywhere in a spec model, in field order."""
    if isinstance(model, SecretKeyRef):
        yield model
    elif isinstance(model, BaseModel):
        for field in type(model).model_fields:
            yield from secret_refs(getattr(model, field))
    elif isinstance(model, list | tuple):
        for item in model:
            yield from secret_refs(item)


def transform_config_maps(flow: DataFlow) -> list[str]:
    """ConfigMaps holding python transform code, each once, in step order."""
    maps = [s.python.config_map for s in flow.spec.transform if s.python and s.python.config_map]
    return list(dict.fromkeys(maps))


def _env(flow: DataFlow, flow_spec: Mapping[str, Any], run: DataFlowRunSpec) -> list[Body]:
    manifest = {
        "apiVersion": names.API,
        "kind": "DataFlow",
        "metadata": {"name": flow.metadata.name, "namespace": flow.metadata.namespace},
        "spec": flow_spec,
    }
    env: list[Body] = list(flow.spec.run_template.env or [])  # ours come last, so they win
    env += [
        {"name": "ADF_DATAFLOW", "value": json.dumps(manifest, separators=(",", ":"))},
        {"name": "ADF_TERMINATION_LOG", "value": TERMINATION_LOG},
    ]
    if run.window is not None:
        bounds = {"ADF_WINDOW_FROM": run.window.from_, "ADF_WINDOW_TO": run.window.to}
        env += [{"name": k, "value": v} for k, v in bounds.items() if v is not None]
    maps = transform_config_maps(flow)
    if maps:
        paths = ":".join(f"{TRANSFORMS_ROOT}/{m}" for m in maps)
        env.append({"name": "ADF_TRANSFORMS_PATH", "value": paths})
    seen: set[str] = set()
    for ref in secret_refs(flow.spec):
        name = secret_env_name(ref.name, ref.key)
        if name not in seen:
            seen.add(name)
            ref_body = {"name": ref.name, "key": ref.key}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref_body}})
    return env


def build_job(
    run: Mapping[str, Any], flow_body: Mapping[str, Any], flow: DataFlow, image: str
) -> Body:
    """The Job for a run: the engine in a locked-down pod, owned by the run.

    `flow_body` is the DataFlow as stored (its spec goes to the pod verbatim), `flow` the same
    validated; `image` is the operator's default, used when runTemplate.image is absent.
    """
    run_name = run["metadata"]["name"]
    run_spec = DataFlowRunSpec.model_validate(run["spec"])
    template = flow.spec.run_template
    labels = {
        names.LABEL_FLOW: flow.metadata.name,
        names.LABEL_RUN: run_name,
        names.LABEL_MANAGED_BY: names.MANAGER,
    }
    maps = transform_config_maps(flow)
    volumes: list[Body] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[Body] = [{"name": "tmp", "mountPath": "/tmp"}]
    for index, config_map in enumerate(maps):
        volumes.append({"name": f"transforms-{index}", "configMap": {"name": config_map}})
        mounts.append(
            {
                "name": f"transforms-{index}",
                "mountPath": f"{TRANSFORMS_ROOT}/{config_map}",
                "readOnly": True,
            }
        )
    container: Body = {
        "name": names.CONTAINER,
        "image": template.image or image,
        "command": ["adf", "run", "--spec-env", "ADF_DATAFLOW", "--output", "json"],
        "env": _env(flow, flow_body["spec"], run_spec),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    if template.resources:
        container["resources"] = template.resources
    pod_spec: Body = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_USER,
            "runAsGroup": RUN_USER,
            "fsGroup": RUN_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if template.service_account_name:
        pod_spec["serviceAccountName"] = template.service_account_name
    if template.node_selector:
        pod_spec["nodeSelector"] = template.node_selector
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.job_name(run_name),
            "namespace": run["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(run)],
        },
        "spec": {
            "backoffLimit": template.backoff_limit,
            "activeDeadlineSeconds": template.active_deadline_seconds,
            # A bad spec never fixes itself: fail at once instead of retrying; evictions are free.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": names.CONTAINER,
                            "operator": "In",
                            "values": [int(ExitCode.INVALID_SPEC)],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
