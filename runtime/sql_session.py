"""``DBOS.sql_session``: the running transaction's connection, for both idioms a DBOS app uses.

- psycopg: ``execute("... %s", (x,))`` with a ``str`` (or ``bytes``, or a ``psycopg.sql``
  composition) runs on the psycopg connection and returns its cursor (``.fetchone()``...).
- SQLAlchemy (the optional ``sqlalchemy`` extra): ``execute(text(...), {...})``, ``scalar``,
  ``scalars``, ``add``, ``flush``, ``connection()``, every other ``Session`` attribute: a
  ``sqlalchemy.orm.Session`` on the same connection, made on first use (``runtime.sql_alchemy``),
  so that what it writes commits with the transaction's recorded outcome.

This module never imports SQLAlchemy itself: an app that does not use it never loads it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psycopg
import psycopg.sql

from runtime.errors import DBOSException

logger = logging.getLogger("dbos")

_PSYCOPG_STATEMENTS = (str, bytes, psycopg.sql.SQL, psycopg.sql.Composed)


def driver_error(exc: BaseException) -> BaseException:
    """The psycopg error behind ``exc``: SQLAlchemy wraps the driver's errors in a ``DBAPIError``
    whose ``.orig`` is psycopg's; any other exception is itself."""
    sa_exc = sys.modules.get("sqlalchemy.exc")  # not loaded: cannot be one of its errors
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        if isinstance(orig, psycopg.Error):
            return orig
    return exc


class SqlAlchemyBridge:
    """SQLAlchemy for one application pool: its ``Engine``, made once, on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._module: ModuleType | None = None
        self._missing: ImportError | None = None  # tried once: not installed
        self._engine: Any = None

    def module(self) -> ModuleType:
        """``runtime.sql_alchemy``; a clear error when SQLAlchemy is not installed."""
        if self._module is None:
            try:
                if self._missing is None:
                    self._module = importlib.import_module("runtime.sql_alchemy")
            except ImportError as exc:
                self._missing = exc
            if self._module is None:
                raise DBOSException(
                    "DBOS.sql_session used with SQLAlchemy, which is not installed "
                    "(pip install 'dbos-runtime[sqlalchemy]')"
                ) from self._missing
        return self._module

    def session_has(self, name: str) -> bool:
        """Whether SQLAlchemy's ``Session`` has attribute ``name`` (False without SQLAlchemy)."""
        try:
            module = self.module()
        except DBOSException:
            return False
        return hasattr(module.Session, name)

    def open_session(self, conn: psycopg.Connection[Any]) -> Any:
        """A ``sqlalchemy.orm.Session`` inside ``conn``'s open transaction."""
        module = self.module()
        with self._lock:
            if self._engine is None:
                self._engine = module.make_engine()
        return module.open_session(self._engine, conn)


class SqlSession:
    """``DBOS.sql_session`` in a transaction: ``execute`` takes either idiom (see the module
    docstring); the SQLAlchemy ``Session``'s other attributes are its own (``add``, ``scalar``,
    ``scalars``, ``flush``, ``get``, ``query``...); ``cursor()`` is psycopg's."""

    def __init__(
        self, conn: psycopg.Connection[Any], bridge: SqlAlchemyBridge, owner: object = None
    ) -> None:
        self._conn = conn
        self._bridge = bridge
        self._orm: Any = None
        #: The workflow (context) whose transaction this is, or None outside a workflow; and
        #: whether the user's function is running: only then does a nested transaction join it
        #: (not a workflow started from it that inherited the context variables).
        self.owner = owner
        self.running = False

    @property
    def orm_session(self) -> Any:
        """The SQLAlchemy ``Session`` (made on first use)."""
        if self._orm is None:
            self._orm = self._bridge.open_session(self._conn)
        return self._orm

    def joinable(self, workflow: object) -> bool:
        """Whether a transaction called now, in ``workflow``, is part of this one."""
        return self.running and workflow is self.owner

    @property
    def uses_sqlalchemy(self) -> bool:
        """Whether SQLAlchemy was used in this transaction."""
        return self._orm is not None

    def execute(self, statement: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Run one statement in the transaction. A ``str`` statement: psycopg's
        ``Connection.execute`` (``%s``/``%(name)s`` placeholders; returns a psycopg cursor).
        Anything else (``text()``, ``select()``, ``insert()``...): SQLAlchemy's
        ``Session.execute`` (``:name`` placeholders; returns a ``Result``)."""
        if isinstance(statement, _PSYCOPG_STATEMENTS):
            if self._orm is not None:
                self._orm.flush()  # the ORM's pending writes first, as SQLAlchemy's autoflush
            return self._conn.execute(statement, params, *args, **kwargs)
        return self.orm_session.execute(statement, params, *args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor[Any]:
        """A psycopg cursor on the transaction's connection."""
        if self._orm is not None:
            self._orm.flush()
        cursor: psycopg.Cursor[Any] = self._conn.cursor(*args, **kwargs)
        return cursor

    def __getattr__(self, name: str) -> Any:
        # SQLAlchemy's Session API, as in DBOS; what only psycopg's Connection has (``info``,
        # ``pgconn``... when SQLAlchemy is not installed) stays reachable.
        if name.startswith("__"):
            raise AttributeError(name)
        if not self._bridge.session_has(name) and hasattr(self._conn, name):
            return getattr(self._conn, name)
        return getattr(self.orm_session, name)

    def before_commit(self) -> None:
        """Before the transaction commits: the ORM's pending writes are flushed (a failure is the
        transaction's error); a rollback asked of SQLAlchemy meanwhile fails the transaction
        (``InvalidRequestError``), so that what it discarded is not committed."""
        if self._orm is None:
            return
        self._orm.flush()
        self._bridge.module().check_not_rolled_back(self._orm)

    def release(self) -> None:
        """After the transaction ended: release the SQLAlchemy session (the connection stays)."""
        if self._orm is None:
            return
        orm, self._orm = self._orm, None
        try:
            self._bridge.module().close_session(orm)
        except Exception:  # the transaction's outcome is settled; this only frees memory
            logger.warning("closing the SQLAlchemy session failed", exc_info=True)


class AsyncSession:
    """``DBOS.sql_session`` inside an async transaction: the same two idioms, with the round
    trips awaitable (run on a worker thread): ``await execute(...)``, ``scalar``, ``scalars``,
    ``flush``, ``get``, ``delete``, ``merge``, ``refresh``, ``run_sync(fn, ...)`` (calls
    ``fn(session, ...)``, as SQLAlchemy's ``AsyncSession.run_sync``); ``add``, ``add_all`` and
    ``expunge`` stay plain calls (no round trip)."""

    def __init__(self, session: SqlSession) -> None:
        self.sync_session = session

    async def _off(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _orm(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # The Session is made on the worker thread too: its first connect queries the server.
        session = self.sync_session
        return await self._off(lambda: getattr(session.orm_session, method)(*args, **kwargs))

    async def execute(self, statement: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``SqlSession.execute`` on a worker thread."""
        return await self._off(self.sync_session.execute, statement, params, *args, **kwargs)

    async def scalar(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        """SQLAlchemy's ``Session.scalar``."""
        return await self._orm("scalar", statement, *args, **kwargs)

    async def scalars(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        """SQLAlchemy's ``Session.scalars``."""
        return await self._orm("scalars", statement, *args, **kwargs)

    async def flush(self, objects: Any = None) -> None:
        """SQLAlchemy's ``Session.flush``."""
        await self._orm("flush", objects)

    async def get(self, entity: Any, ident: Any, **kwargs: Any) -> Any:
        """SQLAlchemy's ``Session.get``."""
        return await self._orm("get", entity, ident, **kwargs)

    async def delete(self, instance: Any) -> None:
        """SQLAlchemy's ``Session.delete`` (the row goes at the next flush)."""
        await self._orm("delete", instance)

    async def merge(self, instance: Any, **kwargs: Any) -> Any:
        """SQLAlchemy's ``Session.merge``."""
        return await self._orm("merge", instance, **kwargs)

    async def refresh(self, instance: Any, *args: Any, **kwargs: Any) -> None:
        """SQLAlchemy's ``Session.refresh``."""
        await self._orm("refresh", instance, *args, **kwargs)

    async def run_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(session, *args, **kwargs)`` on a worker thread, ``session`` the sync one."""
        return await self._off(fn, self.sync_session, *args, **kwargs)

    def add(self, instance: Any) -> None:
        """SQLAlchemy's ``Session.add``."""
        self.sync_session.orm_session.add(instance)

    def add_all(self, instances: Any) -> None:
        """SQLAlchemy's ``Session.add_all``."""
        self.sync_session.orm_session.add_all(instances)

    def expunge(self, instance: Any) -> None:
        """SQLAlchemy's ``Session.expunge``."""
        self.sync_session.orm_session.expunge(instance)
