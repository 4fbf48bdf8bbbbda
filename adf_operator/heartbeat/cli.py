"""`adf heartbeat serve` and `adf heartbeat ping`, loaded through the adf.commands entry point.

``serve`` runs the heartbeat service; ``ping`` is what the chart's CronJob (or any external pinger)
runs: it POSTs to the heartbeat with the token, retries connection errors, timeouts, 429 and 5xx
with exponential backoff, prints the reply and exits 0 — or exits 1 with the last error.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from adf_operator import logsetup
from adf_operator.heartbeat.security import AddressPolicy, TokenSource

TOKEN_ENV = "ADF_HEARTBEAT_TOKEN"
MAX_BACKOFF = 30.0
_PERMANENT = frozenset({400, 401, 403, 404, 405, 413})


class LogFormat(StrEnum):
    """The choices of --log-format (adf_operator.logsetup.FORMATS)."""

    text = "text"
    json = "json"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


heartbeat_app = typer.Typer(
    name="heartbeat",
    help="The heartbeat service: pings mark the DataFlows that are due.",
    no_args_is_help=True,
)

TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help=f"File holding the bearer token (a mounted Secret); else ${TOKEN_ENV}.",
        dir_okay=False,
    ),
]


@heartbeat_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8080,
    token_file: TokenFile = None,
    allow_cidr: Annotated[
        list[str] | None,
        typer.Option(help="Only these networks may ping (repeatable); default: any address."),
    ] = None,
    trust_forwarded_for: Annotated[
        bool,
        typer.Option(help="Judge the address from X-Forwarded-For (behind a trusted proxy only)."),
    ] = False,
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watched namespace (repeatable); default: all."),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Kubeconfig file; default $KUBECONFIG, ~/.kube/config or in-cluster."),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option(help="Serve the dashboard at /dashboard/ and its API at /api/v1/.")
    ] = True,
    dashboard_open_read_only: Annotated[
        bool,
        typer.Option(help="Let anyone read the dashboard; actions still need the token."),
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option(help="text lines for people, JSON lines for log collectors.")
    ] = LogFormat.text,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False)] = LogLevel.INFO,
) -> None:
    """Serve POST /heartbeat, /healthz, /readyz, /metrics and the dashboard."""
    from aiohttp import web  # imported here: `adf --help` stays fast
    from kubernetes import client

    from adf_operator import dashboard as dashboard_app
    from adf_operator.heartbeat.app import Settings, create_app
    from adf_operator.heartbeat.kube import KubeFlowStore, api_client

    logsetup.configure(log_format, log_level)
    try:
        token = _token_source(token_file)
        policy = AddressPolicy(allow_cidr or [], trust_forwarded_for)
        api = api_client(kubeconfig)
    except Exception as exc:  # bad flags or no kubeconfig: say which, without a traceback
        typer.echo(f"adf heartbeat serve: {exc}", err=True)
        raise typer.Exit(2) from None
    scope = ", ".join(namespace) if namespace else "all namespaces"
    logging.getLogger("adf.heartbeat").info(
        "heartbeat on %s:%d for %s; allow-list %s", host, port, scope, allow_cidr or "off"
    )
    settings = Settings(token=token, policy=policy)
    app = create_app(KubeFlowStore(client.CustomObjectsApi(api), namespace or []), settings)
    if dashboard:
        dashboard_app.setup(
            app,
            cluster=dashboard_app.Cluster(api, namespace or []),
            token=token,
            read_only_open=dashboard_open_read_only,
            limiter=settings.limiter,
        )
    web.run_app(app, host=host, port=port, print=None)


def _token_source(token_file: Path | None) -> TokenSource:
    if token_file is not None:
        return TokenSource(path=token_file)
    value = os.environ.get(TOKEN_ENV)
    if not value:
        raise ValueError(f"no token: pass --token-file or set ${TOKEN_ENV}")
    return TokenSource(value=value)


@heartbeat_app.command("ping")
def ping_command(
    url: Annotated[str, typer.Option(help="The heartbeat URL, e.g. http://host:8080/heartbeat.")],
    token_file: TokenFile = None,
    retries: Annotated[int, typer.Option(help="Extra attempts after a failure.", min=0)] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds per attempt.", min=0.1)] = 30.0,
    backoff: Annotated[float, typer.Option(help="First wait between attempts (doubles).")] = 1.0,
    dry_run: Annotated[bool, typer.Option(help="Report what is due without marking it.")] = False,
) -> None:
    """POST to the heartbeat and print its reply; exit 1 when it fails after the retries."""
    try:
        token = _read_token(token_file)
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"--url {url!r} must be an http:// or https:// URL")
    except ValueError as exc:
        typer.echo(f"adf heartbeat ping: {exc}", err=True)
        raise typer.Exit(2) from None
    body = json.dumps({"dryRun": True} if dry_run else {}).encode()
    wait = backoff
    for attempt in range(retries + 1):
        status, text, retry_after = _post(url, token, body, timeout)
        if status == 200:
            typer.echo(text)
            return
        problem = f"HTTP {status}: {_error_message(text)}" if status else text
        final = attempt == retries or status in _PERMANENT
        typer.echo(f"adf heartbeat ping: attempt {attempt + 1} failed: {problem}", err=True)
        if final:
            raise typer.Exit(1)
        time.sleep(min(max(wait, retry_after or 0.0), MAX_BACKOFF))
        wait *= 2


def _read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {token_file}: {exc.strerror}") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(f"no token: pass --token-file (non-empty) or set ${TOKEN_ENV}")
    return token


def _post(url: str, token: str, body: bytes, timeout: float) -> tuple[int, str, float | None]:
    """One attempt: (HTTP status or 0 for no answer, body or error text, Retry-After seconds)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace"), None
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After", "")
        wait = float(retry_after) if retry_after.isdigit() else None
        return exc.code, exc.read().decode(errors="replace"), wait
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, f"no answer from {url}: {reason}", None


def _error_message(text: str) -> str:
    try:
        error = json.loads(text)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return text[:200]


def register(app: typer.Typer) -> None:
    """Add the heartbeat subcommands to the `adf` CLI."""
    app.add_typer(heartbeat_app)
