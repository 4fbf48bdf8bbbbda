"""The chart's rendered objects, for the value sets users reach for first.

Each test renders with `helm template` (the real binary, the dev control plane's Kubernetes version)
and asserts on the objects: what a reviewer of the chart would check by eye.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    Objects,
    containers,
    find,
    grants,
    one,
    pod_spec,
    rules,
    workloads,
)

Render = Callable[..., Objects]
PREFIX = f"{RELEASE}-active-data-flow"
OPERATOR = f"{PREFIX}-operator"
HEARTBEAT = f"{PREFIX}-heartbeat"
PINGER = f"{PREFIX}-pinger"
TOKEN_SECRET = f"{PREFIX}-heartbeat-token"

# What the heartbeat may do: list DataFlows and patch the due ones; its dashboard also reads runs
# (and deletes finished ones), a run's Job, pods and events. Nothing else, and never a watch.
HEARTBEAT_PING = {("activedataflow.io", "dataflows", v) for v in ("get", "list", "patch")}
HEARTBEAT_WITH_DASHBOARD = HEARTBEAT_PING | {
    *(("activedataflow.io", "dataflowruns", v) for v in ("get", "list", "delete")),
    ("batch", "jobs", "get"),
    ("", "pods", "list"),
    ("", "events", "list"),
}

# The value sets of the issue (charts/active-data-flow/ci/, chart-testing's convention); the
# server-side dry-run test applies the same files.
VALUE_SETS: dict[str, dict[str, Any]] = {
    p.name.removesuffix("-values.yaml"): yaml.safe_load(p.read_text())
    for p in sorted((CHART / "ci").glob("*-values.yaml"))
}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_value_set_passes_strict_lint(name: str, lint: Callable[..., Any]) -> None:
    proc = lint(VALUE_SETS[name])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_locked_down(name: str, render: Render) -> None:
    objects = render(VALUE_SETS[name])
    assert workloads(objects)
    for obj in workloads(objects):
        pod = pod_spec(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, obj["metadata"]["name"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["image"] == "active-data-flow:0.1.0"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_selectors_match_pod_labels(name: str, render: Render) -> None:
    objects = render(VALUE_SETS[name])
    for deploy in find(objects, "Deployment"):
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in find(objects, "Service"):
        pods = [
            d["spec"]["template"]["metadata"]["labels"]
            for d in find(objects, "Deployment")
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, (
            f"Service {service['metadata']['name']} selects {len(pods)} Deployments"
        )


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rbac_never_grants_secrets_or_wildcards(name: str, render: Render) -> None:
    objects = render(VALUE_SETS[name])
    assert rules(objects)
    for rule in rules(objects):
        assert "secrets" not in rule["resources"], rule
        assert "*" not in rule["resources"] and "*" not in rule["verbs"], rule
        assert "*" not in rule["apiGroups"], rule


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_binding_points_at_a_rendered_role_and_service_account(
    name: str, render: Render
) -> None:
    objects = render(VALUE_SETS[name])
    accounts = {o["metadata"]["name"] for o in find(objects, "ServiceAccount")}
    for binding in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding"):
        role_kind = binding["roleRef"]["kind"]
        namespace = binding["metadata"].get("namespace")
        roles = [
            r for r in find(objects, role_kind, binding["roleRef"]["name"])
            if r["metadata"].get("namespace") == namespace
        ]  # fmt: skip
        assert len(roles) == 1, binding["metadata"]
        [subject] = binding["subjects"]
        assert subject == {
            "kind": "ServiceAccount",
            "name": subject["name"],
            "namespace": NAMESPACE,
        }
        assert subject["name"] in accounts
    for obj in find(objects, "Deployment"):
        assert pod_spec(obj)["serviceAccountName"] in accounts


def test_operator_deployment(render: Render) -> None:
    operator = one(render(), "Deployment", OPERATOR)
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    [c] = containers(operator)
    assert c["command"] == ["python", "-m", "adf_operator"]
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]
    assert c["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(c)
    assert env["ADF_NAMESPACES"] == ""
    assert env["ADF_DEFAULT_IMAGE"] == "active-data-flow:0.1.0"
    assert env["ADF_LOG_FORMAT"] == "full"
    assert env["ADF_METRICS_PORT"] == "9090" and env["ADF_METRICS_ADDR"] == "0.0.0.0"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_operator_settings_follow_values(render: Render) -> None:
    objects = render({
        "image": {"repository": "registry.example:5000/team/active-data-flow", "tag": "1.2.3"},
        "operator": {"defaultRunImage": "runner:7", "logFormat": "json",
                     "health": {"bindAddress": "$(POD_IP)", "port": 9090},
                     "extraEnv": [{"name": "EXTRA", "value": "1"}]},
    })  # fmt: skip
    [c] = containers(one(objects, "Deployment", OPERATOR))
    assert c["image"] == "registry.example:5000/team/active-data-flow:1.2.3"
    assert c["args"] == ["--liveness=http://$(POD_IP):9090/healthz"]
    assert c["ports"][0]["containerPort"] == 9090
    env = env_of(c)
    assert env["ADF_DEFAULT_IMAGE"] == "runner:7"
    assert env["ADF_LOG_FORMAT"] == "json"
    assert env["EXTRA"] == "1"
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_cluster_wide_rbac(render: Render) -> None:
    objects = render()
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    granted = grants(one(objects, "ClusterRole", OPERATOR))
    for verb in ("get", "list", "watch", "patch"):
        assert ("activedataflow.io", "dataflows", verb) in granted
    for verb in ("create", "get", "list", "watch", "patch", "delete"):
        assert ("activedataflow.io", "dataflowruns", verb) in granted
    for verb in ("create", "get", "list", "watch", "delete"):
        assert ("batch", "jobs", verb) in granted
    assert ("activedataflow.io", "dataflows/status", "patch") in granted
    assert ("activedataflow.io", "dataflowruns/status", "patch") in granted
    assert ("", "pods", "watch") in granted and ("", "pods", "create") not in granted
    assert ("", "events", "create") in granted
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "list") in granted
    assert ("", "namespaces", "watch") in granted
    assert grants(one(objects, "ClusterRole", HEARTBEAT)) == HEARTBEAT_WITH_DASHBOARD


def test_namespaced_rbac(render: Render) -> None:
    objects = render(VALUE_SETS["namespaced"])
    for ns in ("shop", "warehouse"):
        for name in (OPERATOR, HEARTBEAT):
            [role] = [r for r in find(objects, "Role", name) if r["metadata"]["namespace"] == ns]
            assert any("dataflows" in rule["resources"] for rule in role["rules"])
            if name == HEARTBEAT:
                assert grants(role) == HEARTBEAT_WITH_DASHBOARD
            [binding] = [
                b for b in find(objects, "RoleBinding", name) if b["metadata"]["namespace"] == ns
            ]
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": name,
            }
    # Only the cluster-scoped reads kopf needs stay cluster-wide; the heartbeat has none.
    [cluster_role] = find(objects, "ClusterRole")
    assert cluster_role["metadata"]["name"] == OPERATOR
    assert cluster_role["rules"] == [{
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    }]  # fmt: skip
    [c] = containers(one(objects, "Deployment", OPERATOR))
    assert env_of(c)["ADF_NAMESPACES"] == "shop,warehouse"
    [hb] = containers(one(objects, "Deployment", HEARTBEAT))
    assert "--namespace=shop" in hb["args"] and "--namespace=warehouse" in hb["args"]


def test_heartbeat_deployment_and_service(render: Render) -> None:
    objects = render()
    [c] = containers(one(objects, "Deployment", HEARTBEAT))
    assert c["command"] == ["adf", "heartbeat", "serve"]
    assert c["args"] == [
        "--host=0.0.0.0",
        "--port=8080",
        "--token-file=/etc/adf/heartbeat/token",
        "--log-format=text",
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "heartbeat-token", "mountPath": "/etc/adf/heartbeat", "readOnly": True} in c[
        "volumeMounts"
    ]
    service = one(objects, "Service", HEARTBEAT)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_allow_list_reaches_the_heartbeat(render: Render) -> None:
    [c] = containers(one(render(VALUE_SETS["allow-list"]), "Deployment", HEARTBEAT))
    assert c["args"][3:] == [
        "--allow-cidr=10.0.0.0/8",
        "--allow-cidr=fd00::/8",
        "--trust-forwarded-for",
        "--log-format=text",
    ]


def test_dashboard_open_read_only_and_json_logs(render: Render) -> None:
    [c] = containers(one(render(VALUE_SETS["dashboard-open"]), "Deployment", HEARTBEAT))
    assert c["args"][3:] == ["--dashboard-open-read-only", "--log-format=json"]


@pytest.mark.parametrize("scope", ["cluster", "namespaced"])
def test_without_dashboard_the_heartbeat_keeps_only_ping_rights(scope: str, render: Render) -> None:
    values = {**VALUE_SETS["no-dashboard"]}
    if scope == "namespaced":
        values.update(VALUE_SETS["namespaced"])
    objects = render(values)
    [c] = containers(one(objects, "Deployment", HEARTBEAT))
    assert "--no-dashboard" in c["args"] and "--dashboard-open-read-only" not in c["args"]
    roles = find(objects, "ClusterRole" if scope == "cluster" else "Role", HEARTBEAT)
    assert roles and all(grants(role) == HEARTBEAT_PING for role in roles)
    # Opening a dashboard that is not served changes nothing.
    values["heartbeat"] = {"dashboard": {"enabled": False, "openReadOnly": True}}
    [c] = containers(one(render(values), "Deployment", HEARTBEAT))
    assert "--dashboard-open-read-only" not in c["args"]


def test_pinger_cronjob(render: Render) -> None:
    objects = render()
    cron = one(objects, "CronJob", PINGER)
    assert cron["spec"]["schedule"] == "* * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] < 60
    pod = pod_spec(cron)
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    [c] = containers(cron)
    assert c["command"] == ["adf", "heartbeat", "ping"]
    assert c["args"] == [
        f"--url=http://{HEARTBEAT}.{NAMESPACE}.svc:8080/heartbeat",
        "--token-file=/etc/adf/heartbeat/token",
        "--retries=3",
        "--timeout=10",
    ]
    [volume] = pod["volumes"]
    assert volume["secret"]["secretName"] == TOKEN_SECRET
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]


def test_pinger_url_can_point_elsewhere(render: Render) -> None:
    cron = one(render({"pinger": {"url": "http://127.0.0.1:8080/heartbeat"}}), "CronJob", PINGER)
    assert containers(cron)[0]["args"][0] == "--url=http://127.0.0.1:8080/heartbeat"


def test_generated_token_secret(render: Render) -> None:
    first = one(render(), "Secret", TOKEN_SECRET)
    second = one(render(), "Secret", TOKEN_SECRET)
    tokens = [base64.b64decode(s["data"]["token"]).decode() for s in (first, second)]
    assert all(len(t) == 48 and t.isalnum() for t in tokens)
    # Without a cluster to look the old one up, each render draws a new token; the e2e test
    # checks that `helm upgrade` keeps the installed one.
    assert tokens[0] != tokens[1]


def test_given_token_value(render: Render) -> None:
    objects = render({"heartbeat": {"token": {"value": "a-fixed-token-of-enough-length"}}})
    secret = one(objects, "Secret", TOKEN_SECRET)
    assert base64.b64decode(secret["data"]["token"]) == b"a-fixed-token-of-enough-length"


def test_existing_secret_is_used_and_none_is_created(render: Render) -> None:
    objects = render(VALUE_SETS["existing-secret"])
    assert not find(objects, "Secret")
    for name in (HEARTBEAT, PINGER):
        [obj] = find(objects, "Deployment", name) + find(objects, "CronJob", name)
        [volume] = [v for v in pod_spec(obj)["volumes"] if v["name"] == "heartbeat-token"]
        assert volume["secret"]["secretName"] == "my-token"
        assert volume["secret"]["items"] == [{"key": "t", "path": "token"}]


def test_service_monitors(render: Render) -> None:
    assert not find(render(), "ServiceMonitor")
    objects = render(VALUE_SETS["servicemonitor"])
    assert {m["metadata"]["name"] for m in find(objects, "ServiceMonitor")} == {HEARTBEAT, OPERATOR}
    for name in (HEARTBEAT, OPERATOR):
        monitor = one(objects, "ServiceMonitor", name)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        service = one(objects, "Service", name)
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


def test_operator_metrics_can_be_switched_off(render: Render) -> None:
    objects = render({"operator": {"metrics": {"port": 0}}, "serviceMonitor": {"enabled": True}})
    [c] = containers(one(objects, "Deployment", OPERATOR))
    assert "ADF_METRICS_PORT" not in env_of(c)
    assert [p["name"] for p in c["ports"]] == ["health"]
    assert not find(objects, "Service", OPERATOR) and not find(objects, "ServiceMonitor", OPERATOR)


def test_without_heartbeat_only_the_operator_remains(render: Render) -> None:
    objects = render(VALUE_SETS["no-heartbeat"])
    names = {o["metadata"]["name"] for o in objects}
    assert names == {OPERATOR}
    assert {o["kind"] for o in objects} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    }


def test_external_service_accounts(render: Render) -> None:
    objects = render({
        "operator": {"serviceAccount": {"create": False, "name": "ops"}},
        "heartbeat": {"serviceAccount": {"create": False, "name": "hb"}},
    })  # fmt: skip
    assert not find(objects, "ServiceAccount")
    assert pod_spec(one(objects, "Deployment", OPERATOR))["serviceAccountName"] == "ops"
    assert pod_spec(one(objects, "Deployment", HEARTBEAT))["serviceAccountName"] == "hb"


def test_long_release_names_still_fit(render: Render, tmp_path: Any) -> None:
    objects = render({"fullnameOverride": "x" * 40})
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    # CronJob names must leave room for the Job suffix the controller appends.
    assert len(one(objects, "CronJob", "x" * 40 + "-pinger")["metadata"]["name"]) <= 52


def test_grafana_dashboard_config_map(render: Render) -> None:
    assert not find(render(), "ConfigMap")
    [config_map] = find(render(VALUE_SETS["grafana-dashboard"]), "ConfigMap")
    meta = config_map["metadata"]
    assert meta["name"] == f"{PREFIX}-grafana-dashboard" and meta["namespace"] == NAMESPACE
    assert meta["labels"]["grafana_dashboard"] == "1" and meta["labels"]["release"] == "prom"
    assert meta["annotations"] == {"grafana_folder": "ActiveDataFlow"}
    [(key, text)] = config_map["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads((CHART / "dashboards" / "grafana.json").read_text())


def test_grafana_dashboard_elsewhere_and_relabelled(render: Render) -> None:
    objects = render({"grafanaDashboard": {
        "enabled": True, "namespace": "monitoring", "labels": {"grafana_dashboard": "adf"},
    }})  # fmt: skip
    [config_map] = find(objects, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "adf"


@pytest.mark.parametrize("open_read_only", [False, True])
def test_notes_say_where_the_dashboard_and_api_are(
    open_read_only: bool, notes: Callable[..., str]
) -> None:
    text = notes({"heartbeat": {"dashboard": {"openReadOnly": open_read_only}}})
    assert f"http://{HEARTBEAT}.{NAMESPACE}.svc:8080/dashboard/" in text
    assert "open http://127.0.0.1:8080/dashboard/ and sign in with\n   the token" in text
    assert ("reading\n   is open to anyone" in text) is open_read_only
    assert "http://127.0.0.1:8080/api/v1/ (Authorization: Bearer <token>)" in text
    assert "http://127.0.0.1:8080/api/v1/openapi.json" in text


def test_notes_without_dashboard(notes: Callable[..., str]) -> None:
    text = notes(VALUE_SETS["no-dashboard"])
    assert "adf heartbeat ping --url http://127.0.0.1:8080/heartbeat --token-file token" in text
    assert "/dashboard/" not in text and "/api/v1/" not in text
