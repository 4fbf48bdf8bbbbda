"""`adf heartbeat ping` against a real heartbeat server on 127.0.0.1, and `serve`'s refusals."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
from heartbeat_support import NOW, MemoryFlowStore, flow_body, serving
from typer.testing import CliRunner

from adf_operator.heartbeat.app import Settings, create_app
from adf_operator.heartbeat.cli import register
from adf_operator.heartbeat.security import TokenSource

TOKEN = "cli-test-token"


class FlakyStore(MemoryFlowStore):
    """Fails its first ``failures`` lists, like an API server that is restarting."""

    def __init__(self, failures: int, *flows: dict[str, Any]) -> None:
        super().__init__(*flows)
        self.failures = failures

    async def list_flows(self) -> list[dict[str, Any]]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("API server restarting")
        return await super().list_flows()


@pytest.fixture
def adf() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Keep the subcommand group."""

    return app


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def invoke(adf: typer.Typer, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(adf, ["heartbeat", *args], env=env)


def heartbeat_app(store: MemoryFlowStore) -> Any:
    return create_app(store, Settings(token=TokenSource(value=TOKEN), clock=lambda: NOW))


def test_ping_prints_the_reply(adf: typer.Typer, token_file: Path) -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    with serving(heartbeat_app(store)) as base:
        result = invoke(adf, "ping", f"--url={base}/heartbeat", f"--token-file={token_file}")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "flowsDue": 1,
        "flowsTriggered": 1,
        "flowsSkipped": 0,
        "flowsFailed": 0,
        "flowsPending": 0,
        "timestamp": "2026-05-01T10:05:30Z",
    }
    assert len(store.patches) == 1


def test_ping_reads_the_token_from_the_environment(adf: typer.Typer) -> None:
    with serving(heartbeat_app(MemoryFlowStore())) as base:
        result = invoke(adf, "ping", f"--url={base}/heartbeat", env={"ADF_HEARTBEAT_TOKEN": TOKEN})
    assert result.exit_code == 0, result.stderr


def test_ping_dry_run(adf: typer.Typer, token_file: Path) -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    with serving(heartbeat_app(store)) as base:
        result = invoke(
            adf, "ping", f"--url={base}/heartbeat", f"--token-file={token_file}", "--dry-run"
        )
    assert json.loads(result.stdout)["dryRun"] is True
    assert store.patches == []


def test_bad_token_fails_at_once_without_retrying(adf: typer.Typer, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    with serving(heartbeat_app(store)) as base:
        result = invoke(
            adf,
            "ping",
            f"--url={base}/heartbeat",
            f"--token-file={wrong}",
            "--retries=3",
            "--backoff=0.01",
        )
    assert result.exit_code == 1
    assert "attempt 1 failed: HTTP 401: unauthorized: the token is not valid" in result.stderr
    assert "attempt 2" not in result.stderr
    assert store.patches == [] and result.stdout == ""


def test_server_errors_are_retried_with_backoff(adf: typer.Typer, token_file: Path) -> None:
    store = FlakyStore(2, flow_body("due", {"every": "5m"}))
    with serving(heartbeat_app(store)) as base:
        result = invoke(
            adf,
            "ping",
            f"--url={base}/heartbeat",
            f"--token-file={token_file}",
            "--retries=3",
            "--backoff=0.01",
        )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("HTTP 500: internal:") == 2
    assert json.loads(result.stdout)["flowsTriggered"] == 1


def test_no_server_fails_after_the_retries(adf: typer.Typer, token_file: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = invoke(
        adf,
        "ping",
        f"--url=http://127.0.0.1:{port}/heartbeat",
        f"--token-file={token_file}",
        "--retries=2",
        "--backoff=0.01",
        "--timeout=2",
    )
    assert result.exit_code == 1
    assert result.stderr.count("no answer from") == 3
    assert "attempt 3 failed" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url=http://127.0.0.1:1/heartbeat"], "no token"),
        (
            ["--url=file:///etc/passwd", "--token-file={token}"],
            "must be an http:// or https:// URL",
        ),
        (["--url=http://127.0.0.1:1/heartbeat", "--token-file={missing}"], "cannot read"),
    ],
)
def test_ping_usage_errors_exit_2(
    adf: typer.Typer, token_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    filled = [a.format(token=token_file, missing=tmp_path / "missing") for a in args]
    result = invoke(adf, "ping", *filled, env={"ADF_HEARTBEAT_TOKEN": ""})
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no token: pass --token-file or set $ADF_HEARTBEAT_TOKEN"),
        (["--token-file={token}", "--allow-cidr=10.0.0.0/33"], "--allow-cidr '10.0.0.0/33'"),
        (["--token-file={empty}"], "is empty or unreadable"),
    ],
)
def test_serve_refuses_bad_settings(
    adf: typer.Typer, token_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    filled = [a.format(token=token_file, empty=empty) for a in args]
    result = invoke(adf, "serve", *filled, env={"ADF_HEARTBEAT_TOKEN": ""})
    assert result.exit_code == 2
    assert message in result.stderr
