"""Browser tests: Debian's chromium, headless, driven by Playwright's Python package (its own
browser downloads are never used), against the dashboard served on 127.0.0.1 and backed by the
dev control plane. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from devcluster.controlplane import ControlPlane
from tests.unit.dashboard.dashboard_support import build_app, kube_api_client, serve

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def dashboard(control_plane: ControlPlane) -> Iterator[str]:
    """The heartbeat service with the dashboard, on 127.0.0.1; its base URL."""
    with serve(build_app(kube_api_client(control_plane.kubeconfig_path))) as url:
        yield url


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A page in a fresh headless chromium profile (its own --user-data-dir)."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium chromium-driver")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """screenshot(step) saves the full page as artifacts/screenshots/<test>-<step>.png."""

    def take(step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9]+", "-", f"{request.node.name}-{step}".lower()).strip("-")
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
