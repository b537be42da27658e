"""`dbos workflow why` and ``DBOSClient.explain_workflow``: every reason produced for real on
Postgres (a live app's queues, waits and outcomes; crashed and relaunched runtimes for versions
and recovery attempts; a SIGKILLed executor for an expired owner), seen through the client, the
CLI's real entry point and the dashboard."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from dbos_cli.ui.app import create_app
from runtime import (
    DBOS,
    DBOSClient,
    DBOSNonExistentWorkflowError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowExplanation,
)
from runtime.waiting import format_time
from tests.cli_helpers import dbos
from tests.fleet import Fleet

Launch = Callable[..., None]


def _until(predicate: Callable[[], Any], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.03)


def _facts(e: WorkflowExplanation) -> dict[str, str]:
    return dict(e.facts)


def _without_lease(found: dict[str, Any]) -> dict[str, Any]:
    facts = [f for f in found["facts"] if not f["label"].startswith("owner lease")]
    cause = found["cause"] and _without_lease(found["cause"])
    return {**found, "facts": facts, "cause": cause}


def _status(client: DBOSClient, wid: str) -> str | None:
    found = client.get_workflow_status(wid)
    return None if found is None else found.status


def _steps(client: DBOSClient, wid: str) -> int:
    return len(client.list_workflow_steps(wid))


def test_why_explains_a_live_apps_waits_queues_and_outcomes(
    launch_dbos: Launch, db_url: str
) -> None:
    release, holding = threading.Event(), threading.Event()

    @DBOS.step()
    def hold() -> None:
        holding.set()
        release.wait(30)

    @DBOS.workflow()
    def holder() -> str:
        hold()
        return "held"

    @DBOS.workflow()
    def quick(x: int) -> int:
        return x

    @DBOS.workflow()
    def failing() -> None:
        raise ValueError("boom")

    @DBOS.workflow()
    def sleeper() -> None:
        DBOS.sleep(60)

    @DBOS.workflow()
    def receiver() -> Any:
        return DBOS.recv("go", timeout_seconds=60)

    @DBOS.workflow()
    def reader() -> Any:
        return DBOS.get_event("sleeper-1", "ready", timeout_seconds=60)

    @DBOS.workflow()
    def parent() -> Any:
        return DBOS.start_workflow(receiver).get_result()

    @DBOS.workflow()
    def grandparent() -> Any:
        return DBOS.start_workflow(parent).get_result()

    one = Queue("why_one", concurrency=1, worker_concurrency=1)
    parts = Queue("why_parts", concurrency=1, partition_queue=True)
    limited = Queue("why_limited", limiter={"limit": 1, "period": 60})
    later = Queue("why_later")
    launch_dbos()

    for wid, func in [
        ("sleeper-1", sleeper),
        ("receiver-1", receiver),
        ("reader-1", reader),
        ("gp", grandparent),
        ("cancel-me", sleeper),
    ]:
        with SetWorkflowID(wid):
            DBOS.start_workflow(func)
    with SetWorkflowID("done-1"):
        quick(1)
    with SetWorkflowID("failed-1"), pytest.raises(ValueError):
        failing()
    running = one.enqueue(holder).workflow_id
    assert holding.wait(20)
    behind = [one.enqueue(quick, n).workflow_id for n in (2, 3)]
    with SetEnqueueOptions(queue_partition_key="tenant-a"):
        parted = [parts.enqueue(holder).workflow_id, parts.enqueue(quick, 4).workflow_id]
    first = limited.enqueue(quick, 5)
    assert first.get_result() == 5
    held = limited.enqueue(quick, 6).workflow_id
    with SetEnqueueOptions(delay_seconds=60):
        delayed = later.enqueue(quick, 7).workflow_id

    with DBOSClient(db_url) as client:
        old = client.enqueue(
            {"workflow_name": "quick_old", "queue_name": "why_later", "app_version": "v-old"}
        ).workflow_id
        # Resuming an enqueued workflow moves it to the internal queue (to start now); no
        # process has its function, so it stays there.
        orphan = client.enqueue({"workflow_name": "nobody_has_it", "queue_name": "why_later"})
        client.resume_workflow(orphan.workflow_id)
        _until(lambda: _steps(client, "cancel-me") == 1, "cancel-me to sleep")
        DBOS.cancel_workflow("cancel-me")
        _until(lambda: _steps(client, "sleeper-1") == 1, "sleeper-1 to sleep")
        _until(lambda: _steps(client, "receiver-1") == 1, "receiver-1 to wait")
        _until(lambda: _steps(client, "reader-1") == 1, "reader-1 to wait")
        _until(lambda: _status(client, "gp-1-1") is not None, "the grandchild")
        _until(lambda: _steps(client, "gp-1-1") == 1, "the grandchild to wait")
        _until(lambda: _status(client, parted[0]) == "PENDING", "the partition's first")
        explain = client.explain_workflow

        slept = explain("sleeper-1")
        wake = client.list_workflow_steps("sleeper-1")[0].output
        assert (slept.reason, slept.status) == ("SLEEPING", "PENDING")
        assert slept.summary.startswith(f"sleeping until {format_time(wake)} (in ")
        assert _facts(slept)["owner process"].endswith("; ALIVE)")

        message = explain("receiver-1")
        assert message.reason == "WAITING_FOR_MESSAGE"
        assert message.summary.startswith("waiting in recv on topic 'go' since ")
        recv_end = client.list_workflow_steps("receiver-1")[0].output
        assert f"(times out at {format_time(recv_end)}, in " in message.summary

        event = explain("reader-1")
        assert event.reason == "WAITING_FOR_EVENT"
        assert event.summary.startswith("waiting for event 'ready' of workflow sleeper-1 since ")

        # A wait recorded before migration 12 kept no topic or key: said as such.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE dbos.operation_outputs SET wait_target = NULL WHERE workflow_uuid = %s",
                ("reader-1",),
            )
        older = explain("reader-1")
        assert older.reason == "WAITING_FOR_MESSAGE_OR_EVENT"
        assert older.summary.startswith("waiting for a message or an event until ")

        # A grandparent waits on its child, which waits on its own child, which waits in recv.
        chain = explain("gp")
        assert chain.reason == "WAITING_FOR_CHILD" and "gp-1" in chain.summary
        assert chain.cause is not None and chain.cause.workflow_id == "gp-1"
        assert chain.cause.reason == "WAITING_FOR_CHILD"
        assert chain.cause.cause is not None and chain.cause.cause.workflow_id == "gp-1-1"
        assert chain.cause.cause.reason == "WAITING_FOR_MESSAGE"
        assert chain.cause.cause.cause is None
        again = asyncio.run(client.explain_workflow_async("gp"))
        # The same answer (a heartbeat in between moves the lease's end: not compared).
        assert _without_lease(again.to_json()) == _without_lease(chain.to_json())

        # The sentence names the step it runs, once the process has published it.
        _until(lambda: explain(running).summary.startswith("running step"), "the running step")
        busy = explain(running)
        assert busy.reason == "RUNNING" and busy.summary.startswith("running step 1 '")
        assert ".hold' (since " in busy.summary

        queued = explain(behind[1])
        assert queued.reason == "QUEUED"
        assert queued.summary == (
            f"enqueued on queue why_one behind 1 other; all 1 of its slots are in use: {running}; "
            "each of the 1 live process runs its limit of 1 from this queue"
        )
        assert _facts(queued)["held by"] == running
        assert (_facts(queued)["concurrency"], _facts(queued)["worker concurrency"]) == ("1", "1")

        partition = explain(parted[1])
        assert partition.reason == "QUEUED" and _facts(partition)["partition key"] == "tenant-a"
        assert partition.summary.startswith("enqueued on queue why_parts behind 0 others; all 1")
        assert _facts(partition)["held by"] == parted[0]

        limit = explain(held)
        started = client.get_workflow(first.workflow_id).started_at
        assert limit.reason == "RATE_LIMITED" and started is not None
        assert limit.summary == (
            "held by the rate limit of queue why_limited (1 start per 60 s, 1 in the last window), "
            f"behind 0 others: its turn comes no earlier than {format_time(started + 60_000)}"
        )

        waits_for_delay = explain(delayed)
        assert waits_for_delay.reason == "DELAYED" and waits_for_delay.status == "DELAYED"
        assert waits_for_delay.summary.startswith("delayed until ")

        unserved = explain(old)
        assert unserved.reason == "VERSION_NOT_RUNNING"
        assert unserved.summary.startswith(
            "ENQUEUED on application version v-old, which no live process runs (live versions: "
            "test-version)"
        )
        # Waiting in its queue: a resume would run it outside the queue's limits, so it is
        # advice that says so, not a command offered to move it.
        assert unserved.commands == ("dbos version list",)
        outside = dict(unserved.facts)["outside its queue"]
        assert outside.startswith(f"dbos workflow resume --app-version test-version {old} runs")
        assert "bypassing queue why_later's limits" in outside

        resumed = explain(orphan.workflow_id)
        assert (resumed.reason, resumed.status) == ("RESUMED", "ENQUEUED")
        assert resumed.summary == (
            "resumed (or restarted, or forked), waiting for any live process to pick it up"
        )
        assert _facts(resumed)["queue"] == "internal (resume/restart/fork)"

        cancelled = explain("cancel-me")
        assert cancelled.reason == "CANCELLED" and cancelled.commands == (
            "dbos workflow resume cancel-me",
        )
        assert explain("done-1").reason == "SUCCEEDED"
        assert explain("failed-1").reason == "FAILED"
        with pytest.raises(DBOSNonExistentWorkflowError):
            explain("no-such-workflow")

    # The CLI, through its real entry point: the sentence, facts, commands, the child's answer.
    human = dbos("workflow", "why", "gp", "--db-url", db_url)
    assert human.returncode == 0, human.stderr
    shown = human.stdout.splitlines()
    assert shown[0] == f"gp: {chain.summary}"
    assert "Because child gp-1 is PENDING:" in shown
    assert any(line.startswith("        gp-1-1: waiting in recv on topic 'go'") for line in shown)
    as_json = dbos("workflow", "why", old, "--json", "--db-url", db_url)
    assert json.loads(as_json.stdout) == unserved.to_json()
    assert {"label": "live versions", "value": "test-version"} in unserved.to_json()["facts"]
    missing = dbos("workflow", "why", "no-such-workflow", "--db-url", db_url)
    assert missing.returncode == 1 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1 and "no-such-workflow" in missing.stderr
    # `dbos workflow get` shows the same sentence.
    got = dbos("workflow", "get", behind[1], "--db-url", db_url)
    assert queued.summary in got.stdout

    # The dashboard: the answer and the child's, escaped, in place of the old waiting line.
    with TestClient(create_app(db_url)) as http:
        page = http.get("/workflows/gp").text
        assert 'id="waiting" data-reason="WAITING_FOR_CHILD"' in page
        assert 'data-reason="WAITING_FOR_MESSAGE"' in page
        assert "waiting in recv on topic &#39;go&#39;" in page
        assert "dbos workflow resume" in http.get(f"/workflows/{old}").text
    release.set()


def test_why_after_relaunches_versions_and_recovery_attempts(
    launch_dbos: Launch, crash: Callable[[], None], db_url: str
) -> None:
    blocked, finish = threading.Event(), threading.Event()

    @DBOS.step()
    def stuck() -> str:
        blocked.set()
        finish.wait(30)
        return "finally"

    @DBOS.workflow(max_recovery_attempts=0)
    def poison() -> str:
        return stuck()

    @DBOS.workflow()
    def napper() -> None:
        DBOS.sleep(60)

    launch_dbos(application_version="v1")
    for wid, func in [("poison-1", poison), ("old-1", napper)]:
        with SetWorkflowID(wid):
            DBOS.start_workflow(func)
    assert blocked.wait(10)
    with DBOSClient(db_url) as client:
        _until(lambda: _steps(client, "old-1") == 1, "old-1 to sleep")
    crash()
    launch_dbos(application_version="v1")  # recovery: poison-1 is past its limit of 0
    with DBOSClient(db_url) as client:
        _until(lambda: _status(client, "poison-1") != "PENDING", "poison-1 to be given up")
        given_up = client.explain_workflow("poison-1")
        assert given_up.reason == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
        assert given_up.summary.startswith("stopped after 2 attempts to run it (the limit is 0)")
        assert given_up.commands == ("dbos workflow resume poison-1",)
    crash()
    launch_dbos(application_version="v2")  # nothing runs v1 now
    with DBOSClient(db_url) as client:
        stranded = client.explain_workflow("old-1")
    assert stranded.reason == "VERSION_NOT_RUNNING" and stranded.status == "PENDING"
    assert stranded.summary.startswith(
        "PENDING on application version v1, which no live process runs (live versions: v2)"
    )
    assert stranded.commands[0] == "dbos workflow resume --app-version v2 old-1"
    assert _facts(stranded)["to do"] == "start a process of application version v1"
    assert "dbos workflow fork --step 2 --app-version v2 old-1" in stranded.commands

    # restart and resume say where the work will (not) run, and point to `why`.
    restarted = dbos("workflow", "restart", "old-1", "--db-url", db_url)
    assert restarted.returncode == 0, restarted.stderr
    new_id = restarted.stdout.splitlines()[0]
    assert f"restarted old-1 as {new_id}" in restarted.stdout
    assert f"see `dbos workflow why {new_id}`" in restarted.stderr
    with DBOSClient(db_url) as client:
        moved = client.explain_workflow(new_id)
    assert moved.reason == "VERSION_NOT_RUNNING"
    assert moved.summary.startswith("resumed (or restarted, or forked) on application version v1")
    resumed = dbos("workflow", "resume", "poison-1", "--db-url", db_url)
    assert "see `dbos workflow why poison-1`" in resumed.stderr
    as_json = dbos("workflow", "restart", "old-1", "--json", "--db-url", db_url)
    assert json.loads(as_json.stdout)["restarted_from"] == "old-1"
    # A live version, but a queue no process declares: resume says so too.
    with DBOSClient(db_url) as client:
        ghost = {"workflow_name": "napper", "queue_name": "ghost-q", "app_version": "v2"}
        ghost_id = client.enqueue(ghost).workflow_id
        client.cancel_workflow(ghost_id)
    resumed = dbos("workflow", "resume", ghost_id, "--db-url", db_url)
    assert resumed.returncode == 0, resumed.stderr
    assert "no process has declared this queue" in resumed.stderr, resumed.stderr
    assert f"see `dbos workflow why {ghost_id}`" in resumed.stderr
    finish.set()


def test_why_sees_a_killed_owner_about_to_be_taken_over(fleet: Fleet) -> None:
    # "b" serves the same version but is frozen (its 10 s lease keeps it live meanwhile): when
    # "a" dies, the work waits for b, and why says so; once b thaws (its next heartbeat, within
    # a quarter of its lease), it takes the work over.
    fleet.start("a")
    fleet.start("b", lease=10)
    fleet.signal("b", signal.SIGSTOP)
    [wid] = fleet.enqueue(1, ops=1, seconds=1.5)
    fleet.wait_until(lambda: fleet.statuses([wid])[wid] == "PENDING", 20, "a to start it")
    with DBOSClient(fleet.db_url) as client:
        busy = client.explain_workflow(wid)
        assert busy.reason == "RUNNING", busy.summary
        assert _facts(busy)["executor ID"] == "a"
        fleet.signal("a", signal.SIGKILL)
        fleet.procs["a"].wait(10)
        gone = client.explain_workflow(wid)
        assert gone.reason == "OWNER_GONE", gone.summary
        assert "a live process of application version" in gone.summary
        assert gone.summary.endswith("is about to take it over")
        # Found dead by its pid on this host, before its lease ran out: never a future expiry.
        assert ", which was found dead at " in gone.summary, gone.summary
        assert "lease ends" not in str(gone.facts) and "lease ended" not in str(gone.facts)
        assert _facts(gone)["owner process"].endswith("; DEAD)")
        shown = dbos("workflow", "why", wid, "--db-url", fleet.db_url)
        assert shown.stdout.startswith(f"{wid}: owned by process ")
        fleet.signal("b", signal.SIGCONT)
        fleet.wait_until(lambda: fleet.statuses([wid])[wid] == "SUCCESS", 30, "b to finish it")
        done = client.explain_workflow(wid)
        assert done.reason == "SUCCEEDED" and _facts(done)["status"] == "SUCCESS"


def test_why_stops_at_a_cycle_of_children(db_url: str) -> None:
    # No real run makes two workflows each other's child; hand-made rows check that an
    # explanation still ends. A live executor row on another host owns both.
    now = int(time.time() * 1000)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
            "application_version, lease_ms, started_at, last_heartbeat_at) "
            "VALUES ('p-x', 'x', 'elsewhere.invalid', 1, 'v', 600000, %s, %s)",
            (now, now),
        )
        for wid, other in (("a", "b"), ("b", "a")):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, "
                "application_version, owner_process) VALUES (%s, 'PENDING', 'w', '{}', 'v', 'p-x')",
                (wid,),
            )
            conn.execute(
                "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, "
                "child_workflow_id) VALUES (%s, 1, 'w', %s)",
                (wid, other),
            )
    with DBOSClient(db_url) as client:
        found = client.explain_workflow("a")
    assert found.reason == "WAITING_FOR_CHILD" and found.cause is not None
    assert found.cause.workflow_id == "b" and found.cause.reason == "WAITING_FOR_CHILD"
    assert found.cause.cause is None
