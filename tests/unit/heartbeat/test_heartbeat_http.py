"""Every HTTP path of the heartbeat service, through aiohttp's test server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from heartbeat_support import NOW, MemoryFlowStore, flow_body

from adf_operator.heartbeat.app import Settings, create_app
from adf_operator.heartbeat.security import AddressPolicy, FailureLimiter, TokenSource

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")


class FakeClock:
    """Monotonic seconds for the auth-failure brake, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(
    store: MemoryFlowStore | None = None,
    *,
    allow: tuple[str, ...] = (),
    trust_forwarded_for: bool = False,
    limiter: FailureLimiter | None = None,
    max_body: int = 1024,
) -> web.Application:
    settings = Settings(
        token=TokenSource(value=TOKEN),
        policy=AddressPolicy(allow, trust_forwarded_for),
        limiter=limiter or FailureLimiter(),
        max_body=max_body,
        clock=lambda: NOW,
    )
    return create_app(store or MemoryFlowStore(flow_body("due", {"every": "5m"})), settings)


def with_client(
    app: web.Application, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]
) -> T:
    async def main() -> T:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await scenario(client)

    return asyncio.run(main())


def request(
    app: web.Application, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    """One request; returns (status, JSON body or text, headers)."""

    async def scenario(client: TestClient[Any, Any]) -> tuple[int, Any, dict[str, str]]:
        response = await client.request(method, path, **kwargs)
        is_json = response.content_type == "application/json"
        body = await response.json() if is_json else await response.text()
        return response.status, body, dict(response.headers)

    return with_client(app, scenario)


def error_code(body: Any) -> str:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


# --- the happy path ------------------------------------------------------------------------------


def test_ping_marks_the_due_flows_and_replies_with_counts() -> None:
    store = MemoryFlowStore(
        flow_body("due", {"every": "5m"}), flow_body("paused", {"every": "5m"}, suspend=True)
    )
    status, body, _ = request(make_app(store), "POST", "/heartbeat", headers=AUTH)
    assert status == 200
    assert body == {
        "flowsDue": 2,
        "flowsTriggered": 1,
        "flowsSkipped": 1,
        "flowsFailed": 0,
        "flowsPending": 0,
        "timestamp": "2026-05-01T10:05:30Z",
    }
    assert [name for _, name, _ in store.patches] == ["due"]


@pytest.mark.parametrize("payload", [b"", b"{}", b"  \n", b'{"dryRun": false}'])
def test_empty_or_plain_bodies_are_accepted(payload: bytes) -> None:
    status, body, _ = request(make_app(), "POST", "/heartbeat", headers=AUTH, data=payload)
    assert (status, body["flowsTriggered"]) == (200, 1)


def test_dry_run_marks_nothing() -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    status, body, _ = request(
        make_app(store), "POST", "/heartbeat", headers=AUTH, json={"dryRun": True}
    )
    assert (status, body["flowsTriggered"], body["dryRun"]) == (200, 1, True)
    assert store.patches == []


def test_bearer_scheme_is_case_insensitive() -> None:
    headers = {"Authorization": f"bearer {TOKEN}"}
    assert request(make_app(), "POST", "/heartbeat", headers=headers)[0] == 200


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
)
def test_missing_token_is_401(headers: dict[str, str]) -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    status, body, response_headers = request(make_app(store), "POST", "/heartbeat", headers=headers)
    assert (status, error_code(body)) == (401, "unauthorized")
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert store.patches == [] and store.list_calls == 0


def test_wrong_token_is_401_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    with caplog.at_level(logging.DEBUG):
        status, body, _ = request(
            make_app(store), "POST", "/heartbeat", headers={"Authorization": f"Bearer {TOKEN}x"}
        )
    assert (status, body["error"]["message"]) == (401, "the token is not valid")
    assert store.patches == [] and store.list_calls == 0
    assert TOKEN not in caplog.text


def test_token_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert request(make_app(), "POST", "/heartbeat", headers=AUTH)[0] == 200
    assert "ping from 127.0.0.1: 1 due, 1 triggered" in caplog.text
    assert TOKEN not in caplog.text


# --- addresses -----------------------------------------------------------------------------------


def test_address_outside_the_allow_list_is_403_before_the_token_is_checked() -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    status, body, _ = request(
        make_app(store, allow=("10.0.0.0/8",)), "POST", "/heartbeat", headers=AUTH
    )
    assert (status, error_code(body)) == (403, "forbidden")
    assert body["error"]["message"] == "address 127.0.0.1 is not allowed"
    assert store.list_calls == 0


def test_address_inside_the_allow_list_is_served() -> None:
    app = make_app(allow=("10.0.0.0/8", "127.0.0.0/8"))
    assert request(app, "POST", "/heartbeat", headers=AUTH)[0] == 200


def test_forwarded_for_is_ignored_unless_trusted() -> None:
    headers = {**AUTH, "X-Forwarded-For": "10.1.2.3"}
    app = make_app(allow=("10.0.0.0/8",))
    assert request(app, "POST", "/heartbeat", headers=headers)[0] == 403


def test_trusted_forwarded_for_uses_the_proxys_entry() -> None:
    app = make_app(allow=("10.0.0.0/8",), trust_forwarded_for=True)

    async def scenario(client: TestClient[Any, Any]) -> None:
        ok = {**AUTH, "X-Forwarded-For": "192.0.2.9, 10.1.2.3"}
        assert (await client.post("/heartbeat", headers=ok)).status == 200
        spoofed = {**AUTH, "X-Forwarded-For": "10.1.2.3, 192.0.2.9"}  # the client claims 10.x
        refused = await client.post("/heartbeat", headers=spoofed)
        assert refused.status == 403
        assert (await refused.json())["error"]["message"] == "address 192.0.2.9 is not allowed"

    with_client(app, scenario)


def test_malformed_trusted_forwarded_for_is_400() -> None:
    app = make_app(trust_forwarded_for=True)
    headers = {**AUTH, "X-Forwarded-For": "not-an-ip"}
    status, body, _ = request(app, "POST", "/heartbeat", headers=headers)
    assert (status, error_code(body)) == (400, "bad_request")
    assert body["error"]["message"].startswith("X-Forwarded-For: 'not-an-ip' is not an IP address")


# --- the auth-failure brake ----------------------------------------------------------------------


def test_repeated_bad_tokens_are_429_until_the_window_passes() -> None:
    clock = FakeClock()
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    app = make_app(store, limiter=FailureLimiter(limit=3, window=60, clock=clock))
    bad = {"Authorization": "Bearer guess"}

    async def scenario(client: TestClient[Any, Any]) -> None:
        for _ in range(3):
            assert (await client.post("/heartbeat", headers=bad)).status == 401
        refused = await client.post("/heartbeat", headers=AUTH)  # even the right token now
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) == 60
        assert error_code(await refused.json()) == "too_many_requests"
        clock.now += 61
        assert (await client.post("/heartbeat", headers=AUTH)).status == 200

    with_client(app, scenario)
    assert len(store.patches) == 1


def test_limiter_forgets_old_failures_and_bounds_its_memory() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window=10, clock=clock, max_addresses=3)
    limiter.record_failure("a")
    clock.now += 11
    limiter.record_failure("a")
    assert limiter.retry_after("a") is None  # the first failure aged out
    for address in ("b", "c", "d"):
        limiter.record_failure(address)
        limiter.record_failure(address)
    assert limiter.retry_after("a") is None  # evicted, the oldest of four
    assert limiter.retry_after("d") == 10


# --- bodies, methods, paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"dryRun": "yes"}', "dryRun: must be true or false"),
        (b'{"force": true}', "unknown field(s) force; known: dryRun"),
        (b"\xff\xfe", "the body is not valid JSON"),
    ],
)
def test_malformed_body_is_400(payload: bytes, message: str) -> None:
    store = MemoryFlowStore(flow_body("due", {"every": "5m"}))
    status, body, _ = request(make_app(store), "POST", "/heartbeat", headers=AUTH, data=payload)
    assert (status, error_code(body)) == (400, "bad_request")
    assert body["error"]["message"].startswith(message)
    assert store.patches == []


def test_oversized_body_is_413() -> None:
    status, body, _ = request(
        make_app(max_body=1024), "POST", "/heartbeat", headers=AUTH, data=b"{" + b" " * 2048 + b"}"
    )
    assert (status, error_code(body)) == (413, "payload_too_large")


def test_oversized_chunked_body_is_413() -> None:
    async def chunks() -> Any:
        for _ in range(4):
            yield b" " * 512

    status, body, _ = request(
        make_app(max_body=1024), "POST", "/heartbeat", headers=AUTH, data=chunks()
    )
    assert (status, error_code(body)) == (413, "payload_too_large")


def test_wrong_method_is_405_as_json() -> None:
    status, body, headers = request(make_app(), "GET", "/heartbeat", headers=AUTH)
    assert (status, error_code(body)) == (405, "method_not_allowed")
    assert headers["Allow"] == "POST"


def test_unknown_path_is_404_as_json() -> None:
    status, body, _ = request(make_app(), "GET", "/nope")
    assert (status, error_code(body)) == (404, "not_found")


def test_api_failure_is_500_without_internals(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryFlowStore()
    store.list_error = RuntimeError("etcd said 0xdeadbeef at 10.9.8.7")
    with caplog.at_level(logging.ERROR):
        status, body, _ = request(make_app(store), "POST", "/heartbeat", headers=AUTH)
    assert (status, error_code(body)) == (500, "internal")
    assert "0xdeadbeef" not in body["error"]["message"]
    assert "etcd said 0xdeadbeef" in caplog.text  # the cause is logged


# --- health, readiness, metrics ------------------------------------------------------------------


def test_healthz() -> None:
    assert request(make_app(), "GET", "/healthz")[:2] == (200, {"status": "ok"})


def test_readyz_follows_the_api_server() -> None:
    store = MemoryFlowStore()
    assert request(make_app(store), "GET", "/readyz")[:2] == (200, {"status": "ready"})
    store.ready = False
    status, body, _ = request(make_app(store), "GET", "/readyz")
    assert (status, error_code(body)) == (503, "not_ready")


def test_metrics_count_pings_flows_auth_failures_and_latency() -> None:
    store = MemoryFlowStore(flow_body("a", {"every": "5m"}), flow_body("b", {"every": "5m"}))
    app = make_app(store)

    async def scenario(client: TestClient[Any, Any]) -> str:
        assert (await client.post("/heartbeat", headers=AUTH)).status == 200
        assert (await client.post("/heartbeat", headers=AUTH)).status == 200
        assert (
            await client.post("/heartbeat", headers={"Authorization": "Bearer x"})
        ).status == 401
        assert (await client.post("/heartbeat")).status == 401
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.content_type == "text/plain"
        return await response.text()

    text = with_client(app, scenario)
    for line in (
        'adf_heartbeat_pings_total{result="ok"} 2.0',
        'adf_heartbeat_pings_total{result="unauthorized"} 2.0',
        'adf_heartbeat_pings_total{result="forbidden"} 0.0',
        'adf_heartbeat_flows_total{outcome="due"} 4.0',
        'adf_heartbeat_flows_total{outcome="triggered"} 2.0',
        'adf_heartbeat_flows_total{outcome="skipped"} 2.0',
        'adf_heartbeat_auth_failures_total{reason="invalid"} 1.0',
        'adf_heartbeat_auth_failures_total{reason="missing"} 1.0',
        "adf_heartbeat_ping_duration_seconds_count 2.0",
    ):
        assert line in text


# --- the token source ----------------------------------------------------------------------------


def test_token_file_is_reread_when_rotated(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    source = TokenSource(path=path)
    assert source.matches("first") and not source.matches("second")
    replacement = tmp_path / "token.new"
    replacement.write_text("second-and-longer")
    replacement.replace(path)  # how a mounted Secret changes: a new file swapped in
    assert source.matches("second-and-longer") and not source.matches("first")
    path.unlink()
    assert not source.matches("second-and-longer") and not source.matches("")


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_token_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ValueError, match="is empty or unreadable"):
        TokenSource(path=path)


def test_bad_cidr_names_the_value() -> None:
    with pytest.raises(ValueError, match=r"--allow-cidr '10\.0\.0\.0/33' is not an IP network"):
        AddressPolicy(["10.0.0.0/33"])


def test_ipv4_mapped_ipv6_peer_matches_an_ipv4_network() -> None:
    policy = AddressPolicy(["10.0.0.0/8"])
    assert policy.allowed("::ffff:10.1.2.3")
    assert not policy.allowed("::ffff:192.0.2.1")
    assert not policy.allowed("unknown")
