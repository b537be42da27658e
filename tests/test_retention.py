"""Garbage collection (``DBOS.garbage_collect``, ``DBOSClient.garbage_collect``) on a real
Postgres: what goes (finished, old, with every row of theirs), what stays (anything unfinished, a
parent of an unfinished child, a cancelled workflow whose runner is in a step, everything of a kept
workflow), batches, rows_threshold, the resume-versus-gc race, and gc beside a live executor."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOS, DBOSClient, DBOSConfigError, GarbageCollection, Queue
from runtime.config import resolve
from runtime.retention_db import FINISHED_STATUSES
from runtime.retention_schedule import TRY_LOCK, RetentionSchedule
from runtime.system_db import SystemDatabase
from tests.cli_helpers import clean_env
from tests.fleet import ROOT

# The tables holding a workflow's rows, and the column naming the workflow.
RELATED = {
    "operation_outputs": "workflow_uuid",
    "notifications": "destination_uuid",
    "idempotent_sends": "destination_uuid",
    "workflow_events": "workflow_uuid",
    "streams": "workflow_uuid",
}
OLD = 1_000_000  # created_at of the "old" rows (epoch ms, 1970): far before any cutoff used here
CUTOFF = 2_000_000


def add_workflow(
    conn: psycopg.Connection[Any],
    status: str,
    *,
    created_at: int = OLD,
    parent: str | None = None,
    owner_process: str | None = None,
    wid: str | None = None,
) -> str:
    """A workflow row with one row in every related table, in one transaction (a collector
    running meanwhile sees all of it or nothing)."""
    wid = wid or f"wf-{uuid.uuid4().hex[:12]}"
    with conn.transaction():
        _add_rows(conn, wid, status, created_at, parent, owner_process)
    return wid


def _add_rows(
    conn: psycopg.Connection[Any],
    wid: str,
    status: str,
    created_at: int,
    parent: str | None,
    owner_process: str | None,
) -> None:
    conn.execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, created_at, "
        "parent_workflow_id, owner_process, queue_name) VALUES (%s, %s, 'w', '{}', %s, %s, %s, "
        "CASE WHEN %s = 'ENQUEUED' THEN 'q' END)",
        (wid, status, created_at, parent, owner_process, status),
    )
    conn.execute(
        "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output) "
        "VALUES (%s, 1, 's', '1')",
        (wid,),
    )
    conn.execute(
        "INSERT INTO dbos.notifications (destination_uuid, topic, message) VALUES (%s, 't', '1')",
        (wid,),
    )
    conn.execute(
        "INSERT INTO dbos.idempotent_sends (destination_uuid, idempotency_key) VALUES (%s, 'k')",
        (wid,),
    )
    conn.execute(
        "INSERT INTO dbos.workflow_events (workflow_uuid, key, value) VALUES (%s, 'e', '1')",
        (wid,),
    )
    conn.execute(
        "INSERT INTO dbos.streams (workflow_uuid, key, value, \"offset\") VALUES (%s, 's', '1', 0)",
        (wid,),
    )


def rows_of(conn: psycopg.Connection[Any], wid: str) -> dict[str, int]:
    """How many rows each table holds for ``wid`` (workflow_status included)."""
    counts = {}
    for table, column in {"workflow_status": "workflow_uuid", **RELATED}.items():
        row = conn.execute(
            f"SELECT count(*) FROM dbos.{table} WHERE {column} = %s",  # noqa: S608 - fixed names
            (wid,),
        ).fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


ALL_ROWS = {"workflow_status": 1, **dict.fromkeys(RELATED, 1)}
NO_ROWS = {"workflow_status": 0, **dict.fromkeys(RELATED, 0)}


def test_deletes_old_finished_with_every_row_and_keeps_the_rest(
    db_url: str, client: DBOSClient
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        gone = [add_workflow(conn, s) for s in FINISHED_STATUSES]
        unfinished = [add_workflow(conn, s) for s in ("PENDING", "ENQUEUED", "DELAYED")]
        recent = [add_workflow(conn, s, created_at=CUTOFF + 1) for s in FINISHED_STATUSES]
        result = client.garbage_collect(CUTOFF, None)
        assert isinstance(result, GarbageCollection)
        assert (result.deleted, result.batches, result.cutoff_epoch_timestamp_ms) == (4, 1, CUTOFF)
        for wid in gone:
            assert rows_of(conn, wid) == NO_ROWS
        for wid in unfinished + recent:
            assert rows_of(conn, wid) == ALL_ROWS
        # Nothing is left to collect: a second run deletes nothing.
        assert client.garbage_collect(CUTOFF, None).deleted == 0


def test_statuses_narrow_and_refuse_unfinished(db_url: str, client: DBOSClient) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        ok = add_workflow(conn, "SUCCESS")
        err = add_workflow(conn, "ERROR")
        for bad in ("PENDING", "ENQUEUED", "DELAYED", "RUNNING"):
            with pytest.raises(ValueError, match="never deletes"):
                client.garbage_collect(CUTOFF, None, statuses=["ERROR", bad])
        assert rows_of(conn, err) == ALL_ROWS  # refused before anything was deleted
        assert client.garbage_collect(CUTOFF, None, statuses=["ERROR"]).deleted == 1
        assert rows_of(conn, err) == NO_ROWS
        assert rows_of(conn, ok) == ALL_ROWS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows_threshold": 0}, "rows_threshold"),
        ({"rows_threshold": -3}, "rows_threshold"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"cutoff_epoch_timestamp_ms": "yesterday"}, "cutoff_epoch_timestamp_ms"),
        ({"cutoff_epoch_timestamp_ms": float("nan")}, "cutoff_epoch_timestamp_ms"),
        ({"cutoff_epoch_timestamp_ms": 2**70}, "cutoff_epoch_timestamp_ms"),
        ({"rows_threshold": 2**70}, "rows_threshold"),
    ],
)
def test_bad_arguments_refused_before_deleting(
    db_url: str, client: DBOSClient, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"cutoff_epoch_timestamp_ms": CUTOFF, "rows_threshold": None}
    args.update(kwargs)
    with psycopg.connect(db_url, autocommit=True) as conn:
        wid = add_workflow(conn, "SUCCESS")
        with pytest.raises(ValueError, match=message):
            client.garbage_collect(**args)
        assert rows_of(conn, wid) == ALL_ROWS


def test_a_float_cutoff_is_accepted_as_dbos_does(db_url: str, client: DBOSClient) -> None:
    # created_at < OLD + 0.5 holds for OLD and not for OLD + 1 (integer milliseconds).
    with psycopg.connect(db_url, autocommit=True) as conn:
        older = add_workflow(conn, "SUCCESS")
        newer = add_workflow(conn, "SUCCESS", created_at=OLD + 1)
        result = client.garbage_collect(OLD + 0.5, None)
        assert (result.deleted, result.cutoff_epoch_timestamp_ms) == (1, OLD + 1)
        assert rows_of(conn, older) == NO_ROWS
        assert rows_of(conn, newer) == ALL_ROWS


def test_nothing_to_do_without_a_cutoff(db_url: str, client: DBOSClient) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        wid = add_workflow(conn, "SUCCESS")
        result = client.garbage_collect(None, None)
        assert (result.cutoff_epoch_timestamp_ms, result.deleted) == (None, 0)
        # Fewer workflows than the threshold: nothing goes.
        assert client.garbage_collect(None, 5).deleted == 0
        assert rows_of(conn, wid) == ALL_ROWS


def test_parent_kept_while_a_child_is_unfinished(db_url: str, client: DBOSClient) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        parent = add_workflow(conn, "SUCCESS")
        child = add_workflow(conn, "PENDING", parent=parent)
        done_child = add_workflow(conn, "SUCCESS", parent=parent)
        result = client.garbage_collect(CUTOFF, None)
        # The parent stays while one child runs, and so its finished child (it still refers
        # to it).
        assert (result.deleted, result.kept_for_children, result.kept_for_parent) == (0, 1, 1)
        assert rows_of(conn, parent) == ALL_ROWS
        assert rows_of(conn, child) == ALL_ROWS
        assert rows_of(conn, done_child) == ALL_ROWS
        conn.execute(
            "UPDATE dbos.workflow_status SET status = 'SUCCESS' WHERE workflow_uuid = %s", (child,)
        )
        result = client.garbage_collect(CUTOFF, None)
        assert (result.deleted, result.kept_for_children) == (3, 0)
        assert rows_of(conn, parent) == NO_ROWS
        assert rows_of(conn, child) == NO_ROWS
        assert rows_of(conn, done_child) == NO_ROWS


def test_child_kept_while_its_parent_is_unfinished(db_url: str, client: DBOSClient) -> None:
    # The parent may still wait for the child's result.
    with psycopg.connect(db_url, autocommit=True) as conn:
        parent = add_workflow(conn, "PENDING")
        child = add_workflow(conn, "SUCCESS", parent=parent)
        result = client.garbage_collect(CUTOFF, None)
        assert (result.deleted, result.kept_for_parent) == (0, 1)
        assert rows_of(conn, child) == ALL_ROWS
        conn.execute(
            "UPDATE dbos.workflow_status SET status = 'ERROR' WHERE workflow_uuid = %s", (parent,)
        )
        assert client.garbage_collect(CUTOFF, None).deleted == 2
        assert rows_of(conn, child) == NO_ROWS


def _start_child_step(conn: psycopg.Connection[Any], parent: str, child: str, step: int) -> None:
    """The step of ``parent`` that started ``child`` (what a fork of the parent copies)."""
    conn.execute(
        "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, "
        "child_workflow_id) VALUES (%s, %s, 'start', %s)",
        (parent, step, child),
    )


def test_a_child_goes_only_once_nothing_refers_to_it(db_url: str, client: DBOSClient) -> None:
    """Parents first, children in a later batch of the same collection, and never a child that a
    kept parent (of any status: a cancelled one may be resumed) or a fork of its parent still
    names; the dry run counts what the cascade down the tree deletes."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        # A finished tree of three levels: all of it goes in one collection, top down.
        root = add_workflow(conn, "SUCCESS")
        mid = add_workflow(conn, "SUCCESS", parent=root, created_at=OLD + 1)
        leaf = add_workflow(conn, "ERROR", parent=mid, created_at=OLD + 2)
        _start_child_step(conn, root, mid, 2)
        _start_child_step(conn, mid, leaf, 2)
        # A cancelled parent kept for its live runner: its finished child stays with it.
        conn.execute(
            "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
            "application_version, lease_ms, started_at, last_heartbeat_at) "
            "VALUES ('live', 'e', 'h', 1, 'v', 60000, 0, %s)",
            (int(time.time() * 1000),),
        )
        held = add_workflow(conn, "CANCELLED", owner_process="live")
        held_child = add_workflow(conn, "SUCCESS", parent=held, created_at=OLD + 1)
        # A finished parent whose child an unfinished fork of it also started: the parent goes,
        # the child stays while the fork exists (the fork awaits it).
        forked = add_workflow(conn, "SUCCESS")
        forked_child = add_workflow(conn, "SUCCESS", parent=forked, created_at=OLD + 1)
        _start_child_step(conn, forked, forked_child, 2)
        fork = add_workflow(conn, "PENDING", created_at=OLD + 3)
        _start_child_step(conn, fork, forked_child, 2)

        preview = client.garbage_collect(CUTOFF, None, dry_run=True)
        assert (preview.deleted, preview.kept_for_parent, preview.kept_for_runner) == (4, 2, 1)
        result = client.garbage_collect(CUTOFF, None, batch_size=1)
        assert result.deleted == 4 and result.batches == 4
        for wid in (root, mid, leaf, forked):
            assert rows_of(conn, wid) == NO_ROWS
        for wid in (held, held_child, forked_child):
            assert rows_of(conn, wid) == ALL_ROWS
        assert rows_of(conn, fork)["workflow_status"] == 1
        # The fork finishes and is collected: then nothing refers to the child.
        conn.execute(
            "UPDATE dbos.workflow_status SET status = 'SUCCESS' WHERE workflow_uuid = %s", (fork,)
        )
        assert client.garbage_collect(CUTOFF, None).deleted == 2
        assert rows_of(conn, forked_child) == NO_ROWS


def test_the_dry_run_follows_every_reference_it_deletes(db_url: str, client: DBOSClient) -> None:
    """A finished workflow that awaited another's result (a step naming it, as get_result
    records) goes first, then the awaited one: the dry run counts both, and a prompt built on it
    never says fewer than the real run deletes."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        awaited = add_workflow(conn, "SUCCESS")
        waiter = add_workflow(conn, "SUCCESS", created_at=OLD + 1)
        _start_child_step(conn, waiter, awaited, 2)
        forked = add_workflow(conn, "SUCCESS", created_at=OLD + 2)
        fork_of_fork = add_workflow(conn, "ERROR", created_at=OLD + 3)
        _start_child_step(conn, fork_of_fork, waiter, 2)
        _start_child_step(conn, forked, waiter, 3)
        preview = client.garbage_collect(CUTOFF, None, dry_run=True)
        result = client.garbage_collect(CUTOFF, None, batch_size=1)
        assert preview.deleted == result.deleted == 4, (preview, result)


def test_cancelled_kept_while_its_runner_is_in_a_step(db_url: str, client: DBOSClient) -> None:
    now = int(time.time() * 1000)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
            "application_version, lease_ms, started_at, last_heartbeat_at) "
            "VALUES ('live', 'e', 'h', 1, 'v', 60000, %s, %s), "
            "('dead', 'e', 'h', 2, 'v', 1000, 0, 0)",
            (now, now),
        )
        held = add_workflow(conn, "CANCELLED", owner_process="live")
        abandoned = add_workflow(conn, "CANCELLED", owner_process="dead")
        # A finished workflow keeps the process that ran it as owner; that does not hold it.
        finished = add_workflow(conn, "SUCCESS", owner_process="live")
        result = client.garbage_collect(CUTOFF, None)
        assert (result.deleted, result.kept_for_runner) == (2, 1)
        assert rows_of(conn, held) == ALL_ROWS
        assert rows_of(conn, abandoned) == NO_ROWS
        assert rows_of(conn, finished) == NO_ROWS


def test_rows_threshold_keeps_the_newest(db_url: str, client: DBOSClient) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = [add_workflow(conn, "SUCCESS", created_at=OLD + i) for i in range(10)]
        pending = add_workflow(conn, "PENDING", created_at=OLD - 5)
        result = client.garbage_collect(None, 4)
        assert result.cutoff_epoch_timestamp_ms == OLD + 6
        assert result.deleted == 6
        for wid in ids[:6]:
            assert rows_of(conn, wid) == NO_ROWS
        for wid in ids[6:] + [pending]:
            assert rows_of(conn, wid) == ALL_ROWS
        # The stricter cutoff wins: a time cutoff later than the threshold's deletes more.
        result = client.garbage_collect(OLD + 8, 4)
        assert (result.cutoff_epoch_timestamp_ms, result.deleted) == (OLD + 8, 2)
        # ... and an earlier one gives way to the threshold's (keep the newest: ids[9]).
        result = client.garbage_collect(OLD, 1)
        assert (result.cutoff_epoch_timestamp_ms, result.deleted) == (OLD + 9, 1)
        assert rows_of(conn, ids[9]) == ALL_ROWS


def test_batches(db_url: str, client: DBOSClient) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(25):
            add_workflow(conn, "SUCCESS", created_at=OLD + i % 3)  # created_at ties too
        kept = add_workflow(conn, "PENDING")
        dry = client.garbage_collect(CUTOFF, None, batch_size=10, dry_run=True)
        assert (dry.deleted, dry.batches, dry.dry_run) == (25, 0, True)
        result = client.garbage_collect(CUTOFF, None, batch_size=10)
        assert (result.deleted, result.batches) == (25, 3)
        assert rows_of(conn, kept) == ALL_ROWS
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
        assert row is not None and row[0] == 1
        for i in range(4):
            add_workflow(conn, "ERROR", created_at=OLD + i)
        assert client.garbage_collect(CUTOFF, None, batch_size=None).batches == 1


# -- races ---------------------------------------------------------------------------------------


def test_resume_racing_gc_keeps_the_resumed_workflow(db_url: str, client: DBOSClient) -> None:
    """A resume (CANCELLED -> ENQUEUED) that commits while gc is at the row. An unchecked
    ``DELETE ... WHERE id IN (SELECT ... LIMIT n)`` waits for the resume's lock, then deletes
    the row by ID, resumed or not: the resumed workflow would be lost."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        wid = add_workflow(conn, "CANCELLED")
        with psycopg.connect(db_url) as operator:  # a transaction, held open
            operator.execute(
                "UPDATE dbos.workflow_status SET status = 'ENQUEUED', queue_name = 'q' "
                "WHERE workflow_uuid = %s",
                (wid,),
            )
            results: list[GarbageCollection] = []
            gc = threading.Thread(
                target=lambda: results.append(client.garbage_collect(CUTOFF, None))
            )
            gc.start()
            time.sleep(0.3)  # gc is at the row now (or past it)
            operator.commit()
            gc.join(10)
        assert not gc.is_alive() and results[0].deleted == 0
        assert rows_of(conn, wid) == ALL_ROWS
        row = conn.execute(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (wid,)
        ).fetchone()
        assert row == ("ENQUEUED",)


def test_resumes_and_gc_at_once_lose_nothing(db_url: str, client: DBOSClient) -> None:
    """Many resumes through the client while gc runs in small batches: every workflow a resume
    reported resumed is there afterwards, with all its rows."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = [add_workflow(conn, "CANCELLED", created_at=OLD + i) for i in range(60)]
        resumed: list[str] = []
        stop = threading.Event()

        def resume_all() -> None:
            for wid in reversed(ids):  # from the newest: gc starts at whatever it finds first
                try:
                    client.resume_workflow(wid)
                    resumed.append(wid)
                except Exception:  # deleted first: nothing to resume
                    pass
            stop.set()

        resumer = threading.Thread(target=resume_all)
        resumer.start()
        deleted = 0
        while not stop.is_set():
            deleted += client.garbage_collect(CUTOFF, None, batch_size=2).deleted
        resumer.join(10)
        deleted += client.garbage_collect(CUTOFF, None).deleted
        assert resumed and deleted == len(ids) - len(resumed)
        for wid in resumed:
            assert rows_of(conn, wid) == ALL_ROWS


def test_fork_racing_gc_copies_every_step(db_url: str, client: DBOSClient) -> None:
    """A fork reads its source's row, then copies its steps: gc must not delete the source in
    between (the fork would then run every step again). A trigger holds the fork between the
    two statements while gc runs."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        source = add_workflow(conn, "SUCCESS")
        conn.execute(
            "CREATE FUNCTION slow_fork() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.workflow_uuid = 'fork-slow' THEN PERFORM pg_sleep(0.6); END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER slow_fork AFTER INSERT ON dbos.workflow_status "
            "FOR EACH ROW EXECUTE FUNCTION slow_fork()"
        )
        forker = threading.Thread(
            target=lambda: client.fork_workflow(source, 2, forked_workflow_id="fork-slow")
        )
        forker.start()
        time.sleep(0.3)  # the fork has read the source and waits in the trigger
        assert client.garbage_collect(CUTOFF, None).deleted == 0  # the source is held
        forker.join(10)
        assert rows_of(conn, "fork-slow")["operation_outputs"] == 1  # the step was copied
        assert client.garbage_collect(CUTOFF, None).deleted == 1  # now the source goes
        assert rows_of(conn, source) == NO_ROWS
        assert rows_of(conn, "fork-slow")["workflow_status"] == 1  # the fork is ENQUEUED: kept


# -- beside live executors -------------------------------------------------------------------------


def test_gc_beside_a_live_executor(launch_dbos: Any, db_url: str, client: DBOSClient) -> None:
    """gc in a loop, with a cutoff in the future (every finished workflow is due at once), while
    an executor runs workflows with steps and children, started directly and through a queue:
    every workflow finishes with the right result, every step runs exactly once, and workflows
    finished earlier and kept (out of the cutoff's reach) keep their results and steps."""
    ran: Counter[tuple[str, int]] = Counter()
    done: dict[str, int] = {}
    lock = threading.Lock()
    queue = Queue("gc-live", concurrency=3)

    @DBOS.step()
    def work(n: int) -> int:
        with lock:
            ran[(DBOS.workflow_id or "", n)] += 1
        time.sleep(0.002)
        return n

    @DBOS.workflow()
    def child(k: int) -> int:
        return work(100) + 2 * k

    @DBOS.workflow()
    def parent(k: int) -> int:
        total = sum(work(n) for n in range(3))
        total += DBOS.start_workflow(child, k).get_result()
        with lock:
            done[DBOS.workflow_id or ""] = total
        return total

    def expected(k: int) -> int:
        return 3 + 100 + 2 * k

    launch_dbos()
    kept = [DBOS.start_workflow(parent, k) for k in range(3)]
    assert [h.get_result() for h in kept] == [expected(k) for k in range(3)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE dbos.workflow_status SET created_at = %s", (2**52,))

    stop = threading.Event()
    deleted: list[int] = []

    def collect() -> None:
        while not stop.is_set():
            cutoff = int(time.time() * 1000) + 60_000
            deleted.append(client.garbage_collect(cutoff, None, batch_size=3).deleted)

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        live = [DBOS.start_workflow(parent, k).workflow_id for k in range(3, 15)]
        live += [queue.enqueue(parent, k).workflow_id for k in range(15, 27)]
        deadline = time.monotonic() + 60
        while len(done) < len(kept) + len(live):
            assert time.monotonic() < deadline, f"{len(done)} of {len(kept) + len(live)} finished"
            time.sleep(0.05)
    finally:
        stop.set()
        collector.join(30)
    assert sum(deleted) > 0  # gc did delete, while the workflows ran
    for k, wid in enumerate(live, start=3):
        assert done[wid] == expected(k)
    assert ran and all(n == 1 for n in ran.values()), ran
    for k, handle in enumerate(kept):
        assert client.retrieve_workflow(handle.workflow_id).get_result() == expected(k)
        assert len(client.list_workflow_steps(handle.workflow_id)) == 5  # 3 steps, start, result


# -- automatic retention ---------------------------------------------------------------------------


def count_status(conn: psycopg.Connection[Any], status: str, before: int = CUTOFF) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dbos.workflow_status WHERE status = %s AND created_at < %s",
        (status, before),
    ).fetchone()
    assert row is not None
    return int(row[0])


def wait_until(check: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"workflow_retention": "forever"}, "invalid duration 'forever'"),
        ({"workflow_retention": "0d"}, "more than zero"),
        ({"workflow_retention": 30}, "expected a duration such as '30d'"),
        ({"workflow_retention": "30d", "workflow_retention_interval_sec": 0}, "at least"),
        ({"workflow_retention": "30d", "workflow_retention_interval_sec": 1e10}, "at most"),
    ],
)
def test_bad_retention_settings_are_refused(
    db_url: str, config: dict[str, Any], message: str
) -> None:
    DBOS.destroy()
    with pytest.raises(DBOSConfigError, match=message):
        DBOS(config={"name": "t", "database_url": db_url, **config})  # type: ignore[typeddict-item]
    DBOS.destroy()


def test_retention_in_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "dbos.toml").write_text(
        '[runtime]\nworkflow_retention = "2w"\nworkflow_retention_interval_sec = 60\n'
    )
    settings = resolve(None, cwd=tmp_path, environ={})
    assert (settings.workflow_retention_s, settings.workflow_retention_interval_s) == (
        14 * 86_400,
        60.0,
    )
    (tmp_path / "dbos.toml").write_text('[runtime]\nworkflow_retention = "30 days"\n')
    with pytest.raises(DBOSConfigError, match="workflow_retention: invalid duration"):
        resolve(None, cwd=tmp_path, environ={})
    assert resolve(None, cwd=tmp_path / "..", environ={}).workflow_retention_s is None


def test_launched_runtime_collects_and_stops_promptly(launch_dbos: Any, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        old = [add_workflow(conn, "SUCCESS") for _ in range(3)]
        pending = add_workflow(conn, "PENDING")
        recent = add_workflow(conn, "SUCCESS", created_at=int(time.time() * 1000))
        started = time.monotonic()
        launch_dbos(workflow_retention="1d", workflow_retention_interval_sec=0.1)
        assert time.monotonic() - started < 5  # launch does not wait for a collection
        wait_until(lambda: count_status(conn, "SUCCESS") == 0)
        for wid in old:
            assert rows_of(conn, wid) == NO_ROWS
        assert rows_of(conn, pending) == ALL_ROWS and rows_of(conn, recent) == ALL_ROWS
        stopping = time.monotonic()
        DBOS.destroy()
        assert time.monotonic() - stopping < 3


def test_retention_survives_an_outage(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The database refuses connections for a while: the round fails, is logged, and the next
    round after the outage collects."""
    name = db_url.rsplit("/", 1)[1]
    admin_url = db_url.rsplit("/", 1)[0] + "/postgres"
    sysdb = SystemDatabase(db_url, pool_size=2, pool_wait_s=1.0)
    schedule = RetentionSchedule(sysdb, 86_400, 0.1)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            with caplog.at_level(logging.WARNING, logger="dbos"):
                schedule.start()
                wait_until(lambda: "automatic retention failed (will retry)" in caplog.text)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            add_workflow(conn, "ERROR")
            wait_until(lambda: count_status(conn, "ERROR") == 0)
    finally:
        schedule.stop()
        sysdb.close()


def _start_executor(db_url: str, name: str) -> subprocess.Popen[str]:
    env = clean_env(
        DBOS_DATABASE_URL=db_url,
        RETENTION_EXECUTOR=name,
        RETENTION="1d",
        RETENTION_INTERVAL="0.2",
        PYTHONPATH=str(ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "tests/apps/retention_app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def reported(logs: dict[str, list[str]]) -> int:
    """The workflows the executors' logs say automatic retention deleted."""
    return sum(
        int(line.split()[3])
        for lines in logs.values()
        for line in list(lines)
        if line.startswith("automatic retention deleted")
    )


def test_two_executors_collect_one_at_a_time_and_survive_a_kill(db_url: str) -> None:
    """Two executors with retention on, one database. While the collector lock is held (as by a
    third executor in the middle of a collection) neither deletes anything; once it is free, due
    workflows go, each deleted once. One executor is killed (SIGKILL): the other goes on
    collecting."""
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        psycopg.connect(db_url, autocommit=True) as holder,
    ):
        got = holder.execute(TRY_LOCK, {"key": "dbos-retention:dbos"}).fetchone()
        assert got == (True,)
        for _ in range(20):
            add_workflow(conn, "SUCCESS")
        kept = add_workflow(conn, "ENQUEUED")
        procs = {name: _start_executor(db_url, name) for name in ("a", "b")}
        logs: dict[str, list[str]] = {name: [] for name in procs}
        readers = []
        try:
            for name, proc in procs.items():
                assert proc.stdout is not None
                reader = threading.Thread(
                    target=lambda out=proc.stdout, lines=logs[name]: lines.extend(out),
                    daemon=True,
                )
                reader.start()
                readers.append(reader)
            wait_until(
                lambda: all(any("serving" in x for x in lines) for lines in logs.values()), 60
            )
            time.sleep(1.0)  # five rounds each, all finding the lock taken
            assert count_status(conn, "SUCCESS") == 20
            holder.execute("SELECT pg_advisory_unlock_all()")
            wait_until(lambda: count_status(conn, "SUCCESS") == 0)
            wait_until(lambda: reported(logs) == 20)  # the collector has logged its count
            procs["a"].send_signal(signal.SIGKILL)
            procs["a"].wait(10)
            for _ in range(5):
                add_workflow(conn, "CANCELLED")
            wait_until(lambda: count_status(conn, "CANCELLED") == 0)
            wait_until(lambda: reported(logs) == 25)  # each deleted once, all 25 counted
            assert rows_of(conn, kept) == ALL_ROWS
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait(10)
            for reader in readers:
                reader.join(5)
    assert reported(logs) == 25, logs
    assert any(line.startswith("automatic retention deleted") for line in logs["b"]), logs
