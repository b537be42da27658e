"""Transactions on the application database: the user's writes and the transaction's recorded
outcome commit together, in one Postgres transaction, so a transaction commits exactly once.
Written once for sync and async transactions (``runtime.engine.drive``); the only engine module
that deals with the driver's (psycopg's) own errors, whether raised by psycopg or wrapped by
SQLAlchemy (``DBOS.sql_session`` serves both: ``runtime.sql_session``).

- A serialization failure or deadlock rolls back and runs the transaction again (with backoff, up
  to ``TRANSACTION_MAX_ATTEMPTS``).
- A connection that dies around the commit leaves the outcome unknown: the recorded outcome
  (written inside the transaction) says whether it committed; if not, it runs again.
- Any other error rolls the user's writes back and is recorded as the transaction's outcome.
- ``psycopg.Rollback`` rolls back quietly, as psycopg's own transaction blocks do: the
  transaction returns None (its recorded outcome, in a workflow).
- Called from a step, a transaction is part of that step: plain, not recorded on its own.
- Called from a transaction, it is part of that transaction: it runs on the caller's session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from runtime import context, db, serialization, sysschema
from runtime.context import StepContext, WorkflowContext, now_ms
from runtime.engine.drive import (
    Blocking,
    Call,
    Effect,
    Operation,
    run_async,
    run_sync,
    uncarry,
)
from runtime.engine.protocol import (
    Interrupted,
    Operations,
    OutcomeUnknown,
    Pause,
    check_same_operation,
    owner_verdict,
    replay_outcome,
)
from runtime.errors import DBOSException, DBOSWorkflowFencedError
from runtime.records import RecordResult
from runtime.sql_session import AsyncSession, SqlAlchemyBridge, SqlSession, driver_error

logger = logging.getLogger("dbos")

TRANSACTION_MAX_ATTEMPTS = 50
_RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


class _RecordFailed(Exception):
    """A transient failure (a lock or statement timeout, a server short of resources) writing
    the outcome inside the transaction, whose connection is still up: the transaction rolled back,
    so it runs again, like one that met a serialization failure."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _retried(exc: BaseException) -> bool:
    """A serialization failure or deadlock, raised by psycopg or wrapped by SQLAlchemy, or a
    transient failure to record the outcome."""
    return isinstance(driver_error(exc), _RETRIED) or isinstance(exc, _RecordFailed)


class _Session(Effect):
    """What ``DBOS.sql_session`` is inside the transaction: a ``SqlSession`` on its connection
    (sync), or an ``AsyncSession`` over that (async)."""

    __slots__ = ("session",)

    def __init__(self, session: SqlSession) -> None:
        self.session = session

    def run(self) -> Any:
        return self.session

    async def run_async(self) -> Any:
        return AsyncSession(self.session)


class _Within(Effect):
    """A transaction called from a running transaction is part of it, as in DBOS: the function
    runs on the caller's session (no transaction, no record of its own). A sync function called
    from an async transaction gets the sync session."""

    __slots__ = ("call", "outer")

    def __init__(self, call: Call, outer: SqlSession | AsyncSession) -> None:
        self.call, self.outer = call, outer

    def run(self) -> Any:
        outer = self.outer
        session = outer.sync_session if isinstance(outer, AsyncSession) else outer
        token = context.sql_session.set(session)
        try:
            return self.call.run()
        finally:
            context.sql_session.reset(token)

    async def run_async(self) -> Any:
        return await self.call.run_async()


class _Checkout(Effect):
    """A connection from the pool, through ``Operations.checkpoint``: in a workflow, a pool that
    stays exhausted (back-pressure) or a database that is unreachable is waited out like any
    checkpoint, never recorded as the transaction's error. On an event loop the wait is on a
    worker thread; should the awaiting task be cancelled meanwhile, the connection that thread
    gets goes back to the pool (else every timed-out request would keep one for good), whichever
    of the two sees the other first: the thread, or the cancelled task."""

    __slots__ = ("ops", "pool")

    def __init__(self, ops: Operations, pool: ConnectionPool) -> None:
        self.ops, self.pool = ops, pool

    def _getconn(self) -> psycopg.Connection[Any]:
        try:
            return self.pool.getconn()
        except PoolTimeout as exc:
            raise db.pool_timeout(exc, self.pool) from exc
        except psycopg.Error as exc:
            raise db.translate(exc) from exc

    def run(self) -> psycopg.Connection[Any]:
        return self.ops.checkpoint(self._getconn)

    async def run_async(self) -> psycopg.Connection[Any]:
        lock = threading.Lock()
        held: list[psycopg.Connection[Any]] = []
        abandoned = False

        def checkout() -> psycopg.Connection[Any] | None:
            conn = self.run()
            with lock:
                if not abandoned:
                    held.append(conn)
                    return conn
            self.pool.putconn(conn)
            return None

        try:
            conn = await asyncio.to_thread(checkout)
        except BaseException:
            with lock:
                abandoned = True
                give_back = held[:]
            for conn in give_back:
                self.pool.putconn(conn)
            raise
        assert conn is not None  # only None once abandoned
        return conn


def tx_record_verdict(ctx: WorkflowContext, result: RecordResult) -> None:
    """Inside a transaction, after writing its checkpoint: raising rolls the writes back. If the
    workflow is still ours, an earlier attempt of this very transaction committed (its commit
    reply was lost); else another runner owns it now."""
    if result.recorded:
        return
    owner_verdict(ctx, result.status, result.owner_epoch, fenced_only=True)
    raise OutcomeUnknown(None)


class Transactions:
    """Runs transactions for one launched runtime."""

    def __init__(self, ops: Operations, app_pool: ConnectionPool, *, same_database: bool) -> None:
        self.ops = ops
        self.app_pool = app_pool
        self.same_database = same_database
        # SQLAlchemy's Engine for this pool: made once, when a transaction first uses it.
        self.sqlalchemy = SqlAlchemyBridge()

    def run(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        isolation: psycopg.IsolationLevel,
    ) -> Any:
        """Run a transaction in this thread; outside a workflow, an unrecorded transaction."""
        return run_sync(self.transaction(name, func, args, kwargs, isolation))

    async def run_async(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        isolation: psycopg.IsolationLevel,
    ) -> Any:
        """Run an async transaction: the user's code awaited on this loop, the connection's own
        work on worker threads."""
        return await run_async(self.transaction(name, func, args, kwargs, isolation))

    def transaction(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        isolation: psycopg.IsolationLevel,
    ) -> Operation[Any]:
        """The transaction as an operation (see the module docstring)."""
        call = Call(func, args, kwargs)
        outer = context.sql_session.get()
        if outer is not None:
            sync = outer.sync_session if isinstance(outer, AsyncSession) else outer
            if sync.joinable(context.current_workflow.get()):
                return (yield _Within(call, outer))
        ctx = context.active_workflow()
        if ctx is None:
            return (yield from self._attempts(call, isolation, None, None, None))
        function_id, rec = self.ops.begin(ctx, name)
        if rec is not None:
            return replay_outcome(rec)
        if not self.same_database:
            raise DBOSException(
                "transactions need the system tables in the application database (no separate "
                "system_database_url), so that their outcome commits with their writes"
            )
        started = now_ms()
        step = StepContext(function_id, name)
        try:
            while True:
                try:
                    value, result = yield from self._attempts(call, isolation, ctx, step, started)
                    break
                except OutcomeUnknown as unknown:
                    # The connection died around the commit, or our checkpoint met an existing
                    # one: the record, written inside the transaction, says whether it committed.
                    found = yield Blocking(
                        lambda: self.ops.checkpoint(
                            lambda: self.ops.sysdb.get_step(ctx.workflow_id, function_id)
                        )
                    )
                    if found is not None:
                        check_same_operation(ctx, function_id, found, name)
                        return replay_outcome(found)
                    self.ops.not_while_stopping(unknown)
                    logger.warning(
                        "transaction %s of workflow %s did not commit (%s); running it again",
                        name,
                        ctx.workflow_id,
                        unknown.cause,
                    )
        except (Interrupted, DBOSWorkflowFencedError):
            raise
        except Exception as exc:
            # The user's writes rolled back; the error is the transaction's recorded outcome.
            self.ops.not_while_stopping(exc)
            encoded = serialization.serialize_exception(uncarry(exc))
            yield self.ops.recording(ctx, function_id, name, error=encoded, started_at_ms=started)
            raise
        if result is None:  # rolled back on request: its outcome (None) is recorded alone
            none = serialization.serialize(None)
            yield self.ops.recording(ctx, function_id, name, output=none, started_at_ms=started)
            return None
        self.ops.check_record(ctx, result)
        return value

    def _attempts(
        self,
        call: Call,
        isolation: psycopg.IsolationLevel,
        ctx: WorkflowContext | None,
        step: StepContext | None,
        started: int | None,
    ) -> Operation[Any]:
        delay = 0.01
        for attempt in range(1, TRANSACTION_MAX_ATTEMPTS + 1):
            try:
                return (yield from self._once(call, isolation, ctx, step, started))
            except Exception as exc:
                if not _retried(exc) or attempt == TRANSACTION_MAX_ATTEMPTS:
                    if isinstance(exc, _RecordFailed):  # out of attempts: the driver's error
                        raise exc.cause from None
                    raise
                logger.debug("transaction retry %d after %s", attempt, type(exc).__name__)
                yield Pause(self.ops, None, delay)  # a plain sleep, as before any record
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(
        self,
        call: Call,
        isolation: psycopg.IsolationLevel,
        ctx: WorkflowContext | None,
        step: StepContext | None,
        started: int | None,
    ) -> Operation[Any]:
        """One attempt on a pooled connection: (value, checkpoint result) in a workflow, else the
        value."""
        conn: psycopg.Connection[Any] = yield _Checkout(self.ops, self.app_pool)
        sql = SqlSession(conn, self.sqlalchemy, context.current_workflow.get())
        try:
            conn.isolation_level = isolation
            tx = conn.transaction()
            yield Blocking(tx.__enter__)
            try:
                session = yield _Session(sql)
                session_token = context.sql_session.set(session)
                # A transaction called from a step is part of that step: the step stays current,
                # so that what the transaction calls is plain (not durable) too.
                step_token = context.current_step.set(step) if ctx is not None else None
                sql.running = True
                try:
                    # The user's SQL is sent as written, whatever the system schema.
                    with sysschema.user_statements(conn):
                        value = yield call
                finally:
                    sql.running = False
                    if step_token is not None:
                        context.current_step.reset(step_token)
                    context.sql_session.reset(session_token)
                if sql.uses_sqlalchemy:  # the ORM's pending writes, before the outcome
                    yield Blocking(sql.before_commit)
                result = None
                if ctx is not None and step is not None:
                    result = yield Blocking(lambda: self._record(conn, ctx, step, started, value))
            except BaseException as raised:
                exc = uncarry(raised)
                rolled_back = yield Blocking(
                    partial(tx.__exit__, type(exc), exc, exc.__traceback__)
                )
                if not rolled_back:
                    raise
                # psycopg.Rollback: the user asked to roll back quietly (psycopg's own rule);
                # nothing committed, the transaction returns None.
                value, result = None, None
            else:
                yield Blocking(lambda: tx.__exit__(None, None, None))
            return value if ctx is None else (value, result)
        except Exception as exc:
            lost = ctx is not None and (conn.broken or conn.closed)
            if lost and isinstance(driver_error(exc), psycopg.Error):
                raise OutcomeUnknown(exc) from exc
            raise
        finally:
            if sql.uses_sqlalchemy:
                yield Blocking(sql.release)
            if not conn.closed:
                conn.isolation_level = None
            yield Blocking(lambda: self.app_pool.putconn(conn))

    def _record(
        self,
        conn: psycopg.Connection[Any],
        ctx: WorkflowContext,
        step: StepContext,
        started: int | None,
        value: Any,
    ) -> RecordResult:
        """The transaction's checkpoint, written inside it. Raising rolls the transaction back:
        fenced, or outcome unknown (the connection died)."""
        output = serialization.serialize(value, f"result of transaction {step.name}")
        try:
            result = self.ops.sysdb.record_step(
                ctx.workflow_id,
                ctx.owner_epoch,
                step.function_id,
                step.name,
                output=output,
                started_at_ms=started,
                completed_at_ms=now_ms(),
                conn=conn,
            )
        except psycopg.errors.SerializationFailure:
            raise
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                raise OutcomeUnknown(exc) from exc
            if db.is_transient(db.translate(exc, conn=conn)):
                # Not an outage (the connection is up) and not the data's fault: a timeout or a
                # lock not available. The transaction rolls back and runs again; left PENDING
                # instead, a caller's retry could commit it a second time, then recovery again.
                logger.warning(
                    "transaction %s of workflow %s could not record its outcome (%s); running "
                    "it again",
                    step.name,
                    ctx.workflow_id,
                    type(exc).__name__,
                )
                raise _RecordFailed(exc) from exc
            # Caused by the transaction itself, not an outage: most often the function caught a
            # database error without a savepoint and returned, leaving the transaction aborted
            # (InFailedSqlTransaction), or it made the transaction read-only. As in DBOS, that is
            # the transaction's error: recorded, and raised to the workflow, which may catch it.
            logger.warning(
                "transaction %s of workflow %s could not record its outcome: %s (a database "
                "error caught inside a transaction aborts it; catch it in a savepoint: "
                "conn.transaction() or begin_nested())",
                step.name,
                ctx.workflow_id,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
            raise
        tx_record_verdict(ctx, result)
        return result
