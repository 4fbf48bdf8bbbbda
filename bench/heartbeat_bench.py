"""`python -m bench.heartbeat_bench [--flows 1000] [--json FILE]`: the heartbeat at scale.

On a private dev control plane: N DataFlows (every 1m), all due; the real `adf heartbeat serve`
and the real operator (`python -m adf_operator`, one replica) run as processes. One ping is
timed, then the time from the ping to each DataFlowRun's creation (seen on a watch) gives p50/p99
per flow; the heartbeat's peak RSS comes from the kernel (VmHWM). Targets (issue 5): the ping
answers in < 2 s, p99 ping -> run created < 10 s, heartbeat RSS < 150 MB.

The pod runner is stopped after start-up: the runs' Jobs and pods are created but not executed, so
the figures measure scheduling, not N engine processes competing for the CPU.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import names
from bench import scale
from devcluster.controlplane import ControlPlane, free_port, stop_group

NAMESPACE = "bench-heartbeat"
TOKEN = "bench-heartbeat-token"

TARGETS = {"ping_seconds": 2.0, "run_created_p99_seconds": 10.0, "heartbeat_rss_mb": 150.0}


@dataclass
class Result:
    flows: int
    ping_seconds: float
    flows_triggered: int
    flows_pending: int
    second_ping_seconds: float
    runs_created: int
    flow_marked_p99_seconds: float
    run_created_p50_seconds: float
    run_created_p99_seconds: float
    last_run_created_seconds: float
    heartbeat_rss_mb: float

    def verdicts(self) -> dict[str, str]:
        values = asdict(self)
        return {k: "PASS" if values[k] < limit else "MISS" for k, limit in TARGETS.items()}


def flow(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "source": {"sql": {"url": {"value": "sqlite:////tmp/adf-bench-src.db"}, "table": "t"}},
            "sink": {"sql": {"url": {"value": "sqlite:////tmp/adf-bench-dst.db"}, "table": "t"}},
            "schedule": {"every": "1m"},
        },
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


@contextmanager
def process(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own group, always stopped (with its children) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        try:
            yield proc
        finally:
            stop_group(proc.pid)


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def post(url: str, timeout: float = 120.0) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    return time.perf_counter() - started, reply


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def measure(flows: int, workdir: Path, log: Any) -> Result:
    cluster = ControlPlane(state_dir=workdir / "cluster")
    with cluster:
        stop_group(cluster.pids.pop("podrunner"))  # runs are created, not executed (see above)
        service_kubeconfig = scale.prepare_cluster(cluster, NAMESPACE)
        api = client.CustomObjectsApi(scale.admin_client(cluster.kubeconfig_path))
        env = {**os.environ, "KUBECONFIG": str(service_kubeconfig)}
        token_file = workdir / "token"
        token_file.write_text(TOKEN)
        port = free_port()
        adf = str(Path(sys.executable).with_name("adf"))
        serve = [
            adf,
            "heartbeat",
            "serve",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--token-file={token_file}",
            f"--namespace={NAMESPACE}",
            "--log-level=WARNING",
        ]
        operator = [sys.executable, "-m", "adf_operator", f"--namespace={NAMESPACE}",
                    "--log-format=plain"]  # fmt: skip
        with (
            process(serve, workdir / "heartbeat.log", env) as heartbeat,
            process(operator, workdir / "operator.log", env),
        ):
            log(f"creating {flows} DataFlows")
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: api.create_namespaced_custom_object(
                    API_GROUP, API_VERSION, NAMESPACE, names.FLOW_PLURAL, flow(f"flow-{i:04d}")
                ), range(flows)))  # fmt: skip
            created = datetime.now(UTC)

            log("waiting for the operator to accept every flow")
            wait(lambda: scale.every_flow_accepted(api, NAMESPACE, flows), 600,
                 "the operator's first status on every flow")  # fmt: skip
            log("waiting for a slot after the flows' creation")
            wait(lambda: datetime.now(UTC).replace(second=0, microsecond=0) > created, 70, "a slot")
            base = f"http://127.0.0.1:{port}"
            wait(lambda: _ok(base + "/readyz"), 60, "the heartbeat's /readyz")

            listing = (api.list_namespaced_custom_object, API_GROUP, API_VERSION, NAMESPACE)
            watcher = scale.FirstSeen(*listing, names.RUN_PLURAL, expected=flows)
            marks = scale.FirstSeen(*listing, names.FLOW_PLURAL, expected=flows, seen_when=_marked)
            for thread in (watcher, marks):
                thread.start()
                thread.started.wait(10)
            time.sleep(1)  # the watch request is in flight; runs cannot exist before the ping
            log("ping")
            ping_started = time.perf_counter()
            ping_seconds, reply = post(base + "/heartbeat")
            watcher.join(300)
            marks.join(10)
            for thread in (watcher, marks):
                thread.stop()
            second_ping_seconds, _ = post(base + "/heartbeat")
            latencies = [t - ping_started for t in watcher.seen.values()]
            marked = [t - ping_started for t in marks.seen.values()] or [float("nan")]
            rss = peak_rss_mb(heartbeat.pid)
    if not latencies:
        raise RuntimeError("no DataFlowRun was created")
    return Result(
        flows=flows,
        ping_seconds=round(ping_seconds, 3),
        flows_triggered=reply["flowsTriggered"],
        flows_pending=reply["flowsPending"],
        second_ping_seconds=round(second_ping_seconds, 3),
        runs_created=len(latencies),
        flow_marked_p99_seconds=round(percentile(marked, 0.99), 3),
        run_created_p50_seconds=round(statistics.median(latencies), 3),
        run_created_p99_seconds=round(percentile(latencies, 0.99), 3),
        last_run_created_seconds=round(max(latencies), 3),
        heartbeat_rss_mb=round(rss, 1),
    )


def _marked(flow: dict[str, Any]) -> bool:
    return names.SCHEDULED_TIME in (flow["metadata"].get("annotations") or {})


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    return scale.run(
        argv,
        name="heartbeat",
        doc=__doc__ or "",
        default_flows=1000,
        flows_help="DataFlows, all due",
        measure=measure,
        targets=TARGETS,
        complete=lambda r, n: r.flows_triggered + r.flows_pending == n and r.runs_created == n,
    )


if __name__ == "__main__":
    sys.exit(main())
