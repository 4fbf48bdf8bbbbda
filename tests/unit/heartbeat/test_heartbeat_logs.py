"""`adf heartbeat serve --log-format …`: what the process writes to stderr, line by line.

The real console script runs as a subprocess on 127.0.0.1, against a Kubernetes API address where
nothing listens (a real refused connection), so its warning and error paths log too: a refused
ping, a failed ping, a failed readiness check, a failed dashboard read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

ADF = Path(sys.executable).with_name("adf")
TOKEN = "log-test-token-7f3a9c1e5b"
WRONG = "wrong-token-0d2e4f6a8c"
STARTUP_TIMEOUT = 30.0
Serve = Callable[[str], tuple[str, "subprocess.Popen[str]"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server address refuses connections."""
    server = f"https://127.0.0.1:{free_port()}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": server}}],
        "users": [{"name": "nobody", "user": {"token": "kube-api-token-not-logged"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
    }))  # fmt: skip
    return path


def request(url: str, method: str = "GET", token: str | None = None) -> int:
    """The HTTP status of one request (errors included)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method,
                                 headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """serve(log_format) -> (base URL, the process); the process is always stopped."""
    started: list[subprocess.Popen[str]] = []

    def start(log_format: str) -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
        proc = subprocess.Popen(
            [str(ADF), "heartbeat", "serve", "--host=127.0.0.1", f"--port={port}",
             f"--kubeconfig={kubeconfig}", f"--log-format={log_format}"],
            env={**os.environ, "ADF_HEARTBEAT_TOKEN": TOKEN, "KUBERNETES_SERVICE_HOST": ""},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {proc.communicate()}"
            try:
                if request(f"{base}/healthz") == 200:
                    return base, proc
            except OSError:
                pass
            assert time.monotonic() < deadline, "the heartbeat did not answer /healthz"
            time.sleep(0.1)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def exercise_and_stop(base: str, proc: subprocess.Popen[str]) -> str:
    """Requests that log on every level; then SIGTERM and the process's whole output."""
    assert request(f"{base}/heartbeat", "POST", WRONG) == 401
    assert request(f"{base}/heartbeat", "POST", TOKEN) == 500
    assert request(f"{base}/readyz") == 503
    assert request(f"{base}/api/v1/dataflows", token=TOKEN) >= 500
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    return stdout + stderr


def test_json_logs_are_json_lines_without_the_token(serve: Serve) -> None:
    base, proc = serve("json")
    output = exercise_and_stop(base, proc)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    address = base.removeprefix("http://")
    startup = [r for r in records if r["message"].startswith(f"heartbeat on {address} ")]
    assert startup and (startup[0]["level"], startup[0]["logger"]) == ("INFO", "adf.heartbeat")
    refused = [r for r in records if r["message"].startswith("ping from 127.0.0.1 refused: 401")]
    assert refused and refused[0]["level"] == "WARNING"
    failed = [r for r in records if r["message"] == "ping from 127.0.0.1 failed"]
    assert failed and failed[0]["level"] == "ERROR" and "exception" in failed[0]
    assert any(r["message"].startswith("not ready:") for r in records)
    for secret in (TOKEN, WRONG, "kube-api-token-not-logged"):
        assert secret not in output


def test_text_logs_are_lines_for_people(serve: Serve) -> None:
    base, proc = serve("text")
    output = exercise_and_stop(base, proc)
    assert " INFO adf.heartbeat: heartbeat on 127.0.0.1:" in output
    assert " WARNING adf.heartbeat: ping from 127.0.0.1 refused: 401" in output
    assert not output.lstrip().startswith("{")
    assert TOKEN not in output and WRONG not in output


def test_unknown_log_format_is_a_usage_error() -> None:
    proc = subprocess.run(
        [str(ADF), "heartbeat", "serve", "--log-format=xml"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200"},  # the error box on one line
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Invalid value for '--log-format'" in proc.stderr
    assert "'xml' is not one of 'text', 'json'" in proc.stderr
