"""What the control-plane benchmarks (operator, heartbeat) share: the cluster's preparation, and
the command line (parse, measure in a work folder, print the figures with their targets and
verdicts as JSON)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

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
