"""Back-pressure is not an outage: when every pooled connection is in use, a caller that waited
for one is told the pool is exhausted (its size, the callers waiting), never that the database is
unreachable; and inside a workflow the wait is sat out like any transient failure, never recorded
as the workflow's own error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from runtime import DBOS, SetWorkflowID
from runtime.db import is_transient
from runtime.errors import DBOSConnectionError, DBOSDatabaseError
from runtime.system_db import SystemDatabase

Launch = Callable[..., None]


def test_an_exhausted_pool_says_so_and_is_transient(db_url: str) -> None:
    sysdb = SystemDatabase(db_url, pool_size=1, pool_wait_s=0.3)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sysdb.connection():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(DBOSDatabaseError) as raised:
            sysdb.get_status_result("any")
        assert not isinstance(raised.value, DBOSConnectionError)
        assert "exhausted" in str(raised.value) and "1 connections" in str(raised.value)
        assert "unreachable" not in str(raised.value) and "cannot reach" not in str(raised.value)
        assert is_transient(raised.value)
    finally:
        release.set()
        holder.join()
        sysdb.close()


def test_a_workflow_waits_for_a_connection_instead_of_failing(launch_dbos: Launch) -> None:
    started, release = threading.Event(), threading.Event()

    @DBOS.transaction()
    def hold() -> None:
        started.set()
        DBOS.sql_session.execute("SELECT 1")
        release.wait(10)

    @DBOS.transaction()
    def count() -> int:
        row = DBOS.sql_session.execute("SELECT 41 + 1").fetchone()
        return int(row[0])

    @DBOS.workflow()
    def wf() -> int:
        DBOS.sleep(0.5)  # the holders take every connection meanwhile
        return count()

    launch_dbos(max_executor_threads=4)
    pool = DBOS._rt().app_pool
    pool.timeout = 0.3  # how long one checkout waits before the pool reports a timeout
    with SetWorkflowID("patient"):
        handle = DBOS.start_workflow(wf)
    holders = [threading.Thread(target=hold) for _ in range(pool.max_size)]
    for holder in holders:
        holder.start()
    assert started.wait(5)
    time.sleep(1.5)  # the workflow's transaction has timed out on the pool several times
    release.set()
    for holder in holders:
        holder.join()
    assert handle.get_result() == 42
    [sleep, tx] = DBOS.list_workflow_steps("patient")
    assert tx.error is None and tx.output == 42
