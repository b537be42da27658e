"""Creates and upgrades the system schema.

Version 1 is ``schema.sql`` (the baseline); every later change is a numbered file
``runtime/migrations/NNNN_description.sql`` and is applied once, in order, and recorded in
``dbos.schema_version``. All of it runs in one transaction under a transaction-level advisory lock,
so several processes migrating at once serialise: the first applies, the others find nothing to do.

Every function takes the ``schema`` of the system tables (``dbos_system_schema``, default ``dbos``);
the migration files say ``dbos`` and are sent with it substituted (see ``runtime.sysschema``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from runtime import db, sysschema
from runtime.config import redact_url
from runtime.errors import DBOSSchemaMissingError

# An arbitrary constant shared by every process of every version: the lock's only job is mutual
# exclusion of migrations on one database.
MIGRATION_LOCK_KEY = 0x6462_6F73_6D69_67  # "dbosmig"
SCHEMA = sysschema.DEFAULT_SCHEMA

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered change to the system schema."""

    version: int
    description: str
    sql_text: str


@dataclass(frozen=True)
class MigrationResult:
    """What a ``migrate`` call did: the versions it applied (empty when already current)."""

    applied: list[Migration]
    version: int
    previous_version: int


def migrations() -> list[Migration]:
    """Every migration this runtime knows, in order: the baseline, then the numbered files."""
    pkg = resources.files("runtime")
    found = [Migration(1, "baseline system schema", (pkg / "schema.sql").read_text("utf-8"))]
    folder = pkg / "migrations"
    if folder.is_dir():
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            match = _MIGRATION_FILE.match(entry.name)
            if match:
                found.append(
                    Migration(
                        int(match.group(1)),
                        match.group(2).replace("_", " "),
                        entry.read_text("utf-8"),
                    )
                )
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..n without gaps, found {versions}")
    return found


def latest_version() -> int:
    """The schema version this runtime expects."""
    return migrations()[-1].version


def current_version(url: str, schema: str = SCHEMA) -> int:
    """The database's schema version; 0 when the system schema is not there."""
    with db.connect(url, schema=schema) as conn, db.translated(url):
        return _read_version(conn, schema)


def check_current(url: str, schema: str = SCHEMA) -> None:
    """Raise ``DBOSSchemaMissingError`` unless the system schema is at the version this runtime
    expects: what launch does instead of migrating when ``run_migrations`` is False."""
    found, wanted = current_version(url, schema), latest_version()
    if found == wanted:
        return
    where = f"schema {schema!r} of {redact_url(url)}"
    if found > wanted:
        raise DBOSSchemaMissingError(
            f"the system tables in {where} are at version {found}, newer than this runtime "
            f"({wanted}); upgrade the runtime"
        )
    problem = (
        f"the system tables are missing in {where}"
        if found == 0
        else f"the system tables in {where} are at version {found}, this runtime needs {wanted}"
    )
    raise DBOSSchemaMissingError(f"{problem}; run_migrations is False: run `dbos migrate` first")


def _read_version(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{sysschema.qualified(schema)}.schema_version",)
    ).fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT coalesce(max(version), 0) FROM dbos.schema_version").fetchone()
    return int(found[0]) if found else 0


def migrate(url: str, schema: str = SCHEMA, *, create_database: bool = False) -> MigrationResult:
    """Bring the system schema ``schema`` up to date. Idempotent; safe to run concurrently.
    ``create_database``: first create the database if it does not exist (``db.ensure_database``),
    as ``dbos migrate`` does."""
    if create_database:
        db.ensure_database(url)
    wanted = migrations()
    with db.connect(url, autocommit=False, schema=schema) as conn, db.translated(url):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            before = _read_version(conn, schema)
            applied: list[Migration] = []
            for m in wanted:
                if m.version <= before:
                    continue
                conn.execute(m.sql_text.encode())
                conn.execute(
                    "INSERT INTO dbos.schema_version (version, description) VALUES (%s, %s)",
                    (m.version, m.description),
                )
                applied.append(m)
        return MigrationResult(applied, max(before, wanted[-1].version), before)


def reset(url: str, schema: str = SCHEMA) -> bool:
    """Drop the system schema ``schema`` and everything in it. Returns False when there was
    none."""
    with db.connect(url, autocommit=False, schema=schema) as conn, db.translated(url):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            row = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if row is None:
                return False
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            return True
