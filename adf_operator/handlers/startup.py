"""Operator start-up: kopf settings for a restart-safe operator, and the API client."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException

from adf_operator import kube, metrics, names
from adf_operator.config import OperatorConfig

BACKOFF = 10.0
T = TypeVar("T")


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is never built nor stored.

    kopf builds one (a deep copy of the body) on every watch event, also of Jobs and pods, for
    change handlers to diff against; this operator has none, and the copies were a sixth of its
    CPU during a 1,000-flow ping."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Bounded watches (kopf#698, #734: streams can go quiet), no peering (one replica, Recreate
    rollout). Every handler is an event handler or an activity, so kopf keeps no progress on our
    objects and needs no diff base (see handlers/dataflow.py)."""
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
    settings.persistence.diffbase_storage = NoDiffBase()
    memo.executor = settings.execution.executor
    # What follows a trigger (its record in the flow's status, the run's Job) waits behind
    # triggers: in a burst (a ping that finds 1,000 flows due) every run is created first, and
    # follow-ups never hold more than a quarter of the handler threads.
    memo.follow_up_gate = asyncio.Semaphore(max(1, config.workers // 4))
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


async def in_handler_pool(memo: kopf.Memo, call: Callable[..., T], *args: Any) -> T:
    """Run a blocking action from an async handler the way kopf runs a sync handler: in its
    handler threads, with the context copied (kopf.event needs it)."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(memo.executor, functools.partial(context.run, call, *args))


@contextmanager
def api_errors(resource: str) -> Iterator[None]:
    """An API failure is counted and retried after a delay (bounded by the handler's `retries`)."""
    try:
        yield
    except ApiException as exc:
        metrics.METRICS.reconcile_error(resource, f"api-{exc.status}")
        message = f"Kubernetes API error {exc.status}: {exc.reason}"
        raise kopf.TemporaryError(message, delay=BACKOFF) from exc
