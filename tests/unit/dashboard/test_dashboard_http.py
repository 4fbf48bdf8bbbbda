"""The dashboard's HTTP behaviour that needs no cluster: sign-in, sessions, CSRF, the API's
authentication and errors. The Kubernetes API it is given is a closed port on 127.0.0.1, so
every read ends in the "cannot be reached" answer (502), never a 500."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import requests
from kubernetes import client

from tests.unit.dashboard.dashboard_support import TOKEN, build_app, csrf_of, serve, sign_in


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_cluster() -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{_closed_port()}"
    configuration.retries = 0
    return client.ApiClient(configuration)


@pytest.fixture
def base() -> Iterator[str]:
    with serve(build_app(_unreachable_cluster())) as url:
        yield url


@pytest.fixture
def open_base() -> Iterator[str]:
    with serve(build_app(_unreachable_cluster(), read_only_open=True)) as url:
        yield url


def test_root_leads_to_the_dashboard_and_pages_need_sign_in(base: str) -> None:
    root = requests.get(base, allow_redirects=False, timeout=30)
    assert (root.status_code, root.headers["Location"]) == (302, "/dashboard/")
    page = requests.get(f"{base}/dashboard/?namespace=shop", allow_redirects=False, timeout=30)
    assert page.status_code == 303
    assert page.headers["Location"] == "/dashboard/login?next=%2Fdashboard%2F%3Fnamespace%3Dshop"


def test_login_page_sets_a_strict_httponly_session_cookie_and_security_headers(base: str) -> None:
    page = requests.get(f"{base}/dashboard/login", timeout=30)
    assert page.status_code == 200
    assert "Use the heartbeat token" in page.text
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    css = requests.get(f"{base}/dashboard/static/style.css", timeout=30)
    assert css.status_code == 200 and "svg.chart" in css.text


def test_sign_in_needs_the_forms_csrf_token(base: str) -> None:
    session = requests.Session()
    session.get(f"{base}/dashboard/login", timeout=30)
    refused = session.post(f"{base}/dashboard/login", data={"token": TOKEN}, timeout=30)
    assert refused.status_code == 403
    assert "security token did not match" in refused.text


def test_wrong_token_is_refused_braked_and_never_logged(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = requests.Session()
    statuses = [sign_in(base, session, token=f"guess-{i}").status_code for i in range(11)]
    assert statuses == [401] * 10 + [429]
    assert all(f"guess-{i}" not in caplog.text for i in range(11))
    page = sign_in(base, session, token="guess-x")
    assert "too many wrong tokens" in page.text
    # the brake is shared with the heartbeat: its pings from this address wait too
    ping = requests.post(f"{base}/heartbeat", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ping.status_code == 429


def test_signed_in_reads_reach_the_cluster_and_outages_are_502_pages(base: str) -> None:
    session = requests.Session()
    signed = sign_in(base, session)
    assert (signed.status_code, signed.headers["Location"]) == (303, "/dashboard/")
    page = session.get(f"{base}/dashboard/", timeout=60)
    assert page.status_code == 502
    assert "cannot be reached" in page.text and "Sign out" in page.text


def test_a_session_outlives_a_restart_and_ends_when_the_token_rotates() -> None:
    """The cookie's signing key comes from the token: another process (a restart, a second
    replica) accepts the session, a rotated token does not."""
    session = requests.Session()
    with serve(build_app(_unreachable_cluster())) as first:
        assert sign_in(first, session).status_code == 303
    with serve(build_app(_unreachable_cluster())) as restarted:
        page = session.get(f"{restarted}/dashboard/", allow_redirects=False, timeout=60)
        assert page.status_code == 502 and "Sign out" in page.text
    with serve(build_app(_unreachable_cluster(), token_value="rotated-token-9876543210")) as new:
        page = session.get(f"{new}/dashboard/", allow_redirects=False, timeout=30)
        assert page.status_code == 303 and page.headers["Location"].startswith("/dashboard/login")


def test_a_tampered_cookie_is_not_a_session(base: str) -> None:
    session = requests.Session()
    sign_in(base, session)
    value = session.cookies["adf_session"]
    session.cookies.set("adf_session", value[:-2] + ("A" if value[-1] != "A" else "B") + "x")
    page = session.get(f"{base}/dashboard/", allow_redirects=False, timeout=30)
    assert page.status_code == 303 and page.headers["Location"].startswith("/dashboard/login")


def test_actions_need_a_session_and_its_csrf_token(base: str) -> None:
    anonymous = requests.Session()
    csrf = csrf_of(anonymous.get(f"{base}/dashboard/login", timeout=30).text)
    action = f"{base}/dashboard/flows/shop/product-sync/run"
    refused = anonymous.post(action, data={"csrf_token": csrf}, timeout=30)
    assert refused.status_code == 401 and "Sign in" in refused.text
    signed = requests.Session()
    sign_in(base, signed)
    assert signed.post(action, data={}, timeout=30).status_code == 403
    old_csrf = csrf  # the anonymous session's token is worthless in another session
    assert signed.post(action, data={"csrf_token": old_csrf}, timeout=30).status_code == 403


def test_sign_in_never_redirects_off_the_dashboard(base: str) -> None:
    session = requests.Session()
    page = session.get(f"{base}/dashboard/login", timeout=30)
    answer = session.post(
        f"{base}/dashboard/login",
        data={"csrf_token": csrf_of(page.text), "token": TOKEN, "next": "//evil.example/x"},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.headers["Location"] == "/dashboard/"


def test_api_needs_the_bearer_token(base: str) -> None:
    anonymous = requests.get(f"{base}/api/v1/dataflows", timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="adf"'
    assert anonymous.json()["error"]["code"] == "unauthorized"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    outage = requests.get(f"{base}/api/v1/dataflows", headers=headers, timeout=60)
    assert outage.status_code == 502
    assert outage.json()["error"] == {
        "code": "bad_gateway",
        "message": "the Kubernetes API server cannot be reached (MaxRetryError)",
    }
    document = requests.get(f"{base}/api/v1/openapi.json", timeout=30)
    assert document.status_code == 200 and document.json()["openapi"] == "3.1.0"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/dataflows/Shop/x", 400, "namespace 'Shop' is not a valid namespace name"),
        ("/api/v1/dataflows/shop/x_y/runs", 400, "name 'x_y' is not a valid DataFlow name"),
        ("/api/v1/dataflows?phase=Done", 400, "phase 'Done' is not one of"),
        ("/api/v1/dataflows?namespace=", 400, "namespace '' is not a valid namespace name"),
        ("/api/v1/nothing", 404, "Not Found"),
    ],
)
def test_api_errors_are_json_naming_the_field(
    base: str, path: str, status: int, message: str
) -> None:
    answer = requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == status
    assert answer.json()["error"]["message"].startswith(message)


def test_open_read_only_mode_serves_reads_but_not_actions(open_base: str) -> None:
    page = requests.get(f"{open_base}/dashboard/", allow_redirects=False, timeout=60)
    assert page.status_code == 502  # it was let in: the cluster is what is missing
    assert "Sign in" in page.text
    read = requests.get(f"{open_base}/api/v1/dataflows", timeout=60)
    assert read.status_code == 502
    act = requests.post(f"{open_base}/api/v1/dataflows/shop/x/run", timeout=30)
    assert act.status_code == 401
    method = requests.delete(
        f"{open_base}/api/v1/dataflows/shop/x", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert method.status_code == 405 and method.json()["error"]["code"] == "method_not_allowed"
