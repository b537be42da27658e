"""`dbos workflow why` counts a queue the way its dispatcher does (runtime.queries' predicates):
slots held by a cancelled or resumed workflow whose old run is still in a step, slots held by a
version no live process runs, only what the dequeue would claim first as "ahead", a rate limit's
turn by position, every live process (not the newest 1000 starts), and a child chain's cut-off.
Each state is produced for real on Postgres with a launched runtime."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import psycopg

from runtime import DBOS, DBOSClient, Queue, SetWorkflowID, WorkflowExplanation
from runtime.explain import MAX_DEPTH
from runtime.waiting import format_time
from tests.cli_helpers import dbos
from tests.test_why import _facts, _until

Launch = Callable[..., None]


def test_why_counts_slots_held_by_cancelled_and_resumed_runs_and_the_rate_turn(
    launch_dbos: Launch, db_url: str
) -> None:
    release, holding = threading.Event(), threading.Event()

    @DBOS.step()
    def slow() -> None:
        holding.set()
        release.wait(30)

    @DBOS.workflow()
    def blocker() -> str:
        slow()
        return "done"

    @DBOS.workflow()
    def quick(x: int) -> int:
        return x

    @DBOS.workflow()
    def chain(depth: int) -> str:
        if depth == 0:
            return str(DBOS.recv("never", timeout_seconds=60))
        return DBOS.start_workflow(chain, depth - 1).get_result()

    one = Queue("wq_one", concurrency=1)
    rate = Queue("wq_rate", limiter={"limit": 1, "period": 60})
    Queue("wq_free")
    launch_dbos()
    try:
        with SetWorkflowID("c-1"):
            one.enqueue(blocker)
        assert holding.wait(20)
        with DBOSClient(db_url) as client:
            explain = client.explain_workflow
            _until(lambda: explain("c-1").summary.startswith("running step"), "the step published")
            owner = _facts(explain("c-1"))["owner process"].split(" ")[0]

            # Cancelled while in its step: the dispatcher still counts its slot; why names it.
            DBOS.cancel_workflow("c-1")
            with SetWorkflowID("c-2"):
                one.enqueue(quick, 2)
            waiting = explain("c-2")
            assert waiting.reason == "QUEUED", waiting.summary
            assert (
                "behind 0 others; all 1 of its slots are in use: c-1 (cancelled, its step '"
                in waiting.summary
            )
            assert f".slow' still running in process {owner} since " in waiting.summary
            cancelled = explain("c-1")
            assert cancelled.reason == "CANCELLED"
            assert "its earlier run is still running step 1 '" in cancelled.summary
            assert cancelled.summary.endswith(f"in process {owner}, and frees its slot then")

            # Resumed while still in that step: it waits for its old run; the slot is still held,
            # and the dequeue does not count it as ahead of c-2 (it cannot claim it yet).
            DBOS.resume_workflow("c-1")
            resumed = explain("c-1")
            assert (resumed.reason, resumed.status) == ("RESUMED", "ENQUEUED"), resumed.summary
            assert resumed.summary.startswith("resumed while its earlier run is still running")
            behind = explain("c-2")
            assert "behind 0 others; all 1 of its slots are in use: c-1 (resumed, its step" in (
                behind.summary
            )

            # Rate limit 1 per 60 s: r-1 started; r-2's turn is a window later, r-3's two. A row
            # pinned to another version is not ahead (a claimer of this version skips it).
            first = rate.enqueue(quick, 1)
            assert first.get_result() == 1
            client.enqueue({"workflow_name": "quick", "queue_name": "wq_rate", "app_version": "v9"})
            second = rate.enqueue(quick, 2).workflow_id
            third = rate.enqueue(quick, 3).workflow_id
            started = client.get_workflow(first.workflow_id).started_at
            assert started is not None
            turns = {wid: explain(wid) for wid in (second, third)}
            assert turns[second].reason == turns[third].reason == "RATE_LIMITED"
            assert turns[third].summary == (
                "held by the rate limit of queue wq_rate (1 start per 60 s, 1 in the last window), "
                f"behind 1 other: its turn comes no earlier than {format_time(started + 120_000)}"
            )
            assert turns[second].summary.endswith(f"than {format_time(started + 60_000)}")
            name = _facts(turns[third])["workflow"]
            assert _facts(turns[third])["dispatch also needs"] == (
                f"a live process that listens to queue wq_rate and registers workflow {name} "
                "(not recorded in the database)"
            )
            # A name no process registers: nothing recorded holds it back; the sentence says
            # what dispatch needs besides.
            typo = client.enqueue({"workflow_name": "blockr", "queue_name": "wq_free"})
            assert explain(typo.workflow_id).summary == (
                "enqueued on queue wq_free behind 0 others; 0 running; nothing recorded holds it "
                "back: it starts when a live process that listens to queue wq_free and registers "
                "workflow blockr claims it"
            )
            unversioned = client.enqueue({"workflow_name": "nobody", "queue_name": "wq_rate"})
            assert _facts(explain(unversioned.workflow_id))["application version"].startswith(
                "none (unversioned: any process"
            )

            # A chain deeper than MAX_DEPTH ends with a visible marker.
            with SetWorkflowID("deep"):
                DBOS.start_workflow(chain, MAX_DEPTH + 2)
            leaf = "deep" + "-1" * (MAX_DEPTH + 2)
            _until(lambda: client.get_workflow_status(leaf) is not None, "the deepest child")
            _until(lambda: len(client.list_workflow_steps(leaf)) == 1, "it to wait")
            node: WorkflowExplanation | None = explain("deep")
            levels = 0
            while node is not None and node.cause is not None:
                node, levels = node.cause, levels + 1
            assert levels == MAX_DEPTH and node is not None
            assert "… deeper children not shown" in node.summary

            # A thousand newer process starts do not hide this live process from why.
            now = int(time.time() * 1000)
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
                    "application_version, lease_ms, started_at, last_heartbeat_at, stopped_at) "
                    "SELECT 'old-' || n, 'x', 'elsewhere.invalid', 1, 'v-past', 1000, "
                    "%s + n, %s + n, %s + n FROM generate_series(1, 1100) n",
                    (now, now, now),
                )
            listed = {e.process_id: e.state for e in client.list_executors()}
            assert listed[owner] == "ALIVE"  # and the executors view still lists it
            still = explain("c-1")
            assert still.reason == "RESUMED", still.summary
            assert explain("deep").reason == "WAITING_FOR_CHILD"
    finally:
        release.set()


def test_why_names_a_slot_held_by_a_version_no_live_process_runs(
    launch_dbos: Launch, crash: Callable[[], None], db_url: str
) -> None:
    stuck, finish = threading.Event(), threading.Event()

    @DBOS.step()
    def hang() -> None:
        stuck.set()
        finish.wait(30)

    @DBOS.workflow()
    def held() -> None:
        hang()

    @DBOS.workflow()
    def later() -> int:
        return 1

    queue = Queue("wq_versions", concurrency=1)
    try:
        launch_dbos(application_version="v1")
        with SetWorkflowID("old-1"):
            queue.enqueue(held)
        assert stuck.wait(20)
        crash()
        launch_dbos(application_version="v2")
        with DBOSClient(db_url) as client:
            # Pinned to another version, enqueued first: the v2 dequeue skips it, so not ahead.
            client.enqueue(
                {"workflow_name": "later", "queue_name": "wq_versions", "app_version": "v3"}
            )
            with SetWorkflowID("new-1"):
                queue.enqueue(later)
            found = client.explain_workflow("new-1")
        assert found.reason == "QUEUED", found.summary
        assert found.summary.startswith(
            "enqueued on queue wq_versions behind 0 others; all 1 of its slots are in use: old-1 "
            "(application version v1, which no live process runs)"
        )
        assert (
            _facts(found)["declared by"]
            == "application version v2 (a live process of that version)"
        )
    finally:
        finish.set()


def test_why_quotes_its_commands_and_counts_held_worker_slots(
    launch_dbos: Launch, db_url: str
) -> None:
    """Re-review: a worker slot held by a cancelled run still in its step is the process's limit
    reached (the dispatcher counts it); rows the dequeue would never claim (a version no live
    process runs) are not "ahead" of an unversioned workflow; a delay that has passed is not "in
    0s"; and every command is quoted for the shell (an ID may hold a space or a ``;``)."""
    release, holding = threading.Event(), threading.Event()

    @DBOS.step()
    def hold() -> None:
        holding.set()
        release.wait(30)

    @DBOS.workflow()
    def held() -> str:
        hold()
        return "done"

    @DBOS.workflow()
    def quick(x: int) -> int:
        return x

    worker = Queue("wq_worker", worker_concurrency=1)
    single = Queue("wq_single", concurrency=1)
    launch_dbos()
    try:
        with SetWorkflowID("w-1"):
            worker.enqueue(held)
        assert holding.wait(20)
        with DBOSClient(db_url) as client:
            explain = client.explain_workflow
            _until(lambda: explain("w-1").summary.startswith("running step"), "the step published")
            DBOS.cancel_workflow("w-1")
            with SetWorkflowID("w-2"):
                worker.enqueue(quick, 2)
            assert "runs its limit of 1 from this queue" in explain("w-2").summary

            holding.clear()
            with SetWorkflowID("nv-h"):
                single.enqueue(held)
            assert holding.wait(20)
            dead = {"workflow_name": "quick", "queue_name": "wq_single", "app_version": "v-dead"}
            client.enqueue(dead)
            mine = client.enqueue({"workflow_name": "quick", "queue_name": "wq_single"})
            assert "behind 0 others" in explain(mine.workflow_id).summary

            later = client.enqueue(
                {"workflow_name": "quick", "queue_name": "wq_nobody", "delay_seconds": 0.1}
            )
            time.sleep(0.3)
            assert explain(later.workflow_id).summary.startswith("its delay ended at ")

            # Each printed command, run by a shell, is `dbos` with exactly these words, and the
            # CLI reads the ID as the ID (not an option): the command acts on that workflow.
            for hostile in ("x y;touch pwned", "-lead $(x)", "--help", "nl\nline\x1b"):
                client.enqueue(
                    {"workflow_name": "quick", "queue_name": "wq_nobody", "workflow_id": hostile}
                )
                client.cancel_workflow(hostile)
                [command] = explain(hostile).commands
                words = subprocess.run(
                    ["bash", "-c", "printf '%s\\0' " + command.removeprefix("dbos ")],
                    capture_output=True,
                    check=True,
                ).stdout.split(b"\0")[:-1]
                args = [w.decode() for w in words]
                assert args[:2] == ["workflow", "resume"] and args[-1] == hostile, (command, args)
                assert "\n" not in command and "\x1b" not in command  # shown as escapes
                ran = dbos(*args[:2], "--db-url", db_url, *args[2:])  # before any --
                assert ran.returncode == 0, (command, ran.stderr)
                assert client.get_workflow_status(hostile).status == "ENQUEUED"  # type: ignore[union-attr]
    finally:
        release.set()
