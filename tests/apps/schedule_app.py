"""A test application with the workflow of a managed schedule, run by `dbos start` processes in
tests/test_schedules.py. Each run of ``sched_tick`` notes itself in ``sched_runs`` (no unique key),
so a tick that ran twice, or in two processes, shows up."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import psycopg

from runtime import DBOS

RUNS_DDL = "CREATE TABLE IF NOT EXISTS sched_runs (workflow_id text, scheduled text, pid int)"


@DBOS.step()
def note(scheduled: str) -> None:
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sched_runs VALUES (%s, %s, %s)",
            (DBOS.workflow_id, scheduled, os.getpid()),
        )


@DBOS.workflow()
def sched_tick(scheduled: datetime, context: Any) -> None:
    note(scheduled.isoformat())
