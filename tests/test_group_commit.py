"""Group commit of checkpoints (runtime.engine.group_commit): several step outcomes in one
statement and one commit, each row still conditional on its own runner's owner epoch.

The batches here are forced deterministically: the first write of a committer that allows one
write in flight is held up by a row lock, so the writes that come meanwhile queue and go together
in the next statement."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from runtime import DBOS, DBOSWorkflowFencedError, SetWorkflowID
from runtime.checkpoint_db import CheckpointWriter, StepWrite
from runtime.engine.group_commit import GroupCommit
from runtime.errors import DBOSDatabaseError
from runtime.records import RecordResult
from runtime.system_db import SystemDatabase

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sysdb(db_url: str) -> Iterator[SystemDatabase]:
    db = SystemDatabase(db_url, pool_size=4)
    try:
        yield db
    finally:
        db.close()


def _workflow(url: str, workflow_id: str, epoch: int, status: str = "PENDING") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, owner_epoch) "
            "VALUES (%s, %s, 'wf', '{}', %s)",
            (workflow_id, status, epoch),
        )


def _recorded(url: str) -> set[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT workflow_uuid, function_id FROM dbos.operation_outputs")
        return {(str(r[0]), int(r[1])) for r in rows.fetchall()}


def _write(workflow_id: str, epoch: int, function_id: int = 1, **kw: str) -> StepWrite:
    return StepWrite(workflow_id, epoch, function_id, "step", output='{"v": 1}', **kw)


def test_one_statement_refuses_the_fenced_row_and_writes_the_others(
    db_url: str, sysdb: SystemDatabase
) -> None:
    _workflow(db_url, "a", 5)
    _workflow(db_url, "b", 9)  # taken over: its old runner holds epoch 7
    _workflow(db_url, "c", 3, status="SUCCESS")  # finished: nothing more is recorded
    results = CheckpointWriter(sysdb).write_many(
        [_write("a", 5), _write("b", 7), _write("c", 3), _write("gone", 1), _write("a", 5, 2)]
    )
    assert results == [
        RecordResult("PENDING", 5, True),
        RecordResult("PENDING", 9, False),  # the fenced runner sees the new epoch
        RecordResult("SUCCESS", 3, False),
        RecordResult(None, None, False),  # the workflow's row is gone
        RecordResult("PENDING", 5, True),
    ]
    assert _recorded(db_url) == {("a", 1), ("a", 2)}


def test_a_second_write_of_the_same_step_is_told_what_it_is_told_alone(
    db_url: str, sysdb: SystemDatabase
) -> None:
    _workflow(db_url, "a", 5)
    first = StepWrite("a", 5, 1, "step", output='{"v": 1}')
    second = StepWrite("a", 5, 1, "step", output='{"v": 2}')
    results = CheckpointWriter(sysdb).write_many([first, _write("a", 5, 2), second])
    assert results == [
        RecordResult("PENDING", 5, True),
        RecordResult("PENDING", 5, True),
        RecordResult("PENDING", 5, False),  # recorded already, as record_step says alone
    ]
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT output FROM dbos.operation_outputs "
            "WHERE workflow_uuid = 'a' AND function_id = 1"
        ).fetchone()
    assert row == ('{"v": 1}',)  # the first write's outcome, as alone


def _hold_row(url: str, workflow_id: str) -> psycopg.Connection[tuple[object, ...]]:
    """An open transaction holding ``workflow_id``'s row lock: a checkpoint of it waits."""
    conn = psycopg.connect(url)
    conn.execute(
        "SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %s FOR UPDATE", (workflow_id,)
    )
    return conn


def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_fenced_write_is_refused_inside_a_batched_commit(
    db_url: str, sysdb: SystemDatabase
) -> None:
    for wid, epoch in (("first", 1), ("ok-1", 1), ("fenced", 2), ("ok-2", 1)):
        _workflow(db_url, wid, epoch)
    commit = GroupCommit(CheckpointWriter(sysdb), max_in_flight=1)
    results: dict[str, RecordResult] = {}

    def record(write: StepWrite) -> None:
        results[write.workflow_id] = commit.record(write)

    holder = _hold_row(db_url, "first")
    first = threading.Thread(target=record, args=(_write("first", 1),))
    first.start()
    _until(lambda: commit.batch_sizes.get(1) == 1)  # the lone write is in flight, held up
    others = [
        threading.Thread(target=record, args=(w,))
        for w in (_write("ok-1", 1), _write("fenced", 1), _write("ok-2", 1))
    ]
    for t in others:
        t.start()
    _until(lambda: commit.waiting() == 3)
    holder.commit()  # the held write ends; the three queued ones go in one statement
    holder.close()
    for t in [first, *others]:
        t.join(10)
    assert commit.batch_sizes == {1: 1, 3: 1}
    assert results["fenced"] == RecordResult("PENDING", 2, False)
    assert results["ok-1"] == results["ok-2"] == RecordResult("PENDING", 1, True)
    assert _recorded(db_url) == {("first", 1), ("ok-1", 1), ("ok-2", 1)}


def test_a_row_the_database_refuses_fails_alone(db_url: str, sysdb: SystemDatabase) -> None:
    for wid in ("first", "good", "bad"):
        _workflow(db_url, wid, 1)
    commit = GroupCommit(CheckpointWriter(sysdb), max_in_flight=1)
    outcomes: dict[str, object] = {}

    def record(write: StepWrite) -> None:
        try:
            outcomes[write.workflow_id] = commit.record(write)
        except DBOSDatabaseError as exc:
            outcomes[write.workflow_id] = exc

    holder = _hold_row(db_url, "first")
    threads = [threading.Thread(target=record, args=(_write("first", 1),))]
    threads[0].start()
    _until(lambda: commit.batch_sizes.get(1) == 1)
    # Postgres text cannot hold a NUL: the batch is refused, then each row is written alone.
    for w in (_write("good", 1), _write("bad", 1, error="nul \x00 here")):
        threads.append(threading.Thread(target=record, args=(w,)))
        threads[-1].start()
    _until(lambda: commit.waiting() == 2)
    holder.commit()
    holder.close()
    for t in threads:
        t.join(10)
    assert outcomes["good"] == RecordResult("PENDING", 1, True)
    assert isinstance(outcomes["bad"], DBOSDatabaseError)
    assert _recorded(db_url) == {("first", 1), ("good", 1)}


def test_a_taken_over_workflow_stops_with_the_fenced_error_in_a_batch(
    launch_dbos: Launch, db_url: str
) -> None:
    """End to end: concurrent workflows checkpoint in batches; the one taken over mid-step is
    refused (fenced) and records nothing, the others finish."""
    release, inside, fenced = threading.Event(), threading.Event(), threading.Event()

    @DBOS.step()
    def slow(i: int) -> int:
        if i == 0:
            inside.set()
            release.wait(10)
        return i

    @DBOS.workflow()
    def wf(i: int) -> int:
        try:
            first = slow(i)
        except DBOSWorkflowFencedError:
            fenced.set()
            raise
        return first + slow(i + 100)

    launch_dbos()
    DBOS._engine().ops.checkpoints.max_in_flight = 1  # every concurrent write batches
    with SetWorkflowID("taken"):
        DBOS.start_workflow(wf, 0)
    assert inside.wait(10)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dbos.workflow_status SET owner_epoch = owner_epoch + 1000 "
            "WHERE workflow_uuid = 'taken'"
        )
    handles = [DBOS.start_workflow(wf, i) for i in range(1, 17)]
    release.set()
    assert [h.get_result() for h in handles] == [2 * i + 100 for i in range(1, 17)]
    assert fenced.wait(10)
    assert "taken" not in {wid for wid, _ in _recorded(db_url)}


def test_sigkill_while_batching_loses_no_acknowledged_checkpoint(db_url: str) -> None:
    """A process killed (SIGKILL) while its checkpoints go out in batches: after recovery every
    workflow finishes, and no step whose checkpoint was acknowledged (its next step had begun)
    runs again: a batch answers its callers only after its commit."""
    from tests.apps.group_commit_app import LEDGER_DDL, STEPS

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    count = 48
    app = [sys.executable, "-m", "tests.apps.group_commit_app"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([*app, "start", db_url, str(count)], env=env, cwd=ROOT)
    try:
        # Killed once every workflow exists and some of their steps are done, none finished
        # (most likely): some checkpoints acknowledged, others in flight or queued.
        _until(lambda: _started(db_url) == count and _ledger_rows(db_url) >= count, timeout_s=60)
    finally:
        proc.kill()
        proc.wait(10)
    before = _ledger(db_url)
    assert max(b for *_, b in before) > 0, "no batch was written before the kill"
    done = subprocess.run(
        [*app, "recover", db_url, str(count)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(n + sum(range(STEPS))) for n in range(count)]
    after = _ledger(db_url)
    began = {(w, i) for w, i, _, _ in before}
    runs: dict[tuple[str, int], int] = {}
    for w, i, _, _ in after:
        runs[(w, i)] = runs.get((w, i), 0) + 1
    acknowledged = [(w, i) for w, i in began if (w, i + 1) in began]
    assert acknowledged
    assert [key for key in acknowledged if runs[key] != 1] == []
    assert set(runs) == {(f"gc-{n}", i) for n in range(count) for i in range(STEPS)}


def _ledger(url: str) -> list[tuple[str, int, int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT workflow_id, op, pid, batches FROM gc_ledger").fetchall()
    return [(str(w), int(i), int(p), int(b)) for w, i, p, b in rows]


def _ledger_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM gc_ledger").fetchone()
    return int(row[0]) if row else 0


def _started(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
    return int(row[0]) if row else 0
