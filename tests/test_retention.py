"""Garbage collection (``DBOS.garbage_collect``, ``DBOSClient.garbage_collect``) on a real
Postgres: what goes (finished, old, with every row of theirs), what stays (anything unfinished, a
parent of an unfinished child, a cancelled workflow whose runner is in a step, everything of a kept
workflow), batches, rows_threshold, the resume-versus-gc race, and gc beside a live executor."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runtime import DBOSClient, GarbageCollection
from runtime.retention_db import FINISHED_STATUSES

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


@pytest.fixture
def client(db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(db_url)
    try:
        yield c
    finally:
        c.destroy()


def add_workflow(
    conn: psycopg.Connection[Any],
    status: str,
    *,
    created_at: int = OLD,
    parent: str | None = None,
    owner_process: str | None = None,
    wid: str | None = None,
) -> str:
    """A workflow row with one row in every related table."""
    wid = wid or f"wf-{uuid.uuid4().hex[:12]}"
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
    return wid


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
        ({"cutoff_epoch_timestamp_ms": 1.5}, "cutoff_epoch_timestamp_ms"),
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
        # The finished child goes; the parent stays while its other child runs.
        assert (result.deleted, result.kept_for_children) == (1, 1)
        assert rows_of(conn, parent) == ALL_ROWS
        assert rows_of(conn, child) == ALL_ROWS
        assert rows_of(conn, done_child) == NO_ROWS
        conn.execute(
            "UPDATE dbos.workflow_status SET status = 'SUCCESS' WHERE workflow_uuid = %s", (child,)
        )
        result = client.garbage_collect(CUTOFF, None)
        assert (result.deleted, result.kept_for_children) == (2, 0)
        assert rows_of(conn, parent) == NO_ROWS
        assert rows_of(conn, child) == NO_ROWS


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
