"""values.schema.json refuses wrong values before anything reaches the cluster, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"watch": {"scope": "everywhere"}}, "/watch/scope"),
    ({"watch": {"scope": "namespaces"}}, "/watch/namespaces"),
    ({"watch": {"scope": "namespaces", "namespaces": ["Shop"]}}, "/watch/namespaces/0"),
    ({"watch": {"namespaces": ["shop"]}}, "/watch/namespaces"),  # a list without the switch
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"repository": ""}}, "/image/repository"),
    ({"image": {"tag": "bad tag"}}, "/image/tag"),
    ({"operator": {"logFormat": "text"}}, "/operator/logFormat"),
    ({"operator": {"health": {"port": 0}}}, "/operator/health/port"),
    ({"operator": {"replicas": 2}}, "additional properties 'replicas'"),  # one operator only
    ({"heartbeat": {"port": 70000}}, "/heartbeat/port"),
    ({"heartbeat": {"replicas": 0}}, "/heartbeat/replicas"),
    ({"heartbeat": {"token": {"value": "short"}}}, "/heartbeat/token/value"),
    (
        {"heartbeat": {"token": {"existingSecret": "s", "value": "x" * 20}}},
        "/heartbeat/token/value",
    ),
    ({"heartbeat": {"allowCidrs": ["10.0.0.0"]}}, "/heartbeat/allowCidrs/0"),
    ({"heartbeat": {"service": {"type": "ExternalName"}}}, "/heartbeat/service/type"),
    ({"heartbeat": {"logFormat": "xml"}}, "/heartbeat/logFormat"),
    ({"heartbeat": {"dashboard": {"openReadOnly": "yes"}}}, "/heartbeat/dashboard/openReadOnly"),
    ({"heartbeat": {"dashboard": {"public": True}}}, "additional properties 'public'"),
    ({"grafanaDashboard": {"enabled": "true"}}, "/grafanaDashboard/enabled"),
    ({"grafanaDashboard": {"namespace": "Monitoring"}}, "/grafanaDashboard/namespace"),
    ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels"),
    ({"pinger": {"schedule": "every minute"}}, "/pinger/schedule"),
    ({"pinger": {"retries": -1}}, "/pinger/retries"),
    ({"pinger": {"url": "ftp://x"}}, "/pinger/url"),
    ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ({"heartbat": {"enabled": False}}, "additional properties 'heartbat'"),
    ({"operator": {"resources": {"request": {}}}}, "additional properties 'request'"),
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_refuses_bad_values_naming_the_field(
    values: dict[str, Any], field: str, helm_fails: Callable[[dict[str, Any]], str]
) -> None:
    error = helm_fails(values)
    assert "values don't meet the specifications of the schema" in error
    assert field in error, error


def test_template_checks_complement_the_schema(
    helm_fails: Callable[[dict[str, Any]], str],
) -> None:
    error = helm_fails({"operator": {"serviceAccount": {"create": False}}})
    assert "operator.serviceAccount.name is required" in error
