"""The CLI tells the truth (issue 21): bulk dry runs report what the real run does, listings are
newest first with a count of what lies beyond the page, database trouble is one line, arguments
are checked before the database sees them, and tables fit 80 columns. Through the real `dbos`
executable where the CLI is concerned."""

from __future__ import annotations

import time

import psycopg

from runtime import DBOSClient

ARGS = '{"args":[],"kwargs":{}}'


def _seed(db_url: str, rows: list[tuple[str, str, str | None]], base_ms: int = 1_000) -> None:
    """Workflow rows (id, status, owner process), created 1 s apart in the given order; a live
    executor process ``alive`` owns what names it."""
    now = int(time.time() * 1000)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
            "application_version, lease_ms, started_at, last_heartbeat_at) "
            "VALUES ('alive', 'e', 'h', 1, 'v', 600000, %s, %s) ON CONFLICT DO NOTHING",
            (now, now),
        )
        for i, (wid, status, owner) in enumerate(rows):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, "
                "application_version, owner_process, queue_name, created_at, updated_at) "
                "VALUES (%s, %s, 'job', %s, 'v', %s, 'q', %s, %s)",
                (wid, status, ARGS, owner, base_ms + i * 1000, base_ms + i * 1000),
            )


def _statuses(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT workflow_uuid, status FROM dbos.workflow_status").fetchall()
    return {r[0]: r[1] for r in rows}


MIXED = [
    ("ok", "SUCCESS", None),
    ("failed", "ERROR", None),
    ("stopped", "CANCELLED", None),
    ("waiting", "ENQUEUED", None),
    ("running", "PENDING", "alive"),
    ("orphan", "PENDING", "dead-process"),
    ("tired", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", None),
]


def test_dry_run_of_cancel_and_resume_is_exactly_the_real_run(db_url: str) -> None:
    """cancel_each/resume_each(dry_run=True) write nothing and return the very list the real run
    then returns, for every status, a live and a dead owner, an unknown and a repeated ID."""
    _seed(db_url, MIXED)
    ids = [wid for wid, _, _ in MIXED] + ["nobody", "waiting"]
    with DBOSClient(db_url) as client:
        before = _statuses(db_url)
        dry_resume = client.resume_each(ids, dry_run=True)
        dry_cancel = client.cancel_each(ids, dry_run=True)
        assert _statuses(db_url) == before
        assert [c.workflow_id for c in dry_cancel if c.changed] == [
            "waiting",
            "running",
            "orphan",
        ]
        assert client.resume_each(ids) == dry_resume
        # After the resume, the cancel's picture changed: preview it again, then run it.
        dry_cancel = client.cancel_each(ids, dry_run=True)
        assert client.cancel_each(ids) == dry_cancel
    assert [c.workflow_id for c in dry_resume if c.changed] == [
        "stopped",
        "waiting",
        "orphan",
        "tired",
        "waiting",
    ]
    assert next(c for c in dry_resume if c.workflow_id == "nobody").missing
