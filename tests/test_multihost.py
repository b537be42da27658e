"""Connection URLs naming several hosts (libpq's multi-host syntax), as a highly available Postgres
is reached: the runtime, its LISTEN connection, DBOSClient and the CLI all skip a dead host and a
read-only one, an explicit ``target_session_attrs`` is kept, every connection gets TCP keepalives,
a server that turned read-only is waited out, and a failure names each host and why, never the
password.

Real servers on loopback, each in its own folder: one writable, one whose sessions default to
read-only (libpq's read-write check treats it as a standby), and a port where nothing listens (a
killed primary's)."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOS, DBOSClient, SetWorkflowID
from runtime import db as db_mod
from runtime.client import check_database
from runtime.config import redact_url
from runtime.embedded import EmbeddedPostgres
from runtime.errors import DBOSConnectionError, DBOSDatabaseError
from runtime.migrate import migrate
from tests.cli_helpers import clean_env, dbos, free_port
from tests.conftest import TEST_SERVER_SETTINGS

SECRET = "pw-Secret-42"


@dataclass
class Servers:
    live: int  # the writable server's port
    read_only: int  # sessions read-only by default: a standby to libpq's read-write check
    dead: int  # a port nothing listens on: connections are refused, as to a killed primary

    def url(self, *ports: int, db: str = "postgres", query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
        return f"postgresql://postgres:{SECRET}@{hosts}/{db}" + (f"?{query}" if query else "")


def _server(settings: dict[str, str]) -> tuple[EmbeddedPostgres, Path]:
    base = Path(tempfile.mkdtemp(prefix="dbos-multihost-"))
    server = EmbeddedPostgres(base, settings={**TEST_SERVER_SETTINGS, **settings})
    server.start()
    return server, base


def _port(server: EmbeddedPostgres) -> int:
    port = server.status().port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """Two servers, started at once (initdb is most of the time), and a port where nothing
    listens any more: connections to it are refused, as to a primary that was killed."""
    started: list[tuple[EmbeddedPostgres, Path]] = []
    try:
        with ThreadPoolExecutor(2) as starting:
            for done in starting.map(_server, ({}, {"default_transaction_read_only": "on"})):
                started.append(done)
        (live, _), (read_only, _) = started
        yield Servers(_port(live), _port(read_only), free_port())
    finally:
        for server, base in started:
            server.stop("immediate")
            shutil.rmtree(base, ignore_errors=True)


def _server_port(url: str) -> int:
    """The port of the server a runtime connection to ``url`` lands on."""
    with db_mod.connect(url) as conn:
        row = conn.execute("SELECT inet_server_port()").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def fresh_db(servers: Servers) -> Iterator[str]:
    """The name of a database the test creates on the live server, dropped after it."""
    name = f"mh_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(servers.url(servers.live), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_dead_first_host_is_skipped_by_launch_workflows_and_the_listener(
    servers: Servers, fresh_db: str
) -> None:
    """The old primary's port first: launch creates the database and its tables on the second
    host, a workflow runs, and a recv is woken by the LISTEN connection (well before the 10 s
    poll), so the listener found the live host too."""
    url = servers.url(servers.dead, servers.live, db=fresh_db)

    @DBOS.step()
    def double(x: int) -> int:
        return 2 * x

    @DBOS.workflow()
    def mh_work(x: int) -> int:
        return double(x) + 1

    @DBOS.workflow()
    def mh_wait() -> Any:
        return DBOS.recv("ping", timeout_seconds=30)

    DBOS.destroy()
    DBOS(
        config={  # type: ignore[arg-type]
            "name": "multihost",
            "database_url": url,
            "notification_listener_polling_interval_sec": 10.0,
        }
    )
    try:
        DBOS.launch()
        assert mh_work(20) == 41
        handle = DBOS.start_workflow(mh_wait)
        time.sleep(0.5)  # the workflow reaches its recv and waits
        sent = time.monotonic()
        DBOS.send(handle.workflow_id, "hello", "ping")
        assert handle.get_result() == "hello"
        assert time.monotonic() - sent < 2.0, "woken by the poll, not by LISTEN"
    finally:
        DBOS.destroy()
    with psycopg.connect(servers.url(servers.live, db=fresh_db), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
    assert row is not None and row[0] == 2


def test_a_read_only_first_host_is_skipped_unless_the_url_says_any(
    servers: Servers, fresh_db: str
) -> None:
    """A URL naming several hosts gets target_session_attrs=read-write: the read-only first host
    is skipped by every runtime connection and DBOSClient works. An explicit `any` is kept: the
    connection lands on the read-only host, and a write there is the transient read-only error."""
    with psycopg.connect(servers.url(servers.live), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh_db}"')
    url = servers.url(servers.read_only, servers.live, db=fresh_db)
    assert _server_port(url) == servers.live
    migrate(url)  # on the live host
    client = DBOSClient(url)  # its pool and its schema check, on the live host
    try:
        assert client.list_workflows() == []
    finally:
        client.destroy()

    any_url = servers.url(servers.read_only, servers.live, query="target_session_attrs=any")
    assert _server_port(any_url) == servers.read_only
    with db_mod.connect(any_url) as conn, pytest.raises(DBOSDatabaseError) as refused:
        try:
            conn.execute("CREATE TABLE t (x int)")
        except psycopg.Error as exc:
            raise db_mod.translate(exc, any_url) from exc
    assert db_mod.is_transient(refused.value)
    assert "read-only" in str(refused.value) and "target_session_attrs=read-write" in str(
        refused.value
    )
    assert SECRET not in str(refused.value)


def test_every_connection_gets_keepalives_unless_the_url_sets_them(servers: Servers) -> None:
    """TCP keepalives and a send timeout on the runtime's connections and its pool, so a server
    that vanishes without a reset is noticed in tens of seconds; the URL's own values win, its
    connect_timeout too."""
    with db_mod.connect(servers.url(servers.live)) as conn:
        given = conn.info.get_parameters()
    assert given["keepalives"] == "1" and given["keepalives_idle"] == "10"
    assert given["connect_timeout"] == "10"
    assert given["keepalives_count"] == "3" and given["tcp_user_timeout"] == "20000"
    assert "target_session_attrs" not in given  # one host: nothing to choose between
    own = servers.url(
        servers.live, query="keepalives_idle=60&tcp_user_timeout=5000&connect_timeout=3"
    )
    pool = db_mod.make_pool(own, min_size=1, max_size=1)
    try:
        with pool.connection() as conn:
            given = conn.info.get_parameters()
    finally:
        pool.close()
    assert given["keepalives_idle"] == "60" and given["tcp_user_timeout"] == "5000"
    assert given["connect_timeout"] == "3"  # per host: what a vanished first host costs
    assert given["keepalives_interval"] == "5"


def test_the_cli_works_with_a_dead_first_host(servers: Servers, fresh_db: str) -> None:
    """`dbos migrate`, `dbos workflow list` (--db-url) and `get` (DBOS_DATABASE_URL) with the
    old primary's port first."""
    url = servers.url(servers.dead, servers.live, db=fresh_db)
    env = clean_env()
    cwd = Path(tempfile.mkdtemp(prefix="dbos-multihost-cli-"))
    try:
        done = dbos("migrate", "--db-url", url, cwd=cwd, env=env)
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
        client = DBOSClient(url)
        try:
            client.enqueue({"workflow_name": "w", "queue_name": "q", "workflow_id": "mh-1"})
        finally:
            client.destroy()
        listed = dbos("workflow", "list", "--db-url", url, "--json", cwd=cwd, env=env)
        assert listed.returncode == 0, listed.stderr
        assert [w["workflow_id"] for w in json.loads(listed.stdout)] == ["mh-1"]
        # From the environment, as a deployment configures it.
        got = dbos(
            "workflow", "get", "mh-1", "--json", cwd=cwd, env=env | {"DBOS_DATABASE_URL": url}
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["status"] == "ENQUEUED"
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def test_all_hosts_failing_is_one_line_naming_each_host_and_why(servers: Servers) -> None:
    """Every host fails: the CLI's one line and DBOSClient's error list each host:port with its
    reason (refused; read-only), readably, and never the password."""
    url = servers.url(servers.dead, servers.read_only)
    where = f"127.0.0.1:{servers.dead},127.0.0.1:{servers.read_only}/postgres"
    done = dbos("workflow", "list", "--db-url", url, cwd=Path(tempfile.gettempdir()))
    assert done.returncode != 0
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1, done.stderr
    assert where in line, line
    assert f"127.0.0.1:{servers.dead} (connection refused" in line, line
    assert f"127.0.0.1:{servers.read_only} (the server is read-only" in line, line
    assert SECRET not in done.stdout + done.stderr and "Traceback" not in done.stderr
    with pytest.raises(DBOSConnectionError) as failed:
        check_database(url)  # what the CLI and a client's caller check first
    assert where in str(failed.value) and "every host failed" in str(failed.value)
    assert SECRET not in str(failed.value)


def test_a_server_turned_read_only_is_waited_out(servers: Servers, fresh_db: str) -> None:
    """The primary turns read-only under a running workflow (as one being demoted does): its
    checkpoint's 25006 is transient, the workflow waits instead of failing with it, and finishes
    once the server is writable; its step ran once. A pooled connection whose server turned
    read-only is dropped when it comes back to the pool."""
    admin = servers.url(servers.live)
    url = servers.url(servers.live, db=fresh_db)
    go, runs = threading.Event(), []

    @DBOS.step()
    def gated() -> str:
        runs.append(1)
        go.wait(10)
        return "done"

    @DBOS.workflow()
    def mh_gated() -> str:
        return gated()

    DBOS.destroy()
    DBOS(config={"name": "multihost-ro", "database_url": url})  # type: ignore[arg-type]
    try:
        DBOS.launch()
        with SetWorkflowID("mh-ro"):
            handle = DBOS.start_workflow(mh_gated)
        _set_read_only(admin, True)
        try:
            go.set()
            time.sleep(0.5)  # the step's checkpoint meets the read-only server meanwhile
            status = DBOS.get_workflow_status("mh-ro")
            assert status is not None and status.status == "PENDING"
            pool = db_mod.make_pool(admin, min_size=1, max_size=1)
            try:
                conn = pool.getconn()
                conn.execute("SELECT 1")  # the server's report of the change arrives
                assert db_mod.session_read_only(conn)
                pool.putconn(conn)
                assert conn.closed
            finally:
                pool.close()
        finally:
            _set_read_only(admin, False)
        assert handle.get_result() == "done"
        assert runs == [1]
    finally:
        DBOS.destroy()


def _set_read_only(admin_url: str, on: bool) -> None:
    """Make every session of the server read-only by default (or not), as a demotion does."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        value = "on" if on else "DEFAULT"
        conn.execute(f"ALTER SYSTEM SET default_transaction_read_only = {value}")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.1)  # the postmaster signals the backends


def test_redact_url_masks_the_password_of_every_multi_host_form() -> None:
    for url, shown in [
        (
            f"postgresql://u:{SECRET}@h1:5432,h2:5433/db?target_session_attrs=read-write",
            "postgresql://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write",
        ),
        (
            f"postgresql://u@/db?host=h1,h2&port=5432,5433&password={SECRET}",
            "postgresql://u@/db?host=h1,h2&port=5432,5433&password=***",
        ),
        (
            f"postgres://u:{SECRET}@[::1]:5432,[fe80::1]:5433/db",
            "postgres://u:***@[::1]:5432,[fe80::1]:5433/db",
        ),
        (f"host=h1,h2 port=5432,5433 password={SECRET}", "host=h1,h2 port=5432,5433 password=***"),
        (f"postgresql://u:{SECRET}@h1,h2/db", "postgresql://u:***@h1,h2/db"),
    ]:
        assert redact_url(url) == shown
