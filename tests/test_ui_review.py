"""The dashboard's fixes after an adversarial review: a request stuck in the database does not
stall the others; a bulk confirmation acts on exactly what it showed; the pager moves with live
updates; Resume/Cancel shown as the runtime decides; URLs for dot-only IDs; the token exchange
keeps the target; `dbos ui` refuses what it cannot serve; the internal queue stays hidden; 'why'
for finished workflows; escapes inside attributes, capped values and capped echoed input."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from dbos_cli.commands.ui import _loopback, _read_token
from dbos_cli.ui.app import DB_WAIT_S, create_app
from dbos_cli.ui.formatting import EMBED_CHARS, workflow_url
from dbos_cli.ui.security import HostRule
from runtime import DBOS, DBOSClient, SetWorkflowID
from runtime.client import INTERNAL_QUEUE
from runtime.errors import DBOSConfigError, DBOSException
from tests.cli_helpers import dbos

Launch = Callable[..., None]
TOKEN = "a-long-enough-token-1234"


@DBOS.workflow()
def review_plain(n: Any) -> Any:
    return n


@DBOS.step()
def review_step(n: int) -> int:
    return n


@DBOS.workflow()
def review_two_steps() -> int:
    return review_step(1) + review_step(2)


@pytest.fixture
def http(launch_dbos: Launch, db_url: str) -> Iterator[TestClient]:
    launch_dbos()
    with TestClient(create_app(db_url), follow_redirects=False) as client:
        client.get("/workflows?live=0")  # the CSRF cookie
        yield client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def _form(page: str) -> dict[str, str]:
    return {k: unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', page)}


def _enqueue(db_url: str, *ids: str) -> None:
    with DBOSClient(db_url) as client:
        for wid in ids:
            client.enqueue({"workflow_name": "nope", "queue_name": "idle", "workflow_id": wid})


def test_a_request_stuck_in_the_database_stalls_nothing_else(http: TestClient, db_url: str) -> None:
    """Finding 1: handlers run off the event loop, so static files and other requests answer
    while one request waits on a lock the test holds."""
    with psycopg.connect(db_url) as locker:
        locker.execute("LOCK TABLE dbos.workflow_status IN ACCESS EXCLUSIVE MODE")
        stuck: dict[str, int] = {}
        blocked = threading.Thread(
            target=lambda: stuck.update(code=http.get("/workflows?live=0").status_code)
        )
        blocked.start()
        time.sleep(0.3)  # the list request is now waiting for the lock
        answered: dict[str, float] = {}

        def static() -> None:
            began = time.monotonic()
            assert http.get("/static/style.css").status_code == 200
            # A page answered before any query (a bad step number): handled in the meantime.
            assert http.get("/workflows/x/steps/abc/output").status_code == 400
            answered["s"] = time.monotonic() - began

        other = threading.Thread(target=static)
        other.start()
        other.join(2)
        assert "s" in answered and answered["s"] < 1.5, "the stuck request stalled the others"
        assert blocked.is_alive()  # really stuck all along
        # Every pooled connection (4) stuck: the next page answers 503 after a short wait.
        more = [threading.Thread(target=http.get, args=("/workflows?live=0",)) for _ in range(3)]
        for thread in more:
            thread.start()
        time.sleep(0.3)
        began = time.monotonic()
        late = http.get("/workflows?live=0")
        assert late.status_code == 503 and time.monotonic() - began < DB_WAIT_S + 2
        locker.rollback()
    for thread in (blocked, *more):
        thread.join(10)
    assert stuck["code"] == 200
    with DBOSClient(db_url) as client:
        for bad in (0, float("inf"), float("nan"), True):
            with pytest.raises(DBOSException, match="from 0 to 86400"):
                client.set_connection_wait(bad)
            with pytest.raises(DBOSException, match="from 0 to 86400"):
                client.set_statement_timeout(bad)


def test_a_slow_table_costs_only_its_pages_and_no_queue_grows(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-review: with a table locked (a migration, a long transaction), the pages that read it
    end at the statement timeout and free their connections, so pages that do not read it keep
    answering; and requests beyond a full worker pool plus its queue are a 503 at once, not a
    growing wait."""
    from dbos_cli.ui import app as ui_app

    monkeypatch.setattr(ui_app, "DB_STATEMENT_S", 1.0)
    monkeypatch.setattr(ui_app, "DB_THREADS", 1)
    monkeypatch.setattr(ui_app, "MAX_WAITING", 1)
    launch_dbos()
    with SetWorkflowID("steps-1"):
        DBOS.start_workflow(review_two_steps).get_result()
    with TestClient(create_app(db_url), follow_redirects=False) as http:
        assert http.get("/queues").status_code == 200
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE dbos.operation_outputs IN ACCESS EXCLUSIVE MODE")
            codes: list[int] = []
            reader = threading.Thread(
                target=lambda: codes.append(http.get("/workflows/steps-1?live=0").status_code)
            )
            waiter = threading.Thread(target=lambda: codes.append(http.get("/queues").status_code))
            reader.start()
            time.sleep(0.3)  # the one worker is in the locked read
            waiter.start()
            time.sleep(0.3)  # one request waits for the worker: the queue is full
            began = time.monotonic()
            assert http.get("/executors").status_code == 503
            assert time.monotonic() - began < 0.5  # at once, not after the stuck one
            reader.join(5)
            waiter.join(5)
            # The locked read ended at the statement timeout (503); the waiting page then ran.
            assert sorted(codes) == [200, 503], codes
            assert http.get("/executors").status_code == 200  # the table is still locked
            locker.rollback()
        assert http.get("/workflows/steps-1?live=0").status_code == 200


def test_bulk_confirmation_acts_on_exactly_what_it_showed(http: TestClient, db_url: str) -> None:
    """Finding 2: workflows arriving between the preview and the confirmation are not acted on;
    the page asks again with the new count."""
    _enqueue(db_url, *(f"race-{i}" for i in range(3)))
    page = http.get("/workflows?id=race-&live=0").text
    asked = http.post("/bulk/cancel", data={"csrf": _csrf(page), "filters": "id=race-"})
    assert "<strong>3</strong> of the 3" in asked.text
    _enqueue(db_url, *(f"race-{i}" for i in range(3, 10)))  # while the operator reads
    again = http.post("/bulk/cancel", data=_form(asked.text))
    assert again.status_code == 200 and 'id="bulk-moved"' in again.text
    assert "<strong>10</strong> of the 10" in again.text
    with DBOSClient(db_url) as client:
        assert {w.status for w in client.list_workflows(workflow_id_prefix="race-")} == {"ENQUEUED"}
        done = http.post("/bulk/cancel", data=_form(again.text))
        assert done.status_code == 303
        statuses = [w.status for w in client.list_workflows(workflow_id_prefix="race-")]
        assert statuses == ["CANCELLED"] * 10


def test_live_rows_carry_their_pager(http: TestClient, db_url: str) -> None:
    """Finding 3: the rows fragment holds the pager, keyed on the rows it shows, so paging after
    a live update reaches every workflow."""
    _enqueue(db_url, "pg-0", "pg-1", "pg-2")
    _enqueue(db_url, "pg-3", "pg-4")  # arrive after the page was loaded: live.js refetches
    fragment = http.get("/workflows?id=pg-&limit=2&live=0&fragment=rows").text
    seen = re.findall(r">(pg-\d)</a>", fragment)
    older = re.search(r'href="([^"]+)" id="older"', fragment)
    assert seen == ["pg-4", "pg-3"] and older, "the fragment must carry the Older link"
    while older:
        page = http.get(unescape(older.group(1))).text
        seen += re.findall(r">(pg-\d)</a>", page)
        older = re.search(r'href="([^"]+)" id="older"', page)
    assert seen == ["pg-4", "pg-3", "pg-2", "pg-1", "pg-0"]


def test_resume_and_cancel_shown_as_the_runtime_decides(http: TestClient, db_url: str) -> None:
    """Finding 4: a PENDING workflow whose owner process is gone is resumable even though a live
    process has the same executor ID; the page offers what the runtime's dry run allows."""
    _enqueue(db_url, "orphan-1")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dbos.workflow_status SET status = 'PENDING', executor_id = 'local', "
            "owner_process = 'a-process-that-is-gone' WHERE workflow_uuid = 'orphan-1'"
        )
    with DBOSClient(db_url) as client:
        assert "local" in {e.executor_id for e in client.list_executors() if e.state == "ALIVE"}
        [resume] = client.resume_each(["orphan-1"], dry_run=True)
        assert resume.changed
    page = http.get("/workflows/orphan-1?live=0").text
    assert re.findall(r'id="action-([a-z]+)"', page) == ["cancel", "resume", "restart", "fork"]
    with SetWorkflowID("done-1"):
        DBOS.start_workflow(review_plain, 1).get_result()
    done = http.get("/workflows/done-1?live=0").text
    assert re.findall(r'id="action-([a-z]+)"', done) == ["restart", "fork"]


def test_urls_merge_their_query_and_dot_ids_page_their_steps(http: TestClient) -> None:
    """Finding 5: one helper builds every workflow URL with its query parameters."""
    assert workflow_url(".", steps_from=200) == "/workflow?id=.&steps_from=200"
    assert workflow_url("a/b", steps_from=0) == "/workflows/a%2Fb?steps_from=0"
    with SetWorkflowID("."):
        DBOS.start_workflow(review_two_steps).get_result()
    page = http.get("/workflow?id=.&steps_from=1&live=0")
    earlier = re.search(r'href="([^"]+)" id="steps-prev"', page.text)
    assert earlier and unescape(earlier.group(1)) == "/workflow?id=.&steps_from=0"
    first = http.get(unescape(earlier.group(1)) + "&live=0")
    assert first.status_code == 200 and "review_step" in first.text


def test_token_exchange_keeps_the_encoded_path_and_the_query(db_url: str) -> None:
    """Finding 6: ``?token=`` trades for a cookie and goes exactly where the link pointed."""
    app = create_app(db_url, token=TOKEN, hosts=HostRule.for_bind("127.0.0.1", 8080))
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as http:
        cases = {
            f"/workflow?id=.&token={TOKEN}": "/workflow?id=.",
            f"/workflows?status=ERROR&token={TOKEN}&status=SUCCESS": (
                "/workflows?status=ERROR&status=SUCCESS"
            ),
            f"/workflows/x%2F..%2F..%2Fqueues?token={TOKEN}": "/workflows/x%2F..%2F..%2Fqueues",
        }
        for asked, target in cases.items():
            got = http.get(asked)
            assert got.status_code == 303 and got.headers["location"] == target, asked


def test_dbos_ui_refuses_what_it_cannot_serve(db_url: str, tmp_path: Path) -> None:
    """Finding 7 and the start-up nits: one line, exit 1, and nothing claims to be listening."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = dbos("ui", "--port", port, "--db-url", db_url, timeout=30)
    assert busy.returncode == 1 and "dbos ui on" not in busy.stdout + busy.stderr
    assert busy.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    blank = tmp_path / "token"
    blank.write_text("\n" + TOKEN + "\n")
    with pytest.raises(DBOSConfigError, match="first line is blank"):
        _read_token(None, blank)
    with pytest.raises(DBOSConfigError, match="--token is empty"):
        _read_token("", None)
    with pytest.raises(DBOSConfigError, match="is not a host name"):
        HostRule.for_bind("127.0.0.1", 8080, ["a b"])
    assert HostRule.for_bind("127.0.0.1", 8080, ["dash.example", "[::1]:80"]).allows("dash.example")
    assert _loopback("LOCALHOST") and _loopback("localhost") and not _loopback("example.com")


def test_the_internal_queue_is_not_listed(http: TestClient, db_url: str) -> None:
    """Finding 8: the runtime's internal queue stays out of list_queues and the dashboard."""
    with SetWorkflowID("to-resume"):
        DBOS.start_workflow(review_plain, 1).get_result()
    DBOS.resume_workflow("to-resume").get_result()  # goes through the internal queue
    with DBOSClient(db_url) as client:
        assert INTERNAL_QUEUE not in {q.name for q in client.list_queues()}
    assert INTERNAL_QUEUE not in http.get("/queues?live=0").text
    assert http.get(f"/queues/{INTERNAL_QUEUE}").status_code == 404


def test_why_is_shown_for_finished_workflows(http: TestClient) -> None:
    """Finding 9: the 'why' answer for every workflow, not only live ones."""
    with SetWorkflowID("finished-1"):
        DBOS.start_workflow(review_plain, 1).get_result()
    page = http.get("/workflows/finished-1?live=0").text
    assert 'id="why"' in page and "<dt>Why</dt>" in page


def test_attributes_big_values_and_echoed_input(http: TestClient, db_url: str) -> None:
    """Finding 10: escapes inside attributes are plain text; a page embeds at most EMBED_CHARS
    of a value (the rest downloads); error pages cap echoed input; NUL named; an expired form
    gets an HTML page."""
    odd = "evil\u202etxt"
    with SetWorkflowID(odd):
        DBOS.start_workflow(review_plain, 1).get_result()
    page = http.get("/workflows/evil%E2%80%AEtxt?live=0").text
    title = page.split("<title>")[1].split("</title>")[0]
    assert "\\u202e" in title and "<span" not in title and "\u202e" not in page
    search = http.get("/workflows?id=evil%E2%80%AE&live=0").text
    assert 'value="evil\\u202e"' in search
    big = "y" * 200_000
    with SetWorkflowID("big-1"):
        DBOS.start_workflow(review_plain, big).get_result()
    shown = http.get("/workflows/big-1?live=0")
    assert len(shown.text) < 4 * EMBED_CHARS + 20_000
    links = re.findall(r'href="([^"]+)" download>download the whole value', shown.text)
    assert sorted(links) == ["/workflows/big-1/whole/input", "/workflows/big-1/whole/output"]
    assert http.get(links[0]).json() in ([big], big)
    crafted = "Your session expired. Log in again at https://evil.example/login " * 3
    bad = http.get("/workflows", params={"status": crafted})
    assert bad.status_code == 400 and "evil.example/login Your" not in unescape(bad.text)
    missing = http.get("/workflows/" + "z" * 500)
    assert missing.status_code == 404 and "z" * 61 not in missing.text
    nul = http.get("/workflows?id=%00")
    assert nul.status_code == 400 and "NUL" in nul.text and "expected a string" not in nul.text
    expired = http.post("/workflows/big-1/cancel", data={"csrf": "from-before-a-restart"})
    assert expired.status_code == 403 and "<html" in expired.text and "expired" in expired.text


def test_one_page_stuck_on_a_lock_leaves_connections_to_the_others(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Third review: two workflow tabs polling during a table lock took all 4 pooled
    connections, and unrelated pages answered 503. One page now runs at most PER_PAGE requests
    at once (the rest wait briefly, then 503), so the other pages keep their connections."""
    from dbos_cli.ui import app as ui_app

    monkeypatch.setattr(ui_app, "DB_STATEMENT_S", 4.0)
    launch_dbos()
    with SetWorkflowID("steps-2"):
        DBOS.start_workflow(review_two_steps).get_result()
    with TestClient(create_app(db_url), follow_redirects=False) as http:
        assert http.get("/executors").status_code == 200
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE dbos.operation_outputs IN ACCESS EXCLUSIVE MODE")
            codes: list[int] = []
            tabs = [
                threading.Thread(
                    target=lambda: codes.append(http.get("/workflows/steps-2?live=0").status_code)
                )
                for _ in range(ui_app.PER_PAGE * 2)
            ]
            for tab in tabs:
                tab.start()
            time.sleep(0.5)  # PER_PAGE of them in the locked read, as many waiting
            began = time.monotonic()
            assert http.get("/workflows/steps-2?live=0").status_code == 503  # this page is full
            assert http.get("/executors").status_code == 200  # another page still runs
            assert time.monotonic() - began < 2.0
            locker.rollback()
        for tab in tabs:
            tab.join(15)
        assert http.get("/workflows/steps-2?live=0").status_code == 200
