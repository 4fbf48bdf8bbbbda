"""The chart's Grafana dashboard queries only metrics that the operator and the heartbeat export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from adf_operator.heartbeat.metrics import Metrics
from adf_operator.metrics import OperatorMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "charts/active-data-flow/dashboards/grafana.json"


def exported(registry: CollectorRegistry) -> set[str]:
    """Every sample name a scrape can show (counters' _total, histograms' _bucket/_sum/_count)."""
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count"))
    return names


def test_every_query_names_an_exported_metric() -> None:
    doc = json.loads(DASHBOARD.read_text())
    known = exported(OperatorMetrics().registry) | exported(Metrics().registry)
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in re.findall(r"\badf_[a-z_]+", expr)}
    assert used and used <= known, used - known
    operator_families = {f.name for f in OperatorMetrics().registry.collect()}
    assert {n for n in operator_families if any(n in u for u in used)} == operator_families


def test_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in doc["panels"])
    assert all(
        p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for p in doc["panels"]
    )
