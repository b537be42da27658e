"""Connections to Postgres: one-off connections, the pool, and the mapping of driver errors to ours.

Everything that talks to the database gets its connections here, so that a psycopg error never leaks
to a user as a traceback with a URL in it: ``translate`` turns driver errors into ``DBOSException``
subclasses whose messages never contain a password.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from runtime import connect_errors, pg_hosts, sysschema
from runtime.config import redact_url
from runtime.errors import (
    DBOSConnectionError,
    DBOSDatabaseError,
    DBOSException,
    DBOSSchemaMissingError,
)

logger = logging.getLogger("dbos")

# libpq waits forever by default for an unreachable host; a management command must fail quickly.
# Per host, unless the URL sets its own connect_timeout (pg_hosts.session_defaults).
CONNECT_TIMEOUT_S = 10


def _describe(url: str) -> str:
    return redact_url(url)


# SQLSTATEs of a connection that failed or was lost: the server is gone, shutting down or not yet
# accepting connections (PostgreSQL, Appendix A: class 08, and 57P01-57P03).
_CONNECTION_STATES = ("57P01", "57P02", "57P03")
# Failures that are not caused by the statement's data and pass on their own: insufficient
# resources (53), lock not available (55P03), a cancelled statement (57014, statement_timeout),
# system errors (58), and transaction rollbacks (40: serialization failure, deadlock).
_TRANSIENT_CLASSES = ("40", "53", "57", "58")


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None


def translate(
    exc: BaseException, url: str | None = None, *, conn: psycopg.Connection[Any] | None = None
) -> DBOSException:
    """Our error for a driver error. Connection failures name the (redacted) URL; a missing system
    table says to run `dbos migrate`. ``conn``: the connection the error came from, when the
    caller's own code may have made its transaction read-only (see ``_read_only``).

    The classification decides what a workflow does with the error (see ``is_transient``): a
    connection that failed or was lost is a ``DBOSConnectionError``; other failures that are not
    the data's fault (a lock or statement timeout, a serialization failure, a full disk) are
    ``DBOSDatabaseError`` marked transient; everything else (a value the database refuses, a
    constraint) is the caller's error."""
    if isinstance(exc, DBOSException):
        return exc
    where = f" at {_describe(url)}" if url else ""
    state = _sqlstate(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        return DBOSSchemaMissingError(
            f"the system tables are missing in the database{where}; run `dbos migrate`"
        )
    if isinstance(exc, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedFunction):
        return DBOSSchemaMissingError(
            f"the system schema in the database{where} is older than this runtime; "
            "run `dbos migrate`"
        )
    if isinstance(exc, psycopg.InterfaceError) or (
        isinstance(exc, psycopg.OperationalError)
        and (state is None or state.startswith("08") or state in _CONNECTION_STATES)
    ):
        if url:
            return DBOSConnectionError(connect_errors.describe(exc, url, CONNECT_TIMEOUT_S))
        return DBOSConnectionError(f"cannot reach the database: {_first_line(str(exc))}")
    if state == READ_ONLY_SQLSTATE:
        return _read_only(exc, where, conn)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return _transient(f"database statement cancelled{where}: {_first_line(str(exc))}")
    if state is not None and (state.startswith(_TRANSIENT_CLASSES) or state == "55P03"):
        return _transient(f"database busy{where}: {_first_line(str(exc))}")
    if isinstance(exc, psycopg.ProgrammingError) and "invalid" in str(exc).lower():
        return DBOSDatabaseError(f"invalid database URL{where}: {_first_line(str(exc))}")
    if isinstance(exc, psycopg.Error):
        return DBOSDatabaseError(f"database error{where}: {_first_line(str(exc))}")
    return DBOSDatabaseError(f"database error{where}: {exc}")


def pool_timeout(exc: PoolTimeout, pool: ConnectionPool, url: str | None = None) -> DBOSException:
    """Our error for a caller that waited ``pool.timeout`` seconds for a pooled connection. When
    every connection the pool may open is in use, that is back-pressure (more concurrent work than
    connections), not an outage: a transient error that says so, with the pool's size and the
    callers waiting. Otherwise the pool could not open a connection: the database is unreachable."""
    stats = pool.get_stats()
    if stats.get("pool_size", 0) >= pool.max_size and stats.get("pool_available", 0) == 0:
        return _transient(
            f"the connection pool {pool.name!r} is exhausted: all {pool.max_size} connections are "
            f"in use and {stats.get('requests_waiting', 0)} callers wait for one "
            f"(waited {pool.timeout:g}s; more concurrent work than connections)"
        )
    return translate(exc, url)


# read_only_sql_transaction: the server refused a write.
READ_ONLY_SQLSTATE = "25006"


def _read_only(
    exc: BaseException, where: str, conn: psycopg.Connection[Any] | None
) -> DBOSDatabaseError:
    """A write refused as read-only. Our own statements never make a transaction read-only, so
    it is the server: a standby (a URL listing one host that became a standby), or a primary
    being demoted in a failover. That passes once the URL's hosts lead to the new primary: an
    outage-like, transient error that a workflow waits out. But a transaction the application's
    code set READ ONLY on a writable server is that code's doing: its error, not transient."""
    if conn is not None and not session_read_only(conn):
        return DBOSDatabaseError(f"database error{where}: {_first_line(str(exc))}")
    return _transient(
        f"the database server{where} is read-only (a standby, or a primary being demoted in a "
        "failover): a URL listing the primary and its standbys should say "
        "target_session_attrs=read-write, so that connections go to the primary"
    )


def session_read_only(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn``'s server refuses every write of this session: it is a standby
    (``in_hot_standby``), or its default is read-only. Both are reported by the server on
    every change (no round trip): a standby's promotion turns ``in_hot_standby`` off."""
    info = conn.info
    return "on" in (
        info.parameter_status("in_hot_standby"),
        info.parameter_status("default_transaction_read_only"),
    )


def _transient(message: str) -> DBOSDatabaseError:
    err = DBOSDatabaseError(message)
    err.transient = True
    return err


def is_transient(exc: BaseException) -> bool:
    """Whether a database error passes on its own (the connection, the server, a timeout, a
    rollback) rather than being caused by the data sent: a workflow waits those out and retries,
    and treats the others as its own error."""
    return isinstance(exc, DBOSConnectionError) or bool(getattr(exc, "transient", False))


def unstorable_text(exc: UnicodeEncodeError) -> DBOSDatabaseError:
    """The error for a text parameter that cannot be encoded for the database (an unpaired
    surrogate): the caller's data, not an outage."""
    bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else "?"
    return DBOSDatabaseError(
        f"a text value holds {bad!r}, which cannot be stored (an unpaired surrogate is not "
        "valid Unicode text)"
    )


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else "unknown error"


def check_url(url: str) -> None:
    """Refuse a URL that libpq cannot parse, with a message that does not echo the password."""
    try:
        psycopg.conninfo.conninfo_to_dict(url)
        url.encode("utf-8")
    except (psycopg.ProgrammingError, UnicodeError):
        raise DBOSDatabaseError(f"invalid database URL {_describe(url)!a}") from None


def connect(
    url: str,
    *,
    autocommit: bool = True,
    schema: str = sysschema.DEFAULT_SCHEMA,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """A single connection, with driver errors translated, whose statements name the system
    tables of ``schema`` (see ``runtime.sysschema``)."""
    check_url(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=autocommit,
            **(pg_hosts.session_defaults(url, CONNECT_TIMEOUT_S) | kwargs),
        )
    except psycopg.Error as exc:
        raise translate(exc, url) from None
    sysschema.install(conn, schema)
    return conn


# A command-line tool waits this long for a server (libpq's minimum): an operator wants the one
# line saying what is wrong, not a wait for the outage to pass.
PROBE_TIMEOUT_S = 2


def probe(url: str, *, missing_database_ok: bool = False) -> None:
    """Fail fast, with one line, when ``url`` cannot be connected to: a single attempt that
    gives up after ``PROBE_TIMEOUT_S`` (no pool, no retries, nothing logged). Raises
    ``DBOSConnectionError`` naming host:port/database and the cause (refused, no answer, host
    name, authentication, missing database, SSL), never the password. ``missing_database_ok``:
    a server that answers that the database does not exist passes (for a command creating it)."""
    check_url(url)
    try:
        psycopg.connect(
            url, autocommit=True, connect_timeout=PROBE_TIMEOUT_S, **pg_hosts.session_defaults(url)
        ).close()
    except psycopg.Error as exc:
        if missing_database_ok and _NO_SUCH_DATABASE.search(str(exc)) is not None:
            return
        raise DBOSConnectionError(connect_errors.describe(exc, url, PROBE_TIMEOUT_S)) from None


@contextlib.contextmanager
def translated(url: str | None = None) -> Iterator[None]:
    """Translate driver errors raised inside the block."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, url) from exc


class _Pool(ConnectionPool):
    """A pool that drops a returned connection whose server refuses writes: a standby the
    connection was opened to, or a primary being demoted. Kept, it would fail every write until
    the server came back writable; dropped, the pool opens a new one, which the URL's
    ``target_session_attrs`` leads to the new primary. Checked where the connection comes back,
    at the cost of two reads of what the server last reported (no round trip).

    It hands out the connection returned last (last in, first out), where psycopg_pool takes the
    one idle longest: a lone statement after a quiet spell (a recv woken by a message) then runs
    on a warm connection, whose server process is awake and whose statements are prepared,
    instead of on one that idled through every other connection's turn (0.70 instead of 1.20 ms
    per recv statement in bench/send_recv_bench.py, a pool of 32). The connections a burst opened
    and no longer needs stay idle at the far end, where the pool's ``max_idle`` closes them."""

    drop_read_only = True

    def _get_ready_connection(self, timeout: float | None) -> psycopg.Connection[Any] | None:
        # Called under the pool's lock; psycopg_pool takes from the left of its deque of idle
        # connections and returns them on the right: bring the newest to the left first.
        idle = getattr(self, "_pool", None)
        if idle:
            idle.rotate(1)
        conn: psycopg.Connection[Any] | None = super()._get_ready_connection(timeout)
        return conn

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        if self.drop_read_only and not conn.closed and session_read_only(conn):
            conn.close()
        super().putconn(conn)


def make_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 16,
    name: str = "dbos",
    idle_in_transaction_timeout_s: float | None = None,
    wait_timeout_s: float = 15.0,
    schema: str = sysschema.DEFAULT_SCHEMA,
    read_only: bool = False,
) -> ConnectionPool:
    """An open pool of autocommit connections. Autocommit because a checkpoint is one statement: an
    implicit BEGIN/COMMIT around it would triple its round trips.

    ``idle_in_transaction_timeout_s`` has the server end a transaction left idle that long: a
    process frozen mid-transaction (paused, partitioned) must not hold its row locks forever, or
    the executors taking over its workflows would wait for it. The statements of its connections
    name the system tables of ``schema`` (see ``runtime.sysschema``). With ``read_only`` the server
    refuses every write on them (a replay check must change nothing)."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        sysschema.install(conn, schema)
        if read_only:
            conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
        if idle_in_transaction_timeout_s is not None:
            conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{int(idle_in_transaction_timeout_s * 1000)}ms",),
            )

    check_url(url)
    pool = _Pool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            **pg_hosts.session_defaults(url, CONNECT_TIMEOUT_S),
        },
        configure=configure,
        name=name,
        open=False,
        # How long a caller waits for a connection; during an outage the retry loops above us
        # decide how long to keep trying.
        timeout=wait_timeout_s,
    )
    # A deliberately read-only pool keeps its connections; another drops one whose server
    # refuses writes.
    pool.drop_read_only = not read_only
    # Long enough for every host's connect_timeout in turn: a first host that swallows packets
    # must not use up the budget before a healthy second host is tried.
    budget_s = pg_hosts.open_budget_s(url, CONNECT_TIMEOUT_S) + 1
    try:
        pool.open(wait=True, timeout=budget_s)
    except Exception:
        pool.close()
        # The pool reports a timeout; ask for the real reason with one direct attempt, bounded
        # even when the URL says connect_timeout=0 (wait forever).
        try:
            connect(url, connect_timeout=_bounded_timeout(url)).close()
        except DBOSException as real:
            raise real from None
        raise DBOSConnectionError(
            f"cannot open connections to the database at {_describe(url)} within "
            f"{budget_s:g} s, although one connection succeeded: the servers answer too slowly"
        ) from None
    return pool


def _bounded_timeout(url: str) -> int:
    """The URL's connect_timeout, or ours when it sets none or 0 (wait forever)."""
    try:
        given = int(pg_hosts.params(url).get("connect_timeout") or 0)
    except ValueError:
        given = 0
    return given if given > 0 else CONNECT_TIMEOUT_S


# The server's message for a connection to a database that does not exist (libpq gives no SQLSTATE).
_NO_SUCH_DATABASE = re.compile(r'FATAL:\s+database ".*" does not exist')
# The database every cluster has, to connect to when the configured one does not exist yet.
MAINTENANCE_DATABASE = "postgres"


def ensure_database(url: str) -> bool:
    """Create the database ``url`` names if it does not exist, as DBOS does at launch: connect to
    the cluster's ``postgres`` database with the same credentials and ``CREATE DATABASE`` (the
    name a quoted identifier). Returns whether it created it. A role that may not create
    databases gets a ``DBOSDatabaseError`` saying so; an unreachable server the usual
    ``DBOSConnectionError``."""
    check_url(url)
    try:
        psycopg.connect(
            url,
            autocommit=True,
            **pg_hosts.session_defaults(url, CONNECT_TIMEOUT_S),
        ).close()
        return False
    except psycopg.Error as exc:
        # libpq reports a refused connection without a SQLSTATE: the server's message is all
        # there is to tell "no such database" (3D000) from an outage.
        if not (_sqlstate(exc) == "3D000" or _NO_SUCH_DATABASE.search(str(exc)) is not None):
            raise translate(exc, url) from None
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = str(params.get("dbname") or params.get("user") or "")
    maintenance = psycopg.conninfo.make_conninfo(url, dbname=MAINTENANCE_DATABASE)
    try:
        with psycopg.connect(
            maintenance,
            autocommit=True,
            **pg_hosts.session_defaults(url, CONNECT_TIMEOUT_S),
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return False  # another process created it meanwhile
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DBOSDatabaseError(
            f"the database {name!r} does not exist at {_describe(url)} and this role may not "
            f"create it ({_first_line(str(exc))}); create it, or grant the role CREATEDB"
        ) from None
    except psycopg.Error as exc:
        raise DBOSDatabaseError(
            f"the database {name!r} does not exist at {_describe(url)} and could not be "
            f"created: {_first_line(str(exc))}"
        ) from None
    logger.info("created database %r at %s", name, _describe(url))
    return True
