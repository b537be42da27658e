"""Workflow rows written straight into the system tables in one statement, for tests of listings
and counts over many workflows (thousands in milliseconds, no runtime involved)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg


def insert_workflows(
    db_url: str,
    count: int,
    prefix: str,
    statuses: Sequence[str] = ("SUCCESS",),
    queue: str | None = None,
    start: int = 1,
) -> None:
    """Workflows ``PREFIX<i>`` for i from ``start`` to ``start + count - 1`` (zero-padded to 6
    digits), created and updated at epoch millisecond i, their status taken from ``statuses`` in
    turn (row i: ``statuses[(i - 1) % len(statuses)]``), in ``queue``."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, inputs, "
            "created_at, updated_at) SELECT %(prefix)s || lpad(i::text, 6, '0'), "
            "(%(statuses)s::text[])[1 + (i - 1) %% cardinality(%(statuses)s::text[])], 'job', "
            "%(queue)s, '[[], {}]', i, i FROM generate_series(%(start)s::int, %(stop)s::int) AS i",
            {
                "prefix": prefix,
                "statuses": list(statuses),
                "queue": queue,
                "start": start,
                "stop": start + count - 1,
            },
        )
