"""The dashboard's new pages in headless Chromium (Debian's, through Playwright), over workflows
run by an in-process runtime: hostile data (HTML, bidi controls and terminal escapes in an ID,
name, output and error) shows as text and runs nothing; the hostile ID's link opens its page;
search by ID prefix; a long outcome expands; a waiting workflow's row updates in place when it
finishes (live.js, no reload); a bulk cancel's confirmation counts what would change. Screenshots
go to test-artifacts/ui/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime import DBOS, DBOSClient, SetWorkflowID
from tests.cli_helpers import dashboard
from tests.test_ui_browser import CHROMIUM, ROOT, _shot, playwright_api

XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
HOSTILE = f"{XSS}\u202eevil\x1b[2J\x1b]0;title\x07/..?#%"
LONG = "y" * 400


@DBOS.workflow()
def echo(text: str) -> str:
    return text


@DBOS.step()
def long_step() -> str:
    return LONG


@DBOS.workflow()
def long_output() -> str:
    return long_step()


@DBOS.workflow()
def boom(text: str) -> None:
    raise ValueError(text)


@DBOS.workflow()
def wait_for_go() -> Any:
    return DBOS.recv("go", timeout_seconds=60)


@pytest.fixture
def ui(launch_dbos: Callable[..., None], db_url: str) -> Iterator[str]:
    launch_dbos()
    with dashboard(db_url, cwd=ROOT) as (base, _):
        yield base


def test_new_pages_and_hostile_data_in_a_real_browser(ui: str, db_url: str) -> None:
    with SetWorkflowID(HOSTILE):
        DBOS.start_workflow(echo, HOSTILE).get_result()
    with pytest.raises(ValueError), SetWorkflowID("hostile-error"):
        DBOS.start_workflow(boom, HOSTILE).get_result()
    with SetWorkflowID("long-1"):
        DBOS.start_workflow(long_output).get_result()
    with DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": XSS, "queue_name": "nowhere", "workflow_id": "q-x"})
    with SetWorkflowID("waiting-1"):
        waiting = DBOS.start_workflow(wait_for_go)

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        page.goto(f"{ui}/workflows?live=1")
        rows = page.locator("#workflow-rows")
        assert "<img src=x" in rows.inner_text() and "<script>" in rows.inner_text()
        assert page.locator("#workflow-rows img").count() == 0
        assert page.evaluate("window.__pwned") is None
        _shot(page, "8-hostile-list")

        # Live update: the waiting workflow's row changes in place (the marker survives).
        page.evaluate("window.__marker = 'kept'")
        assert "PENDING" in page.locator("#workflow-rows tr", has_text="waiting-1").inner_text()
        DBOS.send("waiting-1", "now", topic="go")
        assert waiting.get_result() == "now"
        page.locator("#workflow-rows tr", has_text="waiting-1").locator("text=SUCCESS").wait_for(
            timeout=15_000
        )
        assert page.evaluate("window.__marker") == "kept"

        # The hostile ID's own link opens its page.
        page.locator("#workflow-rows tr", has_text="evil").locator("td.id a").click()
        page.wait_for_selector("#status")
        assert page.locator("#status").inner_text() == "SUCCESS"
        title = page.locator("h1").inner_text()
        assert "<script>window.__pwned=2</script>" in title
        # Bidi override and terminal escapes show as their escapes, never act on the page.
        assert "\\u202eevil\\x1b[2J\\x1b]0;title\\x07/..?#%" in title, title
        assert "<img src=x" in page.locator("#output").inner_text()
        assert page.evaluate("window.__pwned") is None
        assert set(page.locator("#actions button").all_inner_texts()) == {"Restart", "Fork"}
        _shot(page, "9-hostile-workflow")

        page.goto(f"{ui}/workflows/hostile-error")
        assert "ValueError" in page.locator("#error").inner_text()
        assert "<img src=x" in page.locator("#error").inner_text()
        assert page.evaluate("window.__pwned") is None

        # Search by ID prefix, then a long outcome expands in place.
        page.goto(f"{ui}/workflows?live=0")
        page.fill("#search-id", "long-")
        page.click("#apply-filters")
        assert page.locator("#workflow-rows tr").count() == 1
        page.click("text=long-1")
        summary = page.locator("details.outcome summary").first
        assert not page.locator("details.outcome pre").first.is_visible()
        summary.click()
        assert LONG in page.locator("details.outcome pre").first.inner_text()
        _shot(page, "10-long-outcome-expanded")

        # A bulk cancel of everything: only the one enqueued workflow would change.
        page.goto(f"{ui}/workflows?live=0")
        page.click("#bulk-cancel")
        count = page.locator("#bulk-count").inner_text()
        assert count.startswith("1 of the 5 matching workflows would be cancelled"), count
        _shot(page, "11-bulk-confirm")
        page.click("#confirm")
        assert "1 of the 5 matching workflows cancelled" in page.locator("#flash").inner_text()
        assert dialogs == [] and page.evaluate("window.__pwned") is None
        browser.close()
