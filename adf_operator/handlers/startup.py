"""Operator start-up: kopf settings for a restart-safe operator, and the API client."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from adf_operator import kube, metrics, names
from adf_operator.config import OperatorConfig

BACKOFF = 10.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Bounded watches (kopf#698, #734: streams can go quiet), no peering (one replica, Recreate
    rollout). No storage settings: every handler is an event handler or an activity, so kopf
    keeps no progress or diff base on our objects (see handlers/dataflow.py)."""
    config = OperatorConfig.from_env()
    memo.config = config
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # Only the Jobs and pods of runs, filtered by the API server.
    settings.watching.label_selectors["batch", "v1", "jobs"] = names.LABEL_RUN
    settings.watching.label_selectors["v1", "pods"] = names.LABEL_RUN
    settings.posting.level = logging.WARNING  # our own events are explicit; no "handler succeeded"
    settings.posting.reporting_component = names.MANAGER
    settings.execution.max_workers = config.workers
    settings.peering.standalone = True
    metrics.serve_from_env()


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the API with the same credentials as our client (kube.api()), which reads
    KUBECONFIG when called; kopf's own client login uses the kubernetes package's import-time
    default and would miss a KUBECONFIG set later (as in tests)."""
    cfg = kube.api().configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _sep, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        trust_env=settings.networking.trust_env,
    )


@contextmanager
def api_errors(resource: str) -> Iterator[None]:
    """An API failure is counted and retried after a delay (bounded by the handler's `retries`)."""
    try:
        yield
    except ApiException as exc:
        metrics.METRICS.reconcile_error(resource, f"api-{exc.status}")
        message = f"Kubernetes API error {exc.status}: {exc.reason}"
        raise kopf.TemporaryError(message, delay=BACKOFF) from exc
