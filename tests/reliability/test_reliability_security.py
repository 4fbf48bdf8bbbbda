"""Security of a full run: the operator and the heartbeat act with the chart's ServiceAccount
tokens (minted with `kubectl create token`), which cannot read Secrets nor act outside their
grant; run pods get no token and run locked down; and no secret value — database passwords, the
heartbeat token, the ServiceAccount tokens — appears in any log line, event, object, status, run
summary, pod output, dashboard page, API reply or error message.
"""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.controlplane import ControlPlane, binary_paths, kubeconfig, pod_dir
from devcluster.pytest_plugin import Kubectl, KubectlError
from tests.integration.test_heartbeat import set_last_schedule_time
from tests.reliability.harness import (
    Databases,
    HeartbeatProcess,
    OperatorProcess,
    bearer,
    flow_manifest,
    phase,
    post,
    runs,
    trigger,
    wait_final,
)
from tests.support.postgres import LocalPostgres

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHART = Path(__file__).resolve().parents[2] / "charts" / "active-data-flow"
HEARTBEAT_TOKEN = "reliability-security-heartbeat-token-5e4d3c2b1a"
BAD_PASSWORD = "n0t-f0r-y0ur-3yes-7781"
Obj = dict[str, Any]

# (verb, resource, flags) -> allowed, per ServiceAccount of the chart
OPERATOR_GRANT = {
    ("get", "secrets", ""): False,
    ("list", "secrets", "-A"): False,
    ("create", "pods", ""): False,
    ("create", "deployments", ""): False,
    ("delete", "namespaces", ""): False,
    ("create", "clusterrolebindings", ""): False,
    ("create", "serviceaccounts", "--subresource=token"): False,
    ("update", "customresourcedefinitions", ""): False,
    ("create", "jobs", ""): True,
    ("patch", "dataflows", "--subresource=status"): True,
    ("create", "dataflowruns", ""): True,
    ("create", "events", ""): True,
}
HEARTBEAT_GRANT = {
    ("get", "secrets", ""): False,
    ("create", "jobs", ""): False,
    ("create", "pods", ""): False,
    ("create", "dataflowruns", ""): False,
    ("patch", "dataflows", "--subresource=status"): False,
    ("patch", "dataflows", ""): True,
    ("list", "dataflowruns", ""): True,
}


def helm_template(release: str, namespace: str, *args: str) -> list[Obj]:
    out = subprocess.run(
        [str(binary_paths()["helm"]), "template", release, str(CHART), "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture
def chart_accounts(
    kubectl: Kubectl, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> Iterator[dict[str, Path]]:
    """The chart's ServiceAccounts and RBAC in the test's namespace; a kubeconfig with a freshly
    minted token (and nothing else) for each of the operator and the heartbeat."""
    release = f"rel{namespace[-6:]}"
    shown = ["--show-only", "templates/serviceaccounts.yaml", "--show-only", "templates/rbac.yaml"]
    for doc in helm_template(release, namespace, *shown):
        kubectl.apply(doc, namespace if doc["kind"] in ("ServiceAccount",) else None)
    ca = (control_plane.state_dir / "pki" / "ca.crt").read_bytes()
    configs = {}
    for component in ("operator", "heartbeat"):
        account = f"{release}-active-data-flow-{component}"
        token = kubectl.run("create", "token", account, "-n", namespace, "--duration=1h").strip()
        path = tmp_path / f"{component}.kubeconfig"
        path.write_text(kubeconfig(control_plane.server, ca, {"token": token}, namespace))
        configs[component] = path
    yield configs
    selector = f"app.kubernetes.io/instance={release}"
    kubectl.run("delete", "clusterrole,clusterrolebinding", "-l", selector, check=False)


def token_of(config: Path) -> str:
    token: str = yaml.safe_load(config.read_text())["users"][0]["user"]["token"]
    return token


def can_i(config: Path, namespace: str, verb: str, resource: str, flags: str) -> bool:
    scope = [flags] if flags == "-A" else ["-n", namespace, *([flags] if flags else [])]
    answer = Kubectl(config).run("auth", "can-i", verb, resource, *scope, check=False)
    return answer.strip().splitlines()[0] == "yes"


def dashboard_texts(base: str, namespace: str, run_names: list[str]) -> dict[str, str]:
    """Every dashboard page and API reply about the flows, signed in with the token."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    login = opener.open(f"{base}/dashboard/login", timeout=30).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf, login
    wrong = urllib.parse.urlencode({"csrf_token": csrf[1], "token": "wrong-guess"}).encode()
    texts = {"login": login}
    try:
        opener.open(f"{base}/dashboard/login", data=wrong, timeout=30)
    except urllib.error.HTTPError as refused:
        texts["refused sign-in"] = refused.read().decode()
    form = urllib.parse.urlencode({"csrf_token": csrf[1], "token": HEARTBEAT_TOKEN}).encode()
    texts["signed in"] = (
        opener.open(f"{base}/dashboard/login", data=form, timeout=30).read().decode()
    )
    pages = ["/dashboard/", *(f"/dashboard/flows/{namespace}/{f}" for f in ("good", "bad"))]
    pages += [f"/dashboard/runs/{namespace}/{name}" for name in run_names]
    for page in pages:
        texts[page] = opener.open(base + page, timeout=30).read().decode()
    api = ["/api/v1/dataflows", *(f"/api/v1/dataflows/{namespace}/{f}" for f in ("good", "bad"))]
    api += [f"/api/v1/dataflows/{namespace}/{f}/runs" for f in ("good", "bad")]
    for path in api:
        request = urllib.request.Request(base + path, headers=bearer(HEARTBEAT_TOKEN))
        texts[path] = urllib.request.urlopen(request, timeout=30).read().decode()
    texts["/metrics"] = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    return texts


def test_full_run_with_chart_accounts_exposes_no_secret_and_runs_locked_down(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    dbs: Databases,
    pg_server: LocalPostgres,
    chart_accounts: dict[str, Path],
    tmp_path: Path,
) -> None:
    # RBAC: each account can do what its component needs and nothing around it.
    for grant, config in ((OPERATOR_GRANT, "operator"), (HEARTBEAT_GRANT, "heartbeat")):
        allowed = {k: can_i(chart_accounts[config], namespace, *k) for k in grant}
        assert allowed == grant, f"{config}: {allowed}"
    with pytest.raises(KubectlError, match=r"(?i)forbidden"):
        Kubectl(chart_accounts["operator"]).run("get", "secrets", "-n", namespace)

    # A full run: a good flow pinged through the heartbeat, a bad one whose database refuses.
    dbs.fill(300, "exports")
    bad_url = f"postgresql+psycopg://app:{BAD_PASSWORD}@127.0.0.1:1/shop"
    kubectl.run("create", "secret", "generic", "bad-db", f"--from-literal=url={bad_url}",
                "-n", namespace)  # fmt: skip
    kubectl.apply(flow_manifest("good", schedule={"every": "1m"}), namespace)
    bad = flow_manifest("bad")
    bad["spec"]["sink"]["sql"]["url"] = {"secretKeyRef": {"name": "bad-db", "key": "url"}}
    kubectl.apply(bad, namespace)
    token_file = tmp_path / "heartbeat-token"
    token_file.write_text(HEARTBEAT_TOKEN)
    operator = OperatorProcess(namespace, tmp_path / "operator.log",
                               kubeconfig=chart_accounts["operator"])  # fmt: skip
    heartbeat = HeartbeatProcess(namespace, token_file, tmp_path / "heartbeat.log",
                                 f"--kubeconfig={chart_accounts['heartbeat']}")  # fmt: skip
    operator.start()
    try:
        heartbeat.wait_ready()
        slot = datetime.now(UTC).replace(second=0, microsecond=0)
        set_last_schedule_time(kubectl, namespace, "good", slot - timedelta(minutes=5))
        post(heartbeat.url + "/heartbeat", headers=bearer("not-the-token"))  # a refusal logged
        status, reply = post(heartbeat.url + "/heartbeat", headers=bearer(HEARTBEAT_TOKEN))
        assert status == 200 and reply["flowsFailed"] == 0, reply
        good_run = f"good-{int(slot.timestamp()) // 60}"
        assert phase(wait_final(kubectl, namespace, good_run)) == "Succeeded"
        failed = wait_final(kubectl, namespace, trigger(kubectl, namespace, "bad"))
        assert phase(failed) == "Failed" and failed["status"]["message"]
        run_names = [r["metadata"]["name"] for r in runs(kubectl, namespace)]
        texts = dashboard_texts(heartbeat.url, namespace, run_names)
    finally:
        heartbeat.stop()
        operator.stop()
    assert dbs.compare("exports").identical

    # Everything a person or a log shipper could see, gathered in one place.
    texts["operator log"] = operator.output()
    texts["heartbeat log"] = heartbeat.output()
    texts["objects and events"] = kubectl.run(
        "get", "events,dataflows,dataflowruns,jobs,pods,configmaps", "-n", namespace, "-o", "yaml"
    )
    for path in (control_plane.state_dir / "pods" / namespace).rglob("*"):
        if path.is_file() and path.suffix in (".log", "") and "volumes" not in path.parts:
            texts[f"pod file {path.name} of {path.parent.name}"] = path.read_text(errors="replace")
    assert texts["operator log"] and texts["heartbeat log"]
    assert any(k.startswith("pod file") for k in texts)
    secrets = {
        "database password": pg_server.password,
        "bad flow's password": BAD_PASSWORD,
        "heartbeat token": HEARTBEAT_TOKEN,
        "operator token": token_of(chart_accounts["operator"]),
        "heartbeat account token": token_of(chart_accounts["heartbeat"]),
    }
    leaks = [(s, where) for s, value in secrets.items() for where, text in texts.items()
             if value in text]  # fmt: skip
    assert not leaks, leaks

    # The run pods: no ServiceAccount token, non-root, read-only root, no escalation.
    for job in kubectl.get("jobs", "-n", namespace)["items"]:
        assert_locked_down(job["spec"]["template"]["spec"], job["metadata"]["name"])
        assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    for pod in kubectl.get("pods", "-n", namespace)["items"]:
        volumes = pod["spec"].get("volumes", [])
        assert not [v for v in volumes if "serviceAccountToken" in str(v)], volumes
        folder = pod_dir(control_plane.state_dir, namespace, pod["metadata"]["name"])
        assert not [p for p in folder.rglob("token")], f"a token file in {folder}"


def assert_locked_down(pod_spec: Obj, what: str) -> None:
    pod_context = pod_spec.get("securityContext", {})
    for container in pod_spec["containers"]:
        context = container.get("securityContext", {})
        where = f"{what}/{container['name']}"
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("privileged") is not True, where
        assert True in (context.get("runAsNonRoot"), pod_context.get("runAsNonRoot")), where
        assert "ALL" in context.get("capabilities", {}).get("drop", []), where


def test_rendered_chart_runs_every_pod_locked_down() -> None:
    templates = helm_template("rel", "adf-system")
    pod_specs = {}
    for doc in templates:
        if doc["kind"] == "Deployment":
            pod_specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            pod_specs[doc["metadata"]["name"]] = spec
            assert spec["automountServiceAccountToken"] is False  # the pinger needs no API
    assert len(pod_specs) >= 3, sorted(pod_specs)
    for name, spec in pod_specs.items():
        assert_locked_down(spec, name)
