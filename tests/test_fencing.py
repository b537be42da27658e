"""Fencing tokens: a step's own side effect can refuse a runner whose workflow was taken over.

The takeover here is what another process's recovery does: it bumps the workflow's owner epoch.
The process-level version (a runner SIGSTOPped past its lease) is in the chaos harness, whose
ledger writes are guarded by the token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from runtime import DBOS, DBOSException, DBOSWorkflowFencedError, FencingToken, SetWorkflowID

Launch = Callable[..., None]


@pytest.fixture(autouse=True)
def fenced_ledger(db_url: str) -> None:
    """The target of the guarded side effects: one row per write that got through."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fenced_ledger (workflow_id text, epoch bigint)")


def _take_over(url: str, workflow_id: str) -> None:
    """What a recovering process does to claim a workflow: bump its owner epoch."""
    with psycopg.connect(url, autocommit=True) as conn:
        _take_over_on(conn, workflow_id)


def _guarded_write(url: str, token: FencingToken) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        token.check(conn)
        conn.execute(
            "INSERT INTO fenced_ledger VALUES (%s, %s)", (token.workflow_id, token.owner_epoch)
        )


def _ledger(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        return [(r[0], int(r[1])) for r in conn.execute("SELECT * FROM fenced_ledger").fetchall()]


def test_token_is_the_owner_epoch_and_guards_a_write(launch_dbos: Launch, db_url: str) -> None:

    @DBOS.step()
    def pay() -> int:
        token = DBOS.fencing_token
        assert token is not None
        _guarded_write(db_url, token)
        return token.owner_epoch

    @DBOS.workflow()
    def wf() -> int:
        return pay()

    launch_dbos()
    assert DBOS.fencing_token is None  # outside a workflow
    with SetWorkflowID("fenced-ok"):
        epoch = wf()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT owner_epoch FROM dbos.workflow_status WHERE workflow_uuid = 'fenced-ok'"
        ).fetchone()
    assert row is not None and int(row[0]) == epoch
    assert _ledger(db_url) == [("fenced-ok", epoch)]


def test_a_taken_over_runner_cannot_write_and_records_nothing(
    launch_dbos: Launch, db_url: str
) -> None:
    wrote, refused = threading.Event(), threading.Event()

    @DBOS.step()
    def pay() -> str:
        token = DBOS.fencing_token
        assert token is not None
        _take_over(db_url, token.workflow_id)  # as if this runner froze here and another took over
        try:
            _guarded_write(db_url, token)
        except DBOSWorkflowFencedError:
            refused.set()
            raise
        wrote.set()
        return "paid"

    @DBOS.workflow()
    def wf() -> str:
        return pay()

    launch_dbos()
    with SetWorkflowID("fenced-stale"):
        DBOS.start_workflow(wf)
    assert refused.wait(10)
    assert not wrote.is_set()
    time.sleep(0.3)  # let the runner stop (it records nothing; there is no event to wait for)
    assert _ledger(db_url) == []
    with psycopg.connect(db_url) as conn:
        status = conn.execute(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = 'fenced-stale'"
        ).fetchone()
        steps = conn.execute(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'fenced-stale'"
        ).fetchone()
    # The stale runner stopped without recording: the workflow is the new owner's to finish.
    assert status is not None and status[0] == "PENDING"
    assert steps is not None and steps[0] == 0


def test_a_takeover_waits_for_a_guarded_write_in_flight(launch_dbos: Launch, db_url: str) -> None:
    outcome: list[str] = []

    @DBOS.step()
    def pay() -> None:
        token = DBOS.fencing_token
        assert token is not None
        with psycopg.connect(db_url) as conn, conn.transaction():
            token.check(conn)
            # While the guarded transaction is open, a takeover cannot commit in between.
            with psycopg.connect(db_url, autocommit=True) as other:
                other.execute("SET lock_timeout = '200ms'")
                try:
                    _take_over_on(other, token.workflow_id)
                    outcome.append("takeover went through")
                except psycopg.errors.LockNotAvailable:
                    outcome.append("takeover waited")
            conn.execute("INSERT INTO fenced_ledger VALUES (%s, %s)", (token.workflow_id, 1))

    @DBOS.workflow()
    def wf() -> None:
        pay()

    launch_dbos()
    with SetWorkflowID("fenced-lock"):
        wf()
    assert outcome == ["takeover waited"]
    assert len(_ledger(db_url)) == 1


def _take_over_on(conn: psycopg.Connection[tuple[object, ...]], workflow_id: str) -> None:
    conn.execute(
        "UPDATE dbos.workflow_status SET owner_epoch = owner_epoch + 1 WHERE workflow_uuid = %s",
        (workflow_id,),
    )


def test_check_outside_a_transaction_is_refused(launch_dbos: Launch, db_url: str) -> None:
    """On an autocommit connection with no transaction block the lock would not outlive the check,
    so the write after it would be unguarded: the check refuses to look safe."""
    seen: list[str] = []

    @DBOS.step()
    def careless() -> None:
        token = DBOS.fencing_token
        assert token is not None
        with psycopg.connect(db_url, autocommit=True) as conn:
            try:
                token.check(conn)
            except DBOSException as exc:
                seen.append(str(exc))
            with conn.transaction():
                token.check(conn)  # the right way passes
                seen.append("guarded")

    @DBOS.workflow()
    def wf() -> None:
        careless()

    launch_dbos()
    wf()
    assert len(seen) == 2 and "conn.transaction()" in seen[0] and seen[1] == "guarded"


def test_async_check_guards_an_async_write(launch_dbos: Launch, db_url: str) -> None:

    refused = threading.Event()

    @DBOS.step()
    async def pay(stale: bool) -> None:
        token = DBOS.fencing_token
        assert token is not None
        if stale:
            _take_over(db_url, token.workflow_id)
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            async with conn.transaction():
                try:
                    await token.check_async(conn)
                except DBOSWorkflowFencedError:
                    refused.set()
                    raise
                await conn.execute(
                    "INSERT INTO fenced_ledger VALUES (%s, %s)",
                    (token.workflow_id, token.owner_epoch),
                )

    @DBOS.workflow()
    async def wf(stale: bool) -> None:
        await pay(stale)

    launch_dbos()
    with SetWorkflowID("fenced-async-ok"):
        asyncio.run(wf(False))
    assert [w for w, _ in _ledger(db_url)] == ["fenced-async-ok"]
    with SetWorkflowID("fenced-async-stale"):
        DBOS.start_workflow(wf, True)
    assert refused.wait(10)
    time.sleep(0.3)  # let the stale runner stop (it records nothing)
    assert [w for w, _ in _ledger(db_url)] == ["fenced-async-ok"]


def test_a_guarded_transaction_left_idle_gives_up_its_lock(db_url: str) -> None:
    # A process frozen inside a guarded transaction must not keep its workflow from every
    # takeover forever: the token bounds how long the transaction may sit idle.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs) "
            "VALUES ('frozen', 'PENDING', 'wf', '{}')"
        )
    token = FencingToken("frozen", 1, idle_timeout_ms=300)
    frozen = psycopg.connect(db_url)
    frozen.execute("BEGIN")
    token.check(frozen)
    time.sleep(1.0)  # idle inside the transaction, as a paused process would be
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SET lock_timeout = '200ms'")
        _take_over_on(other, "frozen")  # the lock is gone: no LockNotAvailable
    with pytest.raises(psycopg.Error):
        frozen.execute("SELECT 1")  # the server ended the idle transaction
    frozen.close()

    # A connection that sets its own limit keeps it.
    with psycopg.connect(db_url) as conn:
        conn.execute("SET idle_in_transaction_session_timeout = '10s'")
        with conn.transaction():
            FencingToken("frozen", 2, idle_timeout_ms=300).check(conn)
            shown = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
    assert shown == ("10s",)
