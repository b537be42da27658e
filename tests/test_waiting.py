"""What a PENDING or ENQUEUED workflow waits for, derived from the database alone: the rule on
hand-made records (the cases a step-number rule can get wrong), then real workflows parked in a
sleep, a recv, a get_event and on a child, seen through the `dbos` CLI, the dashboard and
``DBOSClient``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from starlette.testclient import TestClient

from dbos_cli.ui.app import create_app
from runtime import DBOS, DBOSClient, SetWorkflowID, messaging, queries
from runtime.engine import results
from runtime.records import LastStep, WaitSnapshot
from runtime.serialization import serialize
from runtime.waiting import (
    GET_EVENT_OP,
    GET_RESULT_OP,
    RECV_OP,
    SLEEP_OP,
    Waiting,
    WaitTarget,
    derive,
    format_time,
)
from tests.cli_helpers import dbos

Launch = Callable[..., None]
T = 1_796_000_000_000  # an end time, in epoch ms


def step(
    n: int,
    name: str,
    *,
    until: int | None = None,
    child: str | None = None,
    child_status: str | None = None,
) -> LastStep:
    output = serialize(until) if until is not None else None
    return LastStep(n, name, output, child, child_status)


def pending(*steps: LastStep) -> WaitSnapshot:
    """A PENDING workflow whose highest recorded steps are ``steps`` (highest first)."""
    return WaitSnapshot("wf", "PENDING", None, list(steps))


# -- the rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # DBOS.sleep as the first operation: step 1 cannot be a recv's timeout.
        ([step(1, SLEEP_OP, until=T)], Waiting("sleep", T)),
        # A step, then a sleep right after it.
        ([step(2, SLEEP_OP, until=T), step(1, "work")], Waiting("sleep", T)),
        # recv at 2 waits (not recorded yet), its timeout at 3 is.
        ([step(3, SLEEP_OP, until=T), step(1, "work")], Waiting("message-or-event", T)),
        # recv (or get_event) as the first operation: 1 waits, 2 is its timeout.
        ([step(2, SLEEP_OP, until=T)], Waiting("message-or-event", T)),
        # A recv that waited and then ended: its timeout sits above it; nothing waits now.
        ([step(3, SLEEP_OP, until=T), step(2, RECV_OP)], None),
        ([step(2, SLEEP_OP, until=T), step(1, GET_EVENT_OP)], None),
        # A recv that ended without waiting leaves its timeout slot 2 empty: 3 is a plain sleep.
        ([step(3, SLEEP_OP, until=T), step(1, RECV_OP)], Waiting("sleep", T)),
        ([step(5, SLEEP_OP, until=T), step(3, GET_EVENT_OP)], Waiting("sleep", T)),
        # ...but a recv two below a gap of two is a new recv waiting (3 was its unused slot).
        ([step(5, SLEEP_OP, until=T), step(2, RECV_OP)], Waiting("message-or-event", T)),
        # A child started and not finished; CANCELLED is not an outcome (the parent keeps waiting).
        (
            [step(2, "child_wf", child="c1", child_status="PENDING"), step(1, "work")],
            Waiting("child", detail="c1", child_status="PENDING"),
        ),
        (
            [step(1, "child_wf", child="c1", child_status="CANCELLED")],
            Waiting("child", detail="c1", child_status="CANCELLED"),
        ),
        ([step(1, "child_wf", child="c1", child_status="SUCCESS")], None),
        ([step(1, "child_wf", child="c1", child_status="ERROR")], None),
        # The result of a child, recorded: the wait is over.
        ([step(2, GET_RESULT_OP, child="c1", child_status="PENDING")], None),
        # Running code: no step yet, or an ordinary step last.
        ([], None),
        ([step(4, "work"), step(3, SLEEP_OP, until=T)], None),
        # A user's step that happens to carry the name, holding no end time.
        ([step(1, SLEEP_OP)], None),
        ([LastStep(1, SLEEP_OP, serialize("soon"), None, None)], None),
        ([LastStep(1, SLEEP_OP, "not json", None, None)], None),
    ],
)
def test_the_rule_reads_the_last_two_steps(steps: list[LastStep], expected: Waiting | None) -> None:
    assert derive(pending(*steps)) == expected


def test_only_pending_and_enqueued_workflows_wait() -> None:
    queued = WaitSnapshot("wf", "ENQUEUED", "payments", [])
    assert derive(queued) == Waiting("queue", detail="payments")
    for status in ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
        assert derive(WaitSnapshot("wf", status, None, [step(1, SLEEP_OP, until=T)])) is None


def test_descriptions() -> None:
    until = 1_796_080_200_000  # 2026-11-30 23:10:00 UTC
    before = until - (4 * 60 + 12) * 1000
    sleep = Waiting("sleep", until)
    assert sleep.describe(before) == "sleeping until 2026-11-30 23:10:00Z (in 4m 12s)"
    assert sleep.describe(until + 3_000).startswith(
        "sleep ended at 2026-11-30 23:10:00Z (3s ago): due to go on"
    )
    message = Waiting("message-or-event", until)
    assert message.describe(until - 2 * 3_600_000 - 5 * 60_000) == (
        "waiting for a message or an event until 2026-11-30 23:10:00Z (in 2h 5m)"
    )
    assert message.describe(until + 90_000_000).startswith(
        "wait for a message or an event timed out at 2026-11-30 23:10:00Z (1d 1h ago)"
    )
    child = Waiting("child", detail="c-7", child_status="ENQUEUED")
    assert child.describe(0) == "last step started child workflow c-7, which is ENQUEUED"
    assert Waiting("queue", detail="q").describe(0) == "enqueued on queue q"
    assert sleep.brief(before) == "sleep, 4m 12s left"
    assert message.brief(until + 1) == "message/event, due"
    assert child.brief(0) == "child ENQUEUED"
    # Local time carries its offset, so it is never mistaken for UTC.
    local = format_time(until, local=True)
    assert local[-6] in "+-" or local.endswith("Z")


def test_the_step_names_are_those_the_operations_record() -> None:
    # runtime.waiting keeps its own copies (a listing must not load the engine).
    assert (SLEEP_OP, RECV_OP, GET_EVENT_OP) == (
        messaging.SLEEP_OP,
        messaging.RECV_OP,
        messaging.GET_EVENT_OP,
    )
    assert results.GET_RESULT_STEP == GET_RESULT_OP
    assert f"'{SLEEP_OP}'" in queries.SELECT_WAIT_SNAPSHOTS


# -- real workflows, seen from outside -------------------------------------------------------------


def _wait_for_step(client: DBOSClient, wid: str, function_id: int, name: str) -> Any:
    """The output of step ``function_id`` once it is recorded (under that name)."""
    deadline = time.monotonic() + 30
    while True:
        found = [s for s in client.list_workflow_steps(wid) if s.function_id == function_id]
        if found:
            assert found[0].function_name.endswith(name)  # a local function: its qualname
            return found[0].output
        assert time.monotonic() < deadline, f"{wid} never recorded step {function_id}"
        time.sleep(0.05)


def _cli(db_url: str, *args: str) -> str:
    result = dbos(*args, "--db-url", db_url)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _waiting_json(db_url: str, wid: str) -> Any:
    return json.loads(_cli(db_url, "workflow", "get", wid, "--json"))["waiting"]


def test_cli_dashboard_and_client_show_what_workflows_wait_for(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.step()
    def prepare() -> int:
        return 1

    @DBOS.workflow()
    def sleeper() -> None:
        DBOS.sleep(60)

    @DBOS.workflow()
    def receiver() -> Any:
        prepare()
        return DBOS.recv("go", timeout_seconds=60)

    @DBOS.workflow()
    def event_reader() -> Any:
        return DBOS.get_event("sleeper-1", "never-set", timeout_seconds=90)

    @DBOS.workflow()
    def parent() -> Any:
        return DBOS.start_workflow(receiver).get_result()

    @DBOS.workflow()
    def quick() -> str:
        return "done"

    launch_dbos()
    for wid, func in [
        ("sleeper-1", sleeper),
        ("receiver-1", receiver),
        ("reader-1", event_reader),
        ("p<1>", parent),
        ("quick-1", quick),
    ]:
        with SetWorkflowID(wid):
            DBOS.start_workflow(func)
    child = "p<1>-1"  # a child's ID is its parent's and the step number
    with DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": "nobody_serves_it", "queue_name": "nowhere"})
        queued = client.list_workflows(status="ENQUEUED")[0].workflow_id
        wake = _wait_for_step(client, "sleeper-1", 1, "DBOS.sleep")
        # recv is step 2 (after prepare) and records its timeout's end at 3 when it first waits.
        recv_end = _wait_for_step(client, "receiver-1", 3, "DBOS.sleep")
        event_end = _wait_for_step(client, "reader-1", 2, "DBOS.sleep")
        assert _wait_for_step(client, "p<1>", 1, "receiver") is None
        child_end = _wait_for_step(client, child, 3, "DBOS.sleep")
        client.retrieve_workflow("quick-1").get_result()
        now = int(time.time() * 1000)
        assert now + 50_000 < wake <= now + 60_000
        assert now + 80_000 < event_end <= now + 90_000

        # The client: one workflow, or a page of them in one query.
        assert client.get_workflow_wait("sleeper-1") == Waiting("sleep", wake)
        assert client.get_workflow_wait("quick-1") is None
        assert client.get_workflow_wait("no-such-workflow") is None
        waits = client.get_workflow_waits(
            ["sleeper-1", "receiver-1", "reader-1", "p<1>", "quick-1", queued]
        )
        # What a recv/get_event waits for is recorded with its timeout (since migration 12).
        assert waits.pop("receiver-1").target == WaitTarget("recv", topic="go")
        assert waits.pop("reader-1").target == WaitTarget(
            "get_event", workflow_id="sleeper-1", key="never-set"
        )
        assert waits == {
            "sleeper-1": Waiting("sleep", wake),
            "p<1>": Waiting("child", detail=child, child_status="PENDING"),
            queued: Waiting("queue", detail="nowhere"),
        }

    # `dbos workflow get`: a Waiting line, and a "waiting" object in JSON (null when none).
    sleeping = _waiting_json(db_url, "sleeper-1")
    assert {k: v for k, v in sleeping.items() if k != "description"} == {
        "kind": "sleep",
        "until": sleeping["until"],
        "until_ms": wake,
        "detail": None,
        "child_status": None,
    }
    assert sleeping["description"].startswith(
        f"sleeping until {format_time(wake, local=True)} (in "
    )
    shown = _cli(db_url, "workflow", "get", "sleeper-1")
    assert "Waiting" in shown
    assert f"sleeping until {format_time(wake, local=True)} (in " in shown

    receiving = _waiting_json(db_url, "receiver-1")
    assert (receiving["kind"], receiving["until_ms"]) == ("message-or-event", recv_end)
    assert receiving["description"].startswith("waiting in recv on topic 'go' since ")
    assert f"(times out at {format_time(recv_end, local=True)}, in " in receiving["description"]
    reading = _waiting_json(db_url, "reader-1")
    assert (reading["kind"], reading["until_ms"]) == ("message-or-event", event_end)

    on_child = _waiting_json(db_url, "p<1>")
    assert (on_child["kind"], on_child["detail"], on_child["child_status"]) == (
        "child",
        child,
        "PENDING",
    )
    assert on_child["description"] == f"last step started child workflow {child}, which is PENDING"
    assert f"last step started child workflow {child}, which is PENDING" in _cli(
        db_url, "workflow", "get", "p<1>"
    )
    assert _waiting_json(db_url, queued)["description"] == "enqueued on queue nowhere"

    assert _waiting_json(db_url, "quick-1") is None
    finished = _cli(db_url, "workflow", "get", "quick-1")
    assert "Waiting" not in finished and "finished successfully" in finished

    # `dbos workflow list`: in every JSON row, and a column of the (wide) table.
    rows = {r["workflow_id"]: r for r in json.loads(_cli(db_url, "workflow", "list", "--json"))}
    assert rows["sleeper-1"]["waiting"]["until_ms"] == wake
    assert rows["receiver-1"]["waiting"]["until_ms"] == recv_end
    assert rows["p<1>"]["waiting"]["detail"] == child
    assert rows[child]["waiting"]["until_ms"] == child_end
    assert rows[queued]["waiting"]["kind"] == "queue"
    assert rows["quick-1"]["waiting"] is None
    table = _cli(db_url, "workflow", "list", "--limit", "20")
    assert "Waiting" in table and "sleep, " in table and "child PENDING" in table

    # The dashboard: the same line, escaped.
    with TestClient(create_app(db_url)) as http:
        page = http.get("/workflows/sleeper-1").text
        assert 'id="waiting"' in page
        assert f"sleeping until {format_time(wake, local=True)} (in " in page
        parent_page = http.get("/workflows/" + quote("p<1>")).text
        assert "last step started child workflow p&lt;1&gt;-1, which is PENDING" in parent_page
        assert "p<1>-1" not in parent_page
        # A finished workflow's page says how it ended (the `why` answer), not a wait.
        assert 'data-reason="SUCCEEDED"' in http.get("/workflows/quick-1").text

    # The child gets its message: it ends, so does its parent, and neither waits any more.
    with DBOSClient(db_url) as client:
        client.send(child, "hello", "go")
        assert client.retrieve_workflow("p<1>").get_result() == "hello"
    assert _waiting_json(db_url, "p<1>") is None
    assert _waiting_json(db_url, child) is None


def test_a_listing_page_is_one_indexed_query(db_url: str) -> None:
    # 20,000 workflows of 3 steps each: the page's 50 are found by key, and each one's last two
    # steps by reading its primary key backwards, never by scanning either table.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs)
            SELECT 'wf-' || i, (ARRAY['PENDING', 'SUCCESS'])[1 + i % 2], 'job', '{}'
            FROM generate_series(1, 20000) AS i
            """
        )
        conn.execute(
            """
            INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output)
            SELECT 'wf-' || i, n, 'DBOS.sleep', '1796000000000'
            FROM generate_series(1, 20000) AS i, generate_series(1, 3) AS n
            """
        )
        conn.execute("ANALYZE dbos.workflow_status")
        conn.execute("ANALYZE dbos.operation_outputs")
        page = [f"wf-{i}" for i in range(2, 102, 2)]  # the PENDING ones
        plan = "\n".join(
            str(row[0])
            for row in conn.execute(
                "EXPLAIN " + queries.SELECT_WAIT_SNAPSHOTS, {"workflow_ids": page}
            ).fetchall()
        )
    assert "Seq Scan" not in plan, plan
    with DBOSClient(db_url) as client:
        waits = client.get_workflow_waits(page)
    # Step 3 is a DBOS.sleep right above a recorded step 2: a plain sleep, for each of the 50.
    assert waits == {wid: Waiting("sleep", 1_796_000_000_000) for wid in page}
