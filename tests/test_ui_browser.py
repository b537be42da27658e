"""The dashboard end to end, in headless Chromium (Debian's, driven by Playwright): list, filter,
open a workflow and its steps, cancel a running workflow and see it stop, resume it and see it
finish. A screenshot of each page goes to test-artifacts/ui/."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.apps.mgmt_app import LEDGER_DDL
from tests.cli_helpers import dashboard
from tests.test_cli_workflows import App

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

playwright_api = pytest.importorskip("playwright.sync_api")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is required on CI (.ci/run installs Debian's chromium)")
    pytest.skip("Debian's chromium is not installed here", allow_module_level=True)


@pytest.fixture
def stack(db_url: str) -> Iterator[tuple[App, str]]:
    """An app process with workflows, and `dbos ui` over the same database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    app = App(db_url)
    try:
        with dashboard(db_url, cwd=ROOT) as (base, _):
            yield app, base
    finally:
        app.stop()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _status_becomes(page: Any, url: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if page.locator("#status").inner_text() == wanted:
            return
        assert time.monotonic() < deadline, page.locator("#status").inner_text()
        time.sleep(0.3)


def test_dashboard_in_a_real_browser(stack: tuple[App, str]) -> None:
    app, base = stack
    for name in ("ann", "bo"):
        app.wait(app.run("greet", name, wid=f"greet-{name}"), "SUCCESS")
    app.wait(app.run("failing", "boom", wid="fails"), "ERROR")
    slow = app.run("slow", 60, wid="slow-one")
    app.wait(slow, "PENDING")

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        page.goto(f"{base}/workflows?live=0")
        rows = page.locator("#workflow-list tbody tr")
        assert rows.count() == 4
        _shot(page, "1-workflow-list")

        page.check("input[name=status][value=ERROR]")
        page.click("#apply-filters")
        assert page.locator("#workflow-list tbody tr").count() == 1
        assert "fails" in page.locator("#workflow-list").inner_text()
        _shot(page, "2-filtered-by-status")

        page.goto(f"{base}/workflows?live=0")
        page.click("text=greet-ann")
        assert page.locator("#status").inner_text() == "SUCCESS"
        assert '"hello ANN"' in page.locator("#output").inner_text()
        assert "shout" in page.locator("#steps").inner_text()
        _shot(page, "3-workflow-with-steps")

        url = f"{base}/workflows/{slow}"
        page.goto(url)
        page.click("#action-cancel")
        page.click("#confirm")
        assert "cancelled" in page.locator("#flash").inner_text()
        _status_becomes(page, url, "CANCELLED")
        time.sleep(0.6)
        stopped = app.ledger(slow)
        time.sleep(0.6)
        assert app.ledger(slow) == stopped and len(stopped) < 60  # it stopped
        _shot(page, "4-cancelled")

        page.click("#action-resume")
        page.click("#confirm")
        assert "resumed" in page.locator("#flash").inner_text()
        _status_becomes(page, url, "SUCCESS", timeout=60)
        assert sorted(set(app.ledger(slow))) == list(range(1, 61))
        _shot(page, "5-resumed-and-finished")

        page.goto(f"{base}/queues")
        assert "mgmt" in page.locator("#queue-list").inner_text()
        _shot(page, "6-queues")
        page.goto(f"{base}/executors")
        assert "ALIVE" in page.locator("#executor-list").inner_text()
        _shot(page, "7-executors")
        browser.close()
