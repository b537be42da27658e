"""The system schema: migration is idempotent, concurrent-safe, and matches the Python enums."""

from __future__ import annotations

import re
import threading

import psycopg

from runtime.migrate import current_version, latest_version, migrate, migrations, reset
from runtime.status import WorkflowStatusString

EXPECTED_TABLES = {
    "workflow_status",
    "operation_outputs",
    "notifications",
    "workflow_events",
    "schema_version",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dbos'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_creates_tables_then_is_a_noop(empty_db_url: str) -> None:
    assert current_version(empty_db_url) == 0
    first = migrate(empty_db_url)
    assert [m.version for m in first.applied] == list(range(1, latest_version() + 1))
    assert EXPECTED_TABLES <= _tables(empty_db_url)
    second = migrate(empty_db_url)
    assert second.applied == []
    assert second.version == latest_version() == current_version(empty_db_url)


def test_concurrent_migrations_all_succeed(empty_db_url: str) -> None:
    errors: list[BaseException] = []
    applied: list[int] = []

    def run() -> None:
        try:
            applied.append(len(migrate(empty_db_url).applied))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Exactly one of them applied the migrations; the others found nothing to do.
    assert sorted(applied) == [0, 0, 0, len(migrations())]
    with psycopg.connect(empty_db_url) as conn:
        versions = conn.execute("SELECT version FROM dbos.schema_version").fetchall()
    assert sorted(v[0] for v in versions) == list(range(1, latest_version() + 1))


def test_status_enum_equals_schema_check(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'workflow_status_status_check'"
        ).fetchone()
    assert row is not None
    in_schema = set(re.findall(r"'([A-Z_]+)'", row[0]))
    assert in_schema == {s.value for s in WorkflowStatusString}


def test_reset_drops_the_schema(db_url: str) -> None:
    assert reset(db_url) is True
    assert _tables(db_url) == set()
    assert current_version(db_url) == 0
    assert reset(db_url) is False
