"""`make demo`: the whole stack on the local control plane, with SQLite source and sink.

Starts the dev control plane (or reuses the running one), installs the Helm chart (operator,
heartbeat), applies examples/product-sync.yaml with its Secrets and transform ConfigMap, pings the
heartbeat exactly as the chart's CronJob does, waits for the run, and prints
`kubectl get dataflows,dataflowruns` and the first rows of the sink. Then it switches the CronJob on
(pointed at the heartbeat pod: there is no cluster DNS here), so the flow keeps running every
minute, and says how to look around and tear it all down.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from render_manifests import CHART, ROOT, helm
from rich.console import Console

from adf_core.demo import create_shop, show_sink
from devcluster.controlplane import ControlPlane, default_state_dir, tools_bin_dir

RELEASE = "adf"
SYSTEM_NAMESPACE = "adf-system"
NAMESPACE = "shop"
FLOW = "product-sync"
# Not under /tmp: the run pods mount an emptyDir there, and the pod runner would map the path.
DATA = ROOT / ".demo" / "cluster"
ADF = Path(sys.executable).with_name("adf")
console = Console()
T = TypeVar("T")


def kubectl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(tools_bin_dir() / "kubectl"), *args], input=stdin, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def apply(*documents: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))


def wait(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll until check() answers; exit with the reason after timeout."""
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {what}"):
        while time.monotonic() < deadline:
            try:
                result = check()
            except (OSError, ValueError, KeyError):
                result = None
            if result:
                return result
            time.sleep(0.5)
    sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")


def start_cluster() -> ControlPlane:
    cp = ControlPlane.load(default_state_dir())
    if cp.running():
        console.print(f"reusing the running control plane ({cp.state_dir})")
        return cp
    cp.stop()  # leftovers of a cluster that died half-way
    cp = ControlPlane(state_dir=default_state_dir(), attached=False)
    started = time.monotonic()
    cp.start()
    console.print(f"control plane ready in {time.monotonic() - started:.1f} s")
    return cp


def heartbeat_address() -> str:
    """host:port of the heartbeat pod, once it answers /readyz."""

    def address() -> str | None:
        listing = json.loads(kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-o", "json",
                                     "-l", "app.kubernetes.io/component=heartbeat"))  # fmt: skip
        running = [p for p in listing["items"] if p["status"].get("phase") == "Running"]
        if len(running) != 1:
            return None
        host = f"{running[0]['status']['podIP']}:8080"
        with urllib.request.urlopen(f"http://{host}/readyz", timeout=5) as resp:
            return host if resp.status == 200 else None

    return wait("the heartbeat to be ready", address, timeout=120)


def install_flow() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name in ("shop.db", "warehouse.db"):
        (DATA / name).unlink(missing_ok=True)
    create_shop(DATA / "shop.db")
    if NAMESPACE not in kubectl("get", "namespaces", "-o", "name"):
        kubectl("create", "namespace", NAMESPACE)
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
         "stringData": {"url": f"sqlite:///{DATA / db}"}}
        for name, db in (("shop-db", "shop.db"), ("warehouse-db", "warehouse.db"))
    ]  # fmt: skip
    code = (ROOT / "examples" / "flows" / "shop_flows.py").read_text()
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "shop-flows", "namespace": NAMESPACE},
                  "data": {"shop_flows.py": code}}  # fmt: skip
    flow = yaml.safe_load((ROOT / "examples" / "product-sync.yaml").read_text())
    flow["metadata"]["namespace"] = NAMESPACE
    flow["spec"]["schedule"] = {"every": "1m"}  # the example's 10m is long to watch
    apply(*secrets, config_map, flow)
    console.print(f"applied examples/product-sync.yaml (every 1m) in namespace {NAMESPACE}, "
                  f"SQLite files in {DATA}")  # fmt: skip


def ping_when_due(url: str, token_file: Path) -> dict[str, Any]:
    """Wait for the slot the operator announced, then ping as the CronJob does."""

    def next_run() -> datetime | None:
        status = json.loads(kubectl("get", "dataflow", FLOW, "-n", NAMESPACE, "-o", "json"))
        text = status.get("status", {}).get("nextRunTime")
        return datetime.fromisoformat(text) if text else None

    slot = wait("the operator to schedule the flow", next_run, timeout=60)
    wait(f"the slot at {slot:%H:%M:%S} UTC", lambda: datetime.now(UTC) > slot, timeout=90)
    command = [str(ADF), "heartbeat", "ping", f"--url={url}", f"--token-file={token_file}"]
    console.print(f"$ adf heartbeat ping --url={url} --token-file=…")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        sys.exit(f"the ping failed:\n{proc.stdout}{proc.stderr}")
    reply: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    console.print(reply)
    return reply


def wait_for_run() -> None:
    def finished() -> str | None:
        runs = json.loads(kubectl("get", "dataflowruns", "-n", NAMESPACE, "-o", "json"))["items"]
        phases = [r.get("status", {}).get("phase") for r in runs]
        return next((p for p in phases if p in ("Succeeded", "Failed")), None)

    phase = wait("the run to finish", finished, timeout=180)
    if phase != "Succeeded":
        console.print(kubectl("describe", "dataflowruns", "-n", NAMESPACE))
        sys.exit("the run failed: see its status above")


def main() -> None:
    cp = start_cluster()
    os.environ["KUBECONFIG"] = str(cp.kubeconfig_path)
    common = ["--namespace", SYSTEM_NAMESPACE, "--create-namespace", "--wait", "--timeout=180s"]
    pod_ip = ["--set", "heartbeat.bindAddress=$(POD_IP)",
              "--set", "operator.health.bindAddress=$(POD_IP)"]  # fmt: skip
    helm("upgrade", "--install", RELEASE, str(CHART), *common, *pod_ip,
         "--set", "pinger.enabled=false")  # fmt: skip
    console.print(f"installed the chart as release {RELEASE} in {SYSTEM_NAMESPACE}")
    host = heartbeat_address()
    install_flow()

    token = kubectl("get", "secret", f"{RELEASE}-active-data-flow-heartbeat-token",
                    "-n", SYSTEM_NAMESPACE, "-o", "jsonpath={.data.token}")  # fmt: skip
    token_file = DATA / "heartbeat-token"
    token_file.write_bytes(base64.b64decode(token))
    token_file.chmod(0o600)
    ping_when_due(f"http://{host}/heartbeat", token_file)
    wait_for_run()
    print(kubectl("get", "dataflows,dataflowruns", "-n", NAMESPACE))
    show_sink(DATA / "warehouse.db")

    pinger = ["--set", "pinger.enabled=true", "--set", f"pinger.url=http://{host}/heartbeat"]
    helm("upgrade", RELEASE, str(CHART), *common, "--reuse-values", *pinger)
    print(f"""
The CronJob now pings the heartbeat every minute; the flow runs once a minute.
  export KUBECONFIG={cp.kubeconfig_path} PATH={tools_bin_dir()}:$PATH
  kubectl get dataflows,dataflowruns -n {NAMESPACE} --watch
  adf trigger {FLOW} -n {NAMESPACE}          # run now
  heartbeat metrics: http://{host}/metrics (the dashboard is served from the same address)
    (the pod's own address: the local control plane has no kubectl port-forward)
Tear down: helm uninstall {RELEASE} -n {SYSTEM_NAMESPACE}; make cluster-down""")


if __name__ == "__main__":
    main()
