"""The guarantees under operators and concurrency, in one process: claims never take more than
allowed, a cancellation is never recorded as an outcome, a workflow never runs on two threads at
once, and an error caused by the workflow's data is its own error, not an outage.

Step bodies write to ``op_ledger`` over their own connection (the runtime never writes it), with
the time each body started and ended, so repeated or overlapping executions are countable.
(Across processes: test_liveness.py; under random faults and operator actions: tests/chaos/.)
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSException,
    Queue,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from runtime.system_db import SystemDatabase
from tests.cli_helpers import dbos
from tests.test_queues import max_overlap

Launch = Callable[..., None]

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS op_ledger (
    workflow_id text NOT NULL, function_id int, started_ms bigint, ended_ms bigint
)
"""


@pytest.fixture
def ledger(db_url: str) -> Iterator[str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    yield db_url


def _note(url: str, started_ms: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO op_ledger VALUES (%s, %s, %s, %s)",
            (DBOS.workflow_id, DBOS.step_id, started_ms, int(time.time() * 1000)),
        )


def _executions(url: str, workflow_id: str) -> Counter[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT function_id FROM op_ledger WHERE workflow_id = %s", (workflow_id,)
        ).fetchall()
    return Counter(int(r[0]) for r in rows)


def _intervals(url: str, workflow_ids: list[str] | None = None) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT started_ms, ended_ms FROM op_ledger "
            "WHERE %s::text[] IS NULL OR workflow_id = ANY(%s)",
            (workflow_ids, workflow_ids),
        ).fetchall()
    return [(int(a), int(b)) for a, b in rows]


def _wait_status(workflow_id: str, wanted: set[str], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = DBOS.get_workflow_status(workflow_id)
        if status is not None and status.status in wanted:
            return status.status
        assert time.monotonic() < deadline, f"{workflow_id}: {status and status.status}"
        time.sleep(0.02)


def _wait_ledger(url: str, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM op_ledger").fetchone() < (count,):
            assert time.monotonic() < deadline, f"fewer than {count} step bodies ran"
            time.sleep(0.02)


def _make_stats_lie(url: str) -> None:
    """The plan shape that once let one dequeue claim several rows: statistics taken when the
    table held one row, so the planner expects one row and re-runs a sub-select per outer row."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs) "
            "VALUES ('stats-seed', 'SUCCESS', 'seed', '{}')"
        )
        conn.execute("ANALYZE dbos.workflow_status")


# -- 1. a claim never takes more than it was allowed ----------------------------------------------


def _enqueue_raw(url: str, queue: str, count: int) -> list[str]:
    with DBOSClient(url) as client:
        return [
            client.enqueue({"workflow_name": "job", "queue_name": queue}, 0).workflow_id
            for _ in range(count)
        ]


def test_each_dequeue_claims_at_most_its_limit_with_several_dispatchers(db_url: str) -> None:
    _make_stats_lie(db_url)
    ids = _enqueue_raw(db_url, "raw", 24)
    sysdb = SystemDatabase(db_url, pool_size=8)
    claims: list[list[str]] = []
    lock = threading.Lock()

    def dispatcher(n: int) -> None:
        while True:
            got = sysdb.dequeue(
                "raw",
                executor_id=f"d{n}",
                process_id=f"p{n}",
                application_version="v",
                names=["job"],
                max_claim=1,
                concurrency=None,
                limiter=None,
            ).workflows
            with lock:
                claims.append([d.claimed.workflow_id for d in got])
            if not got:
                return

    try:
        threads = [threading.Thread(target=dispatcher, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sysdb.close()
    assert max(len(c) for c in claims) == 1
    claimed = [wid for c in claims for wid in c]
    assert sorted(claimed) == sorted(ids)  # every row once, none twice


def test_concurrency_one_runs_one_at_a_time_when_statistics_lie(
    launch_dbos: Launch, ledger: str
) -> None:
    solo = Queue("solo", concurrency=1)

    @DBOS.step()
    def work() -> None:
        started = int(time.time() * 1000)
        time.sleep(0.2)
        _note(ledger, started)

    @DBOS.workflow()
    def job(i: int) -> int:
        work()
        return i

    _make_stats_lie(ledger)
    with DBOSClient(ledger) as client:  # all waiting before the first dispatch
        handles = [
            client.enqueue({"workflow_name": job.__qualname__, "queue_name": "solo"}, i)
            for i in range(4)
        ]
    launch_dbos()
    assert [DBOS.retrieve_workflow(h.workflow_id).get_result() for h in handles] == [0, 1, 2, 3]
    assert solo.concurrency == 1
    assert max_overlap(_intervals(ledger)) == 1


def test_a_recv_consumes_one_message_when_statistics_lie(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def one() -> object:
        return DBOS.recv("t", timeout_seconds=5)

    _make_stats_lie(db_url)
    launch_dbos()
    with SetWorkflowID("receiver"):
        handle = DBOS.start_workflow(one)
    for k in range(5):
        DBOS.send("receiver", k, topic="t")
    assert handle.get_result() == 0
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT count(*) FROM dbos.notifications").fetchone()
    assert left == (4,)


# -- 2. a cancellation is never recorded as an outcome --------------------------------------------


def _parent_and_child(
    ledger: str, hold: threading.Event | None = None
) -> tuple[Callable[..., str], Callable[..., str]]:
    """A parent starting a child of four 0.3 s steps; ``hold`` (while unset) keeps the child in
    its second step, so that a command from another process surely lands mid-run."""

    @DBOS.step()
    def work(tag: str) -> str:
        started = int(time.time() * 1000)
        time.sleep(0.3)
        if hold is not None and tag == "b":
            hold.wait(30)
        _note(ledger, started)
        return tag

    @DBOS.workflow()
    def child() -> str:
        return "".join(work(t) for t in "abcd")

    @DBOS.workflow()
    def parent() -> str:
        handle = DBOS.start_workflow(child)
        return "P:" + handle.get_result()

    return parent, child


@pytest.mark.parametrize("order", ["parent-first", "child-first"])
def test_cancel_then_resume_parent_and_child_ends_success(
    launch_dbos: Launch, ledger: str, order: str
) -> None:
    parent, _ = _parent_and_child(ledger)
    launch_dbos()
    for rnd in range(3):
        pid, cid = f"P{rnd}-{order}", f"P{rnd}-{order}-1"
        with SetWorkflowID(pid):
            handle = DBOS.start_workflow(parent)
        deadline = time.monotonic() + 10
        while _executions(ledger, cid).total() < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        DBOS.cancel_workflow(pid)
        DBOS.cancel_workflow(cid)
        assert _wait_status(pid, {"CANCELLED"}) == "CANCELLED"
        time.sleep(0.5)  # both runners notice and stop
        targets = [pid, cid] if order == "parent-first" else [cid, pid]
        for wid in targets:
            DBOS.resume_workflow(wid)
        assert handle.get_result() == "P:abcd"
        assert DBOS.get_workflow_status(pid).status == "SUCCESS"  # type: ignore[union-attr]
        # Every step of the child ran exactly once, never two at a time.
        assert _executions(ledger, cid) == Counter({1: 1, 2: 1, 3: 1, 4: 1})
        assert max_overlap(_intervals(ledger, [cid])) == 1
        # The parent recorded the child's result, not its cancellation.
        steps = DBOS.list_workflow_steps(pid)
        assert [s.error for s in steps] == [None, None]
        assert steps[-1].output == "abcd"


def test_cancel_and_resume_both_from_the_cli(launch_dbos: Launch, ledger: str) -> None:
    hold = threading.Event()
    parent, _ = _parent_and_child(ledger, hold)
    launch_dbos()
    with SetWorkflowID("cli-P"):
        handle = DBOS.start_workflow(parent)
    _wait_ledger(ledger, 1)
    cancelled = dbos("workflow", "cancel", "cli-P", "cli-P-1", "--db-url", ledger)
    assert cancelled.returncode == 0, cancelled.stderr
    _wait_status("cli-P", {"CANCELLED"})
    hold.set()  # the child's second step ends; the child stops before its third
    time.sleep(0.4)
    resumed = dbos("workflow", "resume", "cli-P", "cli-P-1", "--db-url", ledger)
    assert resumed.returncode == 0, resumed.stderr
    assert handle.get_result() == "P:abcd"
    assert _executions(ledger, "cli-P-1") == Counter({1: 1, 2: 1, 3: 1, 4: 1})


def test_resume_right_after_cancel_waits_for_the_running_step(
    launch_dbos: Launch, ledger: str
) -> None:
    @DBOS.step()
    def work(i: int) -> int:
        started = int(time.time() * 1000)
        time.sleep(0.5)
        _note(ledger, started)
        return i

    @DBOS.workflow()
    def wf() -> list[int]:
        return [work(i) for i in range(3)]

    launch_dbos()
    with SetWorkflowID("quick"):
        handle = DBOS.start_workflow(wf)
    time.sleep(0.2)  # inside step 1
    DBOS.cancel_workflow("quick")
    DBOS.resume_workflow("quick")  # before the runner has noticed: it is still in its step
    assert handle.get_result() == [0, 1, 2]
    assert _executions(ledger, "quick") == Counter({1: 1, 2: 1, 3: 1})
    assert max_overlap(_intervals(ledger)) == 1


def test_resume_of_a_running_workflow_changes_nothing(launch_dbos: Launch, ledger: str) -> None:
    @DBOS.step()
    def work() -> None:
        started = int(time.time() * 1000)
        time.sleep(0.6)
        _note(ledger, started)

    @DBOS.workflow()
    def wf() -> str:
        work()
        return "done"

    launch_dbos()
    with SetWorkflowID("busy"):
        handle = DBOS.start_workflow(wf)
    time.sleep(0.2)
    DBOS.resume_workflow("busy")  # PENDING in a live process: nothing to resume
    assert DBOS.get_workflow_status("busy").status == "PENDING"  # type: ignore[union-attr]
    assert handle.get_result() == "done"
    assert _executions(ledger, "busy") == Counter({1: 1})


def test_cancelled_after_its_last_step_the_handle_agrees_with_the_status(
    launch_dbos: Launch,
) -> None:
    in_tail = threading.Event()

    @DBOS.step()
    def last() -> int:
        return 7

    @DBOS.workflow()
    def wf() -> int:
        value = last()
        in_tail.set()
        time.sleep(0.5)  # workflow code after its last step
        return value

    launch_dbos()
    with SetWorkflowID("tail"):
        handle = DBOS.start_workflow(wf)
    assert in_tail.wait(5)
    DBOS.cancel_workflow("tail")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert handle.get_status().status == "CANCELLED"
    DBOS.resume_workflow("tail")
    assert DBOS.retrieve_workflow("tail").get_result() == 7
    assert handle.get_status().status == "SUCCESS"


def test_parent_past_its_deadline_while_waiting_on_its_child_ends_cancelled(
    launch_dbos: Launch, ledger: str
) -> None:
    parent, _ = _parent_and_child(ledger)
    launch_dbos()
    with SetWorkflowTimeout(0.8), SetWorkflowID("late"):
        handle = DBOS.start_workflow(parent)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert _wait_status("late-1", {"CANCELLED"}) == "CANCELLED"
    time.sleep(0.5)
    assert DBOS.get_workflow_status("late").status == "CANCELLED"  # type: ignore[union-attr]
    assert all(s.error is None for s in DBOS.list_workflow_steps("late"))
    DBOS.resume_workflow("late-1")
    assert DBOS.retrieve_workflow("late-1").get_result() == "abcd"
    DBOS.resume_workflow("late")
    assert DBOS.retrieve_workflow("late").get_result() == "P:abcd"


def test_async_parent_cancelled_and_resumed_with_its_child(
    launch_dbos: Launch, ledger: str
) -> None:
    @DBOS.step()
    def work(tag: str) -> str:
        started = int(time.time() * 1000)
        time.sleep(0.3)
        _note(ledger, started)
        return tag

    @DBOS.workflow()
    def child() -> str:
        return "".join(work(t) for t in "xyz")

    @DBOS.workflow()
    async def parent() -> str:
        handle = await DBOS.start_workflow_async(child)
        return "A:" + await handle.get_result()

    launch_dbos()

    async def scenario() -> str:
        with SetWorkflowID("async-P"):
            handle = await DBOS.start_workflow_async(parent)
        await asyncio.to_thread(_wait_ledger, ledger, 1)
        DBOS.cancel_workflow("async-P")
        DBOS.cancel_workflow("async-P-1")
        await asyncio.sleep(0.6)
        DBOS.resume_workflow("async-P")
        DBOS.resume_workflow("async-P-1")
        return await (await DBOS.retrieve_workflow_async(handle.workflow_id)).get_result()

    assert asyncio.run(scenario()) == "A:xyz"
    assert _executions(ledger, "async-P-1") == Counter({1: 1, 2: 1, 3: 1})


def test_cancelled_queued_workflow_keeps_its_slot_until_its_step_ends(
    launch_dbos: Launch, ledger: str
) -> None:
    queue = Queue("one-slot", concurrency=1)

    @DBOS.step()
    def work() -> None:
        started = int(time.time() * 1000)
        time.sleep(0.6)
        _note(ledger, started)

    @DBOS.workflow()
    def job() -> str:
        work()
        return "ok"

    launch_dbos()
    first = queue.enqueue(job)
    _wait_status(first.workflow_id, {"PENDING"})
    time.sleep(0.15)  # inside its step
    DBOS.cancel_workflow(first.workflow_id)
    second = queue.enqueue(job)  # must wait for the cancelled run's step to end
    assert second.get_result() == "ok"
    DBOS.resume_workflow(first.workflow_id)  # back to its own queue, within its limit
    assert first.get_result() == "ok"
    status = first.get_status()
    assert status.queue_name == "one-slot"
    assert max_overlap(_intervals(ledger)) == 1


# -- 4. an error caused by the workflow's data is the workflow's error ----------------------------


def test_a_key_postgres_cannot_store_fails_the_workflow_naming_it(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def bad_event() -> None:
        DBOS.set_event("a\x00b", 1)

    @DBOS.workflow()
    def bad_topic() -> None:
        DBOS.recv("t\x00", timeout_seconds=1)

    launch_dbos()
    for name, wf in (("event key", bad_event), ("topic", bad_topic)):
        with SetWorkflowID(f"bad-{name}"):
            handle = DBOS.start_workflow(wf)
        with pytest.raises(DBOSException, match=f"{name} .*NUL"):
            handle.get_result()
        status = handle.get_status()
        assert status.status == "ERROR"
        assert status.recovery_attempts == 1  # its one run
        assert DBOS.list_workflow_steps(handle.workflow_id) == []


def test_a_value_the_database_refuses_is_recorded_as_the_workflow_error(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime import serialization

    # Past the runtime's own check, so that the server is the one to refuse it.
    monkeypatch.setattr(serialization, "MAX_IDENTIFIER_BYTES", 100_000)

    @DBOS.workflow()
    def huge_key() -> None:
        # Too large for the key's index (and incompressible): the server refuses it.
        DBOS.set_event(os.urandom(3000).hex(), 1)

    launch_dbos()
    with SetWorkflowID("huge"):
        handle = DBOS.start_workflow(huge_key)
    with pytest.raises(DBOSException, match="index row"):
        handle.get_result()
    assert handle.get_status().status == "ERROR"
    time.sleep(0.3)
    assert handle.get_status().recovery_attempts == 1  # one run: not retried as after an outage


@pytest.mark.parametrize("bad", ["\udc80", "nul\x00id"])
def test_a_workflow_id_postgres_cannot_store_is_refused_before_anything_is_recorded(
    launch_dbos: Launch, db_url: str, bad: str
) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return 1

    launch_dbos()
    with pytest.raises(DBOSException, match="workflow ID"), SetWorkflowID(bad):
        DBOS.start_workflow(wf)
    with pytest.raises(DBOSException, match="workflow ID"), DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": "wf", "queue_name": "q", "workflow_id": bad})
    with pytest.raises(DBOSException), DBOSClient(db_url) as client:
        client.retrieve_workflow(bad)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone() == (0,)


def test_outages_are_told_from_data_errors() -> None:
    from runtime import db

    assert db.is_transient(db.translate(psycopg.errors.QueryCanceled("statement timeout")))
    assert db.is_transient(db.translate(psycopg.errors.SerializationFailure("conflict")))
    assert db.is_transient(db.translate(psycopg.errors.DiskFull("no space")))
    assert db.is_transient(db.translate(psycopg.errors.AdminShutdown("terminating")))
    assert db.is_transient(db.translate(psycopg.OperationalError("connection refused")))
    assert not db.is_transient(db.translate(psycopg.DataError("NUL bytes")))
    assert not db.is_transient(db.translate(psycopg.errors.ProgramLimitExceeded("too big")))
    assert not db.is_transient(db.translate(psycopg.errors.CheckViolation("check")))


def test_text_beyond_ascii_is_stored_as_it_is(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def wf(x: str) -> str:
        return x

    launch_dbos()
    wid = str(uuid.uuid4())
    with SetWorkflowID(wid):
        assert wf("é✓") == "é✓"


# -- found by an adversarial review: the same kinds, other cases ----------------------------------


def test_a_run_cut_off_in_this_process_is_claimed_again_not_rerun(
    launch_dbos: Launch, ledger: str
) -> None:
    cut = threading.Event()

    @DBOS.step()
    def work(i: int) -> float:
        _note(ledger, int(time.time() * 1000))
        if i == 2 and not cut.is_set():
            cut.set()
            raise KeyboardInterrupt  # Ctrl-C in a REPL; a cancelled task is the same for us
        return time.time()

    @DBOS.workflow()
    def wf() -> list[float]:
        return [work(i) for i in range(4)]

    launch_dbos()
    with pytest.raises(KeyboardInterrupt), SetWorkflowID("cut-off"):
        wf()
    with SetWorkflowID("cut-off"):  # the same call again, as a retried request would
        result = wf()
    assert result == [s.output for s in DBOS.list_workflow_steps("cut-off")]
    assert _executions(ledger, "cut-off") == Counter({1: 1, 2: 1, 3: 2, 4: 1})


def test_a_value_too_large_to_store_fails_the_workflow_instead_of_retrying(
    launch_dbos: Launch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime import serialization

    monkeypatch.setattr(serialization, "MAX_STORED_BYTES", 1000)  # the real limit is 1 GB

    @DBOS.step()
    def big() -> str:
        return "x" * 2000

    @DBOS.workflow()
    def wf() -> str:
        return big()

    launch_dbos()
    with SetWorkflowID("too-big"):
        handle = DBOS.start_workflow(wf)
    with pytest.raises(DBOSException, match="result of step .*big.* more than Postgres keeps"):
        handle.get_result()
    assert handle.get_status().status == "ERROR"


def test_one_bad_row_does_not_stop_the_deadline_sweep_for_everyone(
    launch_dbos: Launch, db_url: str
) -> None:
    long_id = "L" * 9000  # from before identifiers were capped: too long for a NOTIFY payload
    past = int(time.time() * 1000) - 1000
    with psycopg.connect(db_url, autocommit=True) as conn:
        for wid in (long_id, "expired"):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, "
                "application_version, workflow_deadline_epoch_ms) VALUES (%s, 'PENDING', 'gone', "
                """'{"args":[],"kwargs":{}}', 'other-version', %s)""",
                (wid, past),
            )
    launch_dbos()
    assert _wait_status("expired", {"CANCELLED"}, timeout=10) == "CANCELLED"
    assert _wait_status(long_id, {"CANCELLED"}, timeout=10) == "CANCELLED"
    with pytest.raises(DBOSException, match="at most 1000"), SetWorkflowID("x" * 1001):
        DBOS.start_workflow(_noop)


@DBOS.workflow()
def _noop() -> None:
    return None


def test_a_start_whose_task_is_cancelled_still_runs(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.step()
    async def part(i: int) -> int:
        return i

    @DBOS.workflow()
    async def awf() -> int:
        return await part(1) + await part(2)

    launch_dbos()
    # Another session inserts the same ID and holds it uncommitted: the start's insert waits.
    blocker = psycopg.connect(db_url)
    blocker.execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs) "
        "VALUES ('abandoned', 'SUCCESS', 'other', '{}')"
    )

    async def scenario() -> int:
        with SetWorkflowID("abandoned"):
            task = asyncio.ensure_future(awf())
        await asyncio.sleep(0.5)
        task.cancel()  # the caller gives up while the start is being recorded
        with pytest.raises(asyncio.CancelledError):
            await task
        blocker.rollback()  # the start's insert goes through now
        with SetWorkflowID("abandoned"):
            return await asyncio.wait_for(awf(), 10)

    try:
        assert asyncio.run(scenario()) == 3
    finally:
        blocker.close()
