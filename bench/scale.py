"""What the control-plane benchmarks (operator, heartbeat) share: the cluster's preparation, and
the command line (parse, measure in a work folder, print the figures with their targets and
verdicts as JSON)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, cast

from kubernetes import client, config, watch

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import names
from devcluster.controlplane import ControlPlane, kubeconfig, tools_bin_dir

ROOT = Path(__file__).resolve().parent.parent


def prepare_cluster(cluster: ControlPlane, namespace: str) -> Path:
    """Install the CRDs, create `namespace` and a ServiceAccount in it bound to cluster-admin;
    returns a kubeconfig that authenticates as that account, for the operator and the heartbeat.

    They authenticate with a token as in a pod (the chart's ServiceAccounts): with the admin
    client certificate the API server verified its chain on every request, 7 % of its CPU in a
    1,000-flow ping, a cost no in-cluster client has.
    """

    def kubectl(*args: str) -> str:
        argv = [str(tools_bin_dir() / "kubectl"), f"--kubeconfig={cluster.kubeconfig_path}"]
        return subprocess.run([*argv, *args], check=True, capture_output=True, text=True).stdout

    for crd in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        kubectl("apply", "-f", str(crd))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    kubectl("create", "namespace", namespace)
    kubectl("create", "serviceaccount", "adf-bench", f"--namespace={namespace}")
    kubectl("create", "clusterrolebinding", "adf-bench", "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:adf-bench")  # fmt: skip
    token = kubectl("create", "token", "adf-bench", f"--namespace={namespace}", "--duration=2h")
    path = cluster.state_dir / "bench-kubeconfig"
    ca = (cluster.state_dir / "pki" / "ca.crt").read_bytes()
    path.write_text(kubeconfig(cluster.server, ca, {"token": token.strip()}, namespace))
    return path


def admin_client(kubeconfig_path: Path) -> client.ApiClient:
    """A client of the control plane as its admin, pooled for the benchmarks' 16 threads."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        str(kubeconfig_path), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def every_flow_accepted(api: client.CustomObjectsApi, namespace: str, flows: int) -> bool:
    """Whether the operator has written a first status (its conditions) on `flows` DataFlows."""
    listed = api.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                               names.FLOW_PLURAL)  # fmt: skip
    items = cast(dict[str, Any], listed)["items"]
    return sum(1 for f in items if (f.get("status") or {}).get("conditions")) >= flows


class FirstSeen(threading.Thread):
    """Records when each object listed by ``list_call(*args)`` is first seen on a watch that
    matches ``seen_when`` (on the local monotonic clock), until ``expected`` were."""

    def __init__(
        self,
        list_call: Callable[..., Any],
        *args: str,
        expected: int,
        seen_when: Callable[[dict[str, Any]], bool] = lambda _obj: True,
    ) -> None:
        super().__init__(daemon=True)
        self.list_call, self.args, self.expected, self.seen_when = (
            list_call, args, expected, seen_when,
        )  # fmt: skip
        self.seen: dict[str, float] = {}
        self.started = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]

    def run(self) -> None:
        self.started.set()
        events = self._watch.stream(  # type: ignore[no-untyped-call]
            self.list_call, *self.args, timeout_seconds=600
        )
        for event in events:
            obj = event["raw_object"]  # the object as the API sent it, whatever its kind
            if self.seen_when(obj):
                self.seen.setdefault(obj["metadata"]["name"], time.perf_counter())
            if len(self.seen) >= self.expected:
                break

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


class Result(Protocol):
    def verdicts(self) -> dict[str, Any]: ...


def run(
    argv: list[str] | None,
    *,
    name: str,
    doc: str,
    default_flows: int,
    flows_help: str,
    measure: Callable[[int, Path, Callable[[str], None]], Any],
    targets: dict[str, Any],
    complete: Callable[[Any, int], bool],
) -> int:
    """Exit 0 when `complete(result, flows)` holds (every flow got its run), else 1."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}_bench",
                                     description=doc.splitlines()[0])  # fmt: skip
    parser.add_argument("--flows", type=int, default=default_flows, help=flows_help)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{name} bench] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix=f"adf-{name}-bench-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = measure(args.flows, workdir, log)
    report = {**asdict(result), "targets": targets, "verdicts": result.verdicts()}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if complete(result, args.flows) else 1
