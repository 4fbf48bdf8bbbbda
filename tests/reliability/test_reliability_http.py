"""The heartbeat's door: no token (401), an address outside the allow-list (403), a brake after
repeated wrong tokens (429, even for the right token), and hand-written malformed requests to the
heartbeat and the dashboard's JSON API (oversized, truncated, wrong content type, broken encoding,
deep nesting, huge headers): never a 5xx, never a hang. Schemathesis fuzzing of the JSON API lives
in tests/integration/test_dashboard_fuzz.py; these are the cases a generator does not write.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.pytest_plugin import Kubectl
from soak.report import Recorder, Trial
from tests.reliability.harness import HeartbeatProcess, bearer, post

pytestmark = pytest.mark.integration

TOKEN = "reliability-http-token-9f8e7d6c5b4a"
ANSWER_WITHIN = 10.0  # seconds: a malformed request that takes longer counts as a hang


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return path


@pytest.fixture
def heartbeat(namespace: str, token_file: Path, tmp_path: Path) -> Iterator[HeartbeatProcess]:
    server = HeartbeatProcess(namespace, token_file, tmp_path / "heartbeat.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def raw(port: int, request: bytes, *, half_close: bool) -> tuple[int | None, float]:
    """Send bytes as they are; (HTTP status or None when the server just closed, seconds).

    A truncated request is followed by a half-close (the client gives up sending); the server
    must then neither wait for the rest nor answer with a 5xx."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            raise AssertionError(f"no answer within {ANSWER_WITHIN} s: {request[:120]!r}") from None
    elapsed = time.monotonic() - started
    if not answer:
        return None, elapsed
    return int(answer.split(b" ", 2)[1]), elapsed


def http(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TRUNCATED = "truncated"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}


def malformed(flow_path: str) -> dict[str, bytes]:
    """Requests no client library would send; each must get a 4xx (or a close), quickly."""
    cases: dict[str, bytes] = {}
    for where, path in (("heartbeat", "/heartbeat"), ("api run", f"{flow_path}/run")):
        cases |= {
            f"{where}: 1 MiB body": http(
                "POST", path, {**JSON, "Content-Length": str(1 << 20)}, b"{" + b" " * (1 << 20)
            ),
            f"{where}: body {TRUNCATED}": http(
                "POST", path, {**JSON, "Content-Length": "100"}, b'{"dryRun": tr'
            ),
            f"{where}: XML body": http(
                "POST", path, {**AUTH, "Content-Type": "application/xml", "Content-Length": "4"},
                b"<x/>",
            ),
            f"{where}: form body": http(
                "POST", path,
                {**AUTH, "Content-Type": "application/x-www-form-urlencoded",
                 "Content-Length": "9"},
                b"dryRun=no",
            ),
            f"{where}: invalid UTF-8": http(
                "POST", path, {**JSON, "Content-Length": "4"}, b"\xff\xfe\xfd\xfc"
            ),
            f"{where}: broken chunked encoding": http(
                "POST", path, {**JSON, "Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n"
            ),
            f"{where}: 64 KiB header": http(
                "POST", path, {**JSON, "X-Padding": "a" * 65536, "Content-Length": "2"}, b"{}"
            ),
            f"{where}: token of 64 KiB": http(
                "POST", path, {"Authorization": "Bearer " + "t" * 65536, "Content-Length": "2"},
                b"{}",
            ),
        }  # fmt: skip
    cases |= {
        "api: unicode and percent garbage in the path": http(
            "GET", "/api/v1/dataflows/%ff%fe/%00%c3%28", AUTH, b""
        ),
        "api: name of 300 characters": http(
            "GET", "/api/v1/dataflows/default/" + "n" * 300, AUTH, b""
        ),
        "api: query string of 32 KiB": http("GET", "/api/v1/dataflows?x=" + "q" * 32768, AUTH, b""),
        "api: unknown method": http("BREW", "/api/v1/dataflows", AUTH, b""),
        "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        f"request line only, {TRUNCATED}": b"POST /heartbeat HTTP/1.1\r\n",
    }
    return cases


def test_heartbeat_refuses_without_token_and_brakes_repeated_failures(
    heartbeat: HeartbeatProcess,
) -> None:
    status, reply = post(heartbeat.url + "/heartbeat")
    assert (status, reply["error"]["code"]) == (401, "unauthorized")
    status, _ = post(heartbeat.url + "/heartbeat", headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    statuses = [post(heartbeat.url + "/heartbeat", headers=bearer("guess"))[0] for _ in range(12)]
    assert statuses == [401] * 8 + [429] * 4, statuses  # 10 failures, the first two above
    status, reply = post(heartbeat.url + "/heartbeat", headers=bearer(TOKEN))
    assert (status, reply["error"]["code"]) == (429, "too_many_requests")  # the brake holds
    assert TOKEN not in heartbeat.output() and "guess" not in heartbeat.output()


def test_heartbeat_refuses_addresses_outside_the_allow_list(
    namespace: str, token_file: Path, tmp_path: Path
) -> None:
    server = HeartbeatProcess(
        namespace, token_file, tmp_path / "allow.log", "--allow-cidr=10.0.0.0/8"
    )
    try:
        server.wait_ready()
        status, reply = post(server.url + "/heartbeat", headers=bearer(TOKEN))
        assert (status, reply["error"]["code"]) == (403, "forbidden")
        # A client's own X-Forwarded-For claim is not believed unless configured.
        forged = {**bearer(TOKEN), "X-Forwarded-For": "10.1.2.3"}
        assert post(server.url + "/heartbeat", headers=forged)[0] == 403
    finally:
        server.stop()


def test_malformed_requests_get_no_server_error_and_no_hang(
    heartbeat: HeartbeatProcess, kubectl: Kubectl, namespace: str, report: Recorder
) -> None:
    flow_path = f"/api/v1/dataflows/{namespace}/no-such-flow"
    answers = {
        label: raw(heartbeat.port, request, half_close=TRUNCATED in label)
        for label, request in malformed(flow_path).items()
    }
    for _, seconds in answers.values():
        report.add(
            Trial(
                "malformed HTTP requests",
                recovery_seconds=seconds,
                recovery_from="request sent -> answer (or close), the slowest",
            )
        )
    server_errors = {k: v for k, v in answers.items() if v[0] is not None and v[0] >= 500}
    assert not server_errors, server_errors
    slow = {k: v for k, v in answers.items() if v[1] > ANSWER_WITHIN / 2}
    assert not slow, slow
    accepted = {k: v for k, v in answers.items() if v[0] is not None and v[0] < 400}
    assert not accepted, accepted
    unanswered = {k: v for k, v in answers.items() if v[0] is None and TRUNCATED not in k}
    assert not unanswered, f"closed without an answer: {unanswered}"
    assert heartbeat.proc.poll() is None, heartbeat.output()[-2000:]
    # Still serving, and nothing was marked or run by the garbage.
    assert post(heartbeat.url + "/heartbeat", headers=bearer(TOKEN))[0] == 200
    assert kubectl.get("dataflowruns", "-n", namespace)["items"] == []


def test_deeply_nested_json_is_a_bad_request(heartbeat: HeartbeatProcess) -> None:
    deep = b"[" * 8000 + b"]" * 8000  # 16,000 bytes: under the 16 KiB body limit
    request = http("POST", "/heartbeat", {**JSON, "Content-Length": str(len(deep))}, deep)
    assert raw(heartbeat.port, request, half_close=False)[0] == 400
