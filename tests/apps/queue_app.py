"""A test application served by `dbos start` in several processes at once.

Queues: ``shared`` (concurrency 2), ``per_worker`` (worker_concurrency 1), ``limited`` (5 starts
per 2 s), ``by_partition`` (concurrency 1 per partition). ``job(seconds)`` works for that long in
a step that notes its start in ``queue_ledger``. With ``SCHEDULE=1`` in the environment,
``every_second`` runs on each second's tick.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import psycopg

from runtime import DBOS, Queue

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS queue_ledger (
    id bigserial, workflow_id text, step int, pid int, tick timestamptz
)
"""

shared = Queue("shared", concurrency=2)
per_worker = Queue("per_worker", worker_concurrency=1)
limited = Queue("limited", limiter={"limit": 5, "period": 2})
by_partition = Queue("by_partition", concurrency=1, partition_queue=True)


def _note(step: int, tick: datetime | None = None) -> None:
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO queue_ledger (workflow_id, step, pid, tick) VALUES (%s, %s, %s, %s)",
            (DBOS.workflow_id, step, os.getpid(), tick),
        )


@DBOS.step()
def work(step: int, seconds: float) -> None:
    _note(step)
    time.sleep(seconds)


@DBOS.workflow()
def job(seconds: float) -> int:
    work(1, seconds)
    work(2, seconds)
    return os.getpid()


if os.environ.get("SCHEDULE"):

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    def every_second(scheduled: datetime, actual: datetime) -> None:
        _note(0, scheduled)
