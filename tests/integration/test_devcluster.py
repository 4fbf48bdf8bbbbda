"""The dev control plane is a real one: versions, readiness, CRD validation, Job semantics, garbage
collection, namespaces, Deployments, the pod runner's allow-list and clean shutdown."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import ControlPlane, pid_alive, pod_dir, versions
from devcluster.pytest_plugin import Kubectl, wait_for

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/activedataflow/active-data-flow:dev"
Obj = dict[str, Any]


def job(name: str, command: list[str], **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "command": command}],
                }
            },
            **spec,
        },
    }


def condition(obj: Obj, kind: str) -> Obj | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind and c["status"] == "True":
            return dict(c)
    return None


def job_pods(kubectl: Kubectl, ns: str, name: str) -> list[Obj]:
    items: list[Obj] = kubectl.get("pods", "-n", ns, "-l", f"job-name={name}")["items"]
    return items


def test_kubectl_reports_the_built_server_version_and_readyz(kubectl: Kubectl) -> None:
    info = json.loads(kubectl.run("version", "-o", "json"))
    assert info["serverVersion"]["gitVersion"] == f"v{versions()['K8S_VERSION']}"
    assert kubectl.run("get", "--raw", "/readyz") == "ok"


def test_crd_becomes_established_and_the_api_server_enforces_its_schema(kubectl: Kubectl) -> None:
    group = f"t{secrets.token_hex(3)}.devcluster.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl.apply(crd)
    try:
        wait_for(
            lambda: condition(kubectl.get("crd", f"widgets.{group}"), "Established"),
            what="the CRD to be Established",
        )
        good = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "ok"},
            "spec": {"size": 2},
        }
        wait_for(lambda: kubectl.apply(good, "default"), what="the new API to be served")
        bad = {**good, "metadata": {"name": "bad"}, "spec": {"size": 0}}
        with pytest.raises(subprocess.CalledProcessError) as rejected:
            kubectl.apply(bad, "default")
        assert (
            "spec.size: Invalid value: 0: spec.size in body should be greater than or "
            "equal to 1" in rejected.value.stderr
        )
    finally:
        kubectl.run("delete", "crd", f"widgets.{group}", "--wait=false")


def test_job_running_the_console_script_completes_with_readable_output(
    kubectl: Kubectl, namespace: str, pod_output: Callable[[str, str], str]
) -> None:
    kubectl.apply(job("adf-version", ["adf", "--version"]), namespace)
    done = wait_for(
        lambda: condition(kubectl.get("job", "adf-version", "-n", namespace), "Complete"),
        timeout=60,
        what="the Job to complete",
    )
    assert done
    [pod] = job_pods(kubectl, namespace, "adf-version")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["podIP"].startswith("127.")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert version("active-data-flow") in pod_output(namespace, pod["metadata"]["name"])


def test_failing_command_fails_the_job_after_backoff_limit(
    kubectl: Kubectl, namespace: str
) -> None:
    command = ["sh", "-c", "echo boom; echo 'bad input' >/dev/termination-log; exit 3"]
    kubectl.apply(job("fails", command, backoffLimit=1), namespace)
    failed = wait_for(
        lambda: condition(kubectl.get("job", "fails", "-n", namespace), "Failed"),
        timeout=90,
        what="the Job to fail",
    )
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = job_pods(kubectl, namespace, "fails")
    assert len(pods) == 2  # the first try and backoffLimit=1 retry
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 3
        assert terminated["reason"] == "Error"
        assert terminated["message"] == "bad input\n"


def test_active_deadline_ends_a_long_job_and_its_process(
    kubectl: Kubectl, namespace: str, control_plane: ControlPlane
) -> None:
    kubectl.apply(job("long", ["sleep", "300"], activeDeadlineSeconds=3), namespace)
    pid_file = wait_for(
        lambda: next(pod_dir(control_plane.state_dir, namespace, "").glob("long-*/main.pid"), None),
        what="the pod's process to start",
    )
    pid = int(pid_file.read_text())
    failed = wait_for(
        lambda: condition(kubectl.get("job", "long", "-n", namespace), "Failed"),
        timeout=60,
        what="the Job to hit its deadline",
    )
    assert failed["reason"] == "DeadlineExceeded"
    wait_for(lambda: not pid_alive(pid), timeout=15, what="the pod's process to be killed")


def test_deleting_an_owner_deletes_its_dependents(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("create", "configmap", "owner", "-n", namespace)
    owner = kubectl.get("configmap", "owner", "-n", namespace)
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    kubectl.apply(dependent, namespace)
    kubectl.run("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: (
            "NotFound" in kubectl.run("get", "configmap", "dependent", "-n", namespace, check=False)
        ),
        what="the garbage collector to delete the dependent",
    )


def test_deleting_a_namespace_with_a_running_pod_finishes(kubectl: Kubectl) -> None:
    ns = f"doomed-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", ns)
    wait_for(
        lambda: kubectl.run("get", "sa", "default", "-n", ns, "-o", "name"),
        what="the default ServiceAccount",
    )
    kubectl.apply(job("sleeper", ["sleep", "300"]), ns)
    wait_for(
        lambda: any(
            p["status"].get("phase") == "Running" for p in job_pods(kubectl, ns, "sleeper")
        ),
        what="the pod to run",
    )
    kubectl.run("delete", "namespace", ns, "--wait=false")
    wait_for(
        lambda: "NotFound" in kubectl.run("get", "namespace", ns, check=False),
        timeout=60,
        what="the namespace to be gone",
    )


def test_deployment_gets_a_running_pod(kubectl: Kubectl, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": IMAGE, "command": ["sleep", "300"]}]
                },
            },
        },
    }
    kubectl.apply(deployment, namespace)
    wait_for(
        lambda: (
            kubectl.get("deployment", "web", "-n", namespace)["status"].get("availableReplicas")
            == 1
        ),
        timeout=60,
        what="the Deployment to have an available replica",
    )
    [pod] = kubectl.get("pods", "-n", namespace, "-l", "app=web")["items"]
    assert pod["status"]["phase"] == "Running"


def test_pod_gets_env_mounts_and_a_kubeconfig_for_its_service_account(
    kubectl: Kubectl, namespace: str, pod_output: Callable[[str, str], str]
) -> None:
    kubectl.run("create", "configmap", "settings", "-n", namespace, "--from-literal=greeting=hello")
    kubectl.run(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cret"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "env-check"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "settings", "configMap": {"name": "settings"}}],
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": [
                        "sh",
                        "-c",
                        'cat /etc/settings/greeting; echo " $PASSWORD $POD_NS"; '
                        'cat "$GREETING_FILE"; echo; echo "kubeconfig=$KUBECONFIG"',
                    ],
                    "env": [
                        {"name": "SETTINGS_DIR", "value": "/etc/settings"},
                        {"name": "GREETING_FILE", "value": "$(SETTINGS_DIR)/greeting"},
                        {
                            "name": "PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                        },
                        {
                            "name": "POD_NS",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                    ],
                    "volumeMounts": [{"name": "settings", "mountPath": "/etc/settings"}],
                }
            ],
        },
    }
    kubectl.apply(pod, namespace)
    wait_for(
        lambda: kubectl.get("pod", "env-check", "-n", namespace)["status"]["phase"] == "Succeeded",
        what="the pod to succeed",
    )
    output = pod_output(namespace, "env-check")
    assert f"hello s3cret {namespace}\nhello\n" in output  # mount paths in args and env mapped
    pod_kubeconfig = output.split("kubeconfig=")[1].strip()
    as_pod = Kubectl(Path(pod_kubeconfig))
    whoami = json.loads(as_pod.run("auth", "whoami", "-o", "json"))
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:default"
    assert "Forbidden" in as_pod.run("get", "secrets", "-n", namespace, check=False)


def test_pod_with_a_foreign_image_is_not_run(
    kubectl: Kubectl, namespace: str, control_plane: ControlPlane
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "foreign"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "docker.io/library/busybox:1.36",
                    "command": ["sh", "-c", "touch /tmp/ran"],
                }
            ]
        },
    }
    kubectl.apply(pod, namespace)
    event = wait_for(
        lambda: next(
            (
                e
                for e in kubectl.get("events", "-n", namespace)["items"]
                if e["reason"] == "ImageNotAllowed"
            ),
            None,
        ),
        what="the ImageNotAllowed event",
    )
    assert event["type"] == "Warning"
    assert "busybox" in event["message"]
    status = kubectl.get("pod", "foreign", "-n", namespace)["status"]
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImageNotAllowed"
    assert not pod_dir(control_plane.state_dir, namespace, "foreign").exists()


def test_stopping_leaves_no_process_behind(tmp_path: Path) -> None:
    """A second instance side by side with the session's: start, run a pod, stop, check pids."""
    cp = ControlPlane(state_dir=tmp_path / "dc")
    with cp:
        kubectl = Kubectl(cp.kubeconfig_path)
        kubectl.apply(job("sleeper", ["sleep", "300"]), "default")
        wait_for(
            lambda: list((cp.state_dir / "pods").glob("default/*/main.pid")),
            what="the pod's process to start",
        )
        pids = cp.all_pids()
        assert len(pids) == 5  # etcd, apiserver, controller-manager, pod runner, the pod
        assert all(pid_alive(p) for p in pids)
    assert [p for p in pids if pid_alive(p)] == []
