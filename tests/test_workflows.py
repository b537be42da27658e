"""Workflows, steps and transactions in one process: results, IDs, handles, errors, children."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    SetWorkflowID,
)

Launch = Callable[..., None]


class PaymentDeclined(Exception):
    """A user-defined error with two arguments, to check it comes back as itself."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def _count(url: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_workflow_steps_and_transaction_record_their_outcomes(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.step()
    def double(x: int) -> int:
        return x * 2

    @DBOS.transaction()
    def insert(x: int) -> int:
        DBOS.sql_session.execute("CREATE TABLE IF NOT EXISTS items (v int)")
        DBOS.sql_session.execute("INSERT INTO items VALUES (%s)", (x,))
        return x + 1

    @DBOS.workflow()
    def wf(x: int) -> tuple[int, int, str | None]:
        a = double(x)
        b = insert(a)
        return a, b, DBOS.workflow_id

    launch_dbos()
    with SetWorkflowID("wf-1"):
        assert wf(3) == (6, 7, "wf-1")
    status = DBOS.get_workflow_status("wf-1")
    assert status is not None
    assert status.status == "SUCCESS"
    assert status.input == {"args": [3], "kwargs": {}}
    assert status.output == (6, 7, "wf-1")
    assert status.executor_id == "local"
    assert status.app_version == "test-version"
    steps = DBOS.list_workflow_steps("wf-1")
    assert [(s.function_id, s.function_name, s.output) for s in steps] == [
        (1, double.__qualname__, 6),
        (2, insert.__qualname__, 7),
    ]
    assert _count(db_url, "SELECT count(*) FROM items") == 1


def test_step_outside_workflow_is_a_plain_call(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.step()
    def plain(x: int) -> int:
        return x + 1

    launch_dbos()
    assert plain(1) == 2
    assert _count(db_url, "SELECT count(*) FROM dbos.operation_outputs") == 0


def test_workflow_id_is_an_idempotency_key(launch_dbos: Launch) -> None:
    runs: list[int] = []

    @DBOS.step()
    def effect(x: int) -> int:
        runs.append(x)
        return x

    @DBOS.workflow()
    def wf(x: int) -> int:
        return effect(x) * 10

    launch_dbos()
    with SetWorkflowID("same"):
        assert wf(1) == 10
    with SetWorkflowID("same"):
        assert wf(1) == 10
    handle = None
    with SetWorkflowID("same"):
        handle = DBOS.start_workflow(wf, 1)
    assert handle.get_result() == 10
    assert runs == [1]


def test_concurrent_starts_with_one_id_run_once(launch_dbos: Launch) -> None:
    runs: list[int] = []
    gate = threading.Event()

    @DBOS.step()
    def slow(x: int) -> int:
        runs.append(x)
        gate.wait(5)
        return x

    @DBOS.workflow()
    def wf(x: int) -> int:
        return slow(x)

    launch_dbos()
    results: list[Any] = []

    def start() -> None:
        with SetWorkflowID("concurrent"):
            results.append(wf(7))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [7, 7, 7, 7]
    assert runs == [7]


def test_same_id_with_another_workflow_conflicts(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def first() -> int:
        return 1

    @DBOS.workflow()
    def second() -> int:
        return 2

    launch_dbos()
    with SetWorkflowID("taken"):
        first()
    with pytest.raises(DBOSConflictingWorkflowError, match="taken"), SetWorkflowID("taken"):
        second()


def test_set_workflow_id_applies_to_the_next_workflow_only(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def wf() -> str | None:
        return DBOS.workflow_id

    launch_dbos()
    with SetWorkflowID("only-first"):
        assert wf() == "only-first"
        other = wf()
    assert other != "only-first"


def test_start_workflow_handle(launch_dbos: Launch) -> None:
    gate = threading.Event()

    @DBOS.step()
    def wait() -> None:
        gate.wait(10)

    @DBOS.workflow()
    def wf(a: int, b: int = 0) -> int:
        wait()
        return a + b

    launch_dbos()
    handle = DBOS.start_workflow(wf, 2, b=3)
    assert handle.get_workflow_id() == handle.workflow_id
    assert handle.get_status().status == "PENDING"
    gate.set()
    assert handle.get_result() == 5
    assert handle.get_status().status == "SUCCESS"
    again = DBOS.retrieve_workflow(handle.workflow_id)
    assert again.get_result() == 5


def test_retrieve_unknown_workflow(launch_dbos: Launch) -> None:
    launch_dbos()
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("no-such-workflow")
    assert DBOS.get_workflow_status("no-such-workflow") is None


def test_uncaught_error_ends_workflow_in_error_and_reraises_same_class(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def pay(amount: int) -> None:
        raise PaymentDeclined(51, f"insufficient funds for {amount}")

    launch_dbos()
    with SetWorkflowID("declined"), pytest.raises(PaymentDeclined) as direct:
        pay(100)
    assert direct.value.code == 51
    status = DBOS.get_workflow_status("declined")
    assert status is not None and status.status == "ERROR"
    assert isinstance(status.error, PaymentDeclined)
    # Another handle reads the recorded error from the database: same class, same fields.
    with pytest.raises(PaymentDeclined) as stored:
        DBOS.retrieve_workflow("declined").get_result()
    assert stored.value.code == 51
    assert stored.value.reason == "insufficient funds for 100"
    # A finished workflow is not run again under its ID: the error comes back.
    with SetWorkflowID("declined"), pytest.raises(PaymentDeclined):
        pay(100)


def test_unserializable_argument_is_refused_before_anything_is_recorded(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.workflow()
    def wf(callback: Any) -> None:
        return None

    launch_dbos()
    with pytest.raises(DBOSSerializationError, match="callback"):
        wf(lambda: None)
    with pytest.raises(DBOSSerializationError, match="callback"):
        DBOS.start_workflow(wf, threading.Lock())
    assert _count(db_url, "SELECT count(*) FROM dbos.workflow_status") == 0


def test_unserializable_result_is_an_error(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def wf() -> Any:
        return threading.Lock()

    launch_dbos()
    with SetWorkflowID("bad-result"), pytest.raises(DBOSSerializationError):
        wf()
    status = DBOS.get_workflow_status("bad-result")
    assert status is not None and status.status == "ERROR"


def test_rich_values_round_trip_through_steps(launch_dbos: Launch) -> None:
    import datetime
    import decimal
    import uuid

    value = {
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "amount": decimal.Decimal("12.50"),
        "id": uuid.UUID(int=7),
        "pair": (1, 2),
        "tags": {"a", "b"},
        "blob": b"\x00\x01",
    }

    @DBOS.step()
    def echo(v: Any) -> Any:
        return v

    @DBOS.workflow()
    def wf(v: Any) -> Any:
        return echo(v)

    launch_dbos()
    with SetWorkflowID("rich"):
        assert wf(value) == value
    assert DBOS.retrieve_workflow("rich").get_result() == value
    assert DBOS.list_workflow_steps("rich")[0].output == value


def test_step_retries_with_backoff_then_succeeds(launch_dbos: Launch) -> None:
    attempts: list[int] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=4, backoff_rate=2.0)
    def flaky() -> str:
        attempts.append(DBOS.step_status.attempt if DBOS.step_status else -1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    @DBOS.workflow()
    def wf() -> str:
        return flaky()

    launch_dbos()
    assert wf() == "ok"
    assert attempts == [1, 2, 3]


def test_step_out_of_attempts_raises_max_retries_and_records_it(launch_dbos: Launch) -> None:
    calls: list[int] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3)
    def always_fails() -> None:
        calls.append(1)
        raise ConnectionError("down")

    @DBOS.workflow()
    def wf() -> None:
        always_fails()

    launch_dbos()
    with SetWorkflowID("retries"), pytest.raises(DBOSMaxStepRetriesExceeded, match="3 attempts"):
        wf()
    assert len(calls) == 3
    steps = DBOS.list_workflow_steps("retries")
    assert isinstance(steps[0].error, DBOSMaxStepRetriesExceeded)


def test_step_without_retries_raises_once(launch_dbos: Launch) -> None:
    calls: list[int] = []

    @DBOS.communicator()
    def fails() -> None:
        calls.append(1)
        raise KeyError("missing")

    @DBOS.workflow()
    def wf() -> str:
        try:
            fails()
        except KeyError:
            return "handled"
        return "not raised"

    launch_dbos()
    assert wf() == "handled"
    assert calls == [1]


def test_failed_transaction_rolls_back_and_records_its_error(
    launch_dbos: Launch, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (v int)")

    @DBOS.transaction()
    def write_then_fail() -> None:
        DBOS.sql_session.execute("INSERT INTO accounts VALUES (1)")
        raise ValueError("no")

    @DBOS.workflow()
    def wf() -> str:
        try:
            write_then_fail()
        except ValueError:
            return "rolled back"
        return "?"

    launch_dbos()
    with SetWorkflowID("tx-fail"):
        assert wf() == "rolled back"
    assert _count(db_url, "SELECT count(*) FROM accounts") == 0
    steps = DBOS.list_workflow_steps("tx-fail")
    assert isinstance(steps[0].error, ValueError)


def test_serialization_failures_are_retried(launch_dbos: Launch, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE counter (id int primary key, n int)")
        conn.execute("INSERT INTO counter VALUES (1, 0)")
    barrier = threading.Barrier(2, timeout=10)
    tries: list[int] = []

    @DBOS.transaction()
    def increment() -> int:
        row = DBOS.sql_session.execute("SELECT n FROM counter WHERE id = 1").fetchone()
        assert row is not None
        tries.append(1)
        if len(tries) <= 2:
            barrier.wait()  # both read before either writes: one must fail to serialize
        DBOS.sql_session.execute("UPDATE counter SET n = %s WHERE id = 1", (row[0] + 1,))
        return int(row[0]) + 1

    @DBOS.workflow()
    def wf() -> int:
        return increment()

    launch_dbos()
    handles = [DBOS.start_workflow(wf) for _ in range(2)]
    assert sorted(h.get_result() for h in handles) == [1, 2]
    assert _count(db_url, "SELECT n FROM counter") == 2
    assert len(tries) == 3  # one conflict, retried once


def test_transaction_outside_a_workflow_still_runs_in_a_transaction(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.transaction(isolation_level="READ COMMITTED")
    def level() -> str:
        row = DBOS.sql_session.execute("SHOW transaction_isolation").fetchone()
        assert row is not None
        return str(row[0])

    launch_dbos()
    assert level() == "read committed"
    with pytest.raises(DBOSException, match="sql_session"):
        DBOS.sql_session  # noqa: B018 - the property raises outside a transaction


def test_transaction_outside_a_workflow_commits_once_per_workflow_id(
    launch_dbos: Launch, db_url: str
) -> None:
    """As in DBOS, a transaction called outside a workflow runs as its one-step workflow: under
    ``SetWorkflowID`` a repeated call commits once and returns the recorded result."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE credits (amount int)")

    @DBOS.transaction()
    def credit(amount: int) -> str | None:
        DBOS.sql_session.execute("INSERT INTO credits VALUES (%s)", (amount,))
        return DBOS.workflow_id

    @DBOS.transaction()
    async def credit_async(amount: int) -> str | None:
        await DBOS.sql_session.execute("INSERT INTO credits VALUES (%s)", (amount,))
        return DBOS.workflow_id

    launch_dbos()
    for _ in range(3):
        with SetWorkflowID("pay-42"):
            assert credit(10) == "pay-42"
    for _ in range(2):
        with SetWorkflowID("pay-43"):
            assert asyncio.run(credit_async(5)) == "pay-43"
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT amount FROM credits ORDER BY amount").fetchall()
    assert rows == [(5,), (10,)]
    status = DBOS.get_workflow_status("pay-42")
    assert status is not None and status.status == "SUCCESS"
    assert status.name == "<temp>." + credit.__qualname__
    assert [s.function_name for s in DBOS.list_workflow_steps("pay-42")] == [credit.__qualname__]


def test_a_transaction_whose_outcome_write_times_out_runs_again_once(
    launch_dbos: Launch, db_url: str
) -> None:
    """The outcome is written inside the transaction; when that write times out (here: another
    session holds a lock on the steps table past the transaction's lock_timeout) the transaction
    rolled back, so it runs again, and commits once. Before, the workflow was left PENDING and a
    retry by the caller, then recovery, committed it twice."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE payments (who text, cents int)")
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(db_url) as conn:
            conn.execute("LOCK TABLE dbos.operation_outputs IN EXCLUSIVE MODE")
            locked.set()
            release.wait(10)

    attempts: list[int] = []

    @DBOS.transaction()
    def pay(who: str, cents: int) -> int:
        attempts.append(cents)
        DBOS.sql_session.execute("SET LOCAL lock_timeout = '200ms'")
        DBOS.sql_session.execute("INSERT INTO payments VALUES (%s, %s)", (who, cents))
        if len(attempts) == 2:
            release.set()  # the outcome write of this attempt can go through
        return cents

    launch_dbos()
    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    try:
        with SetWorkflowID("pay-once"):
            assert pay("alice", 10) == 10
    finally:
        release.set()
        holder.join()
    assert len(attempts) >= 2
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT who, cents FROM payments").fetchall()
    assert rows == [("alice", 10)]
    status = DBOS.get_workflow_status("pay-once")
    assert status is not None and status.status == "SUCCESS"


def test_child_workflows_called_and_started(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def child(x: int) -> int:
        return x * 100

    @DBOS.workflow()
    def parent(x: int) -> tuple[int, int, str]:
        direct = child(x)
        handle = DBOS.start_workflow(child, x + 1)
        return direct, handle.get_result(), handle.workflow_id

    launch_dbos()
    with SetWorkflowID("parent"):
        direct, started, started_id = parent(1)
    assert (direct, started) == (100, 200)
    steps = DBOS.list_workflow_steps("parent")
    assert [s.function_name for s in steps] == [
        child.__qualname__,
        child.__qualname__,
        "DBOS.getResult",
    ]
    assert steps[0].child_workflow_id == "parent-1"
    assert steps[1].child_workflow_id == started_id == "parent-2"
    child_status = DBOS.get_workflow_status("parent-1")
    assert child_status is not None
    assert child_status.parent_workflow_id == "parent"
    assert child_status.output == 100


def test_static_and_class_method_workflows(launch_dbos: Launch) -> None:
    class Shop:
        discount = 10

        @staticmethod
        @DBOS.workflow()
        def total(price: int) -> int:
            return price * 2

        @classmethod
        @DBOS.workflow()
        def discounted(cls, price: int) -> int:
            return price - cls.discount

    launch_dbos()
    assert Shop.total(5) == 10
    assert Shop.discounted(50) == 40
    handle = DBOS.start_workflow(Shop.discounted, 30)
    assert handle.get_result() == 20
    status = handle.get_status()
    assert status.input == {"args": [30], "kwargs": {}}  # the class is not an input


def test_calling_a_workflow_before_launch_is_a_clear_error() -> None:
    DBOS.destroy()

    @DBOS.workflow()
    def wf() -> None:
        return None

    with pytest.raises(DBOSException, match="launch"):
        wf()


def test_second_construction_with_another_config_raises(launch_dbos: Launch, db_url: str) -> None:
    launch_dbos()
    with pytest.raises(DBOSException, match="different config"):
        DBOS(config={"name": "other", "database_url": db_url})


def test_transaction_whose_connection_dies_runs_again_exactly_once(
    launch_dbos: Launch, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE payments (id int)")
    attempts: list[int] = []

    @DBOS.transaction()
    def pay() -> int:
        attempts.append(1)
        DBOS.sql_session.execute("INSERT INTO payments VALUES (1)")
        if len(attempts) == 1:
            # Another session kills this transaction's connection before it commits.
            with psycopg.connect(db_url, autocommit=True) as killer:
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'INSERT INTO payments%%'"
                )
            DBOS.sql_session.execute("SELECT 1")  # fails: the connection is gone
        return len(attempts)

    @DBOS.workflow()
    def wf() -> int:
        return pay()

    launch_dbos()
    with SetWorkflowID("killed-tx"):
        assert wf() == 2
    assert _count(db_url, "SELECT count(*) FROM payments") == 1
    steps = DBOS.list_workflow_steps("killed-tx")
    assert [(s.output, s.error) for s in steps] == [(2, None)]
