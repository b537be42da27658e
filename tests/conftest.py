"""The test harness: one real Postgres per test session, one fresh database per test.

The session starts the embedded server in a temporary folder (or uses the server at
``DBOS_TEST_DATABASE_URL``), builds a template database holding the system schema once, and each
test that asks for ``db_url`` gets its own copy (``CREATE DATABASE ... TEMPLATE``), so tests are
isolated without paying for a migration each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from runtime.embedded import EmbeddedPostgres
from runtime.migrate import migrate
from tests.apps.fleet_app import LEDGER_DDL as FLEET_LEDGER_DDL
from tests.fleet import Fleet

TEMPLATE = "dbos_test_template"

# Durability of the test server itself is not under test (crash tests kill app processes, not
# Postgres), so trade it for speed. pg_stat_statements lets tests count the statements a workflow
# sends to the server.
TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_utility": "on",
}


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Admin URL of the session's server (database ``postgres``)."""
    external = os.environ.get("DBOS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    base = Path(tempfile.mkdtemp(prefix="dbos-test-pg-"))
    server = EmbeddedPostgres(base, settings=TEST_SERVER_SETTINGS)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> str:
    """A database holding the system schema, copied for each test."""
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = with_database(pg_server_url, TEMPLATE)
    migrate(url)
    return url


def _fresh_database(server_url: str, template: str | None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    tmpl = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server_url: str, template_url: str) -> Iterator[str]:
    """A fresh database with the system schema already applied."""
    yield from _fresh_database(pg_server_url, TEMPLATE)


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database without the system schema."""
    yield from _fresh_database(pg_server_url, None)


@pytest.fixture
def crash(db_url: str) -> Callable[[], None]:
    """Simulate, in-process, this process dying mid-run: the runtime is torn down while workflows
    may still be inside a step (their threads live on, but can record nothing: their runtime is
    gone and a new run fences them), and its executor row is marked stopped, as a successor on the
    same host does when it finds the old pid gone. Call ``launch_dbos`` after it to "restart"."""

    def crash_now() -> None:
        from runtime import DBOS

        DBOS.destroy()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE dbos.executors SET stopped_at = "
                "(extract(epoch FROM clock_timestamp()) * 1000)::bigint WHERE stopped_at IS NULL"
            )

    return crash_now


@pytest.fixture
def launch_dbos(db_url: str) -> Iterator[Callable[..., None]]:
    """Launch the runtime on the test's database (call it after defining the test's workflows, as
    an app defines them at import time); destroyed after the test."""
    from runtime import DBOS

    DBOS.destroy()

    def launch(**overrides: Any) -> None:
        config: dict[str, Any] = {
            "name": "test-app",
            "database_url": db_url,
            "executor_id": "local",
            "application_version": "test-version",
        }
        config.update(overrides)
        DBOS(config=config)  # type: ignore[arg-type]
        DBOS.launch()

    yield launch
    DBOS.destroy()


@pytest.fixture
def fleet(db_url: str) -> Iterator[Fleet]:
    """`dbos start` processes of tests/apps/fleet_app.py on the test's database, stopped after."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(FLEET_LEDGER_DDL)
    group = Fleet(db_url)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def client(db_url: str) -> Iterator[Any]:
    """A ``DBOSClient`` on the test's database, destroyed after the test."""
    from runtime import DBOSClient

    with DBOSClient(db_url) as found:
        yield found
