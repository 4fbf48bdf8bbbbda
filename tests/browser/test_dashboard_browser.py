"""What a person sees in a real browser: sign in, the flows list and its filter, a flow with its
chart and runs, a run with its Job, and the actions (run now with the real operator running)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from playwright.sync_api import Page, expect

from adf_operator import names
from devcluster.pytest_plugin import Kubectl
from tests.unit.dashboard.dashboard_support import SINK_PASSWORD, TOKEN, flow_manifest, seed_shop

pytestmark = pytest.mark.integration
Shot = Callable[[str], Path]


def sign_in(page: Page, url: str) -> None:
    """Open `url` (which asks for sign-in) and sign in with the token."""
    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_sign_in_then_the_flows_list_and_its_filter(
    page: Page, dashboard: str, kubectl: Kubectl, namespace: str, screenshot: Shot
) -> None:
    seed_shop(kubectl, namespace)
    page.goto(f"{dashboard}/dashboard/?namespace={namespace}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("the token is not valid")
    screenshot("wrong-token")

    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{dashboard}/dashboard/?namespace={namespace}")
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_attribute("content", "15")
    sync = page.locator(f'tr[data-flow="{namespace}/product-sync"]')
    idle = page.locator(f'tr[data-flow="{namespace}/idle-flow"]')
    expect(sync).to_contain_text("Every 5 minutes (Europe/Berlin)")
    expect(sync).to_contain_text("Running")
    expect(sync).to_contain_text("cannot connect to postgresql://etl:***@db/w")
    expect(idle).to_contain_text("Every 10 minutes")
    expect(idle.locator("td").nth(3)).to_have_text("yes")
    expect(idle).to_contain_text("never")
    assert SINK_PASSWORD not in page.content()
    screenshot("flows")

    page.get_by_label("Last run").select_option("Running")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(sync).to_be_visible()
    screenshot("filtered")


def test_flow_page_run_page_and_purge(
    page: Page, dashboard: str, kubectl: Kubectl, namespace: str, screenshot: Shot
) -> None:
    seed_shop(kubectl, namespace)
    sign_in(page, f"{dashboard}/dashboard/?namespace={namespace}")
    page.get_by_role("link", name="product-sync", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("product-sync")
    expect(page.locator("dd", has_text="from Secret shop-db, key url")).to_be_visible()
    expect(page.locator("svg.chart rect.bar")).to_have_count(3)
    expect(page.locator("table.runs tbody tr")).to_have_count(3)
    first = page.locator('tr[data-run="product-sync-1"]')
    expect(first).to_contain_text("1m30s")
    expect(first).to_contain_text("118")
    expect(first).to_contain_text("2025-12-31T00:00:00Z → 2026-01-01T09:59:00Z")
    assert SINK_PASSWORD not in page.content()
    screenshot("flow")

    first.get_by_role("link", name="product-sync-1").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("product-sync-1")
    expect(page.locator("dd", has_text="copied 118 rows")).to_be_visible()
    screenshot("run")

    page.get_by_role("link", name="product-sync", exact=True).last.click()
    page.get_by_role("button", name="Delete finished runs").click()
    expect(page.get_by_role("status")).to_have_text("Deleted 2 finished run(s).")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    left = kubectl.get("dataflowruns", "-n", namespace)["items"]
    assert [r["metadata"]["name"] for r in left] == ["product-sync-3"]
    screenshot("purged")


@pytest.fixture
def operator(control_plane: object, namespace: str) -> Iterator[KopfRunner]:
    """The real operator (kopf in a thread) for the test's namespace."""
    args = ["run", "-m", "adf_operator.handlers", "--namespace", namespace, "--standalone"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner


def test_run_now_makes_a_new_run_appear_and_suspend_resume(
    page: Page,
    dashboard: str,
    kubectl: Kubectl,
    namespace: str,
    operator: KopfRunner,
    wait_for: Callable[..., Any],
    screenshot: Shot,
) -> None:
    kubectl.apply(flow_manifest("product-sync", namespace))
    sign_in(page, f"{dashboard}/dashboard/flows/{namespace}/product-sync")
    expect(page.get_by_text("No runs yet.")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    notice = page.get_by_role("status")
    expect(notice).to_contain_text("Run requested: the operator creates run product-sync-now-")
    run = notice.inner_text().rsplit(" ", 1)[1].rstrip(".")

    def shown() -> bool:
        page.reload()
        return page.locator(f'tr[data-run="{run}"]').count() == 1

    wait_for(shown, timeout=60, what=f"run {run} to appear on the flow page")
    created = kubectl.get("dataflowrun", run, "-n", namespace)
    assert created["spec"] == {"dataFlowRef": {"name": "product-sync"}, "trigger": "manual"}
    wait_for(
        lambda: (
            names.RUN_NOW
            not in (
                kubectl.get("dataflow", "product-sync", "-n", namespace)["metadata"].get(
                    "annotations"
                )
                or {}
            )
        ),
        timeout=60,
        what="the operator to remove the run-now annotation",
    )
    screenshot("run-now")

    page.get_by_role("button", name="Suspend").click()
    expect(page.get_by_role("status")).to_have_text("Suspended: no new runs are scheduled.")
    assert kubectl.get("dataflow", "product-sync", "-n", namespace)["spec"]["suspend"] is True
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text("Resumed: runs are scheduled again.")
    assert kubectl.get("dataflow", "product-sync", "-n", namespace)["spec"]["suspend"] is False
    screenshot("resumed")
