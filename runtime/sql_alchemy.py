"""SQLAlchemy on the transaction's own connection (the optional ``sqlalchemy`` extra; imported only
when a transaction first uses SQLAlchemy, so that the core never needs it).

A DBOS app's ``DBOS.sql_session`` is a SQLAlchemy ``Session``. Ours must run on the psycopg
connection that already holds the transaction open, so that the user's writes and the
transaction's recorded outcome commit together, exactly once. Hence:

- one ``Engine`` per application pool (``SqlAlchemyBridge`` in ``runtime.sql_session`` holds it),
  whose pool hands out the connection of the running transaction (``handing_off``) and never
  closes it: the connection belongs to the application pool;
- a dialect that never begins, commits, rolls back or closes on its own: the transaction block
  around the user's function does. A ``commit()`` inside the transaction is refused; a
  ``rollback()`` (the user's, or the ORM's after a failed flush) marks the session so that the
  transaction cannot commit what SQLAlchemy discarded. Both raise SQLAlchemy's
  ``InvalidRequestError``, as in DBOS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
import sqlalchemy
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

#: ``Connection.info`` key: SQLAlchemy rolled back while the transaction was open.
ROLLED_BACK = "dbos_rolled_back"

_handoff: ContextVar[psycopg.Connection[Any] | None] = ContextVar("dbos_sa_handoff", default=None)


def _psycopg_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection behind what SQLAlchemy passes a dialect (a pool proxy, or the
    connection itself)."""
    raw = getattr(conn, "dbapi_connection", conn)
    assert isinstance(raw, psycopg.Connection)
    return raw


def _transaction_open(conn: Any) -> bool:
    status = _psycopg_connection(conn).info.transaction_status
    return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)


class BridgeDialect(PGDialect_psycopg):
    """``postgresql+psycopg``, minus the transaction control that belongs to the runtime."""

    supports_statement_cache = True

    def on_connect(self) -> None:
        # psycopg's dialect adds a notice handler per new connection: ours are pooled and reused,
        # so each transaction would add one more to the same connection.
        return None

    def do_begin(self, dbapi_connection: Any) -> None:
        pass  # the transaction block is already open

    def do_commit(self, dbapi_connection: Any) -> None:
        if _transaction_open(dbapi_connection):
            raise _closed_transaction("commit()")

    def do_rollback(self, dbapi_connection: Any) -> None:
        pass  # see _on_rollback: the transaction block rolls back, if anything

    def do_close(self, dbapi_connection: Any) -> None:
        pass  # the connection goes back to the application pool, open

    def do_terminate(self, dbapi_connection: Any) -> None:
        pass  # likewise: the connection is ours, not SQLAlchemy's, to end


registry.register("postgresql.dbos_bridge", __name__, "BridgeDialect")


def _on_rollback(conn: sqlalchemy.Connection) -> None:
    # Called before each rollback SQLAlchemy asks of a connection; a rollback asked while the
    # transaction is open (explicit, or the ORM's after a failed flush) cannot be done partially,
    # so the session is marked and the transaction refuses to commit (SqlSession.finish).
    if _transaction_open(conn.connection):
        conn.info[ROLLED_BACK] = True


def _current() -> psycopg.Connection[Any]:
    conn = _handoff.get()
    assert conn is not None, "SQLAlchemy connected outside handing_off()"
    return conn


def make_engine() -> sqlalchemy.Engine:
    """The engine of one application pool. NullPool: each checkout wraps the connection being
    handed off, and its return closes nothing (``BridgeDialect.do_close``)."""
    engine = sqlalchemy.create_engine(
        "postgresql+dbos_bridge://",
        creator=_current,
        poolclass=NullPool,
        pool_reset_on_return=None,
        use_native_hstore=False,  # would register an adapter on our pooled connections
    )
    event.listen(engine, "rollback", _on_rollback)
    return engine


@contextmanager
def handing_off(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """While open, connecting the engine wraps ``conn``."""
    token = _handoff.set(conn)
    try:
        yield
    finally:
        _handoff.reset(token)


def open_session(engine: sqlalchemy.Engine, conn: psycopg.Connection[Any]) -> Session:
    """A ``Session`` on ``conn``, inside its open transaction."""
    with handing_off(conn):
        sa_conn = engine.connect()
    return Session(bind=sa_conn, expire_on_commit=False)


def _closed_transaction(call: str) -> sqlalchemy.exc.InvalidRequestError:
    # DBOS's error (and message) for a commit() or rollback() inside a transaction.
    return sqlalchemy.exc.InvalidRequestError(
        "Can't operate on closed transaction inside context manager. Hint: do not call "
        f"{call} on DBOS.sql_session: the @DBOS.transaction commits when its function returns; "
        "raise an exception to roll it back (or use begin_nested() for a savepoint)"
    )


def check_not_rolled_back(session: Session) -> None:
    """Raises ``InvalidRequestError`` if SQLAlchemy rolled back while the transaction was open:
    its writes are gone from the session, so the transaction must not commit the rest."""
    bind = session.bind
    if isinstance(bind, sqlalchemy.Connection) and bind.info.get(ROLLED_BACK):
        raise _closed_transaction("rollback()")


def close_session(session: Session) -> None:
    """Release the session and its connection wrapper; the psycopg connection stays open."""
    bind = session.bind
    session.close()
    if isinstance(bind, sqlalchemy.Connection):
        bind.close()
