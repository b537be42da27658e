"""A test application for recovery in batches: ``python -m tests.apps.recovery_batches_app MODE
DB_URL``, with two executor threads (so recovery claims a few runs at a time).

- ``seed``: start ``COUNT`` workflows whose step blocks forever, print ``SEEDED``, and wait to be
  killed (they stay PENDING, none of their steps recorded).
- ``recover``: launch (recovering them); each step appends a ledger row (its workflow and this
  process's pid) and takes a moment, so that a test can SIGKILL the process while recovery is
  still feeding the pool; prints ``DONE`` once all have finished.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import psycopg

from runtime import DBOS

COUNT = 40
THREADS = 2
LEDGER_DDL = "CREATE TABLE IF NOT EXISTS batch_ledger (id bigserial, workflow int, pid int)"

# Set from the command line by main(); the test imports this module for its constants only.
ARGS: dict[str, str] = {}


@DBOS.step()
def effect(i: int) -> int:
    if ARGS["mode"] == "seed":
        time.sleep(3600)  # killed here
    # The side effect happens outside any transaction, like a payment call.
    with psycopg.connect(ARGS["url"], autocommit=True) as conn:
        conn.execute("INSERT INTO batch_ledger (workflow, pid) VALUES (%s, %s)", (i, os.getpid()))
    time.sleep(0.03)
    return i


@DBOS.workflow()
def batched(i: int) -> int:
    return effect(i) + 1


def main() -> None:
    ARGS.update(mode=sys.argv[1], url=sys.argv[2])
    mode, url = ARGS["mode"], ARGS["url"]
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "recovery-batches",
            "database_url": url,
            "max_executor_threads": THREADS,
            "application_version": "batches",
        }
    )
    DBOS.launch()
    if mode == "seed":
        for i in range(COUNT):
            DBOS.start_workflow(batched, i)
        print("SEEDED", flush=True)
        time.sleep(3600)
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
            ).fetchone()
            if row is not None and row[0] >= COUNT:
                break
            time.sleep(0.05)
    print("DONE", flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    main()
