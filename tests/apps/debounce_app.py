"""A test application for debouncing, run in subprocesses.

``python -m tests.apps.debounce_app debounce-then-die DB_URL KEY N PERIOD`` debounces
``summarize`` N times under KEY (arguments v0..v{N-1}), prints the workflow ID, and SIGKILLs
itself while the run is still DELAYED. ``python -m tests.apps.debounce_app serve DB_URL ID``
launches, waits for that workflow and prints its result as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import psycopg

from runtime import DBOS, Debouncer

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS debounce_ledger "
    "(id bigserial, workflow_id text, value text, pid int)"
)


@DBOS.step()
def record(value: str) -> None:
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO debounce_ledger (workflow_id, value, pid) VALUES (%s, %s, %s)",
            (DBOS.workflow_id, value, os.getpid()),
        )


@DBOS.workflow()
def summarize(value: str) -> str:
    record(value)
    return value


debouncer = Debouncer.create(summarize)


def main() -> None:
    action, db_url, *rest = sys.argv[1:]
    DBOS(config={"name": "debounce", "database_url": db_url, "application_version": "deb-v1"})
    DBOS.launch()
    if action == "debounce-then-die":
        key, count, period = rest[0], int(rest[1]), float(rest[2])
        ids = {debouncer.debounce(key, period, f"v{i}").workflow_id for i in range(count)}
        print(json.dumps(sorted(ids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        print(json.dumps(DBOS.retrieve_workflow(rest[0]).get_result()), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
