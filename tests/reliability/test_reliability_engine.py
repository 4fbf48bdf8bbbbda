"""The engine pod killed at random points of a run, again and again over one flow.

Half of the kills are a SIGKILL of the pod's process (an OOM kill, a node crash), half a deletion
of the pod (eviction, a drain). After every kill the run must end (never stuck Running), the sink
must hold exactly a prefix of the source in cursor order with the watermark at its last row, and
the next run must resume right after it; at the end the sink equals the source row for row.
"""

from __future__ import annotations

import random
import time

import pytest

from adf_operator import names
from devcluster.controlplane import ControlPlane
from devcluster.pytest_plugin import Kubectl, wait_for
from soak.report import Recorder, Trial
from tests.reliability.harness import (
    Databases,
    OperatorProcess,
    check_prefix,
    compare,
    flow_manifest,
    kill_pod_process,
    running_pod,
    stuck,
    trials,
    trigger,
    wait_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

FLOW = "killed-engine"
ROWS_PER_KILL = 500  # a kill lands within a few batches of 100 of the run's start
ROW_DELAY = 0.002  # seconds per row: 0.2 s per batch


def test_engine_killed_at_random_points_loses_and_duplicates_nothing(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    dbs: Databases,
    operator: OperatorProcess,
    report: Recorder,
) -> None:
    kills = trials(short=3, long=20)
    rows = ROWS_PER_KILL * kills + 1000
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    dbs.fill(rows, "exports")
    expected = dbs.expected()
    kubectl.apply(flow_manifest(FLOW, row_delay=ROW_DELAY), namespace)

    prefix = 0
    for kill in range(kills):
        how = "process SIGKILL" if kill % 2 == 0 else "pod deleted"
        context = f"kill {kill + 1}/{kills} ({how}, seed {seed})"
        run = trigger(kubectl, namespace, FLOW)
        pod = running_pod(kubectl, namespace, run)["metadata"]["name"]
        wait_for(  # at least one new batch committed by this run
            lambda done=prefix: len(dbs.snapshot(FLOW, "exports")[1]) > done,
            timeout=120,
            what=f"a checkpoint of {run} ({context})",
        )
        time.sleep(rng.uniform(0, 0.4))  # the random point: anywhere in the next two batches
        killed_at = time.monotonic()
        if how == "process SIGKILL":
            kill_pod_process(control_plane.state_dir, namespace, pod)
        else:
            kubectl.run("delete", "pod", pod, "-n", namespace, "--wait=false")
        ended = wait_final(kubectl, namespace, run)
        recovery = time.monotonic() - killed_at
        assert ended["status"]["phase"] == "Failed", f"{context}: {ended['status']}"
        assert ended["status"].get("message"), f"{context}: a failed run says why"

        watermark, sink = dbs.snapshot(FLOW, "exports")
        check_prefix(expected, watermark, sink)
        assert len(sink) > prefix, f"{context}: the killed run committed nothing"
        seen = compare(expected[: len(sink)], sink)
        report.add(
            Trial(
                "engine pod killed",
                rows_checked=len(sink),
                lost=seen.lost,
                duplicated=seen.duplicated,
                stuck_runs=len(stuck(kubectl, namespace)),
                recovery_seconds=recovery,
                recovery_from="kill -> the run's status is final (Failed, with a reason)",
            )
        )
        prefix = len(sink)
        assert prefix < rows, f"{context}: the run finished before the kill; raise ROWS_PER_KILL"

    final_run = trigger(kubectl, namespace, FLOW)
    final = wait_final(kubectl, namespace, final_run, timeout=300)["status"]
    assert final["phase"] == "Succeeded", final
    assert final["rowsRead"] == rows - prefix, "the last run did not resume right after the prefix"
    result = dbs.compare("exports")
    assert (result.lost, result.duplicated, result.unexpected) == (0, 0, 0), result
    assert result.identical, result
    assert stuck(kubectl, namespace) == []
    assert operator.alive


def test_engine_killed_mid_run_is_retried_by_its_job_and_the_run_completes(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    dbs: Databases,
    operator: OperatorProcess,
    report: Recorder,
) -> None:
    """With `runTemplate.backoffLimit` above 0 a killed pod is not the run's end: the Job starts
    a new pod, which resumes at the committed watermark, and the run succeeds with every row
    exactly once."""
    rows = ROWS_PER_KILL * 4
    dbs.fill(rows, "exports")
    kubectl.apply(flow_manifest(FLOW, row_delay=ROW_DELAY, backoff_limit=2), namespace)
    run = trigger(kubectl, namespace, FLOW)
    pod = running_pod(kubectl, namespace, run)["metadata"]["name"]
    wait_for(
        lambda: len(dbs.snapshot(FLOW, "exports")[1]) > 0,
        timeout=120,
        what=f"a checkpoint of {run}",
    )
    killed_at = time.monotonic()
    kill_pod_process(control_plane.state_dir, namespace, pod)
    status = wait_final(kubectl, namespace, run, timeout=300)["status"]
    recovery = time.monotonic() - killed_at
    assert status["phase"] == "Succeeded", status
    pods = kubectl.get("pods", "-n", namespace, "-l", f"{names.LABEL_RUN}={run}")
    assert len(pods["items"]) == 2, "the Job should have retried the killed pod once"
    result = dbs.compare("exports")
    assert (result.lost, result.duplicated, result.unexpected) == (0, 0, 0), result
    assert result.identical, result
    report.add(
        Trial(
            "engine pod killed, Job retries it",
            rows_checked=rows,
            lost=result.lost,
            duplicated=result.duplicated,
            stuck_runs=len(stuck(kubectl, namespace)),
            recovery_seconds=recovery,
            recovery_from="kill -> the run Succeeded (the Job's second pod resumed)",
        )
    )
