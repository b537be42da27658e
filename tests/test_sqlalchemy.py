"""SQLAlchemy in ``@DBOS.transaction``: ``DBOS.sql_session`` is a SQLAlchemy ``Session`` on the
transaction's own connection (the ORM, ``text()``, Core ``insert()``), its writes commit with the
transaction's recorded outcome (exactly once, also across a SIGKILL), its errors reach user code
as SQLAlchemy's, serialization failures it raises are retried, and the psycopg idiom keeps
working beside it; the runtime still imports and runs without SQLAlchemy installed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.errors import SerializationFailure
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime import DBOS, SetWorkflowID

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "sa_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


ITEMS_DDL = "CREATE TABLE sa_items (id int PRIMARY KEY, name text NOT NULL)"


def _rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


@pytest.fixture
def items_db(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(ITEMS_DDL)
    return db_url


def test_orm_text_and_core_insert_commit_once_with_the_checkpoint(
    launch_dbos: Launch, items_db: str
) -> None:
    runs: list[int] = []

    @DBOS.transaction()
    def write(n: int) -> list[str]:
        runs.append(n)
        session = DBOS.sql_session
        session.add(Item(id=n, name="orm"))  # flushed by the next query (autoflush)
        session.execute(sa.text("INSERT INTO sa_items VALUES (:i, :n)"), {"i": n + 1, "n": "text"})
        session.execute(sa.insert(Item.__table__).values(id=n + 2, name="core"))
        count = session.scalar(sa.select(sa.func.count()).select_from(Item))
        assert count == 3
        names = session.scalars(sa.select(Item.name).order_by(Item.id)).all()
        session.add(Item(id=n + 3, name="unflushed"))  # the commit flushes it
        return list(names)

    @DBOS.workflow()
    def wf() -> list[str]:
        return write(10)

    launch_dbos()
    with SetWorkflowID("sa-orm"):
        assert wf() == ["orm", "text", "core"]
    with SetWorkflowID("sa-orm"):  # the same workflow again: its transaction is not re-run
        assert wf() == ["orm", "text", "core"]
    assert runs == [10]
    assert _rows(items_db, "SELECT id, name FROM sa_items ORDER BY id") == [
        (10, "orm"),
        (11, "text"),
        (12, "core"),
        (13, "unflushed"),
    ]
    steps = DBOS.list_workflow_steps("sa-orm")
    assert [s.function_name for s in steps] == [write.__qualname__]
    assert steps[0].output == ["orm", "text", "core"]


def test_psycopg_idiom_unchanged_and_sees_the_orms_pending_writes(
    launch_dbos: Launch, items_db: str
) -> None:
    @DBOS.transaction()
    def mixed() -> tuple[int, list[tuple[int, str]]]:
        DBOS.sql_session.execute("INSERT INTO sa_items VALUES (%s, %s)", (1, "psycopg"))
        DBOS.sql_session.add(Item(id=2, name="orm"))
        row = DBOS.sql_session.execute("SELECT count(*) FROM sa_items").fetchone()
        rows = DBOS.sql_session.execute(sa.text("SELECT id, name FROM sa_items ORDER BY id"))
        return int(row[0]), [(int(i), str(n)) for i, n in rows.fetchall()]

    @DBOS.transaction()
    def plain() -> int:
        cur = DBOS.sql_session.execute("SELECT count(*) FROM sa_items WHERE id > %s", (0,))
        return int(cur.fetchall()[0][0])

    launch_dbos()
    assert mixed() == (2, [(1, "psycopg"), (2, "orm")])
    assert plain() == 2


def test_integrity_error_reaches_user_code_as_sqlalchemys(
    launch_dbos: Launch, items_db: str
) -> None:
    with psycopg.connect(items_db, autocommit=True) as conn:
        conn.execute("INSERT INTO sa_items VALUES (1, 'taken')")
        conn.execute("CREATE TABLE sa_log (v text)")

    @DBOS.transaction()
    def insert_duplicate() -> str:
        DBOS.sql_session.execute(sa.text("INSERT INTO sa_log VALUES ('rolled back')"))
        DBOS.sql_session.execute(sa.text("INSERT INTO sa_items VALUES (1, 'again')"))
        return "inserted"

    @DBOS.transaction()
    def insert_or_skip() -> str:
        # A savepoint lets the transaction catch the violation and carry on, as in SQLAlchemy.
        try:
            with DBOS.sql_session.begin_nested():
                DBOS.sql_session.add(Item(id=1, name="again"))
        except sa.exc.IntegrityError:
            DBOS.sql_session.execute(sa.text("INSERT INTO sa_log VALUES ('skipped')"))
            return "skipped"
        return "inserted"

    @DBOS.workflow()
    def wf() -> str:
        try:
            insert_duplicate()
        except sa.exc.IntegrityError as exc:
            return f"caught {type(exc.orig).__name__}"
        return "?"

    launch_dbos()
    with SetWorkflowID("sa-dup"):
        assert wf() == "caught UniqueViolation"
    steps = DBOS.list_workflow_steps("sa-dup")
    assert isinstance(steps[0].error, sa.exc.IntegrityError)  # recorded, and replays as itself
    assert insert_or_skip() == "skipped"
    assert _rows(items_db, "SELECT v FROM sa_log") == [("skipped",)]
    assert _rows(items_db, "SELECT name FROM sa_items") == [("taken",)]


def test_a_failed_flush_at_commit_is_the_transactions_error(
    launch_dbos: Launch, items_db: str
) -> None:
    with psycopg.connect(items_db, autocommit=True) as conn:
        conn.execute("INSERT INTO sa_items VALUES (1, 'taken')")

    @DBOS.transaction()
    def add_duplicate() -> str:
        DBOS.sql_session.execute("INSERT INTO sa_items VALUES (%s, %s)", (2, "written"))
        DBOS.sql_session.add(Item(id=1, name="again"))  # only flushed at the end
        return "done"

    launch_dbos()
    with pytest.raises(sa.exc.IntegrityError):
        add_duplicate()
    assert _rows(items_db, "SELECT id FROM sa_items") == [(1,)]


def test_serialization_failures_from_sqlalchemy_are_retried(
    launch_dbos: Launch, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE counter (id int primary key, n int)")
        conn.execute("INSERT INTO counter VALUES (1, 0)")
    barrier = threading.Barrier(2, timeout=10)
    tries: list[int] = []

    @DBOS.transaction()
    def increment() -> int:
        n = DBOS.sql_session.scalar(sa.text("SELECT n FROM counter WHERE id = 1"))
        tries.append(1)
        if len(tries) <= 2:
            barrier.wait()  # both read before either writes: one must fail to serialize
        DBOS.sql_session.execute(sa.text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
        return int(n) + 1

    @DBOS.workflow()
    def wf() -> int:
        return increment()

    launch_dbos()
    handles = [DBOS.start_workflow(wf) for _ in range(2)]
    assert sorted(h.get_result() for h in handles) == [1, 2]
    assert _rows(db_url, "SELECT n FROM counter") == [(2,)]
    assert len(tries) == 3  # one conflict (a sqlalchemy OperationalError), retried once


def test_nested_transaction_runs_on_the_callers_session(launch_dbos: Launch, items_db: str) -> None:
    @DBOS.transaction()
    def inner(n: int) -> int:
        DBOS.sql_session.add(Item(id=n, name="inner"))
        DBOS.sql_session.flush()
        return int(DBOS.sql_session.scalar(sa.select(sa.func.count()).select_from(Item)))

    @DBOS.transaction()
    def outer() -> int:
        DBOS.sql_session.add(Item(id=1, name="outer"))
        seen = inner(2)  # the same transaction: sees the outer's pending write
        raise ValueError(f"saw {seen}")

    @DBOS.workflow()
    def wf() -> str:
        try:
            outer()
        except ValueError as exc:
            return str(exc)
        return "?"

    launch_dbos()
    with SetWorkflowID("sa-nested"):
        assert wf() == "saw 2"
    assert _rows(items_db, "SELECT count(*) FROM sa_items") == [(0,)]  # all rolled back together
    assert len(DBOS.list_workflow_steps("sa-nested")) == 1  # the inner has no record of its own


def test_async_transaction_with_sqlalchemy(launch_dbos: Launch, items_db: str) -> None:
    @DBOS.transaction()
    async def write(n: int) -> int:
        DBOS.sql_session.add(Item(id=n, name="orm"))
        await DBOS.sql_session.execute(
            sa.text("INSERT INTO sa_items VALUES (:i, 'text')"), {"i": n + 1}
        )
        await DBOS.sql_session.execute("INSERT INTO sa_items VALUES (%s, 'psycopg')", (n + 2,))
        return int(await DBOS.sql_session.scalar(sa.select(sa.func.count()).select_from(Item)))

    @DBOS.workflow()
    async def wf() -> int:
        return await write(1)

    launch_dbos()
    assert asyncio.run(wf()) == 3
    assert _rows(items_db, "SELECT name FROM sa_items ORDER BY id") == [
        ("orm",),
        ("text",),
        ("psycopg",),
    ]


def test_commit_or_rollback_inside_the_transaction_commits_nothing(
    launch_dbos: Launch, items_db: str
) -> None:
    calls: list[str] = []

    @DBOS.transaction()
    def commits() -> None:
        calls.append("commit")
        DBOS.sql_session.add(Item(id=1, name="a"))
        DBOS.sql_session.commit()

    @DBOS.transaction()
    def rolls_back() -> str:
        calls.append("rollback")
        DBOS.sql_session.execute(sa.text("INSERT INTO sa_items VALUES (2, 'b')"))
        DBOS.sql_session.rollback()
        return "returned"

    @DBOS.workflow()
    def wf(name: str) -> None:
        {"commits": commits, "rolls_back": rolls_back}[name]()

    launch_dbos()
    closed = "Can't operate on closed transaction inside context manager."  # DBOS's message
    for name in ("commits", "rolls_back"):
        for _ in range(2):  # the second time, the recorded error comes back: no second run
            with SetWorkflowID(f"sa-{name}"):
                with pytest.raises(sa.exc.InvalidRequestError) as info:
                    wf(name)
            assert closed in str(info.value)
    assert calls == ["commit", "rollback"]
    assert _rows(items_db, "SELECT count(*) FROM sa_items") == [(0,)]


def test_one_engine_per_pool(launch_dbos: Launch, items_db: str) -> None:
    engines: list[Any] = []

    @DBOS.transaction()
    def use() -> None:
        engines.append(DBOS.sql_session.get_bind().engine)

    launch_dbos()
    use()
    use()
    assert engines[0] is engines[1]


APP = """
import os, signal, sys
import sqlalchemy as sa
from psycopg.errors import SerializationFailure
from runtime import DBOS, SetWorkflowID

@DBOS.transaction()
def pay(n: int) -> int:
    DBOS.sql_session.execute(
        sa.text("INSERT INTO sa_ledger (pid) VALUES (:p)"), {"p": os.getpid()})
    return n

@DBOS.step()
def after(n: int) -> int:
    if os.environ.get("KILL_AFTER_TX"):
        os.kill(os.getpid(), signal.SIGKILL)  # after the transaction's commit
    return n + 1

@DBOS.workflow()
def wf() -> int:
    return after(pay(1))

DBOS(config={"name": "sa-kill", "database_url": sys.argv[2]})
DBOS.launch()
if sys.argv[1] == "start":
    with SetWorkflowID("sa-kill"):
        print(wf())
else:
    print(DBOS.retrieve_workflow("sa-kill").get_result())
DBOS.destroy()
"""


def test_exactly_once_across_sigkill_after_the_commit(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE sa_ledger (id serial PRIMARY KEY, pid int)")
    app = tmp_path / "sa_kill_app.py"
    app.write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["PYTHONPATH"] = str(ROOT)

    def run(mode: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(app), mode, db_url],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    crashed = run("start", KILL_AFTER_TX="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(_rows(db_url, "SELECT pid FROM sa_ledger")) == 1  # committed before the kill
    restarted = run("recover")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.split() == ["2"]
    assert len(_rows(db_url, "SELECT pid FROM sa_ledger")) == 1  # not run again on recovery


BLOCKED = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "sqlalchemy" or name.startswith("sqlalchemy."):
            raise ImportError("sqlalchemy blocked")
        return None

sys.meta_path.insert(0, Block())
from runtime import DBOS, DBOSException

@DBOS.transaction()
def write() -> int:
    DBOS.sql_session.execute("CREATE TABLE t (v int)")
    DBOS.sql_session.execute("INSERT INTO t VALUES (%s)", (7,))
    return DBOS.sql_session.execute("SELECT v FROM t").fetchone()[0]

@DBOS.transaction()
def orm() -> None:
    DBOS.sql_session.add(object())

@DBOS.workflow()
def wf() -> int:
    return write()

DBOS(config={"name": "no-sa", "database_url": sys.argv[1]})
DBOS.launch()
print(wf())
try:
    orm()
except DBOSException as exc:
    print("refused:", "sqlalchemy" in str(exc))
print("loaded:", any(m.startswith("sqlalchemy") for m in sys.modules))
DBOS.destroy()
"""


def test_runs_without_sqlalchemy_installed(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, db_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["7", "refused: True", "loaded: False"]


def test_connection_lost_under_sqlalchemy_runs_the_transaction_again_once(
    launch_dbos: Launch, items_db: str
) -> None:
    attempts: list[int] = []

    @DBOS.transaction()
    def pay() -> int:
        attempts.append(1)
        DBOS.sql_session.execute(sa.text("INSERT INTO sa_items VALUES (1, 'paid')"))
        if len(attempts) == 1:
            # Another session kills this transaction's connection before it commits.
            with psycopg.connect(items_db, autocommit=True) as killer:
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'INSERT INTO sa_items%%'"
                )
            DBOS.sql_session.execute(sa.text("SELECT 1"))  # a sqlalchemy OperationalError
        return len(attempts)

    @DBOS.workflow()
    def wf() -> int:
        return pay()

    launch_dbos()
    with SetWorkflowID("sa-killed-tx"):
        assert wf() == 2
    assert _rows(items_db, "SELECT name FROM sa_items") == [("paid",)]
    steps = DBOS.list_workflow_steps("sa-killed-tx")
    assert [(s.output, s.error) for s in steps] == [(2, None)]


def test_psycopg_only_attributes_stay_reachable(launch_dbos: Launch) -> None:
    @DBOS.transaction()
    def status() -> int:
        with DBOS.sql_session.cursor() as cur:
            cur.execute("SELECT 1")
        return int(DBOS.sql_session.pgconn.transaction_status)

    launch_dbos()
    assert status() == psycopg.pq.TransactionStatus.INTRANS


def test_dbos_transaction_errors_idioms(launch_dbos: Launch) -> None:
    # As DBOS's own test: a raised sqlalchemy OperationalError wrapping a serialization failure
    # is retried; a syntax error is not, and reaches the caller with psycopg's error as .orig.
    tries: list[int] = []

    @DBOS.transaction()
    def retried(max_retry: int) -> int:
        if len(tries) < max_retry:
            tries.append(1)
            raise sa.exc.OperationalError("Serialization test error", {}, SerializationFailure())
        return max_retry

    @DBOS.transaction()
    def not_retried() -> None:
        tries.append(1)
        DBOS.sql_session.execute(sa.text("selct abc from c;")).fetchall()

    launch_dbos()
    assert retried(10) == 10
    assert len(tries) == 10
    with pytest.raises(sa.exc.ProgrammingError) as info:
        not_retried()
    assert info.value.orig is not None and info.value.orig.sqlstate == "42601"
    assert len(tries) == 11


def test_a_workflow_started_from_a_transaction_has_transactions_of_its_own(
    launch_dbos: Launch, items_db: str
) -> None:
    @DBOS.transaction()
    async def child_tx() -> str:
        DBOS.sql_session.add(Item(id=2, name="child"))
        return "child"

    @DBOS.workflow()
    async def child() -> str:
        return await child_tx()

    @DBOS.transaction()
    async def parent_tx() -> str:
        DBOS.sql_session.add(Item(id=1, name="parent"))
        # The child runs as a task of this loop, with a copy of this context: its transaction
        # must not join this one (which rolls back).
        handle = await DBOS.start_workflow_async(child)
        raise ValueError(await handle.get_result())

    launch_dbos()
    with pytest.raises(ValueError, match="child"):
        asyncio.run(parent_tx())
    assert _rows(items_db, "SELECT name FROM sa_items") == [("child",)]


@pytest.mark.parametrize("idiom", ["sqlalchemy", "psycopg", "read-only"])
def test_a_transaction_left_unusable_by_its_function_ends_in_its_error(
    launch_dbos: Launch, items_db: str, idiom: str
) -> None:
    """The kind: the transaction's own state keeps its outcome from being recorded (an error
    caught without a savepoint aborts it; a read-only transaction refuses the write). That is the
    transaction's error, recorded and raised to the workflow, not an outage that leaves the
    workflow PENDING forever."""
    with psycopg.connect(items_db, autocommit=True) as conn:
        conn.execute("INSERT INTO sa_items VALUES (1, 'taken')")
    runs: list[str] = []

    @DBOS.transaction()
    def swallow() -> str:
        runs.append(idiom)
        if idiom == "read-only":
            DBOS.sql_session.execute("SET TRANSACTION READ ONLY")
            return "read"
        try:
            if idiom == "sqlalchemy":
                DBOS.sql_session.execute(sa.text("INSERT INTO sa_items VALUES (1, 'again')"))
            else:
                DBOS.sql_session.execute("INSERT INTO sa_items VALUES (1, 'again')")
        except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation):
            return "swallowed"
        return "?"

    @DBOS.workflow()
    def wf() -> str:
        try:
            swallow()
        except Exception as exc:
            return f"caught {type(exc).__name__}"
        return "no error"

    launch_dbos()
    with SetWorkflowID(f"unusable-{idiom}"):
        outcome = wf()
    expected = "ReadOnlySqlTransaction" if idiom == "read-only" else "InFailedSqlTransaction"
    assert outcome == f"caught {expected}"
    status = DBOS.get_workflow_status(f"unusable-{idiom}")
    assert status is not None and status.status == "SUCCESS"
    assert type(DBOS.list_workflow_steps(f"unusable-{idiom}")[0].error).__name__ == expected
    assert runs == [idiom]
    # Replayed, the recorded error comes back without running the transaction again.
    with SetWorkflowID(f"unusable-{idiom}"):
        assert wf() == outcome
    assert runs == [idiom]
