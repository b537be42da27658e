"""The checkpoint cost model, counted by the server itself (pg_stat_statements): a fresh workflow
costs one statement to start, one per step, one per transaction's checkpoint (inside its own
transaction) and one to finish; nothing is read before a step."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import psycopg
import pytest

from runtime import DBOS, SetWorkflowID, dispatcher

Launch = Callable[..., None]

# Statements that are not the workflow's: the test's own queries, and the deadline sweep and the
# scheduler's poll of the stored schedules, which run on timers whatever workflows do.
NOT_THE_WORKFLOWS = ("pg_stat_statements", "workflow_deadline_epoch_ms <", "workflow_schedules")


def _statements(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT query, calls FROM pg_stat_statements "
        "WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()
    return [
        (str(q), int(str(c)))
        for q, c in rows
        if not any(marker in str(q) for marker in NOT_THE_WORKFLOWS)
    ]


def test_fresh_workflow_statement_count(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Background loops (queue polling, heartbeats) must not run inside the measured window: they
    # are not the workflow's statements. They run once at launch, before the counters reset.
    monkeypatch.setattr(dispatcher, "POLL_INTERVAL_S", 3600.0)
    with psycopg.connect(db_url, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error as exc:
            if os.environ.get("DBOS_TEST_DATABASE_URL"):
                pytest.skip(f"the external test server lacks pg_stat_statements: {exc}")
            raise
        conn.execute("CREATE TABLE orders (id int)")

    @DBOS.step()
    def step(i: int) -> int:
        return i

    @DBOS.transaction()
    def write(i: int) -> int:
        DBOS.sql_session.execute("INSERT INTO orders VALUES (%s)", (i,))
        return i

    @DBOS.workflow()
    def wf(n: int) -> int:
        total = sum(step(i) for i in range(n))
        return total + write(n)

    launch_dbos(executor_lease_seconds=3600)
    with SetWorkflowID("warm-up"):
        wf(1)
    time.sleep(1.0)  # let launch-time dispatch passes over earlier tests' queues finish
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        with SetWorkflowID("counted"):
            assert wf(10) == 55
        counted = _statements(conn)

    total = sum(calls for _, calls in counted)
    by_kind = {
        "start": sum(c for q, c in counted if "INSERT INTO dbos.workflow_status" in q),
        "checkpoint": sum(c for q, c in counted if "INSERT INTO dbos.operation_outputs" in q),
        "finish": sum(
            c for q, c in counted if q.lstrip().startswith("UPDATE dbos.workflow_status")
        ),
        "user": sum(c for q, c in counted if "INSERT INTO orders" in q),
        "begin/commit": sum(
            c for q, c in counted if q.strip().upper().startswith(("BEGIN", "COMMIT"))
        ),
    }
    assert by_kind == {"start": 1, "checkpoint": 11, "finish": 1, "user": 1, "begin/commit": 2}, (
        counted
    )
    # Nothing else: no read before a step, no per-step status query.
    assert total == sum(by_kind.values()), counted
