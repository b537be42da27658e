"""Statements that lock several workflow_status rows and wait for them take them in key order, as
a batch of checkpoints does (runtime.checkpoint_db): otherwise a multi-row UPDATE or DELETE that
visits rows in heap order and a batch that locks them in key order can each hold a row the other
waits for, and Postgres ends one with "deadlock detected" (delete_workflows failed so while
batched checkpoints ran)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from runtime.queries import PROMOTE_DELAYED
from runtime.system_db import SystemDatabase
from runtime.workflow_admin import WorkflowAdmin

# Enough rows that the planner visits them with a bitmap scan, in heap order.
N = 300


def _ids() -> list[str]:
    return [f"lock-{i:04d}" for i in range(N)]


def _seed(db_url: str, status: str) -> None:
    """Rows inserted in descending key order: heap order is the reverse of key order."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs) "
            "SELECT id, %s, 'w', '{}' FROM unnest(%s::text[]) WITH ORDINALITY AS t(id, n) "
            "ORDER BY n DESC",
            (status, _ids()),
        )
        conn.execute("ANALYZE dbos.workflow_status")


def _start_until_it_waits(
    db_url: str, action: Callable[[], Any], errors: list[BaseException]
) -> threading.Thread:
    """Run ``action`` on a thread (what it raises goes to ``errors``) and return once some
    session of the database waits for a lock (the action, blocked by the caller's)."""

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    with psycopg.connect(db_url, autocommit=True) as probe:
        for _ in range(200):
            row = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()
            if row and row[0]:
                break
            threading.Event().wait(0.02)
    return worker


def _holds_first_then_last(db_url: str, action: Callable[[], Any]) -> None:
    """A batch's order: share-lock the first key, start ``action`` on every row, then share-lock
    the last key. In key order, ``action`` waits at the first key holding nothing, so the last
    key is free; in heap order it holds the last key (visited first) and waits at the first."""
    ids = _ids()
    errors: list[BaseException] = []
    with psycopg.connect(db_url) as batch:
        batch.execute(
            "SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %s FOR SHARE", (ids[0],)
        )

        worker = _start_until_it_waits(db_url, action, errors)
        batch.execute("SET LOCAL lock_timeout = '3s'")
        batch.execute(
            "SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %s FOR SHARE", (ids[-1],)
        )
        batch.commit()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert not errors, errors


@pytest.fixture
def sysdb(db_url: str) -> Iterator[SystemDatabase]:
    db = SystemDatabase(db_url)
    try:
        yield db
    finally:
        db.close()


def test_delete_workflows_locks_in_key_order(db_url: str, sysdb: SystemDatabase) -> None:
    _seed(db_url, "PENDING")
    _holds_first_then_last(db_url, lambda: WorkflowAdmin(sysdb).delete(_ids()))
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone() == (0,)


def test_a_send_into_workflows_being_deleted_is_not_a_deadlock(
    db_url: str, sysdb: SystemDatabase
) -> None:
    """A child sends to its parent while both are deleted: the send holds the child's row (FOR
    SHARE, its fence) and its message's foreign key then needs the parent's (KEY SHARE), which the
    delete holds already in key order. The delete's lock must let that check through."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for wid in ("par", "par-1"):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs) "
                "VALUES (%s, 'PENDING', 'w', '{}')",
                (wid,),
            )
    errors: list[BaseException] = []
    with psycopg.connect(db_url) as send:
        send.execute("SET lock_timeout = '3s'")
        send.execute("SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = 'par-1' FOR SHARE")

        # The delete takes par, then waits for par-1.
        worker = _start_until_it_waits(
            db_url, lambda: WorkflowAdmin(sysdb).delete(["par", "par-1"]), errors
        )
        send.execute(
            "INSERT INTO dbos.notifications (destination_uuid, message) VALUES ('par', '1')"
        )
        send.commit()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert not errors, errors


def test_promoting_delayed_workflows_skips_a_row_another_holds(
    db_url: str, sysdb: SystemDatabase
) -> None:
    """The promotion of due DELAYED workflows updates several rows: it skips one another
    transaction holds (promoted at a later pass) instead of waiting for it in heap order."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for wid in ("d1", "d2"):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, "
                "queue_name, delay_until_epoch_ms) VALUES (%s, 'DELAYED', 'w', '{}', 'dq', 0)",
                (wid,),
            )
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = 'd1' FOR SHARE")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '2s'")
            conn.execute(PROMOTE_DELAYED, {"queue_names": ["dq"]})
            rows = conn.execute(
                "SELECT workflow_uuid, status FROM dbos.workflow_status ORDER BY 1"
            ).fetchall()
        holder.rollback()
    assert rows == [("d1", "DELAYED"), ("d2", "ENQUEUED")]
