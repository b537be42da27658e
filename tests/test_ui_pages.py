"""The dashboard's pages over HTTP (Starlette's test client, real Postgres, workflows run by an
in-process runtime): search, counts and paging; the workflow page's events, messages, sleeps,
child durations and long outcomes; actions shown only where they apply; bulk actions counted by
the runtime's dry run; live-update fragments; hostile workflow IDs in every link and redirect;
and bad input answered with a 4xx page, never a 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from dbos_cli.ui.app import CSRF_COOKIE, create_app
from runtime import DBOS, DBOSClient, SetWorkflowID

Launch = Callable[..., None]
HOSTILE_ID = "a/b?c#d%e ../f é"
LONG = "x" * 300


@DBOS.step()
def big_step() -> str:
    return LONG


@DBOS.workflow()
def child_work(n: int) -> int:
    DBOS.sleep(0.05)
    return n * 2


@DBOS.workflow()
def rich() -> int:
    big_step()
    DBOS.sleep(0.01)
    DBOS.set_event("progress", {"done": True})
    return child_work(21)


@DBOS.workflow()
def waiter() -> Any:
    return DBOS.recv("go", timeout_seconds=1)


@DBOS.workflow()
def plain(n: int) -> int:
    return n


@pytest.fixture
def http(launch_dbos: Launch, db_url: str) -> Iterator[TestClient]:
    launch_dbos()
    with TestClient(create_app(db_url), follow_redirects=False) as client:
        client.get("/workflows")  # the CSRF cookie
        yield client


def _csrf(http: TestClient) -> str:
    """The CSRF token a page's forms carry (signed for this session's cookie)."""
    assert http.cookies.get(CSRF_COOKIE)
    found = re.search(r'name="csrf" value="([^"]+)"', http.get("/workflows?live=0").text)
    assert found
    return found.group(1)


def _links(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def test_hostile_ids_work_in_every_link_and_redirect(http: TestClient, db_url: str) -> None:
    with SetWorkflowID(HOSTILE_ID):
        assert DBOS.start_workflow(rich).get_result() == 42
    listing = http.get("/workflows?live=0")
    encoded = "/workflows/" + quote(HOSTILE_ID, safe="")
    assert encoded in _links(listing.text)
    page = http.get(encoded)
    assert page.status_code == 200 and unescape(HOSTILE_ID) in unescape(page.text)
    assert f"{encoded}/restart" in unescape(page.text)  # the action form's target
    download = http.get(f"{encoded}/steps/1/output")
    assert download.status_code == 200
    assert download.json()["output"] == LONG
    assert "attachment" in download.headers["content-disposition"]
    done = http.post(f"{encoded}/restart", data={"csrf": _csrf(http), "confirmed": "yes"})
    assert done.status_code == 303
    location = done.headers["location"]
    new_id = DBOS.list_workflows(forked_from=HOSTILE_ID)[0].workflow_id
    assert location == "/workflows/" + quote(new_id, safe="")
    assert f"restarted from {HOSTILE_ID}" in unescape(http.get(location).text)
    forked = http.post(f"{encoded}/fork", data={"csrf": _csrf(http), "step": "3"})
    assert forked.status_code == 200 and "Yes, fork" in forked.text
    # An ID of only dots, which no path can carry, travels in the query.
    with SetWorkflowID(".."):
        DBOS.start_workflow(plain, 2).get_result()
    assert "/workflow?id=.." in _links(http.get("/workflows?id=..").text)
    dots = http.get("/workflow?id=..")
    assert dots.status_code == 200 and '<span class="status SUCCESS" id="status">' in dots.text
    assert 'action="/workflow/fork?id=.."' in dots.text
    asked = http.post("/workflow/restart?id=..", data={"csrf": _csrf(http)})
    assert asked.status_code == 200 and 'action="/workflow/restart?id=.."' in asked.text
    # An action on an unknown ID says so on a 404 page (before and after confirmation).
    for data in ({}, {"confirmed": "yes"}):
        missing = http.post("/workflows/nope%2Fx/cancel", data={"csrf": _csrf(http), **data})
        assert missing.status_code == 404 and "'nope/x' does not exist" in unescape(missing.text)


BAD_URLS = [
    "/workflows?before=" + "9" * 5000 + ":x",
    "/workflows?before=²:x",
    "/workflows?after=12:x&before=13:y",
    "/workflows?start=0001-01-01",
    "/workflows?end=not-a-date",
    "/workflows?limit=0",
    "/workflows?limit=" + "9" * 30,
    "/workflows?limit=²",
    "/workflows?status=NOPE",
    "/workflows?fragment=../../etc",
    "/workflows?live=-1",
    "/workflows/%00",
    "/workflows/x/steps/²/output",
    "/queues/%00",
]


def test_bad_input_gets_a_4xx_page_with_a_message(http: TestClient) -> None:
    for url in BAD_URLS:
        answer = http.get(url)
        assert 400 <= answer.status_code < 500, (url, answer.status_code, answer.text[:300])
        assert "Traceback" not in answer.text
        # A page of ours (with the message) or the guard's one-line answer.
        assert re.search(r'class="error-message">[^<]+', answer.text) or (
            "<" not in answer.text and len(answer.text) > 10
        ), (url, answer.text[:500])


def test_fork_with_a_bad_step_is_refused(http: TestClient) -> None:
    with SetWorkflowID("forkme"):
        DBOS.start_workflow(plain, 1).get_result()
    for step in ("²", "0", "-1", "1e9", "9" * 40):
        answer = http.post("/workflows/forkme/fork", data={"csrf": _csrf(http), "step": step})
        assert answer.status_code == 400 and "invalid step" in answer.text
    assert DBOS.list_workflows(forked_from="forkme") == []


def test_search_counts_and_paging(http: TestClient, db_url: str) -> None:
    for i in range(7):
        with SetWorkflowID(f"order-{i}"):
            DBOS.start_workflow(plain, i).get_result()
    with DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": "plain", "queue_name": "nowhere", "workflow_id": "q-1"}, 1)

    def ids(html: str) -> list[str]:
        return re.findall(r'<td class="id"><a [^>]*>([^<]+)</a>', html)

    assert ids(http.get("/workflows?id=order-").text) == [f"order-{i}" for i in range(6, -1, -1)]
    assert ids(http.get("/workflows?id=order-3").text) == ["order-3"]
    by_name = http.get("/workflows?name=pla&status=SUCCESS")
    assert len(ids(by_name.text)) == 7
    assert ids(http.get("/workflows?name=lain").text) == []  # a prefix, not a substring
    # Counts per status cover the other filters, not the status filter itself.
    counts = by_name.text
    assert re.search(r"SUCCESS <span class=\"count\">7</span>", counts)
    assert re.search(r"ENQUEUED <span class=\"count\">1</span>", counts)
    assert "7 matching" in counts
    # Paging three at a time: newest, older, older, then newer brings back the same page.
    seen: list[list[str]] = []
    url = "/workflows?id=order-&limit=3"
    while url:
        page = http.get(url).text
        seen.append(ids(page))
        older = re.search(r'href="([^"]+)" id="older"', page)
        url = unescape(older.group(1)) if older else ""
    assert seen == [
        ["order-6", "order-5", "order-4"],
        ["order-3", "order-2", "order-1"],
        ["order-0"],
    ]
    last = http.get(
        "/workflows?id=order-&limit=3&before="
        + re.findall(r"before=([^&\"]+)", http.get("/workflows?id=order-&limit=3").text)[0]
    ).text
    newer = re.search(r'href="([^"]+)" id="newer"', last)
    assert newer is not None
    assert ids(http.get(unescape(newer.group(1))).text) == ["order-6", "order-5", "order-4"]
    # Newer than order-4 are only two: the page back is the newest full page, without "Newer".
    [four] = DBOS.list_workflows(workflow_ids=["order-4"])
    back = http.get(f"/workflows?id=order-&limit=3&after={four.created_at}:order-4").text
    assert ids(back) == ["order-6", "order-5", "order-4"] and 'id="newer"' not in back
    [one] = DBOS.list_workflows(workflow_ids=["order-1"])
    back = http.get(f"/workflows?id=order-&limit=3&after={one.created_at}:order-1").text
    assert ids(back) == ["order-4", "order-3", "order-2"] and 'id="newer"' in back


def test_workflow_page_shows_events_messages_sleeps_children_and_long_outcomes(
    http: TestClient,
) -> None:
    with SetWorkflowID("rich-1"):
        assert DBOS.start_workflow(rich).get_result() == 42
    page = http.get("/workflows/rich-1").text
    events = page.split('id="events"')[1].split("</table>")[0]
    assert "progress" in events and "&#34;done&#34;: true" in events
    steps = page.split('id="step-rows"')[1].split("</tbody>")[0]
    assert "sleeps until" in steps and " ms</td>" not in steps.split("DBOS.sleep")[1][:400]
    assert '<details class="outcome">' in steps and LONG in steps  # collapsed, all of it inside
    assert "/workflows/rich-1/steps/1/output" in steps
    child = DBOS.list_workflows(parent_workflow_id="rich-1")[0]
    row = next(r for r in steps.split("</tr>") if child.workflow_id in r)
    took = re.search(r"<td>(\d+) ms</td>", row)
    assert took and int(took.group(1)) >= 40, (
        row
    )  # the child's run (it sleeps 50 ms)  # the child's own run time, not its instant start
    with SetWorkflowID("waiting-1"):
        handle = DBOS.start_workflow(waiter)
    DBOS.send("waiting-1", {"n": 1}, topic="other")
    messages = http.get("/workflows/waiting-1").text.split('id="messages"')[1]
    assert "other" in messages and "&#34;n&#34;: 1" in messages
    assert handle.get_result() is None


def test_actions_are_shown_only_where_they_apply(http: TestClient, db_url: str) -> None:
    with SetWorkflowID("done-1"):
        DBOS.start_workflow(plain, 1).get_result()
    with DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": "plain", "queue_name": "nowhere", "workflow_id": "q-2"}, 1)

    def actions(wid: str) -> set[str]:
        return set(re.findall(r'id="action-(\w+)"', http.get(f"/workflows/{wid}").text))

    assert actions("done-1") == {"restart", "fork"}
    assert actions("q-2") == {"cancel", "resume", "restart", "fork"}
    DBOS.cancel_workflow("q-2")
    assert actions("q-2") == {"resume", "restart", "fork"}


def test_bulk_actions_count_what_would_really_change(http: TestClient, db_url: str) -> None:
    for i in range(2):
        with SetWorkflowID(f"bulk-done-{i}"):
            DBOS.start_workflow(plain, i).get_result()
    with DBOSClient(db_url) as client:
        for i in range(3):
            client.enqueue(
                {"workflow_name": "plain", "queue_name": "nowhere", "workflow_id": f"bulk-q-{i}"},
                i,
            )
    form = {"csrf": _csrf(http), "filters": "id=bulk-&live=0&limit=1"}
    asked = http.post("/bulk/cancel", data=form)
    assert asked.status_code == 200
    assert "<strong>3</strong> of the 5 matching workflows would be cancelled" in asked.text
    shown = asked.text.split("Filters: ")[1].split("</p>")[0]
    assert shown.strip() == "<code>id=bulk-</code>"  # paging and live updates are no filters
    assert DBOS.get_workflow_status("bulk-q-0").status == "ENQUEUED"  # type: ignore[union-attr]
    selection = re.search(r'name="selection" value="([0-9a-f]+)"', asked.text)
    assert selection
    confirmed = {**form, "confirmed": "yes", "selection": selection.group(1)}
    done = http.post("/bulk/cancel", data=confirmed)
    assert done.status_code == 303
    assert "3 of the 5 matching workflows cancelled" in http.get(done.headers["location"]).text
    assert {w.status for w in DBOS.list_workflows(workflow_id_prefix="bulk-q-")} == {"CANCELLED"}
    again = http.post("/bulk/cancel", data=form)
    assert "<strong>0</strong> of the 5 matching workflows would be cancelled" in again.text
    resumed = http.post("/bulk/resume", data={**form, "filters": "id=bulk-&status=CANCELLED"})
    assert "<strong>3</strong> of the 3 matching workflows would be resumed" in resumed.text
    assert http.post("/bulk/cancel", data={"filters": "id=bulk-"}).status_code == 403


def test_live_updates_swap_fragments_without_a_page_reload(http: TestClient) -> None:
    with SetWorkflowID("live-1"):
        DBOS.start_workflow(plain, 1).get_result()
    page = http.get("/workflows")
    assert 'http-equiv="refresh"' not in page.text
    assert '<script src="/static/live.js"' in page.text and 'data-live="5"' in page.text
    assert 'data-fragment="rows"' in page.text
    rows = http.get("/workflows?fragment=rows")
    assert rows.status_code == 200 and "<html" not in rows.text and "live-1" in rows.text
    assert "script-src 'self'" in rows.headers["content-security-policy"]
    script = http.get("/static/live.js")
    assert script.status_code == 200 and "data-fragment" in script.text
    assert 'data-live="' not in http.get("/workflows?live=0").text
    for url in ("/queues", "/executors", "/queues/nowhere"):
        assert 'http-equiv="refresh"' not in http.get(url).text
        assert http.get(url + "?fragment=rows").status_code == 200
    summary = http.get("/workflows/live-1?fragment=summary")
    assert 'id="status"' in summary.text and "<html" not in summary.text
