"""Names, labels and annotations shared by the operator, the heartbeat and the CLI.

Run names are deterministic, so creating the run for a slot twice answers AlreadyExists and no
slot ever runs twice (the CronJob controller names its Jobs the same way).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from adf_core.spec import API_GROUP, API_VERSION

API = f"{API_GROUP}/{API_VERSION}"
FLOW_PLURAL = "dataflows"
RUN_PLURAL = "dataflowruns"

LABEL_FLOW = f"{API_GROUP}/flow"
LABEL_RUN = f"{API_GROUP}/run"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "adf-operator"

# Patched by the heartbeat on a due flow: the slot (RFC 3339 UTC) and how many slots were missed.
SCHEDULED_TIME = f"{API_GROUP}/scheduled-time"
MISSED_SLOTS = f"{API_GROUP}/missed-slots"
# Set by a user (`adf trigger`) to run a flow now; the operator removes it once handled.
RUN_NOW = f"{API_GROUP}/run-now"

CONTAINER = "adf"


def scheduled_run_name(flow: str, slot: datetime) -> str:
    """``<flow>-<slot as unix minutes>``: one name per slot."""
    return f"{flow}-{int(slot.timestamp()) // 60}"


def manual_run_name(flow: str, request: str) -> str:
    """``<flow>-now-<hash>``: derived from the run-now annotation's value, so handling the same
    request twice (an operator restart) creates one run."""
    return f"{flow}-now-{hashlib.sha256(request.encode()).hexdigest()[:6]}"


def job_name(run: str) -> str:
    """The Job of a run has the run's name (at most 63 characters, enforced by the CRD)."""
    return run
