"""`python -m bench.operator_bench [--flows 200] [--json FILE]`: the operator under a burst.

On a private dev control plane, N DataFlows are triggered at once (their scheduled-time annotation
patched concurrently, as the heartbeat does); the real operator (`python -m adf_operator`, one
replica) creates one DataFlowRun and one Job per flow. Measured: seconds from the first trigger
until every run exists and until every Job exists, the resulting runs per minute, and the
operator's peak RSS from the kernel (VmHWM). Targets (issue 4): >= 300 runs created per minute,
RSS < 200 MB.

The pod runner is stopped after start-up: Jobs and pods are created but not executed, so the
figures measure the operator, not N engine processes competing for the CPU.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from adf_core.spec import API_GROUP, API_VERSION
from adf_operator import names
from bench import scale
from bench.heartbeat_bench import peak_rss_mb, process, wait
from devcluster.controlplane import ControlPlane, stop_group

NAMESPACE = "bench-operator"

TARGETS = {"runs_per_minute": 300.0, "operator_rss_mb": 200.0}


@dataclass
class Result:
    flows: int
    runs_created: int
    jobs_created: int
    runs_seconds: float
    jobs_seconds: float
    runs_per_minute: float
    operator_rss_mb: float

    def verdicts(self) -> dict[str, str]:
        return {
            "runs_per_minute": "PASS"
            if self.runs_per_minute >= TARGETS["runs_per_minute"]
            else "MISS",
            "operator_rss_mb": "PASS"
            if self.operator_rss_mb < TARGETS["operator_rss_mb"]
            else "MISS",
        }


def flow(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "source": {
                "sql": {"url": {"secretKeyRef": {"name": "src", "key": "url"}}, "table": "products"}
            },
            "sink": {
                "sql": {
                    "url": {"secretKeyRef": {"name": "dst", "key": "url"}},
                    "table": "products",
                    "mode": "upsert",
                    "keys": ["id"],
                }
            },
            "schedule": {"every": "1m"},
        },
    }


def measure(flows: int, workdir: Path, log: Callable[[str], None]) -> Result:
    cluster = ControlPlane(state_dir=workdir / "cluster")
    with cluster:
        stop_group(cluster.pids.pop("podrunner"))  # Jobs are created, not executed
        operator_kubeconfig = scale.prepare_cluster(cluster, NAMESPACE)
        api_client = scale.admin_client(cluster.kubeconfig_path)
        custom, batch = client.CustomObjectsApi(api_client), client.BatchV1Api(api_client)
        env = {**os.environ, "KUBECONFIG": str(operator_kubeconfig)}
        operator = [sys.executable, "-m", "adf_operator", f"--namespace={NAMESPACE}",
                    "--log-format=full"]  # fmt: skip
        with (
            process(operator, workdir / "operator.log", env) as proc,
            ThreadPoolExecutor(16) as pool,
        ):
            log(f"creating {flows} DataFlows")
            list(pool.map(lambda i: custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, NAMESPACE, names.FLOW_PLURAL, flow(f"flow-{i:04d}")
            ), range(flows)))  # fmt: skip

            log("waiting for the operator to accept every flow")
            wait(lambda: scale.every_flow_accepted(custom, NAMESPACE, flows), 600,
                 "the operator's first status on every flow")  # fmt: skip
            slot = datetime.now(UTC).replace(second=0, microsecond=0)
            patch = {"metadata": {"annotations": {
                names.SCHEDULED_TIME: slot.strftime("%Y-%m-%dT%H:%M:%SZ"), names.MISSED_SLOTS: "0",
            }}}  # fmt: skip
            watchers = [
                scale.FirstSeen(
                    custom.list_namespaced_custom_object,
                    API_GROUP,
                    API_VERSION,
                    NAMESPACE,
                    names.RUN_PLURAL,
                    expected=flows,
                ),
                scale.FirstSeen(batch.list_namespaced_job, NAMESPACE, expected=flows),
            ]
            for watcher in watchers:
                watcher.start()
                watcher.started.wait(10)
            time.sleep(1)  # the watch requests are in flight before the first trigger
            log(f"triggering {flows} flows at once")
            started = time.perf_counter()
            list(pool.map(lambda i: custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, NAMESPACE, names.FLOW_PLURAL, f"flow-{i:04d}", patch
            ), range(flows)))  # fmt: skip
            for watcher in watchers:
                watcher.join(600)
                watcher.stop()
            runs, jobs = (list(w.seen.values()) for w in watchers)
            rss = peak_rss_mb(proc.pid)
    runs_seconds = max(runs, default=started) - started
    return Result(
        flows=flows,
        runs_created=len(runs),
        jobs_created=len(jobs),
        runs_seconds=round(runs_seconds, 2),
        jobs_seconds=round(max(jobs, default=started) - started, 2),
        runs_per_minute=round(len(runs) / runs_seconds * 60, 1) if runs_seconds else 0.0,
        operator_rss_mb=round(rss, 1),
    )


def main(argv: list[str] | None = None) -> int:
    return scale.run(
        argv,
        name="operator",
        doc=__doc__ or "",
        default_flows=200,
        flows_help="DataFlows triggered at once",
        measure=measure,
        targets=TARGETS,
        complete=lambda r, n: r.runs_created == r.jobs_created == n,
    )


if __name__ == "__main__":
    sys.exit(main())
